"""esremote.pki, checked with the tools that will read its output: openssl, Java's keytool and a
real TLS handshake over loopback."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from esremote import pki
from esremote.errors import CertificateError
from tests.fixtures import java

P12_PASSWORD = "p12-Secret!"


# ----------------------------------------------------------------------- helpers (reused by CLI tests)


def openssl(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30)


def p12_info(path: Path, password: str) -> str:
    """`openssl pkcs12 -info -nokeys` output (password on stdin); fails the test if openssl refuses."""
    done = openssl("pkcs12", "-info", "-nokeys", "-passin", "stdin", "-in", str(path), stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def keytool(*args: str, password: str) -> subprocess.CompletedProcess:
    """Java's keytool (Java's KeyStore is what Elasticsearch reads p12 files with); the store
    password travels in the environment, not in argv."""
    path = java.keytool()  # skips without Java, unless ESREMOTE_REQUIRE_JAVA=1 (CI): then it fails
    env = {**os.environ, "P12_PASSWORD": password, "DEST_PASSWORD": "changeit"}
    return subprocess.run([path, *args], env=env, capture_output=True, text=True, timeout=60)


def keytool_list(path: Path, password: str) -> str:
    """The entries Java sees: alias, PrivateKeyEntry / trustedCertEntry."""
    done = keytool("-list", "-storetype", "PKCS12", "-keystore", str(path), "-storepass:env", "P12_PASSWORD",
                   password=password)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def java_copies_keystore(path: Path, password: str) -> subprocess.CompletedProcess:
    """Copy every entry to a new store: Java must check the MAC and decrypt the private key."""
    return keytool("-importkeystore", "-noprompt", "-srckeystore", str(path), "-srcstoretype", "PKCS12",
                   "-srcstorepass:env", "P12_PASSWORD", "-destkeystore", str(path.with_suffix(".copy.p12")),
                   "-deststoretype", "PKCS12", "-deststorepass:env", "DEST_PASSWORD", password=password)


def tls_handshake(p12: bytes, password: str, ca_pem: bytes, server_hostname: str, workdir: Path) -> str:
    """Serve TLS on loopback with the key and certificate taken from `p12`; connect as a client that
    trusts only `ca_pem` and checks `server_hostname`. Returns what the server sent; raises
    ssl.SSLCertVerificationError when the client refuses the server's certificate."""
    contents = pki.load_pkcs12(p12, password)
    chain = workdir / "server-chain.pem"
    key = workdir / "server-key.pem"
    chain.write_bytes(contents.cert.public_bytes(serialization.Encoding.PEM))
    key.touch(mode=0o600)
    key.write_bytes(pki.key_to_pem(contents.key))
    (workdir / "ca.pem").write_bytes(ca_pem)

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain, key)
    client_ctx = ssl.create_default_context(cafile=str(workdir / "ca.pem"))

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello over tls")
        except (ssl.SSLError, OSError):
            pass  # the client refused us: its side reports why

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                return tls.recv(100).decode()
    finally:
        server.join(timeout=10)
        listener.close()


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create()  # certutil's defaults: 2048-bit RSA, 1095 days


@pytest.fixture(scope="module")
def node(ca) -> pki.NodeCertificate:
    return pki.issue(ca, "node-1", dns=["node-1.es.example.com", "localhost"], ips=["127.0.0.1", "::1"])


@pytest.fixture()
def node_p12(tmp_path, ca, node) -> Path:
    path = tmp_path / "node-1.p12"
    path.write_bytes(pki.to_pkcs12(node, ca, P12_PASSWORD, name="node-1"))
    return path


# -------------------------------------------------------------------------------------------- CA


