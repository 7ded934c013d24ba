"""The lab's REST surface against a real node (in this process, real TLS): Elasticsearch's bodies,
errors, settings validators, documents and search, and the task APIs' state rules."""

import json
import time

import pytest

from tests.lab_inprocess import ELASTIC_PASSWORD, Client, build_home, running_node

IP = "127.0.201.1"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    home = build_home(tmp_path_factory.mktemp("rest"), ip=IP, version="8.15.0")
    with running_node(home) as ctx:
        yield home, ctx


@pytest.fixture
def es(node):
    return Client(node[0])


def error(body):
    return body["error"]["type"], body["error"]["reason"]


# ------------------------------------------------------------------------------- HTTP basics

def test_info_and_product_header(es):
    status, body, headers = es.get("/")
    assert status == 200 and headers["X-Elastic-Product"] == "Elasticsearch"
    assert body["name"] == "node-0" and body["cluster_name"] == "local"
    assert body["version"]["number"] == "8.15.0" and body["tagline"] == "You Know, for Search"


def test_elasticsearch_py_works_unmodified(node):
    from elasticsearch import Elasticsearch
    home, _ = node
    client = Elasticsearch(home.url, ca_certs=str(home.http_ca), basic_auth=("elastic", ELASTIC_PASSWORD))
    assert client.info()["version"]["number"] == "8.15.0"
    assert client.cluster.health()["cluster_name"] == "local"
    client.indices.create(index="py-docs")
    client.index(index="py-docs", id="1", document={"n": 1}, refresh=True)
    assert client.search(index="py-docs", query={"term": {"n": 1}})["hits"]["total"]["value"] == 1
    assert client.security.authenticate()["username"] == "elastic"
    client.cluster.put_settings(persistent={"action.destructive_requires_name": False})
    assert client.cluster.get_settings(flat_settings=True)["persistent"]["action.destructive_requires_name"] == "false"
    client.cluster.put_settings(persistent={"action.destructive_requires_name": None})
    from elasticsearch import BadRequestError
    with pytest.raises(BadRequestError) as bad:
        client.cluster.put_settings(persistent={"no.such.setting": 1})
    assert bad.value.message == "illegal_argument_exception"


def test_a_9x_client_gets_the_8x_answer(es):
    header = "application/vnd.elasticsearch+json; compatible-with=9"
    status, body, _ = es.get("/", headers={"Accept": header, "Content-Type": header})
    assert status == 400
    assert body == {"error": {
        "root_cause": [{"type": "media_type_header_exception",
                        "reason": "Invalid media-type value on headers [Accept, Content-Type]"}],
        "type": "media_type_header_exception", "reason": "Invalid media-type value on headers [Accept, Content-Type]",
        "caused_by": {"type": "status_exception",
                      "reason": f"Accept version must be either version 8 or 7, but found 9. Accept={header}"}},
        "status": 400}
    ok = "application/vnd.elasticsearch+json; compatible-with=8"
    status, _, headers = es.get("/", headers={"Accept": ok})
    assert status == 200 and headers["content-type"].startswith("application/vnd.elasticsearch+json")


def test_authentication_failures(node):
    home, _ = node
    anonymous = Client(home)
    anonymous.auth = None
    status, body, headers = anonymous.get("/_cluster/health")
    assert status == 401 and "ApiKey" in headers["WWW-Authenticate"]
    assert error(body) == ("security_exception", "missing authentication credentials for REST request [/_cluster/health]")
    status, body, _ = Client(home).as_user("elastic", "wrong").get("/")
    assert status == 401 and error(body)[1] == "unable to authenticate user [elastic] for REST request [/]"


def test_unknown_route_and_wrong_method(es):
    assert es.get("/_nothing/here") [:2] == (400, {"error": "no handler found for uri [/_nothing/here] and method [GET]",
                                                  "status": 400})
    status, body, _ = es.delete("/_cluster/settings")
    assert status == 405 and "allowed: [GET, PUT]" in body["error"]


def test_unknown_url_parameters_are_refused(es):
    status, body, _ = es.put("/_cluster/settings?flat_setting=true", {"persistent": {"cluster.remote.x.mode": "proxy"}})
    assert status == 400 and error(body) == (
        "illegal_argument_exception",
        "request [/_cluster/settings] contains unrecognized parameter: [flat_setting] -> did you mean [flat_settings]?")
    assert es.get("/_cluster/settings?flat_settings=true")[1]["persistent"] == {}  # nothing was changed
    status, body, _ = es.get("/_remote/info?verbose=true&zzz=1")
    assert status == 400 and error(body)[1] == \
        "request [/_remote/info] contains unrecognized parameters: [verbose], [zzz]"
    assert es.get("/_transform/_stats?from=0&size=10&allow_no_match=true&pretty")[0] == 200
    assert es.get("/_cluster/health?filter_path=status&error_trace=false")[1].keys() == {"status"}


