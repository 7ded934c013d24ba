"""Cross-cluster work around the outage: record what runs (journal first), stop it, resume exactly
that (`esremote.cluster.xcluster_work` plans and applies the calls)."""

from __future__ import annotations

from prefect import task

from esremote.cluster import xcluster_work
from esremote.cluster.client import poll
from esremote.cluster.usage import UsageReport, read_usage
from esremote.cluster.xcluster_work import WorkRecord
from esremote.errors import ClusterError
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.runtime import Run, get_run


def list_step(alias: str) -> str:
    return f"stop_cross_cluster_ops/list/{alias}"


def records_of(run: Run, alias: str) -> list[WorkRecord] | None:
    first = run.journal.first_intent(list_step(alias))
    return [WorkRecord.from_dict(r) for r in first.data["records"]] if first else None


def baseline_step(alias: str) -> str:
    return f"baseline/work/{alias}"


def baseline_of(run: Run, alias: str) -> list[WorkRecord] | None:
    first = run.journal.first_intent(baseline_step(alias))
    return [WorkRecord.from_dict(r) for r in first.data["records"]] if first else None


@task(name="record-baseline", task_run_name="record-baseline-{alias}", **RETRYING)
def record_baseline(run_id: str, alias: str) -> None:
    """The work as it is before the run's first change. The preparation's rolling restarts can
    break the certificate-model link for a while (the node a proxy alias points at restarts), and a
    transform whose remote stays unreachable past its retries fails: the outage's records and a
    rollback before the outage take what ran here as what must run again."""
    run = get_run(run_id)
    if baseline_of(run, alias) is not None:
        return
    local = run.link(alias).local
    records = xcluster_work.record_work(read_usage(run.es(local), local, alias))
    run.journal.intent(baseline_step(alias), records=[r.to_dict() for r in records])


def _with_baseline(run: Run, alias: str, records: list[WorkRecord]) -> list[WorkRecord]:
    """An object that ran at the run's start and has failed since is recorded as it was then."""
    before = {(r.kind, r.id): r for r in baseline_of(run, alias) or []}
    return [before[(r.kind, r.id)] if r.state == "failed" and getattr(before.get((r.kind, r.id)), "running", False)
            else r for r in records]


def split_name(run: Run, alias: str) -> str | None:
    """The search alias of a consented split, once the run began making its key (journal)."""
    first = run.journal.first_intent(f"prepare_remote/split-key/{alias}")
    return first.data["alias"] if first else None


def usage_of(run: Run, es, local: str, alias: str) -> UsageReport:
    """What uses the alias now; with a split, also the work that moved to its search alias (the same
    objects, recorded under the alias before they moved)."""
    usage = read_usage(es, local, alias)
    name = split_name(run, alias)
    if name is None:
        return usage
    moved = read_usage(es, local, name)
    known = {(u.kind, u.id) for u in usage.items}
    return UsageReport(alias, usage.items + tuple(u for u in moved.items if (u.kind, u.id) not in known),
                       usage.notes)


@task(name="record-work", task_run_name="record-work-{alias}", **RETRYING)
def record_work(run_id: str, alias: str) -> list[str]:
    """Snapshot every object that uses the alias and its state, before anything is stopped."""
    run = get_run(run_id)
    if records_of(run, alias) is not None:
        return [r.label for r in records_of(run, alias)]
    local = run.link(alias).local
    usage = read_usage(run.es(local), local, alias)
    records = _with_baseline(run, alias, xcluster_work.record_work(usage))
    work = [{"kind": u.kind, "id": u.id, "state": u.state, "owner": u.owner.describe() if u.owner else None,
             "job_id": u.job_id, "job_state": u.job_state, "remote_patterns": list(u.remote.patterns)}
            for u in usage.items]
    run.journal.intent(list_step(alias), records=[r.to_dict() for r in records], work=work,
                       owner_roles=usage.role_names())
    return [f"{r.label} ({r.state})" for r in records]


def _apply(run: Run, alias: str, direction: str, step: str, baseline: bool = False) -> list[str]:
    records = baseline_of(run, alias) if baseline else records_of(run, alias)
    if records is None:
        return []
    local = run.link(alias).local
    es = run.es(local)
    now = usage_of(run, es, local, alias)
    plan = xcluster_work.plan_stop(records, now) if direction == "stop" else xcluster_work.plan_resume(records, now)
    run.journal.intent(step, calls=[str(s) for s in plan])
    outcomes = xcluster_work.apply_steps(es, local, plan)
    failures = xcluster_work.failed(outcomes)
    log = run_logger()
    for outcome in outcomes:
        log.info("%s %s", direction, outcome)
    if failures:
        raise ClusterError(f"could not {direction} " + "; ".join(str(o) for o in failures), cluster=local)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


@task(name="stop-work", task_run_name="stop-work-{alias}", **RETRYING)
def stop_work(run_id: str, alias: str, step: str) -> list[str]:
    """Stop what was running: transforms, datafeeds, jobs, auto-follow patterns, followers."""
    return _apply(get_run(run_id), alias, "stop", step)


@task(name="resume-work", task_run_name="resume-work-{alias}", **RETRYING)
def resume_work(run_id: str, alias: str, step: str, baseline: bool = False) -> list[str]:
    """Resume exactly what was stopped: jobs then datafeeds, transforms, patterns, followers. With
    `baseline`: what ran at the run's start (a rollback before the outage, which stopped nothing)."""
    return _apply(get_run(run_id), alias, "resume", step, baseline)


@task(name="check-work", task_run_name="check-work-{alias}", **RETRYING)
def check_work(run_id: str, alias: str) -> list[str]:
    """Wait until everything that was running before the run runs again (after rollback's restarts
    a job or transform may take a moment to be reassigned); a ClusterError naming what does not."""
    run = get_run(run_id)
    records = records_of(run, alias) or baseline_of(run, alias)
    if records is None:
        return []
    local = run.link(alias).local
    es = run.es(local)

    stopped: list[str] = []

    def all_running() -> bool:
        stopped[:] = [str(s) for s in xcluster_work.plan_resume(records, usage_of(run, es, local, alias))]
        return not stopped

    poll(all_running, timeout=run.params.node_timeout_s, what=f"the work using alias {alias} to run again",
         cluster=local, describe=lambda _: "still to resume: " + "; ".join(stopped))
    return [f"{r.label} running" for r in records if r.running]
