"""The files and settings esremote puts on the nodes: their names under the config directory, their
modes, and the elasticsearch.yml settings and keystore entry names each node gets.

These desired-state builders serve both the plan (`esremote.plan`) and the apply steps
(flows/prepare_remote.py, flows/stage_local.py, flows/stage_credentials.py), so what the plan shows
is what the run does. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

from esremote.esyml import EsYml
from esremote.params import MigrationParams

# Names on the nodes (relative to the config directory, as Elasticsearch resolves them).
SERVER_P12 = "certs/remote-cluster.p12"
SERVER_CA = "certs/remote-cluster-ca.crt"      # public copy of the CA on the remote nodes
CLIENT_CA = "remote-cluster-ca.crt"            # what the local nodes trust for :9443
SERVER_P12_PASSWORD = "xpack.security.remote_cluster_server.ssl.keystore.secure_password"
# Modes of the files esremote adds under the config directory; a new file also gets the directory's
# owner and group (root:elasticsearch in a deb/rpm install) and a file already there keeps its own
# (es-facts §12). The p12 holds a private key: group-readable for Elasticsearch, never world-readable.
P12_MODE, CA_MODE = 0o660, 0o644
# Strong identity verification (9.3 technical preview): the remote trusts signing certificates its
# own CA signed (the remote cluster server's CA, already on its nodes as SERVER_CA).
SIGNING_CAS = "cluster.remote.signing.certificate_authorities"


def credentials_setting(alias: str) -> str:
    return f"cluster.remote.{alias}.credentials"


def remote_server_settings(address: str, port: int) -> dict[str, Any]:
    """elasticsearch.yml of a remote node: the remote cluster server, TLS from the node's p12."""
    return {
        "remote_cluster_server.enabled": True,
        "remote_cluster.host": address,
        "remote_cluster.port": port,
        "xpack.security.remote_cluster_server.ssl.enabled": True,
        "xpack.security.remote_cluster_server.ssl.keystore.path": SERVER_P12,
    }


def local_client_settings() -> dict[str, Any]:
    """elasticsearch.yml of a local node: trust the remote cluster servers' CAs (es-facts §11.3: the
    prefix is `xpack.security.`)."""
    return {
        "xpack.security.remote_cluster_client.ssl.enabled": True,
        "xpack.security.remote_cluster_client.ssl.certificate_authorities": [CLIENT_CA],
    }


def signing_files(alias: str) -> tuple[str, str]:
    """The local nodes' signing certificate and key for `alias`, under the config directory; the
    key is written like the p12 (P12_MODE: group-readable, never world-readable)."""
    return f"certs/remote-signing-{alias}.crt", f"certs/remote-signing-{alias}.key"


def local_signing_settings(aliases: list[str]) -> dict[str, Any]:
    """elasticsearch.yml of a local node: each alias signs with its certificate (strong identity)."""
    out: dict[str, Any] = {}
    for alias in aliases:
        cert, key = signing_files(alias)
        out[f"cluster.remote.{alias}.signing.certificate"] = cert
        out[f"cluster.remote.{alias}.signing.key"] = key
    return out


def remote_signing_settings(yml_text: str | None) -> dict[str, Any]:
    """elasticsearch.yml of a remote node: trust signing certificates of its own CA, keeping the
    files it already trusts for other local clusters."""
    existing = EsYml.parse(yml_text).get(SIGNING_CAS) if yml_text else None
    files = [existing] if isinstance(existing, str) else list(existing or [])
    return {SIGNING_CAS: files + [SERVER_CA] if SERVER_CA not in files else files}


def remote_settings_for(params: MigrationParams, address: str, port: int, yml_text: str | None) -> dict[str, Any]:
    """All the settings prepare_remote gives a remote node."""
    wanted = remote_server_settings(address, port)
    if params.strong_identity:
        wanted.update(remote_signing_settings(yml_text))
    return wanted
