"""A node's transport layer: the transport server (9300, mutual TLS), the remote-cluster server
(9443, server TLS + cross-cluster API key), the framed protocol both speak, and the client side
of a connection. The es-facts §9 failures happen here for real: a TLS handshake that fails is a
real OpenSSL failure, described on each side the way Elasticsearch logs it.

Protocol. Every frame is a 4-byte big-endian length and a JSON object:

    {"type": "request", "id": n, "action": "indices:data/read/search", "headers": {...}, "body": {...}}
    {"type": "response", "id": n, "body": {...}}  or  {"type": "response", "id": n, "error": {...}}
    {"type": "ping"} -> {"type": "pong"}           (keep-alive; the link notices a dead peer)

A connection starts with `internal:tcp/handshake` (versions, no authentication), then the cluster
handshake: `internal:transport/handshake` on 9300 (certificate model) or
`cluster:internal/remote_cluster/handshake` on 9443 (API-key model, credentials required).

`RemoteActions` (the end of this module) is what a node answers on both ports: handshakes, node
lists for sniffing, search, resolve and CCR shard changes, each authenticated and authorized the
way the port's model requires.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from esremote.lab.errors import ESError, SecurityError

TRANSPORT_PROFILE = "default"
REMOTE_CLUSTER_PROFILE = "_remote_cluster"

TCP_HANDSHAKE = "internal:tcp/handshake"
TRANSPORT_HANDSHAKE = "internal:transport/handshake"
REMOTE_CLUSTER_HANDSHAKE = "cluster:internal/remote_cluster/handshake"
CREDENTIALS_HEADER = "_cross_cluster_access_credentials"
SUBJECT_HEADER = "_cross_cluster_access_subject_info"
AUTHENTICATION_HEADER = "_xpack_security_authentication"

MAX_FRAME = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
PKIX_FAILURE = ("sun.security.validator.ValidatorException: PKIX path building failed: "
                "sun.security.provider.certpath.SunCertPathBuilderException: "
                "unable to find valid certification path to requested target")

_TRANSPORT_LOGGER = "o.e.x.s.t.n.SecurityNetty4ServerTransport"

# Index settings a CCR follower takes from its leader (the request's `settings` may override them).
FOLLOWER_COPIED_SETTINGS = ("index.number_of_shards", "index.number_of_replicas")


def es_log(ctx, level: int, logger: str, message: str) -> None:
    """One line in the node's Elasticsearch-format log, under Elasticsearch's logger name."""
    named = getattr(ctx, "logger", None)
    if callable(named):
        named(logger).log(level, message)


# ------------------------------------------------------------------------------ frames

class LinkClosed(Exception):
    """The peer closed the connection (or it broke) before a whole frame arrived."""


def send_frame(sock: socket.socket, message: dict) -> None:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise LinkClosed("connection closed by peer")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> dict:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    if size > MAX_FRAME:
        raise LinkClosed(f"frame of {size} bytes is larger than {MAX_FRAME}")
    return json.loads(_recv_exact(sock, size))


def error_to_wire(error: ESError) -> dict:
    wire = {"status": error.status, "type": error.type, "reason": error.reason, "extra": error.extra}
    if error.caused_by is not None:
        wire["caused_by"] = error_to_wire(error.caused_by)
    return wire


def error_from_wire(wire: dict) -> ESError:
    caused_by = error_from_wire(wire["caused_by"]) if wire.get("caused_by") else None
    return ESError(wire["reason"], status=wire.get("status", 500), type=wire.get("type", "exception"),
                   caused_by=caused_by, **wire.get("extra", {}))


# ------------------------------------------------------------------------------ TLS diagnosis

def tls_alert(exc: BaseException) -> str:
    """OpenSSL's reason for a TLS failure (`TLSV1_ALERT_UNKNOWN_CA`, ...), or ''."""
    if not isinstance(exc, ssl.SSLError):
        return ""
    return getattr(exc, "reason", None) or ""


_CLIENT_DID_NOT_TRUST = {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                         "SSLV3_ALERT_BAD_CERTIFICATE"}
_NO_CLIENT_CERT = {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}
_CERT_REQUIRED_ALERTS = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}


