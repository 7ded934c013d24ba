"""`retire_certificate_trust`: after a verified migration, and only after a person approves it in the
Prefect UI (the flow pauses with a form that carries the plan), close the certificate model's door:

* transport IP filter on the remote: only the remote's own nodes may connect to its transport port,
  so a local cluster can no longer join with its transport certificate;
* a CA-rotation plan (text only: nothing changes);
* delete remote roles that only served cross-cluster access (no remote user or role mapping uses them).

Irreversible in effect: the originals (filter settings, role definitions) are journaled so a person
can restore them by hand, but no rollback runs.
"""

from __future__ import annotations

import json

from prefect import flow, task
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from esremote.cluster.remote_settings import ApiCall, perform, segment
from esremote.errors import ClusterHTTPError
from esremote.params import MigrationParams
from esremote.flows.common import phase_done, remotes_of
from esremote.tasks import reports
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.runtime import Run, ensure_run, get_run

PHASE = "retire_certificate_trust"
FILTER_ALLOW = "xpack.security.transport.filter.allow"
FILTER_DENY = "xpack.security.transport.filter.deny"


class RetireApproval(RunInput):
    """The approval form: the plan is its description; nothing happens unless `approve` is ticked."""

    approve: bool = False
    transport_ip_filter: bool = False
    ca_rotation_plan: bool = True
    delete_cross_cluster_roles: bool = False


def ip_filter_body(run: Run, remote: str) -> dict:
    addresses = [n.address for n in run.nodes(remote)]
    return {"persistent": {FILTER_ALLOW: addresses, FILTER_DENY: "_all"}}


def cross_cluster_only_roles(run: Run, remote: str) -> list[str]:
    """Remote roles the migration derived access from that no remote user or role mapping uses."""
    es = run.es(remote)
    names: list[str] = []
    for alias in run.aliases:
        if run.link(alias).remote != remote:
            continue
        first = run.journal.first_intent(f"reconnect/roles/{alias}")
        names += [n for n in (first.data["originals"] if first else {}) if n not in names]
    users = perform(es, remote, ApiCall("GET", "/_security/user"))
    held = {r for user in users.values() for r in user.get("roles") or []}
    try:
        mappings = perform(es, remote, ApiCall("GET", "/_security/role_mapping"))
    except Exception:  # noqa: BLE001 - no mappings API (or none defined): nothing mapped
        mappings = {}
    mapped = {r for m in mappings.values() for r in m.get("roles") or []}
    return [n for n in names if n not in held and n not in mapped]


def ca_rotation_text(run: Run, remote: str) -> str:
    nodes = ", ".join(n.name for n in run.nodes(remote))
    return "\n".join([
        f"## CA rotation plan for {remote}", "",
        "The local clusters no longer need the remote's transport CA. To stop trusting it:", "",
        f"1. Make a new transport CA and node certificates for {nodes} (`esremote certs ca`, `esremote certs node`).",
        "2. Add the new CA to every remote node's transport truststore next to the old one; rolling restart.",
        "3. Replace each node's transport certificate with one signed by the new CA; rolling restart.",
        "4. Remove the old CA from the truststores; rolling restart.",
        "5. Remove the remote's old transport CA from the local clusters' transport truststores (it was only"
        " there for the certificate-model link); rolling restart of the local cluster.", ""])


def retire_plan(run: Run) -> str:
    lines = ["# Retire certificate trust (irreversible)", ""]
    for remote in remotes_of(run):
        lines += [f"## {remote}", "",
                  f"- transport IP filter: `PUT _cluster/settings` `{json.dumps(ip_filter_body(run, remote))}`",
                  f"- roles only for cross-cluster access (delete): "
                  f"{', '.join(cross_cluster_only_roles(run, remote)) or 'none'}", ""]
    return "\n".join(lines)


@task(name="transport-ip-filter", task_run_name="transport-ip-filter-{remote}", **RETRYING)
def transport_ip_filter(run_id: str, remote: str) -> str:
    run = get_run(run_id)
    es = run.es(remote)
    settings = perform(es, remote, ApiCall("GET", "/_cluster/settings", params={"flat_settings": "true"}))
    original = {k: (settings.get("persistent") or {}).get(k) for k in (FILTER_ALLOW, FILTER_DENY)}
    run.journal.intent(f"{PHASE}/ip-filter/{remote}", original=original)
    perform(es, remote, ApiCall("PUT", "/_cluster/settings", ip_filter_body(run, remote)))
    run.journal.done(f"{PHASE}/ip-filter/{remote}")
    return f"{remote}: transport port open only to its own nodes"


@task(name="delete-role", task_run_name="delete-role-{remote}-{role}", **RETRYING)
def delete_role(run_id: str, remote: str, role: str) -> str:
    run = get_run(run_id)
    es = run.es(remote)
    try:
        found = perform(es, remote, ApiCall("GET", f"/_security/role/{segment(role)}")).get(role)
    except ClusterHTTPError as exc:
        if exc.status == 404:
            return f"{remote}: role {role} already gone"
        raise
    run.journal.intent(f"{PHASE}/delete-role/{remote}/{role}", original=found)
    perform(es, remote, ApiCall("DELETE", f"/_security/role/{segment(role)}"))
    run.journal.done(f"{PHASE}/delete-role/{remote}/{role}")
    return f"{remote}: role {role} deleted (its definition is in the journal)"


@flow(name="retire-certificate-trust", flow_run_name="retire-certificate-trust-{run_id}")
def retire_certificate_trust_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    """Pause for approval (the form shows the plan), then do what was approved."""
    run = ensure_run(params, run_id)
    plan = retire_plan(run)
    reports.markdown(reports.run_key(run, "retire-plan"), plan, description="Retire certificate trust: the plan")
    form = RetireApproval.with_initial_data(description=plan, approve=False, **params.retire.model_dump())
    answer = pause_flow_run(wait_for_input=form, timeout=params.approval_timeout_s, poll_interval=2)
    if not answer.approve:
        phase_done(run, PHASE, ["not approved: certificate trust left in place"])
        return ["not approved"]
    lines = []
    for remote in remotes_of(run):
        if answer.transport_ip_filter:
            lines.append(transport_ip_filter(run.id, remote))
        if answer.ca_rotation_plan:
            reports.markdown(reports.run_key(run, f"ca-rotation-{remote}"), ca_rotation_text(run, remote),
                             description=f"CA rotation plan for {remote}")
            lines.append(f"{remote}: CA rotation plan published")
        if answer.delete_cross_cluster_roles:
            lines += [delete_role(run.id, remote, role) for role in cross_cluster_only_roles(run, remote)]
    run_logger().info("retired: %s", "; ".join(lines) or "nothing")
    phase_done(run, PHASE, lines)
    return lines
