"""Restarting a cluster's nodes over SSH, the way Elastic's rolling-restart guide does it.

Rolling (one node at a time, the cluster stays up):

    1. `cluster.routing.allocation.enable: primaries` (persistent), so replicas are not rebuilt
       elsewhere while the node is away;
    2. flush (faster recovery);
    3. the node's `restart_command` over SSH (sudo as the inventory says);
    4. wait until the node is back in the cluster under its name (and, where nodes info reports
       it, with a new JVM start time);
    5. allocation back to `null`; wait for green; next node.

Full (`full_restart`): the same around restarting every node at once.

Every wait polls with a deadline (`RestartTimeouts`). A node that does not come back stops the
restart with a `RestartError` carrying the last lines of its log, read over SSH from
`<path.logs>/<cluster.name>.log` (`path.logs` from its elasticsearch.yml, relative to es_home;
default `<es_home>/logs`; `log_dir` overrides). Allocation is then left at `primaries`, as the
guide does while a node is down: the error says how to reset it once the node is fixed.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from esremote.cluster.client import PollTimeout, connect, mapped_errors, poll, retry_transient
from esremote.errors import ClusterError, EsRemoteError, RemoteCommandError
from esremote.esyml import EsYml
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.ssh import SSHPool

__all__ = ["NodeRestart", "RestartError", "RestartReport", "RestartTimeouts", "full_restart", "node_log_tail",
           "rolling_restart"]

log = logging.getLogger(__name__)

ALLOCATION = "cluster.routing.allocation.enable"
LOG_LINES = 20


@dataclass(frozen=True)
class RestartTimeouts:
    command: float = 600.0   # the restart command itself (systemctl waits for the node to start)
    rejoin: float = 300.0    # the node back in the cluster after the command
    green: float = 900.0     # health green after allocation is enabled again
    api: float = 60.0        # a settings call riding out a node that is restarting


@dataclass(frozen=True)
class NodeRestart:
    node: str
    seconds: float


@dataclass
class RestartReport:
    cluster: str
    mode: str                                    # "rolling" | "full"
    nodes: list[NodeRestart] = field(default_factory=list)


class RestartError(ClusterError):
    """A node did not come back: which one, why, its last log lines, and what was done before it."""

    def __init__(self, cluster: str, node: str, why: str, log_tail: Sequence[str], done: Sequence[str]) -> None:
        shown = "\n".join(f"    {line}" for line in log_tail) or "    (no log lines could be read)"
        super().__init__(
            f"node {node} did not come back: {why}. Restart stopped"
            + (f" after {', '.join(done)}" if done else " before any node was restarted")
            + f"; allocation is left at `primaries`. Fix the node, then re-run (or reset with PUT "
              f"_cluster/settings {{\"persistent\":{{\"{ALLOCATION}\":null}}}}). Last log lines of {node}:\n{shown}",
            cluster=cluster, transient=False)
        self.node, self.why, self.log_tail, self.done = node, why, list(log_tail), list(done)


# ------------------------------------------------------------------------------------------ rolling


def rolling_restart(inventory: Inventory, cluster: str, *, pool: SSHPool, es: Any = None,
                    nodes: Sequence[str] | None = None, timeouts: RestartTimeouts = RestartTimeouts(),
                    log_dir: str | Mapping[str, str] | None = None) -> RestartReport:
    """Restart `nodes` (default: every node of `cluster`, inventory order) one at a time.

    A node that is up is restarted only once the cluster is green; a node that is down (say, fixed
    after a failed run) is started first, without waiting for a green it cannot reach without it."""
    es = es if es is not None else connect(inventory.cluster(cluster))
    size = len(inventory.cluster(cluster).nodes)
    present = retry_transient(lambda: _node_names(es, cluster), timeout=timeouts.api)
    targets = sorted(_targets(inventory, cluster, nodes), key=lambda n: n.name in present)
    report = RestartReport(cluster, "rolling")
    for node in targets:
        started = time.monotonic()
        done = [r.node for r in report.nodes]
        if node.name in retry_transient(lambda: _node_names(es, cluster), timeout=timeouts.api):
            _wait_green(es, cluster, size, timeouts)
        log.info("restart %s: allocation primaries, flush, restart", node)
        _set_allocation(es, cluster, "primaries", timeouts)
        _flush(es, cluster)
        before = _jvm_start(es, cluster, node.name)
        _restart_or_stop(pool, es, cluster, node, timeouts, log_dir, done)
        _wait_rejoined(pool, es, cluster, [node], before, timeouts, log_dir, done)
        _set_allocation(es, cluster, None, timeouts)
        _wait_green(es, cluster, size, timeouts)
        report.nodes.append(NodeRestart(node.name, round(time.monotonic() - started, 2)))
        log.info("restart %s: back, cluster green", node)
    return report


def full_restart(inventory: Inventory, cluster: str, *, pool: SSHPool, es: Any = None,
                 timeouts: RestartTimeouts = RestartTimeouts(),
                 log_dir: str | Mapping[str, str] | None = None) -> RestartReport:
    """Restart every node of `cluster` at once (an outage), then wait for all of them and green."""
    es = es if es is not None else connect(inventory.cluster(cluster))
    targets = _targets(inventory, cluster, None)
    started = time.monotonic()
    _set_allocation(es, cluster, "primaries", timeouts)
    _flush(es, cluster)
    before = {n.name: _jvm_start(es, cluster, n.name) for n in targets}
    results = fan_out(targets, lambda n: _restart_command(pool, n, timeouts))
    if results.failed:
        node, exc = next(iter(results.failed.items()))
        others = [str(n) for n in results.failed if n != node]
        why = _command_failure(exc) + (f" (also failed: {', '.join(others)})" if others else "")
        raise RestartError(cluster, str(node), why, node_log_tail(pool, node, es=es, log_dir=log_dir), [])
    for node in targets:
        _wait_rejoined(pool, es, cluster, [node], before[node.name], timeouts, log_dir, [])
    _set_allocation(es, cluster, None, timeouts)
    _wait_green(es, cluster, len(targets), timeouts)
    seconds = round(time.monotonic() - started, 2)
    return RestartReport(cluster, "full", [NodeRestart(n.name, seconds) for n in targets])


def _targets(inventory: Inventory, cluster: str, names: Sequence[str] | None) -> list[ResolvedNode]:
    nodes = inventory.nodes(cluster)
    if names is None:
        return nodes
    by_name = {n.name: n for n in nodes}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"cluster {cluster} has no node(s) {', '.join(unknown)} in the inventory")
    return [by_name[n] for n in names]


# ------------------------------------------------------------------------------------------ steps


def _set_allocation(es, cluster: str, value: str | None, timeouts: RestartTimeouts) -> None:
    def put():
        with mapped_errors(cluster, f"PUT _cluster/settings {ALLOCATION}"):
            es.cluster.put_settings(persistent={ALLOCATION: value})
    retry_transient(put, timeout=timeouts.api)


def _flush(es, cluster: str) -> None:
    """Best effort, as in the guide: a flush that fails only makes recovery slower."""
    try:
        with mapped_errors(cluster, "POST _flush"):
            es.indices.flush()
    except ClusterError as exc:
        log.warning("flush on %s failed (recovery may be slower): %s", cluster, exc)


def _restart_command(pool: SSHPool, node: ResolvedNode, timeouts: RestartTimeouts) -> None:
    conn = pool.get(node.ssh_target())
    conn.run(node.restart_command, sudo=node.ssh.sudo, timeout=timeouts.command)


def _restart_or_stop(pool, es, cluster, node, timeouts, log_dir, done) -> None:
    try:
        _restart_command(pool, node, timeouts)
    except EsRemoteError as exc:
        raise RestartError(cluster, str(node), _command_failure(exc),
                           node_log_tail(pool, node, es=es, log_dir=log_dir), done) from exc


def _command_failure(exc: BaseException) -> str:
    """Short: the log tail follows, so only the exit code and the command's last stderr line."""
    if isinstance(exc, RemoteCommandError):
        last = (exc.stderr.strip().splitlines() or [""])[-1]
        return f"its restart command `{exc.command}` exited {exc.exit_status}" + (f" ({last})" if last else "")
    return f"its restart command failed: {exc}"


