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
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from esremote.cluster import facts as cluster_facts
from esremote.cluster.client import connect, mapped_errors
from esremote.cluster.deprecations import DEPRECATED_FROM, certificate_model_aliases
from esremote.cluster.facts import STRONG_IDENTITY_FROM, ClusterFacts, NodeFacts
from esremote.errors import ClusterError, ConfigError, EsRemoteError, KeystoreError, PreconditionError
from esremote.esyml import EsYml
from esremote.esyml import _decode as decode_yml
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.node_keystore import NodeKeystore
from esremote.ssh import SSHConnection, SSHPool

__all__ = ["AliasDefinition", "Finding", "NodeCheck", "PreflightReport", "preflight"]

Status = Literal["ok", "warn", "block"]
_REMOTE_PREFIX = "cluster.remote."
_WILDCARD_HOSTS = {"0.0.0.0", "*", "::", "[::]", "[::ffff:0.0.0.0]"}


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Finding:
    check: str
    where: str
    status: Status
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.check}: {self.detail}" + (f"; {self.fix}" if self.fix else "")


@dataclass
class NodeCheck:
    """What SSH showed of one node; None where the check could not run."""

    node: ResolvedNode
    reachable: bool = False
    sudo: bool | None = None
    es_home: bool | None = None
    config: bool | None = None
    keystore: bool | None = None
    keystore_protected: bool | None = None
    yml: dict[str, Any] | None = None       # the node's elasticsearch.yml, flat
    port_free: bool | None = None            # remote nodes: remote_cluster_port


@dataclass(frozen=True)
class AliasDefinition:
    """Where and how the alias is defined on the local cluster."""

    alias: str
    local: str
    remote: str
    persistent: Mapping[str, Any] = field(default_factory=dict)   # keyed by the part after the alias
    transient: Mapping[str, Any] = field(default_factory=dict)
    yml: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # node name -> its yml settings
    remote_info: Mapping[str, Any] | None = None                   # the alias's `_remote/info` entry

    @property
    def sources(self) -> list[str]:
        found = [name for name in ("persistent", "transient") if getattr(self, name)]
        return found + (["elasticsearch.yml"] if any(self.yml.values()) else [])

    @property
    def yml_agree(self) -> bool:
        """Every local node's file says the same about the alias (all of them, or none)."""
        return len({_frozen(v) for v in self.yml.values()}) <= 1

    @property
    def effective(self) -> dict[str, Any]:
        """What Elasticsearch applies: yml < persistent < transient."""
        first_yml = next((dict(v) for v in self.yml.values() if v), {})
        return {**first_yml, **self.persistent, **self.transient}

    @property
    def mode(self) -> str:
        return str(self.effective.get("mode", "sniff")).lower()

    @property
    def seeds(self) -> list[str]:
        value = self.effective.get("seeds") or []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    @property
    def proxy_address(self) -> str | None:
        return self.effective.get("proxy_address") or None

    @property
    def skip_unavailable(self) -> Any:
        return self.effective.get("skip_unavailable")

    @property
    def other_options(self) -> dict[str, Any]:
        known = {"mode", "seeds", "proxy_address", "skip_unavailable"}
        return {k: v for k, v in self.effective.items() if k not in known}

    @property
    def uses_api_key(self) -> bool:
        return bool(self.remote_info) and "cluster_credentials" in self.remote_info

    @property
    def connected(self) -> bool:
        return bool(self.remote_info) and bool(self.remote_info.get("connected"))