def test_ca_has_certutil_defaults(ca):
    cert = ca.cert
    assert cert.subject.rfc4514_string() == "CN=Elastic Certificate Tool Autogenerated CA"
    assert cert.issuer == cert.subject
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 1095
    assert isinstance(ca.key, rsa.RSAPrivateKey) and ca.key.key_size == 2048
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_pem_round_trip_with_passphrase(ca):
    key_pem = ca.key_pem("ca-pass")
    assert b"ENCRYPTED" in key_pem
    loaded = pki.CertificateAuthority.load(ca.cert_pem(), key_pem, "ca-pass")
    assert loaded.cert == ca.cert
    assert pki.cert_fingerprint(loaded.cert) == pki.cert_fingerprint(ca.cert_pem())


def test_ca_load_refuses_wrong_or_missing_passphrase(ca):
    key_pem = ca.key_pem("ca-pass")
    with pytest.raises(CertificateError, match="wrong passphrase") as err:
        pki.CertificateAuthority.load(ca.cert_pem(), key_pem, "not-it")
    assert "not-it" not in str(err.value) and "ca-pass" not in str(err.value)
    with pytest.raises(CertificateError, match="is encrypted: give its passphrase"):
        pki.CertificateAuthority.load(ca.cert_pem(), key_pem)


def test_ca_load_refuses_a_key_of_another_ca(ca):
    # EC keys here: what is tested is the pairing, not the key size (and EC keys are instant).
    other = pki.CertificateAuthority.create(dn="CN=other", key_size=pki.EC_P256)
    with pytest.raises(CertificateError, match="does not match the CA certificate"):
        pki.CertificateAuthority.load(ca.cert_pem(), other.key_pem())


def test_ca_load_refuses_garbage():
    with pytest.raises(CertificateError, match="not a PEM X.509 certificate"):
        pki.CertificateAuthority.load(b"hello", b"world")


def test_ca_dn_is_parsed_from_rfc4514():
    ca = pki.CertificateAuthority.create(dn="CN=Lab CA,O=esremote", days=10, key_size=pki.EC_P256)
    assert ca.cert.subject.rfc4514_string() == "CN=Lab CA,O=esremote"
    assert (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days == 10


# ----------------------------------------------------------------------------------- certificates


def test_node_certificate_verifies_against_ca_with_openssl(tmp_path, ca, node):
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "node.crt").write_bytes(node.cert_pem())
    done = openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "node.crt"))
    assert done.returncode == 0 and "node.crt: OK" in done.stdout, done.stderr


def test_node_certificate_is_refused_by_another_ca(tmp_path, node):
    other = pki.CertificateAuthority.create(dn="CN=other", key_size=pki.EC_P256)
    (tmp_path / "other.crt").write_bytes(other.cert_pem())
    (tmp_path / "node.crt").write_bytes(node.cert_pem())
    done = openssl("verify", "-CAfile", str(tmp_path / "other.crt"), str(tmp_path / "node.crt"))
    assert done.returncode != 0


def test_node_certificate_subject_and_sans(node, ca):
    assert node.cert.subject.rfc4514_string() == "CN=node-1"
    assert node.cert.issuer == ca.cert.subject
    san = node.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-1.es.example.com", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    # 1095 days, unless that would outlive the CA made a moment earlier (then it ends with the CA)
    expected = min(node.cert.not_valid_before_utc + timedelta(days=1095), ca.cert.not_valid_after_utc)
    assert node.cert.not_valid_after_utc == expected


def test_node_certificate_never_outlives_its_ca():
    short = pki.CertificateAuthority.create(days=5, key_size=pki.EC_P256)
    cert = pki.issue(short, "n", days=1095, key_size=pki.EC_P256).cert
    assert cert.not_valid_after_utc == short.cert.not_valid_after_utc


@pytest.mark.parametrize(("dns", "ips", "message"), [
    (["bad name"], [], "invalid DNS name 'bad name'"),
    ([], ["300.1.1.1"], "invalid IP address '300.1.1.1'"),
])
def test_bad_san_values_are_refused(ca, dns, ips, message):
    with pytest.raises(CertificateError, match=message):
        pki.issue(ca, "n", dns=dns, ips=ips, key_size=pki.EC_P256)


