"""End to end on the lab: `esremote migrate` (a real process) against lab clusters, reporting to a
Prefect test server, then checks on what the clusters, the nodes' files and the journal say.

1. 8.15, dynamic alias, proxy mode: migrated, credentials reloaded (no local restart while the
   work is stopped), the work running again through the API-key link; secrets nowhere in output.
2. The cross-cluster key is invalidated after it was made (lab fault `api-key-invalidated`): the
   verification fails, the rollback runs by itself, exit 3, and the certificate-model link, roles,
   the work and every node's elasticsearch.yml, keystore entries and config files are as they
   were; rolling back again changes nothing.
3. 8.12 (restarts instead of a reload), sniff mode, password-protected keystores; and aliases of two
   remote clusters defined statically in elasticsearch.yml.

The evidence comes from outside the tool: restarts are counted by process id, from each node's
own log (`Lab.starts`: every process logs its pid when it starts, as Elasticsearch does), and the
link, its credentials and the work are read from the clusters, on every local node at its own
address (`Lab.es_at`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from esremote.esyml import BEGIN_MARK
from esremote.keystore import Keystore
from esremote.lab.ops import control
from tests.fixtures.lab import Lab
from tests.test_cli_progress import OUTAGE_LINE, assert_progress_display
from tests.test_flows import shared_prefect_api

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
CREDENTIALS = f"cluster.remote.{ALIAS}.credentials"


@pytest.fixture(scope="module")
def prefect_api(request) -> str:
    """The session's Prefect test server: the `esremote migrate` processes report to it instead of
    each starting an ephemeral one."""
    return shared_prefect_api(request.config)


def esremote(*args: str, prefect_api: str, state_dir: Path, wait: bool = True):
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "ESREMOTE_STATE_DIR": str(state_dir),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [sys.executable, "-m", "esremote", *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def journal(state_dir: Path) -> list[dict]:
    """The run's journal entries ([] until the run has written one)."""
    paths = list(state_dir.glob("runs/*/journal.jsonl"))
    if not paths:
        return []
    [path] = paths
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def work_states(lab: Lab) -> dict[str, str]:
    es = lab.es("local")
    return {
        "transform": es.transform.get_transform_stats(transform_id="ccs-hosts")["transforms"][0]["state"],
        "datafeed": es.ml.get_datafeed_stats(datafeed_id="datafeed-ccs-job")["datafeeds"][0]["state"],
        "job": es.ml.get_job_stats(job_id="ccs-job")["jobs"][0]["state"],
        "follower": es.ccr.follow_info(index="follower-logs")["follower_indices"][0]["status"],
        "pattern": "active" if es.ccr.get_auto_follow_pattern(name="auto-logs")["patterns"][0]["pattern"]
        .get("active", True) else "paused",
    }


def running(states: dict[str, str]) -> dict[str, bool]:
    return {k: v in ("started", "indexing", "opened", "active") for k, v in states.items()}


