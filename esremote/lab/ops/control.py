"""`esremote lab up|status|down|fault`: run a lab built by builder.py.

Every process the lab starts is recorded by pid: nodes in their home's `run/elasticsearch.pid` (the
service command writes it), the SSH endpoints and the writer in `DIR/run/processes.json`. `down`
stops them by those pids, then looks for any process still running out of DIR (a node started by
hand, say) and stops it too, so nothing of the lab is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from esremote.errors import ClusterError, ConfigError, EsRemoteError
from esremote.files import atomic_write
from esremote.lab.ops import builder, labfiles, package_layout, sshlab
from esremote.lab.node import service
from esremote.lab.ops.builder import LabOptions, Layout, NodeSpec

FAULTS = ("node-fails-to-start", "slow-start", "remote-port-blocked", "ssh-drop", "api-key-invalidated",
          "http-overload", "wrong-credentials")
HEALTH_TIMEOUT = 60.0
FILES_ONLY = "files only"  # the `health` status says it of a files-only lab's clusters: no REST to ask
STOP_TIMEOUT = 30.0
_LAB_MODULES = ("esremote.lab.node", "esremote.lab.net.sshserver", "esremote.lab.ops.seed")


# ------------------------------------------------------------------------------------------ up


def up(lab_dir: str | os.PathLike, options: dict | None = None, *, seed: bool = True,
       health_timeout: float = HEALTH_TIMEOUT) -> Layout:
    """Build (or reuse) the lab in `lab_dir`, start everything, wait for green, seed once.

    `options` holds LabOptions fields; those left out keep the built lab's values (or the defaults).
    A files-only lab (`files_only`) starts its SSH endpoints only: every node has its home (bin/,
    config/ with elasticsearch.yml, keystore and certs, laid out like a package install when root)
    and an SSH endpoint, and no Elasticsearch process, so nothing answers on 9200 or 9300."""
    layout = prepare(lab_dir, options or {})
    sshlab.prepare(layout)
    labfiles.write_lab_json(layout)
    labfiles.write_inventory(layout)
    try:
        _start(layout, seed, health_timeout)
    except EsRemoteError as exc:
        exc.message += (f"; the node logs are in {layout.dir}/clusters/*/nodes/*/logs; stop what runs"
                        f" with `esremote lab down --dir {layout.dir}`")
        raise
    return layout


def _start(layout: Layout, seed: bool, health_timeout: float) -> None:
    if layout.options.files_only:  # homes and SSH endpoints only: no node, no REST, nothing to seed
        start_ssh(layout)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:  # SSH endpoints come up while the nodes start
        ssh = pool.submit(start_ssh, layout)
        start_nodes(layout)
        ssh.result()
    for cluster in layout.clusters:
        wait_health(layout, cluster.name, "green", health_timeout)
    if seed and not seeded(layout):
        from esremote.lab.ops import seed as seeding  # noqa: PLC0415

        progress = _seed_progress(layout)
        seeding.seed(labfiles.read_lab_json(layout.dir), lambda c, u=None: client(layout, c, u),
                     done=set(progress["done"]), mark=lambda step: _seed_mark(layout, progress, step))
        progress["complete"] = True
        _seed_save(layout, progress)
    if seeded(layout):
        start_writer(layout)


def _seed_progress(layout: Layout) -> dict:
    try:
        return json.loads((layout.run_dir / "seed.json").read_text())
    except (OSError, ValueError):
        return {"done": [], "complete": False}


def _seed_mark(layout: Layout, progress: dict, step: str) -> None:
    progress["done"].append(step)
    _seed_save(layout, progress)


def _seed_save(layout: Layout, progress: dict) -> None:
    atomic_write(layout.run_dir / "seed.json", json.dumps(progress, indent=2).encode())


def prepare(lab_dir: str | os.PathLike, given: dict) -> Layout:
    """A built lab: reuse DIR when it holds a compatible one, build it when DIR is new or empty."""
    lab_dir = Path(lab_dir).absolute()
    unknown = set(given) - {f.name for f in fields(LabOptions)}
    if unknown:
        raise TypeError(f"unknown lab options: {', '.join(sorted(unknown))}")
    if lab_dir.exists() and not lab_dir.is_dir():
        raise ConfigError(f"--dir {lab_dir} is a file, not a directory: give a new or empty directory")
    if (lab_dir / "lab.json").exists():
        built = LabOptions.from_dict(labfiles.read_lab_json(lab_dir)["options"])
        wanted = LabOptions.from_dict(built.__dict__ | given).validate()
        changed = {k: (v, wanted.fixed()[k]) for k, v in built.fixed().items() if wanted.fixed()[k] != v}
        if changed:
            what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ConfigError(f"--dir {lab_dir} holds a lab built with other options ({what}); "
                              "use a new directory, or `esremote lab down` and remove this one")
        layout = builder.plan(lab_dir, wanted)
        builder.set_start_delay(layout, wanted.start_delay)
        return layout
    if lab_dir.exists() and any(lab_dir.iterdir()):
        raise ConfigError(f"--dir {lab_dir} is not empty and holds no lab (no lab.json); "
                          "use a new or empty directory")
    options = LabOptions(**given).validate()
    if package_layout.active():
        package_layout.check_reachable(lab_dir, package_layout.service_account())
    try:
        lab_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--dir {lab_dir} cannot be created ({exc.strerror}): give a directory "
                          "this user can write") from None
    return builder.build(lab_dir, options)


def seeded(layout: Layout) -> bool:
    return _seed_progress(layout).get("complete", False)


def start_nodes(layout: Layout, nodes: list[NodeSpec] | None = None) -> None:
    """Start nodes in parallel through their service command; raise with every failure's log tail."""
    nodes = nodes if nodes is not None else layout.nodes()
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        results = list(pool.map(_service_start, nodes))
    failed = [(node, out) for node, (code, out) in zip(nodes, results) if code != 0]
    if failed:
        details = "; ".join(f"{node.name}: {' | '.join(out.strip().splitlines()[-3:])}" for node, out in failed)
        raise EsRemoteError(f"{len(failed)} of {len(nodes)} nodes failed to start ({details})")


