"""Which work uses an alias: real response shapes of the transform, ML and CCR listings in, usage out;
the reader against a scripted Elasticsearch (paging, ML switched off)."""

from __future__ import annotations

import pytest

from esremote.cluster import usage as u
from tests.fixtures.scripted_es import ScriptedES  # noqa: F401
from tests.fixtures.lab import wait_for

ALIAS = "my_remote"




@pytest.mark.parametrize("pattern, value, expected", [
    ("*", "my_remote", True), ("my_rem*", "my_remote", True), ("*remote", "my_remote", True),
    ("my_remote", "my_remote", True), ("my_remote", "my_remote2", False), ("m*e", "my_remote", True),
    ("my?remote", "my_remote", False), ("my_[r]emote", "my_remote", False), ("MY_REMOTE", "my_remote", False),
    ("", "my_remote", False), ("a*b*c", "aXbYc", True), ("a*b*c", "aXcYb", False),
])
def test_simple_match_is_elasticsearchs(pattern, value, expected):
    assert u.simple_match(pattern, value) is expected


@pytest.mark.parametrize("expressions, patterns, excluded", [
    ("my_remote:logs-*", ("logs-*",), ()),
    ("*:idx", ("idx",), ()),
    ("my_rem*:a,my_remote:b", ("a", "b"), ()),
    (["local-idx", "my_remote:a", "other:b"], ("a",), ()),
    ("my_remote:logs-*,-my_remote:logs-secret", ("logs-*",), ("logs-secret",)),
    ("*:logs,-my_remote:*", (), ()),                   # the alias is excluded as a whole
    ("-my_remote:x", (), ("x",)),                       # an exclusion alone reads nothing
    ("other:logs,local", (), ()),
    ("<logs-{now/d{yyyy.MM.dd|+12:00}}>", (), ()),      # local date math containing ':'
    ("my_remote:<logs-{now/d}>", ("<logs-{now/d}>",), ()),
    (None, (), ()),
])
def test_remote_patterns_of_index_expressions(expressions, patterns, excluded):
    found = u.remote_patterns(expressions, ALIAS)
    assert (found.patterns, found.excluded) == (patterns, excluded)
    assert bool(found) is bool(patterns)


# Shapes: GET _transform and _stats (es-facts §5, TransformSummary with `authorization`),
# GET _ml/datafeeds, datafeeds/_stats, anomaly_detectors/_stats, /_all/_ccr/info, /_ccr/auto_follow.
TRANSFORMS = {"count": 3, "transforms": [
    {"id": "t-remote", "source": {"index": ["my_remote:orders-*"], "query": {"match_all": {}}},
     "dest": {"index": "orders-summary"}, "version": "8.15.0", "create_time": 1700000000000,
     "authorization": {"roles": ["transform_admin", "remote_search"]}},
    {"id": "t-wild", "source": {"index": "*:logs,local-logs"}, "dest": {"index": "d"},
     "authorization": {"api_key": {"id": "VuaCfGcBCdbkQm-e5aOx", "name": "transform-key"}}},
    {"id": "t-local", "source": {"index": ["local-*"]}, "dest": {"index": "d2"}},
]}
TRANSFORM_STATS = {"count": 3, "transforms": [
    {"id": "t-remote", "state": "started", "node": {"id": "n1"}, "stats": {}, "checkpointing": {},
     "health": {"status": "green"}},
    {"id": "t-wild", "state": "stopped", "stats": {}, "checkpointing": {}, "health": {"status": "green"}},
    {"id": "t-local", "state": "indexing", "stats": {}, "checkpointing": {}},
]}
DATAFEEDS = {"count": 2, "datafeeds": [
    {"datafeed_id": "datafeed-remote", "job_id": "job-remote", "indices": ["my_rem*:metrics-*"],
     "query": {"match_all": {}}, "authorization": {"service_account": "elastic/kibana"}},
    {"datafeed_id": "datafeed-local", "job_id": "job-local", "indices": ["metrics-*"]},
]}
DATAFEED_STATS = {"count": 2, "datafeeds": [
    {"datafeed_id": "datafeed-remote", "state": "started", "timing_stats": {}},
    {"datafeed_id": "datafeed-local", "state": "stopped"},
]}
JOB_STATS = {"count": 2, "jobs": [
    {"job_id": "job-remote", "state": "opened", "assignment_explanation": "", "open_time": "1s"},
    {"job_id": "job-local", "state": "closed"},
]}
FOLLOW_INFO = {"follower_indices": [
    {"follower_index": "bar", "remote_cluster": "my_remote", "leader_index": "foo", "status": "active",
     "parameters": {"max_read_request_operation_count": 5120}},
    {"follower_index": "baz", "remote_cluster": "my_remote", "leader_index": "qux", "status": "paused"},
    {"follower_index": "elsewhere", "remote_cluster": "my_remote2", "leader_index": "x", "status": "active"},
]}
AUTO_FOLLOW = {"patterns": [
    {"name": "my_pattern", "pattern": {"active": True, "remote_cluster": "my_remote",
                                       "leader_index_patterns": ["logs-*"],
                                       "leader_index_exclusion_patterns": ["logs-excluded"],
                                       "follow_index_pattern": "{{leader_index}}-follower",
                                       "max_outstanding_read_requests": 2}},
    {"name": "paused_one", "pattern": {"active": False, "remote_cluster": "my_remote",
                                       "leader_index_patterns": ["auto-*"]}},
    {"name": "not_ours", "pattern": {"active": True, "remote_cluster": "local", "leader_index_patterns": ["*"]}},
]}


