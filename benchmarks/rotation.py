"""Cross-cluster search during a key rotation: how long the search through the alias is broken.

On a lab (8.15, 2 local + 1 remote nodes, seeded) migrated with `run_migration` (the flow
`esremote migrate` runs), a probe thread outside esremote searches `my_remote:leader-logs` (size 0)
every 50 ms as `ccs_user`, each search through the next local node in turn at that node's own
address (every node coordinates with the credentials it loaded), before, during and after
`rotate-cross-cluster-key` (`--rounds` rotations one after another). A search fails when it raises,
or when it answers with the remote skipped or failed (`skip_unavailable` is true from 8.15, so a
broken link can look like an empty success).

The gap is the longest time without a working search: from the start of the first failed search
of a run of failures to the start of the next successful one (0 when none failed). The last line:

    rotation: gap_ms=X failed_searches=N ratio=R          (R = gap / probe interval)

Goal (issue 13): no failed search; otherwise the gap is named in ms.

    .venv/bin/python benchmarks/rotation.py [--rounds N] [--interval-ms 50] [--version 8.15.0]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import _timing

from esremote.errors import EsRemoteError
from esremote.lab.ops import control

NETS = range(251, 255)
ALIAS = "my_remote"
INDEX = f"{ALIAS}:leader-logs"


def free_net() -> int:
    for net in NETS:
        if not any(_listening(f"127.{net}.{k}.1", port) for k in (1, 2) for port in (9200, 9300, 2222)):
            return net
    sys.exit(f"every address range 127.NET.x.y for NET in {NETS.start}..{NETS.stop - 1} is in use: "
             "take those labs down first")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Probe:
    start: float      # perf_counter seconds
    end: float
    node: str
    ok: bool
    error: str = ""


@dataclass
class Prober:
    """Searches `INDEX` every `interval` seconds until stopped, round robin over `clients`."""

    clients: dict[str, object]
    interval: float
    probes: list[Probe] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ccs-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        names = sorted(self.clients)
        turn = 0
        next_at = time.perf_counter()
        while not self._stop.is_set():
            node = names[turn % len(names)]
            turn += 1
            start = time.perf_counter()
            ok, error = True, ""
            try:
                answer = self.clients[node].search(index=INDEX, size=0)
                clusters = answer.get("_clusters") or {}
                if clusters.get("skipped") or clusters.get("successful", 1) < clusters.get("total", 1):
                    ok, error = False, f"remote skipped or failed: {clusters}"
            except Exception as exc:  # noqa: BLE001 - a failed search is what we count
                ok, error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
            self.probes.append(Probe(start, time.perf_counter(), node, ok, error))
            next_at = max(next_at + self.interval, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))


def gap(probes: list[Probe], since: float, until: float) -> tuple[float, int]:
    """(longest gap in seconds, failed searches) among probes started in [since, until]."""
    window = [p for p in probes if since <= p.start <= until]
    longest, failed, first_failure = 0.0, 0, None
    for probe in window:
        if not probe.ok:
            failed += 1
            if first_failure is None:
                first_failure = probe.start
        elif first_failure is not None:
            longest = max(longest, probe.start - first_failure)
            first_failure = None
    if first_failure is not None:  # still failing at the end of the window
        longest = max(longest, window[-1].end - first_failure)
    return longest, failed


def clients(lab: dict, user: str = "ccs_user") -> dict[str, object]:
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    cluster = lab["clusters"]["local"]
    password = Path(lab["users"][user]["password_file"]).read_text().splitlines()[0]
    return {n["name"]: Elasticsearch(f"https://{n['ip']}:{n['http_port']}", ca_certs=cluster["ca_cert"],
                                     basic_auth=(user, password), request_timeout=10, max_retries=0)
            for n in cluster["nodes"]}


def main() -> None:
    parser = _timing.arguments(__doc__, rounds=3, warmup=0)
    parser.add_argument("--interval-ms", type=float, default=50.0, help="probe interval (default 50)")
    parser.add_argument("--version", default="8.15.0", help="lab version (8.13 or later; default 8.15.0)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running (its directory is printed)")
    args = parser.parse_args()
    import json  # noqa: PLC0415

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    print(_timing.machine(), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="esremote-bench-rotation-"))
    workdir.chmod(0o755)
    lab_dir = workdir / "lab"
    lab_dir.mkdir(mode=0o755)  # the nodes run as user elasticsearch when run as root: it must get in
    lab_dir.chmod(0o755)
    try:
        began = time.perf_counter()
        control.up(lab_dir, {"net": free_net(), "version": args.version, "local_nodes": 2, "remote_nodes": 1})
        lab = json.loads((lab_dir / "lab.json").read_text())
        print(f"lab up ({args.version}, 2 local + 1 remote, seeded) in {time.perf_counter() - began:.1f} s", flush=True)
        _measure(lab, workdir / "state", args)
    finally:
        if args.keep:
            print(f"lab kept in {lab_dir}")
        else:
            if (lab_dir / "lab.json").exists():
                control.down(lab_dir)
            shutil.rmtree(workdir, ignore_errors=True)


def _measure(lab: dict, state: Path, args) -> None:
    from esremote.flows.migrate import run_migration  # noqa: PLC0415
    from esremote.flows.rotate import run_rotation  # noqa: PLC0415
    from esremote.params import MigrationParams, RotationParams  # noqa: PLC0415

    inventory = Path(lab["inventory"])
    began = time.perf_counter()
    summary = run_migration(MigrationParams(inventory=inventory, state_dir=state))
    if summary.status != "migrated":
        raise EsRemoteError(f"the lab's migration did not succeed ({summary.status}): {summary.message}")
    print(f"migrated (esremote's migrate flow) in {time.perf_counter() - began:.1f} s", flush=True)
    prober = Prober(clients(lab), args.interval_ms / 1000)
    prober.start()
    time.sleep(2.0)  # a baseline: the link works before the first rotation
    windows = []
    try:
        for number in range(1, args.rounds + 1):
            start = time.perf_counter()
            result = run_rotation(RotationParams(inventory=inventory, aliases=[ALIAS], key_expiration="30d",
                                                 state_dir=state))
            end = time.perf_counter()
            time.sleep(1.0)  # searches started just before the end still count in this window
            outcome = result.aliases.get(ALIAS, {})
            if result.status != "rotated":
                raise EsRemoteError(f"rotation {number} did not succeed ({result.status}): {result.message}")
            windows.append((start, end + 1.0))
            longest, failed = gap(prober.probes, start, end + 1.0)
            count = len([p for p in prober.probes if start <= p.start <= end + 1.0])
            print(f"  rotation {number}: {end - start:.1f} s (key {outcome.get('old_key_id')} -> "
                  f"{outcome.get('new_key_id')}), {count} searches, {failed} failed, gap {longest * 1000:.0f} ms",
                  flush=True)
        time.sleep(1.0)
    finally:
        prober.stop()
    probes = prober.probes
    baseline = [p for p in probes if p.start < windows[0][0]] if windows else probes
    latencies = sorted((p.end - p.start) * 1000 for p in probes if p.ok)
    longest = max(gap(probes, s, e)[0] for s, e in windows)
    failed = sum(gap(probes, s, e)[1] for s, e in windows)
    failures = [p for p in probes if not p.ok]
    print(f"searches: {len(probes)} in all ({len(baseline)} before the first rotation, all "
          f"{'working' if all(p.ok for p in baseline) else 'NOT working'}), interval {args.interval_ms:.0f} ms, "
          f"round robin over {', '.join(sorted(prober.clients))}")
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"search latency: median {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
              f"max {latencies[-1]:.1f} ms")
    spacing = []
    for since, until in windows:
        working = [p for p in probes if since <= p.start <= until and p.ok]
        spacing += [b.start - a.start for a, b in zip(working, working[1:])]
    if spacing:
        print(f"longest time between two working searches during the rotations: {max(spacing) * 1000:.0f} ms "
              f"(the interval plus a slow search; median {statistics.median(spacing) * 1000:.0f} ms)")
    for probe in failures[:5]:
        print(f"  failed on {probe.node}: {probe.error}")
    print("goal: no failed search during a rotation (else name the gap): "
          + ("met" if failed == 0 else f"NOT met: {longest * 1000:.0f} ms without cross-cluster search"))
    print(f"rotation: gap_ms={longest * 1000:.0f} failed_searches={failed} "
          f"ratio={longest * 1000 / args.interval_ms:.2f}")


if __name__ == "__main__":
    _timing.run(main)
