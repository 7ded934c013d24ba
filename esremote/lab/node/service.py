"""`bin/elasticsearch-service start|stop|restart|status`: a lab node's "systemctl".

    python -m esremote.lab.node.service --home HOME start|stop|restart|status

start    waits `start_delay` (lib/lab-node.json), runs `bin/elasticsearch -d -p HOME/run/elasticsearch.pid`
         with the keystore passphrase (if any) on stdin, as the node's service user when root (the
         unit's `User=`, see node/identity.py), then waits until the node logs `started`
         (exit 0) or fails (exit 1, with the tail of its log on stderr). Starting a running node is a
         no-op, as with systemctl.
stop     SIGTERM to the pid in the pid file, waits until the process is gone (SIGKILL after
         30 s). Stopping a stopped node is a no-op.
status   exit 0 when running, 3 when stopped (systemctl / LSB codes).

A node of a files-only lab (`"files_only": true` in lib/lab-node.json) has nothing to run: start
(and so restart) fails with exit 1 and says so; stop and status find it stopped.

Stdlib only: this runs over SSH on every restart and must start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
POLL = 0.05
_STARTED = re.compile(r"\]\s+started(\s|$)")
_NODE_MODULE = "esremote.lab.node"
RUN_AS_ENV = "LAB_SERVICE_USER"  # read by node/identity.py


@dataclass(frozen=True)
class NodeHome:
    """What the service needs to know about one node's home."""

    home: Path
    cluster: str
    start_delay: float
    passphrase_file: str | None
    user: str | None = None
    files_only: bool = False  # a node of a files-only lab: home and SSH, nothing to start

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "elasticsearch.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.cluster}.log"

    @property
    def name(self) -> str:
        return self.home.name

    @classmethod
    def load(cls, home: Path) -> NodeHome:
        info = json.loads((home / "lib" / "lab-node.json").read_text())
        return cls(home=home, cluster=info["cluster"], start_delay=float(info.get("start_delay") or 0),
                   passphrase_file=info.get("keystore_passphrase_file"), user=info.get("user"),
                   files_only=bool(info.get("files_only")))


def running_pid(node: NodeHome) -> int | None:
    """The node's pid when the pid file names a live node process of this home, else None."""
    try:
        pid = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_node_process(pid, node.home) else None


def is_node_process(pid: int, home: Path) -> bool:
    """True when `pid` is alive and runs this home's node (a recycled pid does not count)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return _NODE_MODULE in args and str(home) in args


def status(node: NodeHome) -> int:
    pid = running_pid(node)
    if pid is None:
        print(f"elasticsearch [{node.name}] is stopped")
        return EXIT_STOPPED
    print(f"elasticsearch [{node.name}] is running (pid {pid})")
    return EXIT_OK


def start(node: NodeHome, timeout: float = START_TIMEOUT) -> int:
    if node.files_only:  # like a masked unit: refused, and said why
        print(f"elasticsearch [{node.name}] cannot start: this lab node serves SSH and files only "
              "(esremote lab up --files-only); it has no Elasticsearch to run", file=sys.stderr)
        return EXIT_FAILED
    if (pid := running_pid(node)) is not None:
        print(f"elasticsearch [{node.name}] is already running (pid {pid})")
        return EXIT_OK
    if node.start_delay > 0:
        time.sleep(node.start_delay)  # the configured start-up delay is the point: a slow service
    offset = node.log_file.stat().st_size if node.log_file.exists() else 0
    _runtime_directory(node)
    node.pid_file.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as output:
        launcher = subprocess.Popen(
            [str(node.home / "bin" / "elasticsearch"), "-d", "-p", str(node.pid_file)],
            cwd=node.home, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, env=_service_env(node))
        launcher.communicate(_passphrase(node))
        outcome = _wait_started(node, launcher, offset, timeout)
        if outcome is None:
            print(f"elasticsearch [{node.name}] started (pid {running_pid(node)})")
            return EXIT_OK
        output.seek(0)
        _report_failure(node, outcome, offset, output.read().decode(errors="replace"))
    return EXIT_FAILED


def _runtime_directory(node: NodeHome) -> None:
    """The pid file's directory, made for the service user like the unit's `RuntimeDirectory=`."""
    run = node.pid_file.parent
    run.mkdir(exist_ok=True)
    if node.user and os.geteuid() == 0:
        entry = pwd.getpwnam(node.user)
        os.chown(run, entry.pw_uid, entry.pw_gid)


def _service_env(node: NodeHome) -> dict[str, str]:
    """The environment of the node: as systemd's `User=`, the service user when started by root."""
    env = dict(os.environ)
    env.pop(RUN_AS_ENV, None)
    if node.user and os.geteuid() == 0:
        env[RUN_AS_ENV] = node.user
    return env


def _passphrase(node: NodeHome) -> bytes:
    """The keystore passphrase for the node's stdin, from where Elasticsearch's systemd unit looks."""
    path = os.environ.get("ES_KEYSTORE_PASSPHRASE_FILE") or node.passphrase_file
    if not path:
        return b""
    data = Path(path).read_bytes()
    return data if data.endswith(b"\n") else data + b"\n"


def _wait_started(node: NodeHome, launcher: subprocess.Popen, offset: int, timeout: float) -> str | None:
    """None once the node logged `started`; otherwise why it did not start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _logged_started(node, offset):
            return None
        code = launcher.poll()
        if code not in (None, 0):
            return f"bin/elasticsearch exited with status {code}"
        if code == 0 and node.pid_file.exists() and running_pid(node) is None:
            return "the node process exited during start-up"
        time.sleep(POLL)
    return f"the node did not log `started` within {timeout:g}s"


def _logged_started(node: NodeHome, offset: int) -> bool:
    try:
        with node.log_file.open("rb") as fh:
            fh.seek(offset)
            new = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(_STARTED.search(line) for line in new.splitlines())


def _report_failure(node: NodeHome, why: str, offset: int, output: str) -> None:
    """Why, then the node's log since this start, then what the launcher printed (a crash's trace)."""
    print(f"elasticsearch [{node.name}] failed to start: {why}", file=sys.stderr)
    for line in _log_tail(node, offset) + output.strip().splitlines()[-10:]:
        print(line, file=sys.stderr)


def _log_tail(node: NodeHome, offset: int, lines: int = 20) -> list[str]:
    try:
        with node.log_file.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def stop(node: NodeHome, timeout: float = STOP_TIMEOUT, *, echo=print) -> int:
    pid = running_pid(node)
    if pid is None:
        node.pid_file.unlink(missing_ok=True)
        echo(f"elasticsearch [{node.name}] is not running")
        return EXIT_OK
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, node.home, time.monotonic() + timeout):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, node.home, time.monotonic() + 5)
    node.pid_file.unlink(missing_ok=True)
    echo(f"elasticsearch [{node.name}] stopped")
    return EXIT_OK


def _wait_gone(pid: int, home: Path, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not is_node_process(pid, home):
            return True
        time.sleep(POLL)
    return False


def restart(node: NodeHome) -> int:
    stop(node)
    return start(node)


COMMANDS = {"start": start, "stop": stop, "restart": restart, "status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elasticsearch-service",
                                     description="Start, stop, restart a lab node or ask its status.")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        node = NodeHome.load(args.home.absolute())  # as written in bin/ (no symlink resolving)
    except (OSError, ValueError, KeyError) as exc:
        print(f"elasticsearch-service: {args.home} is not a lab node home "
              f"(lib/lab-node.json unreadable: {exc})", file=sys.stderr)
        return EXIT_USAGE
    return COMMANDS[args.command](node)


if __name__ == "__main__":
    sys.exit(main())
