"""Preflight: everything the migration of one alias needs, checked without changing anything.

    report = preflight(inventory, "my_remote", pool=pool)
    rich.print(report.table())
    report.raise_if_blocked()        # PreconditionError listing every blocking finding and its fix

Checks (each a `Finding`; a blocking one always says what to do):

* both clusters: reachable, every node >= 8.10 (below 8.14 a warning: beta), the inventory names
  every node of the cluster and nothing else, licence enterprise or trial, health green, security on;
* every node over SSH: reachable, sudo when the inventory asks for it, ES home, config and keystore
  found, and the keystore password known (and right) when the keystore has one;
* remote nodes: `remote_cluster_port` free (or already Elasticsearch's own remote cluster server);
* the alias: where it is defined (persistent / transient cluster settings, elasticsearch.yml of the
  local nodes, and whether those files agree), its mode, seeds or proxy address, skip_unavailable
  and other options, how `_remote/info` sees it now;
* the cross-cluster work using the alias and its owners (`esremote.cluster.usage`);
* on a 9.x local cluster: every alias still on the (deprecated) certificate model, from each local
  node's deprecation log and `_remote/info` (`esremote.cluster.deprecations`).

Later phases consume the report: `clusters` (facts), `nodes` (per-node paths, yml, keystore),
`alias` (`AliasDefinition`) and `usage`.

One idea per module: `report` (the findings and what was found: `PreflightReport`, `NodeCheck`,
`AliasDefinition`), `cluster_checks` (both clusters over REST), `node_checks` (every node over
SSH), `alias_checks` (where and how the alias is defined), `work_checks` (the work using the alias;
the aliases left on the certificate model). `preflight` here runs them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from esremote.cluster.client import connect
from esremote.errors import ConfigError
from esremote.inventory import Inventory
from esremote.preflight.alias_checks import _alias_checks
from esremote.preflight.cluster_checks import _cluster_checks, _strong_identity
from esremote.preflight.node_checks import _node_checks
from esremote.preflight.report import AliasDefinition, Finding, NodeCheck, PreflightReport
from esremote.preflight.work_checks import _certificate_model, _usage
from esremote.ssh import SSHPool

__all__ = ["AliasDefinition", "Finding", "NodeCheck", "PreflightReport", "preflight"]


def preflight(inventory: Inventory, alias: str, *, pool: SSHPool | None = None,
              clients: Mapping[str, Any] | None = None,
              usage_finder: Callable[..., Any] | None = None, max_workers: int = 8,
              strong_identity: bool = False) -> PreflightReport:
    """Run every check for `alias` (an entry of the inventory's `aliases:`). Changes nothing.

    `clients` maps cluster name -> elasticsearch client (default: `connect` from the inventory);
    `usage_finder(es, cluster, alias)` overrides how cross-cluster work is found; at most
    `max_workers` nodes are checked over SSH at once; `strong_identity` needs 9.3 on both clusters."""
    link = inventory.aliases.get(alias)
    if link is None:
        raise ConfigError(f"alias {alias!r} is not in the inventory's `aliases:` (it has: "
                          f"{', '.join(inventory.aliases) or 'none'}); add it as {alias}: {{local: ..., remote: ...}}")
    report = PreflightReport(alias)
    clients = dict(clients or {})
    own_pool = pool is None
    pool = pool or SSHPool()
    try:
        for name in (link.local, link.remote):
            es = clients.get(name) or clients.setdefault(name, connect(inventory.cluster(name)))
            _cluster_checks(report, inventory, name, es)
            if strong_identity:
                _strong_identity(report, report.clusters.get(name))
        _node_checks(report, inventory, pool, [*inventory.nodes(link.local), *inventory.nodes(link.remote)],
                     max_workers)
        _alias_checks(report, link.local, link.remote, clients[link.local])
        _usage(report, clients[link.local], link.local, usage_finder)
        _certificate_model(report, inventory, link.local, clients[link.local], pool, max_workers)
    finally:
        if own_pool:
            pool.close()
    return report
