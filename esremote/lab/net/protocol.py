"""The framed protocol both transport ports speak: frame layout, action and header names, the
wire form of errors, and the node-log helper every part of the network layer uses.

Every frame is a 4-byte big-endian length and a JSON object:

    {"type": "request", "id": n, "action": "indices:data/read/search", "headers": {...}, "body": {...}}
    {"type": "response", "id": n, "body": {...}}  or  {"type": "response", "id": n, "error": {...}}
    {"type": "ping"} -> {"type": "pong"}           (keep-alive; the link notices a dead peer)

A connection starts with `internal:tcp/handshake` (versions, no authentication), then the cluster
handshake: `internal:transport/handshake` on 9300 (certificate model) or
`cluster:internal/remote_cluster/handshake` on 9443 (API-key model, credentials required).
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Callable

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

TRANSPORT_LOGGER = "o.e.x.s.t.n.SecurityNetty4ServerTransport"

# Index settings a CCR follower takes from its leader (the request's `settings` may override them).
FOLLOWER_COPIED_SETTINGS = ("index.number_of_shards", "index.number_of_replicas")


def es_log(ctx, level: int, logger: str, message: str) -> None:
    """One line in the node's Elasticsearch-format log, under Elasticsearch's logger name."""
    named = getattr(ctx, "logger", None)
    if callable(named):
        named(logger).log(level, message)


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

def channel_text(local: tuple, remote: tuple, profile: str) -> str:
    return (f"Netty4TcpChannel{{localAddress=/{local[0]}:{local[1]}, "
            f"remoteAddress=/{remote[0]}:{remote[1]}, profile={profile}}}")


Handler = Callable[["Channel", dict, dict], dict]


@dataclass
class Channel:
    """What a request handler knows about the connection it arrived on."""

    profile: str
    local: tuple
    remote: tuple

    def __str__(self) -> str:
        return channel_text(self.local, self.remote, self.profile)


def missing_credentials_error() -> ESError:
    return SecurityError(
        f"Cross cluster requests through the dedicated remote cluster server port require transport "
        f"header [{CREDENTIALS_HEADER}] but none found. Please ensure you have configured remote "
        "cluster credentials on the cluster originating the request.", status=401)



