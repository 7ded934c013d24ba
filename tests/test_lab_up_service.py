"""bin/elasticsearch-service (esremote.lab.node.service) against a stand-in node process.

The stand-in honours the node's contract (ARCHITECTURE.md): `-d -p PIDFILE` returns once started
or failed, it logs `started`, removes its pid file on SIGTERM. It is below the unit under test; the
real node is exercised by test_lab_up.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from esremote.lab.ops import builder

STAND_IN = textwrap.dedent('''
    import json, os, signal, sys, time
    home = sys.argv[2]
    args = sys.argv[3:]
    plan = json.load(open(os.path.join(home, "stand-in.json")))
    log = os.path.join(home, "logs", "local.log")
    def write(level, message):
        with open(log, "a") as fh:
            fh.write(f"[2026-01-01T00:00:00,000][{level} ][o.e.n.Node] [n] {message}\\n")
    seen = sys.stdin.readline()
    open(os.path.join(home, "stdin-seen"), "w").write(seen)
    daemon = "-d" in args
    pidfile = args[args.index("-p") + 1] if "-p" in args else None
    if daemon:
        r, w = os.pipe()
        if os.fork() > 0:
            os.close(w)
            sys.exit(0 if os.read(r, 1) == b"0" else 1)
        os.close(r); os.setsid()
    if plan.get("fail"):
        write("ERROR", plan["fail"])
        if daemon: os.write(w, b"1")
        sys.exit(1)
    if pidfile: open(pidfile, "w").write(f"{os.getpid()}\\n")
    def stop(*_):
        write("INFO", "stopped")
        if pidfile: os.unlink(pidfile)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    write("INFO", "started")
    if daemon: os.write(w, b"0")
    while True: time.sleep(1)
''')


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "local-0"
    for sub in ("bin", "lib", "logs"):
        (home / sub).mkdir(parents=True)
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    node = (home / "bin" / "elasticsearch")
    node.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {tmp_path / 'stand_in.py'} "
                    f"esremote.lab.node {home} \"$@\"\n")
    node.chmod(0o755)
    service = builder.bin_scripts(home)["elasticsearch-service"]
    (home / "bin" / "elasticsearch-service").write_text(service)
    (home / "bin" / "elasticsearch-service").chmod(0o755)
    configure(home)
    yield home
    subprocess.run([str(home / "bin" / "elasticsearch-service"), "stop"], capture_output=True)


def configure(home: Path, *, start_delay: float = 0.0, passphrase_file: str | None = None,
              fail: str | None = None) -> None:
    (home / "lib" / "lab-node.json").write_text(json.dumps(
        {"version": "8.17.0", "cluster": "local", "license": "trial", "state_dir": "", "control_dir": "",
         "start_delay": start_delay, "keystore_passphrase_file": passphrase_file}))
    (home / "stand-in.json").write_text(json.dumps({"fail": fail}))


def service(home: Path, command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(home / "bin" / "elasticsearch-service"), command], capture_output=True,
                          text=True, timeout=60, **kwargs)


def pid_of(home: Path) -> int:
    return int((home / "run" / "elasticsearch.pid").read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_start_status_stop_like_systemctl(home):
    assert service(home, "status").returncode == 3
    started = service(home, "start")
    assert started.returncode == 0, started.stderr
    pid = pid_of(home)
    assert alive(pid)
    status = service(home, "status")
    assert status.returncode == 0 and f"pid {pid}" in status.stdout
    again = service(home, "start")
    assert again.returncode == 0 and "already running" in again.stdout and pid_of(home) == pid
    stopped = service(home, "stop")
    assert stopped.returncode == 0
    assert not alive(pid) and not (home / "run" / "elasticsearch.pid").exists()
    assert service(home, "status").returncode == 3
    assert service(home, "stop").returncode == 0  # stopping a stopped node is a no-op


def test_restart_gives_a_new_process(home):
    assert service(home, "start").returncode == 0
    first = pid_of(home)
    assert service(home, "restart").returncode == 0
    assert pid_of(home) != first and not alive(first) and alive(pid_of(home))


NANOSLEEP = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}  # nanosleep, clock_nanosleep


def sleeping(pid: int) -> bool:
    """The process sits in a timed sleep (what time.sleep is), as /proc shows it."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return wchan.endswith("nanosleep") or syscall in NANOSLEEP.get(os.uname().machine, ())


def test_start_delay_is_waited_before_the_node_is_started(home):
    """Seen from outside: during its start delay the service sleeps and has not run bin/elasticsearch
    (no node, nothing logged); interrupted there, no node ever starts. With a delay it can wait out,
    `start` ends with the node started."""
    configure(home, start_delay=600)
    waiting = subprocess.Popen([str(home / "bin" / "elasticsearch-service"), "start"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not sleeping(waiting.pid):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the service never reached its start delay"
            time.sleep(0.02)
        assert not (home / "stdin-seen").exists() and not (home / "logs" / "local.log").exists()
        assert service(home, "status").returncode == 3
    finally:
        waiting.kill()
        waiting.communicate()
    assert not (home / "stdin-seen").exists()

    configure(home, start_delay=0.2)
    assert service(home, "start").returncode == 0
    assert (home / "stdin-seen").exists() and alive(pid_of(home))
    assert (home / "logs" / "local.log").read_text().endswith("] started\n")


def test_failed_start_exits_1_with_the_log_tail(home):
    configure(home, fail="java.lang.IllegalArgumentException: unknown setting [no.such.setting]")
    result = service(home, "start")
    assert result.returncode == 1
    assert "failed to start" in result.stderr
    assert "unknown setting [no.such.setting]" in result.stderr
    assert service(home, "status").returncode == 3


def test_keystore_passphrase_goes_on_stdin_not_argv(home, tmp_path):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("s3cret-Phrase\n")
    passphrase.chmod(0o600)
    configure(home, passphrase_file=str(passphrase))
    assert service(home, "start").returncode == 0
    assert (home / "stdin-seen").read_text() == "s3cret-Phrase\n"
    cmdline = Path(f"/proc/{pid_of(home)}/cmdline").read_bytes()
    assert b"s3cret" not in cmdline
    service(home, "stop")
    # Elasticsearch's systemd variable wins, as with the real unit.
    other = tmp_path / "other"
    other.write_text("other-Phrase")
    assert service(home, "start", env={**os.environ, "ES_KEYSTORE_PASSPHRASE_FILE": str(other)}).returncode == 0
    assert (home / "stdin-seen").read_text() == "other-Phrase\n"


def test_a_recycled_pid_is_not_taken_for_the_node(home):
    (home / "run").mkdir()
    (home / "run" / "elasticsearch.pid").write_text(f"{os.getpid()}\n")  # alive, but not this home's node
    assert service(home, "status").returncode == 3
    assert service(home, "stop").returncode == 0
    assert alive(os.getpid())


def test_not_a_node_home_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "esremote.lab.node.service", "--home", str(tmp_path), "status"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "is not a lab node home" in result.stderr
