"""`esremote diagnose`: what is wrong with an alias's link right now, and the fix, from Elastic's
remote-cluster troubleshooting page (es-facts §9). Changes nothing.

For each alias it gathers
  1. every local node's own `_remote/info` (each node keeps its own connections and reads its own
     keystore, es-facts §12), and one cross-cluster request that node coordinates
     (`_resolve/cluster`, 8.13+, else a size-0 search): the per-node checks of `esremote.verify`,
     in whichever model the node is in (`cluster_credentials` in its answer: API key);
  2. the settings that decide the link: `cluster.remote.<alias>.*` (cluster settings, persistent and
     transient, and each local node's elasticsearch.yml as `_nodes` shows it),
     `xpack.security.remote_cluster_client.ssl.*` on the local nodes, `remote_cluster_server.*`,
     `remote_cluster.*` and `xpack.security.remote_cluster_server.ssl.*` on the remote nodes;
  3. when a check fails: the last lines of every node's Elasticsearch log on both sides, read over
     SSH (`node_log_tail`), each read once.

The cause is the first failed check's (REST error text first, then the failing node's log, the
local nodes' logs, the remote nodes' logs: `esremote.verify.causes`), else what the settings show
(the alias pointing at the transport port, the remote cluster server not enabled).

    report = diagnose_aliases(load_inventory(path), ["my_remote"])
    report.healthy, report.to_text(), report.to_dict()
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from esremote.cluster.client import connect, mapped_errors
from esremote.cluster.facts import ClusterFacts, gather
from esremote.cluster.restart import node_log_tail
from esremote.errors import ConfigError, EsRemoteError
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.redact import default_redactor
from esremote.ssh import SSHPool
from esremote.verify.causes import LOG_LINES, Cause, Diagnosis, diagnose_log, log_entries
from esremote.verify.checks import Link, link_on_node
from esremote.verify.nodes import LocalNode, check_every_node
from esremote.verify.report import Check

__all__ = ["AliasDiagnosis", "DiagnoseReport", "diagnose_aliases"]

DEFAULT_WAIT = 3.0      # seconds a node's alias may take to connect (it may be connecting lazily)
LOCAL_PREFIXES = ("xpack.security.remote_cluster_client.ssl.",)
REMOTE_PREFIXES = ("remote_cluster_server.", "remote_cluster.", "xpack.security.remote_cluster_server.ssl.")
DEFAULT_TRANSPORT_PORT = 9300

# Settings-derived causes (es-facts §9 "general checks"), used when no log or error text names one.
REMOTE_SERVER_OFF = Cause(
    "remote_server_off", "remote cluster server not enabled on the remote",
    "set remote_cluster_server.enabled: true and remote_cluster.host on every remote node (the port defaults to "
    "9443), then restart them one by one", ())
ALIAS_ON_TRANSPORT_PORT = Cause(
    "transport_port", "connecting to the transport port when using API keys",
    "the alias points at the transport port: set its seeds / proxy_address to the remote cluster server port "
    "(remote_cluster.port, 9443)", ())


@dataclass
class LogView:
    """One node's log, as far as causes go: its newest matching entry, or why it could not be read."""

    node: str
    cause: Cause | None = None
    entry: str = ""
    unreadable: str = ""

    def to_text(self) -> str:
        if self.unreadable:
            return f"{self.node}: {self.unreadable}"
        if self.cause is None:
            return f"{self.node}: nothing from the troubleshooting page in the last {LOG_LINES} lines"
        return f"{self.node}: {self.cause.title}: {_first_lines(self.entry)}"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "cause": self.cause.key if self.cause else None, "entry": self.entry,
                "unreadable": self.unreadable}


