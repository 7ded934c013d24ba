"""`rollback`: back to the certificate model, driven by the journal (never by process memory), in
the order es-facts §11 requires: stop the work, remove the alias, restore the roles, restore
elasticsearch.yml and the keystores (the credentials REMOVED, which Elastic's guide forgets),
reload or restart, re-apply the saved alias settings, verify the certificate-model link (connected,
no `cluster_credentials`), resume the work.

Every step is idempotent and runs even when an earlier one failed; the failures are listed in one
`RollbackError` at the end, and `esremote rollback RUN_ID` runs it again. Not undone: the remote
cluster server, the staged CA and the cross-cluster API key (unused by the certificate model;
a new attempt reuses them).
"""

from __future__ import annotations

from prefect import flow

from esremote.errors import RollbackError
from esremote.params import MigrationParams
from esremote.plan import RELOADABLE, credentials_by
from flows.common import locals_of, phase_done, remote_info
from flows.summary import Summary
from tasks.cluster import facts_of, null_alias, reload_credentials, restore_alias, restore_roles, verify_certificate
from tasks.common import install_redaction, run_logger
from tasks.nodes import keystore_remove, restart_node, restore_file
from tasks.runtime import Run, close_run, ensure_run, open_run
from tasks.work import resume_work, stop_work

PHASE = "rollback"


class _Steps:
    """Runs rollback steps, collecting failures instead of stopping at the first."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed: list[str] = []

    def run(self, label: str, fn, *args, **kwargs) -> None:
        try:
            result = fn(*args, **kwargs)
            self.lines += [f"{label}: {r}" for r in (result if isinstance(result, list) else [result])]
        except Exception as exc:  # noqa: BLE001 - one failed step must not stop the others
            self.failed.append(f"{label}: {exc}")
            run_logger().error("rollback step %s failed: %s", label, exc)


def _keystore_changes(run: Run, local: str) -> dict[str, list[str]]:
    """node -> entries reconnect added to its keystore (names that were not there before)."""
    out = {}
    for step in run.journal.started_steps("reconnect/keystore/"):
        first = run.journal.first_intent(step)
        node = first.data["node"]
        if node.startswith(f"{local}/"):
            out[node] = [n for n in first.data["adding"] if n not in first.data["before"]]
    return out


def _yml_changes(run: Run, local: str) -> dict[str, dict]:
    out = {}
    for step in run.journal.started_steps("reconnect/yml/"):
        first = run.journal.first_intent(step)
        if first.data["node"].startswith(f"{local}/"):
            out[first.data["node"]] = first.data
    return out


@flow(name="rollback", flow_run_name="rollback-{run_id}")
def rollback_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    steps = _Steps()
    journal = run.journal
    facts = facts_of(run)
    for alias in run.aliases:
        steps.run(f"stop work {alias}", stop_work, run.id, alias, f"{PHASE}/stop/{alias}")
    for alias in run.aliases:
        if any(journal.started_steps(f"reconnect/{what}/{alias}") for what in ("save-settings", "readd")):
            steps.run(f"remove alias {alias}", null_alias, run.id, alias, f"{PHASE}/null/{alias}")
    for alias in run.aliases:
        steps.run(f"restore roles {alias}", restore_roles, run.id, alias, f"{PHASE}/roles/{alias}")
    for local in locals_of(run):
        keystores = _keystore_changes(run, local)
        ymls = _yml_changes(run, local)
        for node, names in keystores.items():
            if names:
                steps.run(f"keystore {node}", keystore_remove, run.id, node, f"{PHASE}/keystore/{node}", names)
        for node, data in ymls.items():
            steps.run(f"yml {node}", restore_file, run.id, node, f"{PHASE}/yml/{node}", data["path"],
                      data["original"])
        restarted = bool(journal.started_steps(f"reconnect/restart/{local}/"))
        if not (keystores or ymls):
            continue
        # Below 8.13 a reload cannot drop the credentials, whatever the run's strategy was.
        reloadable = facts.min_version(local) >= RELOADABLE
        if ymls or restarted or not reloadable or credentials_by(run.params, facts, local) == "restart":
            for node in facts.nodes_of(local):
                steps.run(f"restart {node.key}", restart_node, run.id, node.key, f"{PHASE}/restart/{node.key}")
        else:
            steps.run(f"reload {local}", reload_credentials, run.id, local, f"{PHASE}/reload/{local}")
    for alias in run.aliases:
        steps.run(f"restore alias {alias}", restore_alias, run.id, alias, f"{PHASE}/restore/{alias}")
    for alias in run.aliases:
        steps.run(f"verify certificate link {alias}", verify_certificate, run.id, alias)
    for alias in run.aliases:
        steps.run(f"resume work {alias}", resume_work, run.id, alias, f"{PHASE}/resume/{alias}")
    phase_done(run, PHASE, steps.lines + [f"FAILED {f}" for f in steps.failed])
    if steps.failed:
        raise RollbackError(steps.failed)
    return steps.lines


def run_rollback(params: MigrationParams) -> Summary:
    """`esremote rollback RUN_ID`: the rollback flow on its own, for a run found in the journal."""
    install_redaction()
    run = open_run(params)
    summary = Summary(run_id=run.id, status="rollback-failed", aliases=run.aliases,
                      journal_dir=str(run.journal.run_dir), remote_info_before=remote_info(run))
    try:
        state = rollback_flow(params, run.id, return_state=True)
        if state.is_completed():
            summary.status, summary.message = "rolled-back", "the certificate-model link is back"
            summary.phases.append("rollback")
        else:
            try:
                state.result()
            except Exception as exc:  # noqa: BLE001 - one line for the summary
                summary.message = str(exc)
        summary.remote_info_after = remote_info(run)
    finally:
        close_run(run.id)
    return summary
