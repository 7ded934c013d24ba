"""Read-only facts about one cluster, gathered over REST: each node's version, settings and
addresses, the licence, health, whether security is on, and the cluster settings.

    facts = gather(es, "local")
    facts.min_version >= (8, 13, 0)      # credentials reloadable
    facts.node("local-1").version_text   # "8.17.0"

Later phases decide from these facts (reload or restart, `_resolve/cluster` or not, `monitor_enrich`
or not); nothing here changes the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esremote.cluster.client import mapped_errors
from esremote.fanout import fan_out

__all__ = ["ClusterFacts", "NodeFacts", "Version", "flatten", "gather", "parse_version"]

Version = tuple[int, int, int]

MIN_VERSION: Version = (8, 10, 0)        # API-key remote clusters arrived (beta)
GA_VERSION: Version = (8, 14, 0)         # generally available
STRONG_IDENTITY_FROM: Version = (9, 3, 0)  # strong identity verification (technical preview)
RELOADABLE_CREDENTIALS: Version = (8, 13, 0)
RELOAD_REPORTS_KEYSTORE: Version = (9, 3, 0)   # keystore_digest per node in the reload answer
RESOLVE_CLUSTER: Version = (8, 13, 0)
LICENCES_WITH_RCS = ("enterprise", "trial")


def parse_version(text: str) -> Version:
    """`8.15.2`, `8.15.2-SNAPSHOT` -> (8, 15, 2); unparseable text is (0, 0, 0), which fails every check."""
    numbers = [int(n) for n in re.findall(r"\d+", str(text).split("-", 1)[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers))) if numbers else (0, 0, 0)  # type: ignore[return-value]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings (as Elasticsearch renders them without flat_settings) to dotted keys."""
    if not isinstance(tree, Mapping):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


@dataclass(frozen=True)
class NodeFacts:
    id: str
    name: str
    ip: str
    version_text: str
    roles: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)  # flat; empty when the node did not say
    remote_cluster_address: str | None = None                   # publish address of its :9443 server

    @property
    def version(self) -> Version:
        return parse_version(self.version_text)


@dataclass(frozen=True)
class ClusterFacts:
    """What `gather` found. `cluster` is the inventory's name, `cluster_name` Elasticsearch's."""

    cluster: str
    cluster_name: str
    nodes: tuple[NodeFacts, ...]
    licence_type: str
    licence_status: str
    health: str
    number_of_nodes: int
    security_enabled: bool
    persistent: Mapping[str, Any] = field(default_factory=dict)  # flat cluster settings
    transient: Mapping[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> NodeFacts | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def min_version(self) -> Version:
        return min((n.version for n in self.nodes), default=(0, 0, 0))

    @property
    def licence_allows_rcs(self) -> bool:
        return self.licence_type in LICENCES_WITH_RCS and self.licence_status == "active"

    @property
    def reloads_credentials(self) -> bool:
        """Every node reloads `cluster.remote.*.credentials` without a restart (8.13+)."""
        return bool(self.nodes) and self.min_version >= RELOADABLE_CREDENTIALS


def gather(es, cluster: str) -> ClusterFacts:
    """Ask the cluster for its facts (nodes info, licence, health, xpack info, cluster settings).

    The five requests are independent reads: they are sent at once (the client is thread-safe), and
    a failure is raised as when they were sent one by one: the first in this order."""
    requests = {
        "GET _nodes": lambda: es.nodes.info().body,
        "GET _license": lambda: es.license.get().body.get("license") or {},
        "GET _cluster/health": lambda: es.cluster.health().body,
        "GET _xpack": lambda: es.xpack.info(categories="features").body,
        "GET _cluster/settings": lambda: es.cluster.get_settings(flat_settings=True).body,
    }

    def ask(what: str) -> Any:
        with mapped_errors(cluster, what):
            return requests[what]()

    answers = fan_out(requests, ask, max_workers=len(requests))
    for error in (answers[what] for what in requests if isinstance(answers[what], BaseException)):
        raise error
    nodes_body, licence, health, xpack, settings = (answers[what] for what in requests)
    security = ((xpack.get("features") or {}).get("security") or {}).get("enabled", False)
    return ClusterFacts(
        cluster=cluster, cluster_name=str(nodes_body.get("cluster_name") or health.get("cluster_name") or ""),
        nodes=tuple(node_facts(node_id, body) for node_id, body in (nodes_body.get("nodes") or {}).items()),
        licence_type=str(licence.get("type", "none")).lower(), licence_status=str(licence.get("status", "")),
        health=str(health.get("status", "red")), number_of_nodes=int(health.get("number_of_nodes", 0)),
        security_enabled=bool(security),
        persistent=dict(settings.get("persistent") or {}), transient=dict(settings.get("transient") or {}),
    )


def node_facts(node_id: str, body: Mapping[str, Any]) -> NodeFacts:
    server = body.get("remote_cluster_server") or {}
    return NodeFacts(id=node_id, name=str(body.get("name", node_id)), ip=str(body.get("ip", "")),
                     version_text=str(body.get("version", "0.0.0")), roles=tuple(body.get("roles") or ()),
                     settings=flatten(body.get("settings") or {}),
                     remote_cluster_address=server.get("publish_address"))