def test_a_certificate_renewed_on_its_key_keeps_the_key(ca, node):
    renewed = pki.issue(ca, "node-1", dns=["node-1"], key=node.key)
    assert renewed.key is node.key and renewed.cert.serial_number != node.cert.serial_number
    assert renewed.cert.public_key().public_numbers() == node.cert.public_key().public_numbers()


def test_too_small_key_and_days_are_refused():
    with pytest.raises(CertificateError, match="key size 512 is too small"):
        pki.generate_key(512)
    with pytest.raises(CertificateError, match="positive number of days"):
        pki.CertificateAuthority.create(days=0, key_size=pki.EC_P256)
    with pytest.raises(CertificateError, match="after the year 9999"):
        pki.CertificateAuthority.create(days=3_000_000, key_size=pki.EC_P256)


@pytest.mark.parametrize("dn", ["n,=x", "=x", "CN=ok,OU"])
def test_an_unreadable_dn_says_how_to_write_one(dn):
    with pytest.raises(CertificateError, match="e.g. CN=node-1,OU=ops"):
        pki.parse_dn(dn)


# ------------------------------------------------------------------------------------------ PKCS#12


def test_pkcs12_layout_matches_certutil(node_p12):
    info = p12_info(node_p12, P12_PASSWORD)
    # One key entry named after the node, its certificate, and the CA marked trusted for Java.
    assert info.count("Shrouded Keybag") == 1
    assert "friendlyName: node-1\n    localKeyID" in info  # the certificate of the key entry
    ca_bag = info.split("friendlyName: ca", 1)[1]
    assert "2.16.840.1.113894.746875.1.1" in ca_bag
    assert "subject=CN = Elastic Certificate Tool Autogenerated CA" in ca_bag
    assert "MAC: sha256" in info


def test_pkcs12_entries_as_java_sees_them(node_p12):
    listing = keytool_list(node_p12, P12_PASSWORD)
    assert "contains 2 entries" in listing
    assert "node-1, " in listing and "PrivateKeyEntry" in listing
    assert "ca, " in listing and "trustedCertEntry" in listing


