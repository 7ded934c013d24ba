"""SSH fan-out: one command on N nodes through esremote.fanout.fan_out, 8 workers against 1.

The nodes are N embedded SSH endpoints (esremote.lab.net.sshserver, asyncssh) on loopback, each with
its own port and host key, checked strictly against a known_hosts file. Each run opens a fresh
connection pool, as a phase does, so a node's share is connect + authenticate + run the command;
the command waits `--command-seconds` on the node, standing for node-side work such as an
`elasticsearch-keystore` call (which starts a JVM). A: fan_out with max_workers=8; B: the same
fan_out with max_workers=1 (one node after the other). Goal: for N=8, A/B close to 1/8.

    .venv/bin/python benchmarks/ssh_fanout.py [--nodes N] [--command-seconds S] [--rounds N]
"""

from __future__ import annotations

import getpass
import tempfile
from pathlib import Path

import _timing
from esremote.lab.net.asyncssh_lib import asyncssh

from esremote.fanout import fan_out
from esremote.lab.net.sshserver import EmbeddedSSHServer, SSHEndpoint, ensure_host_key
from esremote.ssh import SSHPool, SSHTarget

HOST = "127.0.0.1"


def endpoints(workdir: Path, count: int) -> list[SSHEndpoint]:
    """`count` endpoints on free ports, trusting one client key (written as `workdir/client_key`)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    (workdir / "client_key").touch(mode=0o600)  # private from the start
    (workdir / "client_key").write_bytes(key.export_private_key())
    (workdir / "authorized_keys").write_bytes(key.export_public_key())
    return [SSHEndpoint(name=f"node-{i}", host=HOST, port=0, home=workdir, authorized_keys=workdir / "authorized_keys",
                        host_key=workdir / f"host_key_{i}") for i in range(count)]


def targets(workdir: Path, served: list[SSHEndpoint]) -> list[SSHTarget]:
    """How esremote reaches each endpoint, with its host key in a known_hosts file."""
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text("".join(f"[{e.host}]:{e.port} {ensure_host_key(e.host_key)}\n" for e in served))
    return [SSHTarget(host=e.host, port=e.port, user=getpass.getuser(), key_file=workdir / "client_key",
                      known_hosts=known_hosts, ssh_config=None, allow_agent=False, name=e.name)
            for e in served]


def run_everywhere(nodes: list[SSHTarget], command: str, workers: int) -> None:
    with SSHPool() as pool:
        fan_out(nodes, lambda node: pool.get(node).run(command), max_workers=workers).raise_if_failed()


def main() -> None:
    parser = _timing.arguments(__doc__, rounds=3)
    parser.add_argument("--nodes", type=int, default=8, help="SSH endpoints (default 8)")
    parser.add_argument("--command-seconds", type=float, default=1.0,
                        help="how long the command takes on each node (default 1.0)")
    args = parser.parse_args()
    command = f"sleep {args.command_seconds} && echo done"
    with tempfile.TemporaryDirectory(prefix="esremote-bench-ssh-") as tmp, \
            EmbeddedSSHServer(endpoints(Path(tmp), args.nodes)) as server:
        nodes = targets(Path(tmp), server.endpoints)
        print(f"{args.nodes} endpoints on {HOST}, command `{command}` on each")
        a = _timing.Variant("fan_out, 8 workers", lambda: run_everywhere(nodes, command, 8))
        b = _timing.Variant("fan_out, 1 worker", lambda: run_everywhere(nodes, command, 1))
        _timing.alternate(a, b, rounds=args.rounds, warmup=args.warmup)
    ideal = 1 / min(8, args.nodes)
    ratio = _timing.report(a, b, goal=f"A/B close to {ideal:.3g} ({min(8, args.nodes)}-fold speed-up; "
                                      f"met at {1.5 * ideal:.3g} or less)",
                           met=a.median / b.median <= 1.5 * ideal)
    floor = args.command_seconds * -(-args.nodes // 8)
    print(f"A: {_timing.seconds(a.median)} where the command alone takes {_timing.seconds(floor)}; "
          f"speed-up {1 / ratio:.1f} of {min(8, args.nodes)}")


if __name__ == "__main__":
    _timing.run(main)
