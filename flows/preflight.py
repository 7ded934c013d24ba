"""Phase `preflight`: every check, node reads and role analysis; nothing changes. The facts go to the
run's directory (`facts.json`) for the plan and later phases."""

from __future__ import annotations

from prefect import flow, unmapped

from esremote.params import MigrationParams
from esremote.plan_facts import MigrationFacts
from esremote.tasks import reports
from esremote.tasks.facts import involved_nodes, migration_facts, owner_roles, preflight_alias, read_access, read_node
from esremote.tasks.runtime import ensure_run


@flow(name="preflight", flow_run_name="preflight-{run_id}", log_prints=False)
def preflight_flow(params: MigrationParams, run_id: str | None = None) -> MigrationFacts:
    """Versions, licence, health, security, SSH + sudo, the alias and the work that uses it, and
    what each node holds now."""
    run = ensure_run(params, run_id)
    report_futures = {alias: preflight_alias.submit(run.id, alias) for alias in run.aliases}
    keys = involved_nodes(run)
    node_futures = read_node.map(unmapped(run.id), keys)
    found = {alias: future.result() for alias, future in report_futures.items()}
    access = {alias: read_access(run.id, alias, owner_roles(report)) for alias, report in found.items()}
    nodes = [future.result() for future in node_futures]
    facts = migration_facts(run, found, nodes, access)
    reports.save(run.journal.run_dir, "facts.json", facts.to_dict())
    rows = [{"alias": alias, "status": f.status, "check": f.check, "where": f.where, "detail": f.detail,
             "fix": f.fix} for alias, report in found.items() for f in report.findings]
    reports.table(reports.run_key(run, "preflight"), rows, description="Preflight findings")
    return facts
