"""Cross-cluster search and `_resolve/cluster` through live links, authorized on the remote the way
each model authorizes (certificate model: the remote's roles of the same names; API-key model:
key access ∩ the user's remote_indices)."""

from __future__ import annotations

import pytest

from esremote.lab.errors import ESError, NoSuchRemoteCluster
from tests.test_lab_link_harness import (  # noqa: F401  (lab is a fixture)
    connect_proxy, connect_sniff, free_ip, lab, remote_info, wait_for)


def _remote_with_data(lab, **node):
    remote = lab.cluster("remote", version="8.15.1")
    remote.add_node(remote_cluster_server=True, **node).start(remote=False)
    remote.create_index("logs-1", [{"msg": "a", "n": 1}, {"msg": "b", "n": 2}])
    remote.create_index("logs-2", [{"msg": "c", "n": 3}])
    remote.create_index("secret", [{"msg": "s"}])
    return remote


def _hits(answer):
    return sorted((h["_index"], h["_source"]["msg"]) for h in answer["hits"]["hits"])


def test_certificate_model_search_uses_the_remotes_roles(lab):
    remote = _remote_with_data(lab)
    remote.put_role("reader", {"indices": [{"names": ["logs-*"], "privileges": ["read", "read_cross_cluster"]}]})
    local = lab.cluster("local")
    local.add_node().start()
    local.put_role("reader", {"indices": []})  # the local role of the same name grants nothing remote
    local.put_user("alice", ["reader"])
    local.put_user("ghost", ["nobody"])
    connect_sniff(local, "my_remote", [f"{remote.node.config.ip}:9300"], node_connections=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")

    answer = local.node.remote.search("my_remote", "logs-*,secret*", {"query": {"match_all": {}}},
                                      local.user("alice"))
    assert _hits(answer) == [("my_remote:logs-1", "a"), ("my_remote:logs-1", "b"), ("my_remote:logs-2", "c")]
    assert answer["hits"]["total"] == {"value": 3, "relation": "eq"}

    with pytest.raises(ESError) as named:
        local.node.remote.search("my_remote", "secret", {}, local.user("alice"))
    assert (named.value.status, named.value.reason) == (403, (
        "action [indices:data/read/search] is unauthorized for user [alice] with effective roles [reader] on "
        "indices [secret], this action is granted by the index privileges [read,all]"))
    with pytest.raises(ESError) as missing:
        local.node.remote.search("my_remote", "logs-1", {}, local.user("ghost"))
    assert "with effective roles [] (assigned roles [nobody] were not found) on indices [logs-1]" in missing.value.reason


def test_api_key_model_search_is_key_access_intersected_with_remote_indices(lab):
    remote = _remote_with_data(lab)
    local = lab.cluster("local")
    local.add_node(secure={"cluster.remote.my_remote.credentials": remote.api_key("ccs", search=["logs-*"])}).start()
    local.put_role("remote-search", {"remote_indices": [{"clusters": ["my_*"], "names": ["*-1", "secret"],
                                                         "privileges": ["read", "read_cross_cluster"]}]})
    local.put_user("bob", ["remote-search"])
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")

    # the key allows logs-*, the user *-1 and secret: only logs-1 is both
    assert _hits(local.node.remote.search("my_remote", "*", {}, local.user("bob"))) == [
        ("my_remote:logs-1", "a"), ("my_remote:logs-1", "b")]
    # a superuser is still bound by the key
    assert {h[0] for h in _hits(local.node.remote.search("my_remote", "*", {}, local.user("elastic")))} == {
        "my_remote:logs-1", "my_remote:logs-2"}
    query = {"query": {"range": {"n": {"gte": 2}}}, "size": 1, "sort": [{"n": "desc"}]}
    answer = local.node.remote.search("my_remote", "logs-*", query, local.user("elastic"))
    assert [h["_source"]["n"] for h in answer["hits"]["hits"]] == [3]


def test_unknown_alias_is_no_such_remote_cluster(lab):
    local = lab.cluster("local")
    local.add_node().start()
    with pytest.raises(NoSuchRemoteCluster) as caught:
        local.node.remote.search("nope", "*", {}, local.user("elastic"))
    assert caught.value.body()["error"]["reason"] == "no such remote cluster: [nope]"


def test_resolve_cluster_entries(lab):
    remote = _remote_with_data(lab)
    local = lab.cluster("local")
    local.add_node(secure={"cluster.remote.my_remote.credentials": remote.api_key("ccs", search=["logs-*"])}).start()
    local.put_role("no-remote", {"indices": [{"names": ["x"], "privileges": ["read"]}]})
    local.put_user("carol", ["no-remote"])
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1, skip_unavailable="false")
    connect_proxy(local, "down", f"{free_ip()}:9443", sockets=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")
    admin = local.user("elastic")

    answer = local.node.remote.resolve_cluster("my_remote:logs-*,my_remote:nothing*,local-index", admin)
    assert answer == {"my_remote": {"connected": True, "skip_unavailable": False, "matching_indices": True,
                                    "version": {"number": "8.15.1", "build_flavor": "default",
                                                "minimum_wire_compatibility_version": "7.17.0",
                                                "minimum_index_compatibility_version": "7.0.0"}}}
    assert local.node.remote.resolve_cluster("my_remote:nothing*", admin)["my_remote"]["matching_indices"] is False

    down = local.node.remote.resolve_cluster("down:logs", admin)["down"]
    assert down["connected"] is False and down["skip_unavailable"] is True
    assert down["error"].endswith("connect_exception")

    denied = local.node.remote.resolve_cluster("my_remote:logs-*", local.user("carol"))["my_remote"]
    assert denied["connected"] is False
    assert "no remote indices privileges apply for the target cluster" in denied["error"]
    assert set(local.node.remote.resolve_cluster("*:logs-*", admin)) == {"my_remote", "down"}
