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
from esremote.lab import control
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
        pid_file = Path(node["home"]) / "elasticsearch.pid"
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


def test_three_plus_three_up_fast_and_down_leaves_nothing(tmp_path):
    lab_dir = tmp_path / "lab"
    started = time.monotonic()
    result = esremote("lab", "up", "--dir", lab_dir, "--local-nodes", 3, "--remote-nodes", 3,
                      "--start-delay", 0, "--net", free_net(), "--no-seed")
    elapsed = time.monotonic() - started
    print(f"\n3+3 lab up (build + start + green): {elapsed:.1f} s")
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(lab_dir / "inventory.yml")
        assert elapsed < 30, f"3+3 nodes took {elapsed:.1f} s to come up (budget 30 s)"
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


def test_service_command_status_stop_start(lab):
    node = lab.node("local-1")
    service = [str(Path(node["home"]) / "bin" / "elasticsearch-service")]
    assert subprocess.run([*service, "status"], capture_output=True).returncode == 0
    stop = subprocess.run([*service, "stop"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    try:
        status = subprocess.run([*service, "status"], capture_output=True, text=True)
        assert status.returncode == 3 and "stopped" in status.stdout
        assert subprocess.run([*service, "stop"], capture_output=True).returncode == 0  # idempotent
        assert esremote("lab", "status", lab.dir).returncode == 3
    finally:
        start = subprocess.run([*service, "start"], capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, start.stderr
    assert subprocess.run([*service, "status"], capture_output=True).returncode == 0
    control.wait_health(control.labfiles.load_layout(lab.dir), "local", "green", 30)
    result = esremote("lab", "status", "--dir", lab.dir)
    assert result.returncode == 0 and "cluster local: green" in result.stdout


def test_service_start_failure_shows_the_node_log(lab_factory):
    lab = lab_factory("lab-broken", local_nodes=1, remote_nodes=1, seed=False)
    home = Path(lab.node("local-0")["home"])
    service = str(home / "bin" / "elasticsearch-service")
    subprocess.run([service, "stop"], check=True, capture_output=True)
    yml = home / "config" / "elasticsearch.yml"
    yml.write_text(yml.read_text() + "no.such.setting: true\n")
    result = subprocess.run([service, "start"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "failed to start" in result.stderr
    assert "unknown setting [no.such.setting]" in result.stderr
    assert subprocess.run([service, "status"], capture_output=True).returncode == 3


def test_password_protected_keystore_starts_through_the_service(lab_factory):
    lab = lab_factory("lab-kspw", local_nodes=1, remote_nodes=1, keystore_password=True, seed=False)
    ref = load_inventory(lab.inventory).clusters["local"].keystore_password
    assert ref is not None and stat.S_IMODE(os.stat(ref.file).st_mode) == 0o600
    keystore = Path(lab.node("local-0")["home"]) / "config" / "elasticsearch.keystore"
    has = subprocess.run([str(keystore.parent.parent / "bin" / "elasticsearch-keystore"), "has-passwd"],
                         capture_output=True, text=True)
    assert has.returncode == 0, has.stderr
    check_es_client(lab)


def test_fault_switches_are_written_and_removed(lab):
    faults = lab.dir / "control" / "faults.json"
    try:
        result = esremote("lab", "fault", lab.dir, "slow-start", "--node", "local-1", "--set", "seconds=2")
        assert result.returncode == 0, result.stderr
        assert json.loads(faults.read_text()) == {"slow-start": {"nodes": ["local-1"], "seconds": 2}}
        esremote("lab", "fault", lab.dir, "http-overload", check=True)
        assert json.loads(faults.read_text())["http-overload"] == {"nodes": None}
    finally:
        esremote("lab", "fault", lab.dir, "slow-start", "--off", check=True)
        esremote("lab", "fault", lab.dir, "http-overload", "--off", check=True)
    assert json.loads(faults.read_text()) == {}


@pytest.mark.parametrize("args, message", [
    (["lab", "up", "--dir", "{new}", "--local-nodes", "0"], "--local-nodes: 0 is out of range"),
    (["lab", "up", "--dir", "{new}", "--ssh", "telnet"], "--ssh: 'telnet' is not valid"),
    (["lab", "up", "--dir", "{new}", "--version", "7.17.0"], "the lab plays 8.10.0 to 9.x"),
    (["lab", "up", "--dir", "{full}"], "is not empty and holds no lab"),
    (["lab", "fault", "{lab}", "meteor-strike"], "unknown fault 'meteor-strike'"),
    (["lab", "fault", "{lab}", "ssh-drop", "--node", "nobody"], "no node named 'nobody'"),
    (["lab", "fault", "{lab}", "api-key-invalidated", "--off"], "cannot be switched off"),
    (["lab", "status", "{new}"], "holds no lab"),
    (["lab", "up", "--dir", "{lab}", "--local-nodes", "5"], "built with other options (local_nodes 2 -> 5)"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(lab, tmp_path, args, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    paths = {"{new}": str(tmp_path / "new"), "{full}": str(full), "{lab}": str(lab.dir)}
    before = (lab.dir / "control" / "faults.json").read_text()
    result = esremote(*[paths.get(a, a) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in full.iterdir()) == ["something"]
    assert (lab.dir / "control" / "faults.json").read_text() == before


def test_up_again_reuses_the_lab_and_down_finds_untracked_nodes(lab_factory):
    lab = lab_factory("lab-reuse", local_nodes=1, remote_nodes=1, seed=False)
    remote = lab.es("remote")
    remote.indices.create(index="kept", settings={"number_of_replicas": 0})  # green on one node
    remote.index(index="kept", document={"n": 1}, refresh=True)
    lab.down()
    result = esremote("lab", "up", "--dir", lab.dir, "--start-delay", "0.2")  # only the delay may change
    assert result.returncode == 0, result.stderr
    assert lab.es("remote").count(index="kept")["count"] == 1  # the cluster state survived the restart
    assert json.loads((Path(lab.node("local-0")["home"]) / "lib/lab-node.json").read_text())["start_delay"] == 0.2
    # A node started by hand, outside the service's pid file, is found and stopped too.
    home = Path(lab.node("local-0")["home"])
    subprocess.run([str(home / "bin/elasticsearch-service"), "stop"], check=True, capture_output=True)
    subprocess.run([str(home / "bin/elasticsearch"), "-d", "-p", str(home / "by-hand.pid")], check=True,
                   capture_output=True, timeout=60)
    by_hand = int((home / "by-hand.pid").read_text())
    assert control.pid_alive(by_hand)
    stopped = lab.down()
    assert any(f"pid {by_hand}, untracked" in s for s in stopped), stopped
    assert not control.pid_alive(by_hand)


def test_api_key_invalidated_fault_invalidates_the_remote_cross_cluster_keys(lab):
    remote = lab.es("remote")
    key = remote.security.create_cross_cluster_api_key(name="fault-victim", access={"search": [{"names": ["x"]}]})
    rest_key = remote.security.create_api_key(name="bystander")
    result = esremote("lab", "fault", lab.dir, "api-key-invalidated")
    assert result.returncode == 0, result.stderr
    assert "remote:" in result.stdout and "invalidated" in result.stdout
    assert remote.security.get_api_key(id=key["id"])["api_keys"][0]["invalidated"] is True
    assert remote.security.get_api_key(id=rest_key["id"])["api_keys"][0]["invalidated"] is False
    assert key["encoded"] not in result.stdout + result.stderr
