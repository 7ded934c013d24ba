"""Preflight of what uses the link: the cross-cluster work using the alias and its owners
(`esremote.cluster.usage`), and on a 9.x local cluster every alias still on the (deprecated)
certificate model (`esremote.cluster.deprecations`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from esremote.cluster.deprecations import DEPRECATED_FROM, certificate_model_aliases
from esremote.errors import EsRemoteError
from esremote.inventory import Inventory
from esremote.preflight.report import PreflightReport
from esremote.ssh import SSHPool


def _certificate_model(report: PreflightReport, inventory: Inventory, local: str, es, pool: SSHPool,
                       max_workers: int) -> None:
    """On 9.x: every alias of the local cluster still on the certificate model (deprecated), from
    the nodes' deprecation logs and `_remote/info`, so the operator sees what is left."""
    found = report.clusters.get(local)
    if found is None or found.min_version < DEPRECATED_FROM:
        return
    try:
        result = certificate_model_aliases(inventory, local, pool, es=es, facts=found, max_workers=max_workers)
    except EsRemoteError as exc:
        report.failed_check(exc, "certificate-model aliases", local)
        report.add("certificate-model aliases", local, "warn", f"could not list them: {exc}",
                   "check the nodes' deprecation logs (<path.logs>/<cluster.name>_deprecation.json) by hand")
        return
    report.certificate_model = result
    if not result.aliases:
        report.add("certificate-model aliases", local, "ok", "no alias on the certificate model (deprecated in 9.0)"
                   + (f"; unread logs: {result.describe()}" if result.unread else ""))
        return
    report.add("certificate-model aliases", local, "warn",
               f"{len(result.aliases)} alias(es) still on the certificate model, deprecated in 9.0 and to be "
               f"removed in a future major version: {result.describe()}",
               "migrate each to the API-key model: esremote migrate --alias ALIAS")


def _usage(report: PreflightReport, es, local: str, usage_finder: Callable[..., Any] | None) -> None:
    """Which cross-cluster work uses the alias, and who owns it (cluster-ops' `usage` module)."""
    finder = usage_finder or _default_usage_finder()
    where = f"{local}: alias {report.alias}"
    if finder is None:
        report.add("usage", where, "warn", "not checked: esremote.cluster.usage is not available",
                   "list transforms, ML datafeeds, followers and auto-follow patterns using the alias by hand")
        return
    try:
        report.usage = finder(es, local, report.alias)
    except EsRemoteError as exc:
        report.failed_check(exc, "usage", where)
        report.add("usage", where, "block", f"could not list the work using the alias: {exc}",
                   "see the error; the inventory's user needs monitor, read_ccr, monitor_transform and monitor_ml")
        return
    report.add("usage", where, "ok", _describe_usage(report.usage))


def _default_usage_finder() -> Callable[..., Any] | None:
    """The hook to cluster-ops' `esremote.cluster.usage.read_usage(es, cluster, alias)`."""
    try:
        from esremote.cluster import usage  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(usage, "read_usage", None)


def _describe_usage(usage: Any) -> str:
    """`transform ccs-hosts (started, user with roles ccs_role); follower follower-logs (active)`."""
    items = getattr(usage, "items", None)
    if items is None:
        return str(usage)
    if not items:
        return "no cross-cluster work uses the alias"
    parts = []
    for item in items:
        owner = item.owner.describe() if getattr(item, "owner", None) else "owner not reported"
        parts.append(f"{item.kind} {item.id} ({item.state}, {owner}; reads {', '.join(item.remote.patterns)})")
    notes = list(getattr(usage, "notes", ()) or ())
    return "; ".join(parts) + (f" [notes: {'; '.join(notes)}]" if notes else "")