@dataclass
class AliasDiagnosis:
    alias: str
    local: str
    remote: str
    checks: list[Check] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)          # node -> api_key | certificate | undefined
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)   # where -> flat settings
    notes: list[str] = field(default_factory=list)                # what could not be read
    logs: list[LogView] = field(default_factory=list)
    cause: Cause | None = None
    evidence: str = ""
    cause_from: str = ""                                          # the check (or "settings") it came from

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks) and self.cause is None

    @property
    def failed_nodes(self) -> list[str]:
        return list(dict.fromkeys(c.node for c in self.checks if not c.ok and c.node))

    @property
    def model(self) -> str:
        kinds = set(self.models.values())
        if not kinds:
            return "unknown"
        return kinds.pop() if len(kinds) == 1 else "mixed (" + ", ".join(f"{n}: {m}" for n, m in
                                                                          sorted(self.models.items())) + ")"

    def to_text(self) -> str:
        where = f" on node(s) {', '.join(self.failed_nodes)}" if self.failed_nodes else ""
        verdict = "healthy" if self.healthy else f"NOT healthy{where}"
        lines = [f"alias {self.alias} ({self.local} -> {self.remote}): {verdict}; model: {_model(self.model)}"]
        lines += [f"  {check}" for check in self.checks]
        lines += [f"  note: {note}" for note in self.notes]
        if self.settings:
            lines.append("  settings:")
            for where_, values in self.settings.items():
                shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "none of them set"
                lines.append(f"    {where_}: {shown}")
        if self.logs:
            lines.append("  logs (last lines, read over SSH):")
            lines += [f"    {view.to_text()}" for view in self.logs]
        if self.cause is not None:
            lines += [f"  cause (Elastic's remote-cluster troubleshooting page, es-facts §9): {self.cause.title}"
                      + (f" [from {self.cause_from}]" if self.cause_from else ""),
                      f"  fix: {self.cause.fix}"]
            if self.evidence:
                lines.append(f"  evidence: {_first_lines(self.evidence)}")
        elif not self.healthy:
            lines.append("  cause: none of the troubleshooting page's causes matched; see the checks above")
        else:
            lines.append("  cause: none found: the link works on every node")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        cause = None if self.cause is None else {"key": self.cause.key, "title": self.cause.title,
                                                 "fix": self.cause.fix, "from": self.cause_from}
        return {"alias": self.alias, "local": self.local, "remote": self.remote, "healthy": self.healthy,
                "model": self.model, "models": self.models, "failed_nodes": self.failed_nodes,
                "checks": [c.to_dict() for c in self.checks], "settings": self.settings, "notes": self.notes,
                "logs": [v.to_dict() for v in self.logs], "cause": cause, "evidence": self.evidence}


@dataclass
class DiagnoseReport:
    aliases: list[AliasDiagnosis]

    @property
    def healthy(self) -> bool:
        return all(a.healthy for a in self.aliases)

    @property
    def exit_code(self) -> int:
        return 0 if self.healthy else 1

    def to_text(self) -> str:
        return default_redactor.redact("\n".join(a.to_text() for a in self.aliases))

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "aliases": [a.to_dict() for a in self.aliases]}


# --------------------------------------------------------------------------------------------- run


def diagnose_aliases(inventory: Inventory, aliases: Sequence[str] = (), *, wait: float = DEFAULT_WAIT,
                     pool: SSHPool | None = None) -> DiagnoseReport:
    """Diagnose the given aliases (default: every alias of the inventory)."""
    chosen = list(aliases) or list(inventory.aliases)
    if not chosen:
        raise ConfigError("the inventory defines no aliases (`aliases:`): nothing to diagnose")
    unknown = [a for a in chosen if a not in inventory.aliases]
    if unknown:
        raise ConfigError(f"alias {', '.join(unknown)} is not in the inventory's `aliases:` (it has: "
                          f"{', '.join(inventory.aliases)})")
    _remember_secrets(inventory)
    own_pool = pool is None
    pool = pool or SSHPool()
    try:
        return DiagnoseReport([_diagnose(inventory, alias, pool, wait) for alias in dict.fromkeys(chosen)])
    finally:
        if own_pool:
            pool.close()


