"""`esremote lab up --files-only`: node homes and SSH endpoints, no Elasticsearch process (issue 12 §2).

The per-node steps of a migration on many nodes need each node's files and SSH, not its REST API;
this lab mode gives up to 64 nodes per cluster, served by one embedded SSH server process."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys

import pytest

from esremote.errors import ConfigError
from esremote.fanout import fan_out
from esremote.lab.ops import control, labfiles
from esremote.lab.ops.builder import MAX_FILES_ONLY_NODES, MAX_NODES, LabOptions
from esremote.ssh import SSHPool
from tests.fixtures.lab import Lab, free_net

ESREMOTE = [sys.executable, "-m", "esremote"]
LOCAL, REMOTE = 2, 3


def esremote(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*ESREMOTE, *map(str, args)], capture_output=True, text=True, timeout=180)


def refused(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == errno.ECONNREFUSED


def test_only_a_files_only_lab_may_have_more_nodes_than_a_full_one():
    assert LabOptions(local_nodes=48, remote_nodes=MAX_FILES_ONLY_NODES, files_only=True).validate()
    with pytest.raises(ConfigError, match=rf"--local-nodes: 48 is out of range; use 1 to {MAX_NODES} "
                                          rf"\(up to {MAX_FILES_ONLY_NODES} with --files-only\)"):
        LabOptions(local_nodes=48, files_only=False).validate()
    with pytest.raises(ConfigError, match=rf"--remote-nodes: {MAX_FILES_ONLY_NODES + 1} is out of range; "
                                          rf"use 1 to {MAX_FILES_ONLY_NODES}$"):
        LabOptions(remote_nodes=MAX_FILES_ONLY_NODES + 1, files_only=True).validate()


@pytest.mark.lab
def test_files_only_lab_serves_every_node_over_ssh_and_nothing_on_9200(tmp_path):
    lab_dir = tmp_path / "lab"
    os.chmod(tmp_path, 0o755)
    nodes: list[dict] = []
    up = esremote("lab", "up", "--dir", lab_dir, "--files-only", "--local-nodes", LOCAL, "--remote-nodes", REMOTE,
                  "--net", free_net())
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == str(lab_dir / "inventory.yml")
        assert "files only (no Elasticsearch process)" in up.stderr
        lab = Lab.read(lab_dir)
        nodes = lab.nodes()
        assert [n["name"] for n in nodes] == [f"local-{i}" for i in range(LOCAL)] + \
            [f"remote-{i}" for i in range(REMOTE)]
        assert set(control.tracked(labfiles.load_layout(lab_dir))) == {"sshserver"}  # one process

        # Every node over SSH, its home laid out like a real one
        script = ("cat config/elasticsearch.yml && test -x bin/elasticsearch-keystore && "
                  "test -f config/certs/http.p12 && test -f config/certs/transport.p12 && "
                  "ES_PATH_CONF=config bin/elasticsearch-keystore list")
        with SSHPool() as pool:
            answers = fan_out([n["name"] for n in nodes], lambda name: pool.get(lab.ssh_target(name)).run(script),
                              max_workers=len(nodes)).raise_if_failed()
            for name, result in answers.items():
                assert f"node.name: {name}" in result.stdout
                assert "bootstrap.password" in result.stdout.splitlines()

            # ... and no REST, no transport: nothing listens there
            for node in nodes:
                assert refused(node["ip"], node["http_port"]), f"{node['name']}: something answers on 9200"
                assert refused(node["ip"], node["transport_port"])

            # The node's service has nothing to start, and says so
            start = pool.get(lab.ssh_target("remote-0")).run("bin/elasticsearch-service start", check=False)
            assert start.exit_code == 1
            assert "serves SSH and files only" in start.stderr
            assert refused(lab.node("remote-0")["ip"], 9200)

        if os.geteuid() == 0:  # root-run: a package install's owners and modes, as in a full lab
            config = os.stat(os.path.join(lab.node("local-0")["home"], "config"))
            assert (stat.S_IMODE(config.st_mode), config.st_uid) == (0o2750, 0)

        status = esremote("lab", "status", "--dir", lab_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cluster remote: files only" in status.stdout and status.stdout.count("SSH up") == LOCAL + REMOTE
    finally:
        down = esremote("lab", "down", "--dir", lab_dir)
    assert down.returncode == 0, down.stderr
    assert "sshserver" in down.stdout
    assert all(refused(n["ip"], n["ssh_port"]) for n in nodes)