@dataclass
class PreflightReport:
    alias: str
    findings: list[Finding] = field(default_factory=list)
    clusters: dict[str, ClusterFacts] = field(default_factory=dict)
    nodes: dict[str, NodeCheck] = field(default_factory=dict)   # "cluster/node" -> check
    definition: AliasDefinition | None = None
    usage: Any = None
    certificate_model: Any = None   # 9.x local cluster: deprecations.CertificateModelAliases
    # Checks that failed on a transient error (a 429/503 burst, a node restarting): the report is
    # not to be trusted, and asking again may give a true one (`raise_if_blocked` says so).
    retryable: list[str] = field(default_factory=list)

    def add(self, check: str, where: str, status: Status, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, where, status, detail, fix))

    def failed_check(self, exc: BaseException, check: str, where: str) -> None:
        if getattr(exc, "transient", False):
            self.retryable.append(f"{where}: {check}: {exc}")

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "block"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "warn"]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def find(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def raise_if_blocked(self) -> PreflightReport:
        """PreconditionError listing the blocking findings; a transient one (retrying may help) when a
        check failed on a transient error, so that the preflight task is retried (429/503 bursts)."""
        if self.retryable:
            lines = "\n".join(f"- {f}" for f in self.blocking) or "\n".join(f"- {r}" for r in self.retryable)
            raise PreconditionError(f"preflight for alias {self.alias}: {len(self.retryable)} check(s) failed on a "
                                    f"transient error (retrying may help):\n{lines}", transient=True)
        if self.blocking:
            lines = "\n".join(f"- {f}" for f in self.blocking)
            raise PreconditionError(f"preflight for alias {self.alias} found {len(self.blocking)} blocking "
                                    f"problem(s):\n{lines}")
        return self

    def table(self):
        """A rich Table: one row per finding, blocking ones first."""
        from rich.table import Table  # noqa: PLC0415 - only for display
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=f"preflight: alias {self.alias}", show_lines=False)
        for column in ("status", "check", "where", "detail", "what to do"):
            table.add_column(column, overflow="fold")
        style = {"block": "bold red", "warn": "yellow", "ok": "green"}
        order = {"block": 0, "warn": 1, "ok": 2}
        for f in sorted(self.findings, key=lambda f: order[f.status]):
            # Text, not markup: details quote Elasticsearch messages full of [brackets].
            table.add_row(Text(f.status, style=style[f.status]), Text(f.check), Text(f.where), Text(f.detail),
                          Text(f.fix))
        return table

    def to_dict(self) -> dict[str, Any]:
        d = self.definition
        return {
            "alias": self.alias, "ok": self.ok,
            "findings": [f.__dict__ for f in self.findings],
            "versions": {c: {n.name: n.version_text for n in f.nodes} for c, f in self.clusters.items()},
            "definition": None if d is None else {
                "sources": d.sources, "mode": d.mode, "seeds": d.seeds, "proxy_address": d.proxy_address,
                "skip_unavailable": d.skip_unavailable, "other_options": d.other_options,
                "yml_agree": d.yml_agree, "uses_api_key": d.uses_api_key, "connected": d.connected},
            "certificate_model": None if self.certificate_model is None else self.certificate_model.to_dict(),
        }


# --------------------------------------------------------------------------------------- the checks


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


def _cluster_checks(report: PreflightReport, inventory: Inventory, name: str, es) -> None:
    try:
        found = cluster_facts.gather(es, name)
    except ClusterError as exc:
        report.failed_check(exc, "reachable", name)
        report.add("reachable", name, "block", str(exc),
                   "check the cluster's urls, ca_cert and auth in the inventory, and that it is up")
        return
    report.clusters[name] = found
    _versions(report, found)
    _membership(report, inventory, found)
    _licence(report, found)
    if found.health == "green":
        report.add("health", name, "ok", "green")
    else:
        report.add("health", name, "block", f"health is {found.health} ({found.number_of_nodes} nodes)",
                   "wait for green (GET _cluster/health, _cluster/allocation/explain) before migrating")
    if found.security_enabled:
        report.add("security", name, "ok", "security enabled")
    else:
        report.add("security", name, "block", "security is disabled",
                   "set xpack.security.enabled: true with TLS on every node; remote cluster security needs it")


def _versions(report: PreflightReport, found: ClusterFacts) -> None:
    for node in found.nodes:
        where = f"{found.cluster}/{node.name}"
        if node.version < cluster_facts.MIN_VERSION:
            report.add("version", where, "block", f"Elasticsearch {node.version_text}",
                       "upgrade to 8.10 or later (8.14+ recommended): API-key remote clusters need it on "
                       "every node of both clusters")
        elif node.version < cluster_facts.GA_VERSION:
            report.add("version", where, "warn", f"Elasticsearch {node.version_text}: API-key remote "
                       "clusters are beta before 8.14", "consider upgrading to 8.14 or later first")
        else:
            report.add("version", where, "ok", f"Elasticsearch {node.version_text}")