def channel_text(local: tuple, remote: tuple, profile: str) -> str:
    return (f"Netty4TcpChannel{{localAddress=/{local[0]}:{local[1]}, "
            f"remoteAddress=/{remote[0]}:{remote[1]}, profile={profile}}}")


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


# ------------------------------------------------------------------------------ client side

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
    reason = f"[][{host}:{port}] handshake failed because connection reset"
    error = ESError(reason, status=500, type="connect_transport_exception")
    return TransportFailure(error, f"org.elasticsearch.transport.ConnectTransportException: {reason}")


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
    if alert in _CERT_REQUIRED_ALERTS or alert == "SSLV3_ALERT_BAD_CERTIFICATE":
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
             context_text: str = "", local_version: str = "") -> Connection:
        """TCP connect, TLS handshake and `internal:tcp/handshake`; raises TransportFailure.
        `context` None is a plaintext connection (the profile's `ssl.enabled: false`)."""
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except ConnectionRefusedError:
            raise connect_failure(host, port, "Connection refused") from None
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


# ------------------------------------------------------------------------------ server side

Handler = Callable[["Channel", dict, dict], dict]


@dataclass
class Channel:
    """What a request handler knows about the connection it arrived on."""

    profile: str
    local: tuple
    remote: tuple

    def __str__(self) -> str:
        return channel_text(self.local, self.remote, self.profile)


