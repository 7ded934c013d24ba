"""The fault matrix (issue 11 §1): every fault at every point of a migration, and how each cell ends.

    .venv/bin/python -m benchmarks.fault_matrix                       # every cell; writes docs/reliability.md
    .venv/bin/python -m benchmarks.fault_matrix --cells 'ssh-drop@*'  # some (fnmatch on FAULT@POINT)
    .venv/bin/python -m benchmarks.fault_matrix --list

A cell is one migration of a seeded lab (8.15, 2 local + 2 remote nodes, start delay 0) by the real
CLI (`benchmarks.fault_orchestrator`: esremote in its own process, the fault placed at a journal
entry), then, where the orchestrator was killed, one `esremote migrate --resume RUN_ID` or one
`esremote rollback RUN_ID`; an operator's edit is followed by `esremote rollback RUN_ID`. Nothing
else is done to help. The cell is consistent when, within CONSISTENCY_TIMEOUT of the last command,
every node of both clusters is in one of two states (read from the clusters and the nodes' files):

- migrated: `_remote/info` on every local node (asked at its own address) connected with
  `cluster_credentials`; a cross-cluster search coordinated by each local node finds documents; the
  work runs; exactly one cross-cluster key made by the run is valid and it is the one in every local
  keystore (a resume made no second one); the roles kept what they granted; when the orchestrator
  was killed, every node restarted exactly once (counted by pid from the node's log: a step done
  before the kill was not done again);
- rolled back: every local node connected without `cluster_credentials`, at the address it had;
  the work running as before; every file under every node's config directory with the bytes, mode,
  owner and group it had (an operator's edit kept); keystore entries, names and values, as before;
  roles and the alias's settings as before; no cross-cluster key the run made still valid.

In both, no temporary file (`.NAME.tmp`, `.NAME.*.tmp`) and no `*.esremote-RUN.bak` backup is left
in a config directory (Elasticsearch reads it; a run removes its backups once it ends verified), and
no esremote command printed a Python traceback.

With `--evidence`, the page also gets the counts of the hostile-input and every-secret tests, run
in the same sitting (`pytest -s` on tests/test_hostile_input.py, test_hostile_nodes.py and
test_secrets_everywhere.py): bad inputs tried, places searched, secrets found.

Time to consistency runs from the moment the fault happened (the hook's mark; the first command's
start for an inventory fault; the operator's edit) to the first observation that passed every check.
The lab is reused after a cell that ended rolled back and clean, with no kill (a killed run's pair
lease outlives it); otherwise the next cell gets a new lab on new addresses.
"""

from __future__ import annotations

import argparse
import ast
import base64
import difflib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALIAS = "my_remote"
CREDENTIALS = f"cluster.remote.{ALIAS}.credentials"
LAB_OPTIONS = {"version": "8.15.0", "local_nodes": 2, "remote_nodes": 2, "start_delay": 0.0}
RUN_TIMEOUT = 900.0
CONSISTENCY_TIMEOUT = 120.0
SLOW_NODE_DEADLINE = 15.0        # the run's restart deadline in the slow-node cells ...
SLOW_NODE_SECONDS = 40.0         # ... and how long the slow node takes to start
REPORT = ROOT / "docs" / "reliability.md"
KEY_LEFT_VALID = "cross-cluster key(s) the run made still valid"
TRACEBACK = "Traceback (most recent call last)"


# ------------------------------------------------------------------------------------------ points


@dataclass(frozen=True)
class Point:
    name: str
    what: str
    at: dict | None           # the journal entry the fault happens at (None: before or after the run)


def _at(kind: str, step: str, nth: int = 1) -> dict:
    return {"kind": kind, "step": step, "nth": nth}


REMOTE_NODES, LOCAL_NODES = LAB_OPTIONS["remote_nodes"], LAB_OPTIONS["local_nodes"]
POINTS = {p.name: p for p in (
    Point("start", "after preflight and the plan, before any change", _at("note", "plan")),
    Point("prepare_remote:before-first-restart", "prepare_remote, before the first remote node's restart",
          _at("intent", "prepare_remote/restart/*")),
    Point("prepare_remote:after-first", "prepare_remote, after the first remote node restarted",
          _at("done", "prepare_remote/restart/*")),
    Point("prepare_remote:before-last", "prepare_remote, before the last remote node's restart",
          _at("intent", "prepare_remote/restart/*", REMOTE_NODES)),
    Point("prepare_remote:yml-write", "prepare_remote, as the first remote node's elasticsearch.yml is written",
          _at("intent", "prepare_remote/yml/*")),
    Point("prepare_remote:end", "end of prepare_remote", _at("note", "phase/prepare_remote")),
    Point("stage_local:before-first-restart", "stage_local, before the first local node's restart",
          _at("intent", "stage_local/restart/*")),
    Point("stage_local:after-first", "stage_local, after the first local node restarted",
          _at("done", "stage_local/restart/*")),
    Point("stage_local:before-last", "stage_local, before the last local node's restart",
          _at("intent", "stage_local/restart/*", LOCAL_NODES)),
    Point("stage_local:yml-write", "stage_local, as the first local node's elasticsearch.yml is written",
          _at("intent", "stage_local/yml/*")),
    Point("stage_local:end", "end of stage_local", _at("note", "phase/stage_local")),
    Point("stage_credentials:keystore-write", "stage_credentials, as the first local keystore is written",
          _at("intent", "reconnect/keystore/local/*")),
    Point("stage_credentials:after-first", "stage_credentials, after the first local keystore",
          _at("done", "reconnect/keystore/local/*")),
    Point("stage_credentials:before-last", "stage_credentials, before the last local keystore",
          _at("intent", "reconnect/keystore/local/*", LOCAL_NODES)),
    Point("stage_credentials:end", "end of stage_credentials", _at("note", "phase/stage_credentials")),
    Point("stop_cross_cluster_ops:end", "work stopped (the outage began)", _at("note", "phase/stop_cross_cluster_ops")),
    Point("reconnect:alias-removed", "reconnect, the alias removed", _at("done", "reconnect/remove-alias/*")),
    Point("reconnect:end", "end of reconnect (alias re-added on 9443)", _at("note", "phase/reconnect")),
    Point("verify:end", "end of verify", _at("note", "phase/verify")),
    Point("resume_cross_cluster_ops:end", "work resumed (the last phase done)",
          _at("note", "phase/resume_cross_cluster_ops")),
    Point("inventory:local", "the local cluster's keystore password wrong in the inventory from the start", None),
    Point("inventory:remote", "the remote cluster's keystore password wrong in the inventory from the start", None),
    Point("after-run:local-line", "after a migration, a line added to local-0's elasticsearch.yml", None),
    Point("after-run:remote-line", "after a migration, a line added to remote-0's elasticsearch.yml", None),
    Point("after-run:run-setting", "after a migration, a setting the run wrote changed in local-0's yml", None),
)}

