"""`migrate-remote-cluster`: the parent flow. Preflight and plan, then the non-disruptive phases
(prepare_remote, stage_local, stage_credentials), then the outage as one flow run (stop work,
reconnect, verify, resume); if any of them fails once something was changed, the rollback subflow
runs by itself and the run ends "rolled back" (exit 3).
After a verified migration, `retire_certificate_trust` runs only when asked for and approved (this
run pauses for the approval in the Prefect UI; no answer in time is a refusal).

Operating rules (DESIGN.md "Operating it"): a run that changes anything holds its cluster pairs'
concurrency limits from before preflight to its end (`pair_lock`: a second run waits, or with
`no_wait` ends at once naming the holder); with a maintenance window, the time left is checked
against the plan before prepare_remote, stage_local and stage_credentials (`esremote.window`), never
after that. Both of those endings (status `busy`, `out-of-window`) change nothing on the clusters
and end the flow run Failed with the reason as its message.

    summary = run_migration(MigrationParams(inventory="inventory.yml"))   # the CLI's entry point
"""

from __future__ import annotations

import contextlib

from prefect import flow
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from esremote.errors import EsRemoteError, RollbackError
from esremote.params import MigrationParams
from esremote.plan import OUTAGE_PHASES, PHASES
from esremote.flows.common import pending_aliases, remote_info, remove_backups
from esremote.flows.pair_lock import PairBusy, pair_lock
from esremote.flows.summary import Summary
from esremote.tasks import reports
from esremote.tasks.common import install_redaction, run_logger
from esremote.tasks.runtime import close_run, open_run
from esremote.tasks.work import record_baseline



class MigrationRolledBack(EsRemoteError):
    """The migration failed once it had changed something and was rolled back: the certificate
    model is back, with every node as before the run."""

    exit_code = 3


def _name() -> str:
    """`migrate-my_remote`, from the run's parameters."""
    from prefect.runtime import flow_run  # noqa: PLC0415

    params = (flow_run.parameters or {}).get("params")
    aliases = params.get("aliases") if isinstance(params, dict) else getattr(params, "aliases", None)
    return "migrate-" + ("-".join(aliases) if aliases else "all-aliases")


def _phase(flow_fn, params: MigrationParams, run_id: str):
    """Run a phase flow as a subflow, with the run's bound on parallel node work."""
    runner = ThreadPoolTaskRunner(max_workers=params.max_parallel)
    return flow_fn.with_options(task_runner=runner)(params, run_id)


@flow(name="migrate-remote-cluster", flow_run_name=_name, log_prints=False)
def migrate_remote_cluster(params: MigrationParams) -> dict:
    """Migrate remote cluster aliases from the certificate model to API-key security, in place."""
    install_redaction()
    run = open_run(params)
    summary = Summary(run_id=run.id, status="failed", aliases=run.aliases,
                      journal_dir=str(run.journal.run_dir), plan_file=str(run.journal.run_dir / "plan.md"))
    try:
        with contextlib.ExitStack() as held:
            if not params.dry_run:  # a dry run changes nothing: it needs no lock
                held.enter_context(pair_lock(run, no_wait=params.no_wait))
            _migrate(run, summary)
    except PairBusy as exc:
        summary.status, summary.message = "busy", str(exc)
        _finish(run, summary)
        return Failed(message=summary.message)
    except (MigrationRolledBack, RollbackError):
        raise
    except Exception as exc:  # before any change: nothing to roll back, the summary says where it stopped
        summary.status, summary.message = "failed", _brief(exc)
        summary.remote_info_after = remote_info(run)
        _finish(run, summary)
        raise
    finally:
        close_run(run.id)
    if summary.status == "out-of-window":
        return Failed(message=summary.message)
    return summary.to_dict()


def _migrate(run, summary: Summary) -> Summary:
    from esremote.flows.plan import plan_flow  # noqa: PLC0415
    from esremote.flows.preflight import preflight_flow  # noqa: PLC0415

    params, log = run.params, run_logger()
    log.info("run %s: journal in %s", run.id, run.journal.run_dir)
    facts = _phase(preflight_flow, params, run.id)
    summary.remote_info_before = _first_remote_info(run, facts)
    summary.phases.append("preflight")
    _phase(plan_flow, params, run.id)
    summary.phases.append("plan")
    if params.dry_run:
        summary.status, summary.message = "planned", "dry run: nothing was changed"
        summary.remote_info_after = summary.remote_info_before
        return _finish(run, summary)
    return _apply(run, summary)


