"""The causes of Elastic's remote-cluster troubleshooting page (es-facts §9) and how a failed check
finds its cause: in REST error texts first, then in the nodes' logs (read over SSH)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from esremote.cluster.restart import node_log_tail
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.ssh import SSHPool

__all__ = ["BY_KEY", "CAUSES", "Cause", "Diagnosis", "diagnose", "diagnose_log", "log_entries"]

LOG_LINES = 200


@dataclass(frozen=True)
class Cause:
    """One cause of Elastic's remote-cluster troubleshooting page, and how to recognise it."""

    key: str
    title: str
    fix: str
    patterns: tuple[str, ...]

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, re.DOTALL) for p in self.patterns)


# Most specific first: one log entry may carry a generic headline and a specific cause.
CAUSES: tuple[Cause, ...] = (
    Cause("licence", "licence does not allow API-key remote clusters",
          "install an enterprise licence (or start a trial) on both clusters",
          (r"current license is non-compliant for \[advanced-remote-cluster-security\]",)),
    Cause("remote_too_old", "remote cluster older than 8.10",
          "upgrade the remote cluster to 8.10 or later (8.14+ recommended)",
          (r"does not support receiving them",)),
    Cause("wrong_key_type", "wrong API key type",
          "the keystore holds a REST API key: create a cross-cluster API key on the remote "
          "(POST _security/cross_cluster/api_key), put its `encoded` value in every local node's keystore, reload",
          (r"authentication expected API key type of \[cross_cluster\]",)),
    Cause("invalid_key", "invalid API key",
          "the key was invalidated, expired or mistyped: create a new cross-cluster API key, put it in every "
          "local node's keystore and reload",
          # the handshake's refusal (es-facts §9), or any later action's once a connected key is invalidated
          (r"unable to authenticate user \[[^\]]*\] for action \[",
           r"Authentication using apikey failed")),
    Cause("transport_port", "connecting to the transport port when using API keys",
          "the alias points at the transport port: set its seeds / proxy_address to the remote cluster "
          "server port (remote_cluster.port, 9443)",
          (r"missing authentication credentials for action \[cluster:internal/remote_cluster/handshake\]",
           r"requires channel profile to be \[_remote_cluster\]",
           r"Empty client certificate chain",
           r"Received fatal alert: bad_certificate",
           r"ssl context \(\[xpack\.security\.remote_cluster_client\.ssl.*not configured to trust",
           r"client did not trust this server's certificate.*profile=default")),
    Cause("no_api_key", "connecting without a cross-cluster API key",
          "add cluster.remote.<alias>.credentials to the keystore of every local node, then reload secure "
          "settings (8.13+) or restart",
          (r"require transport header \[_cross_cluster_access_credentials\] but none found",
           r"ssl context \(\[xpack\.security\.transport\.ssl.*not configured to trust",
           r"client did not trust this server's certificate.*profile=_remote_cluster")),
    Cause("san_mismatch", "certificate does not name the address",
          "reissue the remote nodes' remote-cluster certificates with the address used in seeds / "
          "proxy_address as a SAN (or set server_name)",
          (r"No subject alternative (names|DNS name) matching",)),
    Cause("tls_trust", "TLS trust not established",
          "set xpack.security.remote_cluster_client.ssl.certificate_authorities to the remote cluster "
          "server's CA on every local node (or adjust verification_mode), then restart them",
          (r"failed to establish trust with server", r"unable to find valid certification path")),
    Cause("no_remote_indices", "no remote_indices privileges",
          "give the users' roles remote_indices for this alias (the reconnect phase does it)",
          (r"because no remote indices privileges apply",)),
    Cause("insufficient_privileges", "insufficient privileges",
          "the cross-cluster API key's access or the user's remote_indices do not cover the index: update "
          "the key (PUT _security/cross_cluster/api_key/<id>) or the role",
          (r"towards remote cluster( \[[^\]]*\])? is unauthorized",)),
    Cause("alias_missing", "alias not defined on the local cluster",
          "define the alias again (cluster.remote.<alias>.* in cluster settings or elasticsearch.yml)",
          (r"no such remote cluster: \[", r"unknown cluster alias \[")),
    Cause("unreachable", "remote cluster not reachable",
          "check the address and port in seeds / proxy_address, firewalls, and that remote_cluster_server."
          "enabled is true with remote_cluster.host set on every remote node",
          (r"connect_exception", r"failed to open any proxy connections",
           r"fetching nodes from external cluster", r"ConnectTransportException")),
)
BY_KEY = {c.key: c for c in CAUSES}


