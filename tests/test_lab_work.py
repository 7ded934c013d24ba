"""Background work through a real link: CCR followers and auto-follow, transforms and datafeeds,
run by the elected node, failing the way Elasticsearch reports it when the link breaks and
recovering when it comes back."""

from __future__ import annotations

from esremote.lab.rest.api.cluster import shard_table
from tests.test_lab_link_harness import connect_proxy, lab, remote_info, wait_for  # noqa: F401

ALIAS = "my_remote"


def _link(lab, *, local_nodes=1, replication=("*",)):
    """An API-key link (so `remote-port-blocked` and key invalidation can break it)."""
    remote = lab.cluster("remote")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    remote.create_index("logs-1", [{"host": "a", "n": 1}, {"host": "b", "n": 2}, {"host": "a", "n": 3}])
    encoded = remote.api_key("ccs", search=["logs-*", "leader*"], replication=list(replication))
    local = lab.cluster("local")
    for _ in range(local_nodes):
        local.add_node(secure={f"cluster.remote.{ALIAS}.credentials": encoded})
    for node in local.nodes:
        node.start(work=True)
    connect_proxy(local, ALIAS, f"{remote.node.config.ip}:9443", sockets=1)
    for node in local.nodes:
        wait_for(lambda node=node: remote_info(node)[ALIAS]["connected"], what="link up")
    return local, remote


def _state(cluster):
    return cluster.store.snapshot()


def _docs(cluster, index):
    return sorted(op["_source"]["n"] for op in cluster.store.current_docs(index).values())


def _two_more_rounds(cluster):
    """Wait until the elected runner has done two whole rounds (to assert that nothing happened)."""
    runner = cluster.nodes[0].work
    target = runner.rounds + 2
    wait_for(lambda: runner.rounds >= target, what="two work rounds")


def _block(lab, remote, on=True):
    lab.fault("remote-port-blocked", nodes=[remote.node.config.name], on=on)


# ------------------------------------------------------------------------------ CCR

def test_follower_catches_up_pauses_and_records_read_exceptions(lab):
    local, remote = _link(lab)
    remote.create_index("leader", [{"n": 1}, {"n": 2}, {"n": 3}])
    with local.store.transaction() as st:
        st["ccr"]["followers"]["follower"] = {"remote_cluster": ALIAS, "leader_index": "leader", "status": "active",
                                              "parameters": {}, "leader_seq": -1, "read_exceptions": [],
                                              "auto_follow_pattern": None, "username": "elastic"}
    wait_for(lambda: _docs(local, "follower") == [1, 2, 3], what="follower caught up")
    remote.index_docs("leader", [{"n": 4}])
    wait_for(lambda: _docs(local, "follower") == [1, 2, 3, 4], what="new leader doc")
    assert _state(local)["indices"]["follower"]["follower"] is True

    with local.store.transaction() as st:
        st["ccr"]["followers"]["follower"]["status"] = "paused"
    remote.index_docs("leader", [{"n": 5}])
    before = _state(local)["ccr"]["followers"]["follower"]["successful_reads"]
    _two_more_rounds(local)  # a paused follower must not read
    assert _docs(local, "follower") == [1, 2, 3, 4]
    assert _state(local)["ccr"]["followers"]["follower"]["successful_reads"] == before

    with local.store.transaction() as st:
        st["ccr"]["followers"]["follower"]["status"] = "active"
    _block(lab, remote)
    exceptions = wait_for(lambda: _state(local)["ccr"]["followers"]["follower"]["read_exceptions"],
                          what="read exception")
    assert exceptions[0]["from_seq_no"] in (4, 5)
    assert exceptions[0]["exception"]["type"] == "connect_transport_exception"
    assert exceptions[0]["exception"]["reason"].endswith("connect_exception")
    wait_for(lambda: _state(local)["ccr"]["followers"]["follower"]["read_exceptions"][0]["retries"] >= 2,
             what="retries counting")

    _block(lab, remote, on=False)
    wait_for(lambda: _docs(local, "follower") == [1, 2, 3, 4, 5], what="recovery", timeout=20)
    wait_for(lambda: _state(local)["ccr"]["followers"]["follower"]["read_exceptions"] == [], what="cleared")


