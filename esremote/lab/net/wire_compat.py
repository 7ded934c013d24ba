"""Which remote versions a node can talk to at all, and what 9.x says about the certificate model.

A 9.x node reads only the wire formats of 8.18, 8.19 and 9.x (docs-content `ccs-compatibility`,
es-facts §12). Elasticsearch checks it in the transport handshake
(`TransportHandshaker.ensureCompatibleVersion`, server/.../transport/TransportHandshaker.java):
the node that opened the connection reads the responder's transport version, logs at WARN and
fails the connection with

    Rejecting unreadable transport handshake from remote node with version [<release>/<id>]
    received on [<channel>] since this node has version [<release>/<id>] which has an
    incompatible wire format.

`TcpTransport` wraps it in `ConnectTransportException(node, "general node connection failure")`.
The check is below both security models: the transport port and the remote-cluster port fail alike.

Transport version ids are those of Elasticsearch's `TransportVersions.csv` (release -> id). An 8.x
responder answers the v7 handshake, which carries no release string, so Elasticsearch names its
release from the id: every release sharing that id, as `first-last`.
"""

from __future__ import annotations

import logging

from esremote.lab.errors import ESError
from esremote.lab.net.connection import TransportFailure
from esremote.lab.net.protocol import channel_text, es_log
from esremote.lab.node.config import parse_version

HANDSHAKER_LOGGER = "o.e.t.TransportHandshaker"
OLDEST_READABLE_BY_9 = (8, 18, 0)

# server/src/main/resources/org/elasticsearch/TransportVersions.csv, 8.10.0 to 9.1.x.
_CSV = """
8.10.0,8500061 8.10.1,8500061 8.10.2,8500061 8.10.3,8500061 8.10.4,8500061
8.11.0,8512001 8.11.1,8512001 8.11.2,8512001 8.11.3,8512001 8.11.4,8512001
8.12.0,8560000 8.12.1,8560001 8.12.2,8560001
8.13.0,8595000 8.13.1,8595000 8.13.2,8595000 8.13.3,8595000 8.13.4,8595001
8.14.0,8636001 8.14.1,8636001 8.14.2,8636001 8.14.3,8636001
8.15.0,8702002 8.15.1,8702002 8.15.2,8702003 8.15.3,8702003 8.15.4,8702003 8.15.5,8702003
8.16.0,8772001 8.16.1,8772004 8.16.2,8772004 8.16.3,8772004 8.16.4,8772004 8.16.5,8772005 8.16.6,8772006
8.17.0,8797002 8.17.1,8797002 8.17.2,8797002 8.17.3,8797003 8.17.4,8797004 8.17.5,8797005 8.17.6,8797006
8.17.7,8797007 8.17.8,8797008 8.17.9,8797009 8.17.10,8797010
8.18.0,8840002 8.18.1,8840003 8.18.2,8840004 8.18.3,8840005 8.18.4,8840006 8.18.5,8840007 8.18.6,8840008
8.18.7,8840009
8.19.0,8841064 8.19.1,8841065 8.19.2,8841066 8.19.3,8841067 8.19.4,8841068
9.0.0,9000009 9.0.1,9000010 9.0.2,9000011 9.0.3,9000012 9.0.4,9000013 9.0.5,9000014 9.0.6,9000015 9.0.7,9000016
9.1.0,9112003 9.1.1,9112004 9.1.2,9112005 9.1.3,9112006 9.1.4,9112007
"""
TRANSPORT_IDS: dict[str, str] = dict(pair.split(",") for pair in _CSV.split())


def transport_id(release: str) -> str:
    """The release's transport version id; a release the table lacks (9.2 on) keeps its number."""
    return TRANSPORT_IDS.get(release, release)


def release_named_by_id(release: str) -> str:
    """What Elasticsearch names a v7-handshake peer: every release with its id, `first-last`."""
    same = [r for r, i in TRANSPORT_IDS.items() if i == TRANSPORT_IDS.get(release)]
    if len(same) <= 1:
        return release
    return f"{same[0]}-{same[-1]}"


def can_read(local_version: tuple[int, int, int], remote_release: str) -> bool:
    if local_version[0] < 9:
        return True  # the 8.x floors (8.10 for API keys) are checked where they apply
    return parse_version(remote_release) >= OLDEST_READABLE_BY_9


def check_handshake(ctx, conn) -> None:
    """Fail the connection the way a 9.x node does when the responder is older than 8.18."""
    remote = conn.remote_version
    config = ctx.config
    if not remote or can_read(tuple(config.version), remote):
        return
    local_addr = conn.sock.getsockname()[:2]
    channel = channel_text(local_addr, (conn.host, conn.port), conn.profile)
    message = (f"Rejecting unreadable transport handshake from remote node with version "
               f"[{release_named_by_id(remote)}/{transport_id(remote)}] received on [{channel}] since this node "
               f"has version [{config.version_text}/{transport_id(config.version_text)}] which has an "
               "incompatible wire format.")
    es_log(ctx, logging.WARNING, HANDSHAKER_LOGGER, message)
    conn.close()
    reason = f"[][{conn.host}:{conn.port}] general node connection failure"
    error = ESError(reason, status=500, type="connect_transport_exception",
                    caused_by=ESError(message, type="illegal_state_exception"))
    raise TransportFailure(error, f"org.elasticsearch.transport.ConnectTransportException: {reason}\n"
                                  f"Caused by: java.lang.IllegalStateException: {message}")


# The certificate model on 9.x: RemoteConnectionManager.maybeLogDeprecationWarning (elastic/elasticsearch
# PR #120806) logs this for each connection without cluster credentials outside the remote-cluster profile.
CERTIFICATE_MODEL_KEY = "remote_cluster_certificate_access-{alias}"
CERTIFICATE_MODEL_MESSAGE = (
    "The remote cluster connection to [{alias}] is using the certificate-based security model. "
    "The certificate-based security model is deprecated and will be removed in a future major version. "
    "Migrate the remote cluster from the certificate-based to the API key-based security model.")
DEPRECATION_LOGGER = "org.elasticsearch.deprecation.transport.RemoteConnectionManager"


def note_certificate_model(ctx, alias: str) -> None:
    """A certificate-model connection opened: 9.x writes the deprecation warning (once per key)."""
    if tuple(ctx.config.version) < (9, 0, 0):
        return
    from esremote.lab.node.deprecation import SECURITY, deprecation_log
    deprecation_log(ctx).warn(SECURITY, CERTIFICATE_MODEL_KEY.format(alias=alias),
                              CERTIFICATE_MODEL_MESSAGE.format(alias=alias), DEPRECATION_LOGGER)