def test_filter_path(es):
    assert es.get("/_cluster/settings?filter_path=persistent.cluster.remote")[1] == {}
    status, body, _ = es.get("/?filter_path=version.number,name")
    assert body == {"name": "node-0", "version": {"number": "8.15.0"}}


def test_http_overload_fault_bursts(node, es):
    home, _ = node
    home.set_fault("http-overload", status=429, burst=1, every=2)
    try:
        statuses = [es.get("/")[0] for _ in range(4)]
        assert sorted(statuses) == [200, 200, 429, 429]
        home.set_fault("http-overload", status=503, burst=1, every=1)
        status, body, _ = es.get("/")
        assert status == 503 and body["status"] == 503
    finally:
        (home.control_dir / "faults.json").write_text("{}")
    assert es.get("/")[0] == 200


# ---------------------------------------------------------------------------------- settings

def put_settings(es, body):
    return es.put("/_cluster/settings", body)[:2]


def test_strategy_validator(es):
    status, body = put_settings(es, {"persistent": {"cluster.remote.a1.proxy_address": "127.0.0.1:9443"}})
    assert status == 400 and error(body) == (
        "illegal_argument_exception", 'Setting "cluster.remote.a1.proxy_address" cannot be used with the configured '
        '"cluster.remote.a1.mode" [required=PROXY, configured=SNIFF]')
    status, body = put_settings(es, {"persistent": {"cluster.remote.a1.mode": "proxy",
                                                    "cluster.remote.a1.seeds": ["127.0.0.1:9300"]}})
    assert error(body)[1] == ('Setting "cluster.remote.a1.seeds" cannot be used with the configured '
                              '"cluster.remote.a1.mode" [required=SNIFF, configured=PROXY]')


def test_skip_unavailable_needs_an_enabled_remote(es):
    status, body = put_settings(es, {"persistent": {"cluster.remote.a2.skip_unavailable": True}})
    assert status == 400 and error(body)[1] == ("Cannot configure setting [cluster.remote.a2.skip_unavailable] if "
                                                "remote cluster is not enabled.")
    assert put_settings(es, {"persistent": {"cluster.remote.a2.seeds": ["127.0.9.9:9300"],
                                            "cluster.remote.a2.skip_unavailable": True}})[0] == 200
    status, body = put_settings(es, {"persistent": {"cluster.remote.a2.seeds": None}})
    assert status == 400 and "Cannot configure setting [cluster.remote.a2.skip_unavailable]" in error(body)[1]
    status, body = put_settings(es, {"persistent": {"cluster.remote.a2.*": None}})
    assert (status, body) == (200, {"acknowledged": True, "persistent": {}, "transient": {}})
    assert es.get("/_cluster/settings?filter_path=persistent.cluster.remote.a2")[1] == {}


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "remote hosts need to be configured as [host:port], found [127.0.0.1] instead"),
    ("127.0.0.1:abc", "failed to parse port"),
    ("127.0.0.1:0", "port number must be > 0 but was: [0]"),
])
def test_address_parsing(es, address, reason):
    status, body = put_settings(es, {"persistent": {"cluster.remote.a3.seeds": [address]}})
    assert status == 400 and error(body) == ("illegal_argument_exception", reason)


def test_unknown_static_and_mistyped_settings(es):
    assert error(put_settings(es, {"persistent": {"foo.bar": 1}})[1])[1] == "persistent setting [foo.bar], not recognized"
    assert error(put_settings(es, {"transient": {"cluster.name": "x"}})[1])[1] == (
        "transient setting [cluster.name], not dynamically updateable")
    assert error(put_settings(es, {"persistent": {"cluster.remote.a4.skip_unavailable": "maybe"}})[1])[1] == (
        "Failed to parse value [maybe] as only [true] or [false] are allowed.")
    assert error(put_settings(es, {"persistent": {"cluster.remote.a4.mode": "bridge"}})[1])[1] == (
        "No enum constant org.elasticsearch.transport.RemoteConnectionStrategy.ConnectionStrategy.BRIDGE")