def test_find_usage_lists_each_kind_with_state_owner_and_patterns():
    report = u.find_usage(ALIAS, transforms=TRANSFORMS, transform_stats=TRANSFORM_STATS, datafeeds=DATAFEEDS,
                          datafeed_stats=DATAFEED_STATS, job_stats=JOB_STATS, follow_info=FOLLOW_INFO,
                          auto_follow=AUTO_FOLLOW)
    assert [(i.kind, i.id, i.state, i.running) for i in report.items] == [
        ("transform", "t-remote", "started", True),
        ("transform", "t-wild", "stopped", False),
        ("datafeed", "datafeed-remote", "started", True),
        ("auto_follow_pattern", "my_pattern", "active", True),
        ("auto_follow_pattern", "paused_one", "paused", False),
        ("follower", "bar", "active", True),
        ("follower", "baz", "paused", False),
    ]
    t_remote, t_wild = report.of("transform")
    assert t_remote.owner.describe() == "user with roles transform_admin, remote_search"
    assert t_wild.owner.describe() == "API key transform-key (VuaCfGcBCdbkQm-e5aOx)"
    (feed,) = report.of("datafeed")
    assert (feed.job_id, feed.job_state, feed.owner.service_account) == ("job-remote", "opened", "elastic/kibana")
    assert report.of("follower")[0].owner is None  # CCR reports no owner
    assert report.of("auto_follow_pattern")[0].remote.excluded == ("logs-excluded",)
    assert report.remote_patterns() == ["orders-*", "logs", "metrics-*", "logs-*", "auto-*", "foo", "qux"]
    assert report.role_names() == ["transform_admin", "remote_search"]
    assert report.items[0].to_dict()["owner"]["roles"] == ["transform_admin", "remote_search"]


def test_only_wildcards_reach_an_alias_nobody_names():
    report = u.find_usage("unused", transforms=TRANSFORMS, follow_info=FOLLOW_INFO, auto_follow=AUTO_FOLLOW)
    assert [(i.id, i.state) for i in report.items] == [("t-wild", "unknown")]  # `*:logs`; no stats given


def test_read_usage_pages_transforms_and_notes_a_missing_ml_feature(scripted):
    page1 = {"count": 3, "transforms": TRANSFORMS["transforms"][:2]}
    page2 = {"count": 3, "transforms": TRANSFORMS["transforms"][2:]}
    scripted.on("GET", "/_transform", page1).on("GET", "/_transform", page2)
    scripted.on("GET", "/_transform/_stats", TRANSFORM_STATS)
    no_ml = {"error": "no handler found for uri [/_ml/datafeeds] and method [GET]"}
    for path in ("/_ml/datafeeds", "/_ml/datafeeds/_stats", "/_ml/anomaly_detectors/_stats"):
        scripted.on("GET", path, no_ml, status=400)
    scripted.on("GET", "/_all/_ccr/info", FOLLOW_INFO)
    scripted.on("GET", "/_ccr/auto_follow", AUTO_FOLLOW)

    report = u.read_usage(scripted.client(), "local", ALIAS)
    assert [i.id for i in report.of("transform")] == ["t-remote", "t-wild"]
    assert report.of("datafeed") == []
    assert len(report.notes) == 3 and "not available on this cluster" in report.notes[0]
    transform_gets = [s.params for s in scripted.seen if s.path == "/_transform"]
    assert transform_gets == [{"from": "0", "size": "1000"}, {"from": "2", "size": "1000"}]
    assert scripted.writes() == []


def test_read_usage_does_not_hide_a_real_error(scripted):
    from esremote.errors import ClusterHTTPError  # noqa: PLC0415

    scripted.error("GET", "/_transform", 403, "security_exception",
                   "action [cluster:monitor/transform/get] is unauthorized for user [x]")
    with pytest.raises(ClusterHTTPError, match="HTTP 403 security_exception"):
        u.read_usage(scripted.client(), "local", ALIAS)


@pytest.mark.lab
def test_lab_usage_of_the_seeded_alias(rest_lab):
    es = rest_lab.es("local")

    def followed():  # the auto-follow pattern picks up its leader index shortly after seeding
        report = u.read_usage(es, "local", ALIAS)
        return report if any(i.id == "auto-logs-0001-follower" for i in report.of("follower")) else None

    report = wait_for("auto-followed index", followed)
    kinds = {(i.kind, i.id): i for i in report.items}
    assert set(kinds) == {("transform", "ccs-hosts"), ("datafeed", "datafeed-ccs-job"),
                          ("follower", "follower-logs"), ("follower", "auto-logs-0001-follower"),
                          ("auto_follow_pattern", "auto-logs")}
    assert all(i.running for i in report.items), [(i.id, i.state) for i in report.items]
    assert kinds[("datafeed", "datafeed-ccs-job")].job_state == "opened"
    assert set(report.remote_patterns()) >= {"leader-logs", "auto-*", "auto-logs-0001"}
    assert u.read_usage(es, "local", "my_remote2").items == ()
