"""The remote cluster server's certificates: a CA per remote cluster (new, or the operator's), one
PKCS#12 per node with its address in the subject alternative names, and a random PKCS#12 password.
Everything is kept in the run's directory (0600, directory 0700), so a resumed run reuses it
instead of minting certificates that the nodes do not have.

    run_dir/pki/<remote>/ca.crt, ca.key, <node>.p12, p12-password
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path

from prefect import task

from esremote.fanout import fan_out
from esremote.files import atomic_write
from esremote.pki import CertificateAuthority, issue, to_pkcs12
from esremote.plan import SERVER_CA
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


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def _load_or_make_ca(run: Run, cluster: str) -> CertificateAuthority:
    directory = pki_dir(run, cluster)
    cert, key = directory / "ca.crt", directory / "ca.key"
    if cert.exists() and key.exists():
        return CertificateAuthority.load(cert.read_bytes(), key.read_bytes())
    params = run.params
    if params.certificate_strategy == "provided-ca":
        ca = CertificateAuthority.load(Path(params.ca_cert_file).read_bytes(), Path(params.ca_key_file).read_bytes())
    else:
        ca = CertificateAuthority.create(CA_DN.format(cluster=cluster))
    _write(key, ca.key_pem())
    _write(cert, ca.cert_pem())
    return ca


@task(name="make-certificates", task_run_name="make-certificates-{cluster}", **RETRYING)
def make_certificates(run_id: str, cluster: str, nodes_needing: list[str]) -> str:
    """CA (reused when the run or the nodes already have one) and a p12 for each node that needs
    one. Returns the CA certificate's path."""
    run = get_run(run_id)
    log = run_logger()
    password_file = password_path(run, cluster)
    if not password_file.exists():
        _write(password_file, secrets.token_urlsafe(24).encode())
    password = password_file.read_text()
    default_redactor.add(password)
    if not nodes_needing:
        ensure_ca_known(run, cluster)
        return str(ca_cert_path(run, cluster))
    ca = _load_or_make_ca(run, cluster)
    missing = [node for node in (run.node(key) for key in nodes_needing)
               if not p12_path(run, cluster, node.name).exists()]
    # One key pair and PKCS#12 per node, independent of the others: made side by side (the RSA key
    # generation runs in OpenSSL, without the GIL), as many at once as the run handles nodes.
    made = fan_out(missing, lambda node: _node_p12(run, cluster, ca, password, node),
                   max_workers=run.params.max_parallel)
    for error in made.failed.values():  # a local failure (disk, key): the first one, as it was raised
        raise error
    for node, names in made.items():  # logged here: a worker thread has no Prefect run logger
        log.info("certificate for %s (%s) signed by %s", node, ", ".join(names), ca.subject)
    return str(ca_cert_path(run, cluster))


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