def test_nested_put_get_and_reset_of_a_proxy_remote(es):
    status, body = put_settings(es, {"persistent": {"cluster": {"remote": {"a5": {
        "mode": "proxy", "proxy_address": "127.0.9.9:9443", "skip_unavailable": True}}}}})
    assert status == 200
    assert body["persistent"] == {"cluster": {"remote": {"a5": {"mode": "proxy", "proxy_address": "127.0.9.9:9443",
                                                                 "skip_unavailable": "true"}}}}
    nested = es.get("/_cluster/settings?filter_path=persistent.cluster.remote.a5")[1]
    assert nested == {"persistent": {"cluster": {"remote": {"a5": {"mode": "proxy", "proxy_address": "127.0.9.9:9443",
                                                                    "skip_unavailable": "true"}}}}}
    flat = es.get("/_cluster/settings?flat_settings=true")[1]["persistent"]
    assert flat["cluster.remote.a5.mode"] == "proxy"
    reset = {f"cluster.remote.a5.{k}": None for k in ("mode", "proxy_address", "skip_unavailable")}
    assert put_settings(es, {"persistent": reset}) == (200, {"acknowledged": True, "persistent": {}, "transient": {}})


# ------------------------------------------------------------------------ health and license

def test_health_turns_yellow_with_unassigned_replicas(es):
    es.put("/health-idx", {"settings": {"number_of_replicas": 1}})
    status, body, _ = es.get("/_cluster/health/health-idx")
    assert body["status"] == "yellow" and body["unassigned_shards"] == 1
    status, body, _ = es.get("/_cluster/health/health-idx?wait_for_status=green&timeout=200ms")
    assert status == 408 and body["timed_out"] is True
    es.put("/health-idx0", {"settings": {"number_of_replicas": 0}})
    assert es.get("/_cluster/health/health-idx0")[1]["status"] == "green"


def test_license_and_trial(es):
    body = es.get("/_license")[1]["license"]
    assert body["type"] == "trial" and body["status"] == "active"
    status, body, _ = es.post("/_license/start_trial?acknowledge=true")
    assert status == 403 and body["error_message"] == "Operation failed: Trial was already activated."


# ----------------------------------------------------------------------- documents and search

def test_documents_search_and_count(es):
    lines = []
    for i in range(5):
        lines += [{"index": {"_index": "logs-a", "_id": str(i)}}, {"n": i, "tag": "even" if i % 2 == 0 else "odd",
                                                                   "@timestamp": f"2026-01-0{i + 1}T00:00:00Z"}]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
    status, body, _ = es.request("POST", "/_bulk", raw=raw, headers={"Content-Type": "application/x-ndjson"})
    assert status == 200 and body["errors"] is False and body["items"][0]["index"]["status"] == 201
    result = es.post("/logs-a/_search", {"query": {"bool": {"filter": [
        {"term": {"tag": "even"}}, {"range": {"@timestamp": {"gte": "2026-01-02T00:00:00Z"}}}]}},
        "sort": [{"n": "desc"}], "size": 1})[1]
    assert result["hits"]["total"]["value"] == 2
    assert [h["_id"] for h in result["hits"]["hits"]] == ["4"] and result["hits"]["hits"][0]["sort"] == [4]
    assert es.post("/logs-*/_count", {"query": {"match": {"tag": "odd"}}})[1]["count"] == 2
    assert es.get("/logs-a/_count?q=tag:even")[1]["count"] == 3
    assert es.get("/logs-a/_search?q=odd")[1]["hits"]["total"]["value"] == 2
    status, body, _ = es.put("/logs-a/_doc/9", {"n": 9})
    assert status == 201 and body["result"] == "created"
    assert es.put("/logs-a/_doc/9", {"n": 10})[1]["result"] == "updated"
    assert es.get("/logs-a/_doc/9")[1]["_source"] == {"n": 10}
    assert es.delete("/logs-a/_doc/9")[1]["result"] == "deleted"
    assert es.get("/logs-a/_doc/9")[:2] == (404, {"_index": "logs-a", "_id": "9", "found": False})


def test_index_errors(es):
    status, body, _ = es.post("/missing-idx/_search", {})
    assert status == 404 and body["error"]["type"] == "index_not_found_exception"
    assert body["error"]["reason"] == "no such index [missing-idx]" and body["error"]["index"] == "missing-idx"
    es.put("/dup-idx")
    status, body, _ = es.put("/dup-idx")
    assert status == 400 and body["error"]["type"] == "resource_already_exists_exception"
    assert es.put("/Upper")[1]["error"]["reason"] == "Invalid index name [Upper], must be lowercase"
    assert es.delete("/dup-*")[1]["error"]["reason"] == "Wildcard expressions or all indices are not allowed"
    assert es.request("HEAD", "/dup-idx")[0] == 200 and es.request("HEAD", "/nope-idx")[0] == 404
    # an API path without its id reaches `/{index}`, as in Elasticsearch: the index name check answers
    status, body, _ = es.put("/_transform", {})
    assert status == 400 and error(body) == ("invalid_index_name_exception",
                                             "Invalid index name [_transform], must not start with '_', '-', or '+'")


