"""TLS probes of the remote cluster server port (9443) from the orchestrator.

A probe is a real TLS handshake, as a local node will make it: the server's chain must verify
against the new remote-cluster CA and its certificate must name the address used (a DNS or IP
subject alternative name). When it fails, a second, unverified handshake fetches the certificate
the node does present, so the message can say what it holds instead.

    results = probe_remote_cluster(inventory, "remote", ca_pem)   # ProbeError if any node fails
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from esremote.errors import CertificateError
from esremote.fanout import fan_out
from esremote.inventory import Inventory

__all__ = ["ProbeError", "ProbeResult", "probe_remote_cluster", "probe_tls"]

# OpenSSL verify codes (x509_vfy.h) that mean "the certificate does not name this host".
_NAME_MISMATCH = {62, 63, 64}
_EXPIRED = {9, 10}


@dataclass(frozen=True)
class ProbeResult:
    node: str
    address: str
    port: int
    ok: bool
    problem: str = ""            # refused | timeout | untrusted | name | expired | handshake
    detail: str = ""
    subject: str = ""
    issuer: str = ""
    names: tuple[str, ...] = field(default=())   # the certificate's SANs, "DNS:x" / "IP:y"
    tls_version: str = ""

    def __str__(self) -> str:
        return f"{self.node} ({self.address}:{self.port}): " + ("ok" if self.ok else self.detail)


class ProbeError(CertificateError):
    """At least one node failed its TLS probe; `results` holds every node's."""

    def __init__(self, results: Sequence[ProbeResult]) -> None:
        failed = [r for r in results if not r.ok]
        super().__init__(f"TLS probe of the remote cluster port failed on {len(failed)} of {len(results)} "
                         "node(s):\n" + "\n".join(f"- {r}" for r in failed))
        self.results = list(results)
        self.transient = all(r.problem == "timeout" for r in failed)


def probe_remote_cluster(inventory: Inventory, cluster: str, ca: bytes | str | Path, *,
                         addresses: Mapping[str, str] | None = None, timeout: float = 10.0,
                         check: bool = True, max_workers: int = 8) -> list[ProbeResult]:
    """Probe every node of `cluster` on its `remote_cluster_port`, `max_workers` at a time;
    `addresses` overrides a node's address (node name -> the host the local cluster will use).
    Raises `ProbeError` when `check`."""
    port = inventory.cluster(cluster).remote_cluster_port
    ca_pem = _ca_pem(ca)
    nodes = inventory.nodes(cluster)
    results = fan_out(nodes, lambda n: probe_tls((addresses or {}).get(n.name, n.address), port, ca_pem,
                                                 node=str(n), timeout=timeout), max_workers=max_workers)
    ordered = [results[n] for n in nodes]
    if check and not all(r.ok for r in ordered):
        raise ProbeError(ordered)
    return ordered


def probe_tls(address: str, port: int, ca: bytes | str | Path, *, node: str = "", timeout: float = 10.0) -> ProbeResult:
    """One handshake with `address:port`, verifying the chain against `ca` and the name `address`."""
    node = node or address
    context = ssl.create_default_context(cadata=_ca_pem(ca).decode("ascii"))
    base = {"node": node, "address": address, "port": port}
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=address) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            return ProbeResult(**base, ok=True, tls_version=tls.version() or "", **_describe(cert))
    except ssl.SSLCertVerificationError as exc:
        return _verification_failure(base, exc, timeout)
    except ssl.SSLError as exc:
        return ProbeResult(**base, ok=False, problem="handshake",
                           detail=f"TLS handshake failed ({exc.reason or exc}): is this port served by "
                                  "the remote cluster server with xpack.security.remote_cluster_server.ssl "
                                  "enabled?")
    except ConnectionRefusedError:
        return ProbeResult(**base, ok=False, problem="refused",
                           detail=f"nothing listens on {address}:{port}: set remote_cluster_server.enabled: "
                                  "true and remote_cluster.host on this node, then restart it")
    except TimeoutError:
        return ProbeResult(**base, ok=False, problem="timeout",
                           detail=f"no answer from {address}:{port} within {timeout:g}s: check firewalls "
                                  "between this machine and the node")
    except OSError as exc:
        return ProbeResult(**base, ok=False, problem="refused",
                           detail=f"cannot connect to {address}:{port}: {exc.strerror or exc}")


def _verification_failure(base: dict, exc: ssl.SSLCertVerificationError, timeout: float) -> ProbeResult:
    presented = _peek(base["address"], base["port"], timeout)
    about = _describe(presented) if presented is not None else {}
    code, message = exc.verify_code, exc.verify_message or str(exc)
    if code in _NAME_MISMATCH:
        names = ", ".join(about.get("names", ())) or "none"
        return ProbeResult(**base, ok=False, problem="name", **about,
                           detail=f"the certificate does not name {base['address']} (its subject alternative "
                                  f"names: {names}): issue it with {_san_for(base['address'])}")
    if code in _EXPIRED:
        return ProbeResult(**base, ok=False, problem="expired", **about,
                           detail=f"the certificate is not valid now ({message}): issue a new one")
    issuer = about.get("issuer") or "an unknown issuer"
    return ProbeResult(**base, ok=False, problem="untrusted", **about,
                       detail=f"the certificate chain does not verify against the new CA ({message}); it is "
                              f"issued by {issuer}: install the node certificate signed by the new CA")


def _peek(address: str, port: int, timeout: float) -> x509.Certificate | None:
    """The certificate the server presents, without verifying it (only to describe a failure)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=address) as tls:
            der = tls.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der) if der else None
    except (OSError, ValueError):
        return None


def _describe(cert: x509.Certificate) -> dict:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple([f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
                      + [f"IP:{ip}" for ip in san.get_values_for_type(x509.IPAddress)])
    except x509.ExtensionNotFound:
        names = ()
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(), "names": names}


def _san_for(address: str) -> str:
    try:
        ipaddress.ip_address(address)
        return f"an IP SAN {address}"
    except ValueError:
        return f"a DNS SAN {address}"


def _ca_pem(ca: bytes | str | Path) -> bytes:
    if isinstance(ca, Path) or (isinstance(ca, str) and "-----BEGIN" not in ca):
        try:
            return Path(ca).read_bytes()
        except OSError as exc:
            raise CertificateError(f"cannot read the CA certificate {ca}: {exc.strerror}") from None
    data = ca.encode("ascii") if isinstance(ca, str) else ca
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("the CA for the probe must be a PEM certificate")
    return data
