"""The remote cluster server's certificates: a CA per remote cluster (new, or the operator's), one
PKCS#12 per node with its address in the subject alternative names, and a random PKCS#12 password.
They are kept in the run's directory (0600, directory 0700), so a resumed run reuses them instead of
minting certificates that the nodes do not have.

    run_dir/pki/<remote>/ca.crt, <node>.p12, p12-password, and ca.key only as below
    run_dir/pki/<remote>/signing-<alias>.crt/.key   strong identity: the local cluster's signing
                                                    certificate for the alias, signed by this CA

The CA's private key never stays in clear in the state directory:
- with `ca_passphrase` (a secret reference) a generated CA's key is written encrypted with it
  (PKCS#8, PBES2) and kept, so a resumed run, or the operator later, can sign with the same CA;
- without it the key is written in clear (0600) only while the node certificates are signed, and
  deleted as soon as every node that needs one has its PKCS#12: nothing after that signs (the
  nodes get the p12 files, the local nodes the CA certificate), so a resume needs no key;
- with `provided-ca` the operator's key file is read where it lies, each time the run signs, and
  never copied (its passphrase, if it is encrypted, comes from `ca_passphrase`).
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from prefect import task

from esremote.errors import CertificateError
from esremote.fanout import fan_out
from esremote.files import atomic_write
from esremote.node_settings import SERVER_CA
from esremote.pki import CertificateAuthority, issue, signing_dn, to_pkcs12
from esremote.redact import default_redactor
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.nodes import read_text
from esremote.tasks.runtime import Run, get_run

CA_DN = "CN=esremote remote cluster CA {cluster}"


def pki_dir(run: Run, cluster: str) -> Path:
    base = run.journal.run_dir / "pki"
    base.mkdir(mode=0o700, exist_ok=True)
    path = base / cluster
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def ca_cert_path(run: Run, cluster: str) -> Path:
    return pki_dir(run, cluster) / "ca.crt"


def p12_path(run: Run, cluster: str, node: str) -> Path:
    return pki_dir(run, cluster) / f"{node}.p12"


def password_path(run: Run, cluster: str) -> Path:
    return pki_dir(run, cluster) / "p12-password"


def signing_paths(run: Run, cluster: str, alias: str) -> tuple[Path, Path]:
    """The signing certificate and key of the alias's local cluster, signed by `cluster`'s CA."""
    base = pki_dir(run, cluster)
    return base / f"signing-{alias}.crt", base / f"signing-{alias}.key"


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def ca_key_path(run: Run, cluster: str) -> Path:
    return pki_dir(run, cluster) / "ca.key"


def ca_passphrase(run: Run) -> str | None:
    """The CA key's passphrase, resolved from its reference (and masked in logs), or None."""
    ref = run.params.ca_passphrase
    if ref is None:
        return None
    value = ref.resolve().get_secret_value()
    if not value:
        raise CertificateError(f"ca_passphrase: {ref.describe()} is empty; put the CA key's passphrase there")
    default_redactor.add(value)
    return value


def _load_or_make_ca(run: Run, cluster: str) -> CertificateAuthority:
    cert, key = ca_cert_path(run, cluster), ca_key_path(run, cluster)
    passphrase = ca_passphrase(run)
    if run.params.certificate_strategy == "provided-ca":
        ca = _provided_ca(run.params, passphrase)
        if not cert.exists():
            _write(cert, ca.cert_pem())
        return ca
    if cert.exists() and key.exists():  # a resumed run signs with the CA it made
        return CertificateAuthority.load(cert.read_bytes(), key.read_bytes(), passphrase)
    if cert.exists():
        raise CertificateError(
            f"run {run.id} deleted the private key of {cluster}'s CA once its node certificates were signed, and "
            "now a node needs a new one: start a new run (a new CA for every node of the cluster), or give "
            "ca_passphrase so that a run keeps its CA key, encrypted")
    ca = CertificateAuthority.create(CA_DN.format(cluster=cluster))
    # The key before the certificate: a certificate without its key means the key was deleted after signing.
    _write(key, ca.sealed_key_pem(passphrase) if passphrase else ca.key_pem())
    _write(cert, ca.cert_pem())
    return ca


def _provided_ca(params, passphrase: str | None) -> CertificateAuthority:
    """The operator's CA, read from their files (a wrong or missing passphrase is named, never shown)."""
    cert_file, key_file = Path(params.ca_cert_file), Path(params.ca_key_file)
    data = {}
    for name, path in (("ca_cert_file", cert_file), ("ca_key_file", key_file)):
        try:
            data[name] = path.read_bytes()
        except OSError as exc:
            raise CertificateError(f"{name}: {path} cannot be read ({exc.strerror}); check the path and that "
                                   "this user may read it") from None
    if b"ENCRYPTED" in data["ca_key_file"] and passphrase is None:
        raise CertificateError(f"ca_key_file: {key_file} is encrypted; give ca_passphrase, a reference to where "
                               "its passphrase lives ({env: NAME}, {file: PATH} or {prefect: BLOCK})")
    try:
        return CertificateAuthority.load(data["ca_cert_file"], data["ca_key_file"], passphrase)
    except CertificateError as exc:
        hint = "; check ca_passphrase" if "passphrase" in str(exc) else ""
        raise CertificateError(f"ca_cert_file/ca_key_file ({cert_file}, {key_file}): {exc}{hint}") from None