def test_remote_info_and_typed_search(node, es):
    status, body, _ = es.get("/_remote/info")
    assert status == 200 and isinstance(body, dict)
    assert es.get("/logs-a/doc/_search")[0] == 400


# -------------------------------------------------------------------------------- transforms

def test_transform_lifecycle(node, es):
    _, ctx = node
    es.put("/tf-src/_doc/1", {"user": "a", "n": 1})
    config = {"source": {"index": ["tf-src"]}, "dest": {"index": "tf-dest"},
              "pivot": {"group_by": {"user": {"terms": {"field": "user"}}}, "aggregations": {"n": {"max": {"field": "n"}}}},
              "frequency": "1s", "sync": {"time": {"field": "n"}}}  # continuous: stays started
    assert es.put("/_transform/tf1", config)[1] == {"acknowledged": True}
    status, body, _ = es.put("/_transform/tf-bad", {**config, "source": {"index": ["nope-src"]}})
    assert status == 400 and "nope-src" in body["error"]["reason"]
    assert es.get("/_transform/tf1")[1]["transforms"][0]["id"] == "tf1"
    es.put("/_transform/tf2", config)
    assert es.get("/_transform?from=1&size=5")[1] == {"count": 2, "transforms": [
        {**es.get("/_transform/tf2")[1]["transforms"][0]}]}
    assert es.delete("/_transform/tf2")[1] == {"acknowledged": True}
    assert es.post("/_transform/tf1/_start")[1] == {"acknowledged": True}
    status, body, _ = es.post("/_transform/tf1/_start")
    assert status == 409 and error(body) == ("status_exception", "Cannot start transform [tf1] as it is already started.")
    stats = es.get("/_transform/tf1/_stats")[1]
    assert stats["count"] == 1 and stats["transforms"][0]["state"] in ("started", "indexing")
    with ctx.store.transaction() as st:
        st["transforms"]["tf1"].update({"state": "failed", "reason": "link down"})
    listing = es.get("/_transform/_stats")[1]  # every transform (es-facts §5), not a transform named "_stats"
    assert listing["count"] == 1 and listing["transforms"][0]["id"] == "tf1"
    assert listing["transforms"][0]["health"]["status"] == "red"
    status, body, _ = es.post("/_transform/tf1/_stop")
    assert status == 409 and "Use force stop to stop the transform" in error(body)[1]
    assert es.post("/_transform/tf1/_stop?force=true")[1] == {"acknowledged": True}
    assert es.get("/_transform/tf1/_stats")[1]["transforms"][0]["state"] == "stopped"
    assert es.delete("/_transform/tf1")[1] == {"acknowledged": True}
    status, body, _ = es.get("/_transform/tf1")
    assert status == 404 and error(body)[1] == "Transform with id [tf1] could not be found"


def _owner(es):
    es.put("/_security/role/owner_role", {"cluster": ["manage_transform", "manage_ml", "monitor"],
                                          "indices": [{"names": ["*"], "privileges": ["all"]}]})
    es.put("/_security/user/owner", {"password": "owner-pw", "roles": ["owner_role"]})
    return es.as_user("owner", "owner-pw")


def test_transforms_show_who_they_run_as(es):
    """`authorization` (8.x): the creator's roles, or the API key's id and name; starting as
    someone else changes nothing, `exclude_generated` leaves it out (TransformConfig.toXContent)."""
    owner = _owner(es)
    es.put("/own-src/_doc/1", {"user": "a"})
    config = {"source": {"index": ["own-src"]}, "dest": {"index": "own-dest"},
              "pivot": {"group_by": {"user": {"terms": {"field": "user"}}}, "aggregations": {"n": {"value_count": {"field": "user"}}}}}
    assert owner.put("/_transform/owned", config)[1] == {"acknowledged": True}
    assert es.post("/_transform/owned/_start")[1] == {"acknowledged": True}  # started by elastic
    shown = es.get("/_transform/owned")[1]["transforms"][0]
    assert list(shown)[:4] == ["id", "authorization", "version", "create_time"]
    assert shown["authorization"] == {"roles": ["owner_role"]}
    bare = es.get("/_transform/owned?exclude_generated=true")[1]["transforms"][0]
    assert "authorization" not in bare and "create_time" not in bare and bare["id"] == "owned"
    es.post("/_transform/owned/_stop?force=true")
    key = es.post("/_security/api_key", {"name": "tf-key"})[1]
    assert es.with_api_key(key["encoded"]).put("/_transform/keyed", config)[0] == 200
    assert es.get("/_transform/keyed")[1]["transforms"][0]["authorization"] == {
        "api_key": {"id": key["id"], "name": "tf-key"}}
    es.put("/_transform/by-elastic", config)
    assert es.get("/_transform/by-elastic")[1]["transforms"][0]["authorization"] == {"roles": ["superuser"]}
    for t in ("owned", "keyed", "by-elastic"):
        es.delete(f"/_transform/{t}")


