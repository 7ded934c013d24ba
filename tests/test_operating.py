"""Operating rules on a real Prefect server, through the deployments of deployments/prefect.yaml and
a process worker, on the shared deployment lab (tests/fixtures/deployed.py), in this order:

1. the run form: the `manual` deployment's parameter schema as the server serves it;
2. the maintenance window: a window too short for the plan of the untouched pair local -> remote2
   stops the run before anything changes, and says so;
3. one migration per cluster pair: run A migrates my_remote2 and waits at the approval gate, B for
   the same pair with no_wait ends at once naming A, C waits for A and runs after it; nobody answers
   A's approval, which ends as a refusal when its timeout passes;
4. the fleet: both pairs, as two runs of the manual deployment, one at a time (a dry run).
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from esremote.flows.pair_lock import locks_for
from esremote.inventory import load_inventory
from esremote.params import FleetParams, MigrationParams
from tests.fixtures.deployed import (
    MANUAL,
    artifacts,
    children,
    lab_snapshot,
    logs,
    read_run,
    start,
    wait_final,
    wait_for,
)
from tests.fixtures.lab import Lab
from tests.fixtures.prefect import STARTUP_TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.lab, pytest.mark.timeout(900)]

ALIAS = "my_remote2"   # the pair local -> remote2 (test_ui_approval.py migrates my_remote)
ENUMS = {"connection_mode": ["keep", "proxy", "sniff"], "restart_strategy": ["auto", "reload", "restart"],
         "certificate_strategy": ["generate", "provided-ca"]}


@pytest.fixture(scope="module")
def lab(ops_lab) -> Lab:
    return ops_lab.result(timeout=STARTUP_TIMEOUT)


def _definition(schema: dict, prop: dict) -> dict:
    ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
    if ref is None:
        return prop
    return schema["definitions"][ref.rsplit("/", 1)[1]]


def _enum(prop: dict) -> list | None:
    for option in [prop, *prop.get("anyOf", []), *prop.get("allOf", [])]:
        if "enum" in option:
            return option["enum"]
    return None


def test_the_run_form_describes_every_parameter_and_takes_no_secret(deployed, prefect_server):
    """What the UI builds its run form from: GET /api/deployments/name/<flow>/<deployment>."""
    for deployment, model in ((MANUAL, MigrationParams), ("migrate-fleet/fleet", FleetParams)):
        answer = httpx.get(f"{prefect_server.url}/deployments/name/{deployment}", timeout=30)
        assert answer.status_code == 200, answer.text
        schema = answer.json()["parameter_openapi_schema"]
        params = _definition(schema, schema["properties"]["params"])
        assert set(params["properties"]) == set(model.model_fields), deployment
        nested = {name: _definition(schema, prop) for name, prop in params["properties"].items()
                  if _definition(schema, prop) is not prop}
        fields = [(name, prop) for name, prop in params["properties"].items()]
        fields += [(f"{owner}.{name}", prop) for owner, sub in nested.items()
                   for name, prop in sub["properties"].items()]
        undescribed = [name for name, prop in fields if not (prop.get("description") or "").strip()]
        assert not undescribed, f"{deployment}: parameters without a description: {undescribed}"
        for name, values in ENUMS.items():
            if name in params["properties"]:
                assert _enum(params["properties"][name]) == values, name
        text = json.dumps(schema)
        assert '"password"' not in text and "writeOnly" not in text, "a parameter takes a secret value"
        for name, prop in fields:
            lowered = name.lower()
            assert not any(word in lowered for word in ("password", "secret", "token", "credential", "api_key")), name
            if "key" in lowered.rsplit(".", 1)[-1] and name != "key_expiration":
                assert name.endswith("_file") and "path" in json.dumps(prop), f"{name} must be a file's path"


def test_a_window_too_short_for_the_plan_stops_before_anything_changes(lab, deployed, prefect_server, tmp_path):
    before = lab_snapshot(lab)
    assert "cluster_credentials" not in before["remote_info"][ALIAS], "test order: my_remote2 must be untouched here"
    run = start({"inventory": str(lab.inventory), "aliases": [ALIAS], "window_minutes": 1,
                 "state_dir": str(tmp_path / "state")})
    done = wait_final(run.id, deployed)
    assert done.state.is_failed(), f"{done.state.type}: {done.state.message}\n{deployed.log_tail()}"
    assert done.state.message.startswith("stopped before prepare_remote: the maintenance window ends "), \
        done.state.message
    assert "nothing of the outage was started and the clusters are as they were" in done.state.message
    assert sorted(c.name.split("-")[0] for c in children(run.id)) == ["plan", "preflight"]
    found = artifacts(run.id)
    window = found["window-my-remote2"][0].data
    assert window.startswith("# Maintenance window: does not fit: stopped before `prepare_remote`"), window
    assert "| prepare_remote |" in window and "default: none measured yet" in window
    assert found["summary-my-remote2"][0].data.startswith("# Migration out-of-window: my_remote2")
    wait_for("the window check in the run's log (logs reach the server in batches)",
             lambda: any("maintenance window check before prepare_remote" in line and "does not fit" in line
                         for line in logs(run.id)), 60, deployed)
    assert lab_snapshot(lab) == before


def test_one_migration_per_cluster_pair_and_an_unanswered_approval(lab, deployed, prefect_server, tmp_path):
    """A holds the pair local -> remote2 for its whole run, approval wait included; B (no_wait)
    ends at once naming A; C waits for A, then runs. A's approval times out: a refusal."""
    params = {"inventory": str(lab.inventory), "aliases": [ALIAS], "state_dir": str(tmp_path / "state")}
    [pair, *clusters] = locks_for(load_inventory(lab.inventory), [ALIAS])
    assert pair.what == "cluster pair local -> remote2" and len(clusters) == 2
    a = start({**params, "retire_trust": True, "retire": {"transport_ip_filter": True}, "approval_timeout_s": 5})
    wait_for("run A to hold the pair's concurrency limit",
             lambda: f"esremote-lock:{pair.name}" in read_run(a.id).tags, 240, deployed)
    limit = httpx.get(f"{prefect_server.url}/v2/concurrency_limits/{pair.name}", timeout=30).json()
    assert (limit["limit"], limit["active"], limit["active_slots"]) == (1, True, 1), limit
    b = start({**params, "no_wait": True})
    c = start(params)
    a_name = read_run(a.id).name

    b_done = wait_final(b.id, deployed, timeout=240)
    assert b_done.state.is_failed(), f"{b_done.state.type}: {b_done.state.message}"
    assert f"flow run '{a_name}' ({a.id})" in b_done.state.message and "not waiting (no_wait)" in b_done.state.message
    assert artifacts(b.id)["summary-my-remote2"][0].data.startswith("# Migration busy: my_remote2")
    assert children(b.id) == [], "B did something before it gave up"
    wait_for("run C to wait for A", lambda: any(f"waiting for flow run '{a_name}' ({a.id})" in line
                                                for line in logs(c.id)), 240, deployed)

    a_done = wait_final(a.id, deployed)
    assert a_done.state.is_completed(), f"{a_done.state.type}: {a_done.state.message}\n{deployed.log_tail()}"
    summary = artifacts(a.id)["summary-my-remote2"][0].data
    assert summary.startswith("# Migration migrated: my_remote2")
    assert ("no answer to the approval request within 5 s (approval_timeout_s): treated as a refusal, certificate "
            "trust left in place") in summary
    settings = lab.es("remote2").cluster.get_settings(flat_settings=True).body
    assert not any("transport.filter" in key for layer in settings.values() for key in layer), settings

    c_done = wait_final(c.id, deployed)
    assert c_done.state.is_completed(), f"{c_done.state.type}: {c_done.state.message}\n{deployed.log_tail()}"
    wait_for("C's log to say it took the pair", lambda: any("is free now: this run holds it" in line
                                                            for line in logs(c.id)), 60, deployed)
    assert c_done.start_time < a_done.end_time, "C started only after A: it never had to wait"
    a_last = max(r.end_time for r in children(a.id))          # A's retirement subflow, just before it let go
    c_first = min(r.start_time for r in children(c.id))       # C's preflight
    assert c_first >= a_last, "C worked on the pair while A still held it"
    info = lab.es("local").cluster.remote_info().body[ALIAS]
    assert info["connected"] and info.get("cluster_credentials") == "::es_redacted::"


