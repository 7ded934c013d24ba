"""Stopping and resuming the work that uses an alias: records, exact calls in the corrected order,
idempotent re-runs, and "already there" answers (es-facts §5, §11.1-2) on the wire."""

from __future__ import annotations

import copy
import json

import pytest

from esremote.cluster import usage as u
from esremote.cluster import xcluster_work as xw
from tests.fixtures.scripted_es import ScriptedES  # noqa: F401
from tests.fixtures.lab import wait_for
from tests.test_cluster_usage import (
    AUTO_FOLLOW, DATAFEED_STATS, DATAFEEDS, FOLLOW_INFO, JOB_STATS, TRANSFORM_STATS, TRANSFORMS,
)

ALIAS = "my_remote"




def usage_with(transform_state="started", datafeed_state="started", job_state="opened",
               pattern_active=True, follower_status="active") -> u.UsageReport:
    """The fixtures' usage, with the states of the running objects set as given."""
    stats = copy.deepcopy(TRANSFORM_STATS)
    stats["transforms"][0]["state"] = transform_state
    feeds = copy.deepcopy(DATAFEED_STATS)
    feeds["datafeeds"][0]["state"] = datafeed_state
    jobs = copy.deepcopy(JOB_STATS)
    jobs["jobs"][0]["state"] = job_state
    patterns = copy.deepcopy(AUTO_FOLLOW)
    patterns["patterns"][0]["pattern"]["active"] = pattern_active
    info = copy.deepcopy(FOLLOW_INFO)
    info["follower_indices"][0]["status"] = follower_status
    return u.find_usage(ALIAS, transforms=TRANSFORMS, transform_stats=stats, datafeeds=DATAFEEDS,
                        datafeed_stats=feeds, job_stats=jobs, follow_info=info, auto_follow=patterns)


RUNNING = usage_with()
STOPPED = usage_with("stopped", "stopped", "closed", False, "paused")


def test_records_say_how_each_object_was_and_survive_the_journal():
    records = xw.record_work(RUNNING)
    assert [(r.kind, r.id, r.state, r.running) for r in records] == [
        ("transform", "t-remote", "started", True),
        ("transform", "t-wild", "stopped", False),
        ("datafeed", "datafeed-remote", "started", True),
        ("job", "job-remote", "opened", True),
        ("auto_follow_pattern", "my_pattern", "active", True),
        ("auto_follow_pattern", "paused_one", "paused", False),
        ("follower", "bar", "active", True),
        ("follower", "baz", "paused", False),
    ]
    assert [xw.WorkRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in records] == records


def test_a_rerun_keeps_the_first_snapshot():
    first = xw.record_work(RUNNING)
    again = xw.record_work(STOPPED, previous=first)
    assert again == first  # what this run stopped is still "was running"


def test_stop_plan_is_exact_ordered_and_only_what_runs():
    steps = xw.plan_stop(xw.record_work(RUNNING), RUNNING)
    assert [(s.call.method, s.call.path, dict(s.call.params)) for s in steps] == [
        ("POST", "/_transform/t-remote/_stop", {"wait_for_completion": "true"}),
        ("POST", "/_ml/datafeeds/datafeed-remote/_stop", {}),
        ("POST", "/_ml/anomaly_detectors/job-remote/_close", {}),
        ("POST", "/_ccr/auto_follow/my_pattern/pause", {}),
        ("POST", "/bar/_ccr/pause_follow", {}),
    ]
    assert xw.plan_stop(xw.record_work(RUNNING), STOPPED) == []  # re-run after stopping: no-op


def test_resume_plan_opens_jobs_then_starts_their_datafeeds_and_skips_what_was_stopped_before():
    records = xw.record_work(RUNNING)
    steps = xw.plan_resume(records, STOPPED)
    assert [(s.call.method, s.call.path, s.call.body) for s in steps] == [
        ("POST", "/_ml/anomaly_detectors/job-remote/_open", None),
        ("POST", "/_ml/datafeeds/datafeed-remote/_start", None),
        ("POST", "/_transform/t-remote/_start", None),
        ("POST", "/_ccr/auto_follow/my_pattern/resume", None),   # auto-follow: resume the pattern
        ("POST", "/bar/_ccr/resume_follow", {}),                 # followers: resume each follower
    ]
    assert xw.plan_resume(records, RUNNING) == []


def test_a_transform_that_failed_since_is_force_stopped_then_started_and_nothing_else_moves():
    """Elasticsearch starts no failed transform (409 "Use force stop and then restart")."""
    records = xw.record_work(RUNNING)
    steps = xw.plan_resume(records, usage_with(transform_state="failed"))
    assert [(s.call.method, s.call.path, dict(s.call.params)) for s in steps] == [
        ("POST", "/_transform/t-remote/_stop", {"force": "true"}),
        ("POST", "/_transform/t-remote/_start", {}),
    ]


def test_a_job_open_without_a_running_datafeed_is_closed_and_reopened_but_the_feed_stays_stopped():
    before = usage_with(datafeed_state="stopped")
    records = xw.record_work(before)
    assert [s.record.id for s in xw.plan_stop(records, before) if s.record.kind in ("job", "datafeed")] == ["job-remote"]
    resumed = xw.plan_resume(records, STOPPED)
    assert [s.record.id for s in resumed if s.record.kind in ("job", "datafeed")] == ["job-remote"]