def _drop_clear_key(run: Run, cluster: str) -> None:
    """Delete a generated CA's key kept in clear: once every node that needs a certificate has its
    PKCS#12, nothing in this run signs again. An encrypted key (ca_passphrase) is kept."""
    key = ca_key_path(run, cluster)
    if key.exists() and b"ENCRYPTED" not in key.read_bytes():
        key.unlink()


@task(name="make-certificates", task_run_name="make-certificates-{cluster}", **RETRYING)
def make_certificates(run_id: str, cluster: str, nodes_needing: list[str],
                      signing: list[list[str]] | None = None) -> str:
    """CA (reused when the run or the nodes already have one) and a p12 for each node that needs
    one; with strong identity, a signing certificate for each `[alias, local cluster]` of
    `signing`. Returns the CA certificate's path."""
    run = get_run(run_id)
    log = run_logger()
    password_file = password_path(run, cluster)
    if not password_file.exists():
        _write(password_file, secrets.token_urlsafe(24).encode())
    password = password_file.read_text()
    default_redactor.add(password)
    unsigned = [(alias, local) for alias, local in signing or () if not signing_paths(run, cluster, alias)[0].exists()]
    if not nodes_needing and not unsigned:
        ensure_ca_known(run, cluster)
        _drop_clear_key(run, cluster)
        return str(ca_cert_path(run, cluster))
    missing = [node for node in (run.node(key) for key in nodes_needing)
               if not p12_path(run, cluster, node.name).exists()]
    if not missing and not unsigned and ca_cert_path(run, cluster).exists():  # a resumed run: all signed already
        _drop_clear_key(run, cluster)
        return str(ca_cert_path(run, cluster))
    if not nodes_needing:
        _ca_signs_again(run, cluster)
    ca = _load_or_make_ca(run, cluster)
    for alias, local in unsigned:
        _signing_certificate(run, cluster, ca, alias, local)
        log.info("signing certificate %s for %s (alias %s) signed by %s", signing_dn(local, alias), local, alias,
                 ca.subject)
    # One key pair and PKCS#12 per node, independent of the others: made side by side (the RSA key
    # generation runs in OpenSSL, without the GIL), as many at once as the run handles nodes.
    made = fan_out(missing, lambda node: _node_p12(run, cluster, ca, password, node),
                   max_workers=run.params.max_parallel)
    for error in made.failed.values():  # a local failure (disk, key): the first one, as it was raised
        raise error
    for node, names in made.items():  # logged here: a worker thread has no Prefect run logger
        log.info("certificate for %s (%s) signed by %s", node, ", ".join(names), ca.subject)
    _drop_clear_key(run, cluster)
    return str(ca_cert_path(run, cluster))


def _ca_signs_again(run: Run, cluster: str) -> None:
    """The remote cluster server is an earlier run's: only that CA's key can sign what its nodes
    trust, and a generated CA's key is gone unless ca_passphrase kept it."""
    ensure_ca_known(run, cluster)
    if run.params.certificate_strategy == "generate" and not ca_key_path(run, cluster).exists():
        raise CertificateError(
            f"strong_identity: the remote cluster server of {cluster} was set up before this run, and its CA's key "
            "is not here to sign the local clusters' signing certificates: give certificate_strategy provided-ca "
            "with that CA (ca_cert_file, ca_key_file)")


def _signing_certificate(run: Run, cluster: str, ca: CertificateAuthority, alias: str, local: str) -> None:
    """The local cluster's signing certificate for `alias`: the key first (0600), then the
    certificate, whose presence says the pair is complete."""
    issued = issue(ca, signing_dn(local, alias))
    cert, key = signing_paths(run, cluster, alias)
    _write(key, issued.key_pem())
    _write(cert, issued.cert_pem())


def _node_p12(run: Run, cluster: str, ca: CertificateAuthority, password: str, node) -> list[str]:
    """The node's certificate (its name and address as subject alternative names) in a PKCS#12
    file of the run's directory; returns the names it holds."""
    dns, ips = [node.name], []
    try:
        ips.append(str(ipaddress.ip_address(node.address)))
    except ValueError:
        dns.append(node.address)
    cert = issue(ca, node.name, dns=dns, ips=ips)
    _write(p12_path(run, cluster, node.name), to_pkcs12(cert, ca, password, name=node.name))
    return dns + ips


def ensure_ca_known(run: Run, cluster: str) -> Path:
    """The CA of a remote cluster server set up by an earlier run: read its public copy on a node."""
    path = ca_cert_path(run, cluster)
    if path.exists():
        return path
    for node in run.nodes(cluster):
        data = read_text(run, str(node), str(node.config_dir / SERVER_CA))
        if data:
            _write(path, data)
            return path
    raise FileNotFoundError(f"no CA certificate for the remote cluster server of {cluster}: neither this run "
                            f"nor the nodes ({SERVER_CA}) have one")
