"""`retire_certificate_trust`: after a verified migration, and only after a person approves it in the
Prefect UI (the flow pauses with a form that carries the plan), close the certificate model's door:

* transport IP filter on the remote: only the remote's own nodes may connect to its transport port,
  so a local cluster can no longer join with its transport certificate; HTTP and the remote-cluster
  port (the API-key link) keep the rules they had, pinned where they read the transport lists;
* a CA-rotation plan (text only: nothing changes);
* delete remote roles that only served cross-cluster access (no remote user or role mapping uses them).

Irreversible in effect: the originals (filter settings, role definitions) are journaled so a person
can restore them by hand, but no rollback runs.

The approval gate (`ask_approval`) pauses the flow run that asks: the parent migration when it runs
the retirement, so the operator answers on the run they started. The form's description is the
retirement plan; "approve" unticked, or no answer within `approval_timeout_s`, is a refusal: the
migration stays done and nothing is retired, and the phase report and the summary say which of the
two it was.

    answer = ask_approval(run)                            # pauses this flow run until answered
    retire_certificate_trust_flow(params, run.id, approval=answer.to_dict())
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from prefect import flow, task
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, create_model

from esremote.cluster.facts import flatten
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
# The filters that read the transport lists while their own are not set (Elasticsearch's IPFilter:
# HTTP through `transport.profiles.default.xpack.security.filter.*`, the remote-cluster port
# directly): a transport filter alone would also shut 9200 and the API-key link on 9443.
FALLBACKS = {"xpack.security.http.filter.": ("transport.profiles.default.xpack.security.filter.",),
             "xpack.security.remote_cluster.filter.": ()}
TRANSPORT_FILTER = "xpack.security.transport.filter."


class RetireApproval(RunInput):
    """The approval form: the plan is its description; nothing happens unless `approve` is ticked."""

    approve: bool = Field(False, description="Retire certificate trust as ticked below (irreversible). "
                                             "Unticked, submitting refuses: nothing is retired.")
    transport_ip_filter: bool = Field(False, description="Transport IP filter on each remote cluster: only its "
                                                         "own nodes may connect on 9300.")
    ca_rotation_plan: bool = Field(True, description="Publish a plan for rotating each remote's transport CA "
                                                     "(changes nothing).")
    delete_cross_cluster_roles: bool = Field(False, description="Delete the remote roles listed above, which only "
                                                                "served cross-cluster access.")


# Prefect's own pause timeout is the gate's plus this margin: the gate's watchdog answers "no" at
# approval_timeout_s itself, so the server's pause expiry (which fails the run) only fires when the
# process that waits died.
PAUSE_GRACE_S = 60


@dataclass
class Answer:
    """What the gate got: the form's choices, and how it was answered (ui, timeout)."""

    approve: bool
    transport_ip_filter: bool = False
    ca_rotation_plan: bool = False
    delete_cross_cluster_roles: bool = False
    how: str = "ui"                     # "ui": a person answered; "timeout": nobody did in time
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def refusal(self) -> str:
        """Why nothing is retired, for the phase report and the summary."""
        if self.how == "timeout":
            return (f"no answer to the approval request {self.detail}: treated as a refusal, certificate trust "
                    "left in place")
        return "not approved in the Prefect UI: certificate trust left in place"


def ask_approval(run: Run) -> Answer:
    """Publish the retirement plan and pause the current flow run with the approval form.

    Pause, not suspend (prefect-notes §7): a paused run keeps its process, so the migration's
    concurrency slots (one run per cluster pair) stay held while the operator decides, and the run
    carries on with the same in-memory run (SSH pool, clients) and journal. A suspended run exits its
    process: it would release the pair for another migration in the middle of this one, and be
    re-run from the top by the worker when resumed. The price of pausing, one worker process blocked
    for up to approval_timeout_s, is small next to that."""
    params = run.params
    plan = retire_plan(run)
    reports.markdown(reports.run_key(run, "retire-plan"), plan, description="Retire certificate trust: the plan")
    deadline = datetime.now(timezone.utc) + timedelta(seconds=params.approval_timeout_s)
    footer = (f"\n\nTick **approve** and submit to retire. Unticked, or no answer by "
              f"{deadline.isoformat(timespec='seconds')} ({params.approval_timeout_s} s), is a refusal: the "
              "migration stays done and nothing is retired.\n")
    form = _form(plan + footer, approve=False, **params.retire.model_dump())
    log = run_logger()
    log.info("waiting up to %d s for approval to retire certificate trust: resume this flow run in the "
             "Prefect UI and answer the form", params.approval_timeout_s)
    timed_out = _Watchdog(params.approval_timeout_s)
    timed_out.start()
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=params.approval_timeout_s + PAUSE_GRACE_S,
                                poll_interval=2, key=f"retire-approval-{run.id}")
    except FlowPauseTimeout:
        timed_out.fired = True
        answer = None
    finally:
        timed_out.stop()
    if timed_out.fired or answer is None:
        result = Answer(approve=False, how="timeout", detail=f"within {params.approval_timeout_s} s "
                                                             f"(approval_timeout_s)")
    else:
        result = Answer(approve=answer.approve, transport_ip_filter=answer.transport_ip_filter,
                        ca_rotation_plan=answer.ca_rotation_plan,
                        delete_cross_cluster_roles=answer.delete_cross_cluster_roles)
    log.info("approval answer: %s", "approved" if result.approve else result.refusal)
    return result