def test_a_fleet_runs_one_migration_per_cluster_pair_one_at_a_time(lab, deployed, prefect_server, tmp_path):
    """Two inventories, one pair each (the lab's two pairs), at most one migration at a time."""
    spec = yaml.safe_load(lab.inventory.read_text())
    inventories = []
    for alias in ("my_remote", "my_remote2"):
        path = tmp_path / f"{alias}.yml"
        path.write_text(yaml.safe_dump({**spec, "aliases": {alias: spec["aliases"][alias]}}))
        inventories.append(str(path))
    fleet = start({"inventories": inventories, "max_running": 1, "dry_run": True,
                   "state_dir": str(tmp_path / "state")}, deployment="migrate-fleet/fleet")
    done = wait_final(fleet.id, deployed)
    assert done.state.is_completed(), f"{done.state.type}: {done.state.message}\n{deployed.log_tail()}"

    pairs = children(fleet.id)   # each a run of the manual deployment, under the fleet run
    assert len(pairs) == 2 and all(r.state.is_completed() for r in pairs), [(r.name, r.state) for r in pairs]
    assert {str(r.deployment_id) for r in pairs} == {str(_deployment_id(MANUAL))}
    assert {r.parameters["params"]["aliases"][0] for r in pairs} == {"my_remote", "my_remote2"}
    first, second = sorted(pairs, key=lambda r: r.start_time)
    assert second.start_time >= first.end_time, "two migrations ran at once with max_running 1"
    [table] = artifacts(fleet.id)["fleet"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted((row["pair"], row["status"], row["state"]) for row in rows) == [
        ("local -> remote", "planned", "Completed"), ("local -> remote2", "planned", "Completed")]
    assert {row["flow run"].split(" (")[0] for row in rows} == {r.name for r in pairs}


def _deployment_id(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).id
