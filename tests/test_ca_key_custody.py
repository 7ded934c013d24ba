"""Where the remote cluster server's CA private key lives (tasks/certs.py): never in clear in the
state directory once the node certificates are signed. Encrypted with `ca_passphrase` (a secret
reference) when one is given, else deleted after signing; the operator's own CA (`provided-ca`) is
read where it lies and never copied. A resumed run still signs what is left with the same CA."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from esremote.errors import CertificateError
from esremote.params import MigrationParams
from esremote.pki import CertificateAuthority, EC_P256, key_to_pem_aes128, load_pkcs12
from esremote.tasks import certs as cert_tasks
from esremote.tasks.runtime import close_run, open_run
from tests.test_scale import _inventory

PASSPHRASE = "ca-Passphrase-7731"
CLEAR_KEY = re.compile(rb"-----BEGIN (RSA |EC )?PRIVATE KEY-----")


@pytest.fixture
def run_with(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_TEST_CA_PASSPHRASE", PASSPHRASE)
    opened = []

    def make(**params):
        opened.append(open_run(MigrationParams(inventory=_inventory(tmp_path, 2), state_dir=tmp_path / "state",
                                               **params)))
        return opened[-1]

    yield make
    for run in opened:
        close_run(run.id)


def sign(run, nodes=None) -> Path:
    keys = [str(n) for n in run.nodes("remote")] if nodes is None else nodes
    return Path(cert_tasks.make_certificates.fn(run.id, "remote", keys))


def issuer_of(run, node: str) -> bytes:
    """The CA certificate a node's PKCS#12 trusts (its `ca` entry), as PEM."""
    from cryptography.hazmat.primitives.serialization import Encoding  # noqa: PLC0415

    password = cert_tasks.password_path(run, "remote").read_text()
    contents = load_pkcs12(cert_tasks.p12_path(run, "remote", node).read_bytes(), password)
    return contents.trusted["ca"].public_bytes(Encoding.PEM)


def clear_keys(run) -> list[str]:
    """Files of the run's directory that hold a private key in clear PEM."""
    return [str(p) for p in run.journal.run_dir.rglob("*") if p.is_file() and CLEAR_KEY.search(p.read_bytes())]


def test_without_a_passphrase_the_generated_key_is_gone_once_the_nodes_are_signed(run_with):
    run = run_with()
    ca_file = sign(run)
    assert not cert_tasks.ca_key_path(run, "remote").exists()
    assert clear_keys(run) == []
    assert issuer_of(run, "r0") == issuer_of(run, "r1") == ca_file.read_bytes()
    sign(run)  # a resumed run: every node is signed, no key needed
    # A node without its certificate now cannot be signed by this CA: said, and nothing is made.
    cert_tasks.p12_path(run, "remote", "r1").unlink()
    with pytest.raises(CertificateError, match="start a new run .* or give ca_passphrase"):
        sign(run)
    assert not cert_tasks.p12_path(run, "remote", "r1").exists()
    assert ca_file.read_bytes() == issuer_of(run, "r0")


def test_a_run_that_fails_while_signing_keeps_the_key_for_its_resume_which_then_deletes_it(run_with, monkeypatch):
    run = run_with()
    real = cert_tasks.issue

    def issue(ca, name, **kwargs):
        if name == "r1":
            raise OSError("disk full")
        return real(ca, name, **kwargs)

    monkeypatch.setattr(cert_tasks, "issue", issue)
    with pytest.raises(OSError):
        sign(run)
    assert cert_tasks.ca_key_path(run, "remote").exists()  # r1 still needs this CA
    monkeypatch.setattr(cert_tasks, "issue", real)
    ca_file = sign(run)
    assert issuer_of(run, "r1") == issuer_of(run, "r0") == ca_file.read_bytes()
    assert not cert_tasks.ca_key_path(run, "remote").exists() and clear_keys(run) == []


def test_with_a_passphrase_the_key_is_kept_encrypted_and_signs_again(run_with):
    run = run_with(ca_passphrase={"env": "ESR_TEST_CA_PASSPHRASE"})
    ca_file = sign(run)
    key = cert_tasks.ca_key_path(run, "remote")
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert clear_keys(run) == []
    assert CertificateAuthority.load(ca_file.read_bytes(), key.read_bytes(), PASSPHRASE).cert_pem() == ca_file.read_bytes()
    cert_tasks.p12_path(run, "remote", "r1").unlink()
    sign(run)  # a node that needs a certificate later gets one from the same CA
    assert issuer_of(run, "r1") == ca_file.read_bytes()


def test_an_empty_passphrase_is_refused_by_its_reference(run_with, monkeypatch):
    monkeypatch.setenv("ESR_TEST_CA_PASSPHRASE", "")
    run = run_with(ca_passphrase={"env": "ESR_TEST_CA_PASSPHRASE"})
    with pytest.raises(CertificateError, match="ca_passphrase: environment variable ESR_TEST_CA_PASSPHRASE is empty"):
        sign(run)
    assert sorted(p.name for p in cert_tasks.pki_dir(run, "remote").iterdir()) == ["p12-password"]


@pytest.fixture
def operator_ca(tmp_path) -> tuple[CertificateAuthority, Path, Path, Path]:
    """The operator's CA as certutil writes it (`ca --pem --pass`): AES-128-CBC key, passphrase in a file."""
    ca = CertificateAuthority.create("CN=Operator CA", key_size=EC_P256)
    cert, key, phrase = tmp_path / "op-ca.crt", tmp_path / "op-ca.key", tmp_path / "op-ca.pass"
    cert.write_bytes(ca.cert_pem())
    key.write_bytes(key_to_pem_aes128(ca.key, PASSPHRASE))
    phrase.write_text(PASSPHRASE + "\n")
    return ca, cert, key, phrase


def test_provided_ca_signs_with_the_operators_encrypted_key_and_never_copies_it(run_with, operator_ca):
    ca, cert, key, phrase = operator_ca
    run = run_with(certificate_strategy="provided-ca", ca_cert_file=cert, ca_key_file=key,
                   ca_passphrase={"file": str(phrase)})
    ca_file = sign(run)
    assert ca_file.read_bytes() == ca.cert_pem() == issuer_of(run, "r0") == issuer_of(run, "r1")
    assert not cert_tasks.ca_key_path(run, "remote").exists() and clear_keys(run) == []
    cert_tasks.p12_path(run, "remote", "r1").unlink()
    sign(run)  # the operator's key is read again where it lies
    assert issuer_of(run, "r1") == ca.cert_pem()


@pytest.mark.parametrize("passphrase, message", [
    (None, r"ca_key_file: .*op-ca.key is encrypted; give ca_passphrase"),
    ("not-the-one", r"ca_cert_file/ca_key_file .*cannot decrypt the CA private key: wrong passphrase; check ca_passphrase"),
])
def test_provided_ca_without_its_passphrase_is_named_and_makes_nothing(run_with, operator_ca, tmp_path, passphrase,
                                                                      message):
    _, cert, key, _ = operator_ca
    extra = {}
    if passphrase is not None:
        (tmp_path / "wrong").write_text(passphrase)
        extra["ca_passphrase"] = {"file": str(tmp_path / "wrong")}
    run = run_with(certificate_strategy="provided-ca", ca_cert_file=cert, ca_key_file=key, **extra)
    with pytest.raises(CertificateError, match=message) as caught:
        sign(run)
    assert PASSPHRASE not in str(caught.value) and "not-the-one" not in str(caught.value)
    assert not list(cert_tasks.pki_dir(run, "remote").glob("*.p12"))
