"""Stop the cross-cluster work that uses an alias, and later resume exactly what was running.

1. `record_work(usage)` snapshots how each object was (a `WorkRecord`, JSON-ready for the journal,
   written before anything changes). On a re-run, pass the journal's records as `previous`: the
   first snapshot wins, so work this run stopped is still known as "was running".
2. `plan_stop(records, usage_now)`: stop transforms (`wait_for_completion=true`), stop datafeeds,
   close their jobs, pause auto-follow patterns, pause followers: only what the records say was
   running and the cluster says still is.
3. `plan_resume(records, usage_now)`: open jobs, start their datafeeds (opening a job does not
   restart its datafeed), start transforms, resume auto-follow patterns, resume followers (the
   order and the pairs as es-facts §11.1-2 correct Elastic's guide); only what was running.

`apply_steps` sends each call and reports per object: changed, unchanged (already in the target
state: a 409 `already started`, a paused follower's 400 `no shard follow tasks`, or any 400/409
after which the object is found in the target state) or error; it goes on after an error so that
one stuck object does not keep the others stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from esremote.cluster.calls import ApiCall, Outcome, perform, segment
from esremote.cluster.usage import UsageReport, is_running
from esremote.errors import ClusterHTTPError, EsRemoteError

Kind = Literal["transform", "datafeed", "job", "auto_follow_pattern", "follower"]
Direction = Literal["stop", "resume"]

STOP_ORDER: tuple[Kind, ...] = ("transform", "datafeed", "job", "auto_follow_pattern", "follower")
RESUME_ORDER: tuple[Kind, ...] = ("job", "datafeed", "transform", "auto_follow_pattern", "follower")

# Answers that mean "already in the target state" (es-facts §5).
_ALREADY = ("already started", "already been started", "no shard follow tasks for")


@dataclass(frozen=True)
class WorkRecord:
    """How one object was before the migration stopped anything."""

    kind: Kind
    id: str
    state: str
    running: bool
    job_id: str | None = None  # datafeeds: their job

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "state": self.state, "running": self.running,
                "job_id": self.job_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkRecord:
        return cls(data["kind"], data["id"], data["state"], bool(data["running"]), data.get("job_id"))

    @property
    def label(self) -> str:
        return f"{self.kind.replace('_', ' ')} {self.id}"


def _states_now(usage: UsageReport) -> dict[tuple[str, str], str]:
    """(kind, id) -> state, jobs included (through their datafeeds)."""
    states: dict[tuple[str, str], str] = {}
    for item in usage.items:
        states[(item.kind, item.id)] = item.state
        if item.kind == "datafeed" and item.job_id:
            states[("job", item.job_id)] = item.job_state or "unknown"
    return states


def record_work(usage: UsageReport, previous: Iterable[WorkRecord] = ()) -> list[WorkRecord]:
    """Records of everything that uses the alias; `previous` records (from the journal) are kept
    as they are, objects seen for the first time are recorded as they are now."""
    records = {(r.kind, r.id): r for r in previous}
    for item in usage.items:
        if item.kind == "datafeed" and item.job_id and ("job", item.job_id) not in records:
            job_state = item.job_state or "unknown"
            records[("job", item.job_id)] = WorkRecord("job", item.job_id, job_state, is_running("job", job_state))
        if (item.kind, item.id) not in records:
            records[(item.kind, item.id)] = WorkRecord(item.kind, item.id, item.state,
                                                       is_running(item.kind, item.state), item.job_id)
    order = {kind: n for n, kind in enumerate(STOP_ORDER)}
    return sorted(records.values(), key=lambda r: order[r.kind])


# --- plans --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkStep:
    """One planned call on one object, with the direction it moves the object."""

    record: WorkRecord
    direction: Direction
    call: ApiCall

    def __str__(self) -> str:
        return str(self.call)


def _stop_call(r: WorkRecord) -> ApiCall:
    i = segment(r.id)
    target = r.label
    if r.kind == "transform":
        return ApiCall("POST", f"/_transform/{i}/_stop", params={"wait_for_completion": "true"}, target=target)
    if r.kind == "datafeed":
        return ApiCall("POST", f"/_ml/datafeeds/{i}/_stop", target=target)
    if r.kind == "job":
        return ApiCall("POST", f"/_ml/anomaly_detectors/{i}/_close", target=target)
    if r.kind == "auto_follow_pattern":
        return ApiCall("POST", f"/_ccr/auto_follow/{i}/pause", target=target)
    return ApiCall("POST", f"/{i}/_ccr/pause_follow", target=target)


def _resume_call(r: WorkRecord) -> ApiCall:
    i = segment(r.id)
    target = r.label
    if r.kind == "transform":
        return ApiCall("POST", f"/_transform/{i}/_start", target=target)
    if r.kind == "datafeed":
        return ApiCall("POST", f"/_ml/datafeeds/{i}/_start", target=target)
    if r.kind == "job":
        return ApiCall("POST", f"/_ml/anomaly_detectors/{i}/_open", target=target)
    if r.kind == "auto_follow_pattern":
        return ApiCall("POST", f"/_ccr/auto_follow/{i}/resume", target=target)
    return ApiCall("POST", f"/{i}/_ccr/resume_follow", {}, target=target)


def plan_stop(records: Sequence[WorkRecord], now: UsageReport) -> list[WorkStep]:
    """Stop what was running and still runs; nothing when all of it is already stopped."""
    states = _states_now(now)
    steps = [WorkStep(r, "stop", _stop_call(r)) for r in records
             if r.running and is_running(r.kind, states.get((r.kind, r.id)))]
    return sorted(steps, key=lambda s: STOP_ORDER.index(s.record.kind))


def plan_resume(records: Sequence[WorkRecord], now: UsageReport) -> list[WorkStep]:
    """Resume what was running and is not now; never what was stopped before the migration. A
    transform that failed meanwhile (its remote unreachable for longer than its retries, during a
    restart of the remote's nodes) is force-stopped first: Elasticsearch starts no failed transform."""
    states = _states_now(now)
    steps = []
    for r in records:
        state = states.get((r.kind, r.id))
        if not r.running or state is None or is_running(r.kind, state):
            continue
        if r.kind == "transform" and state == "failed":
            steps.append(WorkStep(r, "resume", ApiCall("POST", f"/_transform/{segment(r.id)}/_stop",
                                                       params={"force": "true"}, target=r.label)))
        steps.append(WorkStep(r, "resume", _resume_call(r)))
    return sorted(steps, key=lambda s: RESUME_ORDER.index(s.record.kind))  # stable: the force stop first


# --- applying -------------------------------------------------------------------------------------

def _state_path(r: WorkRecord) -> tuple[str, str, str]:
    """(path, list key, state field) of the API that reports the object's state now."""
    i = segment(r.id)
    return {
        "transform": (f"/_transform/{i}/_stats", "transforms", "state"),
        "datafeed": (f"/_ml/datafeeds/{i}/_stats", "datafeeds", "state"),
        "job": (f"/_ml/anomaly_detectors/{i}/_stats", "jobs", "state"),
        "auto_follow_pattern": (f"/_ccr/auto_follow/{i}", "patterns", "pattern"),
        "follower": (f"/{i}/_ccr/info", "follower_indices", "status"),
    }[r.kind]


def current_state(es, cluster: str | None, r: WorkRecord) -> str | None:
    """The object's state as the cluster reports it now (None when it cannot say)."""
    path, key, field_name = _state_path(r)
    rows = perform(es, cluster, ApiCall("GET", path)).get(key) or []
    if not rows:
        return None
    value = rows[0].get(field_name)
    if r.kind == "auto_follow_pattern":
        return "active" if (value or {}).get("active", True) else "paused"
    return value


def _in_target(direction: Direction, r: WorkRecord, state: str | None) -> bool:
    return state is not None and is_running(r.kind, state) == (direction == "resume")


def apply_step(es, cluster: str | None, step: WorkStep) -> Outcome:
    """Send one step; already being in the target state is `unchanged`, other failures `error`."""
    try:
        perform(es, cluster, step.call)
        return Outcome(step.call.target, "changed", f"{step.direction}: was {step.record.state}", step.call)
    except ClusterHTTPError as exc:
        if exc.status in (400, 409):
            if any(text in exc.reason for text in _ALREADY):
                return Outcome(step.call.target, "unchanged", f"already done ({exc.reason})", step.call)
            try:
                state = current_state(es, cluster, step.record)
            except EsRemoteError:
                state = None
            if _in_target(step.direction, step.record, state):
                return Outcome(step.call.target, "unchanged", f"already {state}", step.call)
        return Outcome(step.call.target, "error", str(exc), step.call, transient=exc.transient)
    except EsRemoteError as exc:
        return Outcome(step.call.target, "error", str(exc), step.call, transient=exc.transient)


def apply_steps(es, cluster: str | None, steps: Sequence[WorkStep]) -> list[Outcome]:
    """Apply steps in order, one outcome each (an empty plan: one `unchanged` outcome)."""
    if not steps:
        return [Outcome("cross-cluster work", "unchanged", "already in the target state")]
    return [apply_step(es, cluster, step) for step in steps]


def failed(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status == "error"]
