"""Preflight on a healthy lab (read-only), and its blocking findings on a lab built to fail them:
basic licence, no alias, keystore password unknown or wrong, port taken, then (after editing node
files over SSH and restarting) an 8.9 node and an alias defined in only one node's elasticsearch.yml."""

from __future__ import annotations

import json
import socket

import pytest
from rich.console import Console

from esremote.cluster.restart import rolling_restart
from esremote.errors import ConfigError, PreconditionError
from esremote.esyml import EsYml
from esremote.inventory import Inventory, load_inventory
from esremote.keystore import Keystore
from esremote.preflight import preflight
from esremote.secrets import SecretRef
from esremote.ssh import SSHPool

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"


def blocking(report, check: str) -> list:
    return [f for f in report.blocking if f.check == check]


def with_cluster(inventory: Inventory, name: str, **changes) -> Inventory:
    cluster = inventory.clusters[name].model_copy(update=changes)
    return inventory.model_copy(update={"clusters": {**inventory.clusters, name: cluster}})


# ------------------------------------------------------------------------------------- healthy lab


@pytest.fixture(scope="module")
def healthy(lab):
    with SSHPool() as pool:
        return lab, preflight(load_inventory(lab.inventory), ALIAS, pool=pool)


def test_a_healthy_lab_passes(healthy):
    lab, report = healthy
    assert report.ok, [str(f) for f in report.blocking]
    report.raise_if_blocked()
    versions = {f.where: f.detail for f in report.find("version")}
    assert set(versions) == {f"{n['name'].rsplit('-', 1)[0]}/{n['name']}" for n in lab.nodes()}
    assert all(status == "ok" for status in (f.status for f in report.find("version")))
    assert {f.where for f in report.find("licence")} == {"local", "remote"}
    for check in report.nodes.values():
        assert check.reachable and check.es_home and check.config and check.keystore
        assert check.yml and check.yml["cluster.name"] == check.node.cluster
    assert all(c.port_free for c in report.nodes.values() if c.node.role == "remote")


def test_the_alias_definition_and_the_work_using_it(healthy):
    lab, report = healthy
    d = report.definition
    remote0 = lab.node("remote-0")
    assert d.sources == ["persistent"] and d.yml_agree and d.mode == "proxy"
    assert d.proxy_address == f"{remote0['ip']}:{remote0['transport_port']}"
    assert d.connected and not d.uses_api_key
    kinds = {(u.kind, u.id) for u in report.usage.items}
    assert {("transform", "ccs-hosts"), ("datafeed", "datafeed-ccs-job"), ("follower", "follower-logs"),
            ("auto_follow_pattern", "auto-logs")} <= kinds
    assert "leader-logs" in report.usage.remote_patterns()
    usage_line = report.find("usage")[0].detail
    assert "transform ccs-hosts (started" in usage_line and "follower follower-logs (active" in usage_line


def test_the_report_prints_as_a_table_and_serialises(healthy):
    _, report = healthy
    console = Console(record=True, width=240)
    console.print(report.table())
    text = console.export_text()
    assert "preflight: alias my_remote" in text and "Elasticsearch 8.17.0" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["definition"]["mode"] == "proxy"


def test_an_alias_missing_from_the_inventory_is_a_config_error(lab):
    with pytest.raises(ConfigError, match=r"alias 'nope' is not in the inventory's `aliases:` \(it has: my_remote\)"):
        preflight(load_inventory(lab.inventory), "nope")


# ------------------------------------------------------------------------------------ failing lab


@pytest.fixture(scope="module")
def bad(lab_factory):
    """Local 8.12 (beta) with two nodes, remote with a basic licence, keystores with passwords, no alias."""
    lab = lab_factory("preflight-bad", local_nodes=2, remote_nodes=1, version="8.12.0", remote_version="8.17.0",
                      remote_license="basic", keystore_password=True, seed=False)
    yield lab, load_inventory(lab.inventory)
    lab.down()


@pytest.fixture
def pool():
    with SSHPool() as pool:
        yield pool