BOUNDARIES = ("start", "prepare_remote:end", "stage_local:end", "stage_credentials:end", "stop_cross_cluster_ops:end",
              "reconnect:alias-removed", "reconnect:end", "verify:end", "resume_cross_cluster_ops:end")
INSIDE = ("prepare_remote:after-first", "prepare_remote:before-last", "stage_local:after-first",
          "stage_local:before-last", "stage_credentials:after-first", "stage_credentials:before-last")
RESTARTS = ("prepare_remote:before-first-restart", "prepare_remote:before-last",
            "stage_local:before-first-restart", "stage_local:before-last")
BEFORE_VERIFY = ("start", "prepare_remote:end", "stage_local:end", "stage_credentials:end", "stop_cross_cluster_ops:end",
                 "reconnect:alias-removed", "reconnect:end")
ROLLBACK_STARTS = _at("intent", "rollback/*")


# ------------------------------------------------------------------------------------------ faults


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    points: tuple[str, ...]
    kind: str = "hook"               # hook | inventory | operator-edit
    lab_fault: str | None = None     # the lab's fault (esremote lab fault NAME)
    node: str | None = None          # None: every node; "from-step": the node the step names
    options: dict = field(default_factory=dict)
    off_after: float | None = None
    off_at_rollback: bool = False
    recovery: str | None = None      # after a kill: "resume" or "rollback"
    node_timeout_s: float | None = None
    lab: dict = field(default_factory=dict)

    def action(self, lab_dir: Path) -> Any:
        if self.recovery:
            return "kill"
        action = {"lab": str(lab_dir), "fault": self.lab_fault, "node": self.node, "set": self.options or None}
        if self.off_after:
            action["off_after"] = self.off_after
        if self.off_at_rollback:
            action["off_at"] = ROLLBACK_STARTS
        return action


FAULTS = {f.name: f for f in (
    Fault("killed+resume", "orchestrator SIGKILLed, then `esremote migrate --resume RUN_ID`",
          BOUNDARIES + INSIDE, recovery="resume"),
    Fault("killed+rollback", "orchestrator SIGKILLed, then `esremote rollback RUN_ID`",
          BOUNDARIES + INSIDE, recovery="rollback"),
    Fault("ssh-drop", "the node's SSH connections dropped (sessions killed, connects refused) for 3 s",
          ("prepare_remote:yml-write", "prepare_remote:before-first-restart", "stage_local:yml-write",
           "stage_credentials:keystore-write"), lab_fault="ssh-drop", node="from-step", off_after=3.0),
    Fault("node-fails-to-start", "the node's start fails (until the rollback puts its configuration back)",
          RESTARTS, lab_fault="node-fails-to-start", node="from-step", off_at_rollback=True),
    Fault("slow-node", f"the node takes {SLOW_NODE_SECONDS:g} s to start, the run's restart deadline is "
          f"{SLOW_NODE_DEADLINE:g} s (slow until the rollback starts)", RESTARTS, lab_fault="slow-start",
          node="from-step", options={"seconds": SLOW_NODE_SECONDS}, off_at_rollback=True,
          node_timeout_s=SLOW_NODE_DEADLINE),
    Fault("http-429", "every other REST request on every node answers 429 for 5 s", BOUNDARIES[:-1],
          lab_fault="http-overload", options={"status": 429, "burst": 1, "every": 2}, off_after=5.0),
    Fault("http-503", "every other REST request on every node answers 503 for 5 s", BOUNDARIES[:-1],
          lab_fault="http-overload", options={"status": 503, "burst": 1, "every": 2}, off_after=5.0),
    Fault("key-invalidated", "the remote's cross-cluster API keys invalidated", BEFORE_VERIFY[1:],
          lab_fault="api-key-invalidated"),
    Fault("remote-port-blocked", "the remote cluster port (9443) refuses connections, from then on",
          BEFORE_VERIFY[:-1], lab_fault="remote-port-blocked"),
    Fault("keystore-password-wrong", "a cluster's keystore password wrong in the inventory",
          ("inventory:local", "inventory:remote"), kind="inventory", lab={"keystore_password": True}),
    Fault("wrong-credential-one-node", "local-1 loads a wrong cross-cluster credential, from then on",
          BEFORE_VERIFY[:-1], lab_fault="wrong-credentials", node="local-1"),
    Fault("operator-edit", "elasticsearch.yml edited by an operator, then `esremote rollback RUN_ID`",
          ("after-run:local-line", "after-run:remote-line", "after-run:run-setting"), kind="operator-edit"),
)}