def diagnose(texts: Iterable[str]) -> tuple[Cause, str] | None:
    """The first text (give them newest / most direct first) that matches a cause, with that cause."""
    for text in texts:
        for cause in CAUSES:
            if cause.matches(text):
                return cause, text
    return None


_TIMESTAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT[\d:,.]+)\]")
# The first line every node logs: `[o.e.n.Node] [name] version[8.13.4], pid[1234], build[...]`.
_NODE_START = re.compile(r"\[o\.e\.n\.Node\s*\]\s*\[[^\]]*\]\s*version\[[^\]]*\], pid\[")
BURST_SECONDS = 10.0  # one failed connection attempt logs several entries within this span


def diagnose_log(entries: Sequence[tuple[str, str]]) -> tuple[Cause, str] | None:
    """The cause of the newest burst of matching log entries (timestamp, text), newest first.

    One failed attempt logs several entries (a specific diagnosis, then a generic headline whose
    stack trace may look like another cause), so within the newest burst the most specific cause
    wins, not simply the newest line."""
    matches: list[tuple[str, Cause, str]] = []
    for stamp, text in entries:
        found = diagnose([text])
        if found is not None:
            matches.append((stamp, found[0], text))
    if not matches:
        return None
    newest = _when(matches[0][0])
    burst = [m for m in matches if newest is None or (_when(m[0]) or newest) >= newest - BURST_SECONDS]
    stamp, cause, text = min(burst, key=lambda m: CAUSES.index(m[1]))
    return cause, text


def _when(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp.replace(",", ".")[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def log_entries(lines: Sequence[str]) -> list[tuple[str, str]]:
    """One node's log lines grouped into entries (a timestamped line and its continuation lines),
    as (timestamp, text), from the node's last start on: what an earlier process logged (before a
    restart that changed its settings or keystore) says nothing about the node now."""
    entries: list[tuple[str, str]] = []
    for line in lines:
        match = _TIMESTAMP.match(line)
        if match or not entries:
            entries.append((match.group(1) if match else "", line))
        else:
            stamp, text = entries[-1]
            entries[-1] = (stamp, f"{text}\n{line}")
    starts = [i for i, (_, text) in enumerate(entries) if _NODE_START.search(text)]
    return entries[starts[-1]:] if starts else entries


class Diagnosis:
    """Reads logs only when a check fails: the failing node's own log first (each node keeps its own
    connections and keystore), then every local node's, then the remote nodes'."""

    def __init__(self, inventory: Inventory, local: str, remote: str, pool: SSHPool | None) -> None:
        self.inventory, self.local, self.remote, self.pool = inventory, local, remote, pool
        self._entries: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._lock = threading.Lock()  # nodes fail in parallel; each log is read once

    def find(self, node: str | None = None) -> tuple[Cause, str] | None:
        if self.pool is None:
            return None
        own = [n for n in self.inventory.nodes(self.local) if n.name == node]
        for nodes in (own, self.inventory.nodes(self.local), self.inventory.nodes(self.remote)):
            found = diagnose_log(self.entries(nodes)) if nodes else None
            if found is not None:
                return found
        return None

    def entries(self, nodes: Sequence[ResolvedNode]) -> list[tuple[str, str]]:
        """These nodes' recent log entries, newest first."""
        key = tuple(str(n) for n in nodes)
        with self._lock:
            if key not in self._entries:
                tails = fan_out(nodes, lambda n: node_log_tail(self.pool, n, lines=LOG_LINES))
                found = [e for n in nodes if isinstance(tails[n], list) for e in log_entries(tails[n])]
                self._entries[key] = sorted(found, key=lambda e: e[0], reverse=True)
            return self._entries[key]
