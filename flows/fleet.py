"""`migrate-fleet`: one migration per cluster pair, over several inventories, a few at a time.

Every pair of clusters linked by an alias (local, remote) of every inventory is one migration, with
all the aliases of that pair: a run of the `manual` deployment (`params.deployment`), started with
`run_deployment` from a task of this flow, so each migration is its own flow run (its own process,
on whichever worker of the work pool picks it up; more workers on more hosts share the load) and
shows in the UI as a child of the fleet run. At most `max_running` of them run at once (this flow's
task runner has that many threads, each waiting on one migration). Pairs that share a cluster still
take turns: each migration holds its clusters' concurrency limits (flows/pair_lock.py).

Why run_deployment and not a subflow: a subflow runs in this flow's process, so the fleet would be
as big as one machine, and a crash of that process would take every pair with it; a deployment run
is a process of its own that any worker of the pool can run.

The fleet ends with one table artifact (`fleet`): every pair, its flow run, final state and status
(migrated, planned, rolled-back, out-of-window, busy, ...) and the run's message. The fleet run is
Failed when any pair did not end migrated (or planned, in a dry run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prefect import flow, task
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from esremote.inventory import load_inventory
from esremote.params import FleetParams
from esremote.tasks import reports
from esremote.tasks.common import ONCE, install_redaction, run_logger

GOOD = {"migrated", "planned"}


@dataclass(frozen=True)
class Pair:
    inventory: str
    local: str
    remote: str
    aliases: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.local} -> {self.remote}"


def pairs_of(inventories: list[Path]) -> list[Pair]:
    """Every (local, remote) pair of every inventory, in inventory order, with its aliases."""
    out: list[Pair] = []
    for path in inventories:
        inventory = load_inventory(path)
        grouped: dict[tuple[str, str], list[str]] = {}
        for alias, link in inventory.aliases.items():
            grouped.setdefault((link.local, link.remote), []).append(alias)
        out += [Pair(str(path), local, remote, tuple(aliases)) for (local, remote), aliases in grouped.items()]
    return out


def child_params(params: FleetParams, pair: Pair, window_end: datetime | None) -> dict:
    """The migration's parameters for one pair (no secret: names and paths only)."""
    out = {"inventory": pair.inventory, "aliases": list(pair.aliases), "dry_run": params.dry_run,
           "connection_mode": params.connection_mode, "restart_strategy": params.restart_strategy,
           "no_wait": params.no_wait}
    if window_end is not None:
        out["window_end"] = window_end.isoformat()
    if params.state_dir is not None:
        out["state_dir"] = str(params.state_dir)
    return out


def _run_name(pair: Pair) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{pair.local}-{pair.remote}")


@task(name="migrate-pair", task_run_name="migrate-pair-{label}", **ONCE)
def migrate_pair(deployment: str, parameters: dict, label: str) -> dict:
    """Run one pair's migration as a deployment run and wait for it; its outcome as a table row."""
    from prefect.deployments import run_deployment  # noqa: PLC0415

    started = datetime.now(timezone.utc)
    child = run_deployment(deployment, parameters={"params": parameters}, timeout=None, poll_interval=2,
                           as_subflow=True)
    seconds = (datetime.now(timezone.utc) - started).total_seconds()
    state = child.state
    status, message = _outcome(child)
    run_logger().info("%s: flow run %s ended %s (%s)", label, child.name, state.name if state else "?", status)
    return {"pair": label, "aliases": ", ".join(parameters["aliases"]), "inventory": parameters["inventory"],
            "flow run": f"{child.name} ({child.id})", "state": state.name if state else "unknown",
            "status": status, "minutes": f"{seconds / 60:.1f}", "message": message}


def _outcome(child) -> tuple[str, str]:
    """The migration's status (from its summary artifact's title) and message (its final state's)."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId  # noqa: PLC0415

    message = (child.state.message or "") if child.state else ""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[child.id])))
    for artifact in artifacts:
        if (artifact.key or "").startswith("summary-") and isinstance(artifact.data, str):
            match = re.match(r"# Migration (\S+):", artifact.data)
            if match:
                found = [line[2:] for line in artifact.data.splitlines()[3:6] if line.startswith("- ")
                         and not line.startswith(("- run id", "- phases done", "- measured outage"))]
                return match.group(1), (found[0] if found else message)[:500]
    return ("failed" if child.state and not child.state.is_completed() else "unknown"), message[:500]


@flow(name="migrate-fleet", flow_run_name="migrate-fleet", log_prints=False)
def migrate_fleet(params: FleetParams) -> list[dict]:
    """One migration per cluster pair of the inventories, at most `max_running` at once; a table of outcomes."""
    from prefect.runtime import flow_run  # noqa: PLC0415

    install_redaction()
    log = run_logger()
    pairs = pairs_of(params.inventories)
    if not pairs:
        return Failed(message="the inventories link no cluster pair (no `aliases:`)")
    end = params.window_end
    if end is None and params.window_minutes is not None:  # one end for all: from the fleet's scheduled start
        start = flow_run.scheduled_start_time or datetime.now(timezone.utc)
        end = start + timedelta(minutes=params.window_minutes)
    log.info("%d cluster pair(s), at most %d migration(s) at once: %s", len(pairs), params.max_running,
             "; ".join(f"{p.label} ({', '.join(p.aliases)})" for p in pairs))
    runner = ThreadPoolTaskRunner(max_workers=params.max_running)
    with runner:
        futures = [(pair, runner.submit(migrate_pair, parameters={
            "deployment": params.deployment, "parameters": child_params(params, pair, end), "label": pair.label}))
            for pair in pairs]
        rows = []
        for pair, future in futures:
            try:
                rows.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the pair's row says it could not be run
                rows.append({"pair": pair.label, "aliases": ", ".join(pair.aliases), "inventory": pair.inventory,
                             "flow run": "", "state": "not started", "status": "failed", "minutes": "",
                             "message": f"{type(exc).__name__}: {exc}"[:500]})
    reports.table("fleet", rows, description=f"Fleet: {len(rows)} cluster pair(s), one migration each")
    bad = [r for r in rows if r["status"] not in GOOD or r["state"] != "Completed"]
    if bad:
        return Failed(message=f"{len(bad)} of {len(rows)} cluster pair(s) not migrated: "
                              + "; ".join(f"{r['pair']}: {r['status']}" for r in bad))
    log.info("every cluster pair ended %s", "planned" if params.dry_run else "migrated")
    return rows