def test_stop_on_the_wire_treats_an_already_paused_follower_as_unchanged(scripted):
    ack = {"acknowledged": True}
    scripted.on("POST", "/_transform/t-remote/_stop", ack)
    scripted.on("POST", "/_ml/datafeeds/datafeed-remote/_stop", {"stopped": True})
    scripted.on("POST", "/_ml/anomaly_detectors/job-remote/_close", {"closed": True})
    scripted.on("POST", "/_ccr/auto_follow/my_pattern/pause", ack)
    scripted.error("POST", "/bar/_ccr/pause_follow", 400, "illegal_argument_exception",
                   "no shard follow tasks for [bar]")
    outcomes = xw.apply_steps(scripted.client(), "local", xw.plan_stop(xw.record_work(RUNNING), RUNNING))
    assert [(o.target, o.status) for o in outcomes] == [
        ("transform t-remote", "changed"), ("datafeed datafeed-remote", "changed"), ("job job-remote", "changed"),
        ("auto follow pattern my_pattern", "changed"), ("follower bar", "unchanged")]
    assert scripted.seen[0].params == {"wait_for_completion": "true"}
    assert xw.failed(outcomes) == []


def test_resume_on_the_wire_already_started_is_unchanged_and_errors_do_not_stop_the_rest(scripted):
    scripted.on("POST", "/_ml/anomaly_detectors/job-remote/_open", {"opened": True, "node": "node-1"})
    scripted.error("POST", "/_ml/datafeeds/datafeed-remote/_start", 409, "status_exception",
                   "cannot start datafeed [datafeed-remote] because it has already been started")
    scripted.error("POST", "/_transform/t-remote/_start", 409, "status_exception",
                   "Cannot start transform [t-remote] as it is already started.")
    scripted.error("POST", "/_ccr/auto_follow/my_pattern/resume", 500, "exception", "boom")
    # resuming an active follower: whatever Elasticsearch says, the follower is found active
    scripted.error("POST", "/bar/_ccr/resume_follow", 400, "illegal_argument_exception", "some other wording")
    scripted.on("GET", "/bar/_ccr/info", {"follower_indices": [FOLLOW_INFO["follower_indices"][0]]})

    outcomes = xw.apply_steps(scripted.client(), "local", xw.plan_resume(xw.record_work(RUNNING), STOPPED))
    assert [(o.target, o.status) for o in outcomes] == [
        ("job job-remote", "changed"), ("datafeed datafeed-remote", "unchanged"),
        ("transform t-remote", "unchanged"), ("auto follow pattern my_pattern", "error"),
        ("follower bar", "unchanged")]
    (error,) = xw.failed(outcomes)
    assert "HTTP 500" in error.detail and "POST /_ccr/auto_follow/my_pattern/resume" in error.detail
    assert outcomes[-1].detail == "already active"


def test_an_unreachable_cluster_is_a_transient_error_outcome():
    record = xw.WorkRecord("follower", "bar", "active", True)
    step = xw.WorkStep(record, "stop", xw._stop_call(record))
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    closed = ScriptedES()
    url = closed.url
    closed.close()  # nothing listens there any more
    outcome = xw.apply_step(Elasticsearch(url, request_timeout=2, max_retries=0), "local", step)
    assert (outcome.status, outcome.transient) == ("error", True)
    assert "cannot reach the cluster" in outcome.detail


def test_a_real_refusal_stays_an_error_after_the_state_check(scripted):
    scripted.error("POST", "/_ml/datafeeds/datafeed-remote/_start", 409, "status_exception",
                   "cannot start datafeed [datafeed-remote] because job [job-remote] is closed")
    scripted.on("GET", "/_ml/datafeeds/datafeed-remote/_stats",
                {"count": 1, "datafeeds": [{"datafeed_id": "datafeed-remote", "state": "stopped"}]})
    record = xw.WorkRecord("datafeed", "datafeed-remote", "started", True, "job-remote")
    step = xw.WorkStep(record, "resume", xw._resume_call(record))
    outcome = xw.apply_step(scripted.client(), "local", step)
    assert outcome.status == "error" and "is closed" in outcome.detail and not outcome.transient


def test_an_empty_plan_reports_unchanged(scripted):
    assert [o.status for o in xw.apply_steps(scripted.client(), "local", [])] == ["unchanged"]
    assert scripted.seen == []


@pytest.mark.lab
def test_lab_stop_then_resume_exactly_what_ran(rest_lab):
    es = rest_lab.es("local")

    def when(all_running: bool):
        """The usage now if every object's running state is `all_running`, else None (poll again)."""
        report = u.read_usage(es, "local", ALIAS)
        return report if report.items and all(i.running is all_running for i in report.items) else None

    before = wait_for("everything running", lambda: when(True))
    records = xw.record_work(before)
    try:
        stop = xw.apply_steps(es, "local", xw.plan_stop(records, before))
        assert xw.failed(stop) == [], stop
        stopped = wait_for("everything stopped", lambda: when(False))
        assert [i.job_state for i in stopped.of("datafeed")] == ["closed"]
        assert xw.plan_stop(records, stopped) == []
    finally:
        resume = xw.apply_steps(es, "local", xw.plan_resume(records, u.read_usage(es, "local", ALIAS)))
    assert xw.failed(resume) == [], resume
    after = wait_for("everything running again", lambda: when(True))
    assert {(i.kind, i.id) for i in after.items} == {(i.kind, i.id) for i in before.items}
    assert xw.plan_resume(records, after) == []
