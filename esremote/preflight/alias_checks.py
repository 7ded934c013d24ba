"""Preflight of the alias on the local cluster: where it is defined (persistent / transient cluster
settings, elasticsearch.yml of the local nodes, and whether those files agree), its mode, seeds or
proxy address, skip_unavailable and other options, and how `_remote/info` sees it now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esremote.cluster.client import mapped_errors
from esremote.errors import ClusterError
from esremote.preflight.report import AliasDefinition, PreflightReport

_REMOTE_PREFIX = "cluster.remote."


def _alias_checks(report: PreflightReport, local: str, remote: str, es) -> None:
    alias = report.alias
    found = report.clusters.get(local)
    yml = {check.node.name: _alias_settings(check.yml or {}, alias)
           for check in report.nodes.values() if check.node.cluster == local and check.yml is not None}
    info = None
    if found is not None:
        try:
            with mapped_errors(local, "GET _remote/info"):
                info = es.cluster.remote_info().body.get(alias)
        except ClusterError as exc:
            report.failed_check(exc, "alias", local)
            report.add("alias", f"{local}", "warn", f"_remote/info failed: {exc}", "")
    definition = AliasDefinition(
        alias=alias, local=local, remote=remote,
        persistent=_alias_settings(found.persistent, alias) if found else {},
        transient=_alias_settings(found.transient, alias) if found else {},
        yml=yml, remote_info=info)
    report.definition = definition
    where = f"{local}: alias {alias}"
    if found is None:
        return
    if not definition.sources:
        report.add("alias", where, "block", "not defined: not in the persistent or transient cluster settings, "
                   "nor in elasticsearch.yml of any local node",
                   "check the alias name in the inventory's `aliases:` (GET _remote/info lists the defined ones)")
        return
    report.add("alias", where, "ok", f"defined in {', '.join(definition.sources)}")
    if not definition.yml_agree:
        having = sorted(n for n, s in yml.items() if s)
        lacking = sorted(n for n, s in yml.items() if not s)
        detail = (f"elasticsearch.yml defines it on {', '.join(having)} but not on {', '.join(lacking)}" if lacking
                  else "elasticsearch.yml differs between nodes: " +
                  "; ".join(f"{n}: {_render(s)}" for n, s in sorted(yml.items())))
        report.add("alias yml", where, "block", detail,
                   "make every local node's elasticsearch.yml define the alias the same way (or not at all)")
    if any(yml.values()) and (definition.persistent or definition.transient):
        report.add("alias yml", where, "warn", "defined both in cluster settings and in elasticsearch.yml; the "
                   "cluster settings win", "the migration changes both; consider keeping only one")
    _alias_shape(report, definition, where)


def _alias_shape(report: PreflightReport, d: AliasDefinition, where: str) -> None:
    if d.mode not in ("sniff", "proxy"):
        report.add("alias mode", where, "block", f"mode {d.mode!r} is neither sniff nor proxy",
                   "fix cluster.remote.<alias>.mode")
        return
    target = d.seeds if d.mode == "sniff" else d.proxy_address
    if not target:
        needed = "seeds" if d.mode == "sniff" else "proxy_address"
        report.add("alias mode", where, "block", f"{d.mode} mode without {needed}: the alias is not enabled",
                   "there is no link to migrate; check the alias name")
        return
    address = f"seeds {', '.join(d.seeds)}" if d.mode == "sniff" else f"proxy_address {d.proxy_address}"
    skip = d.skip_unavailable if d.skip_unavailable is not None else "(default)"
    others = f", other options {_render(d.other_options)}" if d.other_options else ""
    report.add("alias mode", where, "ok", f"mode {d.mode}, {address}, skip_unavailable {skip}{others}")
    if d.remote_info is None:
        report.add("alias link", where, "warn", "not in _remote/info", "check that every local node has the alias")
    elif d.uses_api_key:
        report.add("alias link", where, "ok", "already uses an API key (cluster_credentials present): migrated "
                   "before" + ("" if d.connected else ", and NOT connected"))
    elif d.connected:
        report.add("alias link", where, "ok", "connected (certificate model)")
    else:
        report.add("alias link", where, "warn", "not connected now (_remote/info connected: false)",
                   "fix the existing link first, or expect verification to show the same")


def _alias_settings(flat: Mapping[str, Any], alias: str) -> dict[str, Any]:
    """The alias's settings by suffix (`mode`, `seeds`, ...), credentials excluded (keystore only)."""
    prefix = f"{_REMOTE_PREFIX}{alias}."
    return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix) and not k.endswith(".credentials")}


def _render(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "(nothing)"
