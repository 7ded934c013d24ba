"""Fan-out: the per-node configuration steps on 48 nodes against 3, over SSH to a files-only lab.

The lab is `esremote lab up --files-only` with N + N nodes (default 48 + 48): every node has its
home laid out like a real one (bin/ scripts, config/elasticsearch.yml, keystore and certs; a
package install's owners and modes when run as root) and an SSH endpoint, all served by one
embedded SSH server process, and no Elasticsearch process. The steps are prepare_remote's on the
remote cluster's nodes, through the task bodies the migration runs (`esremote.tasks`), each run
with a journal of its own and a new SSH connection pool (so a node's share includes connecting):

    read     read_node: elasticsearch.yml, the migration's files, the keystore's entry names
    p12      put_file: the node's remote cluster server PKCS#12 (made once, before the rounds)
    CA       put_file: the remote cluster server CA
    keystore keystore_add: the PKCS#12 password (the node's bin/elasticsearch-keystore, value on stdin)
    yml      edit_yml: remote_cluster_server.enabled, remote_cluster.host/port

`read` on every node first (preflight), then the other four per node at the same time, as the
prepare_remote flow submits them: at most `--max-parallel` steps at once (MigrationParams.max_parallel,
default here its maximum, 64); a step that fails on a transient error is retried as its task would
be (after 1, 3, 8 s), and counted. A: those steps on `--nodes` nodes; B: on the first `--small` (3) of
them. The nodes' files are put back as they were after every round (untimed). ratio = A/B = t48/t3;
goal <= 1.5.

On one machine the nodes' own work (a keystore CLI start and its PBKDF2 per call, a shell per SSH
command) shares the cores with esremote, so each round also reports CPU seconds: esremote's (this
process) and the nodes' (the SSH server process and every command it ran), and the floor they set:
their sum over the core count. A real cluster does the nodes' share on the nodes.

A second figure: fact gathering and the plan at 3, 12 and 48 nodes per cluster (`--sizes`):
preflight's node checks, then every node's read, over SSH, as `collect_facts` runs them, then
`migration_facts` + `build_plan` + the plan's Markdown; and the plan alone at 48 nodes for 1,
4 and 16 aliases. The files-only lab serves no REST, so the five GETs of each cluster's facts and
`_remote/info` are answered in-process by a stub with N nodes, and no cross-cluster work is listed.

    .venv/bin/python benchmarks/fanout.py [--nodes 48] [--small 3] [--max-parallel 64] [--rounds 3]
                                          [--lab-dir DIR] [--keep-lab] [--sizes 3,12,48]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import _timing
import yaml

from esremote.errors import is_transient
from esremote.fanout import fan_out
from esremote.lab.ops import control, labfiles
from esremote.lab.ops.builder import DEFAULT_VERSION
from esremote.node_settings import CA_MODE, P12_MODE, SERVER_CA, SERVER_P12, SERVER_P12_PASSWORD, remote_server_settings
from esremote.params import MigrationParams
from esremote.plan import build_plan
from esremote.preflight import preflight
from esremote.tasks.certs import make_certificates, p12_path, password_path
from esremote.tasks.common import RETRYING
from esremote.tasks.facts import involved_nodes, migration_facts, read_node
from esremote.tasks.nodes import edit_yml, keystore_add, put_file
from esremote.tasks.runtime import Run, close_run, open_run

NETS = range(247, 251)  # 127.NET.x.y: beside lab_start.py's 251..254, above most of the tests' picks
GOAL = 1.5
MAX_PARALLEL = 64  # MigrationParams.max_parallel's maximum
CONFIG_STEPS = ("p12", "CA", "keystore", "yml")
PORT = 9443


def free_net() -> int:
    """A NET whose first addresses of both clusters have nothing on the embedded SSH port."""
    for net in NETS:
        if not any(_listening(f"127.{net}.{k}.1", 2222) for k in (1, 2)):
            return net
    sys.exit(f"every address range 127.NET.x.y for NET in {NETS.start}..{NETS.stop - 1} is in use: "
             "take those labs down first, or give --lab-dir")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


# ------------------------------------------------------------------------------------- the lab


def lab_up(args, workdir: Path) -> Path:
    """A files-only lab with `--nodes` + `--nodes` nodes: the one given, or a new one."""
    if args.lab_dir is not None:
        lab_dir = args.lab_dir.absolute()
        options = labfiles.read_lab_json(lab_dir)["options"]
        if not options.get("files_only") or options["remote_nodes"] < args.nodes:
            sys.exit(f"--lab-dir {lab_dir}: not a files-only lab with {args.nodes} remote nodes or more")
        print(f"lab in {lab_dir}: files only, {options['local_nodes']}+{options['remote_nodes']} nodes, "
              f"version {options['version']}")
        control.up(lab_dir, seed=False)  # (re)starts its SSH endpoints when they are not running
        return lab_dir
    lab_dir = workdir / "lab"
    options = {"files_only": True, "local_nodes": args.nodes, "remote_nodes": args.nodes, "net": free_net(),
               "version": args.version}
    started = time.perf_counter()
    control.up(lab_dir, options, seed=False)
    print(f"lab up --files-only {args.nodes}+{args.nodes} --version {args.version} --net {options['net']}: "
          f"{_timing.seconds(time.perf_counter() - started)} (untimed: keys, certificates, keystores)")
    return lab_dir


class Homes:
    """Each remote node's config/ copied aside once, put back after every round (`cp -a`: owners,
    modes, the keystore as it was; the run's backups and new files go)."""

    def __init__(self, lab_dir: Path) -> None:
        remote = labfiles.read_lab_json(lab_dir)["clusters"]["remote"]
        self.nodes = {n["name"]: Path(n["home"]) for n in remote["nodes"]}
        for home in self.nodes.values():
            saved = home / "config.bench-saved"
            if not saved.exists():
                _cp(home / "config", saved)

    def restore(self, names: list[str]) -> None:
        for name in names:
            home = self.nodes[name]
            shutil.rmtree(home / "config")
            _cp(home / "config.bench-saved", home / "config")

    def forget(self) -> None:
        for home in self.nodes.values():
            shutil.rmtree(home / "config.bench-saved", ignore_errors=True)