def test_datafeeds_show_who_they_run_as(es):
    owner = _owner(es)
    job = {"analysis_config": {"bucket_span": "15m", "detectors": [{"function": "count"}]},
           "data_description": {"time_field": "@timestamp"}}
    for name in ("owned-job", "keyed-job"):
        es.put(f"/_ml/anomaly_detectors/{name}", job)
    status, created = owner.put("/_ml/datafeeds/owned-feed", {"job_id": "owned-job", "indices": ["logs-*"]})[:2]
    assert status == 200 and created["authorization"] == {"roles": ["owner_role"]}
    es.post("/_ml/anomaly_detectors/owned-job/_open")
    assert es.post("/_ml/datafeeds/owned-feed/_start")[1]["started"] is True  # started by elastic
    assert es.get("/_ml/datafeeds/owned-feed")[1]["datafeeds"][0]["authorization"] == {"roles": ["owner_role"]}
    key = es.post("/_security/api_key", {"name": "feed-key"})[1]
    es.with_api_key(key["encoded"]).put("/_ml/datafeeds/keyed-feed", {"job_id": "keyed-job", "indices": ["logs-*"]})
    feeds = {d["datafeed_id"]: d for d in es.get("/_ml/datafeeds")[1]["datafeeds"]}
    assert feeds["keyed-feed"]["authorization"] == {"api_key": {"id": key["id"], "name": "feed-key"}}
    es.post("/_ml/anomaly_detectors/owned-job/_close")
    for feed, name in (("owned-feed", "owned-job"), ("keyed-feed", "keyed-job")):
        es.delete(f"/_ml/datafeeds/{feed}")
        es.delete(f"/_ml/anomaly_detectors/{name}")


# ------------------------------------------------------------------------------------------ ML

def test_ml_job_and_datafeed_rules(es):
    job = {"analysis_config": {"bucket_span": "15m", "detectors": [{"function": "count"}]},
           "data_description": {"time_field": "@timestamp"}}
    assert es.put("/_ml/anomaly_detectors/job1", job)[1]["job_id"] == "job1"
    assert es.put("/_ml/datafeeds/df1", {"job_id": "job1", "indices": ["logs-*"]})[0] == 200
    status, body, _ = es.post("/_ml/datafeeds/df1/_start")
    assert status == 409 and error(body)[1] == "cannot start datafeed [df1] because job [job1] is closed"
    assert es.post("/_ml/anomaly_detectors/job1/_open")[1]["opened"] is True
    assert es.post("/_ml/datafeeds/df1/_start")[1]["started"] is True
    status, body, _ = es.post("/_ml/datafeeds/df1/_start")
    assert status == 409 and error(body)[1] == "cannot start datafeed [df1] because it has already been started"
    assert es.post("/_ml/anomaly_detectors/job1/_close")[1] == {"closed": True}
    assert es.get("/_ml/datafeeds/df1/_stats")[1]["datafeeds"][0]["state"] == "stopped"  # closing stopped it
    es.post("/_ml/anomaly_detectors/job1/_open")
    assert es.get("/_ml/anomaly_detectors/job1/_stats")[1]["jobs"][0]["state"] == "opened"
    assert es.get("/_ml/datafeeds/_stats")[1]["datafeeds"][0]["state"] == "stopped"  # opening does not restart it
    status, body, _ = es.delete("/_ml/anomaly_detectors/job1")
    assert status == 409 and "datafeed [df1] refers to it" in error(body)[1]
    status, body, _ = es.get("/_ml/anomaly_detectors/nope")
    assert status == 404 and error(body)[1] == "No known job with id 'nope'"


# ----------------------------------------------------------------------------------------- CCR

