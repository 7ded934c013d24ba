"""`--split-search-alias` on the lab (8.15, one node a side): the remote's `ccs_role` reads the leader
indices with document level security (only host web-1), its `ccr_role` replicates them, and the local
cluster has the seeded follower, auto-follow pattern, transform and datafeed. Elasticsearch refuses
one key with that access (`search does not support document or field level security if replication
is assigned`). One lab, in order:

(a) without the option the migration is refused before anything changes, with that reason;
(b) with it, an automatic rollback after the move (the search key invalidated on the remote once the
    search alias is added) puts every source, role and the alias back and leaves no valid key;
(c) with it again, the orchestrator dies once the work has moved, and `--resume` ends it migrated:
    two keys (search with DLS, replication), followers on the original alias, the transform and
    datafeed reading through the search alias (resumed with their new sources), and a cross-cluster
    search through it returns only what the DLS query allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

import pytest

from esremote.cluster.privileges import SEARCH_DLS_WITH_REPLICATION
from tests.test_e2e_migration import done, esremote, journal, reached, running, wait_for, work_states
from tests.test_flows import shared_prefect_api
from tests.test_key_access_lab import now_doc, remote_refusal, total

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS, NAME = "my_remote", "my_remote_search"
ALLOWED = "web-1"
DLS = json.dumps({"term": {"host": ALLOWED}})


@pytest.fixture(scope="module")
def prefect_api(request) -> str:
    return shared_prefect_api(request.config)


def esremote_keys(lab) -> list[dict]:
    return [k for k in lab.es("remote").security.get_api_key()["api_keys"]
            if k.get("type") == "cross_cluster" and (k.get("metadata") or {}).get("managed_by") == "esremote"]


def sources(lab) -> dict[str, list[str]]:
    es = lab.es("local")
    return {"transform": es.transform.get_transform(transform_id="ccs-hosts")["transforms"][0]["source"]["index"],
            "datafeed": es.ml.get_datafeeds(datafeed_id="datafeed-ccs-job")["datafeeds"][0]["indices"]}


def remote_settings(lab) -> dict:
    return lab.es("local").cluster.get_settings(flat_settings=True)["persistent"]


def test_mixed_dls_search_and_replication_is_refused_then_split_with_consent(lab_factory, prefect_api, tmp_path):
    lab = lab_factory("split-search", version="8.15.0", local_nodes=1, remote_nodes=1)
    local, remote = lab.es("local"), lab.es("remote")
    ccs_role = remote.security.get_role(name="ccs_role")["ccs_role"]
    remote.security.put_role(name="ccs_role", indices=[{**e, "query": DLS} for e in ccs_role["indices"]])
    ccs = lab.es("local", user="ccs_user")
    # the certificate model applies the remote role's DLS too
    assert 0 < total(ccs, f"{ALIAS}:leader-logs") == total(remote, "leader-logs") - _others(remote)
    roles = local.security.get_role(name="ccs_role,ccr_role").body
    before = sources(lab)
    assert before == {"transform": [f"{ALIAS}:leader-logs"], "datafeed": [f"{ALIAS}:leader-logs"]}
    assert all(running(work_states(lab)).values())

    # (a) no consent: refused with Elasticsearch's reason, nothing changed
    refused = esremote("migrate", "--inventory", str(lab.inventory), "--yes", prefect_api=prefect_api,
                       state_dir=tmp_path / "refused")
    assert refused.returncode != 0, refused.stdout[-2000:]
    said = refused.stdout + refused.stderr
    assert SEARCH_DLS_WITH_REPLICATION in said and "--split-search-alias" in said, said[-3000:]
    assert not esremote_keys(lab) and "cluster_credentials" not in local.cluster.remote_info()[ALIAS]
    assert not any(e["kind"] == "intent" and e["step"].split("/")[0] in ("prepare_remote", "stage_local")
                   for e in journal(tmp_path / "refused"))

    # (b) consent, then the search key is invalidated once the search alias is there: rolled back
    process = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--split-search-alias",
                       f"{ALIAS}={NAME}", "--link-timeout", "15", prefect_api=prefect_api,
                       state_dir=tmp_path / "rollback", wait=False)
    try:
        wait_for("the search alias", lambda: done(tmp_path / "rollback", f"reconnect/split-alias/{ALIAS}"), timeout=420)
        [search_key] = [k for k in esremote_keys(lab) if k["name"] == f"esremote-local-{NAME}"]
        remote.security.invalidate_api_key(ids=[search_key["id"]])
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 3, stdout[-3000:] + stderr[-3000:]
    steps = [e["step"] for e in journal(tmp_path / "rollback") if e["kind"] == "done"]
    assert f"reconnect/move-work/{ALIAS}" in steps and f"rollback/unmove-work/{ALIAS}" in steps
    assert sources(lab) == before
    assert local.security.get_role(name="ccs_role,ccr_role").body == roles
    assert NAME not in local.cluster.remote_info() and not any(NAME in k for k in remote_settings(lab))
    assert "cluster_credentials" not in local.cluster.remote_info()[ALIAS]
    keys = esremote_keys(lab)
    assert len(keys) == 2 and all(k["invalidated"] for k in keys), keys
    assert running(wait_for("the work to run again", lambda: work_states(lab), timeout=120)) == \
        {k: True for k in work_states(lab)}

    # (c) consent; the orchestrator dies after the move, the resumed run ends migrated
    first = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--split-search-alias",
                     f"{ALIAS}={NAME}", prefect_api=prefect_api, state_dir=tmp_path / "run", wait=False)
    try:
        reached(first, tmp_path / "run", f"reconnect/move-work/{ALIAS}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    [run_id] = [p.name for p in (tmp_path / "run" / "runs").iterdir()]
    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--resume", run_id, "--output", "json",
                      prefect_api=prefect_api, state_dir=tmp_path / "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout)["status"] == "migrated" and json.loads(result.stdout)["run_id"] == run_id
    moves = [e for e in journal(tmp_path / "run") if e["step"] == f"reconnect/move-work/{ALIAS}"]
    assert [e["kind"] for e in moves] == ["intent", "done"]  # moved once, by the first attempt
    info = local.cluster.remote_info()
    for alias in (ALIAS, NAME):
        assert info[alias]["connected"] and info[alias]["cluster_credentials"] == "::es_redacted::"
    valid = {k["name"]: k["access"] for k in esremote_keys(lab) if not k["invalidated"]}
    assert set(valid) == {f"esremote-local-{ALIAS}", f"esremote-local-{NAME}"}
    assert set(valid[f"esremote-local-{ALIAS}"]) == {"replication"}
    assert set(valid[f"esremote-local-{NAME}"]) == {"search"}
    assert all(e.get("query") == DLS for e in valid[f"esremote-local-{NAME}"]["search"])
    assert sources(lab) == {"transform": [f"{NAME}:leader-logs"], "datafeed": [f"{NAME}:leader-logs"]}
    assert local.ccr.follow_info(index="follower-logs")["follower_indices"][0]["remote_cluster"] == ALIAS
    assert all(running(wait_for("the work to run again", lambda: work_states(lab), timeout=120)).values())

    summed = wait_for("the transform's sum for the allowed host", timeout=120, probe=lambda: local.search(
        index="ccs-hosts", query={"term": {"host": ALLOWED}})["hits"]["hits"])[0]["_source"]["value_sum"]
    remote.index(index="leader-logs", document={**now_doc(ALLOWED), "value": 7}, refresh=True)
    remote.index(index="leader-logs", document=now_doc("db-9"), refresh=True)
    wait_for("the follower to copy through the original alias", timeout=120,
             probe=lambda: total(local, "follower-logs") == total(remote, "leader-logs"))
    hits = ccs.search(index=f"{NAME}:leader-logs", size=200)["hits"]
    assert hits["total"]["value"] == total(remote, "leader-logs") - _others(remote)
    assert {h["_source"]["host"] for h in hits["hits"]} == {ALLOWED}
    wait_for("the transform to read the new document through the search alias", timeout=120,
             probe=lambda: local.search(index="ccs-hosts", query={"term": {"host": ALLOWED}})[
                 "hits"]["hits"][0]["_source"]["value_sum"] >= summed + 7)
    assert total(local, "ccs-hosts") and not local.search(index="ccs-hosts", query={"term": {"host": "db-9"}},
                                                           size=0)["hits"]["total"]["value"]
    # through the original alias the key allows replication only: the remote refuses a search
    assert "is unauthorized for user [ccs_user]" in remote_refusal(ccs, f"{ALIAS}:leader-logs")


def _others(remote) -> int:
    """Leader documents the DLS query hides (other hosts)."""
    return remote.search(index="leader-logs", size=0, track_total_hits=True,
                         query={"bool": {"must_not": {"term": {"host": ALLOWED}}}})["hits"]["total"]["value"]
