"""Key rotation on the lab (8.15, 2 local nodes + 1 remote), migrated by hand as Elastic's guide
says (tests/test_lab_manual_migration.py) with a key named and labelled as an earlier esremote run
made it (`{"esremote": {...}}` metadata, no `managed_by`).

1. `rotate-cross-cluster-key`: no node restarts (same pids), the old key is invalid afterwards, the
   new one has the same access, esremote's metadata and the asked expiry, every local node's
   keystore holds it and cross-cluster search works through every local node; then the key report
   sees it, and `--invalidate-orphans` invalidates an orphan esremote made but not one it did not.
2. The new key fails verification (a test hook invalidates it after the reload): the rotation
   rolls back by itself: the old key is back in every keystore, valid, and searches work on every
   node, still without a restart.
3. The orchestrator dies after the reload: `--resume` finishes the rotation, repeating no step.
4. Expiry: `check-key-expiry` and `esremote keys --check` warn within the window, not before.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from esremote.cluster.api_key import key_name
from esremote.cluster.client import poll
from esremote.key_inventory import read_alias_usage
from esremote.params import RotationParams
from esremote.ssh import SSHPool
from tests.fixtures.lab import Lab
from tests.test_flows import shared_prefect_api
from tests.test_lab_manual_migration import (
    ALIAS,
    REMOTE_INDICES,
    Operator,
    check_remote_cluster_port,
    prepare_remote,
    reconnect_with_api_key,
    resume_cross_cluster_operations,
    stage_local,
    stop_cross_cluster_operations,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ACCESS = {"search": [{"names": REMOTE_INDICES}], "replication": [{"names": REMOTE_INDICES}]}


def node_pids(lab: Lab) -> dict[str, str]:
    return {n["name"]: (Path(n["home"]) / "run" / "elasticsearch.pid").read_text().strip() for n in lab.nodes()}


def keystore_key_ids(lab: Lab) -> dict[str, str | None]:
    from esremote.inventory import load_inventory  # noqa: PLC0415

    pool = SSHPool()
    try:
        return dict(read_alias_usage(load_inventory(lab.inventory), ALIAS, pool).by_node)
    finally:
        pool.close()


def search_on_every_local_node(lab: Lab) -> None:
    for node in lab.nodes("local"):
        hits = lab.es_at(node["name"], user="ccs_user").search(index=f"{ALIAS}:leader-logs", size=0)
        assert hits["hits"]["total"]["value"] > 0, node["name"]
        assert hits["_clusters"]["successful"] == hits["_clusters"]["total"], (node["name"], hits["_clusters"])


def key(lab: Lab, key_id: str) -> dict:
    return lab.es("remote").security.get_api_key(id=key_id)["api_keys"][0]


@pytest.fixture(scope="module")
def migrated(lab_factory, request):
    """A lab on the API-key model, its key made as an earlier esremote run made keys. Yields
    (lab, key id)."""
    shared_prefect_api(request.config)
    lab = lab_factory("rotate", version="8.15.0", local_nodes=2, remote_nodes=1)
    op = Operator(lab)
    try:
        ca_pem = prepare_remote(op, lab)
        check_remote_cluster_port(lab, ca_pem)
        created = lab.es("remote").security.create_cross_cluster_api_key(
            name=key_name("local", ALIAS), access=ACCESS,
            metadata={"esremote": {"run_id": "earlier-run", "alias": ALIAS, "local_cluster": "local"}})
        stage_local(op, lab, ca_pem)
        stop_cross_cluster_operations(lab)
        reconnect_with_api_key(op, lab, created["encoded"])
        local = lab.es("local")
        poll(lambda: local.cluster.remote_info()[ALIAS]["connected"], timeout=30, what="the API-key link")
        resume_cross_cluster_operations(lab)
        search_on_every_local_node(lab)
        yield lab, created["id"]
    finally:
        op.close()
        lab.down()


def test_rotation_without_restart_invalidates_the_old_key(migrated, tmp_path):
    from esremote.flows.rotate import run_rotation  # noqa: PLC0415

    lab, old_id = migrated
    pids = node_pids(lab)
    started = time.time() * 1000
    summary = run_rotation(RotationParams(inventory=lab.inventory, aliases=[ALIAS], key_expiration="30d",
                                          state_dir=tmp_path))
    assert (summary.status, summary.exit_code) == ("rotated", 0), summary.to_text()
    outcome = summary.aliases[ALIAS]
    new_id = outcome["new_key_id"]
    assert outcome["old_key_id"] == old_id and new_id not in (None, old_id)

    assert node_pids(lab) == pids, "a node restarted"
    assert key(lab, old_id)["invalidated"] is True
    new = key(lab, new_id)
    assert new["invalidated"] is False and new["name"] == key_name("local", ALIAS)
    assert new["access"] == key(lab, old_id)["access"]
    assert abs(new["expiration"] - (started + 30 * 86_400_000)) < 600_000
    meta = new["metadata"]
    assert meta["managed_by"] == "esremote"
    assert meta["esremote"]["alias"] == ALIAS and meta["esremote"]["local_cluster"] == "local"
    assert meta["esremote"]["run_id"] == summary.run_id and meta["esremote"]["rotated_from"] == old_id
    assert len(meta["esremote"]["access_sha256"]) == 64
    assert keystore_key_ids(lab) == {n["name"]: new_id for n in lab.nodes("local")}
    search_on_every_local_node(lab)
    # The keystore backups (they hold the old key) left the nodes with the rotation's end.
    left = [p for n in lab.nodes() for p in (Path(n["home"]) / "config").rglob(f"*.esremote-{summary.run_id}*")]
    assert left == [], left

    # The key report: the alias uses the new key (read from both keystores), 30 days left; an
    # unused key esremote made is an orphan it invalidates, one it did not make is left alone.
    from esremote.inventory import load_inventory  # noqa: PLC0415
    from esremote.key_inventory import invalidate_orphans  # noqa: PLC0415
    from esremote.tasks.keys import key_report  # noqa: PLC0415

    remote = lab.es("remote")
    stray = remote.security.create_cross_cluster_api_key(
        name=key_name("local", ALIAS), access=ACCESS,
        metadata={"managed_by": "esremote", "esremote": {"run_id": "gone", "alias": ALIAS, "local_cluster": "local"}})
    foreign = remote.security.create_cross_cluster_api_key(name="made-by-hand", access=ACCESS)
    report, es_of = key_report(load_inventory(lab.inventory), state_dir=tmp_path)
    usage = report.usages[ALIAS]
    assert usage.source == "keystore" and usage.key_ids == [new_id]
    [finding] = report.findings(warn_days=14)
    assert finding.level == "ok" and 29.9 < finding.days_left <= 30
    assert {r.key.id for r in report.orphans()} == {stray["id"], foreign["id"]}
    assert [r.key.id for r in report.orphans(managed_only=True)] == [stray["id"]]
    assert report.findings(warn_days=31)[0].level == "warning"
    invalidate_orphans(report, es_of)
    assert key(lab, stray["id"])["invalidated"] is True
    assert key(lab, foreign["id"])["invalidated"] is False
    assert key(lab, new_id)["invalidated"] is False


def test_a_new_key_that_fails_verification_is_rolled_back(migrated, tmp_path, monkeypatch):
    from esremote.flows import rotate  # noqa: PLC0415

    lab, _ = migrated
    [current] = set(keystore_key_ids(lab).values())
    pids = node_pids(lab)
    seen = []

    def invalidate_new_key(run_id, alias, new_key_id):
        seen.append(new_key_id)
        lab.es("remote").security.invalidate_api_key(ids=[new_key_id])

    monkeypatch.setattr(rotate, "BEFORE_VERIFY", [invalidate_new_key])
    summary = rotate.run_rotation(RotationParams(inventory=lab.inventory, aliases=[ALIAS], state_dir=tmp_path))
    assert (summary.status, summary.exit_code) == ("rolled-back", 3), summary.to_text()
    message = summary.aliases[ALIAS]["message"]
    assert f"unable to authenticate user [{seen[0]}]" in message, message
    assert f"the old key {current} is back in every keystore" in message

    assert node_pids(lab) == pids, "a node restarted"
    assert keystore_key_ids(lab) == {n["name"]: current for n in lab.nodes("local")}
    assert key(lab, current)["invalidated"] is False
    assert key(lab, seen[0])["invalidated"] is True
    search_on_every_local_node(lab)


def test_a_rotation_whose_orchestrator_died_is_finished_by_resume(migrated, tmp_path, monkeypatch):
    """The process dies after the nodes reloaded the new key (before verification): `--resume`
    skips every done step (no keystore written twice) and finishes the rotation."""
    import json  # noqa: PLC0415

    from esremote.flows import rotate  # noqa: PLC0415

    class Died(BaseException):
        pass

    def die(run_id, alias, new_key_id):
        raise Died()

    lab, _ = migrated
    [before] = set(keystore_key_ids(lab).values())
    params = RotationParams(inventory=lab.inventory, aliases=[ALIAS], state_dir=tmp_path, run_id="died-once")
    monkeypatch.setattr(rotate, "BEFORE_VERIFY", [die])
    try:
        rotate.run_rotation(params)
    except Died:
        pass
    monkeypatch.setattr(rotate, "BEFORE_VERIFY", [])
    summary = rotate.run_rotation(params)
    assert summary.status == "rotated", summary.to_text()
    new_id = summary.aliases[ALIAS]["new_key_id"]
    assert summary.aliases[ALIAS]["old_key_id"] == before
    assert keystore_key_ids(lab) == {n["name"]: new_id for n in lab.nodes("local")}
    assert key(lab, before)["invalidated"] is True
    entries = [json.loads(line) for line in (tmp_path / "runs" / "died-once" / "journal.jsonl").read_text().splitlines()]
    writes = [e["step"] for e in entries if e["kind"] == "intent" and e["step"].startswith(f"rotate/keystore/{ALIAS}/")]
    assert sorted(writes) == [f"rotate/keystore/{ALIAS}/{n['name']}" for n in lab.nodes("local")]
    assert [e["step"] for e in entries if e["kind"] == "intent" and e["step"] == f"rotate/create-key/{ALIAS}"] \
        == [f"rotate/create-key/{ALIAS}"]
    search_on_every_local_node(lab)


def test_expiry_is_warned_about_before_the_key_expires(migrated, tmp_path):
    """The key in use (30 days left: the resumed rotation kept the lifetime of the 30-day key): 
    `check-key-expiry` passes with a 14-day window and fails, warning, with a 45-day one;
    `esremote keys --check` says the same."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from prefect.artifacts import Artifact  # noqa: PLC0415

    from esremote.flows.key_expiry import check_key_expiry  # noqa: PLC0415
    from esremote.params import KeyExpiryParams  # noqa: PLC0415

    lab, _ = migrated
    quiet = check_key_expiry(KeyExpiryParams(inventory=lab.inventory, warn_days=14, state_dir=tmp_path),
                             return_state=True)
    assert quiet.is_completed(), quiet.message
    assert quiet.result()["findings"][0]["level"] == "ok"
    loud = check_key_expiry(KeyExpiryParams(inventory=lab.inventory, warn_days=45, state_dir=tmp_path),
                            return_state=True)
    assert loud.is_failed()
    artifact = Artifact.get("key-expiry").data
    assert "1 alias key(s) need attention (warning window 45 days)" in artifact
    assert "esremote rotate --alias my_remote" in artifact

    cli = subprocess.run([sys.executable, "-m", "esremote", "keys", "-i", str(lab.inventory), "--warn-days", "45",
                          "--check"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "ESREMOTE_STATE_DIR": str(tmp_path)})
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "warning: alias my_remote: key" in cli.stdout and "days left" in cli.stdout
    assert "usage: read from cluster.remote.<alias>.credentials" in cli.stdout