def test_follower_state_transitions(node, es):
    _, ctx = node
    from esremote.lab.rest.api.ccr import new_follower, DEFAULT_PARAMETERS
    from esremote.lab.rest.api.documents import create_index
    with ctx.store.transaction() as st:
        create_index(ctx, st, "follower-a", follower=True)
        st["ccr"]["followers"]["follower-a"] = new_follower("my_remote", "leader-a", dict(DEFAULT_PARAMETERS), "elastic")
    info = es.get("/follower-a/_ccr/info")[1]["follower_indices"][0]
    assert info["status"] == "active" and info["parameters"]["max_read_request_operation_count"] == 5120
    assert es.post("/follower-a/_ccr/pause_follow")[1] == {"acknowledged": True}
    info = es.get("/follower-a/_ccr/info")[1]["follower_indices"][0]
    assert info["status"] == "paused" and "parameters" not in info
    status, body, _ = es.post("/follower-a/_ccr/pause_follow")
    assert status == 400 and error(body) == ("illegal_argument_exception", "no shard follow tasks for [follower-a]")
    status, body, _ = es.post("/follower-a/_ccr/unfollow")
    assert error(body)[1] == ("cannot convert the follower index [follower-a] to a non-follower, because it has not "
                              "been closed")
    assert es.post("/follower-a/_ccr/resume_follow", {})[1] == {"acknowledged": True}
    es.put("/plain-idx")
    status, body, _ = es.post("/plain-idx/_ccr/pause_follow")
    assert status == 400 and error(body)[1] == "index [plain-idx] is not a follower index"
    stats = es.get("/_ccr/stats")[1]
    assert [i["index"] for i in stats["follow_stats"]["indices"]] == ["follower-a"]
    status, body, _ = es.put("/follower-a/_doc/1", {"x": 1})
    assert status == 403


def test_task_api_shapes_follow_es_facts(node, es):
    """es-facts §5 and §3: the keys of transform, ML job/datafeed and CCR stats/info bodies, and a
    cross-cluster key's create answer with an expiration."""
    _, ctx = node
    from esremote.lab.rest.api.ccr import new_follower, DEFAULT_PARAMETERS
    from esremote.lab.rest.api.documents import create_index
    with ctx.store.transaction() as st:
        create_index(ctx, st, "shape-follower", follower=True)
        st["ccr"]["followers"]["shape-follower"] = new_follower("my_remote", "shape-leader", dict(DEFAULT_PARAMETERS),
                                                                "elastic")
    info = es.get("/shape-follower/_ccr/info")[1]
    assert list(info) == ["follower_indices"]
    assert list(info["follower_indices"][0]) == ["follower_index", "remote_cluster", "leader_index", "status",
                                                 "parameters"]
    stats = es.get("/_ccr/stats")[1]
    assert list(stats["auto_follow_stats"]) == ["number_of_failed_follow_indices",
                                                "number_of_failed_remote_cluster_state_requests",
                                                "number_of_successful_follow_indices", "recent_auto_follow_errors",
                                                "auto_followed_clusters"]
    entry = next(i for i in stats["follow_stats"]["indices"] if i["index"] == "shape-follower")
    assert {"index", "total_global_checkpoint_lag", "shards"} <= set(entry)
    assert {"remote_cluster", "leader_index", "follower_index", "shard_id", "read_exceptions"} <= set(entry["shards"][0])
    es.post("/shape-follower/_ccr/pause_follow")

    es.put("/shape-src/_doc/1", {"u": "a"})
    es.put("/_transform/shape", {"source": {"index": ["shape-src"]}, "dest": {"index": "shape-dest"},
                                 "pivot": {"group_by": {"u": {"terms": {"field": "u"}}},
                                           "aggregations": {"n": {"value_count": {"field": "u"}}}},
                                 "sync": {"time": {"field": "u"}}})  # continuous: stays started
    stopped = es.get("/_transform/shape/_stats")[1]
    assert list(stopped) == ["count", "transforms"] and stopped["count"] == 1
    assert list(stopped["transforms"][0]) == ["id", "state", "stats", "checkpointing", "health"]
    es.post("/_transform/shape/_start")
    started = es.get("/_transform/shape/_stats")[1]["transforms"][0]
    assert started["state"] in ("started", "indexing") and started["node"]["name"] == "node-0"
    assert started["health"] == {"status": "green"}
    es.post("/_transform/shape/_stop?force=true")
    es.delete("/_transform/shape")

    job = {"analysis_config": {"bucket_span": "15m", "detectors": [{"function": "count"}]},
           "data_description": {"time_field": "@timestamp"}}
    es.put("/_ml/anomaly_detectors/shape-job", job)
    es.put("/_ml/datafeeds/shape-feed", {"job_id": "shape-job", "indices": ["shape-src"]})
    closed = es.get("/_ml/anomaly_detectors/shape-job/_stats")[1]
    assert list(closed) == ["count", "jobs"] and closed["jobs"][0]["state"] == "closed"
    assert {"job_id", "state", "assignment_explanation"} <= set(closed["jobs"][0]) and "node" not in closed["jobs"][0]
    assert es.post("/_ml/anomaly_detectors/shape-job/_open")[1] == {"opened": True, "node": started["node"]["id"]}
    opened = es.get("/_ml/anomaly_detectors/shape-job/_stats")[1]["jobs"][0]
    assert {"job_id", "state", "node", "assignment_explanation", "open_time"} <= set(opened)
    assert es.post("/_ml/datafeeds/shape-feed/_start")[1] == {"started": True, "node": started["node"]["id"]}
    feeds = es.get("/_ml/datafeeds/shape-feed/_stats")[1]
    assert list(feeds) == ["count", "datafeeds"]
    assert list(feeds["datafeeds"][0])[:2] == ["datafeed_id", "state"] and feeds["datafeeds"][0]["state"] == "started"
    assert es.post("/_ml/datafeeds/shape-feed/_stop")[1] == {"stopped": True}
    assert es.post("/_ml/anomaly_detectors/shape-job/_close")[1] == {"closed": True}
    es.delete("/_ml/datafeeds/shape-feed")
    es.delete("/_ml/anomaly_detectors/shape-job")

    key = es.post("/_security/cross_cluster/api_key",
                  {"name": "shape", "access": {"search": [{"names": ["a"]}]}, "expiration": "1d"})[1]
    assert list(key) == ["id", "name", "expiration", "api_key", "encoded"]
    assert 86_000_000 < key["expiration"] - int(time.time() * 1000) <= 86_400_000