def test_auto_follow_pattern_follows_new_leaders_while_active(lab):
    local, remote = _link(lab)
    with local.store.transaction() as st:
        st["ccr"]["auto_follow"]["leaders"] = {
            "remote_cluster": ALIAS, "leader_index_patterns": ["leader-*"],
            "leader_index_exclusion_patterns": ["leader-skip"], "follow_index_pattern": "{{leader_index}}-copy",
            "active": True, "settings": {}, "followed": [], "errors": [], "username": "elastic"}
    remote.create_index("leader-1", [{"n": 10}],
                        settings={"index.number_of_shards": "1", "index.number_of_replicas": "0"})
    remote.create_index("leader-skip", [{"n": 0}])
    wait_for(lambda: _docs(local, "leader-1-copy") == [10], what="auto-followed leader-1")
    # A follower is made from its leader's metadata: a one-node cluster can hold it (green).
    assert _state(local)["indices"]["leader-1-copy"]["settings"]["index.number_of_replicas"] == "0"
    assert "leader-skip-copy" not in _state(local)["ccr"]["followers"]

    with local.store.transaction() as st:
        st["ccr"]["auto_follow"]["leaders"]["active"] = False
    remote.create_index("leader-2", [{"n": 20}])
    _two_more_rounds(local)  # a paused pattern must ignore the new leader
    assert "leader-2-copy" not in _state(local)["ccr"]["followers"]
    with local.store.transaction() as st:
        st["ccr"]["auto_follow"]["leaders"]["active"] = True
    wait_for(lambda: _docs(local, "leader-2-copy") == [20], what="followed after resume")
    assert _state(local)["ccr"]["auto_follow"]["leaders"]["followed"] == ["leader-1", "leader-2"]

    remote.invalidate_keys()
    errors = wait_for(lambda: _state(local)["ccr"]["auto_follow"]["leaders"]["errors"], what="auto-follow error")
    assert errors[0]["leader_index"] == "leaders"
    assert errors[0]["auto_follow_exception"]["type"] == "security_exception"
    assert errors[0]["auto_follow_exception"]["reason"].startswith("unable to authenticate user [")
    assert _state(local)["ccr"]["auto_follow"]["leaders"]["failed_remote_requests"] >= 1


# ------------------------------------------------------------------------------ transforms

def _put_transform(local, *, retries=1, sync=True):
    config = {"id": "hosts", "source": {"index": [f"{ALIAS}:logs-*"]}, "dest": {"index": "hosts-summary"},
              "frequency": "1s", "settings": {"num_failure_retries": retries},
              "pivot": {"group_by": {"host": {"terms": {"field": "host"}}},
                        "aggregations": {"max_n": {"max": {"field": "n"}}}}}
    if sync:
        config["sync"] = {"time": {"field": "@timestamp", "delay": "1s"}}
    with local.store.transaction() as st:
        st["transforms"]["hosts"] = {"config": config, "state": "started", "reason": None, "node": None,
                                     "checkpoint": 0, "source_seq": {}, "stats": {}, "last_search_time": None,
                                     "username": "elastic"}


def test_transform_reads_the_remote_then_fails_at_once_when_the_key_is_invalidated(lab):
    local, remote = _link(lab)
    _put_transform(local)
    wait_for(lambda: _state(local)["transforms"]["hosts"]["checkpoint"] == 1, what="first checkpoint")
    summary = {d["_source"]["host"]: d["_source"]["max_n"] for d in local.store.current_docs("hosts-summary").values()}
    assert summary == {"a": 3.0, "b": 2.0}
    transform = _state(local)["transforms"]["hosts"]
    assert transform["node"] == "local-0" and transform["stats"]["documents_processed"] == 3
    # a continuous transform makes a checkpoint only when its sources change
    triggers = transform["stats"]["trigger_count"]
    wait_for(lambda: _state(local)["transforms"]["hosts"]["stats"]["trigger_count"] >= triggers + 1,
             what="another trigger")
    assert _state(local)["transforms"]["hosts"]["checkpoint"] == 1
    remote.index_docs("logs-1", [{"host": "b", "n": 7}])
    wait_for(lambda: _state(local)["transforms"]["hosts"]["checkpoint"] == 2, what="second checkpoint")
    assert {d["_source"]["host"]: d["_source"]["max_n"] for d in local.store.current_docs("hosts-summary").values()
            } == {"a": 3.0, "b": 7.0}
    assert _state(local)["transforms"]["hosts"]["stats"]["documents_processed"] == 4

    remote.invalidate_keys()
    failed = wait_for(lambda: (t := _state(local)["transforms"]["hosts"])["state"] == "failed" and t,
                      what="transform failed")
    assert failed["reason"].startswith("task encountered irrecoverable failure: unable to authenticate user [")
    assert failed["reason"].endswith("for action [indices:data/read/search]")
    assert failed["stats"]["search_failures"] == 1


def test_transform_retries_a_broken_link_then_fails(lab):
    local, remote = _link(lab)
    _put_transform(local, retries=1)
    wait_for(lambda: _state(local)["transforms"]["hosts"]["checkpoint"] == 1, what="first checkpoint")
    _block(lab, remote)
    failed = wait_for(lambda: (t := _state(local)["transforms"]["hosts"])["state"] == "failed" and t,
                      what="transform failed")
    assert failed["reason"] == (f"task encountered more than 1 failures; latest failure: "
                                f"[][{remote.node.config.ip}:9443] connect_exception")
    assert failed["stats"]["search_failures"] == 2


