"""`esremote lab up|status|down|fault` end to end: real node processes, real SSH endpoints."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from esremote.inventory import load_inventory
from esremote.lab.ops import control
from tests.fixtures.lab import Lab, free_net

pytestmark = pytest.mark.lab
ESREMOTE = [sys.executable, "-m", "esremote"]


def esremote(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([*ESREMOTE, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"esremote {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result


def pids_alive(pids) -> list[int]:
    return [pid for pid in pids if control.pid_alive(pid)]


def lab_pids(lab: Lab) -> list[int]:
    """Every pid the lab says it runs: nodes' pid files and the tracked processes."""
    pids = []
    for node in lab.nodes():
        pid_file = Path(node["home"]) / "run" / "elasticsearch.pid"
        if pid_file.exists():
            pids.append(int(pid_file.read_text()))
    tracked = json.loads((lab.dir / "run" / "processes.json").read_text())
    return pids + list(tracked.values())


def check_openssh_client(lab: Lab) -> None:
    for node in lab.nodes():
        result = subprocess.run(lab.ssh_command(node["name"], "true"), capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, f"{node['name']}: {result.stderr}"


def check_es_client(lab: Lab) -> None:
    for name in lab.data["clusters"]:
        es = lab.es(name)
        assert es.info()["cluster_name"] == name
        health = es.cluster.health()
        assert health["status"] == "green"
        assert health["number_of_nodes"] == len(lab.nodes(name))


def test_three_plus_three_up_and_down_leaves_nothing(tmp_path):
    # How fast it comes up is a goal measured in benchmarks/lab_start.py, not asserted here.
    lab_dir = tmp_path / "lab"
    result = esremote("lab", "up", "--dir", lab_dir, "--local-nodes", 3, "--remote-nodes", 3,
                      "--start-delay", 0, "--net", free_net(), "--no-seed")
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(lab_dir / "inventory.yml")
        lab = Lab.read(lab_dir)
        assert [n["name"] for n in lab.nodes()] == [f"local-{i}" for i in range(3)] + \
            [f"remote-{i}" for i in range(3)]
        check_es_client(lab)
        check_openssh_client(lab)
        pids = lab_pids(lab)
        assert len(pids) == 7 and len(pids_alive(pids)) == 7  # 6 nodes + the embedded SSH server
    finally:
        down = esremote("lab", "down", "--dir", lab_dir)
    assert down.returncode == 0, down.stderr
    assert "local-0" in down.stdout and "sshserver" in down.stdout
    assert pids_alive(pids) == []
    assert control.leftovers(control.labfiles.load_layout(lab_dir)) == []


@pytest.mark.openssh
def test_openssh_endpoints_take_the_lab_key(lab_factory):
    if os.geteuid() != 0 and os.environ.get("ESREMOTE_REQUIRE_OPENSSH") != "1":
        pytest.skip("the OpenSSH lab creates its login user: run as root")
    lab = lab_factory("lab-openssh", local_nodes=1, remote_nodes=1, ssh="openssh", seed=False)
    assert lab.data["ssh"]["user"] == "esremote" and lab.data["ssh"]["sudo"] is True
    check_openssh_client(lab)
    check_es_client(lab)
    # The login user is not root, and its sudo needs no password: what an operator's account looks like.
    out = subprocess.run(lab.ssh_command("remote-0", "id -un; sudo -n id -u"), capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.split() == ["esremote", "0"], out.stderr
    assert sorted(k for k in json.loads((lab.dir / "run" / "processes.json").read_text())) == \
        ["sshd-local-0", "sshd-remote-0"]
    # sshd reads no fault file: ssh-drop stops the node's sshd, --off starts it again.
    assert esremote("lab", "fault", lab.dir, "ssh-drop", "--node", "local-0").returncode == 0
    dropped = subprocess.run(lab.ssh_command("local-0", "true"), capture_output=True, text=True, timeout=30)
    assert dropped.returncode == 255 and "refused" in dropped.stderr
    assert subprocess.run(lab.ssh_command("remote-0", "true"), capture_output=True, timeout=30).returncode == 0
    assert esremote("lab", "fault", lab.dir, "ssh-drop", "--off").returncode == 0
    check_openssh_client(lab)
    stopped = lab.down()
    assert any(s.startswith("sshd-local-0") for s in stopped)
    assert control.leftovers(control.labfiles.load_layout(lab.dir)) == []


def test_lab_json_and_inventory_describe_the_lab(lab):
    data = lab.data
    assert data["alias"] == "my_remote" and data["aliases"] == {"my_remote": "remote"}
    local = lab.cluster("local")
    assert local["url"] == f"https://{local['nodes'][0]['ip']}:9200"
    assert local["nodes"][0]["ip"].endswith(".1.1") and lab.cluster("remote")["nodes"][1]["ip"].endswith(".2.2")
    assert {n["ssh_port"] for n in lab.nodes()} == {2222}
    assert stat.S_IMODE(os.stat(lab.dir / "lab.json").st_mode) == 0o600
    inventory = load_inventory(lab.inventory)
    assert set(inventory.clusters) == {"local", "remote"}
    assert inventory.aliases["my_remote"].remote == "remote"
    node = inventory.nodes("local")[0]
    assert str(node.es_home) == local["nodes"][0]["home"]
    assert node.restart_command.endswith("bin/elasticsearch-service restart")
    secret = inventory.clusters["local"].auth.password
    assert secret.file is not None and stat.S_IMODE(os.stat(secret.file).st_mode) == 0o600
    assert secret.file.read_text().strip() == local["password"]
    check_es_client(lab)


def test_seeded_lab_runs_cross_cluster_work_in_the_certificate_model(lab):
    local = lab.es("local")
    info = local.cluster.remote_info()["my_remote"]
    assert info["connected"] is True and info["mode"] == "proxy"
    assert info["proxy_address"].endswith(":9300") and "cluster_credentials" not in info
    settings = local.cluster.get_settings(flat_settings=True)["persistent"]
    assert settings["cluster.remote.my_remote.mode"] == "proxy"
    # Cross-cluster search as the cross-cluster user, authorized by the remote's role of the same name.
    hits = lab.es("local", user="ccs_user").search(index="my_remote:leader-logs", size=0)
    assert hits["hits"]["total"]["value"] >= 60
    assert local.transform.get_transform_stats(transform_id="ccs-hosts")["transforms"][0]["state"] in \
        ("started", "indexing")
    assert local.ml.get_datafeed_stats(datafeed_id="datafeed-ccs-job")["datafeeds"][0]["state"] == "started"
    assert local.ccr.follow_info(index="follower-logs")["follower_indices"][0]["status"] == "active"
    patterns = local.ccr.get_auto_follow_pattern(name="auto-logs")["patterns"]
    assert patterns[0]["pattern"]["remote_cluster"] == "my_remote"
    # The writer keeps feeding the leader index.
    remote = lab.es("remote")
    first = remote.count(index="leader-logs")["count"]
    deadline = time.monotonic() + 10
    while remote.count(index="leader-logs")["count"] <= first:
        assert time.monotonic() < deadline, "the writer added nothing to leader-logs in 10 s"
        time.sleep(0.2)


def test_static_sniff_aliases_to_two_remotes_connect(lab_factory):
    """`--mode sniff --alias-in-yml --remotes 2`: both aliases come from the local yml (nothing in
    the cluster settings), sniff the remotes' transport ports and connect (es-facts §2 fields)."""
    lab = lab_factory("lab-variants", local_nodes=1, remote_nodes=1, remotes=2, mode="sniff", alias_in_yml=True,
                      seed=False)
    local = lab.es("local")
    assert local.cluster.get_settings()["persistent"] == {}
    deadline = time.monotonic() + 30
    info = dict(local.cluster.remote_info())
    while len(info) < 2 or not all(entry["connected"] for entry in info.values()):
        assert time.monotonic() < deadline, f"aliases not connected within 30 s: {info}"
        time.sleep(0.2)
        info = dict(local.cluster.remote_info())
    assert sorted(info) == ["my_remote", "my_remote2"] == sorted(lab.data["aliases"])
    for alias, cluster in lab.data["aliases"].items():
        node = lab.cluster(cluster)["nodes"][0]
        assert list(info[alias].items()) == [
            ("connected", True), ("mode", "sniff"), ("seeds", [f"{node['ip']}:9300"]), ("num_nodes_connected", 1),
            ("max_connections_per_cluster", 3), ("initial_connect_timeout", "30s"), ("skip_unavailable", True)]