def test_auto_follow_patterns(es):
    status, body, _ = es.post("/_ccr/auto_follow/nope/pause")
    assert status == 404 and error(body) == ("resource_not_found_exception", "auto-follow pattern [nope] is missing")
    es.put("/_cluster/settings", {"persistent": {"cluster.remote.af.mode": "proxy",
                                                 "cluster.remote.af.proxy_address": "127.0.9.9:9443"}})
    pattern = {"remote_cluster": "af", "leader_index_patterns": ["logs-*"],
               "follow_index_pattern": "{{leader_index}}-copy"}
    assert es.put("/_ccr/auto_follow/p1", pattern)[1] == {"acknowledged": True}
    assert es.post("/_ccr/auto_follow/p1/pause")[1] == {"acknowledged": True}
    assert es.post("/_ccr/auto_follow/p1/pause")[1] == {"acknowledged": True}  # idempotent
    got = es.get("/_ccr/auto_follow/p1")[1]
    assert got == {"patterns": [{"name": "p1", "pattern": {
        "active": False, "remote_cluster": "af", "leader_index_patterns": ["logs-*"],
        "leader_index_exclusion_patterns": [], "follow_index_pattern": "{{leader_index}}-copy"}}]}
    assert es.post("/_ccr/auto_follow/p1/resume")[1] == {"acknowledged": True}
    assert es.delete("/_ccr/auto_follow/p1")[1] == {"acknowledged": True}
    es.put("/_cluster/settings", {"persistent": {"cluster.remote.af.*": None}})


# ------------------------------------------------------------------------- version-specific

def test_resolve_cluster_local_entry(es):
    es.put("/resolve-me")
    body = es.get("/_resolve/cluster/resolve-*")[1]
    assert body["(local)"]["connected"] is True and body["(local)"]["matching_indices"] is True
    assert body["(local)"]["version"]["number"] == "8.15.0"
    assert es.get("/_resolve/cluster/nothing-here")[1]["(local)"]["error"] == "no such index [nothing-here]"


def test_resolve_cluster_arrived_in_8_13(tmp_path):
    home = build_home(tmp_path, ip="127.0.201.2", cluster="old", version="8.12.2")
    with running_node(home):
        status, body, _ = Client(home).get("/_resolve/cluster/x")
    assert status == 400 and body["error"] == "no handler found for uri [/_resolve/cluster/x] and method [GET]"


