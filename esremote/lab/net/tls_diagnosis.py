"""TLS failures described the way Elasticsearch logs them (es-facts §9): the alert a real OpenSSL
handshake ended with, read on each side, and the certificate a server really presents."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from esremote.lab.net.protocol import PKIX_FAILURE

def tls_alert(exc: BaseException) -> str:
    """OpenSSL's reason for a TLS failure (`TLSV1_ALERT_UNKNOWN_CA`, ...), or ''."""
    if not isinstance(exc, ssl.SSLError):
        return ""
    return getattr(exc, "reason", None) or ""


_CLIENT_DID_NOT_TRUST = {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                         "SSLV3_ALERT_BAD_CERTIFICATE"}
_NO_CLIENT_CERT = {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}
CERT_REQUIRED_ALERTS = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}



def server_tls_failure(exc: BaseException, channel: str) -> str | None:
    """What the server side logs when a handshake fails (None: stay quiet, like a dropped probe)."""
    alert = tls_alert(exc)
    if alert in _CLIENT_DID_NOT_TRUST:
        return f"client did not trust this server's certificate, closing connection {channel}"
    if alert in _NO_CLIENT_CERT:
        return (f"exception caught on transport layer [{channel}], closing connection\n"
                "javax.net.ssl.SSLHandshakeException: Empty client certificate chain")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"exception caught on transport layer [{channel}], closing connection\n"
                f"javax.net.ssl.SSLHandshakeException: {PKIX_FAILURE}")
    if alert in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL"):
        return (f"received plaintext traffic on an encrypted channel, closing connection {channel}")
    return None


@dataclass(frozen=True)
class PeerCertificate:
    subject: str
    issuer: str
    fingerprint: str
    sans: list[str]
    usage: str  # "keyUsage [..] and extendedKeyUsage [..]", as the diagnosis words it


def peek_server_certificate(host: str, port: int, timeout: float = 5.0) -> PeerCertificate | None:
    """The certificate a TLS server presents, read without finishing the handshake.

    Used only to describe a trust failure the way Elasticsearch's DiagnosticTrustManager does:
    the server's first flight is read through a memory BIO and the client's answer is never
    sent, so the server sees a dropped handshake (which it does not log) rather than a second
    client that presents no certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pending = outgoing.read()
                    if pending:
                        sock.sendall(pending)
                    data = sock.recv(65536)
                    if not data:
                        return None
                    incoming.write(data)
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return _describe_der(der) if der else None


def _describe_der(der: bytes) -> PeerCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
        sans += [f"DNS:{name}" for name in ext.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return PeerCertificate(
        subject=_java_dn(cert.subject), issuer=_java_dn(cert.issuer),
        fingerprint=cert.fingerprint(hashes.SHA1()).hex(), sans=sans, usage=_usage(cert))


def _usage(cert) -> str:
    from cryptography import x509

    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        names = [n for n in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                             "key_agreement", "key_cert_sign", "crl_sign") if getattr(ku, n)]
        key_usage = "keyUsage [" + ", ".join(_camel(n) for n in names) + "]"
    except x509.ExtensionNotFound:
        key_usage = "no keyUsage"
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        extended = "extendedKeyUsage [" + ", ".join(_camel(o._name) for o in eku) + "]"
    except x509.ExtensionNotFound:
        extended = "no extendedKeyUsage"
    return f"{key_usage} and {extended}"


def _camel(name: str) -> str:
    head, *rest = name.replace(" ", "_").split("_")
    return head + "".join(part.title() for part in rest)


def _java_dn(name) -> str:
    """Java prints DNs most-specific first with ", " between parts (RFC 2253 order)."""
    return ", ".join(name.rfc4514_string().split(","))