def _node_names(es, cluster: str) -> set[str]:
    with mapped_errors(cluster, "GET _cat/nodes"):
        rows = es.cat.nodes(format="json", h="name").body
    return {row.get("name") for row in rows}


def _jvm_start(es, cluster: str, name: str) -> int | None:
    """The node's JVM start time when nodes info reports it (tells a restarted node from the old one)."""
    try:
        with mapped_errors(cluster, "GET _nodes/<node>/jvm"):
            body = es.nodes.info(node_id=name, metric="jvm").body
    except ClusterError:
        return None
    for info in (body.get("nodes") or {}).values():
        if info.get("name") == name:
            return (info.get("jvm") or {}).get("start_time_in_millis")
    return None


def _wait_rejoined(pool, es, cluster, nodes: list[ResolvedNode], before: int | None, timeouts, log_dir,
                   done) -> None:
    for node in nodes:
        try:
            poll(lambda name=node.name: _back(es, cluster, name, before), timeout=timeouts.rejoin,
                 what=f"node {node} rejoining", cluster=cluster, interval=0.5)
        except PollTimeout as exc:
            raise RestartError(cluster, str(node), f"not back in the cluster (GET _cat/nodes) "
                               f"{timeouts.rejoin:g}s after its restart command",
                               node_log_tail(pool, node, es=es, log_dir=log_dir), done) from exc


