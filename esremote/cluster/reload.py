"""Reload secure settings (`POST _nodes/reload_secure_settings`) so the nodes pick up keystore
changes to `cluster.remote.<alias>.credentials` without a restart.

Credentials are reloadable from 8.13.0 (es-facts §1): on a cluster with any older node, `reload`
refuses before calling anything, and the caller restarts instead (`restart.rolling_restart`).
A password-protected keystore needs `secure_settings_password` in the request body (the cluster's
`keystore_password`); it travels in the HTTPS body only, never in a message. Each node answers for
itself: a `reload_exception` (wrong password, unreadable keystore) or a node missing from the
answer is a failure, reported per node.

From 9.3 each node also says which keystore it read (`keystore_path`, `keystore_digest`: the hex
SHA-256 of the file's bytes; es-facts §12): `ReloadResult.digests` holds them, and
`keystore_details` says whether every node is new enough to report them. The 8.x client returns
these fields as the server sends them (they are answer fields, not request parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esremote.cluster import facts as cluster_facts
from esremote.cluster.client import connect, mapped_errors
from esremote.errors import ClusterError, PreconditionError
from esremote.inventory import Inventory

__all__ = ["ReloadError", "ReloadResult", "reload_secure_settings"]


@dataclass
class ReloadResult:
    cluster: str
    reloaded: list[str] = field(default_factory=list)          # node names
    failed: dict[str, str] = field(default_factory=dict)       # node name -> reason
    digests: dict[str, str] = field(default_factory=dict)      # node name -> keystore_digest (9.3+)
    keystore_paths: dict[str, str] = field(default_factory=dict)  # node name -> keystore_path (9.3+)
    keystore_details: bool = False                             # every node is 9.3+: digests are owed

    @property
    def ok(self) -> bool:
        return not self.failed


class ReloadError(ClusterError):
    """Some nodes did not reload; `result` has every node's outcome."""

    def __init__(self, result: ReloadResult) -> None:
        lines = "; ".join(f"{node}: {why}" for node, why in sorted(result.failed.items()))
        super().__init__(f"reload_secure_settings failed on {len(result.failed)} node(s): {lines}. Fix the "
                         "keystore on those nodes (or keystore_password in the inventory) and reload again, "
                         "or restart them", cluster=result.cluster, transient=False)
        self.result = result


def reload_secure_settings(inventory: Inventory, cluster: str, *, es: Any = None,
                           facts: cluster_facts.ClusterFacts | None = None) -> ReloadResult:
    """Reload every node's secure settings; `PreconditionError` when a node is older than 8.13,
    `ReloadError` when any node failed."""
    es = es if es is not None else connect(inventory.cluster(cluster))
    facts = facts if facts is not None else cluster_facts.gather(es, cluster)
    _check_versions(facts)
    password = inventory.cluster(cluster).keystore_password
    body = {"secure_settings_password": password.resolve().get_secret_value()} if password is not None else {}
    with mapped_errors(cluster, "POST _nodes/reload_secure_settings"):
        answer = es.nodes.reload_secure_settings(**body).body
    result = read_answer(cluster, answer, expected=[n.name for n in inventory.cluster(cluster).nodes],
                         names={n.id: n.name for n in facts.nodes})
    result.keystore_details = all(n.version >= cluster_facts.RELOAD_REPORTS_KEYSTORE for n in facts.nodes)
    if not result.ok:
        raise ReloadError(result)
    return result


def _check_versions(facts: cluster_facts.ClusterFacts) -> None:
    old = [f"{n.name} ({n.version_text})" for n in facts.nodes if n.version < cluster_facts.RELOADABLE_CREDENTIALS]
    if old or not facts.nodes:
        raise PreconditionError(
            f"cluster {facts.cluster}: cluster.remote.*.credentials are reloadable only from Elasticsearch 8.13; "
            f"older node(s): {', '.join(old) or 'no nodes reported'}. Restart the nodes instead (rolling restart) "
            "to load the keystore")


def read_answer(cluster: str, answer: Mapping[str, Any], *, expected: list[str],
                names: Mapping[str, str] | None = None) -> ReloadResult:
    """Per-node outcome of a reload answer: reloaded, `reload_exception`, failed, or missing.

    `names` maps node ids to names (failures name nodes by id only)."""
    result = ReloadResult(cluster)
    for node_id, node in (answer.get("nodes") or {}).items():
        name = str(node.get("name", node_id))
        error = node.get("reload_exception")
        if error:
            result.failed[name] = f"{error.get('type', 'exception')}: {error.get('reason', '')}".strip()
        else:
            result.reloaded.append(name)
        if node.get("keystore_digest"):
            result.digests[name] = str(node["keystore_digest"])
        if node.get("keystore_path"):
            result.keystore_paths[name] = str(node["keystore_path"])
    for failure in (answer.get("_nodes") or {}).get("failures") or []:
        node_id = str(failure.get("node_id") or "?")
        cause = failure.get("caused_by") or {}
        result.failed[(names or {}).get(node_id, node_id)] = cause.get("reason") or failure.get("reason") or "failed"
    for name in expected:
        if name not in result.reloaded and name not in result.failed:
            result.failed[name] = "missing from the answer (node down or not in the cluster)"
    return result
