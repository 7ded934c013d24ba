"""The embedded SSH server: process mode, home and environment, SFTP, keys, the ssh-drop fault."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from esremote.errors import AuthenticationError, ConnectError
from esremote.lab.net.sshserver import ensure_host_key, fault_active
from esremote.ssh import CommandTimeoutError, SSHConnection, SSHTarget
from tests.fixtures.ssh import _free_port


def _poll(condition, what: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_process_mode_serves_every_endpoint_and_stops_on_sigterm(tmp_path, ssh_client_key):
    endpoints, known = [], []
    for i, host in enumerate(["127.0.250.3", "127.0.250.4"]):
        home = tmp_path / f"node-{i}"
        home.mkdir()
        port = _free_port(host)
        host_key = Path(f"keys/node-{i}")  # relative: resolved against the config file's directory
        endpoints.append({"name": f"node-{i}", "host": host, "port": port, "home": str(home),
                          "authorized_keys": str(ssh_client_key.with_suffix(".pub")),
                          "host_key": str(host_key), "env": {"NODE_NAME": f"node-{i}"}})
        known.append((host, port, home))
    config = tmp_path / "sshserver.json"
    config.write_text(json.dumps({"endpoints": endpoints}))
    proc = subprocess.Popen([sys.executable, "-m", "esremote.lab.net.sshserver", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in endpoints]  # one "listening" line per endpoint
        assert all("listening on" in line for line in lines), lines
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(
            f"[{h}]:{p} {ensure_host_key(tmp_path / 'keys' / f'node-{i}')}\n" for i, (h, p, _) in enumerate(known)))
        for i, (host, port, home) in enumerate(known):
            target = SSHTarget(host=host, port=port, user="anyone", key_file=ssh_client_key,
                               known_hosts=known_hosts, ssh_config=None, allow_agent=False)
            with SSHConnection(target) as conn:
                assert conn.run("pwd; echo $NODE_NAME $HOME").stdout == f"{home}\nnode-{i} {home}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_mode_reports_a_bad_config_in_one_line(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"endpoints": [{"name": "n1", "host": "127.0.250.3"}]}))
    result = subprocess.run([sys.executable, "-m", "esremote.lab.net.sshserver", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"esremote-sshserver: error: {config}: endpoint n1: missing field 'port'"]


def test_configured_environment_and_exit_by_signal(embedded_ssh_factory):
    server = embedded_ssh_factory(env={"ES_PATH_CONF": "/etc/es"})
    with SSHConnection(server.target()) as conn:
        assert conn.run("echo $ES_PATH_CONF").stdout == "/etc/es\n"
        assert conn.run("kill -9 $$", check=False).exit_code == -1


def test_sftp_starts_in_the_home(embedded_ssh_server):
    with SSHConnection(embedded_ssh_server.target()) as conn:
        conn.connect()
        with conn._client.open_sftp() as sftp:
            assert sftp.normalize(".") == str(embedded_ssh_server.home)
            with sftp.open("uploaded.txt", "wb") as fh:
                fh.write(b"via sftp")
    assert (embedded_ssh_server.home / "uploaded.txt").read_bytes() == b"via sftp"


def test_authorized_keys_are_read_on_each_connection(embedded_ssh_factory, tmp_path):
    server = embedded_ssh_factory()
    with SSHConnection(server.target()) as conn:
        conn.run("true")
    (server.home.parent / "authorized_keys").write_text("")
    with pytest.raises(AuthenticationError):
        SSHConnection(server.target()).connect()


def test_fault_switch_reads_the_control_file(tmp_path):
    control = tmp_path / "faults.json"
    assert not fault_active(control, "n1")  # missing file: off
    control.write_text(json.dumps({"ssh-drop": {"nodes": ["n1"]}}))
    assert fault_active(control, "n1") and not fault_active(control, "n2")
    control.write_text(json.dumps({"ssh-drop": {"nodes": None}}))
    assert fault_active(control, "n2")
    control.write_text("{torn")
    assert not fault_active(control, "n1")


def test_ssh_drop_refuses_new_connections_of_the_named_node_only(embedded_ssh_factory, tmp_path):
    control = tmp_path / "faults.json"
    dropped = embedded_ssh_factory(name="n1", control_file=control)
    spared = embedded_ssh_factory(name="n2", host="127.0.250.5", control_file=control)
    control.write_text(json.dumps({"ssh-drop": {"nodes": ["n1"]}}))
    with pytest.raises(ConnectError) as info:
        SSHConnection(dropped.target()).connect()
    assert info.value.transient
    with SSHConnection(spared.target()) as conn:
        assert conn.run("echo up").stdout == "up\n"
    control.write_text("{}")
    with SSHConnection(dropped.target()) as conn:
        assert conn.run("echo back").stdout == "back\n"


def test_ssh_drop_cuts_a_running_command_and_the_connection_recovers(embedded_ssh_factory, tmp_path):
    control = tmp_path / "faults.json"
    server = embedded_ssh_factory(name="n1", control_file=control)
    marker = server.home / "started"
    outcome: list[BaseException | object] = []
    with SSHConnection(server.target()) as conn:
        def run() -> None:
            try:
                outcome.append(conn.run(f"touch {marker}; sleep 30", timeout=60))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        _poll(marker.exists, "the command to start")
        control.write_text(json.dumps({"ssh-drop": {"nodes": None}}))
        thread.join(90)  # what ends the wait is in the outcome: the drop, not the sleep (30s) or timeout (60s)
        assert not thread.is_alive(), "the command neither ended nor timed out"
        assert isinstance(outcome[0], ConnectError) and outcome[0].transient, outcome
        assert "connection lost while running" in str(outcome[0])
        control.write_text(json.dumps({}))
        assert conn.run("echo recovered").stdout == "recovered\n"


def test_a_command_the_client_gives_up_on_is_killed(embedded_ssh_server):
    marker = embedded_ssh_server.home / "gave-up.pid"
    with SSHConnection(embedded_ssh_server.target()) as conn:
        with pytest.raises(CommandTimeoutError):
            conn.run(f"echo $$ > {marker}; exec sleep 30", timeout=1)
    pid = int(marker.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    _poll(gone, "the abandoned command to be killed")