def cells(pattern: str = "*") -> list[tuple[Fault, Point]]:
    """Every cell matching `pattern` (comma-separated fnmatch globs on FAULT@POINT), faults taken in
    turns so that a partial run covers every fault early."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    per_fault = [[(f, POINTS[p]) for p in f.points] for f in FAULTS.values()]
    ordered = [cell for row in _interleave(per_fault) for cell in row]
    return [(f, p) for f, p in ordered if any(fnmatch(f"{f.name}@{p.name}", pat) for pat in patterns)]


def _interleave(lists: list[list]) -> list[list]:
    return [[lst[i] for lst in lists if i < len(lst)] for i in range(max(map(len, lists)))]


# --------------------------------------------------------------------------------- what is observed


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def config_files(node: dict) -> dict[str, tuple]:
    """Every path under the node's config directory: (sha256 of the bytes or 'dir', mode, uid, gid)."""
    config = Path(node["home"]) / "config"
    out = {}
    for path in sorted(config.rglob("*")):
        st = path.lstat()
        content = "dir" if path.is_dir() else _sha(path.read_bytes())
        out[str(path.relative_to(config))] = (content, oct(st.st_mode & 0o7777), st.st_uid, st.st_gid)
    return out


def node_keystore(lab, node: dict):
    """The node's keystore, opened with its cluster's password (the lab's, when it has one)."""
    from esremote.keystore import Keystore  # noqa: PLC0415

    cluster = next(name for name, c in lab.data["clusters"].items() if node in c["nodes"])
    password_file = lab.data["clusters"][cluster].get("keystore_password_file")
    password = Path(password_file).read_text().splitlines()[0] if password_file else ""
    return Keystore.load(Path(node["home"]) / "config" / "elasticsearch.keystore", password)


def keystore_entries(lab, node: dict) -> dict[str, str]:
    """Entry name -> a digest of its value."""
    keystore = node_keystore(lab, node)
    return {name: _sha(keystore.get(name)) for name in keystore.names()}


def remote_infos(lab) -> dict[str, dict | str]:
    out = {}
    for node in lab.nodes("local"):
        try:
            out[node["name"]] = lab.es_at(node["name"], request_timeout=10).cluster.remote_info().body.get(ALIAS) or {}
        except Exception as exc:  # noqa: BLE001 - a node that does not answer is an observation
            out[node["name"]] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def cross_cluster_keys(lab) -> dict[str, bool]:
    """The remote's cross-cluster API keys: id -> valid."""
    keys = lab.es("remote", request_timeout=10).security.get_api_key().body.get("api_keys", [])
    return {k["id"]: not k.get("invalidated") for k in keys if k.get("type") == "cross_cluster"}


def alias_settings(lab) -> dict:
    flat = lab.es("local", request_timeout=10).cluster.get_settings(flat_settings=True).body
    return {scope: {k: v for k, v in values.items() if k.startswith(f"cluster.remote.{ALIAS}.")}
            for scope, values in flat.items() if scope in ("persistent", "transient")}


def roles(lab) -> dict:
    return lab.es("local", request_timeout=10).security.get_role(name="ccs_role,ccr_role").body


def work(lab) -> dict[str, bool]:
    from tests.test_e2e_migration import running, work_states  # noqa: PLC0415

    return running(work_states(lab))


@dataclass
class Snapshot:
    files: dict[str, dict]
    keystores: dict[str, dict]
    infos: dict
    keys: dict[str, bool]
    settings: dict
    roles: dict
    work: dict
    pids: dict[str, list[int]]
    yml: dict[str, bytes]


def snapshot(lab) -> Snapshot:
    nodes = lab.nodes()
    return Snapshot(
        files={n["name"]: config_files(n) for n in nodes},
        keystores={n["name"]: keystore_entries(lab, n) for n in nodes},
        infos=remote_infos(lab), keys=cross_cluster_keys(lab), settings=alias_settings(lab), roles=roles(lab),
        work=work(lab), pids=lab.pids(),
        yml={n["name"]: (Path(n["home"]) / "config" / "elasticsearch.yml").read_bytes() for n in nodes})


# ----------------------------------------------------------------------------------------- checks


@dataclass
class Expect:
    """What a cell may legitimately change besides the run: an operator's yml (node -> bytes), and
    whether every node must have restarted exactly once (a killed run resumed to the end)."""

    yml: dict[str, bytes] = field(default_factory=dict)
    once_each: bool = False
    stopped_node: str | None = None   # the rollback may stop for this node with a diff, changing nothing there
    held_files: dict = field(default_factory=dict)  # that node's config files as the operator left them


