"""Lab start-up: `esremote lab up` of 3 + 3 nodes against 1 + 1, each in a new directory.

One run is the whole command as an operator types it (build, start every node and the SSH
endpoints, wait for green), without seeding and with no start delay, on an address range of its own
(127.NET.x.y with NET in 251..254, outside the tests' range); `lab down` follows each run, untimed.
A has three times B's nodes: A/B < 3 means start-up grows slower than the node count (the nodes
start in parallel; 1 would be perfectly parallel). Goal: A/B < 3 and 3 + 3 under 30 s.

    .venv/bin/python benchmarks/lab_start.py [--rounds N]
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import _timing

from esremote.errors import EsRemoteError
from esremote.lab.ops import control

BUDGET_S = 30.0
UP_TIMEOUT_S = 180.0
NETS = range(251, 255)
PORTS = (9200, 9300, 2222)  # HTTP, transport, embedded SSH


def free_net() -> int:
    """A NET whose first addresses of both clusters have nothing listening on the lab's ports."""
    for net in NETS:
        if not any(_listening(f"127.{net}.{k}.1", port) for k in (1, 2) for port in PORTS):
            return net
    sys.exit(f"every address range 127.NET.x.y for NET in {NETS.start}..{NETS.stop - 1} is in use: "
             "take those labs down first")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class LabRun:
    """`lab up` of `nodes` + `nodes` in a new directory each time; `down` stops it and removes it
    (a lab that failed to come up is kept, for its node logs)."""

    def __init__(self, workdir: Path, nodes: int, net: int) -> None:
        self.workdir, self.nodes, self.net = workdir, nodes, net
        self.lab_dir: Path | None = None
        self.failed = False

    def up(self) -> None:
        self.lab_dir = Path(tempfile.mkdtemp(prefix=f"lab-{self.nodes}-", dir=self.workdir)) / "lab"
        command = [sys.executable, "-m", "esremote", "lab", "up", "--dir", str(self.lab_dir),
                   "--local-nodes", str(self.nodes), "--remote-nodes", str(self.nodes),
                   "--no-seed", "--start-delay", "0", "--net", str(self.net)]
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.failed = True
            raise EsRemoteError(f"lab up {self.nodes}+{self.nodes} did not finish within {UP_TIMEOUT_S:.0f} s; "
                                f"it was taken down, its logs are kept in {self.lab_dir}") from None
        if done.returncode != 0:
            self.failed = True
            raise EsRemoteError(f"lab up {self.nodes}+{self.nodes} exited {done.returncode}: "
                                f"{done.stderr.strip()}")

    def down(self) -> None:
        if self.lab_dir is not None and (self.lab_dir / "lab.json").exists():
            control.down(self.lab_dir)
        if self.lab_dir is not None and not self.failed:
            shutil.rmtree(self.lab_dir.parent)
        self.lab_dir = None


def main() -> None:
    args = _timing.arguments(__doc__, rounds=2, warmup=0).parse_args()
    net = free_net()
    workdir = Path(tempfile.mkdtemp(prefix="esremote-bench-lab-"))
    workdir.chmod(0o755)
    big, small = LabRun(workdir, 3, net), LabRun(workdir, 1, net)
    print(f"lab up --no-seed --start-delay 0 --net {net}")
    a = _timing.Variant("lab up 3+3", big.up, after=big.down)
    b = _timing.Variant("lab up 1+1", small.up, after=small.down)
    try:
        _timing.alternate(a, b, rounds=args.rounds, warmup=args.warmup)
    finally:
        try:
            workdir.rmdir()  # empty unless a lab is kept for its logs
        except OSError:
            pass
    ratio = _timing.report(a, b, goal=f"sub-linear in the node count (A/B < 3) and 3+3 under {BUDGET_S:.0f} s",
                           met=a.median / b.median < 3 and a.median < BUDGET_S)
    print(f"3+3 nodes: {_timing.seconds(a.median)} (budget {BUDGET_S:.0f} s); three times the nodes "
          f"cost {ratio:.2f} times the time")


if __name__ == "__main__":
    _timing.run(main)