def _strong_identity(report: PreflightReport, found: ClusterFacts | None) -> None:
    """Strong identity verification is a 9.3 technical preview: every node of both clusters needs it."""
    if found is None:
        return
    if found.min_version < STRONG_IDENTITY_FROM:
        report.add("strong_identity", found.cluster, "block",
                   f"--strong-identity needs Elasticsearch 9.3 or later, {found.cluster} runs "
                   f"{'.'.join(map(str, found.min_version))}",
                   "upgrade both clusters to 9.3+ or migrate without --strong-identity")
    else:
        report.add("strong_identity", found.cluster, "ok",
                   "strong identity verification (technical preview) available")


def _membership(report: PreflightReport, inventory: Inventory, found: ClusterFacts) -> None:
    listed = {n.name for n in inventory.cluster(found.cluster).nodes}
    running = set(found.node_names)
    for name in sorted(listed - running):
        report.add("membership", f"{found.cluster}/{name}", "block", "in the inventory but not in the cluster "
                   "(GET _nodes)", "start the node, or fix its name in the inventory (node.name)")
    for name in sorted(running - listed):
        report.add("membership", f"{found.cluster}/{name}", "block", "in the cluster but not in the inventory",
                   "add the node to the inventory: the migration edits every node")


def _licence(report: PreflightReport, found: ClusterFacts) -> None:
    if found.licence_allows_rcs:
        report.add("licence", found.cluster, "ok", f"{found.licence_type} ({found.licence_status})")
        return
    report.add("licence", found.cluster, "block",
               f"licence is {found.licence_type} ({found.licence_status or 'unknown status'}); Elasticsearch "
               "would refuse with: current license is non-compliant for [advanced-remote-cluster-security]",
               "install an enterprise licence (PUT _license) or start a trial (POST _license/start_trial) "
               "on this cluster")


# ---------------------------------------------------------------------------------------- per node


def _node_checks(report: PreflightReport, inventory: Inventory, pool: SSHPool, nodes: list[ResolvedNode],
                 max_workers: int = 8) -> None:
    def check(node: ResolvedNode) -> NodeCheck:
        return _check_node(report, inventory, pool, node)

    results = fan_out(nodes, check, max_workers=max_workers)
    for node, outcome in results.items():
        if isinstance(outcome, BaseException):  # a bug or an unexpected error: still a finding
            report.add("ssh", str(node), "block", f"node check failed: {outcome}", "see the error and retry")
            continue
        report.nodes[str(node)] = outcome


def _check_node(report: PreflightReport, inventory: Inventory, pool: SSHPool, node: ResolvedNode) -> NodeCheck:
    result = NodeCheck(node)
    where = str(node)
    try:
        conn = pool.get(node.ssh_target())
        conn.connect()
        result.reachable = True
        report.add("ssh", where, "ok", f"reachable as {conn.identity()[1]}")
        if node.ssh.sudo:
            conn.run("true", sudo=True)
            result.sudo = True
            report.add("sudo", where, "ok", "sudo works")
    except EsRemoteError as exc:
        step = "sudo" if result.reachable else "ssh"
        report.add(step, where, "block", str(exc), "fix SSH access (address, key, known_hosts, sudoers) for "
                   "this node")
        return result
    sudo = bool(node.ssh.sudo)
    try:
        _paths(report, conn, node, result, sudo)
        if result.config:
            _read_yml(report, conn, node, result, sudo)
        if result.keystore and result.es_home:  # the password check runs es_home's keystore CLI
            _keystore(report, conn, node, result)
        if node.role == "remote":
            _port(report, inventory, conn, node, result)
    except EsRemoteError as exc:
        report.add("node", where, "block", str(exc), "fix the node access and retry")
    return result


