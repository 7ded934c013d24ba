"""Verifying an alias on the local cluster, after the reconnect (API-key model) or after a
rollback (certificate model).

Every node keeps its own remote connections and reads its own keystore (es-facts §12), so the link
is checked on every local node with the `remote_cluster_client` role, each at its own HTTP address
(`nodes`), and the report has one check per node and question:
  1. `remote_info[<node>]`: the alias connected there; API-key model: `cluster_credentials` ==
     `::es_redacted::`; certificate model: no `cluster_credentials`. Polled up to the alias's
     `initial_connect_timeout`;
  2. one cross-cluster request that node coordinates: `resolve_cluster[<node>] <alias>:*` (8.13+) or
     `search[<node>] <alias>:<pattern>` (size 0) below. Only this shows a node whose keystore holds
     another key value: it stays connected, but cannot authenticate.
Nodes without the role are listed as skipped (`node[<name>]`). Then, once every node passed, the
API-key model's cluster-wide checks:
  3. a real cross-cluster search on each remote index pattern the stopped work used (a search that
     skipped the remote, which `skip_unavailable: true` allows, fails the check);
  4. followers making progress: per shard, the follower's global checkpoint reaches the leader's
     (lag 0) or advances, with no read exceptions.

A failed check names itself (and its node) and, where the evidence allows, the matching cause of
Elastic's troubleshooting page (es-facts §9, `causes`): REST error texts first, then the newest
matching entry of the failing node's log, of the local nodes' logs, then of the remote nodes' logs
(read over SSH), then what the state alone says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from esremote.cluster.client import connect
from esremote.errors import ConfigError
from esremote.inventory import Inventory
from esremote.ssh import SSHPool
from esremote.verify.causes import CAUSES, Cause, Diagnosis, diagnose, diagnose_log, log_entries
from esremote.verify.checks import REDACTED, Link, follower_check, link_on_node, search_check
from esremote.verify.nodes import LocalNode, check_every_node, local_nodes, node_url
from esremote.verify.report import Check, VerificationError, VerifyReport

__all__ = ["CAUSES", "REDACTED", "Cause", "Check", "LocalNode", "VerificationError", "VerifyReport", "diagnose",
           "diagnose_log", "local_nodes", "log_entries", "node_url", "patterns_and_followers",
           "verify_api_key_link", "verify_certificate_link"]


def verify_api_key_link(inventory: Inventory, alias: str, *, es: Any = None, pool: SSHPool | None = None,
                        index_patterns: Sequence[str] = (), followers: Sequence[str] = (),
                        connect_timeout: float | None = None, follower_timeout: float = 90.0,
                        check: bool = True, clusters: tuple[str, str] | None = None) -> VerifyReport:
    """Every node's checks, then (only when all passed: they depend on the link) the searches and
    followers in order, stopping at the first failure. `es` is a client of the local cluster (the
    nodes get clients of their own). `pool` lets a failure read the nodes' logs for its cause.
    `clusters` (local, remote) for an alias the inventory does not list (a split's search alias).
    Raises `VerificationError` when `check`."""
    report, es, link = _start(inventory, alias, es, pool, api_key=True, clusters=clusters)
    _check_nodes(report, es, inventory, link, connect_timeout, index_patterns[0] if index_patterns else "*")
    steps = [*[(lambda p=p: search_check(es, link, p)) for p in index_patterns],
             *[(lambda f=f: follower_check(es, link, f, follower_timeout)) for f in followers]]
    for step in steps:
        if not report.ok:
            break
        report.checks.append(step())
    return report.raise_if_failed() if check else report


def verify_certificate_link(inventory: Inventory, alias: str, *, es: Any = None, pool: SSHPool | None = None,
                            connect_timeout: float | None = None, check: bool = True) -> VerifyReport:
    """The rollback's check: on every node, the alias connected in the certificate model (no
    `cluster_credentials`) and one cross-cluster request through it."""
    report, es, link = _start(inventory, alias, es, pool, api_key=False)
    _check_nodes(report, es, inventory, link, connect_timeout, "*")
    return report.raise_if_failed() if check else report


def patterns_and_followers(usage: Any) -> tuple[list[str], list[str]]:
    """From cluster-ops' `UsageReport`: the remote index patterns and the follower indices to check."""
    followers = [u.id for u in getattr(usage, "items", ()) if u.kind == "follower"]
    return list(usage.remote_patterns()), followers


def _start(inventory: Inventory, alias: str, es: Any, pool: SSHPool | None, *,
           api_key: bool, clusters: tuple[str, str] | None = None) -> tuple[VerifyReport, Any, Link]:
    local, remote = clusters or _clusters(inventory, alias)
    es = es if es is not None else connect(inventory.cluster(local))
    link = Link(local, alias, api_key, Diagnosis(inventory, local, remote, pool))
    return VerifyReport(alias, local, "api_key" if api_key else "certificate"), es, link


def _check_nodes(report: VerifyReport, es: Any, inventory: Inventory, link: Link, timeout: float | None,
                 pattern: str) -> None:
    report.checks += check_every_node(
        es, inventory.cluster(link.cluster),
        lambda client, node: link_on_node(client, link, node, timeout=timeout, pattern=pattern))


def _clusters(inventory: Inventory, alias: str) -> tuple[str, str]:
    link = inventory.aliases.get(alias)
    if link is None:
        raise ConfigError(f"alias {alias!r} is not in the inventory's `aliases:` (it has: "
                          f"{', '.join(inventory.aliases) or 'none'})")
    return link.local, link.remote
