"""The deployments as operators run them: a real `prefect server start`, `prefect deploy` of
deployments/prefect.yaml and a process worker (the steps in that file's header), then a manual dry
run on a small seeded lab triggered through the API, as the UI's run form does. Checked on the
server: the maintenance window's schedule, the run's final state, the plan artifact, and that the
stored parameters hold no secret; checked on the lab: nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.lab import Lab

pytestmark = [pytest.mark.slow, pytest.mark.lab, pytest.mark.timeout(600)]  # server start-up counts in

ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
POOL = "esremote"
FLOW = "migrate-remote-cluster"
STARTUP_TIMEOUT = 180  # seconds; ~9 s on an idle machine, many times that on a busy one


@dataclass
class Server:
    url: str
    env: dict[str, str]  # the environment of every Prefect process that talks to this server
    logs: Path

    def prefect(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """A `prefect` CLI command from the project root, as an operator would type it."""
        result = subprocess.run([*PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False,
                                timeout=timeout)
        assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


@contextlib.contextmanager
def background(argv: list[str], env: dict[str, str], log: Path):
    """A long-running Prefect process in its own process group (it starts children), output to
    `log`; stopped with SIGINT (a worker ignores SIGTERM for a long while), SIGKILL as a last resort."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
                break


def wait_for(what: str, probe, timeout: float, log: Path | None = None):
    """Poll `probe` until it returns something truthy, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n" + (
            tail(log) if log else "")
        time.sleep(0.5)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server on a free loopback port with its own home; this module's code talks to
    it (PREFECT_API_URL), and so does every Prefect process started through `Server.env`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
                PREFECT_SERVER_UI_ENABLED="false")
    log = home / "server.log"
    with background([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], base, log) as server:
        wait_for("the Prefect server's /api/health",
                 lambda: healthy(url) or server.poll() is not None, STARTUP_TIMEOUT, log)
        assert server.poll() is None, "prefect server start exited:\n" + tail(log)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield Server(url=url, env={**base, "PREFECT_API_URL": url}, logs=home)


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory):
    """The operator's steps from deployments/prefect.yaml: the `esremote` process work pool, a worker
    on it and `prefect deploy --all` (worker start-up and deploy overlap). Yields the worker's log."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:  # what `prefect work-pool create esremote --type process` does
        client.create_work_pool(WorkPoolCreate(
            name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
    env = {**prefect_server.env, "ESREMOTE_PROJECT_DIR": str(ROOT),
           "ESREMOTE_STATE_DIR": str(tmp_path_factory.mktemp("esremote-state")),
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    log = prefect_server.logs / "worker.log"
    with background([*PREFECT, "worker", "start", "--pool", POOL], env, log):
        prefect_server.prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        yield log


@pytest.fixture(scope="module")
def small_lab(lab_factory):
    """One local and one remote node, seeded (certificate model, alias my_remote, work running);
    built in the background while the Prefect server starts (both take a while). A future of the Lab."""
    with ThreadPoolExecutor(1) as builder:
        yield builder.submit(lab_factory, "deployment", local_nodes=1, remote_nodes=1)


def lab_secrets(lab: Lab) -> list[str]:
    """Every secret value of the lab: passwords, keystore and p12 passwords, the SSH private key."""
    values = [p.read_text().splitlines()[0] for p in (lab.dir / "secrets").glob("*.secret")]
    values += [lab.cluster(c)["password"] for c in lab.data["clusters"]]
    key = Path(lab.data["ssh"]["key_file"]).read_text()
    values += [line for line in key.splitlines() if line and not line.startswith("-----")]
    assert values, "the lab has no secrets to look for"
    return values


def test_maintenance_window_schedule_and_a_manual_dry_run_through_the_api(small_lab, deployed, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.deployments import run_deployment

    lab: Lab = small_lab.result(timeout=STARTUP_TIMEOUT)
    local = lab.es("local")
    before = local.cluster.remote_info().body
    ymls = {n["name"]: (Path(n["home"]) / "config" / "elasticsearch.yml").read_text() for n in lab.nodes()}

    with get_client(sync_client=True) as client:
        window = client.read_deployment_by_name(f"{FLOW}/maintenance-window")
        [entry] = window.schedules
        assert (entry.schedule.cron, entry.schedule.timezone, entry.active) == ("0 4 * * 6", "Europe/Berlin", False)
        manual = client.read_deployment_by_name(f"{FLOW}/manual")
        assert manual.work_pool_name == POOL and manual.parameters["params"]["dry_run"] is True

    # The run form's answer: the lab's inventory, a dry run; the journal goes to a test directory.
    params = {"inventory": str(lab.inventory), "aliases": [lab.alias], "dry_run": True,
              "state_dir": str(tmp_path / "state")}
    run = run_deployment(f"{FLOW}/manual", parameters={"params": params}, timeout=240, poll_interval=1,
                         as_subflow=False)
    worker_log = tail(deployed)
    assert run.state is not None and run.state.is_final(), f"the run did not finish: {run.state}\n{worker_log}"
    assert run.state.is_completed(), f"{run.state.type}: {run.state.message}\n{worker_log}"

    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(run.id)
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        runs = [stored, *children]
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])))
    assert sorted(r.name.split("-")[0] for r in children) == ["plan", "preflight"]
    by_key = {a.key: a for a in artifacts}
    plan = by_key.get(f"plan-{lab.alias}".replace("_", "-"))
    assert plan is not None and plan.type == "markdown", sorted(k for k in by_key if k)
    assert lab.alias in plan.data
    summary = by_key[f"summary-{lab.alias}".replace("_", "-")]
    assert "planned" in summary.data

    # Nothing changed on the lab.
    assert local.cluster.remote_info().body == before
    assert "cluster_credentials" not in before[lab.alias]
    assert {n["name"]: (Path(n["home"]) / "config" / "elasticsearch.yml").read_text() for n in lab.nodes()} == ymls

    # What the server stored (parameters of the run and its subflows, artifacts) holds no secret.
    stored_texts = [json.dumps(r.parameters, default=str) for r in runs] + [str(a.data) for a in artifacts]
    assert str(lab.inventory) in stored_texts[0]
    leaked = [s for s in lab_secrets(lab) if any(s in text for text in stored_texts)]
    assert not leaked, f"{len(leaked)} secret value(s) stored on the Prefect server"