def _first_remote_info(run, facts) -> dict:
    """`_remote/info` before the run changed anything (a resumed run keeps the first one it saw)."""
    first = run.journal.first_intent("summary/remote-info-before")
    if first is not None:
        return first.data["info"]
    info = {a.alias: a.remote_info for a in facts.aliases}
    run.journal.intent("summary/remote-info-before", info=info)
    return info


def _apply(run, summary: Summary) -> Summary:
    from esremote.flows.prepare_remote import prepare_remote_flow  # noqa: PLC0415
    from esremote.flows.outage import outage_flow  # noqa: PLC0415
    from esremote.flows.retire_certificate_trust import retire_certificate_trust_flow  # noqa: PLC0415
    from esremote.flows.stage_local import stage_local_flow  # noqa: PLC0415
    from esremote.flows.stage_credentials import stage_credentials_flow  # noqa: PLC0415

    params = run.params
    for alias in pending_aliases(run):  # the work as it runs before the first change
        record_baseline(run.id, alias)
    try:
        for name, fn in (("prepare_remote", prepare_remote_flow), ("stage_local", stage_local_flow)):
            if not _window_allows(run, summary, name):
                return summary
            _phase(fn, params, run.id)
            summary.phases.append(name)
        if not _window_allows(run, summary, "stage_credentials"):
            return summary
        # From here to the end of the outage the window is not looked at: stopping half-way would leave
        # credentials staged, cross-cluster work stopped or the alias half-moved (esremote.window).
        # The outage is one flow run (flows/outage.py): no subflow start-up between its phases.
        _phase(stage_credentials_flow, params, run.id)
        summary.phases.append("stage_credentials")
        summary.phases += _phase(outage_flow, params, run.id)
    except Exception as exc:  # noqa: BLE001 - a failure after the first change means: roll back
        if not _changed_anything(run):
            raise  # nothing to undo: the summary says where it stopped (exit 1)
        summary.phases += [p for p in OUTAGE_PHASES if run.journal.entries("note", f"phase/{p}")]
        return _roll_back(run, summary, exc)
    summary.status = "migrated"
    summary.message = "every alias is connected with a cross-cluster API key and verified"
    _remove_backups(run, summary)
    summary.remote_info_after = remote_info(run)
    _finish(run, summary)
    if params.retire_trust:
        from esremote.flows.retire_certificate_trust import ask_approval  # noqa: PLC0415

        answer = ask_approval(run)  # this run pauses here: the operator answers on the run they started
        runner = ThreadPoolTaskRunner(max_workers=params.max_parallel)
        lines = retire_certificate_trust_flow.with_options(task_runner=runner)(
            params, run.id, approval=answer.to_dict())
        summary.phases.append("retire_certificate_trust")
        summary.message += ("; certificate trust retired: " + "; ".join(lines) if answer.approve and lines
                            else "; retirement approved, nothing was chosen to retire" if answer.approve
                            else f"; {answer.refusal}")
        _finish(run, summary)
    return summary


def _window_allows(run, summary: Summary, phase: str) -> bool:
    """Before a disruptive phase: True when the run has no window or the rest of the plan fits in
    what is left of it; otherwise the summary and a `window` artifact say why the run stops here."""
    from prefect.runtime import flow_run  # noqa: PLC0415

    from esremote import window  # noqa: PLC0415

    end = window.window_end(run.params, flow_run.scheduled_start_time)
    if end is None:
        return True
    plan = reports.load(run.journal.run_dir, "plan.json") or {}
    check = window.check(phase, plan.get("changes", []), run.journal, end)
    log = run_logger()
    run.journal.note(f"window/{phase}", fits=check.fits, left_s=round(check.left_s), needed_s=round(check.needed_s))
    if check.fits:
        log.info("%s", check.message)
        return True
    done = ", ".join(summary.phases)
    check.notes.append("nothing of the outage has started: every alias is still on its certificate-model link "
                       "and no cross-cluster work was stopped")
    if phase != "prepare_remote":
        check.notes.append(f"done before stopping: {done} (no cross-cluster work stopped; resume this run in the "
                           f"next window with run_id {run.id}, done steps are skipped)")
    log.warning("%s", check.message)
    reports.markdown(reports.run_key(run, "window"), check.to_markdown(), description="Maintenance window check")
    summary.status = "out-of-window"
    summary.message = (f"stopped before {phase}: the maintenance window ends "
                       f"{check.end.isoformat(timespec='seconds')}, {max(0, round(check.left_s))} s left, and the rest "
                       f"of the migration needs about {round(check.needed_s)} s; nothing of the outage was started "
                       f"and the clusters are as " + ("they were" if phase == "prepare_remote"
                                                      else f"{done} left them (certificate-model links unchanged)"))
    summary.remote_info_after = remote_info(run)
    _finish(run, summary)
    return False