class TransportServer:
    """A TLS server for one profile; each connection gets a thread that answers its frames."""

    def __init__(self, ctx, *, profile: str, host: str, port: int, context: ssl.SSLContext | None,
                 dispatch: Callable[[Channel, str, dict, dict], dict],
                 blocked: Callable[[], bool] = lambda: False) -> None:
        self.ctx = ctx
        self.profile = profile
        self.host, self.port = host, port
        self.context = context
        self.dispatch = dispatch
        self.blocked = blocked
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> TransportServer:
        self._bind()
        self._spawn(self._accept_loop, f"{self.profile}-accept")
        if self.profile == REMOTE_CLUSTER_PROFILE:
            self._spawn(self._watch_faults, f"{self.profile}-faults")
        return self

    def close(self) -> None:
        self._stop.set()
        self._unbind()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _hard_close(conn)

    def _bind(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener

    def _unbind(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # the remote-port-blocked fault: the port refuses connections while it is on -------------

    def _watch_faults(self) -> None:
        while not self._stop.wait(0.2):
            try:
                blocked = self.blocked()
            except Exception:  # a half-written faults.json: try again on the next tick
                continue
            with self._lock:
                listening = self._listener is not None
            if blocked and listening:
                self._unbind()
                with self._lock:
                    conns = list(self._conns)
                for conn in conns:
                    _hard_close(conn)
            elif not blocked and not listening and not self._stop.is_set():
                try:
                    self._bind()
                except OSError:
                    continue

    # connections ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stop.wait(0.05)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.2)
                if not ready:
                    continue
                raw, peer = listener.accept()
            except (OSError, ValueError):
                continue
            if self.blocked():
                _hard_close(raw)
                continue
            self._spawn(self._serve, f"{self.profile}-conn", raw, peer)

    def _serve(self, raw: socket.socket, peer: tuple) -> None:
        channel = Channel(self.profile, raw.getsockname(), peer)
        raw.settimeout(HANDSHAKE_TIMEOUT)
        conn = raw
        try:
            if self.context:
                conn = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                conn.do_handshake()
            else:
                conn = self._plaintext(raw, channel)
        except (ssl.SSLError, OSError) as exc:
            text = server_tls_failure(exc, str(channel)) or (
                str(exc) if str(exc).startswith("exception caught on transport layer") else None)
            if text and not self._stop.is_set():
                es_log(self.ctx, logging.WARNING, _TRANSPORT_LOGGER, text)
            _close_after_alert(conn)
            return
        conn.settimeout(None)
        with self._lock:
            self._conns.add(conn)
        try:
            self._answer_frames(conn, channel)
        finally:
            with self._lock:
                self._conns.discard(conn)
            _hard_close(conn)

    def _plaintext(self, raw: socket.socket, channel: Channel) -> socket.socket:
        """A server without TLS: a client that starts a TLS handshake is refused, as Elasticsearch
        refuses bytes that are not a transport message."""
        head = raw.recv(4, socket.MSG_PEEK)
        if head[:1] == b"\x16" and head[1:2] == b"\x03":
            got = ",".join(f"{b:x}" for b in head)
            raise OSError(f"exception caught on transport layer [{channel}], closing connection\n"
                          f"java.io.StreamCorruptedException: invalid internal transport message format, got ({got})")
        return raw

    def _answer_frames(self, conn: ssl.SSLSocket, channel: Channel) -> None:
        while not self._stop.is_set():
            try:
                frame = recv_frame(conn)
            except ssl.SSLError as exc:
                text = server_tls_failure(exc, str(channel))
                if text:
                    es_log(self.ctx, logging.WARNING, _TRANSPORT_LOGGER, text)
                return
            except (LinkClosed, OSError, ValueError):
                return
            if frame.get("type") == "ping":
                reply: dict = {"type": "pong"}
            else:
                reply = self._answer(channel, frame)
            try:
                send_frame(conn, reply)
            except OSError:
                return

    def _answer(self, channel: Channel, frame: dict) -> dict:
        reply: dict[str, Any] = {"type": "response", "id": frame.get("id")}
        try:
            reply["body"] = self.dispatch(channel, frame.get("action", ""), frame.get("headers") or {},
                                          frame.get("body") or {})
        except ESError as exc:
            reply["error"] = error_to_wire(exc)
        except Exception as exc:  # a bug in a handler: answer like Elasticsearch's 500, log it
            es_log(self.ctx, logging.ERROR, "o.e.t.TransportService",
                   f"failed to handle [{frame.get('action')}]: {exc!r}")
            reply["error"] = error_to_wire(ESError(str(exc), status=500, type="exception"))
        return reply


def _close_after_alert(sock: socket.socket, linger: float = 1.0) -> None:
    """Close a refused connection so the client reads the TLS alert: FIN after the alert, then
    drain what the client already sent (TLS 1.3 clients send their first request before the
    server checks their certificate); closing with unread bytes would send a reset, which can
    discard the alert before the client reads it."""
    deadline = time.monotonic() + linger
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    break  # the client read the alert and closed
            except TimeoutError:
                continue
    except OSError:
        pass
    _hard_close(sock)


def _hard_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def missing_credentials_error() -> ESError:
    return SecurityError(
        f"Cross cluster requests through the dedicated remote cluster server port require transport "
        f"header [{CREDENTIALS_HEADER}] but none found. Please ensure you have configured remote "
        "cluster credentials on the cluster originating the request.", status=401)


def start(ctx) -> list[TransportServer]:
    """Bind 9300 (always) and 9443 (when `remote_cluster_server.enabled`) for this node."""
    config = ctx.config
    actions = RemoteActions(ctx)
    servers = [TransportServer(ctx, profile=TRANSPORT_PROFILE, host=config.ip, port=config.transport_port,
                               context=config.transport_server, dispatch=actions.dispatch).start()]
    if config.remote_cluster_port is not None:  # its context is None when its ssl is disabled
        servers.append(TransportServer(
            ctx, profile=REMOTE_CLUSTER_PROFILE, host=config.ip, port=config.remote_cluster_port,
            context=config.remote_cluster_server, dispatch=actions.dispatch,
            blocked=lambda: ctx.fault("remote-port-blocked") is not None).start())
    return servers


# ------------------------------------------------------------------------------ what a node answers

# Index privileges that grant each cross-cluster index action (Elasticsearch names them in its
# "this action is granted by the index privileges [..]" sentence, in this order).
GRANTING_PRIVILEGES = {
    "indices:data/read/search": ["read", "all"],
    "indices:admin/resolve/cluster": ["view_index_metadata", "manage", "read", "all"],
    "indices:data/read/xpack/ccr/shard_changes": ["cross_cluster_replication", "read", "all"],
    "indices:monitor/stats": ["cross_cluster_replication", "monitor", "manage", "all"],
}
# Privileges that imply others (what a descriptor entry really grants).
_IMPLIED = {
    "all": {"read", "view_index_metadata", "manage", "monitor", "cross_cluster_replication",
            "cross_cluster_replication_internal", "read_cross_cluster"},
    "manage": {"view_index_metadata", "monitor"},
    "read": set(),
}


def _expand(privileges: list[str]) -> set[str]:
    granted = set(privileges)
    for privilege in privileges:
        granted |= _IMPLIED.get(privilege, set())
    return granted


def _name_matches(patterns: list[str], index: str) -> bool:
    from fnmatch import fnmatchcase
    return any(fnmatchcase(index, pattern) for pattern in patterns)


def entries_grant(entries: list[dict], action: str, index: str) -> bool:
    """True when one of the index privilege entries lets `action` touch `index`."""
    needed = set(GRANTING_PRIVILEGES.get(action, ["all"]))
    for entry in entries:
        if _expand(entry.get("privileges", [])) & needed and _name_matches(entry.get("names", []), index):
            return True
    return False


@dataclass
class Subject:
    """Who a cross-cluster request acts for, and the index privileges that bound it.

    `groups` are lists of index privilege entries; a request may touch an index only when every
    group grants it (API-key model: the key's access and the user's remote_indices; certificate
    model: the remote's roles of the user's role names)."""

    user: str
    roles: list[str]
    groups: list[list[dict]]
    found_roles: list[str] | None = None
    api_key: dict | None = None

    def may(self, action: str, index: str) -> bool:
        return all(entries_grant(group, action, index) for group in self.groups)

    def describe(self) -> str:
        if self.api_key is not None:
            return (f"user [{self.user}] with assigned roles [{','.join(self.roles)}] authenticated by "
                    f"API key id [{self.api_key['id']}] of user [{self.api_key.get('username', '')}]")
        found = self.found_roles if self.found_roles is not None else self.roles
        missing = [r for r in self.roles if r not in found]
        text = f"user [{self.user}] with effective roles [{','.join(found)}]"
        if missing:
            text += f" (assigned roles [{','.join(missing)}] were not found)"
        return text

    def denied(self, action: str, indices: list[str]) -> ESError:
        towards = "towards remote cluster " if self.api_key is not None else ""
        granted = ",".join(GRANTING_PRIVILEGES.get(action, ["all"]))
        return SecurityError(f"action [{action}] {towards}is unauthorized for {self.describe()} on "
                             f"indices [{','.join(indices)}], this action is granted by the index "
                             f"privileges [{granted}]")


def version_info(version_text: str) -> dict:
    """The `version` object of `_resolve/cluster` and of the root endpoint."""
    major = int(version_text.split(".", 1)[0])
    return {"number": version_text, "build_flavor": "default",
            "minimum_wire_compatibility_version": "7.17.0" if major == 8 else "8.18.0",
            "minimum_index_compatibility_version": "7.0.0" if major == 8 else "8.0.0"}


class RemoteActions:
    """Answers to transport requests, for both ports of one node."""

    _NO_USER = {TCP_HANDSHAKE, TRANSPORT_HANDSHAKE, "cluster:monitor/state",
                "cluster:internal/remote_cluster/nodes"}

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._handlers: dict[str, Callable[[Subject | None, dict], dict]] = {
            TRANSPORT_HANDSHAKE: self._handshake,
            REMOTE_CLUSTER_HANDSHAKE: self._handshake,
            "cluster:monitor/state": self._cluster_state,
            "cluster:internal/remote_cluster/nodes": self._remote_cluster_nodes,
            "indices:data/read/search": self._search,
            "indices:admin/resolve/cluster": self._resolve_cluster,
            "indices:data/read/xpack/ccr/shard_changes": self._shard_changes,
        }

    # entry point -------------------------------------------------------------------------------

    def dispatch(self, channel: Channel, action: str, headers: dict, body: dict) -> dict:
        if action == TCP_HANDSHAKE:
            return {"version": self.ctx.config.version_text, "cluster_name": self.ctx.config.cluster_name}
        handler = self._handlers.get(action)
        # A node list needs no user; cluster state with index metadata (auto-follow) does.
        needs_user = action not in self._NO_USER or bool(body.get("metadata"))
        if channel.profile == REMOTE_CLUSTER_PROFILE:
            subject = self._authenticate_cross_cluster(channel, action, headers)
        else:
            subject = self._authenticate_transport(action, headers, needs_user)
        if handler is None:
            raise ESError(f"No handler for action [{action}]", status=500,
                          type="action_not_found_transport_exception")
        return handler(subject, body)

    # authentication, per port ----------------------------------------------------------------

    def _authenticate_transport(self, action: str, headers: dict, needs_user: bool) -> Subject | None:
        """Port 9300: the TLS client certificate authenticated the node; requests made for a user
        carry that user's name and role names, which this cluster resolves with its own roles."""
        if action == REMOTE_CLUSTER_HANDSHAKE:
            self._remote_handshake_on_transport_port(action)
        auth = headers.get(AUTHENTICATION_HEADER)
        if not needs_user:
            return None
        if not auth:
            raise SecurityError(f"missing authentication credentials for action [{action}]", status=401)
        roles = list(auth.get("roles", []))
        descriptors = self.ctx.security.role_descriptors(roles)
        return Subject(user=auth.get("user", ""), roles=roles, found_roles=[d["name"] for d in descriptors],
                       groups=[_index_entries(descriptors)])

    def _remote_handshake_on_transport_port(self, action: str) -> None:
        """An API-key client pointed at 9300 (es-facts §9, symptoms 3 and 4)."""
        settings = self.ctx.config.settings
        anonymous_roles = settings.get("xpack.security.authc.anonymous.roles") or []
        if not anonymous_roles:
            raise SecurityError(f"missing authentication credentials for action [{action}]", status=401)
        if "superuser" in anonymous_roles:
            raise ESError("remote cluster handshake action requires channel profile to be "
                          f"[{REMOTE_CLUSTER_PROFILE}], but got [{TRANSPORT_PROFILE}]", status=400,
                          type="illegal_argument_exception")
        user = settings.get("xpack.security.authc.anonymous.username") or "_anonymous"
        raise SecurityError(f"action [{action}] is unauthorized for user [{user}] with effective roles "
                            f"[{','.join(anonymous_roles)}], this action is granted by the cluster "
                            "privileges [cross_cluster_search,cross_cluster_replication,manage,all]")

    def _authenticate_cross_cluster(self, channel: Channel, action: str, headers: dict) -> Subject | None:
        """Port 9443: every request carries a cross-cluster API key, checked here each time."""
        credentials = headers.get(CREDENTIALS_HEADER)
        if not credentials:
            raise missing_credentials_error()
        encoded = credentials[len("ApiKey "):] if credentials.startswith("ApiKey ") else credentials
        key_id = _api_key_id(encoded)
        try:
            key = self.ctx.security.authenticate_cross_cluster_key(encoded)
        except ESError as exc:
            if "expected API key type" in exc.reason:
                raise
            es_log(self.ctx, logging.WARNING, "o.e.x.s.a.ApiKeyAuthenticator",
                   f"Authentication using apikey failed - invalid credentials for API key [{key_id}]")
            raise SecurityError(f"unable to authenticate user [{key_id}] for action [{action}]",
                                status=401) from None
        self.ctx.security.require_advanced_remote_cluster_security()
        subject_info = headers.get(SUBJECT_HEADER) or {}
        key_entries = _index_entries(list((key.get("role_descriptors") or {}).values()))
        return Subject(user=subject_info.get("user", ""), roles=list(subject_info.get("roles", [])),
                       groups=[key_entries, list(subject_info.get("remote_indices", []))], api_key=key)

    # handlers --------------------------------------------------------------------------------

    def _node_info(self, *, remote_cluster: bool = False) -> dict:
        config = self.ctx.config
        return {"name": config.name, "version": config.version_text,
                "transport_address": f"{config.ip}:{config.transport_port}",
                "remote_cluster_address": (f"{config.ip}:{config.remote_cluster_port}"
                                           if config.remote_cluster_port else None)}

    def _handshake(self, subject: Subject | None, body: dict) -> dict:
        state = self.ctx.store.snapshot()
        return {"cluster_name": self.ctx.config.cluster_name, "cluster_uuid": state.get("cluster_uuid"),
                "version": self.ctx.config.version_text, "node": self._node_info()}

    def _live_nodes(self) -> list[dict]:
        return [n for n in self.ctx.store.live_nodes() if n.get("cluster", self.ctx.config.cluster_name)
                == self.ctx.config.cluster_name]

    def _cluster_state(self, subject: Subject | None, body: dict) -> dict:
        """Certificate-model sniffing: the nodes and their transport addresses."""
        nodes = [{"name": n["name"], "version": n.get("version"),
                  "transport_address": f"{n['ip']}:{n['transport_port']}"} for n in self._live_nodes()]
        answer: dict[str, Any] = {"cluster_name": self.ctx.config.cluster_name, "nodes": nodes}
        if body.get("metadata"):  # auto-follow: the leader indices the subject may follow
            indices = self.ctx.store.snapshot().get("indices", {})
            answer["indices"] = sorted(i for i in indices if not i.startswith(".")
                                       and subject.may("indices:monitor/stats", i))
            # A follower is created from its leader's metadata: shards and replicas included.
            answer["index_settings"] = {i: {k: v for k, v in indices[i].get("settings", {}).items()
                                            if k in FOLLOWER_COPIED_SETTINGS} for i in answer["indices"]}
        return answer

    def _remote_cluster_nodes(self, subject: Subject | None, body: dict) -> dict:
        """API-key-model sniffing (RemoteClusterNodesAction): remote-cluster server addresses."""
        nodes = [{"name": n["name"], "version": n.get("version"),
                  "remote_cluster_address": f"{n['ip']}:{n['remote_cluster_port']}"}
                 for n in self._live_nodes() if n.get("remote_cluster_port")]
        return {"cluster_name": self.ctx.config.cluster_name, "nodes": nodes}

    def _check_named(self, subject: Subject, action: str, expression: str) -> None:
        """A named index the subject may not touch is refused (403, Elasticsearch's sentence);
        wildcards are filtered instead (see `_allowed`)."""
        parts = [p.strip() for p in expression.split(",") if p.strip()]
        named = [p for p in parts if not p.startswith("-") and p != "_all" and "*" not in p and "?" not in p]
        denied = [p for p in named if not subject.may(action, p)]
        if denied:
            raise subject.denied(action, denied)

    @staticmethod
    def _allowed(subject: Subject, action: str) -> Callable[[str], bool]:
        return lambda index: subject.may(action, index)

    def _search(self, subject: Subject | None, body: dict) -> dict:
        from esremote.lab.models.search import search_local
        action = "indices:data/read/search"
        expression = body.get("index") or "*"
        self._check_named(subject, action, expression)
        return search_local(self.ctx.store, expression, body.get("body") or {},
                            allowed=self._allowed(subject, action), params=body.get("params") or {})

    def _resolve_cluster(self, subject: Subject | None, body: dict) -> dict:
        from esremote.lab.models.search import resolve_indices
        action = "indices:admin/resolve/cluster"
        expression = body.get("index") or "*"
        self._check_named(subject, action, expression)
        indices = resolve_indices(self.ctx.store.snapshot(), expression, ignore_unavailable=True,
                                  allowed=self._allowed(subject, action))
        return {"matching_indices": bool(indices), "version": version_info(self.ctx.config.version_text)}

    def _shard_changes(self, subject: Subject | None, body: dict) -> dict:
        """CCR's read of a leader index: operations after a sequence number."""
        from esremote.lab.errors import IndexNotFound
        index = body["index"]
        self._check_named(subject, "indices:data/read/xpack/ccr/shard_changes", index)
        state = self.ctx.store.snapshot()
        if index not in state.get("indices", {}):
            raise IndexNotFound(index)
        operations = self.ctx.store.read_docs(index, after_seq=int(body.get("from_seq_no", 0)) - 1,
                                              limit=int(body.get("max_operation_count", 5120)))
        return {"index": index, "operations": operations,
                "max_seq_no": operations[-1]["_seq"] if operations else int(body.get("from_seq_no", 0)) - 1}


def _index_entries(descriptors: list) -> list[dict]:
    entries: list[dict] = []
    for descriptor in descriptors:
        if isinstance(descriptor, dict):
            entries += descriptor.get("indices", [])
    return entries


def _api_key_id(encoded: str) -> str:
    import base64
    import binascii
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8").split(":", 1)[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""