def _cp(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", "--", str(source), str(target)], check=True)


def cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds of a process (utime + stime) and of the children it waited for (cutime + cstime)."""
    fields = [int(f) for f in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    tick = os.sysconf("SC_CLK_TCK")
    return (fields[0] + fields[1]) / tick, (fields[2] + fields[3]) / tick


# ----------------------------------------------------------------------------- the node steps


@dataclass
class Side:
    """One variant: the steps on `keys`, each round with a new run (journal, SSH pool) opened untimed."""

    name: str
    keys: list[str]
    params: MigrationParams
    certs: Run
    homes: Homes
    server_pid: int
    run: Run | None = None
    phases: dict[str, list[float]] = field(default_factory=lambda: {"read": [], "configure": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"esremote": [], "server": [], "commands": []})
    retried: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        self.run = open_run(self.params.model_copy(update={"run_id": None}))

    def steps(self) -> None:
        run, keys, workers = self.run, self.keys, self.params.max_parallel
        cpu, nodes_cpu = time.process_time(), cpu_of(self.server_pid)
        started = time.perf_counter()
        fan_out(keys, lambda key: as_task(self, read_node.fn, run.id, key), max_workers=workers).raise_if_failed()
        read = time.perf_counter()
        fan_out([(key, step) for key in keys for step in CONFIG_STEPS],
                lambda item: as_task(self, self.step, *item), max_workers=workers).raise_if_failed()
        self.phases["read"].append(read - started)
        self.phases["configure"].append(time.perf_counter() - read)
        server, commands = cpu_of(self.server_pid)
        self.cpu["esremote"].append(time.process_time() - cpu)
        self.cpu["server"].append(server - nodes_cpu[0])
        self.cpu["commands"].append(commands - nodes_cpu[1])

    def step(self, key: str, step: str) -> object:
        run, certs = self.run, self.certs
        node = run.node(key)
        if step == "p12":
            return put_file.fn(run.id, key, f"bench/p12/{key}", SERVER_P12,
                               str(p12_path(certs, "remote", node.name)), P12_MODE)
        if step == "CA":
            return put_file.fn(run.id, key, f"bench/ca/{key}", SERVER_CA, str(certs.journal.run_dir / "pki" /
                                                                              "remote" / "ca.crt"), CA_MODE)
        if step == "keystore":
            return keystore_add.fn(run.id, key, f"bench/keystore/{key}",
                                   {SERVER_P12_PASSWORD: str(password_path(certs, "remote"))})
        return edit_yml.fn(run.id, key, f"bench/yml/{key}", remote_server_settings(node.address, PORT))

    def after(self) -> None:
        close_run(self.run.id)
        self.homes.restore([key.split("/", 1)[1] for key in self.keys])
        self.prepare()

    def variant(self) -> _timing.Variant:
        return _timing.Variant(self.name, self.steps, after=self.after)


def as_task(side: Side, fn, *args):
    """`fn(*args)` retried as its Prefect task would be (RETRYING: up to 3 more tries after 1, 3
    and 8 s, on transient errors only); every retry is counted, and printed with the figures."""
    delays = list(RETRYING["retry_delay_seconds"])
    while True:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - classified as the task's retry condition does
            if not delays or not is_transient(exc):
                raise
            side.retried.append(f"{' '.join(map(str, args))}: {exc}")
            time.sleep(delays.pop(0))


def node_steps(args, lab_dir: Path, workdir: Path) -> tuple[float, float]:
    # The rounds below sign again with the same CA: the run keeps its key only encrypted (tasks/certs.py).
    os.environ.setdefault("ESREMOTE_BENCH_CA_PASSPHRASE", os.urandom(12).hex())
    params = MigrationParams(inventory=lab_dir / "inventory.yml", state_dir=workdir / "state",
                             max_parallel=args.max_parallel, ca_passphrase={"env": "ESREMOTE_BENCH_CA_PASSPHRASE"})
    homes = Homes(lab_dir)
    server_pid = control.tracked(labfiles.load_layout(lab_dir))["sshserver"]
    certs = open_run(params)
    keys = [str(n) for n in certs.nodes("remote")][:args.nodes]
    make_certificates.fn(certs.id, "remote", keys[:1])  # the CA, made once
    made = {}
    for count in (args.small, args.nodes):  # each the way prepare_remote makes them, untimed for the rounds
        started = time.perf_counter()
        for path in (certs.journal.run_dir / "pki" / "remote").glob("*.p12"):
            path.unlink()
        make_certificates.fn(certs.id, "remote", keys[:count])
        made[count] = time.perf_counter() - started
    make_certificates.fn(certs.id, "remote", keys)
    print(f"make_certificates (a key pair and PKCS#12 per node, side by side): {args.small} nodes "
          f"{_timing.seconds(made[args.small])}, {args.nodes} nodes {_timing.seconds(made[args.nodes])}")
    big = Side(f"{args.nodes} nodes", keys, params, certs, homes, server_pid)
    small = Side(f"{args.small} nodes", keys[:args.small], params, certs, homes, server_pid)
    print(f"steps per node: read, then {', '.join(CONFIG_STEPS)} at once; max_parallel {args.max_parallel}")
    try:
        for side in (big, small):
            side.prepare()
        a, b = big.variant(), small.variant()
        _timing.alternate(a, b, rounds=args.rounds, warmup=args.warmup)
    finally:
        for side in (big, small):
            if side.run is not None:
                close_run(side.run.id)
        close_run(certs.id)
        homes.forget()
    ratio = _timing.report(a, b, goal=f"t{args.nodes}/t{args.small} <= {GOAL}", met=a.median / b.median <= GOAL)
    cores = os.cpu_count() or 1
    for side in (big, small):
        phases = ", ".join(f"{k} {_timing.seconds(statistics.median(v))}" for k, v in side.phases.items())
        es_cpu, server, commands = (statistics.median(side.cpu[k]) for k in ("esremote", "server", "commands"))
        count, nodes_cpu = len(side.keys), server + commands
        if side.retried:
            print(f"{side.name}: {len(side.retried)} step(s) retried on a transient error, first: {side.retried[0]}")
        print(f"{side.name}: {phases}; CPU: esremote {es_cpu:.2f} s ({es_cpu / count * 1000:.0f} ms/node), "
              f"nodes {nodes_cpu:.2f} s ({nodes_cpu / count * 1000:.0f} ms/node: SSH server {server:.2f} s, "
              f"commands {commands:.2f} s); floor on {cores} cores {(es_cpu + nodes_cpu) / cores:.2f} s")
    return a.median, b.median


# ------------------------------------------------------------------------- facts and the plan


class _Answer(SimpleNamespace):
    pass


class StubES:
    """The REST answers fact gathering reads, for a cluster of the given nodes (no network)."""

    def __init__(self, cluster: str, nodes: list[dict], alias: str, proxy: str | None) -> None:
        body = {"cluster_name": cluster, "nodes": {
            f"id-{n['name']}": {"name": n["name"], "ip": n["ip"], "version": "8.17.0",
                                "roles": ["data", "master"], "settings": {}} for n in nodes}}
        persistent = {f"cluster.remote.{alias}.mode": "proxy",
                      f"cluster.remote.{alias}.proxy_address": proxy} if proxy else {}
        info = {alias: {"connected": True, "mode": "proxy", "proxy_address": proxy, "num_proxy_sockets_connected": 18,
                        "max_proxy_socket_connections": 18, "initial_connect_timeout": "30s",
                        "skip_unavailable": True}} if proxy else {}
        answer = lambda data: (lambda **_: _Answer(body=data))  # noqa: E731
        self.nodes = SimpleNamespace(info=answer(body))
        self.license = SimpleNamespace(get=answer({"license": {"type": "trial", "status": "active"}}))
        self.xpack = SimpleNamespace(info=answer({"features": {"security": {"enabled": True}}}))
        self.cluster = SimpleNamespace(
            health=answer({"cluster_name": cluster, "status": "green", "number_of_nodes": len(nodes)}),
            get_settings=answer({"persistent": persistent, "transient": {}}),
            remote_info=answer(info))

    def close(self) -> None:
        pass


NO_WORK = SimpleNamespace(items=[], notes=[], role_names=lambda: [])


def subset_inventory(lab_dir: Path, workdir: Path, count: int) -> Path:
    """The lab's inventory with its first `count` nodes of each cluster."""
    data = yaml.safe_load((lab_dir / "inventory.yml").read_text())
    for cluster in data["clusters"].values():
        cluster["nodes"], cluster["urls"] = cluster["nodes"][:count], cluster["urls"][:count]
    path = workdir / f"inventory-{count}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def gather_facts(run: Run, lab: dict, count: int):
    """collect_facts' work with the REST side stubbed: the alias's preflight (its node checks over
    SSH), then every node's read, `max_parallel` nodes at a time."""
    alias = next(iter(run.aliases))
    link = run.link(alias)
    remote = lab["clusters"][link.remote]["nodes"][:count]
    clients = {link.local: StubES(link.local, lab["clusters"][link.local]["nodes"][:count], alias,
                                  f"{remote[0]['ip']}:9300"),
               link.remote: StubES(link.remote, remote, alias, None)}
    workers = run.params.max_parallel
    report = preflight(run.inventory, alias, pool=run.pool, clients=clients, max_workers=workers,
                       usage_finder=lambda *_: NO_WORK)
    if report.blocking:
        raise SystemExit(f"preflight found blocking problems on the lab: {report.blocking}")
    keys = involved_nodes(run)
    reads = fan_out(keys, lambda key: read_node.fn(run.id, key), max_workers=workers).raise_if_failed()
    access = {alias: {"roles": [], "access": {"search": [{"names": ["*"]}]}}}
    return migration_facts(run, {alias: report}, [reads[k] for k in keys], access)


def plan_of(params: MigrationParams, facts) -> int:
    plan = build_plan(params, facts)
    return len(plan.to_markdown()) + len(plan.rows())


def with_aliases(facts, count: int):
    """The facts with `count` aliases (copies of the first one under other names)."""
    first = facts.aliases[0]
    return replace(facts, aliases=[replace(first, alias=f"{first.alias}_{i}" if i else first.alias)
                                   for i in range(count)])


def facts_and_plan(args, lab_dir: Path, workdir: Path) -> None:
    lab = labfiles.read_lab_json(lab_dir)
    sizes = [s for s in args.sizes if s <= args.nodes]
    print(f"\nfacts and plan by nodes per cluster ({args.rounds} rounds each, median; REST stubbed, SSH real)")
    print(f"{'nodes':>12} {'facts':>9} {'per node':>9} {'plan':>9} {'per node':>9}")
    rows, facts_48 = [], None
    for count in sizes:
        params = MigrationParams(inventory=subset_inventory(lab_dir, workdir, count), state_dir=workdir / "state",
                                 max_parallel=args.max_parallel)
        gathered, planned = [], []
        for _ in range(args.rounds):
            run = open_run(params.model_copy(update={"run_id": None}))
            try:
                started = time.perf_counter()
                facts = gather_facts(run, lab, count)
                middle = time.perf_counter()
                plan_of(run.params, facts)
                gathered.append(middle - started)
                planned.append(time.perf_counter() - middle)
            finally:
                close_run(run.id)
        total = 2 * count
        g, p = statistics.median(gathered), statistics.median(planned)
        rows.append((count, g, p))
        facts_48 = (params, facts)
        print(f"{count:>4}+{count:<4} {_timing.seconds(g):>12} {g / total * 1000:>6.1f} ms "
              f"{_timing.seconds(p):>9} {p / total * 1000:>6.2f} ms")
    (n0, g0, p0), (n1, g1, p1) = rows[0], rows[-1]
    print(f"{n1}/{n0} nodes = {n1 / n0:g}x: facts {g1 / g0:.2f}x the time, plan {p1 / p0:.2f}x "
          f"(linear: at most {n1 / n0:g}x)")
    params, facts = facts_48
    print(f"plan by aliases at {sizes[-1]}+{sizes[-1]} nodes:")
    times = {}
    for count in (1, 4, 16):
        many = with_aliases(facts, count)
        runs = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            plan_of(params, many)
            runs.append(time.perf_counter() - started)
        times[count] = statistics.median(runs)
        print(f"  {count:>2} alias{'es' if count > 1 else '  '}: {_timing.seconds(times[count])} "
              f"({times[count] / count * 1000:.1f} ms per alias)")
    print(f"16/1 aliases: plan {times[16] / times[1]:.2f}x the time (linear: at most 16x)")
    print(f"facts_plan: facts{n0}={g0:.3f}s facts{n1}={g1:.3f}s plan{n0}={p0:.3f}s plan{n1}={p1:.3f}s "
          f"ratio={g1 / g0:.2f}")


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = _timing.arguments(__doc__, rounds=3)
    parser.add_argument("--nodes", type=int, default=48, help="nodes per cluster, and A's node count (default 48)")
    parser.add_argument("--small", type=int, default=3, help="B's node count (default 3)")
    parser.add_argument("--max-parallel", type=int, default=MAX_PARALLEL,
                        help=f"steps at once, as MigrationParams.max_parallel (default {MAX_PARALLEL})")
    parser.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")], default=[3, 12, 48],
                        help="node counts per cluster for the facts and plan figure (default 3,12,48)")
    parser.add_argument("--version", default=DEFAULT_VERSION,
                        help=f"Elasticsearch version of the lab built here (default {DEFAULT_VERSION}; its keystore "
                             "format sets the KDF's cost: 210000 PBKDF2 rounds from 8.14, 10000 before)")
    parser.add_argument("--lab-dir", type=Path, help="a files-only lab to use (default: build one, then remove it)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab built here up, and print its directory")
    parser.add_argument("--skip-facts", action="store_true", help="only the node steps")
    args = parser.parse_args()
    if not 1 <= args.small < args.nodes:
        sys.exit("--small must be at least 1 and below --nodes")
    sys.stdout.reconfigure(line_buffering=True)  # progress as it happens, also into a file
    workdir = Path(tempfile.mkdtemp(prefix="esremote-bench-fanout-"))
    workdir.chmod(0o755)  # root-run lab nodes play a package install: the service user must reach the homes
    lab_dir, failed = None, True
    try:
        lab_dir = lab_up(args, workdir)
        t_big, t_small = node_steps(args, lab_dir, workdir)
        if not args.skip_facts:
            facts_and_plan(args, lab_dir, workdir)
        failed = False
        print(f"fanout: t{args.small}={t_small:.2f}s t{args.nodes}={t_big:.2f}s ratio={t_big / t_small:.2f}")
    finally:
        if args.lab_dir is not None or lab_dir is None:  # not ours, or never built: only our state goes
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep_lab:
            print(f"lab kept in {lab_dir}: `esremote lab down --dir {lab_dir}` when done")
        else:
            control.down(lab_dir)
            if failed:  # its logs (run/sshserver.log) say what the nodes saw
                print(f"lab taken down, its directory kept for the logs: {lab_dir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    _timing.run(main)
