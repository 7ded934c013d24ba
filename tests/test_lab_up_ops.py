"""Operating a lab: the service command on real nodes, `lab status|fault|down`, reuse, bad input.

One small lab (1 + 1 nodes, password-protected keystores, not seeded) serves the whole module;
each test leaves it running and green.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from esremote.cli import main as cli_main
from esremote.inventory import load_inventory
from esremote.lab.ops import control
from tests.lab_inprocess import node_env
from tests.fixtures.lab import Lab
from tests.test_lab_up import check_es_client, esremote

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def small(lab_factory) -> Lab:
    return lab_factory("lab-small", local_nodes=1, remote_nodes=1, keystore_password=True, seed=False)


def service(lab: Lab, node: str, command: str) -> subprocess.CompletedProcess:
    home = Path(lab.node(node)["home"])
    return subprocess.run([str(home / "bin" / "elasticsearch-service"), command], capture_output=True,
                          text=True, timeout=60)


def wait_green(lab: Lab, cluster: str) -> None:
    control.wait_health(control.labfiles.load_layout(lab.dir), cluster, "green", 30)


def test_password_protected_keystore_starts_through_the_service(small):
    ref = load_inventory(small.inventory).clusters["local"].keystore_password
    assert ref is not None and stat.S_IMODE(os.stat(ref.file).st_mode) == 0o600
    home = Path(small.node("local-0")["home"])
    has = subprocess.run([str(home / "bin" / "elasticsearch-keystore"), "has-passwd"], capture_output=True,
                         text=True)
    assert has.returncode == 0, has.stderr
    check_es_client(small)  # the nodes got the passphrase from the service, on stdin


def test_service_command_status_stop_start(small):
    assert service(small, "local-0", "status").returncode == 0
    stop = service(small, "local-0", "stop")
    assert stop.returncode == 0, stop.stderr
    try:
        status = service(small, "local-0", "status")
        assert status.returncode == 3 and "stopped" in status.stdout
        assert service(small, "local-0", "stop").returncode == 0  # idempotent
        result = esremote("lab", "status", small.dir)
        assert result.returncode == 3 and "local-0      " in result.stdout and "down" in result.stdout
        assert "1 of 2 nodes are down: local-0" in result.stderr
    finally:
        start = service(small, "local-0", "start")
    assert start.returncode == 0, start.stderr
    wait_green(small, "local")
    result = esremote("lab", "status", "--dir", small.dir)
    assert result.returncode == 0 and "cluster local: green" in result.stdout


def test_service_start_failure_shows_the_node_log(small):
    home = Path(small.node("remote-0")["home"])
    yml = home / "config" / "elasticsearch.yml"
    original = yml.read_text()
    assert service(small, "remote-0", "stop").returncode == 0
    try:
        yml.write_text(original + "no.such.setting: true\n")
        result = service(small, "remote-0", "start")
        assert result.returncode == 1
        assert "failed to start" in result.stderr
        assert "unknown setting [no.such.setting]" in result.stderr
        assert service(small, "remote-0", "status").returncode == 3
    finally:
        yml.write_text(original)
        assert service(small, "remote-0", "start").returncode == 0
    wait_green(small, "remote")


def test_fault_switches_are_written_and_removed(small):
    faults = small.dir / "control" / "faults.json"
    result = esremote("lab", "fault", small.dir, "slow-start", "--node", "local-0", "--set", "seconds=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "slow-start: on for local-0"
    assert json.loads(faults.read_text()) == {"slow-start": {"nodes": ["local-0"], "seconds": 2}}
    assert control.fault(small.dir, "http-overload", options={"status": 429}) == "http-overload: on for every node"
    assert json.loads(faults.read_text())["http-overload"] == {"nodes": None, "status": 429}
    control.fault(small.dir, "slow-start", node="local-0", off=True)
    control.fault(small.dir, "http-overload", off=True)
    assert json.loads(faults.read_text()) == {}


def test_api_key_invalidated_fault_invalidates_the_remote_cross_cluster_keys(small):
    remote = small.es("remote")
    key = remote.security.create_cross_cluster_api_key(name="fault-victim", access={"search": [{"names": ["x"]}]})
    rest_key = remote.security.create_api_key(name="bystander")
    result = esremote("lab", "fault", small.dir, "api-key-invalidated")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "api-key-invalidated: remote: 1 cross-cluster key(s) invalidated"
    assert remote.security.get_api_key(id=key["id"])["api_keys"][0]["invalidated"] is True
    assert remote.security.get_api_key(id=rest_key["id"])["api_keys"][0]["invalidated"] is False


@pytest.mark.parametrize("args, message", [
    (["lab", "up", "--dir", "{new}", "--local-nodes", "0"], "--local-nodes: 0 is out of range"),
    (["lab", "up", "--dir", "{new}", "--ssh", "telnet"], "--ssh: 'telnet' is not valid"),
    (["lab", "up", "--dir", "{new}", "--version", "7.17.0"], "the lab plays 8.10.0 to 9.x"),
    (["lab", "up", "--dir", "{full}"], "is not empty and holds no lab"),
    (["lab", "up", "--dir", "{file}"], "is a file, not a directory"),
    (["lab", "up", "--dir", "{file}/lab"], "cannot be created (Not a directory)"),
    (["lab", "fault", "{lab}", "meteor-strike"], "unknown fault 'meteor-strike'"),
    (["lab", "fault", "{lab}", "ssh-drop", "--node", "nobody"], "no node named 'nobody'"),
    (["lab", "fault", "{lab}", "api-key-invalidated", "--off"], "cannot be switched off"),
    (["lab", "status", "{new}"], "holds no lab"),
    (["lab", "up", "--dir", "{lab}", "--local-nodes", "5"], "built with other options (local_nodes 1 -> 5)"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(small, tmp_path, capsys, args, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    (tmp_path / "file").write_text("x")
    paths = {"{new}": str(tmp_path / "new"), "{full}": str(full), "{lab}": str(small.dir),
             "{file}": str(tmp_path / "file"), "{file}/lab": str(tmp_path / "file" / "lab")}
    before = (small.dir / "control" / "faults.json").read_text()
    code = cli_main([paths.get(a, a) for a in args])  # in-process: the CLI root's own error handling
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], stderr
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in full.iterdir()) == ["something"]
    assert (tmp_path / "file").read_text() == "x"
    assert (small.dir / "control" / "faults.json").read_text() == before


def test_up_again_reuses_the_lab_and_down_finds_untracked_nodes(small):
    remote = small.es("remote")
    remote.indices.create(index="kept", settings={"number_of_replicas": 0})  # green on one node
    remote.index(index="kept", document={"n": 1}, refresh=True)
    small.down()
    control.up(small.dir, {"start_delay": 0.2})  # only the delay may change
    assert small.es("remote").count(index="kept")["count"] == 1  # the cluster state survived the restart
    home = Path(small.node("local-0")["home"])
    assert json.loads((home / "lib/lab-node.json").read_text())["start_delay"] == 0.2
    # A node started by hand, outside the service's pid file, is found and stopped too.
    assert service(small, "local-0", "stop").returncode == 0
    passphrase = load_inventory(small.inventory).clusters["local"].keystore_password.file.read_bytes()
    # As root, by hand means as the service does it: as the service user (never as root).
    subprocess.run([str(home / "bin/elasticsearch"), "-d", "-p", str(home / "run" / "by-hand.pid")],
                   input=passphrase, check=True, capture_output=True, timeout=60, env=node_env())
    by_hand = int((home / "run" / "by-hand.pid").read_text())
    assert control.pid_alive(by_hand)
    stopped = small.down()
    assert any(f"pid {by_hand}, untracked" in s for s in stopped), stopped
    assert not control.pid_alive(by_hand)
    assert control.leftovers(control.labfiles.load_layout(small.dir)) == []