def judge(lab, before: Snapshot, expect: Expect) -> tuple[str, list[str]]:
    """The end state (migrated | rolled back | inconsistent) and every check that failed."""
    infos = remote_infos(lab)
    bad = {n: i for n, i in infos.items() if not isinstance(i, dict) or not i.get("connected")}
    if bad:
        return "inconsistent", [f"{n}: link not connected ({str(i)[:160]})" for n, i in bad.items()]
    with_credentials = {n for n, i in infos.items() if "cluster_credentials" in i}
    if with_credentials == set(infos):
        return "migrated", _migrated(lab, before, expect)
    if not with_credentials:
        return "rolled back", _rolled_back(lab, before, infos, expect)
    return "inconsistent", [f"credentials on {sorted(with_credentials)} only"]


def stray(name: str) -> bool:
    """A file esremote leaves beside the ones Elasticsearch reads: a temporary file of a write
    (`.NAME.tmp`, `.NAME.XXXX.tmp`) or a run's backup (`NAME.esremote-RUN.bak`)."""
    return (name.startswith(".") and name.endswith(".tmp")) or fnmatch(name, "*.esremote-*.bak")


def strays(lab) -> list[str]:
    """Every stray file under every node's config directory, as `node: config/PATH`."""
    out = []
    for node in lab.nodes():
        config = Path(node["home"]) / "config"
        out += [f"{node['name']}: config/{p.relative_to(config)}" for p in sorted(config.rglob("*")) if stray(p.name)]
    return out


def _migrated(lab, before: Snapshot, expect: Expect) -> list[str]:
    out = []
    keys = cross_cluster_keys(lab)
    new_valid = [k for k, valid in keys.items() if valid and k not in before.keys]
    if len(new_valid) != 1:
        out.append(f"{len(new_valid)} valid cross-cluster keys made by the run (want 1): {new_valid}")
    encoded = set()
    for node in lab.nodes("local"):
        keystore = node_keystore(lab, node)
        if CREDENTIALS not in keystore.names():
            out.append(f"{node['name']}: no {CREDENTIALS} in the keystore")
            continue
        encoded.add(keystore.get_string(CREDENTIALS))
    ids = {base64.b64decode(e).decode().split(":", 1)[0] for e in encoded}
    if len(encoded) > 1 or (new_valid and ids != set(new_valid[:1])):
        out.append(f"the local keystores hold key(s) {sorted(ids)}, the valid new key is {new_valid}")
    for node in lab.nodes("local"):
        try:
            hits = lab.es_at(node["name"], user="ccs_user", request_timeout=10).search(
                index=f"{ALIAS}:leader-logs", size=0)
            if hits["hits"]["total"]["value"] <= 0:
                out.append(f"{node['name']}: cross-cluster search found nothing")
        except Exception as exc:  # noqa: BLE001
            out.append(f"{node['name']}: cross-cluster search failed: {str(exc)[:160]}")
    out += _work_as_before(lab, before)
    now = roles(lab)
    for name, role in before.roles.items():
        kept = {k: v for k, v in now.get(name, {}).items() if k not in ("remote_indices", "remote_cluster")}
        if kept != {k: v for k, v in role.items() if k not in ("remote_indices", "remote_cluster")}:
            out.append(f"role {name} lost what it granted")
    if expect.once_each:
        counts = restarts(lab, before)
        if any(c != 1 for c in counts.values()):
            out.append(f"restarts by pid (want 1 each): {counts}")
    return out


def _rolled_back(lab, before: Snapshot, infos: dict, expect: Expect) -> list[str]:
    out = []
    for name, info in infos.items():
        was = before.infos.get(name) or {}
        if info.get("proxy_address") != was.get("proxy_address") or info.get("seeds") != was.get("seeds"):
            out.append(f"{name}: alias address {info.get('proxy_address') or info.get('seeds')}, "
                       f"was {was.get('proxy_address') or was.get('seeds')}")
    for node in lab.nodes():
        name, config = node["name"], Path(node["home"]) / "config"
        now = config_files(node)
        wanted = dict(before.files[name])
        if name in expect.yml:
            yml = (config / "elasticsearch.yml").read_bytes()
            if yml != expect.yml[name]:
                diff = "".join(difflib.unified_diff(expect.yml[name].decode().splitlines(True),
                                                    yml.decode().splitlines(True), "expected", "now", n=0))
                out.append(f"{name}: elasticsearch.yml is not the operator's file (diff: {diff[:400]!r})")
            wanted["elasticsearch.yml"] = now.get("elasticsearch.yml")
        if name == expect.stopped_node:  # held: nothing changes there, its yml may name the run's files
            wanted = dict(expect.held_files)
        for path in sorted(set(now) | set(wanted)):
            if stray(Path(path).name):
                continue  # counted apart (strays)
            if path == "elasticsearch.keystore" and path in now and path in wanted:
                # rewritten with its entries as they were (compared below): a new salt and IV, so
                # new bytes; mode, owner and group are what must not change
                now_meta, wanted_meta = now[path][1:], wanted[path][1:]
                if now_meta != wanted_meta:
                    out.append(f"{name}: config/{path} mode/owner/group {wanted_meta} -> {now_meta}")
                continue
            if now.get(path) != wanted.get(path):
                what = "left behind" if path not in wanted else "gone" if path not in now else \
                    f"{wanted[path]} -> {now[path]}"
                out.append(f"{name}: config/{path} {what}")
        if keystore_entries(lab, node) != before.keystores[name]:
            out.append(f"{name}: keystore entries differ: {sorted(keystore_entries(lab, node))} "
                       f"(were {sorted(before.keystores[name])})")
    if (settings := alias_settings(lab)) != before.settings:
        out.append(f"alias settings {settings} (were {before.settings})")
    if roles(lab) != before.roles:
        out.append("roles differ from the saved ones")
    valid = [k for k, v in cross_cluster_keys(lab).items() if v and k not in before.keys]
    if valid:
        out.append(f"{KEY_LEFT_VALID}, used by no alias: {valid}")
    return out + _work_as_before(lab, before)


