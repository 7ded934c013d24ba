"""The client side of a transport connection: connect, TLS, the handshakes, requests and the
failures Elasticsearch reports for each (ConnectTransportException, handshake and trust failures)."""

from __future__ import annotations

import socket
import ssl
import threading
import time

from esremote.lab.errors import ESError
from esremote.lab.net.protocol import (HANDSHAKE_TIMEOUT, LinkClosed, PKIX_FAILURE, TCP_HANDSHAKE, error_from_wire,
                                       recv_frame, send_frame)
from esremote.lab.net.tls_diagnosis import CERT_REQUIRED_ALERTS, peek_server_certificate, tls_alert

class TransportFailure(Exception):
    """A connection attempt or request that failed below the application: `error` is what a
    REST response shows, `log_text` what the local node logs (exception class and message)."""

    def __init__(self, error: ESError, log_text: str, diagnosis: str | None = None) -> None:
        super().__init__(error.reason)
        self.error = error
        self.log_text = log_text
        self.diagnosis = diagnosis  # DiagnosticTrustManager's line, logged before log_text


def connect_failure(host: str, port: int, detail: str) -> TransportFailure:
    reason = f"[][{host}:{port}] connect_exception"
    error = ESError(reason, status=500, type="connect_transport_exception", caused_by=ESError(
        f"{detail}: /{host}:{port}", type="annotated_connect_exception"))
    return TransportFailure(error, f"org.elasticsearch.transport.ConnectTransportException: {reason}\n"
                                   f"Caused by: io.netty.channel.AbstractChannel$AnnotatedConnectException: "
                                   f"{detail}: /{host}:{port}")


def handshake_failure(host: str, port: int, message: str) -> TransportFailure:
    """A TLS handshake that failed: Elasticsearch reports a ConnectTransportException caused by
    an SSLHandshakeException (whose type renders as `s_s_l_handshake_exception`)."""
    reason = f"[][{host}:{port}] general node connection failure"
    error = ESError(reason, status=500, type="connect_transport_exception",
                    caused_by=ESError(message, type="s_s_l_handshake_exception"))
    return TransportFailure(error, f"org.elasticsearch.transport.ConnectTransportException: {reason}\n"
                                   f"Caused by: javax.net.ssl.SSLHandshakeException: {message}")


def closed_failure(host: str, port: int) -> TransportFailure:
    """The server closed the connection before the handshakes finished (a plaintext port reading
    TLS, an IP filter that denies this node): TcpTransport fails the connection with the
    handshaker's TransportException as its cause."""
    reason = f"[][{host}:{port}] general node connection failure"
    cause = "handshake failed because connection reset"
    error = ESError(reason, status=500, type="connect_transport_exception",
                    caused_by=ESError(cause, type="transport_exception"))
    return TransportFailure(error, f"org.elasticsearch.transport.ConnectTransportException: {reason}\n"
                                   f"Caused by: org.elasticsearch.transport.TransportException: {cause}")


def trust_failure(host: str, port: int, context_text: str, trusted: int) -> TransportFailure:
    """The server's certificate is not trusted: DiagnosticTrustManager's explanation + PKIX."""
    peer = peek_server_certificate(host, port)
    if peer is None:
        described = f"failed to establish trust with server at [{host}]"
    else:
        described = (f"failed to establish trust with server at [{host}]; the server provided a "
                     f"certificate with subject name [{peer.subject}], fingerprint [{peer.fingerprint}], "
                     f"{peer.usage}; the certificate has subject alternative names "
                     f"[{','.join(peer.sans)}]; the certificate is issued by [{peer.issuer}]")
    described += (f" but this ssl context ([{context_text}]) is not configured to trust that "
                  f"issuer but trusts [{trusted}] other issuers")
    failure = handshake_failure(host, port, PKIX_FAILURE)
    failure.diagnosis = described
    return failure


def hostname_failure(host: str, port: int) -> TransportFailure:
    kind = "IP address" if _is_ip(host) else "DNS name"
    text = (f"No subject alternative names matching {kind} {host} found" if kind == "IP address"
            else f"No subject alternative DNS name matching {host} found.")
    return handshake_failure(host, port, f"java.security.cert.CertificateException: {text}")


