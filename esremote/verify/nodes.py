"""Asking every local node for itself: each node keeps its own remote connections and reads its own
keystore, and `_remote/info` (or a cross-cluster request) answers only for the node that receives
it (es-facts §12). So the link is checked on every node with the `remote_cluster_client` role, each
through its own HTTP address, in parallel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from esremote.cluster.client import connect_node, mapped_errors
from esremote.cluster.facts import Version, parse_version
from esremote.errors import EsRemoteError
from esremote.fanout import fan_out
from esremote.inventory import Cluster
from esremote.verify.report import Check

__all__ = ["REMOTE_CLUSTER_CLIENT", "LocalNode", "check_every_node", "local_nodes", "node_url"]

REMOTE_CLUSTER_CLIENT = "remote_cluster_client"
DEFAULT_HTTP_PORT = 9200
# Every node at once (up to this bound): verification runs inside the outage, which must not grow
# with the node count; each node is one HTTPS client and a few reads.
MAX_PARALLEL_NODES = 64

NodeCheck = Callable[[Any, "LocalNode"], list[Check]]


@dataclass(frozen=True)
class LocalNode:
    """A local node as `GET _nodes/http` shows it, with the address esremote asks it at."""

    name: str
    url: str | None
    version: Version
    roles: tuple[str, ...]

    @property
    def coordinates_remote_requests(self) -> bool:
        return REMOTE_CLUSTER_CLIENT in self.roles


def local_nodes(es: Any, cluster: Cluster) -> list[LocalNode]:
    """Every node of the cluster, by name."""
    with mapped_errors(cluster.name, "GET _nodes/http"):
        body = es.nodes.info(metric="http").body
    nodes = []
    for node_id, info in (body.get("nodes") or {}).items():
        name = str(info.get("name", node_id))
        nodes.append(LocalNode(name=name, url=node_url(cluster, name, (info.get("http") or {}).get("publish_address")),
                               version=parse_version(str(info.get("version", "0"))),
                               roles=tuple(info.get("roles") or ())))
    return sorted(nodes, key=lambda n: n.name)


def node_url(cluster: Cluster, name: str, publish_address: str | None) -> str | None:
    """The node's HTTP URL. The inventory wins where it knows the node (what the operator configured,
    and what the HTTP certificate names): a cluster URL on the node's address as it is, else that
    address with the published port; a node it does not know is asked at its publish address."""
    scheme = urlsplit(cluster.urls[0]).scheme
    listed = next((n for n in cluster.nodes if n.name == name), None)
    if listed is not None:
        for url in cluster.urls:
            if urlsplit(url).hostname == listed.address.strip("[]"):
                return url.rstrip("/")
    host, port = _host_port(publish_address)
    host = listed.address if listed is not None else host
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}:{port or DEFAULT_HTTP_PORT}"


def _host_port(publish_address: str | None) -> tuple[str | None, int | None]:
    """`10.0.0.1:9200`, `es-1.example.com/10.0.0.1:9200` (the name when the node was given one),
    `[::1]:9200`."""
    if not publish_address:
        return None, None
    host, _, port = str(publish_address).rpartition(":")
    name, _, ip = host.partition("/")
    return (name or ip or None), (int(port) if port.isdigit() else None)


def check_every_node(es: Any, cluster: Cluster, check_node: NodeCheck) -> list[Check]:
    """`check_node(client, node)` on every node with the remote_cluster_client role through a client
    of its own; the others are listed as skipped, and inventory nodes missing from the cluster fail
    (nothing vouches for their link)."""
    nodes = local_nodes(es, cluster)
    coordinating = [n for n in nodes if n.coordinates_remote_requests]
    outcomes = fan_out([n for n in coordinating if n.url], lambda n: _on_node(cluster, n, check_node),
                       max_workers=MAX_PARALLEL_NODES)
    checks: list[Check] = []
    for node in nodes:
        checks += _node_checks(node, outcomes.get(node))
    return checks + _absent(cluster, nodes) + _none_coordinating(cluster, coordinating)


def _node_checks(node: LocalNode, outcome: list[Check] | BaseException | None) -> list[Check]:
    if not node.coordinates_remote_requests:
        return [Check(f"node[{node.name}]", True, f"no {REMOTE_CLUSTER_CLIENT} role: it coordinates no "
                      "cross-cluster requests", node=node.name, skipped=True)]
    if node.url is None:
        return [Check(f"node[{node.name}]", False, "publishes no HTTP address and the inventory does not list "
                      "it: add it to the inventory's nodes", node=node.name)]
    if isinstance(outcome, EsRemoteError):
        return [Check(f"remote_info[{node.name}]", False, f"cannot ask node {node.name} at {node.url}: {outcome}",
                      node=node.name)]
    if isinstance(outcome, BaseException):
        raise outcome  # a bug, not the node's answer
    return outcome


def _on_node(cluster: Cluster, node: LocalNode, check_node: NodeCheck) -> list[Check]:
    with connect_node(cluster, node.url) as client:
        return check_node(client, node)


def _absent(cluster: Cluster, nodes: Sequence[LocalNode]) -> list[Check]:
    joined = {n.name for n in nodes}
    return [Check(f"node[{n.name}]", False, "in the inventory but not in the cluster (GET _nodes): down or not "
                  "joined, so its link is unchecked; start it (or fix its name in the inventory: node.name)",
                  node=n.name) for n in cluster.nodes if n.name not in joined]


def _none_coordinating(cluster: Cluster, coordinating: Sequence[LocalNode]) -> list[Check]:
    if coordinating:
        return []
    return [Check(REMOTE_CLUSTER_CLIENT, False, f"no node of cluster {cluster.name} has the {REMOTE_CLUSTER_CLIENT} "
                  "role: none can send a request through the alias; add the role to node.roles")]