def _work_as_before(lab, before: Snapshot) -> list[str]:
    try:
        now = work(lab)
    except Exception as exc:  # noqa: BLE001
        return [f"work states unreadable: {str(exc)[:160]}"]
    return [] if now == before.work else [f"work {now} (was {before.work})"]


def restarts(lab, before: Snapshot) -> dict[str, int]:
    """Per node: starts since the snapshot, counted by pid from the node's own log."""
    return {node: len(pids) - len(before.pids.get(node, [])) for node, pids in lab.pids().items()}


# ------------------------------------------------------------------------------------------- a cell


@dataclass
class Command:
    argv: list[str]
    code: int
    last_line: str
    seconds: float
    tracebacks: int = 0             # Python tracebacks in its stdout and stderr (a user sees none)


@dataclass
class Result:
    cell: str
    fault: str
    point: str
    state: str                      # migrated | rolled back | inconsistent | error
    problems: list[str]
    consistent: bool
    seconds_to_consistency: float | None
    strays: list[str]
    commands: list[Command]
    restarts: dict[str, int]
    run_id: str | None = None

    @property
    def operator_saw(self) -> str:
        return "; ".join(f"`{c.argv[0]}` exit {c.code}: {c.last_line}" for c in self.commands)


def _env(prefect_api: str, state_dir: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api, "ESREMOTE_STATE_DIR": str(state_dir),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}


def run_command(args: list[str], env: dict, out_dir: Path, *, hook: dict | None = None) -> Command:
    """`esremote ARGS` (through the fault orchestrator when there is a hook), in its own session;
    its stdout and stderr are kept in `out_dir`."""
    module = "benchmarks.fault_orchestrator" if hook else "esremote"
    env = {**env, "FAULT_MATRIX_HOOK": json.dumps(hook)} if hook else env
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, start_new_session=True)
    name = f"esremote {args[0]}" + (" --resume" if "--resume" in args else "")
    number = len(list(out_dir.glob("command-*.out"))) + 1
    (out_dir / f"command-{number}.out").write_text(f"$ {name}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}"
                                                  f"\n--- stderr\n{proc.stderr}")
    return Command([name], proc.returncode, operator_line(proc.returncode, proc.stdout, proc.stderr),
                   round(time.monotonic() - start, 1), (proc.stdout + proc.stderr).count(TRACEBACK))


def operator_line(code: int, stdout: str, stderr: str) -> str:
    """What the operator reads last: the error line when it failed, else the summary's status line
    (the lines after it are links to Prefect and the log file); paths of the run left out."""
    out = [line.strip() for line in stdout.splitlines() if line.strip()]
    err = [line.strip() for line in stderr.splitlines() if line.strip()]
    status = [line for line in out if line.startswith("status:")]
    line = (err[-1] if err else "(no output)") if code or not status else status[-1]
    return _scrub(line)[:300]


def _run_id(state_dir: Path) -> str | None:
    runs = sorted((state_dir / "runs").glob("*/run.json")) if (state_dir / "runs").exists() else []
    return runs[-1].parent.name if runs else None


def _clear_faults(lab) -> None:
    from esremote.lab.ops import builder, labfiles  # noqa: PLC0415

    builder.write_faults(labfiles.load_layout(lab.dir), {})


def _wrong_password_inventory(lab, cluster: str, cell_dir: Path) -> Path:
    """A copy of the lab's inventory whose `cluster` keystore password is a file with a wrong one."""
    inventory = yaml.safe_load(lab.inventory.read_text())
    wrong = cell_dir / f"{cluster}-keystore-password.secret"
    wrong.write_text("not-the-keystore-password\n")
    wrong.chmod(0o600)
    inventory["clusters"][cluster]["keystore_password"] = {"file": str(wrong)}
    path = cell_dir / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def operator_edit(lab, point: str, before: Snapshot) -> tuple[str, bytes]:
    """Edit one node's elasticsearch.yml as an operator would (in place, keeping mode and owner);
    return the node and the file a rollback should leave: with a line added, the original with that
    line (the run's settings undone, the operator's kept); with a setting the run wrote changed, the
    operator's file as it is (the rollback stops there with a diff and changes nothing)."""
    node = "remote-0" if point == "after-run:remote-line" else "local-0"
    path = Path(lab.node(node)["home"]) / "config" / "elasticsearch.yml"
    text = path.read_text()
    if point == "after-run:run-setting":
        key = "xpack.security.remote_cluster_client.ssl.enabled"
        lines = text.splitlines(True)
        at = next((i for i, line in enumerate(lines) if key in line and line.rstrip().endswith("true")), None)
        if at is None:
            raise RuntimeError(f"{node}: no '{key}: true' line to edit in elasticsearch.yml")
        lines[at] = lines[at].rstrip()[:-4] + "false\n"
        text, wanted = "".join(lines), None
    else:
        added = "# added by the operator after the migration\nnode.attr.rack_id: rack-1\n"
        text += ("" if text.endswith("\n") else "\n") + added
        original = before.yml[node].decode()
        wanted = (original + ("" if original.endswith("\n") else "\n") + added).encode()
    with path.open("r+") as fh:  # in place, as an editor that keeps the inode does
        fh.write(text)
        fh.truncate()
    return node, wanted if wanted is not None else path.read_bytes()