def _diagnose(inventory: Inventory, alias: str, pool: SSHPool, wait: float) -> AliasDiagnosis:
    link = inventory.aliases[alias]
    result = AliasDiagnosis(alias, link.local, link.remote)
    logs = _Logs(inventory, link.local, link.remote, pool)
    local_facts = _facts(inventory, link.local, result)
    remote_facts = _facts(inventory, link.remote, result)
    try:
        es = connect(inventory.cluster(link.local))
        result.checks = check_every_node(es, inventory.cluster(link.local),
                                         lambda client, node: _node_checks(client, node, result, logs, wait))
    except EsRemoteError as exc:
        result.checks = [Check("local cluster", False, f"cannot ask cluster {link.local}: {exc}")]
    _settings(result, local_facts, remote_facts)
    failed = [c for c in result.checks if not c.ok]
    if failed:
        result.logs = logs.views()
        first = next((c for c in failed if c.cause is not None), None)
        if first is not None:
            result.cause, result.evidence, result.cause_from = first.cause, first.evidence, first.name
    if result.cause is None:
        _settings_cause(result, local_facts, remote_facts, bool(failed))
    if result.cause is None and failed:
        found = logs.newest()
        if found is not None:
            result.cause, result.evidence, result.cause_from = found[0], found[1], "the nodes' logs"
    return result


def _node_checks(client, node: LocalNode, result: AliasDiagnosis, logs: _Logs, wait: float) -> list[Check]:
    with mapped_errors(result.local, f"GET _remote/info on node {node.name}"):
        info = (client.cluster.remote_info().body or {}).get(result.alias)
    api_key = info is not None and "cluster_credentials" in info
    result.models[node.name] = "undefined" if info is None else "api_key" if api_key else "certificate"
    return link_on_node(client, Link(result.local, result.alias, api_key, logs), node, timeout=wait, pattern="*")


def _facts(inventory: Inventory, cluster: str, result: AliasDiagnosis) -> ClusterFacts | None:
    try:
        return gather(connect(inventory.cluster(cluster)), cluster)
    except EsRemoteError as exc:
        result.notes.append(f"cannot read the settings of cluster {cluster}: {exc}")
        return None


def _settings(result: AliasDiagnosis, local: ClusterFacts | None, remote: ClusterFacts | None) -> None:
    prefix = f"cluster.remote.{result.alias}."
    if local is not None:
        for scope, values in (("persistent", local.persistent), ("transient", local.transient)):
            picked = {k: v for k, v in values.items() if k.startswith(prefix)}
            if picked:
                result.settings[f"{result.local} cluster settings ({scope})"] = picked
        for node in local.nodes:
            result.settings[f"{result.local}/{node.name} (elasticsearch.yml)"] = {
                k: v for k, v in node.settings.items() if k.startswith(prefix) or k.startswith(LOCAL_PREFIXES)}
    if remote is not None:
        for node in remote.nodes:
            result.settings[f"{result.remote}/{node.name} (elasticsearch.yml)"] = {
                k: v for k, v in node.settings.items() if k.startswith(REMOTE_PREFIXES)}


def _alias_settings(result: AliasDiagnosis, local: ClusterFacts) -> dict[str, Any]:
    """The alias's effective settings: transient over persistent over the nodes' yml."""
    prefix = f"cluster.remote.{result.alias}."
    merged: dict[str, Any] = {}
    for node in local.nodes:
        merged.update({k: v for k, v in node.settings.items() if k.startswith(prefix)})
    merged.update({k: v for k, v in local.persistent.items() if k.startswith(prefix)})
    merged.update({k: v for k, v in local.transient.items() if k.startswith(prefix)})
    return {k.removeprefix(prefix): v for k, v in merged.items() if v is not None}


