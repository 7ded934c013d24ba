"""The Prefect side, on a Prefect test server: retries only for transient faults, redaction of what
reaches Prefect's API logs, the approval gate of retire_certificate_trust, and the deployments file
(every entrypoint loads and its parameters validate)."""

from __future__ import annotations

import ast
import contextlib
import threading
import time
from pathlib import Path

import pytest
import yaml
from prefect import flow, get_run_logger, task

from esremote.errors import ConfigError, ConnectError
from esremote.redact import MASK, default_redactor
from esremote.tasks.common import RETRYING, install_redaction

ROOT = Path(__file__).resolve().parents[1]


_HARNESS: dict = {}


def shared_prefect_api(config) -> str:
    """One Prefect test server for every module of the session that needs one (it takes ~8 s to
    start on an idle machine, far more on a busy one); stopped when the session ends."""
    if "url" not in _HARNESS:
        from prefect.settings import PREFECT_API_URL  # noqa: PLC0415
        from prefect.testing.utilities import prefect_test_harness  # noqa: PLC0415

        stack = contextlib.ExitStack()
        stack.enter_context(prefect_test_harness(server_startup_timeout=180))
        _HARNESS["url"] = PREFECT_API_URL.value()
        config.add_cleanup(stack.close)
    return _HARNESS["url"]


@pytest.fixture(scope="module", autouse=True)
def prefect_api(request) -> str:
    return shared_prefect_api(request.config)


def _flaky(failures: list[Exception]):
    calls = []

    @task(name="flaky", **{**RETRYING, "retry_delay_seconds": 0, "retry_jitter_factor": None})
    def flaky() -> int:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return len(calls)

    @flow(name="retry-probe")
    def probe():
        return flaky()

    return probe, calls


def test_transient_failures_are_retried_until_success():
    probe, calls = _flaky([ConnectError("timed out", host="n1"), TimeoutError("read timed out")])
    assert probe() == 3 and len(calls) == 3


def test_a_deterministic_error_fails_at_once():
    probe, calls = _flaky([ConfigError("bad inventory"), ConfigError("bad inventory")])
    state = probe(return_state=True)
    assert state.is_failed() and len(calls) == 1
    with pytest.raises(ConfigError, match="bad inventory"):
        state.result()


def test_secrets_never_reach_prefects_api_logs():
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId  # noqa: PLC0415

    secret = "s3cr3t-cross-cluster-key-value"
    default_redactor.add(secret)
    install_redaction()

    @task(name="talker")
    def talker():
        get_run_logger().info("task sees %s", secret)

    @flow(name="redaction-probe")
    def probe():
        get_run_logger().info("flow sees %s and %s", secret, "nothing else")
        talker()

    state = probe(return_state=True)
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            texts = [log.message for log in logs]
            if any("flow sees" in t for t in texts) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    assert any(f"flow sees {MASK} and nothing else" == t for t in texts), texts
    assert not any(secret in t for t in texts)


def _inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yml"
    access = {"urls": ["https://127.0.0.1:1"], "auth": {"username": "u", "password": {"env": "X"}}}
    path.write_text(yaml.safe_dump({
        "ssh": {"known_hosts": str(tmp_path / "known_hosts")},
        "clusters": {
            "local": {"role": "local", **access, "nodes": [{"name": "l0", "address": "127.0.0.1"}]},
            "remote": {"role": "remote", **access, "nodes": [{"name": "r0", "address": "127.0.0.1"}]}},
        "aliases": {"my_remote": {"local": "local", "remote": "remote"}}}))
    return path


def _retire(tmp_path, monkeypatch, answer: dict | None, timeout: int = 30):
    from esremote.params import MigrationParams  # noqa: PLC0415
    from esremote.flows import retire_certificate_trust as retire  # noqa: PLC0415

    monkeypatch.setattr(retire, "retire_plan", lambda run: "# Retire certificate trust\n\n- nothing real\n")
    params = MigrationParams(inventory=_inventory(tmp_path), state_dir=tmp_path / "state", approval_timeout_s=timeout)
    found: dict = {}

    def approver():
        from prefect.client.orchestration import get_client  # noqa: PLC0415
        from prefect.flow_runs import resume_flow_run  # noqa: PLC0415

        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                runs = [r for r in client.read_flow_runs() if r.state and r.state.is_paused()]
                if runs:
                    found["run"] = runs[0]
                    resume_flow_run(runs[0].id, run_input=answer)
                    return
                time.sleep(0.3)

    if answer is not None:
        thread = threading.Thread(target=approver, daemon=True)
        thread.start()
    state = retire.retire_certificate_trust_flow(params, return_state=True)
    return state, found


def test_retirement_waits_for_approval_and_does_nothing_when_refused(tmp_path, monkeypatch):
    state, found = _retire(tmp_path, monkeypatch, {"approve": False, "transport_ip_filter": True})
    assert found, "the flow never paused for approval"
    assert state.is_completed() and state.result() == [
        "not approved in the Prefect UI: certificate trust left in place"]


@pytest.mark.timeout(300)
def test_retirement_without_an_answer_ends_as_a_refusal_after_its_timeout(tmp_path, monkeypatch):
    """No answer in time is a refusal that says so (the run does not fail: the migration is done).
    What ends the wait is the gate's own timeout: Prefect's pause expiry is pushed an hour out, so
    a gate that relied on it would hang here until the test's timeout fails it."""
    from esremote.flows import retire_certificate_trust as retire  # noqa: PLC0415

    monkeypatch.setattr(retire, "PAUSE_GRACE_S", 3600)
    state, _ = _retire(tmp_path, monkeypatch, None, timeout=2)
    assert state.is_completed(), state
    [line] = state.result()
    assert line.startswith("no answer to the approval request within 2 s (approval_timeout_s): treated as a "
                           "refusal"), line


def test_every_deployment_loads_and_its_parameters_validate():
    from prefect.flows import load_flow_from_entrypoint  # noqa: PLC0415

    spec = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} >= {"maintenance-window", "manual"}
    for deployment in spec["deployments"]:
        entry = deployment["entrypoint"]
        loaded = load_flow_from_entrypoint(str(ROOT / entry.split(":")[0]) + ":" + entry.split(":")[1])
        validated = loaded.validate_parameters(deployment["parameters"])
        inventories = getattr(validated["params"], "inventories", None) or [validated["params"].inventory]
        assert [str(i) for i in inventories] == ["deployments/inventory.yml"]
        assert "password" not in yaml.safe_dump(deployment["parameters"])


def test_tasks_have_kebab_case_names_and_run_names_that_name_their_target():
    for path in sorted((ROOT / "tasks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "task":
                    kwargs = {k.arg: k.value.value for k in deco.keywords if isinstance(k.value, ast.Constant)}
                    assert kwargs["name"] == kwargs["name"].lower() and "_" not in kwargs["name"], node.name
                    assert "{" in kwargs["task_run_name"], f"{path.name}:{node.name} run name names nothing"