def run_cell(lab, fault: Fault, point: Point, prefect_api: str, cell_dir: Path) -> Result:
    """One cell on `lab`: the run with its fault, the one recovery command it allows, then the judge."""
    cell = f"{fault.name}@{point.name}"
    cell_dir.mkdir(parents=True, exist_ok=True)
    state_dir = cell_dir / "state"
    env = _env(prefect_api, state_dir)
    before = snapshot(lab)
    expect = Expect(once_each=fault.recovery == "resume")
    mark = cell_dir / "fault-at"
    inventory = lab.inventory
    migrate = ["migrate", "--yes", "--link-timeout", "20"]
    commands: list[Command] = []
    started = time.time()
    try:
        if fault.kind == "inventory":
            inventory = _wrong_password_inventory(lab, point.name.split(":")[1], cell_dir)
            commands.append(run_command(["migrate", "--inventory", str(inventory), *migrate[1:]], env, cell_dir))
        else:
            hook = None
            if fault.kind == "hook":
                hook = {"at": point.at, "action": fault.action(lab.dir), "mark": str(mark),
                        "node_timeout_s": fault.node_timeout_s}
            commands.append(run_command(["migrate", "--inventory", str(inventory), *migrate[1:]], env, cell_dir, hook=hook))
        run_id = _run_id(state_dir)
        if fault.recovery and run_id:
            if fault.recovery == "resume":
                commands.append(run_command(["migrate", "--inventory", str(inventory), *migrate[1:],
                                             "--resume", run_id], env, cell_dir))
            else:
                commands.append(run_command(["rollback", "--inventory", str(inventory), run_id], env, cell_dir))
        if fault.kind == "operator-edit" and run_id and commands[-1].code == 0:
            node, edited = operator_edit(lab, point.name, before)
            mark.write_text(f"{time.time():.3f}\n")
            expect.yml[node] = edited
            if point.name == "after-run:run-setting":
                expect.stopped_node, expect.held_files = node, config_files(lab.node(node))
            commands.append(run_command(["rollback", "--inventory", str(inventory), run_id], env, cell_dir))
        state, problems, seconds = settle(lab, before, expect, mark, started)
    except Exception as exc:  # noqa: BLE001 - a cell that cannot run is recorded, the matrix goes on
        run_id = _run_id(state_dir)
        state, problems, seconds = "error", [f"{type(exc).__name__}: {str(exc)[:300]}"], None
    finally:
        _clear_faults(lab)
    if fault.kind == "operator-edit" and expect.stopped_node and state == "rolled back":
        problems += _stopped_with_diff(commands, expect.stopped_node)
    try:
        left = strays(lab)
    except OSError as exc:
        left = [f"unreadable: {exc}"]
    if left and not expect.stopped_node:  # a rollback stopped for an operator's edit has not ended yet
        problems.append(f"{len(left)} stray file(s) left where Elasticsearch reads")
    problems += [f"{c.argv[0]} printed {c.tracebacks} traceback(s)" for c in commands if c.tracebacks]
    consistent = state in ("migrated", "rolled back") and not problems
    return Result(cell, fault.name, point.name, state, problems, consistent, seconds, left, commands,
                  _safe_restarts(lab, before), run_id)


def _stopped_with_diff(commands: list[Command], node: str) -> list[str]:
    """The rollback stopped for the operator's node: it failed (not exit 0) and named the node."""
    last = commands[-1]
    if last.code == 0:
        return [f"rollback exit 0 although the operator changed a setting the run wrote on {node}"]
    return [] if node in last.last_line else [f"the rollback's last line does not name {node}"]


def _safe_restarts(lab, before: Snapshot) -> dict[str, int]:
    try:
        return restarts(lab, before)
    except Exception:  # noqa: BLE001
        return {}


def settle(lab, before: Snapshot, expect: Expect, mark: Path, started: float) -> tuple[str, list[str], float | None]:
    """Observe until every check passes (then: the time from the fault) or CONSISTENCY_TIMEOUT ends."""
    deadline = time.monotonic() + CONSISTENCY_TIMEOUT
    fault_at = float(mark.read_text()) if mark.exists() else started
    while True:
        try:
            state, problems = judge(lab, before, expect)
        except Exception as exc:  # noqa: BLE001 - a cluster that does not answer yet
            state, problems = "inconsistent", [f"{type(exc).__name__}: {str(exc)[:200]}"]
        if state != "inconsistent" and not problems:
            return state, problems, round(time.time() - fault_at, 1)
        if time.monotonic() >= deadline:
            return state, problems, None
        time.sleep(1.0)


# ------------------------------------------------------------------------------------------ the labs