def _service_start(node: NodeSpec) -> tuple[int, str]:
    result = subprocess.run([str(node.service), "start"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    return result.returncode, result.stderr or result.stdout


def client(layout: Layout, cluster: str, user: str | None = None):
    from esremote.lab.ops.client import LabClient  # noqa: PLC0415

    spec = layout.cluster(cluster)
    username, password_file = builder.ELASTIC_USER, layout.elastic_password_file(cluster)
    if user is not None:
        username, password_file = user, layout.user_password_file(user)
    return LabClient(spec.url, ca_cert=str(layout.http_ca), username=username,
                     password=builder.read_secret(password_file), cluster=cluster)


def wait_health(layout: Layout, cluster: str, status: str = "green", timeout: float = HEALTH_TIMEOUT) -> dict:
    """Poll the cluster's health until `status` with every node in, or raise when `timeout` passes."""
    spec = layout.cluster(cluster)
    rest = client(layout, cluster)
    deadline = time.monotonic() + timeout
    last: dict | str = "no answer"
    order = ("red", "yellow", "green")
    while time.monotonic() < deadline:
        try:
            last = rest.get("/_cluster/health")
            if order.index(last.get("status", "red")) >= order.index(status) \
                    and last.get("number_of_nodes") == len(spec.nodes):
                return last
        except ClusterError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise EsRemoteError(f"cluster {cluster} is not {status} with {len(spec.nodes)} nodes after {timeout:g}s "
                        f"(last health: {json.dumps(last) if isinstance(last, dict) else last})")


# ----------------------------------------------------------------------- tracked processes


def processes_file(layout: Layout) -> Path:
    return layout.run_dir / "processes.json"


def tracked(layout: Layout) -> dict[str, int]:
    try:
        return json.loads(processes_file(layout).read_text())
    except (OSError, ValueError):
        return {}


def _track(layout: Layout, pids: dict[str, int | None]) -> None:
    current = tracked(layout) | pids
    current = {k: v for k, v in current.items() if v is not None}
    atomic_write(processes_file(layout), json.dumps(current, indent=2).encode(), mode=0o644)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a lab process whose parent is gone may linger as one)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_ssh(layout: Layout) -> None:
    mine = {k: v for k, v in tracked(layout).items() if k == "sshserver" or k.startswith("sshd-")}
    if mine and all(pid_alive(p) for p in mine.values()) and \
            all(sshlab.port_open(n.ip, n.ssh_port) for n in layout.nodes()):
        return
    for name, pid in mine.items():
        terminate(pid)
    _track(layout, {name: None for name in mine})
    _track(layout, sshlab.start(layout))


def start_writer(layout: Layout) -> None:
    pid = tracked(layout).get("writer")
    if pid and pid_alive(pid):
        return
    with (layout.run_dir / "writer.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "esremote.lab.ops.seed", "writer", "--dir", str(layout.dir)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.dir)
    _track(layout, {"writer": proc.pid})


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, SIGKILL if it will not go."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------- down


def down(lab_dir: str | os.PathLike) -> list[str]:
    """Stop everything the lab runs; return what was stopped. Raise if anything is left."""
    layout = labfiles.load_layout(lab_dir)
    stopped = []
    procs = tracked(layout)
    if (pid := procs.get("writer")) and pid_alive(pid):
        terminate(pid)
        stopped.append(f"writer (pid {pid})")
    with ThreadPoolExecutor(max_workers=len(layout.nodes())) as pool:
        stopped += [s for s in pool.map(_stop_node, layout.nodes()) if s]
    for name, pid in procs.items():
        if name != "writer" and pid_alive(pid):
            terminate(pid)
            stopped.append(f"{name} (pid {pid})")
    _track(layout, {name: None for name in procs})
    for pid, what in leftovers(layout):  # started outside the lab's records, e.g. a node run by hand
        terminate(pid)
        stopped.append(f"{what} (pid {pid}, untracked)")
    if left := leftovers(layout):
        raise EsRemoteError("lab processes still running after down: "
                            + ", ".join(f"{what} (pid {pid})" for pid, what in left))
    return stopped


def _stop_node(node: NodeSpec) -> str | None:
    home = service.NodeHome.load(node.home)
    pid = service.running_pid(home)
    if pid is None:
        return None
    service.stop(home, echo=lambda _line: None)
    return f"{node.name} (pid {pid})"


def leftovers(layout: Layout) -> list[tuple[int, str]]:
    """Processes still running out of this lab's directory: nodes, SSH endpoints, sshd's, writer."""
    marker = str(layout.dir) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        text = " ".join(args)
        if marker not in text or not pid_alive(int(entry.name)):
            continue
        module = next((m for m in _LAB_MODULES if m in args), None)
        if module or "sshd" in args[0]:
            found.append((int(entry.name), (module or "sshd").rsplit(".", 1)[-1]))
    return found


# -------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class NodeStatus:
    name: str
    cluster: str
    ip: str
    pid: int | None
    ssh: bool | None = None  # a files-only lab's node: whether its SSH endpoint answers (it has no process)

    @property
    def up(self) -> bool:
        return self.pid is not None if self.ssh is None else self.ssh


def status(lab_dir: str | os.PathLike) -> tuple[list[NodeStatus], dict[str, str]]:
    """Each node's process state and each cluster's health (`unreachable` when no node answers).
    A files-only lab's node is up when its SSH endpoint answers; its cluster's health is FILES_ONLY."""
    layout = labfiles.load_layout(lab_dir)
    if layout.options.files_only:
        with ThreadPoolExecutor(max_workers=16) as pool:
            ssh = list(pool.map(lambda n: sshlab.port_open(n.ip, n.ssh_port), layout.nodes()))
        nodes = [NodeStatus(n.name, n.cluster, n.ip, None, ssh=up) for n, up in zip(layout.nodes(), ssh)]
    else:
        nodes = [NodeStatus(n.name, n.cluster, n.ip, service.running_pid(service.NodeHome.load(n.home)))
                 for n in layout.nodes()]
    health = {}
    for cluster in layout.clusters:
        if layout.options.files_only:
            health[cluster.name] = FILES_ONLY
            continue
        try:
            health[cluster.name] = client(layout, cluster.name).get("/_cluster/health")["status"]
        except (ClusterError, KeyError):
            health[cluster.name] = "unreachable"
    return nodes, health


# -------------------------------------------------------------------------------------- faults


def fault(lab_dir: str | os.PathLike, name: str, *, node: str | None = None, off: bool = False,
          options: dict | None = None) -> str:
    """Switch a fault on or off (DIR/control/faults.json); return a one-line summary."""
    layout = labfiles.load_layout(lab_dir)
    if name not in FAULTS:
        raise ConfigError(f"unknown fault {name!r}; use one of {', '.join(FAULTS)}")
    if node is not None:
        layout.node(node)  # validates the name
    if name == "api-key-invalidated":
        return invalidate_cross_cluster_keys(layout, node, off)
    faults = read_faults(layout)
    if off:
        entry = faults.get(name)
        if entry is not None and node is not None and entry.get("nodes"):
            entry["nodes"] = [n for n in entry["nodes"] if n != node]
            if not entry["nodes"]:
                faults.pop(name)
        else:
            faults.pop(name, None)
    else:
        entry = faults.get(name) or {"nodes": []}
        if node is None:
            entry["nodes"] = None
        elif entry.get("nodes") is not None and node not in entry["nodes"]:
            entry["nodes"].append(node)
        entry.update(options or {})
        faults[name] = entry
    builder.write_faults(layout, faults)
    if name == "ssh-drop" and layout.options.ssh == "openssh":
        _openssh_drop(layout, faults.get(name))
    current = faults.get(name)
    if current is None:
        return f"{name}: off"
    return f"{name}: on for {', '.join(current['nodes']) if current['nodes'] else 'every node'}"


def _openssh_drop(layout: Layout, entry: dict | None) -> None:
    """sshd reads no fault file: dropping a node's SSH means stopping its sshd and its sessions;
    switching the fault off starts it again."""
    pids = tracked(layout)
    for node in layout.nodes():
        key, pid = f"sshd-{node.name}", pids.get(f"sshd-{node.name}")
        drop = entry is not None and (entry.get("nodes") is None or node.name in entry["nodes"])
        running = pid is not None and pid_alive(pid)
        if drop and running:
            sessions = sshlab.children(pid)
            terminate(pid)
            for session in sessions:
                terminate(session, timeout=5)
            _track(layout, {key: None})
        elif not drop and not running:
            _track(layout, {key: sshlab.start_sshd(layout, node)})


def read_faults(layout: Layout) -> dict:
    try:
        return json.loads((layout.control_dir / "faults.json").read_text())
    except (OSError, ValueError):
        return {}


def invalidate_cross_cluster_keys(layout: Layout, node: str | None, off: bool) -> str:
    """The fault `api-key-invalidated` is real: invalidate the remote's cross-cluster API keys."""
    if off:
        raise ConfigError("api-key-invalidated cannot be switched off: an invalidated key stays invalid; "
                          "create a new cross-cluster API key (the migration's prepare step does)")
    remotes = [layout.cluster(layout.node(node).cluster)] if node else list(layout.remotes)
    done = []
    for remote in remotes:
        rest = client(layout, remote.name)
        keys = rest.get("/_security/api_key").get("api_keys", [])
        ids = [k["id"] for k in keys if k.get("type") == "cross_cluster" and not k.get("invalidated")]
        if ids:
            rest.request("DELETE", "/_security/api_key", {"ids": ids})
        done.append(f"{remote.name}: {len(ids)} cross-cluster key(s) invalidated")
    return "api-key-invalidated: " + "; ".join(done)