def _paths(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck, sudo: bool) -> None:
    paths = {"es_home": f"{node.es_home}/bin/elasticsearch-keystore", "config": str(node.yml_path),
             "keystore": str(node.keystore_path)}
    script = "; ".join(f"if [ -e {shlex.quote(p)} ]; then echo y; else echo n; fi" for p in paths.values())
    answers = conn.run(script, sudo=sudo).stdout.split()
    where = str(node)
    for (name, path), answer in zip(paths.items(), answers):
        found = answer == "y"
        setattr(result, name, found)
        if found:
            report.add(name, where, "ok", f"{path} found")
        elif name == "keystore":
            report.add(name, where, "warn", f"no keystore at {path}",
                       "Elasticsearch creates one on first start; esremote will create it when it adds credentials")
        else:
            what = "es_home" if name == "es_home" else "config_dir"
            report.add(name, where, "block", f"{path} not found", f"set {what} for this node in the inventory")


def _read_yml(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck,
              sudo: bool) -> None:
    data = conn.read_file(str(node.yml_path), sudo=sudo)
    source = f"{node}:{node.yml_path}"
    try:  # not UTF-8 is refused here: Elasticsearch would not read it, and no edit could keep it
        result.yml = EsYml.parse(decode_yml(data, source), source=source).flat()
    except ConfigError as exc:
        report.add("config", str(node), "block", str(exc), "fix elasticsearch.yml on this node")


def _keystore(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck) -> None:
    where = str(node)
    password = node.keystore_password.resolve() if node.keystore_password is not None else None
    # As the keystore file's owner (root in a package install), like every keystore CLI run.
    keystore = NodeKeystore(conn, es_home=str(node.es_home), config_dir=str(node.config_dir),
                            password=password, sudo=bool(node.ssh.sudo))
    result.keystore_protected = keystore.has_password()
    if not result.keystore_protected:
        report.add("keystore password", where, "ok", "keystore has no password")
        return
    if password is None:
        report.add("keystore password", where, "block", "the keystore is password-protected and no "
                   "password is configured", "set keystore_password (a secret reference) for this cluster")
        return
    try:
        keystore.list()
    except KeystoreError as exc:
        report.add("keystore password", where, "block", str(exc),
                   f"set keystore_password of cluster {node.cluster} to this keystore's password "
                   f"({node.keystore_password.describe()})")
        return
    report.add("keystore password", where, "ok", "password-protected; the configured password opens it")


def _port(report: PreflightReport, inventory: Inventory, conn: SSHConnection, node: ResolvedNode,
          result: NodeCheck) -> None:
    port = inventory.cluster(node.cluster).remote_cluster_port
    where = str(node)
    facts = report.clusters.get(node.cluster)
    own = facts.node(node.name) if facts else None
    in_use, how = _listening(conn, node, own, port)
    result.port_free = not in_use
    if not in_use:
        report.add("port", where, "ok", f"port {port} is free ({how})")
    elif own is not None and (own.remote_cluster_address or "").endswith(f":{port}"):
        report.add("port", where, "ok", f"port {port} is already Elasticsearch's remote cluster server "
                   f"({own.remote_cluster_address})")
    else:
        report.add("port", where, "block", f"port {port} is already in use ({how})",
                   f"stop what listens on {port}, or set remote_cluster_port for this cluster to a free port")


def _listening(conn: SSHConnection, node: ResolvedNode, own: NodeFacts | None, port: int) -> tuple[bool, str]:
    """Whether something listens on `port` on the node's addresses: `ss -ltn` on the node, else a
    TCP connect from here."""
    result = conn.run("ss -ltnH", check=False)
    addresses = {node.address, *_resolved(node.address), *([own.ip] if own and own.ip else [])}
    if result.exit_code == 0:
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            host, _, listen_port = fields[3].rpartition(":")
            host = host.split("%", 1)[0]
            if listen_port == str(port) and (host in _WILDCARD_HOSTS or host.strip("[]") in addresses):
                return True, f"ss: {fields[3]} is listening"
        return False, "ss -ltn"
    try:
        with socket.create_connection((node.address, port), timeout=3):
            return True, f"a TCP connect to {node.address}:{port} succeeded"
    except OSError:
        return False, f"a TCP connect to {node.address}:{port} was refused"


def _resolved(address: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(address, None)}
    except OSError:
        return set()


# -------------------------------------------------------------------------------------- the alias


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


def _frozen(settings: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in settings.items()))


# -------------------------------------------------------------------------------------- the usage


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
