"""The outage as one unit of work: stop the work, reconnect, verify, resume, as plain calls inside
one flow run. Each phase keeps its own flow for the UI and for running it alone, but between the
four, a subflow would cost Prefect's start-up of a flow run (about a second each, prefect-notes §3)
while cross-cluster work is down. Each phase is noted in the journal as it ends (what a resumed run
and the rollback read); its report artifact is written once the work runs again."""

from __future__ import annotations

import logging

from prefect import flow

from esremote.flows.common import phase_done, phase_noted
from esremote.flows.reconnect import reconnect
from esremote.flows.resume_cross_cluster_ops import resume_cross_cluster_ops
from esremote.flows.stage_credentials import check_no_node_restarted
from esremote.flows.stop_cross_cluster_ops import stop_cross_cluster_ops
from esremote.flows.verify import verify
from esremote.params import MigrationParams
from esremote.tasks.runtime import ensure_run

_PROGRESS = logging.getLogger("esremote.progress")
OUTAGE_WORK = (("stop_cross_cluster_ops", stop_cross_cluster_ops), ("reconnect", reconnect),
              ("verify", verify), ("resume_cross_cluster_ops", resume_cross_cluster_ops))


def _announce(phase: str, event: str) -> None:
    """A phase began or ended inside this flow run, for the terminal's progress display (which
    otherwise follows subflows); a debug record, off unless a display listens."""
    if _PROGRESS.isEnabledFor(logging.DEBUG):
        _PROGRESS.debug("phase %s: %s", phase, event, extra={"esremote_phase": {"phase": phase, "event": event}})


@flow(name="cross-cluster-outage", flow_run_name="outage-{run_id}")
def outage_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    """Stop, reconnect, verify, resume; the names of the phases done (a failure raises)."""
    run = ensure_run(params, run_id)
    check_no_node_restarted(run)
    reports = []
    try:
        for name, work in OUTAGE_WORK:
            _announce(name, "begin")
            try:
                lines = work(run)
            except BaseException:
                _announce(name, "failed")
                raise
            phase_noted(run, name, lines)
            _announce(name, "end")
            reports.append((name, lines))
    finally:
        for name, lines in reports:
            phase_done(run, name, lines, note=False)
    return [name for name, _ in reports]
