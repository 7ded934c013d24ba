"""Phase `stop_cross_cluster_ops` (the outage starts): record, then stop, the transforms,
datafeeds + jobs, auto-follow patterns and followers that use each alias, and nothing else."""

from __future__ import annotations

from prefect import flow

from esremote.params import MigrationParams
from esremote.flows.common import pending_aliases, phase_done
from esremote.tasks.runtime import Run, ensure_run
from esremote.tasks.work import record_work, stop_work

PHASE = "stop_cross_cluster_ops"


def stop_cross_cluster_ops(run: Run) -> list[str]:
    """The phase's work, callable inside the outage flow without a subflow of its own."""
    lines = []
    for alias in pending_aliases(run):
        recorded = record_work(run.id, alias)
        outcomes = stop_work(run.id, alias, f"{PHASE}/stop/{alias}")
        lines.append(f"{alias}: recorded {', '.join(recorded) or 'nothing'}; " + "; ".join(outcomes))
    return lines


@flow(name="stop-cross-cluster-ops", flow_run_name="stop-cross-cluster-ops-{run_id}")
def stop_cross_cluster_ops_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    lines = stop_cross_cluster_ops(run)
    phase_done(run, PHASE, lines)
    return lines