def _is_ip(host: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def classify_client_tls(exc: BaseException, host: str, port: int, context_text: str,
                        trusted: int) -> TransportFailure:
    """Map what OpenSSL said on the client side to what Elasticsearch would log and answer."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if getattr(exc, "verify_code", None) in (62, 64):  # X509_V_ERR_HOSTNAME / IP_ADDRESS_MISMATCH
            return hostname_failure(host, port)
        return trust_failure(host, port, context_text, trusted)
    alert = tls_alert(exc)
    if alert in CERT_REQUIRED_ALERTS or alert == "SSLV3_ALERT_BAD_CERTIFICATE":
        return handshake_failure(host, port, "Received fatal alert: bad_certificate")
    if alert in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"):
        return handshake_failure(host, port, "Received fatal alert: certificate_unknown")
    if alert == "WRONG_VERSION_NUMBER":
        return handshake_failure(host, port, "Unsupported or unrecognized SSL message")
    if isinstance(exc, ssl.SSLEOFError) or alert in ("", "UNEXPECTED_EOF_WHILE_READING"):
        return handshake_failure(host, port, "Remote host terminated the handshake")
    return handshake_failure(host, port, f"Received fatal alert: {alert.rsplit('ALERT_', 1)[-1].lower()}")


class Connection:
    """One live TLS socket to a remote node; requests are sent one at a time."""

    def __init__(self, sock: ssl.SSLSocket, host: str, port: int, profile: str) -> None:
        self.sock = sock
        self.host, self.port, self.profile = host, port, profile
        self.remote_version: str | None = None
        self.remote_node: dict = {}
        self.remote_cluster_name: str | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return not self._closed

    @classmethod
    def open(cls, host: str, port: int, context: ssl.SSLContext | None, *, profile: str,
             server_hostname: str | None = None, timeout: float = HANDSHAKE_TIMEOUT,
             context_text: str = "", local_version: str = "", source: str | None = None) -> Connection:
        """TCP connect, TLS handshake and `internal:tcp/handshake`; raises TransportFailure.
        `context` None is a plaintext connection (the profile's `ssl.enabled: false`). `source` is
        the connecting node's own address: on loopback the kernel would pick 127.0.0.1 for every
        node, while a real node connects from its host's address (what the peer's IP filter sees)."""
        try:
            raw = socket.create_connection((host, port), timeout=timeout,
                                           source_address=(source, 0) if source else None)
        except ConnectionRefusedError:
            raise connect_failure(host, port, "Connection refused") from None
        except ConnectionResetError:  # accepted, then reset before connect() returned (an IP filter's
            raise closed_failure(host, port) from None  # close can win that race on loopback)
        except TimeoutError:
            raise connect_failure(host, port, "connection timed out") from None
        except OSError as exc:
            raise connect_failure(host, port, exc.strerror or str(exc)) from None
        if context is None:
            return cls._handshake_versions(raw, host, port, profile, local_version, timeout, context_text, 0)
        trusted = len(context.get_ca_certs())
        try:
            sock = context.wrap_socket(raw, server_hostname=server_hostname or host)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raw.close()
            raise classify_client_tls(exc, host, port, context_text, trusted) from None
        except OSError:
            raw.close()
            raise closed_failure(host, port) from None
        return cls._handshake_versions(sock, host, port, profile, local_version, timeout, context_text, trusted)

    @classmethod
    def _handshake_versions(cls, sock: socket.socket, host: str, port: int, profile: str, local_version: str,
                            timeout: float, context_text: str, trusted: int) -> Connection:
        conn = cls(sock, host, port, profile)
        try:
            answer = conn.request(TCP_HANDSHAKE, {"version": local_version}, timeout=timeout)
        except ssl.SSLError as exc:  # TLS 1.3: a refused client certificate shows up on first read
            conn.close()
            raise classify_client_tls(exc, host, port, context_text, trusted) from None
        except (LinkClosed, OSError, ValueError):  # ValueError: a TLS server's bytes read as plaintext
            conn.close()
            raise closed_failure(host, port) from None
        conn.remote_version = answer.get("version")
        conn.remote_cluster_name = answer.get("cluster_name")
        return conn

    def request(self, action: str, body: dict | None = None, headers: dict | None = None,
                timeout: float = 30.0) -> dict:
        """Send one request and wait for its answer. Remote errors raise ESError; a broken link
        raises LinkClosed/OSError/ssl.SSLError (and closes this connection)."""
        with self._lock:
            if self._closed:
                raise LinkClosed("connection already closed")
            self._next_id += 1
            message = {"type": "request", "id": self._next_id, "action": action,
                       "headers": headers or {}, "body": body or {}}
            try:
                self.sock.settimeout(timeout)
                send_frame(self.sock, message)
                answer = recv_frame(self.sock)
            except BaseException:
                self._close_locked()
                raise
        if "error" in answer:
            raise error_from_wire(answer["error"])
        return answer.get("body", {})

    def ping(self, timeout: float = 5.0) -> bool:
        """True when the peer answers a keep-alive; a dead link is closed."""
        if not self._lock.acquire(timeout=timeout):
            return not self._closed  # busy with a request: alive enough
        try:
            if self._closed:
                return False
            self.sock.settimeout(timeout)
            send_frame(self.sock, {"type": "ping"})
            return recv_frame(self.sock).get("type") == "pong"
        except (OSError, ssl.SSLError, LinkClosed, ValueError):
            self._close_locked()
            return False
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


