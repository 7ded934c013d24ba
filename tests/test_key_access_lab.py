"""`esremote migrate --access from-usage` on the lab (8.15): the key holds only what the seeded work
and the local roles' remote_indices read, and everything that reads keeps working through it.

Before the run, the operator declares a user's interactive search the way the API-key model wants it:
the local `ccs_role` gets remote_indices for `auto-logs-0001` (the certificate model ignores them).
The remote also has `leader-archive`, which its roles grant (`leader-*`) and nothing uses.

After the migration, from outside the tool:
* the key on the remote cluster has exactly the narrowed access, and every name in it is inside a
  name the role copy (the remote roles of the seed) grants for the same kind, and it is not that copy;
* the migration's verification passes although a follower's leader index (`leader-ccr-only`,
  followed before the run) is only replicated, never searched: the key cannot search it;
* the transform, the datafeed, both followers and the auto-follow pattern really read through the
  API-key link (a new host reaches the transform's destination, the follower copies a new leader
  document, a new leader index gets its follower, the datafeed searches again);
* the ccs user still searches what the work and its role's remote_indices name, and its search of
  `leader-archive`, which the certificate model allowed and the plan listed as what would stop
  working, is refused by the remote as Elasticsearch refuses it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from fnmatch import fnmatchcase

import pytest
from elasticsearch import AuthorizationException

from tests.fixtures.lab import Lab
from tests.test_e2e_migration import esremote, running, wait_for, work_states
from tests.test_flows import shared_prefect_api

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
# The role copy of the seed's remote roles (esremote.lab.ops.seed.remote_roles): ccs_role reads
# leader-*, auto-*; ccr_role is a CCR leader role on the same names.
ROLE_COPY = {"search": ["leader-*", "auto-*"], "replication": ["leader-*", "auto-*"]}
FROM_USAGE = {"search": ["auto-logs-0001", "leader-logs"],
              "replication": ["auto-*", "leader-ccr-only", "leader-logs"]}


@pytest.fixture(scope="module")
def prefect_api(request) -> str:
    return shared_prefect_api(request.config)


def now_doc(host: str) -> dict:
    return {"@timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "host": host, "value": 1}


def total(es, index: str) -> int:
    return es.search(index=index, size=0, track_total_hits=True)["hits"]["total"]["value"]


def esremote_key(lab: Lab) -> dict:
    keys = [k for k in lab.es("remote").security.get_api_key()["api_keys"]
            if k.get("type") == "cross_cluster" and not k.get("invalidated")
            and (k.get("metadata") or {}).get("managed_by") == "esremote"]
    assert len(keys) == 1, keys
    return keys[0]


def names_by_kind(access: dict) -> dict[str, list[str]]:
    """The names an access holds per kind, sorted; no entry carries DLS/FLS or restricted indices."""
    for entry in (e for kind in ("search", "replication") for e in access.get(kind) or []):
        assert set(entry) <= {"names", "allow_restricted_indices"} and not entry.get("allow_restricted_indices")
    return {kind: sorted(n for entry in access.get(kind) or [] for n in entry["names"])
            for kind in ("search", "replication")}


def test_from_usage_key_runs_every_seeded_work_and_is_narrower_than_the_role_copy(lab_factory, prefect_api,
                                                                                    tmp_path):
    lab = lab_factory("from-usage", version="8.15.0", local_nodes=1, remote_nodes=1)
    local, remote = lab.es("local"), lab.es("remote")
    ccs = lab.es("local", user="ccs_user")
    ccs_role = local.security.get_role(name="ccs_role")["ccs_role"]
    local.security.put_role(name="ccs_role", cluster=ccs_role["cluster"], indices=ccs_role["indices"],
                            remote_indices=[{"clusters": [ALIAS], "names": ["auto-logs-0001"],
                                             "privileges": ["read", "read_cross_cluster"]}])
    one_copy = {"number_of_shards": 1, "number_of_replicas": 0}  # green on a one-node cluster
    remote.indices.create(index="leader-archive", settings=one_copy)
    remote.index(index="leader-archive", document=now_doc("archive-1"), refresh=True)
    assert total(ccs, f"{ALIAS}:leader-archive") == 1  # the certificate model: the remote role grants leader-*
    # A follower of a leader index nothing searches: the key replicates it, and cannot search it.
    remote.indices.create(index="leader-ccr-only", settings=one_copy)
    remote.index(index="leader-ccr-only", document=now_doc("ccr-1"), refresh=True)
    lab.es("local", user="ccr_user").ccr.follow(index="ccr-only-follower", remote_cluster=ALIAS,
                                                leader_index="leader-ccr-only", wait_for_active_shards="1")
    wait_for("the new follower to copy its leader", timeout=60, probe=lambda: total(local, "ccr-only-follower"))
    assert all(running(work_states(lab)).values())
    datafeed_searches = local.ml.get_datafeed_stats(datafeed_id="datafeed-ccs-job")["datafeeds"][0][
        "timing_stats"]["search_count"]

    # The plan: the narrowed access, its diff against the role copy, and what would stop working.
    planned = esremote("plan", "--inventory", str(lab.inventory), "--access", "from-usage", "--json",
                       prefect_api=prefect_api, state_dir=tmp_path / "plan")
    assert planned.returncode == 0, planned.stdout[-2000:] + planned.stderr[-3000:]
    review = json.loads(planned.stdout)["access"][ALIAS]
    assert names_by_kind(review["access"]) == FROM_USAGE and review["narrower"]
    assert "search auto-logs-0001: role ccs_role (remote_indices)" in review["serves"]
    assert any(line.startswith("role ccs_role: search on leader-* narrowed to only leader-logs")
               for line in review["lost"])

    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--access", "from-usage",
                      "--output", "json", prefect_api=prefect_api, state_dir=tmp_path / "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout)["status"] == "migrated"
    info = local.cluster.remote_info()[ALIAS]
    assert info["connected"] and info["cluster_credentials"] == "::es_redacted::"

    # The key: exactly the narrowed access, inside the role copy kind by kind, and not the copy.
    key = esremote_key(lab)
    held = names_by_kind(key["access"])
    assert held == FROM_USAGE
    for kind, names in held.items():
        assert all(any(fnmatchcase(name, granted) for granted in ROLE_COPY[kind]) for name in names), (kind, names)
    assert held != ROLE_COPY and set(held["search"]).isdisjoint(ROLE_COPY["search"])

    # Every seeded piece of work reads through the API-key link.
    assert all(running(wait_for("the work to run again", lambda: work_states(lab), timeout=120)).values())
    remote.index(index="leader-logs", document=now_doc("from-usage-host"), refresh=True)
    remote.index(index="leader-ccr-only", document=now_doc("ccr-2"), refresh=True)
    remote.indices.create(index="auto-logs-0002", settings=one_copy)
    remote.index(index="auto-logs-0002", document=now_doc("auto-2"), refresh=True)
    wait_for("the transform to pivot the new host", timeout=120, probe=lambda: local.search(
        index="ccs-hosts", query={"term": {"host": "from-usage-host"}}, size=0)["hits"]["total"]["value"])
    wait_for("the follower to copy the new leader document", timeout=120, probe=lambda: local.search(
        index="follower-logs", query={"term": {"host": "from-usage-host"}}, size=0)["hits"]["total"]["value"])
    wait_for("the replication-only follower to copy the new document", timeout=120,
             probe=lambda: total(local, "ccr-only-follower") == 2)
    wait_for("the auto-follow pattern to follow the new leader index", timeout=120,
             probe=lambda: local.indices.exists(index="auto-logs-0002-follower").body)
    wait_for("the datafeed to search again", timeout=150, probe=lambda: local.ml.get_datafeed_stats(
        datafeed_id="datafeed-ccs-job")["datafeeds"][0]["timing_stats"]["search_count"] > datafeed_searches)
    notes = local.search(index=".ml-notifications-*", query={"match": {"level": "error"}}, size=5)
    assert notes["hits"]["total"]["value"] == 0, notes["hits"]["hits"]

    # The ccs user: what the work and its role's remote_indices name still works; the unused index
    # that the certificate model allowed is refused by the remote.
    assert total(ccs, f"{ALIAS}:leader-logs") > 0
    assert total(ccs, f"{ALIAS}:auto-logs-0001") > 0
    # `esremote verify` agrees (it searches what the work searches; followers show their progress).
    check = esremote("verify", "--inventory", str(lab.inventory), prefect_api=prefect_api, state_dir=tmp_path / "run")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert f"search {ALIAS}:leader-ccr-only" not in check.stdout and "follower ccr-only-follower: ok" in check.stdout

    for index in ("leader-archive", "leader-ccr-only"):  # nothing uses the one; the other is replicated only
        refusal = remote_refusal(ccs, f"{ALIAS}:{index}")
        assert "action [indices:data/read/search] towards remote cluster is unauthorized for user [ccs_user]" in refusal
        assert index in refusal


def remote_refusal(es, index: str) -> str:
    """The remote's refusal of a search: the 403 itself, or, with `skip_unavailable: true` (the 8.15
    default), the failure of the skipped remote in `_clusters`."""
    try:
        body = es.search(index=index, size=0)
    except AuthorizationException as exc:
        return str(exc)
    detail = body["_clusters"]["details"][ALIAS]
    assert detail["status"] in ("skipped", "failed") and body["hits"]["total"]["value"] == 0, body["_clusters"]
    return json.dumps(detail["failures"])