def _form(description: str, **defaults: bool) -> type[RetireApproval]:
    """The form with this run's defaults, keeping each field's description (Prefect's
    `with_initial_data` drops the descriptions of the fields it gives new defaults)."""
    fields = {name: (bool, Field(value, description=RetireApproval.model_fields[name].description))
              for name, value in defaults.items()}
    model = create_model(RetireApproval.__name__, __base__=RetireApproval, **fields)
    model._description = description
    return model


class _Watchdog(threading.Thread):
    """At the gate's deadline, resume the paused run with a refusal (and remember it did): the pause
    ends on the run's own terms instead of the server failing a paused run that never resumed."""

    def __init__(self, seconds: float) -> None:
        from prefect.runtime import flow_run  # noqa: PLC0415

        super().__init__(name="esremote-approval-timeout", daemon=True)
        self.seconds, self.flow_run_id, self.fired = seconds, flow_run.id, False
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()

    def run(self) -> None:
        from prefect.exceptions import NotPausedError  # noqa: PLC0415
        from prefect.flow_runs import resume_flow_run  # noqa: PLC0415

        if self.flow_run_id is None or self._done.wait(self.seconds):
            return
        while not self._done.is_set():
            try:
                resume_flow_run(self.flow_run_id, run_input={"approve": False})
                self.fired = True
                return
            except NotPausedError:   # answered this very moment, or not paused yet: look again
                pass
            except Exception as exc:  # noqa: BLE001 - the server's own pause expiry is the fallback
                run_logger().warning("could not end the approval wait at its deadline: %s", exc)
            if self._done.wait(1.0):
                return


def effective_settings(run: Run, remote: str) -> dict:
    """The remote's settings as its nodes apply them, flat: each node's elasticsearch.yml
    (`_nodes/settings` shows what is set there; `include_defaults` would not tell a set value from a
    default one), then persistent, then transient cluster settings."""
    es = run.es(remote)
    yml: dict = {}
    for node in (perform(es, remote, ApiCall("GET", "/_nodes/settings")).get("nodes") or {}).values():
        for key, value in flatten(node.get("settings") or {}).items():
            yml.setdefault(key, value)
    got = perform(es, remote, ApiCall("GET", "/_cluster/settings", params={"flat_settings": "true"}))
    return {**yml, **(got.get("persistent") or {}), **(got.get("transient") or {})}


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).strip("[]").split(",") if v.strip()]


def _resolve(current: dict, prefixes: tuple[str, ...], side: str) -> tuple[list[str], bool]:
    """A filter list as the node reads it, and whether it comes from the transport list."""
    for prefix in prefixes:
        if current.get(prefix + side) is not None:
            return _as_list(current[prefix + side]), False
    return _as_list(current.get(TRANSPORT_FILTER + side)), True


def ip_filter_body(run: Run, remote: str, current: dict) -> dict:
    """Only the remote's own nodes may open transport connections; HTTP and the remote-cluster port
    keep the rules they had. Each of them reads a transport list it has no value of its own for,
    so that list is pinned to what it was: a deny list that was empty becomes `allow: _all` (no deny
    rule accepted everyone, and a list cannot be set to empty), one that was not is copied with its
    allow list. Left to fall back, an empty allow list widens to the remote's own nodes only."""
    addresses = [n.address for n in run.nodes(remote)]
    body: dict = {FILTER_ALLOW: addresses, FILTER_DENY: "_all"}
    for family, between in FALLBACKS.items():
        allow, allow_falls = _resolve(current, (family, *between), "allow")
        deny, deny_falls = _resolve(current, (family, *between), "deny")
        if not (allow_falls or deny_falls):
            continue
        if not deny:
            body[family + "allow"] = ["_all"]
            continue
        if deny_falls:
            body[family + "deny"] = deny
        if allow_falls and allow:
            body[family + "allow"] = allow
    return {"persistent": body}


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
                  f"- transport IP filter: `PUT _cluster/settings` "
                  f"`{json.dumps(ip_filter_body(run, remote, effective_settings(run, remote)))}`",
                  f"- roles only for cross-cluster access (delete): "
                  f"{', '.join(cross_cluster_only_roles(run, remote)) or 'none'}", ""]
    return "\n".join(lines)


@task(name="transport-ip-filter", task_run_name="transport-ip-filter-{remote}", **RETRYING)
def transport_ip_filter(run_id: str, remote: str) -> str:
    run = get_run(run_id)
    es = run.es(remote)
    step = f"{PHASE}/ip-filter/{remote}"
    first = run.journal.first_intent(step)
    if first is not None and "body" in first.data:
        body = first.data["body"]  # a retry: what was decided from the settings before any change
    else:
        settings = perform(es, remote, ApiCall("GET", "/_cluster/settings", params={"flat_settings": "true"}))
        body = ip_filter_body(run, remote, effective_settings(run, remote))
        original = {k: (settings.get("persistent") or {}).get(k) for k in body["persistent"]}
        run.journal.intent(step, original=original, body=body)
    perform(es, remote, ApiCall("PUT", "/_cluster/settings", body))
    run.journal.done(step)
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
def retire_certificate_trust_flow(params: MigrationParams, run_id: str | None = None,
                                  approval: dict | None = None) -> list[str]:
    """Do what was approved. `approval` is the parent's answer (`Answer.to_dict()`); without one this
    run pauses for it itself (the form shows the plan)."""
    run = ensure_run(params, run_id)
    answer = Answer(**approval) if approval is not None else ask_approval(run)
    if not answer.approve:
        phase_done(run, PHASE, [answer.refusal])
        return [answer.refusal]
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
    phase_done(run, PHASE, ["approved in the Prefect UI", *lines] if lines else
               ["approved in the Prefect UI; nothing was chosen to retire"])
    return lines
