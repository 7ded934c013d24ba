"""The deployments as operators run them: a real `prefect server start` (tests/fixtures/prefect.py),
`prefect deploy` of deployments/prefect.yaml and a process worker (the steps in that file's
header; tests/fixtures/deployed.py), then a manual dry run on the shared deployment lab triggered
through the API, as the UI's run form does. Checked on the server: the maintenance window's schedule
and length, the run's final state, the plan artifact, and that the stored parameters hold no secret;
checked on the lab: nothing changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.deployed import FLOW, POOL
from tests.fixtures.lab import Lab
from tests.fixtures.prefect import STARTUP_TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.lab, pytest.mark.timeout(600)]  # server start-up counts in


def lab_secrets(lab: Lab) -> list[str]:
    """Every secret value of the lab: passwords, keystore and p12 passwords, the SSH private key."""
    values = [p.read_text().splitlines()[0] for p in (lab.dir / "secrets").glob("*.secret")]
    values += [lab.cluster(c)["password"] for c in lab.data["clusters"]]
    key = Path(lab.data["ssh"]["key_file"]).read_text()
    values += [line for line in key.splitlines() if line and not line.startswith("-----")]
    assert values, "the lab has no secrets to look for"
    return values


def test_maintenance_window_schedule_and_a_manual_dry_run_through_the_api(ops_lab, deployed, prefect_server,
                                                                           tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.deployments import run_deployment

    lab: Lab = ops_lab.result(timeout=STARTUP_TIMEOUT)
    local = lab.es("local")
    before = local.cluster.remote_info().body
    ymls = {n["name"]: (Path(n["home"]) / "config" / "elasticsearch.yml").read_text() for n in lab.nodes()}

    with get_client(sync_client=True) as client:
        window = client.read_deployment_by_name(f"{FLOW}/maintenance-window")
        [entry] = window.schedules
        assert (entry.schedule.cron, entry.schedule.timezone, entry.active) == ("0 4 * * 6", "Europe/Berlin", False)
        assert window.parameters["params"]["window_minutes"] == 240  # the window: 04:00 to 08:00
        manual = client.read_deployment_by_name(f"{FLOW}/manual")
        assert manual.work_pool_name == POOL and manual.parameters["params"]["dry_run"] is True

    # The run form's answer: the lab's inventory, a dry run; the journal goes to a test directory.
    params = {"inventory": str(lab.inventory), "aliases": [lab.alias], "dry_run": True,
              "state_dir": str(tmp_path / "state")}
    run = run_deployment(f"{FLOW}/manual", parameters={"params": params}, timeout=240, poll_interval=1,
                         as_subflow=False)
    worker_log = deployed.log_tail()
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