def test_batch_transform_stops_after_one_checkpoint(lab):
    local, remote = _link(lab)
    _put_transform(local, sync=False)
    wait_for(lambda: _state(local)["transforms"]["hosts"]["state"] == "stopped", what="batch done")
    assert _state(local)["transforms"]["hosts"]["checkpoint"] == 1


# ------------------------------------------------------------------------------ datafeeds

def _put_datafeed(local):
    with local.store.transaction() as st:
        st["ml"]["jobs"]["hosts-job"] = {"config": {"job_id": "hosts-job"}, "state": "opened", "open_time": None,
                                         "node": "local-0", "assignment_explanation": "",
                                         "processed_record_count": 0}
        st["ml"]["datafeeds"]["datafeed-hosts"] = {
            "config": {"datafeed_id": "datafeed-hosts", "job_id": "hosts-job", "indices": [f"{ALIAS}:logs-*"],
                       "query": {"match_all": {}}, "frequency": "1s"},
            "job_id": "hosts-job", "state": "started", "node": None, "reason": None, "source_seq": {},
            "search_count": 0, "last_search_time": None, "failures": 0, "username": "elastic"}


def _processed(local):
    return _state(local)["ml"]["jobs"]["hosts-job"]["processed_record_count"]


def _messages(local):
    return [op["_source"]["message"] for op in local.store.read_docs(".ml-notifications-000002")]


def test_datafeed_feeds_its_job_and_reports_extraction_errors(lab):
    local, remote = _link(lab)
    _put_datafeed(local)
    wait_for(lambda: _processed(local) == 3, what="3 records")
    remote.index_docs("logs-1", [{"host": "c", "n": 4}])
    wait_for(lambda: _processed(local) == 4, what="new record")

    _block(lab, remote)
    message = wait_for(lambda: [m for m in _messages(local) if "extracting" in m], what="audit message")
    assert message[0].startswith("Datafeed is encountering errors extracting data: [][")
    # the notifications index auto-expands its replicas, as Elasticsearch's template has it: a
    # one-node cluster stays green when the auditor creates it
    health = shard_table(local.node, _state(local), local.store.live_nodes(), [".ml-notifications-000002"])
    assert health["status"] == "green" and health["unassigned_shards"] == 0
    assert message[0].endswith("connect_exception")
    assert _state(local)["ml"]["datafeeds"]["datafeed-hosts"]["state"] == "started"
    remote.index_docs("logs-1", [{"host": "d", "n": 5}])
    wait_for(lambda: _state(local)["ml"]["datafeeds"]["datafeed-hosts"]["failures"] >= 2, what="2 failures")
    assert _processed(local) == 4
    assert len([m for m in _messages(local) if "extracting" in m]) == 1  # audited once per streak

    _block(lab, remote, on=False)
    wait_for(lambda: _processed(local) == 5, what="recovered", timeout=20)
    wait_for(lambda: "Datafeed has recovered data extraction and analysis" in _messages(local), what="recovery audit")


# ------------------------------------------------------------------------------ election

def test_only_the_elected_node_works_and_another_takes_over(lab):
    local, remote = _link(lab, local_nodes=2)
    _put_transform(local, retries=-1)
    wait_for(lambda: _state(local)["transforms"]["hosts"]["node"] == "local-0", what="local-0 runs it")
    local.nodes[0].stop()
    wait_for(lambda: _state(local)["transforms"]["hosts"]["node"] == "local-1", what="local-1 took over")


def test_follower_acts_as_its_creator_with_key_access_and_remote_indices(lab):
    local, remote = _link(lab, replication=["leader*", "private"])
    remote.create_index("leader-a", [{"n": 1}])
    remote.create_index("private", [{"n": 2}])
    local.put_role("ccr-role", {"cluster": ["manage_ccr"], "remote_indices": [
        {"clusters": [ALIAS], "names": ["leader*"], "privileges": ["cross_cluster_replication"]}]})
    local.put_user("ccr-user", ["ccr-role"])
    with local.store.transaction() as st:
        for follower, leader in (("copy-a", "leader-a"), ("copy-private", "private")):
            st["ccr"]["followers"][follower] = {"remote_cluster": ALIAS, "leader_index": leader, "status": "active",
                                                "parameters": {}, "leader_seq": -1, "read_exceptions": [],
                                                "auto_follow_pattern": None, "username": "ccr-user"}
    wait_for(lambda: _docs(local, "copy-a") == [1], what="follower of leader-a")
    exceptions = wait_for(lambda: _state(local)["ccr"]["followers"]["copy-private"]["read_exceptions"],
                          what="refused follower")
    assert exceptions[0]["exception"]["type"] == "security_exception"
    assert exceptions[0]["exception"]["reason"].startswith(
        "action [indices:data/read/xpack/ccr/shard_changes] towards remote cluster is unauthorized for user "
        "[ccr-user] with assigned roles [ccr-role] authenticated by API key id [")
    assert exceptions[0]["exception"]["reason"].endswith(
        "on indices [private], this action is granted by the index privileges [cross_cluster_replication,read,all]")