def _back(es, cluster: str, name: str, before: int | None) -> bool:
    """In the cluster under its name, and (where nodes info says) with a JVM started after `before`."""
    if name not in _node_names(es, cluster):
        return False
    return before is None or _jvm_start(es, cluster, name) != before


def _wait_green(es, cluster: str, expected_nodes: int, timeouts: RestartTimeouts) -> dict:
    def green() -> dict | None:
        with mapped_errors(cluster, "GET _cluster/health"):
            health = es.cluster.health().body
        if health.get("status") == "green" and health.get("number_of_nodes", 0) >= expected_nodes:
            return health
        return None
    return poll(green, timeout=timeouts.green, what=f"cluster health green with {expected_nodes} nodes",
                cluster=cluster, interval=0.5,
                describe=lambda h: f"{h}" if not isinstance(h, dict) else f"status {h.get('status')}")


# -------------------------------------------------------------------------------------------- logs


def node_log_tail(pool: SSHPool, node: ResolvedNode, *, es: Any = None, log_dir: str | Mapping[str, str] | None = None,
                  lines: int = LOG_LINES) -> list[str]:
    """The last `lines` lines of the node's Elasticsearch log, read over SSH; [] when unreadable."""
    try:
        conn = pool.get(node.ssh_target())
        sudo = node.ssh.sudo
        yml = _node_yml(conn, node, sudo)
        path = node_log_path(node, yml, log_dir, _cluster_name(es, node.cluster, yml))
        result = conn.run(f"tail -n {int(lines)} -- {shlex.quote(str(path))}", sudo=sudo, check=False, timeout=30)
        if result.exit_code != 0:
            return [f"(cannot read {path}: {result.stderr.strip() or 'exit ' + str(result.exit_code)})"]
        return result.stdout.splitlines()
    except EsRemoteError as exc:
        return [f"(cannot read the log: {exc})"]


def node_log_path(node: ResolvedNode, yml: Mapping[str, Any], log_dir: str | Mapping[str, str] | None,
                  cluster_name: str) -> PurePosixPath:
    """`<log dir>/<cluster.name>.log`: the override, else yml `path.logs` (relative to es_home), else
    `<es_home>/logs`."""
    if isinstance(log_dir, Mapping):
        log_dir = log_dir.get(node.name)
    directory = PurePosixPath(log_dir or yml.get("path.logs") or "logs")
    if not directory.is_absolute():
        directory = node.es_home / directory
    return directory / f"{cluster_name}.log"


def _node_yml(conn, node: ResolvedNode, sudo: bool) -> dict[str, Any]:
    try:
        return EsYml.parse(conn.read_file(str(node.yml_path), sudo=sudo).decode("utf-8", "replace")).flat()
    except EsRemoteError:
        return {}


def _cluster_name(es, cluster: str, yml: Mapping[str, Any]) -> str:
    if yml.get("cluster.name"):
        return str(yml["cluster.name"])
    if es is not None:
        try:
            with mapped_errors(cluster, "GET /"):
                return str(es.info().body.get("cluster_name") or "elasticsearch")
        except ClusterError:
            pass
    return "elasticsearch"  # Elasticsearch's default cluster.name