def test_a_9x_node_accepts_9_and_8_and_refuses_7(tmp_path):
    home = build_home(tmp_path, ip="127.0.201.3", cluster="nine", version="9.1.0")
    with running_node(home):
        es = Client(home)
        assert es.get("/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=9"})[0] == 200
        status, body, _ = es.get("/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=7"})
    assert status == 400
    assert body["error"]["caused_by"]["reason"].startswith("Accept version must be either version 9 or 8, but found 7.")


def test_health_follows_the_live_nodes(tmp_path):
    """Shard copies sit on the expected nodes (initial_master_nodes): a stopped node leaves its
    replicas unassigned (yellow) and a primary without replica unavailable (red)."""
    import zlib
    from esremote.lab.node.process import Node
    masters = {"cluster.initial_master_nodes": ["node-0", "node-1"]}
    homes = [build_home(tmp_path, name=f"node-{i}", cluster="pair", ip=f"127.0.201.{10 + i}", yml=masters)
             for i in range(2)]
    on_node_1 = next(f"solo-{i}" for i in range(100) if zlib.crc32(f"solo-{i}".encode()) % 2 == 1)
    with running_node(homes[0]):
        second = Node(homes[1].path)
        second.start()
        es = Client(homes[0])
        es.put("/replicated", {"settings": {"number_of_replicas": 1}})
        es.put(f"/{on_node_1}", {"settings": {"number_of_replicas": 0}})
        body = es.get("/_cluster/health")[1]
        assert (body["status"], body["number_of_nodes"], body["unassigned_shards"]) == ("green", 2, 0)
        nodes = es.get("/_nodes/settings")[1]["nodes"].values()
        assert sorted(n["settings"]["node"]["name"] for n in nodes) == ["node-0", "node-1"]
        second.stop()
        body = es.get("/_cluster/health")[1]
        assert (body["status"], body["number_of_nodes"]) == ("red", 1)
        assert es.get("/_cluster/health/replicated")[1]["status"] == "yellow"


def test_a_stopped_node_cuts_kept_alive_connections(tmp_path):
    import http.client
    import ssl
    home = build_home(tmp_path, ip="127.0.201.20", cluster="cut")
    context = ssl.create_default_context(cafile=str(home.http_ca))
    with running_node(home):
        connection = http.client.HTTPSConnection(home.ip, 9200, context=context, timeout=5)
        connection.request("GET", "/_security/_authenticate", headers={"Authorization": Client(home).auth})
        assert connection.getresponse().read()
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/", headers={"Authorization": Client(home).auth})
        connection.getresponse().read()


def test_cross_cluster_search_and_count_go_through_the_link(tmp_path):
    """Certificate model, sniff mode: `alias:index` searches and counts reach the remote cluster."""
    leader = build_home(tmp_path / "leader", cluster="leader", ip="127.0.201.30")
    local = build_home(tmp_path / "local", cluster="local", ip="127.0.201.31")
    with running_node(leader), running_node(local):
        remote_es, es = Client(leader), Client(local)
        for i in range(3):
            remote_es.put(f"/shared-logs/_doc/{i}", {"n": i})
        es.put("/local-logs/_doc/1", {"n": 10})
        assert es.put("/_cluster/settings", {"persistent": {
            "cluster.remote.rem.seeds": ["127.0.201.30:9300"]}})[0] == 200
        deadline = time.monotonic() + 20
        while not es.get("/_remote/info")[1].get("rem", {}).get("connected"):
            assert time.monotonic() < deadline, "alias [rem] not connected within 20 s"
            time.sleep(0.1)
        body = es.post("/rem:shared-logs,local-logs/_search", {"sort": [{"n": "desc"}]})[1]
        assert [h["_index"] for h in body["hits"]["hits"]] == ["local-logs", "rem:shared-logs", "rem:shared-logs",
                                                               "rem:shared-logs"]
        assert body["_clusters"]["total"] == 2 and body["_clusters"]["successful"] == 2
        assert es.get("/rem:shared-logs/_count")[1]["count"] == 3
        status, body, _ = es.post("/nope:shared-logs/_search", {})
        assert status == 404 and body["error"]["type"] == "no_such_remote_cluster_exception"


def test_a_follower_takes_its_leaders_shards_and_replicas_unless_the_request_sets_them():
    from esremote.lab.rest.api.ccr import follower_settings
    leader = {"index.number_of_shards": "1", "index.number_of_replicas": "0"}
    assert follower_settings(leader, None) == leader
    mine = follower_settings(leader, {"index": {"number_of_replicas": 2}})
    assert str(mine["index.number_of_replicas"]) == "2" and mine["index.number_of_shards"] == "1"
