"""Phase `resume_cross_cluster_ops` (the outage ends): resume exactly what was stopped, in the
corrected order (es-facts §11.1-2), then check that followers catch up through the new link."""

from __future__ import annotations

from prefect import flow

from esremote.params import MigrationParams
from esremote.flows.common import pending_aliases, phase_done
from esremote.tasks.cluster import verify_api_key
from esremote.tasks.runtime import Run, ensure_run
from esremote.tasks.work import resume_work

PHASE = "resume_cross_cluster_ops"


def resume_cross_cluster_ops(run: Run) -> list[str]:
    """The phase's work, callable inside the outage flow without a subflow of its own."""
    lines = []
    for alias in pending_aliases(run):
        lines += resume_work(run.id, alias, f"{PHASE}/resume/{alias}")
        lines += verify_api_key(run.id, alias, followers=True)
    return lines


@flow(name="resume-cross-cluster-ops", flow_run_name="resume-cross-cluster-ops-{run_id}")
def resume_cross_cluster_ops_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    lines = resume_cross_cluster_ops(run)
    phase_done(run, PHASE, lines)
    return lines
