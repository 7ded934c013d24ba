"""Preflight findings that a lab cannot show (its clusters always run with security on), from a
scripted HTTP server (`ScriptedES`: real elasticsearch-py over real HTTP) answering as a real
cluster does: security disabled, and a cluster that does not answer at all."""

from __future__ import annotations

import socket

import pytest

from esremote.cluster.usage import UsageReport
from esremote.inventory import Inventory
from esremote.preflight import preflight
from esremote.ssh import SSHPool
from tests.fixtures.scripted_es import ScriptedES

ALIAS = "my_remote"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def inventory(tmp_path) -> Inventory:
    secret = tmp_path / "password.secret"
    secret.write_text("x\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    ssh_port = free_port()  # nothing listens: every node check is a quick "cannot connect"

    def cluster(role: str) -> dict:
        return {"role": role, "urls": ["https://127.0.0.1:9200"],
                "auth": {"username": "elastic", "password": {"file": str(secret)}},
                "nodes": [{"name": f"{role}-0", "address": "127.0.0.1"}]}
    return Inventory.model_validate({
        "ssh": {"port": ssh_port, "known_hosts": str(known_hosts), "connect_timeout": 2},
        "clusters": {"local": cluster("local"), "remote": cluster("remote")},
        "aliases": {ALIAS: {"local": "local", "remote": "remote"}}})


def scripted_cluster(security: bool) -> ScriptedES:
    server = ScriptedES()
    server.on("GET", "/_nodes", {"cluster_name": "c", "nodes": {"n1": {"name": "x-0", "version": "8.17.0",
                                                                        "ip": "127.0.0.1", "roles": ["master"]}}})
    server.on("GET", "/_license", {"license": {"status": "active", "type": "trial"}})
    server.on("GET", "/_cluster/health", {"cluster_name": "c", "status": "green", "number_of_nodes": 1})
    server.on("GET", "/_xpack", {"features": {"security": {"available": True, "enabled": security}}})
    server.on("GET", "/_cluster/settings", {"persistent": {
        f"cluster.remote.{ALIAS}.mode": "proxy", f"cluster.remote.{ALIAS}.proxy_address": "10.0.0.1:9300"},
        "transient": {}})
    server.on("GET", "/_remote/info", {})
    return server


def test_security_off_blocks_with_what_to_do(inventory):
    local, remote = scripted_cluster(security=False), scripted_cluster(security=True)
    try:
        with SSHPool() as pool:
            report = preflight(inventory, ALIAS, pool=pool, usage_finder=lambda *_: UsageReport(ALIAS),
                               clients={"local": local.client(), "remote": remote.client()})
    finally:
        local.close()
        remote.close()
    security = {f.where: f for f in report.find("security")}
    assert security["local"].status == "block" and security["remote"].status == "ok"
    assert "security is disabled" in security["local"].detail
    assert "xpack.security.enabled: true" in security["local"].fix


def test_a_cluster_that_does_not_answer_blocks_and_the_rest_still_runs(inventory):
    remote = scripted_cluster(security=True)
    dead = ScriptedES()
    url = dead.url
    dead.close()  # nothing listens there any more
    from elasticsearch import Elasticsearch
    try:
        with SSHPool() as pool:
            report = preflight(inventory, ALIAS, pool=pool, usage_finder=lambda *_: UsageReport(ALIAS),
                               clients={"local": Elasticsearch(url, request_timeout=5, max_retries=0),
                                        "remote": remote.client()})
    finally:
        remote.close()
    (reachable,) = report.find("reachable")
    assert reachable.where == "local" and reachable.status == "block"
    assert "cannot reach the cluster" in reachable.detail and "urls" in reachable.fix
    assert {f.where for f in report.find("ssh")} == {"local/local-0", "remote/remote-0"}  # node checks ran
    assert [f.where for f in report.find("licence")] == ["remote"]