def _settings_cause(result: AliasDiagnosis, local: ClusterFacts | None, remote: ClusterFacts | None,
                    failing: bool) -> None:
    """The general checks of the troubleshooting page, for an alias on the API-key model."""
    if "api_key" not in result.models.values():
        return
    if remote is not None:
        off = [n.name for n in remote.nodes if str(n.settings.get("remote_cluster_server.enabled", "false")).lower()
               != "true" or not n.settings.get("remote_cluster.host")]
        if off:
            result.cause, result.cause_from = REMOTE_SERVER_OFF, "settings"
            result.evidence = (f"remote_cluster_server.enabled / remote_cluster.host not set on "
                               f"{result.remote} node(s) {', '.join(off)}")
            return
    if local is None or not failing:
        return
    settings = _alias_settings(result, local)
    addresses = settings.get("proxy_address") or settings.get("seeds") or []
    addresses = [addresses] if isinstance(addresses, str) else list(addresses)
    ports = {str(a).rpartition(":")[2] for a in addresses}
    transport = {str(n.settings.get("transport.port", DEFAULT_TRANSPORT_PORT)) for n in remote.nodes} \
        if remote is not None else {str(DEFAULT_TRANSPORT_PORT)}
    if ports & transport:
        result.cause, result.cause_from = ALIAS_ON_TRANSPORT_PORT, "settings"
        result.evidence = f"cluster.remote.{result.alias}: {', '.join(map(str, addresses))}"


def _remember_secrets(inventory: Inventory) -> None:
    for cluster in inventory.clusters.values():
        for ref in (getattr(cluster.auth, "password", None), getattr(cluster.auth, "api_key", None)):
            if ref is not None:
                try:
                    default_redactor.add(ref.resolve().get_secret_value())
                except EsRemoteError:
                    pass  # unresolvable: connecting says so


class _Logs(Diagnosis):
    """`Diagnosis` (the failing node's log, then the local nodes', then the remote nodes') with each
    node's log read once, whichever check asks first; the report shows what each log says."""

    def __init__(self, inventory: Inventory, local: str, remote: str, pool: SSHPool) -> None:
        super().__init__(inventory, local, remote, pool)
        self._tails: dict[str, list[str]] = {}
        self._tail_lock = threading.Lock()

    def tail(self, node: ResolvedNode) -> list[str]:
        key = str(node)
        with self._tail_lock:
            if key in self._tails:
                return self._tails[key]
        lines = node_log_tail(self.pool, node, lines=LOG_LINES)
        with self._tail_lock:
            return self._tails.setdefault(key, lines)

    def entries(self, nodes: Sequence[ResolvedNode]) -> list[tuple[str, str]]:
        missing = [n for n in nodes if str(n) not in self._tails]
        if len(missing) > 1:
            fan_out(missing, self.tail)
        found = [e for n in nodes for e in log_entries(self.tail(n))]
        return sorted(found, key=lambda e: e[0], reverse=True)

    def all_nodes(self) -> list[ResolvedNode]:
        return self.inventory.nodes(self.local) + self.inventory.nodes(self.remote)

    def views(self) -> list[LogView]:
        nodes = self.all_nodes()
        self.entries(nodes)  # read what no check read yet, in parallel
        views = []
        for node in nodes:
            lines = self.tail(node)
            if len(lines) == 1 and lines[0].startswith("(cannot read"):
                views.append(LogView(str(node), unreadable=lines[0].strip("()")))
                continue
            found = diagnose_log(sorted(log_entries(lines), key=lambda e: e[0], reverse=True))
            views.append(LogView(str(node), *(found or (None, ""))))
        return views

    def newest(self) -> tuple[Cause, str] | None:
        return self.find(None)


def _model(model: str) -> str:
    return {"api_key": "API key (cluster_credentials)", "certificate": "certificate (no cluster_credentials)",
            "undefined": "alias not defined"}.get(model, model)


def _first_lines(text: str, count: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[:count])[:600]