def _remove_backups(run, summary: Summary) -> None:
    """Verified: the run's backups leave the nodes' config directories. A node where that fails
    keeps them; the migration stands and the summary names what to remove by hand."""
    try:
        removed = remove_backups(run, "cleanup")
    except Exception as exc:  # noqa: BLE001 - the migration is done; say what is left
        run_logger().warning("the run's backups could not be removed: %s", _brief(exc))
        summary.message += (f"; the run's backups (*.esremote-{run.id}.bak) are still beside the files it wrote "
                            f"on some nodes ({_brief(exc)}): remove them by hand")
        return
    run_logger().info("%d backup(s) of this run removed from the nodes", removed)


def _changed_anything(run) -> bool:
    """Whether the run began a change on a node or cluster (journaled before it is made): from then
    on a failure is rolled back, so that the pair is left as it was, not half-prepared (a remote
    cluster server on some nodes, a node that will not start with its new configuration)."""
    return any(step.split("/")[0] in PHASES for step in run.journal.started_steps())


def _roll_back(run, summary: Summary, cause: BaseException) -> Summary:
    from esremote.flows.rollback import rollback_flow  # noqa: PLC0415

    log = run_logger()
    log.error("the migration failed (%s); rolling back", _brief(cause))
    try:
        _phase(rollback_flow, run.params, run.id)
    except Exception as exc:  # noqa: BLE001 - report both failures
        summary.status = "rollback-failed"
        summary.message = f"migration failed ({_brief(cause)}) and the rollback failed too ({_brief(exc)})"
        _finish(run, summary)
        raise RollbackError([summary.message]) from exc
    summary.status = "rolled-back"
    summary.message = f"migration failed ({_brief(cause)}); rolled back to the certificate model"
    summary.remote_info_after = remote_info(run)
    summary.phases.append("rollback")
    _finish(run, summary)
    raise MigrationRolledBack(summary.message) from cause


def _brief(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EsRemoteError) else f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _finish(run, summary: Summary) -> Summary:
    summary.measure_outage(run.journal)
    reports.save(run.journal.run_dir, "summary.json", summary.to_dict())
    reports.markdown(reports.run_key(run, "summary"), summary.to_markdown(), description="Migration summary")
    run.journal.note("summary", status=summary.status)
    return summary


# ------------------------------------------------------------------------------------------ entry


def run_migration(params: MigrationParams) -> Summary:
    """Run the parent flow (ephemeral Prefect unless PREFECT_API_URL is set) and read its summary
    from the run's directory, whatever the flow's final state."""
    from esremote.journal import Journal  # noqa: PLC0415

    if params.run_id is None:
        from esremote.journal import new_run_id  # noqa: PLC0415

        params = params.model_copy(update={"run_id": new_run_id()})
    install_redaction()
    state = migrate_remote_cluster(params, return_state=True)
    journal_dir = Journal._run_dir(params.run_id, params.state_dir)
    saved = reports.load(journal_dir, "summary.json")
    if saved is not None:
        summary = Summary.from_dict(saved)
        if state.is_failed() and summary.status in ("planned", "migrated"):
            summary.status = "failed"  # failed after the summary (e.g. retirement)
            summary.message = _state_message(state)
        return summary
    return Summary(run_id=params.run_id, status="failed", aliases=list(params.aliases),
                   message=_state_message(state), journal_dir=str(journal_dir))


def _state_message(state) -> str:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the flow's failure, as one line
        return _brief(exc)
    return state.message or state.name