def test_basic_licence_and_missing_alias_block_with_what_to_do(bad, pool):
    _, inventory = bad
    report = preflight(inventory, ALIAS, pool=pool)
    licence = blocking(report, "licence")
    assert [f.where for f in licence] == ["remote"]
    assert "licence is basic" in licence[0].detail
    assert "current license is non-compliant for [advanced-remote-cluster-security]" in licence[0].detail
    assert "enterprise" in licence[0].fix and "start_trial" in licence[0].fix
    alias = blocking(report, "alias")
    assert alias and "not defined" in alias[0].detail and "alias name" in alias[0].fix
    beta = [f for f in report.find("version") if f.status == "warn"]
    assert {f.where for f in beta} == {"local/local-0", "local/local-1"} and "beta" in beta[0].detail
    keystore = {f.where: f for f in report.find("keystore password")}
    assert all(f.status == "ok" and "opens it" in f.detail for f in keystore.values())
    console = Console(record=True, width=400)
    console.print(report.table())
    assert "[advanced-remote-cluster-security]" in console.export_text()  # brackets are text, not markup
    with pytest.raises(PreconditionError) as caught:
        report.raise_if_blocked()
    assert "current license is non-compliant" in str(caught.value) and "not defined" in str(caught.value)


def test_keystore_password_missing_or_wrong_blocks(bad, pool, tmp_path):
    _, inventory = bad
    report = preflight(with_cluster(inventory, "local", keystore_password=None), ALIAS, pool=pool)
    missing = blocking(report, "keystore password")
    assert {f.where for f in missing} == {"local/local-0", "local/local-1"}
    assert "set keystore_password" in missing[0].fix
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("wrong password\n")
    report = preflight(with_cluster(inventory, "remote", keystore_password=SecretRef(file=wrong)), ALIAS, pool=pool)
    problems = blocking(report, "keystore password")
    assert [f.where for f in problems] == ["remote/remote-0"]
    assert "Provided keystore password was incorrect" in problems[0].detail and str(wrong) in problems[0].fix
    assert "wrong password" not in json.dumps(report.to_dict())


def test_a_taken_remote_cluster_port_blocks(bad, pool):
    lab, inventory = bad
    ip = lab.node("remote-0")["ip"]
    with socket.socket() as squatter:
        squatter.bind((ip, 9443))
        squatter.listen()
        report = preflight(inventory, ALIAS, pool=pool)
    port = blocking(report, "port")
    assert [f.where for f in port] == ["remote/remote-0"]
    assert f"{ip}:9443" in port[0].detail and "remote_cluster_port" in port[0].fix
    assert report.nodes["remote/remote-0"].port_free is False


def test_an_old_node_and_an_alias_in_one_nodes_yml_block(bad, pool):
    """Runs last: it edits node files over SSH and restarts those nodes."""
    lab, inventory = bad
    local1 = next(n for n in inventory.nodes("local") if n.name == "local-1")
    conn = pool.get(local1.ssh_target())
    yml = EsYml.parse(conn.read_file(str(local1.yml_path)).decode())
    remote0 = lab.node("remote-0")
    yml.update({f"cluster.remote.{ALIAS}.mode": "proxy",
                f"cluster.remote.{ALIAS}.proxy_address": f"{remote0['ip']}:{remote0['transport_port']}"})
    conn.write_file(str(local1.yml_path), yml.text().encode(), run_id="test-preflight")
    remote_node = inventory.nodes("remote")[0]
    node_json = f"{remote_node.es_home}/lib/lab-node.json"  # what the lab's "binary" says its version is
    remote_conn = pool.get(remote_node.ssh_target())
    data = json.loads(remote_conn.read_file(node_json))
    data["version"] = "8.9.0"
    remote_conn.write_file(node_json, json.dumps(data).encode(), run_id="test-preflight")
    # An 8.9 node reads keystore format 5 at most: the format 6 that 8.17 wrote it refuses as too
    # new (a downgrade), so the keystore goes back to format 5 too.
    keystore_path = str(remote_node.keystore_path)
    password = remote_node.keystore_password.resolve().get_secret_value() if remote_node.keystore_password else ""
    store = Keystore.from_bytes(remote_conn.read_file(keystore_path), password)
    remote_conn.write_file(keystore_path, store.to_bytes(password, version=5), run_id="test-preflight")
    rolling_restart(inventory, "local", pool=pool, nodes=["local-1"])
    rolling_restart(inventory, "remote", pool=pool)

    report = preflight(inventory, ALIAS, pool=pool)
    old = blocking(report, "version")
    assert [f.where for f in old] == ["remote/remote-0"] and "8.9.0" in old[0].detail
    assert "upgrade to 8.10 or later" in old[0].fix
    disagree = blocking(report, "alias yml")
    assert disagree and "defines it on local-1 but not on local-0" in disagree[0].detail
    assert report.definition.sources == ["elasticsearch.yml"] and not report.definition.yml_agree
    assert report.definition.yml["local-1"] == {"mode": "proxy",
                                                "proxy_address": f"{remote0['ip']}:{remote0['transport_port']}"}