class Labs:
    """Seeded labs for the cells: one is reused while cells leave it as they found it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.current = None
        self.options: dict | None = None
        self.count = 0
        self.nets: set[int] = set()  # a killed run's leases name its lab's addresses: never reuse them

    def get(self, extra: dict):
        from tests.fixtures.lab import Lab, free_net  # noqa: PLC0415

        from esremote.lab.ops import control  # noqa: PLC0415

        options = {**LAB_OPTIONS, **extra}
        if self.current is not None and self.options == options:
            return self.current
        self.drop()
        self.count += 1
        lab_dir = self.base / f"lab-{self.count}"
        lab_dir.mkdir(mode=0o755)
        lab_dir.chmod(0o755)  # the nodes run as elasticsearch when root runs this
        net = next(n for n in iter(free_net, None) if n not in self.nets)
        self.nets.add(net)
        control.up(lab_dir, {**options, "net": net})
        self.current, self.options = Lab.read(lab_dir), options
        return self.current

    def keep_or_drop(self, result: Result, fault: Fault) -> None:
        if not (result.consistent and result.state == "rolled back" and not fault.recovery):
            self.drop()

    def drop(self) -> None:
        if self.current is not None:
            try:
                self.current.down()
            finally:
                self.current = None


def run_cells(selected: list[tuple[Fault, Point]], prefect_api: str, base: Path, *, on_result=None) -> list[Result]:
    """Run the cells in order; `on_result(result, number, total)` after each."""
    labs = Labs(base)
    results = []
    try:
        for number, (fault, point) in enumerate(selected, 1):
            lab = labs.get(fault.lab)
            result = run_cell(lab, fault, point, prefect_api, base / "cells" / f"{number:03d}")
            results.append(result)
            labs.keep_or_drop(result, fault)
            if on_result is not None:
                on_result(result, number, len(selected))
    finally:
        labs.drop()
    return results


def describe(result: Result) -> str:
    return (f"{result.cell}: {result.state}{'' if result.consistent else ' NOT CONSISTENT'} "
            f"({result.seconds_to_consistency}s) {result.operator_saw}"
            + (f" problems: {result.problems}" if result.problems else "")
            + (f" strays: {len(result.strays)}" if result.strays else ""))


# ----------------------------------------------------------------------------------------- the report


EVIDENCE_TESTS = ("tests/test_hostile_input.py", "tests/test_hostile_nodes.py", "tests/test_secrets_everywhere.py")


def gather_evidence() -> dict:
    """Run the hostile-input and every-secret tests; what they counted, and how they ended."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", *EVIDENCE_TESTS],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "ESREMOTE_REQUIRE_OPENSSH": "1"})
    out = proc.stdout + proc.stderr
    # pytest -q puts its progress dots before what a test prints: find the dict within the line
    runs = [ast.literal_eval(m.group(0)) for m in re.finditer(r"\{'[^{}]*\d\}", out)]
    secrets = [line.strip() for line in out.splitlines() if line.strip().startswith("secrets everywhere:")]
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {"exit": proc.returncode, "bad_inputs": runs[-1] if runs else {}, "secrets": secrets[-1] if secrets else "",
            "tests": summary[-1].strip("= ") if summary else out.strip().splitlines()[-1:]}


def evidence_lines(evidence: dict | None) -> list[str]:
    if not evidence:
        return []
    inputs = evidence["bad_inputs"]
    return ["## Hostile input and secrets", "",
            f"`pytest -s {' '.join(EVIDENCE_TESTS)}`, in the same sitting: {evidence['tests']} "
            f"(exit {evidence['exit']}).", "",
            f"- Bad inputs tried, each property checked for one line on stderr naming the field, exit 2, no "
            f"traceback, no connection made: {sum(inputs.values())} "
            f"({', '.join(f'{k}: {n}' for k, n in inputs.items()) or 'none counted'}); hostile node content "
            "(not YAML, duplicate keys, tabs, a BOM, an unknown keystore format, a hanging restart, a changed host "
            "key, a full disk): tests/test_hostile_nodes.py, each refused before anything changed.",
            f"- Every secret, everywhere: {evidence['secrets'].removeprefix('secrets everywhere: ') or 'not printed'}.",
            ""]


def write_report(results: list[Result], path: Path, *, header: str, evidence: dict | None = None) -> None:
    measured = {r.cell: r for r in results}
    total = sum(len(f.points) for f in FAULTS.values())
    consistent = sum(r.consistent for r in results)
    clean = sum(r.consistent and not r.strays for r in results)
    commands = [c for r in results for c in r.commands]
    tracebacks = sum(c.tracebacks for c in commands)
    lines = [
        "# Reliability: the fault matrix",
        "",
        "Regenerated by `.venv/bin/python -m benchmarks.fault_matrix` (every cell; `--cells 'GLOB'` for some);",
        "`tests/test_fault_matrix.py` runs a few cells on every CI run. How a cell runs and what it checks:",
        "the docstring of `benchmarks/fault_matrix.py`.",
        "",
        header,
        "",
        f"**{len(results)} of {total} cells measured: {consistent} consistent, {clean} of them with no stray "
        f"file left in a config directory; {len(commands)} esremote commands run, {tracebacks} traceback(s) "
        "printed.**",
        "",
        "End states: **migrated** (every local node on the API-key link, verified) or **rolled back**",
        "(every local node on the certificate-model link, every node's files, keystore, roles, alias settings",
        "and work as before); anything else is **inconsistent**. Time to consistency: from the fault to",
        "the first observation that passed every check (none: it never did within "
        f"{CONSISTENCY_TIMEOUT:g} s); it includes the recovery command, and grows with the machine's load",
        "(above). Stray files: temporary files and the run's `*.esremote-RUN.bak` backups left in a node's",
        "config directory, which Elasticsearch reads (a cell with any is not consistent, but for a rollback",
        "stopped for an operator's edit: the run has not ended there).",
        "",
    ] + evidence_lines(evidence)
    for fault in FAULTS.values():
        lines += [f"## {fault.name}", "", fault.what + ".", "",
                  "| point | end state | time to consistency | restarts (by pid) | stray files in config/ | "
                  "what the operator saw |",
                  "|---|---|---|---|---|---|"]
        for name in fault.points:
            r = measured.get(f"{fault.name}@{name}")
            if r is None:
                lines.append(f"| `{name}` ({POINTS[name].what}) | not run | | | | |")
                continue
            label = r.state if r.state in ("inconsistent", "error") else f"{r.state}, NOT consistent"
            state = r.state if r.consistent else f"**{label}**: " + "; ".join(
                _scrub(p) for p in r.problems)
            seconds = "-" if r.seconds_to_consistency is None else f"{r.seconds_to_consistency:g} s"
            restarted = ", ".join(f"{n} {c}" for n, c in sorted(r.restarts.items())) or "-"
            left = f"{len(r.strays)}: " + ", ".join(sorted({_kind(p) for p in r.strays})) if r.strays else "none"
            lines.append(f"| `{name}` ({POINTS[name].what}) | {_cell(state)} | {seconds} | {restarted} | "
                         f"{left} | {_cell(r.operator_saw)} |")
        lines.append("")
    path.write_text("\n".join(lines))


