"""A node's transport servers: the transport port (9300, mutual TLS, certificate model) and the
remote-cluster server (9443, server TLS + cross-cluster API key). Frames and names are in
protocol.py, the client side in connection.py, what a node answers in actions.py, TLS failure
texts in tls_diagnosis.py."""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable

from esremote.lab.errors import ESError
from esremote.lab.net.protocol import (Channel, HANDSHAKE_TIMEOUT, LinkClosed, REMOTE_CLUSTER_PROFILE,
                                       TRANSPORT_PROFILE, TRANSPORT_LOGGER, error_to_wire, es_log, recv_frame,
                                       send_frame)
from esremote.lab.net.tls_diagnosis import server_tls_failure
from esremote.lab.net.actions import RemoteActions
from esremote.lab.net.ipfilter import IpFilter

class TransportServer:
    """A TLS server for one profile; each connection gets a thread that answers its frames."""

    def __init__(self, ctx, *, profile: str, host: str, port: int, context: ssl.SSLContext | None,
                 dispatch: Callable[[Channel, str, dict, dict], dict],
                 blocked: Callable[[], bool] = lambda: False,
                 admits: Callable[[str], bool] = lambda peer: True) -> None:
        self.ctx = ctx
        self.profile = profile
        self.host, self.port = host, port
        self.context = context
        self.dispatch = dispatch
        self.blocked = blocked
        self.admits = admits  # the IP filter of this profile (ipfilter.py)
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
            if not self.admits(peer[0]):
                _reset(raw)  # before TLS and before any request, as Elasticsearch drops a filtered peer
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
                es_log(self.ctx, logging.WARNING, TRANSPORT_LOGGER, text)
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
                    es_log(self.ctx, logging.WARNING, TRANSPORT_LOGGER, text)
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


def _reset(sock: socket.socket) -> None:
    """Close at once and discard what the peer already sent (the reset Netty's close gives when the
    client's hello is unread), so the client always sees its connection reset in the handshake."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _hard_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def start(ctx) -> list[TransportServer]:
    """Bind 9300 (always) and 9443 (when `remote_cluster_server.enabled`) for this node."""
    config = ctx.config
    actions = RemoteActions(ctx)
    ip_filter = IpFilter(ctx)
    servers = [TransportServer(ctx, profile=TRANSPORT_PROFILE, host=config.ip, port=config.transport_port,
                               context=config.transport_server, dispatch=actions.dispatch,
                               admits=lambda peer: ip_filter.accept(TRANSPORT_PROFILE, peer)).start()]
    if config.remote_cluster_port is not None:  # its context is None when its ssl is disabled
        servers.append(TransportServer(
            ctx, profile=REMOTE_CLUSTER_PROFILE, host=config.ip, port=config.remote_cluster_port,
            context=config.remote_cluster_server, dispatch=actions.dispatch,
            blocked=lambda: ctx.fault("remote-port-blocked") is not None,
            admits=lambda peer: ip_filter.accept(REMOTE_CLUSTER_PROFILE, peer)).start())
    return servers