def test_java_verifies_the_mac_and_decrypts_the_key(node_p12):
    done = java_copies_keystore(node_p12, P12_PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 entries successfully imported" in done.stdout + done.stderr
    node_p12.with_suffix(".copy.p12").unlink()
    refused = java_copies_keystore(node_p12, "guess-1")
    assert refused.returncode != 0 and "integrity" in (refused.stdout + refused.stderr).lower()


def test_openssl_decrypts_the_key(node_p12, node):
    done = openssl("pkcs12", "-in", str(node_p12), "-nocerts", "-nodes", "-passin", "stdin",
                   stdin=P12_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    key_pem = done.stdout[done.stdout.index("-----BEGIN"):].encode()
    assert pki.load_key_pem(key_pem).private_numbers() == node.key.private_numbers()


def test_pkcs12_loads_back(node_p12, node, ca):
    contents = pki.load_pkcs12(node_p12.read_bytes(), P12_PASSWORD)
    assert contents.name == "node-1"
    assert contents.cert == node.cert
    assert contents.chain == [node.cert]
    assert contents.trusted == {"ca": ca.cert}
    assert pki.key_to_pem(contents.key) == node.key_pem()


def test_pkcs12_wrong_password_is_refused_without_echoing_it(node_p12):
    with pytest.raises(CertificateError, match="wrong password") as err:
        pki.load_pkcs12(node_p12.read_bytes(), "guess-1")
    assert "guess-1" not in str(err.value) and P12_PASSWORD not in str(err.value)
    assert openssl("pkcs12", "-info", "-nokeys", "-passin", "stdin", "-in", str(node_p12),
                   stdin="guess-1\n").returncode != 0


def test_pkcs12_password_must_be_ascii(node, ca):
    with pytest.raises(CertificateError, match="PKCS#12 passwords must be plain ASCII"):
        pki.to_pkcs12(node, ca, "pässword")


def test_pkcs12_blank_password_is_allowed(tmp_path, node, ca):
    path = tmp_path / "blank.p12"
    path.write_bytes(pki.to_pkcs12(node, ca, ""))
    assert "friendlyName: node-1" in p12_info(path, "")
    assert pki.load_pkcs12(path.read_bytes(), "").name == "node-1"
    assert java_copies_keystore(path, "").returncode == 0


def test_pkcs12_name_defaults_to_common_name_and_ca_is_reserved(node, ca):
    assert pki.load_pkcs12(pki.to_pkcs12(node, ca, "x"), "x").name == "node-1"
    with pytest.raises(CertificateError, match=r"\[ca\] may not be used as an instance name"):
        pki.to_pkcs12(node, ca, "x", name="ca")


def test_self_signed_pkcs12_has_no_trusted_entry(tmp_path):
    alone = pki.issue(None, "solo", dns=["solo.example.com"], key_size=pki.EC_P256)
    assert alone.cert.issuer == alone.cert.subject
    path = tmp_path / "solo.p12"
    path.write_bytes(pki.to_pkcs12(alone, None, "pw"))
    assert "trustedCertEntry" not in keytool_list(path, "pw")


def test_missing_java_skips_unless_java_is_required(monkeypatch):
    monkeypatch.setattr(java, "shutil", SimpleNamespace(which=lambda name: None))
    monkeypatch.delenv("ESREMOTE_REQUIRE_JAVA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="default-jre-headless"):
        keytool("-help", password="")
    monkeypatch.setenv("ESREMOTE_REQUIRE_JAVA", "1")
    with pytest.raises(pytest.fail.Exception, match="ESREMOTE_REQUIRE_JAVA=1 but keytool"):
        keytool("-help", password="")


def test_mac_key_derivation_matches_openssl():
    if openssl("kdf", "-help").returncode not in (0, 1):
        pytest.skip("this openssl has no kdf command")
    salt = bytes(range(1, 9))
    password_bmp = "abc".encode("utf-16-be").hex() + "0000"
    done = openssl("kdf", "-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt", f"hexpass:{password_bmp}",
                   "-kdfopt", f"hexsalt:{salt.hex()}", "-kdfopt", "iter:2048", "-kdfopt", "id:3", "PKCS12KDF")
    assert done.returncode == 0, done.stderr
    ours = pki.pkcs12_kdf("abc", salt, 2048, purpose=3, length=32)
    assert ours.hex(":").upper() == done.stdout.strip()


# --------------------------------------------------------------------------------------------- TLS


def test_tls_handshake_verifies_dns_san(tmp_path, node_p12, ca):
    got = tls_handshake(node_p12.read_bytes(), P12_PASSWORD, ca.cert_pem(), "node-1.es.example.com", tmp_path)
    assert got == "hello over tls"


def test_tls_handshake_verifies_ip_san(tmp_path, node_p12, ca):
    assert tls_handshake(node_p12.read_bytes(), P12_PASSWORD, ca.cert_pem(), "127.0.0.1", tmp_path)


def test_tls_handshake_fails_for_a_name_not_in_san(tmp_path, node_p12, ca):
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address mismatch"):
        tls_handshake(node_p12.read_bytes(), P12_PASSWORD, ca.cert_pem(), "node-2.es.example.com", tmp_path)


def test_tls_handshake_fails_against_another_ca(tmp_path, node_p12):
    other = pki.CertificateAuthority.create(dn="CN=other", key_size=pki.EC_P256)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        tls_handshake(node_p12.read_bytes(), P12_PASSWORD, other.cert_pem(), "127.0.0.1", tmp_path)


def test_one_wildcard_certificate_serves_every_node(tmp_path, ca):
    shared = pki.issue(ca, "nodes", dns=["*.nodes.es.example.com"])
    p12 = pki.to_pkcs12(shared, ca, P12_PASSWORD)
    for host in ("n1.nodes.es.example.com", "n2.nodes.es.example.com"):
        assert tls_handshake(p12, P12_PASSWORD, ca.cert_pem(), host, tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(p12, P12_PASSWORD, ca.cert_pem(), "a.b.nodes.es.example.com", tmp_path)
