"""The cross-cluster outage of a migration, measured from outside esremote: esremote's plan against
Elastic's order (restart of the local cluster inside the outage), in the same run, on one lab.

A probe thread outside esremote observes the link every `--interval-ms` (50): a cross-cluster
search (`my_remote:leader-logs`, size 0, as `ccs_user`, through the next local node in turn) and the
states of the work that uses the alias (transform, datafeed and job, followers, auto-follow pattern:
`esremote.cluster.usage.read_usage` as the lab's admin). An observation is bad when the search
raises or skips the remote, or when any of that work is not running (or its states cannot be read).
The outage runs from the start of the first bad observation to the start of the first good one
after the last bad one.

One lab, two migrations (cheaper than two labs: the remote cluster server and the local CA trust
are set up once):
  (a) esremote's plan: `esremote migrate --inventory LAB/inventory.yml --yes` (a subprocess, as an
      operator runs it; the journal's measured outage is printed too). Its outage: stop, null the
      alias, reload secure settings, re-add on 9443, verify, resume (roles and keystores staged before).
  then the run's rollback, outage part only (`rollback_flow(restore="outage")`: the certificate
  link, the roles and the keystores back; the remote cluster server and the CA trust stay);
  (b) Elastic's order by the same code paths: the roles' remote_indices and a new cross-cluster key
      beforehand (not timed: the guide has them done before), then, timed: stop the work
      (`xcluster_work`), null the alias (`remote_settings`), the credentials into every local keystore
      (`NodeKeystore`, one node after the other as the guide does), a rolling restart of the local
      cluster through the nodes' service commands (`cluster.restart.rolling_restart`), re-add the
      alias on 9443, verify (`verify_api_key_link`), resume.

Last line:  outage_window: esremote=Xs guide=Ys ratio=R   (R = esremote / guide)
Goal (issue 12): esremote <= 2 s and <= a tenth of the guide's.

    .venv/bin/python benchmarks/outage_window.py [--small] [--version 8.15.0] [--keep]
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import _timing

from esremote.errors import EsRemoteError
from esremote.lab.ops import control

NETS = range(251, 255)
ALIAS = "my_remote"
INDEX = f"{ALIAS}:leader-logs"
REMOTE_INDICES = ["leader-*", "auto-*"]
ROOT = Path(__file__).resolve().parent.parent


def free_net() -> int:
    for net in NETS:
        if not any(_listening(f"127.{net}.{k}.1", port) for k in (1, 2) for port in (9200, 9300, 2222)):
            return net
    sys.exit(f"every address range 127.NET.x.y for NET in {NETS.start}..{NETS.stop - 1} is in use")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _client(url, cluster: dict, user: str, password: str):
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    return Elasticsearch(url, ca_certs=cluster["ca_cert"], basic_auth=(user, password), request_timeout=10,
                         max_retries=0)


def ccs_clients(lab: dict) -> list:
    cluster = lab["clusters"]["local"]
    password = Path(lab["users"]["ccs_user"]["password_file"]).read_text().splitlines()[0]
    return [_client(f"https://{n['ip']}:{n['http_port']}", cluster, "ccs_user", password) for n in cluster["nodes"]]


def admin(lab: dict, name: str, **kwargs):
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    cluster = lab["clusters"][name]
    kwargs.setdefault("request_timeout", 30)
    return Elasticsearch(cluster["urls"], ca_certs=cluster["ca_cert"],
                         basic_auth=(cluster["username"], cluster["password"]), **kwargs)


@dataclass
class Observation:
    kind: str         # "search" | "states"
    start: float
    end: float
    ok: bool
    why: str = ""
    stopped: bool = False   # states: some work seen not running


@dataclass
class Prober:
    """Two threads, each until stopped: one cross-cluster search every `interval` s (round robin over
    the local nodes), and the work's states read back to back (every `interval` s at most)."""

    lab: dict
    interval: float
    observations: list[Observation] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        searchers = ccs_clients(self.lab)
        # one admin client per local node: the states stay readable while one node restarts
        cluster = self.lab["clusters"]["local"]
        admins = [_client(url, cluster, cluster["username"], cluster["password"]) for url in cluster["urls"]]
        for name, clients, look in (("search", searchers, self._search), ("states", admins, self._states)):
            thread = threading.Thread(target=self._loop, args=(name, clients, look), name=f"probe-{name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _loop(self, kind: str, clients: list, look) -> None:
        turn = 0
        next_at = time.perf_counter()
        while not self._stop.is_set():
            client = clients[turn % len(clients)]
            turn += 1
            start = time.perf_counter()
            ok, why, stopped = look(client)
            self.observations.append(Observation(kind, start, time.perf_counter(), ok, why, stopped))
            next_at = max(next_at + self.interval, time.perf_counter())
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    @staticmethod
    def _search(client) -> tuple[bool, str, bool]:
        try:
            clusters = client.search(index=INDEX, size=0).get("_clusters") or {}
            if clusters.get("skipped") or clusters.get("successful", 1) < clusters.get("total", 1):
                return False, "search: remote skipped", False
            return True, "", False
        except Exception as exc:  # noqa: BLE001 - a failed search is an observation
            return False, f"search: {type(exc).__name__}", False

    @staticmethod
    def _states(client) -> tuple[bool, str, bool]:
        from esremote.cluster.usage import read_usage  # noqa: PLC0415

        try:
            usage = read_usage(client, "local", ALIAS)
        except Exception as exc:  # noqa: BLE001
            return False, f"states unreadable: {type(exc).__name__}", False
        stopped = [f"{u.kind} {u.id} {u.state}" for u in usage.items if not u.running]
        if stopped:
            return False, "stopped: " + ", ".join(stopped), True
        return (True, "", False) if usage.items else (False, "no work found", False)


def bad_spans(observations: list[Observation], since: float, until: float) -> list[tuple[float, float, list]]:
    """The intervals in [since, until] when the latest search or the latest states read was bad:
    (from, to, the bad observations)."""
    latest: dict[str, Observation] = {}
    spans: list[tuple[float, float, list]] = []
    current: tuple[float, list] | None = None
    for obs in sorted((o for o in observations if since <= o.start <= until), key=lambda o: o.start):
        latest[obs.kind] = obs
        bad = [o for o in latest.values() if not o.ok]
        if bad and current is None:
            current = (obs.start, [obs])
        elif bad and current is not None:
            if not obs.ok:
                current[1].append(obs)
        elif not bad and current is not None:
            spans.append((current[0], obs.start, current[1]))
            current = None
    if current is not None:
        spans.append((current[0], float("inf"), current[1]))
    return spans


def outage(observations: list[Observation], since: float, until: float):
    """(seconds, from, to, spans before it): from the start of the bad span in which work is first
    seen stopped to the end of the last bad span; bad spans before it (say, a one-node remote
    restarting while the remote cluster server is set up) are returned apart."""
    spans = bad_spans(observations, since, until)
    first = next((i for i, s in enumerate(spans) if any(o.stopped for o in s[2])), None)
    if first is None:
        return 0.0, None, None, spans
    begin, end = spans[first][0], spans[-1][1]
    return end - begin, begin, end, spans[:first]


def wait_running(lab: dict, timeout: float = 180.0) -> None:
    from esremote.cluster.usage import read_usage  # noqa: PLC0415

    es = admin(lab, "local")
    searcher = ccs_clients(lab)[0]
    deadline = time.monotonic() + timeout
    while True:
        try:
            usage = read_usage(es, "local", ALIAS)
            clusters = searcher.search(index=INDEX, size=0).get("_clusters") or {}
            if usage.items and all(u.running for u in usage.items) and not clusters.get("skipped"):
                return
        except Exception:  # noqa: BLE001
            pass
        if time.monotonic() > deadline:
            raise EsRemoteError("the lab's cross-cluster work is not all running")
        time.sleep(0.5)


def timed_window(lab: dict, args, label: str, work) -> tuple[float, object, list[Observation]]:
    """Probe before, during and after `work()`; the outage seen and work's result."""
    wait_running(lab)
    prober = Prober(lab, args.interval_ms / 1000)
    prober.start()
    time.sleep(2.0)  # a baseline
    start = time.perf_counter()
    try:
        result = work()
        end = time.perf_counter()
        # until everything is observed running again (at most 120 s)
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            recent = [o for o in prober.observations if o.start > end]
            if len(recent) >= 4 and all(o.ok for o in recent[-4:]):
                break
    finally:
        prober.stop()
    obs = prober.observations
    seconds, first, back, before = outage(obs, start, time.perf_counter())
    baseline = [o for o in obs if o.start < start]
    for kind in ("search", "states"):
        mine = [o for o in obs if o.kind == kind]
        spacing = [b.start - a.start for a, b in zip(mine, mine[1:])] or [0.0]
        print(f"[{label}] {len(mine)} {kind} observations, spacing median {statistics.median(spacing) * 1000:.0f} ms "
              f"(max {max(spacing) * 1000:.0f} ms)", flush=True)
    print(f"[{label}] work {end - start:.2f} s; baseline {'all good' if all(o.ok for o in baseline) else 'NOT all good'}",
          flush=True)
    if before:  # bad spans before the outage, summed up per cause (the first bad observation's)
        causes: dict[str, list] = {}
        for begun, ended, bads in before:
            causes.setdefault(bads[0].why.split(":")[0] + ": " + bads[0].why.split(":")[1].split(",")[0].strip()
                              if ":" in bads[0].why else bads[0].why, []).append((begun, ended))
        for cause, spans in causes.items():
            longest = max(spans, key=lambda s: s[1] - s[0])
            print(f"[{label}] before the outage, {cause}: {len(spans)} bad spans, {sum(e - b for b, e in spans):.2f} s "
                  f"in all, from +{spans[0][0] - start:.1f} s to +{spans[-1][1] - start:.1f} s; longest "
                  f"{longest[1] - longest[0]:.2f} s at +{longest[0] - start:.1f} s", flush=True)
    if first is not None:
        bads = [o for o in obs if not o.ok and first <= o.start <= back]
        print(f"[{label}] outage seen from outside: {seconds:.2f} s (from +{first - start:.2f} s to "
              f"+{back - start:.2f} s after the start); {len(bads)} bad observations, "
              f"{sum(o.kind == 'search' for o in bads)} failed searches; first: {bads[0].why}; last: {bads[-1].why}",
              flush=True)
    else:
        print(f"[{label}] no work was seen stopped", flush=True)
    return seconds, result, obs


# ----------------------------------------------------------------------------- (a) esremote


def esremote_migrate(lab: dict, state: Path) -> dict:
    env = dict(os.environ, ESREMOTE_STATE_DIR=str(state))
    began = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv/bin/esremote"), "migrate", "--inventory", lab["inventory"], "--yes"],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - began
    summaries = sorted(state.rglob("summary.json"), key=lambda p: p.stat().st_mtime)
    if done.returncode != 0 or not summaries:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise EsRemoteError(f"esremote migrate failed (exit {done.returncode})")
    summary = json.loads(summaries[-1].read_text())
    summary["_run_dir"] = str(summaries[-1].parent)
    summary["_seconds"] = took
    return summary


def journal_phases(run_dir: Path, since, until) -> dict[str, tuple[str, str]]:
    """Per outage phase: (first, last) entry time in the run's journal, within the outage."""
    from esremote.journal import Journal  # noqa: PLC0415

    journal = Journal.open(run_dir.name, state_dir=run_dir.parent.parent if run_dir.parent.name == "runs"
                           else run_dir.parent)
    spans: dict[str, list[str]] = {}
    for entry in journal.entries():
        parts = entry.step.split("/")
        phase = parts[1] if parts[0] == "phase" and len(parts) > 1 else parts[0]
        at = datetime.fromisoformat(entry.time)
        if since and until and not since <= at <= until:
            continue
        if phase in ("stop_cross_cluster_ops", "reconnect", "verify", "resume_cross_cluster_ops"):
            spans.setdefault(phase, []).append(entry.time)
    return dict(sorted(((p, (min(t), max(t))) for p, t in spans.items()), key=lambda item: item[1][0]))


def rollback_outage_only(lab: dict, state: Path, run_id: str) -> None:
    """Undo the outage's part of the run (link, roles, keystores): prepared files stay."""
    env = dict(os.environ, ESREMOTE_STATE_DIR=str(state))
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from esremote.params import MigrationParams\n"
            "from esremote.flows.rollback import rollback_flow\n"
            "from esremote.tasks.runtime import open_run, close_run\n"
            "p = MigrationParams(inventory=Path(sys.argv[1]), run_id=sys.argv[2], state_dir=Path(sys.argv[3]))\n"
            "run = open_run(p)\n"
            "try:\n"
            "    print(rollback_flow(p, run.id, restore='outage'))\n"
            "finally:\n"
            "    close_run(run.id)\n")
    done = subprocess.run([sys.executable, "-c", code, lab["inventory"], run_id, str(state)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise EsRemoteError("the rollback (outage part) failed")


# ------------------------------------------------------------------------ (b) Elastic's order


def guide_prepare(lab: dict) -> str:
    """Not timed (the guide does it before): roles with remote_indices, a new cross-cluster key."""
    local, remote = admin(lab, "local"), admin(lab, "remote")
    grants = {"ccs_role": ["read", "read_cross_cluster", "view_index_metadata"],
              "ccr_role": ["cross_cluster_replication", "cross_cluster_replication_internal"]}
    for role, privileges in grants.items():
        body = local.security.get_role(name=role)[role]
        local.security.put_role(name=role, cluster=body["cluster"], indices=body["indices"],
                                remote_indices=[{"clusters": [ALIAS], "names": REMOTE_INDICES,
                                                 "privileges": privileges}])
    key = remote.security.create_cross_cluster_api_key(
        name="bench-guide-key", access={"search": [{"names": REMOTE_INDICES}],
                                        "replication": [{"names": REMOTE_INDICES}]})
    return key["encoded"]


def guide_outage(lab: dict, encoded: str, phases: dict[str, float]) -> None:
    from esremote.cluster import remote_settings as rs  # noqa: PLC0415
    from esremote.cluster import xcluster_work as xw  # noqa: PLC0415
    from esremote.cluster.client import connect, poll  # noqa: PLC0415
    from esremote.cluster.restart import rolling_restart  # noqa: PLC0415
    from esremote.cluster.usage import read_usage  # noqa: PLC0415
    from esremote.inventory import load_inventory  # noqa: PLC0415
    from esremote.node_keystore import NodeKeystore  # noqa: PLC0415
    from esremote.ssh import SSHPool  # noqa: PLC0415
    from esremote.verify import patterns_and_followers, verify_api_key_link  # noqa: PLC0415

    inventory = load_inventory(Path(lab["inventory"]))
    link = inventory.aliases[ALIAS]
    es = connect(inventory.cluster(link.local))
    usage = read_usage(es, link.local, ALIAS)
    records = xw.record_work(usage)
    saved = rs.fetch_remote(es, link.local, ALIAS)
    patterns, followers = patterns_and_followers(usage)
    port = inventory.cluster(link.remote).remote_cluster_port

    def all_in(running: bool):
        report = read_usage(es, link.local, ALIAS)
        return report.items and all(i.running is running for i in report.items)

    with SSHPool() as pool:
        keystores = []
        for node in inventory.nodes(link.local):
            password = node.keystore_password.resolve() if node.keystore_password else None
            keystores.append(NodeKeystore(pool.get(node.ssh_target()), es_home=str(node.es_home),
                                          config_dir=str(node.config_dir), password=password))
        mark = time.perf_counter()

        def lap(name):
            nonlocal mark
            now = time.perf_counter()
            phases[name] = now - mark
            mark = now

        outcomes = xw.apply_steps(es, link.local, xw.plan_stop(records, usage))
        if xw.failed(outcomes):
            raise EsRemoteError(f"stopping the work failed: {xw.failed(outcomes)}")
        poll(lambda: all_in(False), timeout=60, what="the work stopped", interval=0.1)
        lap("stop")
        rs.apply_settings(es, link.local, rs.plan_removal(saved))
        poll(lambda: ALIAS not in es.cluster.remote_info().body, timeout=30, what="alias gone", interval=0.1)
        lap("null alias")
        for keystore in keystores:
            keystore.add(f"cluster.remote.{ALIAS}.credentials", encoded)
        lap("keystores")
        rolling_restart(inventory, link.local, pool=pool, es=es)
        lap("rolling restart")
        rs.apply_settings(es, link.local, rs.plan_readd(None, saved, port=port))
        lap("re-add")
        verify_api_key_link(inventory, ALIAS, pool=pool, index_patterns=patterns)
        lap("verify")
        resumed = xw.apply_steps(es, link.local, xw.plan_resume(records, read_usage(es, link.local, ALIAS)))
        if xw.failed(resumed):
            raise EsRemoteError(f"resuming the work failed: {xw.failed(resumed)}")
        poll(lambda: all_in(True), timeout=60, what="the work running", interval=0.1)
        lap("resume")


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = _timing.arguments(__doc__, rounds=1, warmup=0)
    parser.add_argument("--small", action="store_true", help="1 + 1 nodes, start delay 0 (a quick try)")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="probe interval (default 50)")
    parser.add_argument("--version", default="8.15.0", help="lab version (8.13 or later; default 8.15.0)")
    parser.add_argument("--start-delay", type=float, default=None, help="node start delay (default 5, --small 0)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    nodes = 1 if args.small else 3
    delay = args.start_delay if args.start_delay is not None else (0.0 if args.small else 5.0)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    print(_timing.machine(), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="esremote-bench-outage-"))
    workdir.chmod(0o755)
    lab_dir = workdir / "lab"
    lab_dir.mkdir(mode=0o755)
    lab_dir.chmod(0o755)
    try:
        began = time.perf_counter()
        control.up(lab_dir, {"net": free_net(), "version": args.version, "local_nodes": nodes,
                             "remote_nodes": nodes, "start_delay": delay})
        lab = json.loads((lab_dir / "lab.json").read_text())
        print(f"lab up ({args.version}, {nodes} + {nodes} nodes, start delay {delay:g} s, seeded) in "
              f"{time.perf_counter() - began:.1f} s; one lab for both: (a), its rollback (outage part), (b)",
              flush=True)
        _measure(lab, workdir / "state", args)
    finally:
        if args.keep:
            print(f"lab kept in {lab_dir}")
        else:
            if (lab_dir / "lab.json").exists():
                control.down(lab_dir)
            shutil.rmtree(workdir, ignore_errors=True)


def _measure(lab: dict, state: Path, args) -> None:
    state.mkdir()
    summary: dict = {}

    def a():
        summary.update(esremote_migrate(lab, state))

    esr, _, _ = timed_window(lab, args, "esremote", a)
    if summary.get("status") != "migrated":
        raise EsRemoteError(f"the migration did not succeed: {summary.get('status')}: {summary.get('message')}")
    journal = summary.get("outage") or {}
    print(f"[esremote] `esremote migrate` took {summary['_seconds']:.1f} s in all; the journal's outage: "
          f"{journal.get('seconds')} s (plan expected: {journal.get('expected') or '-'})", flush=True)
    try:
        first = datetime.fromisoformat(journal["started"]) if journal.get("started") else None
        last = datetime.fromisoformat(journal["ended"]) if journal.get("ended") else None
        spans = journal_phases(Path(summary["_run_dir"]), first, last)
        for phase, (lo, hi) in spans.items():
            lo_t, hi_t = datetime.fromisoformat(lo), datetime.fromisoformat(hi)
            at = f" (+{(lo_t - first).total_seconds():.2f} s)" if first else ""
            print(f"  [esremote] {phase}: {(hi_t - lo_t).total_seconds():.2f} s in the journal{at}")
    except Exception as exc:  # noqa: BLE001 - the phases are extra detail
        print(f"  [esremote] per-phase figures unavailable: {type(exc).__name__}: {exc}")

    began = time.perf_counter()
    rollback_outage_only(lab, state, summary["run_id"])
    encoded = guide_prepare(lab)
    print(f"rolled back (outage part) and prepared the guide's roles and key in {time.perf_counter() - began:.1f} s",
          flush=True)
    phases: dict[str, float] = {}
    guide, _, _ = timed_window(lab, args, "guide", lambda: guide_outage(lab, encoded, phases))
    for name, seconds in phases.items():
        print(f"  [guide] {name}: {seconds:.2f} s")

    ratio = esr / guide if guide else float("inf")
    met = esr <= 2.0 and ratio <= 0.1
    print(f"goal: esremote <= 2 s and <= 0.1 x the guide's: {'met' if met else 'NOT met'}")
    print(f"outage_window: esremote={esr:.2f}s guide={guide:.2f}s ratio={ratio:.3f}")


if __name__ == "__main__":
    _timing.run(main)