def wait_for(what: str, probe, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def done(state_dir: Path, step: str) -> bool:
    return any(e["step"] == step and e["kind"] == "done" for e in journal(state_dir))


def reached(process: subprocess.Popen, state_dir: Path, step: str) -> None:
    """Wait until the run's journal says `step` is done; fail with the run's output if it ends first."""
    wait_for(step, lambda: done(state_dir, step) or process.poll() is not None, timeout=300)
    if not done(state_dir, step):
        out, err = process.communicate()
        pytest.fail(f"esremote migrate exited {process.returncode} before {step}:\n{out[-3000:]}{err[-3000:]}")


def restarts(lab: Lab, before: dict[str, list[int]]) -> dict[str, int]:
    """Per node: how many times it started since `before` (its pids then), counted by pid; every
    node's last start came up and is the process running now."""
    now = lab.pids()
    for node, pids in now.items():
        assert pids[:len(before[node])] == before[node], f"{node}: its log lost starts"
        last = lab.starts(node)[-1]
        assert last.started and pid_alive(last.pid), f"{node}: its last start ({last}) is not running"
    return {node: len(pids) - len(before[node]) for node, pids in now.items()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def connected_on_every_local_node(lab: Lab, alias: str) -> dict[str, dict]:
    """`_remote/info` of `alias` as each local node reports it, asked at its own address: connected,
    with `cluster_credentials` present and redacted (the API-key model)."""
    infos = {n["name"]: lab.es_at(n["name"]).cluster.remote_info().body.get(alias) for n in lab.nodes("local")}
    for node, info in infos.items():
        assert info and info["connected"] and info.get("cluster_credentials") == "::es_redacted::", (node, info)
    return infos


def searches_on_every_local_node(lab: Lab, alias: str) -> None:
    """A cross-cluster search that each local node coordinates, as the ccs user: documents come back."""
    for node in lab.nodes("local"):
        hits = lab.es_at(node["name"], user="ccs_user").search(index=f"{alias}:leader-logs", size=0)
        assert hits["hits"]["total"]["value"] > 0, node["name"]


def test_dynamic_proxy_alias_on_8_15_migrates_with_reload_only_and_resumes_after_a_crash(
        lab_factory, prefect_api, tmp_path):
    lab = lab_factory("e2e-815", version="8.15.0")
    before = lab.es("local").cluster.remote_info()[ALIAS]
    assert "cluster_credentials" not in before
    pids = lab.pids()

    # The orchestrator dies in the outage, right after the alias was removed ...
    first = esremote("migrate", "--inventory", str(lab.inventory), "--yes", prefect_api=prefect_api,
                     state_dir=tmp_path, wait=False)
    try:
        reached(first, tmp_path, f"stop_cross_cluster_ops/stop/{ALIAS}")
        in_outage = lab.pids()  # the work is stopped: the outage has begun
        reached(first, tmp_path, f"reconnect/remove-alias/{ALIAS}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    assert ALIAS not in lab.es("local").cluster.remote_info()
    # ... and `--resume` finishes the run from its journal.
    [run_id] = [p.name for p in (tmp_path / "runs").iterdir()]
    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--resume", run_id, "--output", "json",
                      prefect_api=prefect_api, state_dir=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The terminal: the progress display, no Prefect log line; stdout: the summary as JSON alone,
    # with the outage measured from the first attempt's first stop; the full log of both attempts
    # in the run's directory.
    summary = json.loads(result.stdout)
    assert summary["status"] == "migrated" and summary["run_id"] == run_id
    assert summary["outage"]["seconds"] > 0 and summary["outage"]["started"] < summary["outage"]["ended"]
    assert_progress_display(result.stderr, "reconnect", "verify", "resume_cross_cluster_ops")
    assert "✓ outage over: all work resumed after" in result.stderr
    log = Path(summary["log_file"])
    assert log == tmp_path / "runs" / run_id / "run.log" and log.stat().st_mode & 0o777 == 0o600
    assert "done in an earlier attempt, skipped" in log.read_text()
    assert log.read_text().count("Beginning flow run 'migrate-") == 2  # the crashed attempt, then this one

    local = lab.es("local")
    info = local.cluster.remote_info()[ALIAS]
    assert info["connected"] and info["cluster_credentials"] == "::es_redacted::"
    assert info["proxy_address"] == before["proxy_address"].replace(":9300", ":9443")
    hits = lab.es("local", user="ccs_user").search(index=f"{ALIAS}:leader-logs", size=0)
    assert hits["hits"]["total"]["value"] > 0
    assert all(running(wait_for("the work to run again", lambda: work_states(lab))).values())

    entries = journal(tmp_path)
    steps = [e["step"] for e in entries if e["kind"] == "done"]
    # Counted by pid: every node restarted once, before the outage (remote: its remote-cluster
    # server; local: the CA and client TLS settings), and none again: not in the outage (the
    # credentials were reloaded) and not in the resumed run (those phases were done).
    assert restarts(lab, pids) == {n["name"]: 1 for n in lab.nodes()}
    assert lab.pids() == in_outage
    assert "reconnect/reload/local" in steps
    # The key is in every local keystore, stored as a Prefect Secret block, and printed nowhere.
    keys = {n["name"]: Keystore.load(Path(n["home"]) / "config" / "elasticsearch.keystore").get_string(CREDENTIALS)
            for n in lab.nodes("local")}
    [encoded] = set(keys.values())
    stored = next(e["data"] for e in entries if e["step"] == f"prepare_remote/api-key/{ALIAS}" and e["kind"] == "done")
    assert stored["kind"] == "prefect"
    run_dir = next((tmp_path / "runs").iterdir())
    texts = [result.stdout, result.stderr] + [p.read_text() for p in run_dir.glob("*.json*")] + [
        (run_dir / "plan.md").read_text(), (run_dir / "run.log").read_text()]
    raw = __import__("base64").b64decode(encoded).decode().split(":", 1)[1]
    assert not [t for t in texts if encoded in t or raw in t]
    # The plan and the summary are artifacts in Prefect, under stable keys, without the key either.
    from prefect.artifacts import Artifact  # noqa: PLC0415

    plan, summary = Artifact.get("plan-my-remote"), Artifact.get("summary-my-remote")
    assert "## reconnect" in plan.data and "reload_secure_settings" in plan.data
    assert "`_remote/info` before" in summary.data and "::es_redacted::" in summary.data
    assert not [t for t in (plan.data, summary.data) if encoded in t or raw in t]
    # Remote nodes: the p12 is 0660 and the server really speaks TLS on 9443 (the link above uses it).
    for node in lab.nodes("remote"):
        p12 = Path(node["home"]) / "config" / "certs" / "remote-cluster.p12"
        assert p12.stat().st_mode & 0o777 == 0o660

    # Verify agrees, and a second plan has nothing left to change.
    check = esremote("verify", "--inventory", str(lab.inventory), prefect_api=prefect_api, state_dir=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    again = esremote("plan", "--inventory", str(lab.inventory), "--json", prefect_api=prefect_api,
                     state_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    left = [c for c in json.loads(again.stdout)["changes"] if c["kind"] != "probe"]
    assert left == []


def node_files(lab: Lab) -> dict[str, dict]:
    """Per node of both clusters: elasticsearch.yml bytes, keystore entry names, and every path in
    the config directory (a rollback leaves none of its backups there)."""
    out = {}
    for node in lab.nodes():
        config = Path(node["home"]) / "config"
        out[node["name"]] = {
            "yml": (config / "elasticsearch.yml").read_bytes(),
            "keystore": Keystore.load(config / "elasticsearch.keystore").names(),
            "files": sorted(str(p.relative_to(config)) for p in config.rglob("*")),
        }
    return out


def test_invalidated_key_fails_verification_and_everything_is_rolled_back(lab_factory, prefect_api, tmp_path):
    lab = lab_factory("e2e-rollback", version="8.15.0")
    local = lab.es("local")
    remote_info = local.cluster.remote_info()[ALIAS]
    nodes = node_files(lab)
    assert lab.nodes("local") and lab.nodes("remote") and len(nodes) == len(lab.nodes())
    roles = local.security.get_role(name="ccs_role,ccr_role").body
    states = running(work_states(lab))
    assert all(states.values())
    pids = lab.pids()

    process = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--link-timeout", "15",
                       prefect_api=prefect_api, state_dir=tmp_path, wait=False)
    try:
        # Right after the key was made (before the outage), it is invalidated on the remote.
        wait_for("the cross-cluster key", lambda: any(
            e["step"] == f"prepare_remote/api-key/{ALIAS}" and e["kind"] == "done" for e in journal(tmp_path)),
            timeout=300)
        control.fault(lab.dir, "api-key-invalidated")
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 3, stdout[-3000:] + stderr[-3000:]
    assert "status: rolled-back" in stdout
    assert "verification of alias my_remote" in stdout + stderr
    # The summary names the measured outage (first work stopped to all work resumed by the
    # rollback); the terminal shows the progress display, the failure and the rollback.
    assert OUTAGE_LINE.search(stdout), stdout
    assert_progress_display(stderr, "verify", "rollback")
    assert "✗ verify failed" in stderr and "✓ outage over: all work resumed after" in stderr

    after = local.cluster.remote_info()[ALIAS]
    assert after["connected"] and "cluster_credentials" not in after
    assert after["proxy_address"] == remote_info["proxy_address"]
    # Every node of both clusters as before the run: elasticsearch.yml byte for byte, the keystore
    # entries (credentials and the p12 password removed), no CA, p12 or directory left behind.
    now = node_files(lab)
    for name, before in nodes.items():
        assert now[name]["yml"] == before["yml"], name
        assert now[name]["keystore"] == before["keystore"], name
        assert now[name]["files"] == before["files"], name
    assert local.security.get_role(name="ccs_role,ccr_role").body == roles
    assert running(wait_for("the work to run again", lambda: work_states(lab))) == states
    entries = journal(tmp_path)
    steps = [e["step"] for e in entries if e["kind"] == "done"]
    [run_id] = [p.name for p in (tmp_path / "runs").iterdir()]
    assert f"rollback/restore/{ALIAS}" in steps and "rollback/reload/local" in steps
    # Counted by pid: every node restarted twice, once on the way (remote server, local TLS settings)
    # and once more to undo it, node by node, the local cluster first; the work was running again
    # before those restarts began (the link and the work are checked above, after them).
    assert restarts(lab, pids) == {n["name"]: 2 for n in lab.nodes()}
    last_starts = {n["name"]: lab.starts(n["name"])[-1].at for n in lab.nodes()}
    assert sorted(last_starts, key=last_starts.get) == [n["name"] for c in ("local", "remote") for n in lab.nodes(c)]
    undo = [i for i, s in enumerate(steps) if s.startswith("rollback/undo/restart/")]
    assert undo and steps.index(f"rollback/resume/{ALIAS}") < undo[0]
    pids = lab.pids()

    # Rolling back again changes nothing and restarts nothing.
    again = esremote("rollback", "--inventory", str(lab.inventory), run_id, prefect_api=prefect_api,
                     state_dir=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert node_files(lab) == now
    assert lab.pids() == pids  # no node restarted
    later = [e for e in journal(tmp_path)[len(entries):] if e["kind"] == "done"]
    assert not [e["step"] for e in later if e["data"].get("changed") or e["data"].get("removed")]


def test_restart_path_sniff_password_keystores_and_static_aliases(lab_factory, prefect_api, tmp_path):
    """Two rehearsals at once: 8.12 (credentials not reloadable: local nodes restart one by one),
    sniff mode and password-protected keystores; and 8.17 with both aliases of two remote clusters
    defined statically in elasticsearch.yml (moved there, then restarts). Each ends with its aliases
    connected on every local node with the API key, and the work running through them."""
    old = lab_factory("e2e-812-sniff", version="8.12.2", mode="sniff", keystore_password=True)
    static = lab_factory("e2e-static", version="8.17.0", alias_in_yml=True, remotes=2)
    runs = {name: (lab, tmp_path / name) for name, lab in (("old", old), ("static", static))}
    pids = {name: lab.pids() for name, (lab, _) in runs.items()}
    processes = {name: esremote("migrate", "--inventory", str(lab.inventory), "--yes", prefect_api=prefect_api,
                                state_dir=state, wait=False) for name, (lab, state) in runs.items()}
    outputs = {name: p.communicate(timeout=600) for name, p in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: " + outputs[name][0][-3000:] + outputs[name][1][-3000:]

    # 8.12, sniff: on every local node the alias is connected with the API key, sniffing the remote
    # nodes' 9443; each local node coordinates a cross-cluster search; the work runs again.
    for node, info in connected_on_every_local_node(old, ALIAS).items():
        assert info["mode"] == "sniff", (node, info)
        assert sorted(info["seeds"]) == sorted(f"{n['ip']}:9443" for n in old.nodes("remote")), (node, info)
    searches_on_every_local_node(old, ALIAS)
    assert all(running(wait_for("the work to run again (8.12)", lambda: work_states(old))).values())
    # Counted by pid: credentials are not reloadable before 8.13, so every local node restarted
    # twice (its TLS settings, then its credentials), every remote node once (its server).
    assert restarts(old, pids["old"]) == {n["name"]: 2 if n in old.nodes("local") else 1 for n in old.nodes()}
    steps = [e["step"] for e in journal(runs["old"][1]) if e["kind"] == "done"]
    assert not [s for s in steps if s.startswith("reconnect/reload/")]

    # Static aliases: both connected with the API key on every local node, still defined in
    # elasticsearch.yml only; the work (on my_remote) runs again.
    local = static.es("local")
    for alias in ("my_remote", "my_remote2"):
        connected_on_every_local_node(static, alias)
        assert local.cluster.get_settings(flat_settings=True)["persistent"].get(
            f"cluster.remote.{alias}.mode") is None  # still static: nothing moved into cluster settings
    searches_on_every_local_node(static, ALIAS)
    assert all(running(wait_for("the work to run again (static)", lambda: work_states(static))).values())
    assert restarts(static, pids["static"]) == {n["name"]: 2 if n in static.nodes("local") else 1
                                                for n in static.nodes()}
    for node in static.nodes("local"):
        yml = (Path(node["home"]) / "config" / "elasticsearch.yml").read_text()
        assert ":9300" not in yml.split(BEGIN_MARK)[0].split("cluster.remote.", 1)[-1]
        bundle = (Path(node["home"]) / "config" / "remote-cluster-ca.crt").read_text()
        assert bundle.count("BEGIN CERTIFICATE") == 2  # one CA per remote cluster
