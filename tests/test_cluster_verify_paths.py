"""Verification paths that need the cluster's answers held still, served by a scripted HTTP server
(`ScriptedES`, real elasticsearch-py over real HTTP): a follower whose stats say "caught up" but which
reads nothing any more, next to one that reads."""

from __future__ import annotations

import pytest

from esremote.inventory import Inventory
from esremote.verify import verify_api_key_link
from tests.fixtures.scripted_es import ScriptedES

ALIAS = "my_remote"


@pytest.fixture
def scripted():
    server = ScriptedES()
    server.on("GET", "/_remote/info", {ALIAS: {
        "connected": True, "mode": "proxy", "proxy_address": "10.0.0.1:9443", "server_name": "",
        "num_proxy_sockets_connected": 18, "max_proxy_socket_connections": 18, "initial_connect_timeout": "30s",
        "skip_unavailable": True, "cluster_credentials": "::es_redacted::"}})
    server.on("GET", "/_nodes/_none", {"nodes": {"n1": {"name": "local-0", "version": "8.12.2"}}})  # no resolve
    yield server
    server.close()


@pytest.fixture
def inventory(tmp_path) -> Inventory:
    secret = tmp_path / "password.secret"
    secret.write_text("x\n")
    cluster = lambda role: {"role": role, "urls": ["https://127.0.0.1:9200"],
                            "auth": {"username": "elastic", "password": {"file": str(secret)}},
                            "nodes": [{"name": f"{role}-0", "address": "127.0.0.1"}]}
    return Inventory.model_validate({"clusters": {"local": cluster("local"), "remote": cluster("remote")},
                                     "aliases": {ALIAS: {"local": "local", "remote": "remote"}}})


def follow_stats(checkpoint: int, reads: int) -> dict:
    return {"indices": [{"index": "follower-logs", "total_global_checkpoint_lag": 0, "shards": [{
        "remote_cluster": ALIAS, "leader_index": "leader-logs", "follower_index": "follower-logs", "shard_id": 0,
        "leader_global_checkpoint": checkpoint, "follower_global_checkpoint": checkpoint,
        "successful_read_requests": reads, "failed_read_requests": 0, "read_exceptions": []}]}]}


def test_a_caught_up_follower_that_reads_nothing_is_not_progress(scripted, inventory):
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))  # the same answer every time
    report = verify_api_key_link(inventory, ALIAS, es=scripted.client(), followers=["follower-logs"],
                                 follower_timeout=1.5, check=False)
    (failed,) = report.failed
    assert failed.name == "follower follower-logs"
    assert "no progress in 1.5s (shard 0: follower 41 / leader 41)" in failed.detail


def test_a_caught_up_follower_whose_reads_succeed_passes(scripted, inventory):
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 8))  # a long poll came back, empty
    report = verify_api_key_link(inventory, ALIAS, es=scripted.client(), followers=["follower-logs"],
                                 follower_timeout=10)
    assert report.ok and report.checks[-1].detail == "caught up (lag 0)"
    assert [c.name for c in report.checks] == ["remote_info", "follower follower-logs"]  # no _resolve/cluster on 8.12
