"""What every task of one run shares: the parameters, the inventory, the journal, SSH connections,
REST clients and the redactor. Tasks receive only the run id (plus the node or alias they act on,
which names their task run) and look the run up here, so task parameters stay small and printable.

    run = open_run(params)                 # the parent flow: a new run, or the journal of --resume
    run = get_run(run_id)                  # a task
    run.conn(node)  run.es("local")  run.node("remote/remote-0")  run.journal

A run's state lives in its journal, not here: after a crash `open_run(params)` with the run id
rebuilds this object and the journal tells what is done.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esremote.errors import ConfigError
from esremote.inventory import Inventory, ResolvedNode, load_inventory
from esremote.journal import Journal
from esremote.params import MigrationParams
from esremote.redact import default_redactor
from esremote.ssh import SSHConnection, SSHPool

_RUNS: dict[str, Run] = {}
_LOCK = threading.Lock()


@dataclass
class Run:
    params: MigrationParams
    inventory: Inventory
    journal: Journal
    pool: SSHPool = field(default_factory=SSHPool)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _resolved: dict[str, dict[str, ResolvedNode]] = field(default_factory=dict)  # cluster -> name -> node

    @property
    def id(self) -> str:
        return self.journal.run_id

    @property
    def aliases(self) -> list[str]:
        return self.params.selected_aliases(self.inventory)

    def link(self, alias: str):
        return self.inventory.aliases[alias]

    def node(self, key: str) -> ResolvedNode:
        """`cluster/name` -> the node with its settings merged."""
        cluster, _, name = key.partition("/")
        node = self._cluster_nodes(cluster).get(name)
        if node is None:
            raise ConfigError(f"no node {key!r} in {self.params.inventory}")
        return node

    def nodes(self, cluster: str) -> list[ResolvedNode]:
        return list(self._cluster_nodes(cluster).values())

    def _cluster_nodes(self, cluster: str) -> dict[str, ResolvedNode]:
        """The cluster's nodes, resolved once per run (the inventory does not change during a run):
        every per-node task looks its node up, and resolving the whole cluster for each lookup made
        a step on N nodes cost N^2 resolutions."""
        with self._lock:
            found = self._resolved.get(cluster)
            if found is None:
                found = self._resolved[cluster] = {n.name: n for n in self.inventory.nodes(cluster)}
            return found

    def conn(self, node: ResolvedNode | str) -> SSHConnection:
        node = self.node(node) if isinstance(node, str) else node
        target = node.ssh_target()
        if target.sudo_password is not None:
            default_redactor.add(target.sudo_password.get_secret_value())
        return self.pool.get(target)

    def es(self, cluster: str):
        """The REST client of an inventory cluster (one per run; secrets resolved on first use)."""
        from esremote.cluster.client import connect  # noqa: PLC0415

        with self._lock:
            if cluster not in self._clients:
                spec = self.inventory.cluster(cluster)
                self._clients[cluster] = connect(spec)
                remember_cluster_secrets(spec)
            return self._clients[cluster]

    def secrets_dir(self) -> Path:
        path = self.journal.run_dir / "secrets"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def close(self) -> None:
        self.pool.close()
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._clients.clear()


def remember_cluster_secrets(cluster) -> None:
    """Teach the redactor the secrets a cluster's access resolves to."""
    for ref in (getattr(cluster.auth, "password", None), getattr(cluster.auth, "api_key", None),
                cluster.keystore_password):
        if ref is not None:
            try:
                default_redactor.add(ref.resolve().get_secret_value())
            except ConfigError:
                pass  # unresolvable now: the step that needs it reports it


def open_run(params: MigrationParams) -> Run:
    """A new run (journal created), or the run `params.run_id` names (journal reopened)."""
    inventory = load_inventory(params.inventory)
    params.selected_aliases(inventory)  # fail early on an unknown alias
    if params.run_id and _journal_exists(params):
        journal = Journal.open(params.run_id, state_dir=params.state_dir)
    else:
        journal = Journal.create(params.run_id, state_dir=params.state_dir, params=params.public())
    run = Run(params=params.model_copy(update={"run_id": journal.run_id}), inventory=inventory, journal=journal)
    for cluster in inventory.clusters.values():
        remember_cluster_secrets(cluster)
    with _LOCK:
        old = _RUNS.pop(run.id, None)
        if old is not None:
            old.close()
        _RUNS[run.id] = run
    return run


def _journal_exists(params: MigrationParams) -> bool:
    from esremote.journal import default_state_dir  # noqa: PLC0415

    base = params.state_dir or default_state_dir()
    return (Path(base) / "runs" / str(params.run_id) / "run.json").exists()


def get_run(run_id: str) -> Run:
    with _LOCK:
        run = _RUNS.get(run_id)
    if run is None:
        raise RuntimeError(f"run {run_id} is not open in this process; open it with open_run(params)")
    return run


def ensure_run(params: MigrationParams, run_id: str | None) -> Run:
    """For a phase flow: the open run, or (flow started by itself, e.g. from the UI) open it now.
    Either way the redacting filter is on Prefect's handlers before the phase logs anything."""
    from esremote.tasks.common import install_redaction  # noqa: PLC0415

    install_redaction()
    if run_id:
        with _LOCK:
            run = _RUNS.get(run_id)
        if run is not None:
            return run
        return open_run(params.model_copy(update={"run_id": run_id}))
    return open_run(params)


def close_run(run_id: str) -> None:
    with _LOCK:
        run = _RUNS.pop(run_id, None)
    if run is not None:
        run.close()


def prefect_api_configured() -> bool:
    """True when runs report to a Prefect API server (not the ephemeral one of this process)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        from prefect.settings import PREFECT_API_URL  # noqa: PLC0415

        return bool(PREFECT_API_URL.value())
    except Exception:  # noqa: BLE001 - no Prefect settings: no server
        return False