def _kind(stray_path: str) -> str:
    """`local-0: config/elasticsearch.yml.esremote-RUN.bak` -> `elasticsearch.yml.esremote-RUN.bak`"""
    name = stray_path.rsplit("/", 1)[-1]
    return re.sub(r"esremote-[A-Za-z0-9_.-]+\.bak$", "esremote-RUN.bak", name)


def _scrub(text: str) -> str:
    """No path of the machine that measured in the page: `/a/b/c` -> `…/c`."""
    return re.sub(r"(?<![\w.])(/[^\s/`'\"]+)+/", "…/", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def save_results(results: list[Result], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=1, default=str))


def load_results(path: Path) -> list[Result]:
    out = []
    for raw in json.loads(path.read_text()):
        raw["commands"] = [Command(**c) for c in raw["commands"]]
        out.append(Result(**raw))
    return out


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="*", help="comma-separated globs on FAULT@POINT (default: every cell)")
    parser.add_argument("--list", action="store_true", help="list the cells and exit")
    parser.add_argument("--report", type=Path, default=REPORT, help=f"where the table goes (default {REPORT})")
    parser.add_argument("--results", type=Path, help="also keep the results as JSON here (merged when it exists)")
    parser.add_argument("--report-only", action="store_true", help="write the report from --results, run nothing")
    parser.add_argument("--evidence", action="store_true",
                        help="also run the hostile-input and every-secret tests and put their counts in the report")
    args = parser.parse_args()
    kept = args.results.with_suffix(".evidence.json") if args.results else None
    if args.report_only:
        if not (args.results and args.results.exists()):
            sys.exit("--report-only needs --results FILE, a file an earlier run wrote")
        measured = [line for line in (args.report.read_text().splitlines() if args.report.exists() else [])
                    if line.startswith("Measured ")]
        evidence = gather_evidence() if args.evidence else json.loads(kept.read_text()) if kept.exists() else None
        if args.evidence:
            kept.write_text(json.dumps(evidence, indent=1))
        write_report(load_results(args.results), args.report, header=measured[0] if measured else "",
                     evidence=evidence)
        return
    selected = cells(args.cells)
    if args.list:
        for fault, point in selected:
            print(f"{fault.name}@{point.name}")
        return
    if not selected:
        sys.exit(f"no cell matches {args.cells!r} (see --list)")
    from benchmarks._timing import machine  # noqa: PLC0415
    from prefect.testing.utilities import prefect_test_harness  # noqa: PLC0415
    from prefect.settings import PREFECT_API_URL  # noqa: PLC0415

    # SIGTERM ends the run through its `finally`s: the lab taken down, the Prefect server stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("fault_matrix: terminated"))
    header = f"Measured {machine()}, lab {LAB_OPTIONS}."
    print(header, flush=True)
    base = Path(tempfile.mkdtemp(prefix="esremote-fault-matrix-"))
    base.chmod(0o711)
    previous = load_results(args.results) if args.results and args.results.exists() else []
    results: list[Result] = []
    evidence = json.loads(kept.read_text()) if kept and kept.exists() else None
    if args.evidence:
        evidence = gather_evidence()
        print(f"evidence: {evidence}", flush=True)
        if kept:
            kept.write_text(json.dumps(evidence, indent=1))

    def progress(result: Result, number: int, total: int) -> None:
        results.append(result)
        print(f"[{number}/{total}] {describe(result)}", flush=True)
        if args.results:  # after every cell: a long run stopped midway keeps what it measured
            save_results(_merged(previous, results), args.results)
        write_report(_merged(previous, results), args.report, header=header, evidence=evidence)

    with prefect_test_harness(server_startup_timeout=180):
        run_cells(selected, PREFECT_API_URL.value(), base, on_result=progress)
    merged = _merged(previous, results)
    if args.results:
        save_results(merged, args.results)
    write_report(merged, args.report, header=header, evidence=evidence)
    bad = [r for r in results if not r.consistent]
    print(f"fault_matrix: cells={len(results)} consistent={len(results) - len(bad)} inconsistent={len(bad)}")


def _merged(previous: list[Result], new: list[Result]) -> list[Result]:
    fresh = {r.cell for r in new}
    return [r for r in previous if r.cell not in fresh] + list(new)


if __name__ == "__main__":
    main()
