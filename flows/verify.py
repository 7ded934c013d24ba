"""Phase `verify`: on every local node with the remote_cluster_client role, at its own address, the
alias connected with its API key (`cluster_credentials` redacted) and one cross-cluster request that
node coordinates (`_resolve/cluster`, or a search below 8.13); then a real cross-cluster search per
remote index pattern in use. Each node answers only for its own connections and keystore."""

from __future__ import annotations

from prefect import flow

from esremote.params import MigrationParams
from esremote.flows.common import phase_done
from esremote.tasks.cluster import verify_api_key
from esremote.tasks.runtime import Run, ensure_run
from esremote.tasks.split import verify_split
from esremote.tasks.work import split_name

PHASE = "verify"


def verify(run: Run) -> list[str]:
    """The phase's work, callable inside the outage flow without a subflow of its own."""
    lines = []
    for alias in run.aliases:
        lines += verify_api_key(run.id, alias)
        if split_name(run, alias):
            lines += verify_split(run.id, alias)
    return lines


@flow(name="verify", flow_run_name="verify-{run_id}")
def verify_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    lines = verify(run)
    phase_done(run, PHASE, lines)
    return lines
