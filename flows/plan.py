"""Phase `plan`: every change as data and Markdown, published as artifacts and kept in the run's
directory (`plan.json`, `plan.md`). `--dry-run` stops after this phase."""

from __future__ import annotations

from prefect import flow

from esremote.params import MigrationParams
from esremote.plan import Plan, build_plan
from esremote.plan_facts import MigrationFacts
from esremote.tasks import reports
from esremote.tasks.runtime import ensure_run


@flow(name="plan", flow_run_name="plan-{run_id}")
def plan_flow(params: MigrationParams, run_id: str | None = None) -> Plan:
    """Build the plan from the facts preflight saved, publish it, keep it."""
    run = ensure_run(params, run_id)
    data = reports.load(run.journal.run_dir, "facts.json")
    if data is None:
        raise RuntimeError(f"run {run.id} has no facts yet: run the preflight phase first")
    plan = build_plan(run.params, MigrationFacts.from_dict(data))
    publish(run, plan)
    run.journal.note("plan", changes=len(plan.changes), outage=plan.outage.estimate)
    return plan


def publish(run, plan: Plan) -> None:
    reports.save(run.journal.run_dir, "plan.json", plan.to_dict())
    reports.save(run.journal.run_dir, "plan.md", plan.to_markdown())
    reports.markdown(reports.run_key(run, "plan"), plan.to_markdown(), description="Migration plan")
    reports.table(reports.run_key(run, "plan-changes"), plan.rows(), description="Every change, in order")
