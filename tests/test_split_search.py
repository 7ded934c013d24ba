"""The consented split (`--split-search-alias ALIAS=NAME`): bad input named in one line, the refusal
without it, the two halves of the access, the sources and roles that move, and the plan.

Inputs are the shapes Elasticsearch returns (GET `_security/role`, GET `_transform`, GET
`_ml/datafeeds`); the work on the lab is in test_split_search_lab.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from esremote.cluster import privileges as pv
from esremote.cluster import split_search as ss
from esremote.errors import PreconditionError
from esremote.params import MigrationParams
from esremote.plan import build_plan
from esremote.plan_facts import AliasState, MigrationFacts, NodeState, WorkItem
from esremote.tasks.privileges import _derive
from tests.test_cli_migrate import inventory, one_line_error  # noqa: F401 - the fixture
from tests.test_key_access import ALIAS, READ, REMOTE_ROLES, derive, index, role

NAME = "my_remote_search"
DLS = '{"term":{"team":"a"}}'
MIXED = {"dls": role(indices=[index(["leader-*"], READ, query=DLS)]), "ccr": REMOTE_ROLES["ccr_role"]}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esremote", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


# --- consent and bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("value, named", [
    ("my_remote", "is not ALIAS=NAME"), ("my_remote=", "is not ALIAS=NAME"),
    ("my_remote=a:b", "split_search_alias: 'my_remote': the new alias name 'a:b' may hold only"),
    ("my_remote=my_remote", "must be a new name"), ("other=x", "'other' is not an alias this run migrates")])
def test_a_bad_split_value_is_one_line_naming_the_option_and_nothing_starts(inventory, value, named):  # noqa: F811
    result = cli("plan", "--inventory", str(inventory), "--split-search-alias", value)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)
    assert named in line and "split" in line and "search" in line
    assert not (inventory.parent / "state").exists() or not any((inventory.parent / "state").rglob("journal.jsonl"))


def test_the_split_cannot_take_a_name_the_inventory_has_nor_strong_identity():
    from types import SimpleNamespace  # noqa: PLC0415

    from esremote.errors import ConfigError  # noqa: PLC0415

    inventory = SimpleNamespace(aliases={ALIAS: None, "my_remote2": None})
    with pytest.raises(ConfigError, match="'my_remote2' is already an alias of i.yml; name a new alias"):
        MigrationParams(inventory="i.yml", aliases=[ALIAS], split_search_alias={ALIAS: "my_remote2"}
                        ).selected_aliases(inventory)
    with pytest.raises(ValueError, match="strong_identity"):
        MigrationParams(inventory="i.yml", split_search_alias={ALIAS: NAME}, strong_identity=True)
    with pytest.raises(ValueError, match="its own new search alias"):
        MigrationParams(inventory="i.yml", split_search_alias={"a": "x", "b": "x"})
    assert MigrationParams(inventory="i.yml").split_search_alias == {}


# --- the access ----------------------------------------------------------------------------------

def test_without_consent_the_refusal_keeps_elasticsearchs_reason_and_names_the_option():
    with pytest.raises(PreconditionError) as caught:
        derive(remote_roles=MIXED)
    message = str(caught.value)
    assert pv.SEARCH_DLS_WITH_REPLICATION in message and "two aliases" in message
    assert f"or run with --split-search-alias {ALIAS}=NAME" in message
    with pytest.raises(PreconditionError, match="--split-search-alias ALIAS=NAME"):
        pv.derive_remote_access(ALIAS, MIXED)  # role-copy says it too


def test_with_consent_each_half_is_a_key_elasticsearch_accepts():
    from esremote.cluster import key_access as ka  # noqa: PLC0415
    from tests.test_key_access import seeded_usage  # noqa: PLC0415

    copy_ = pv.derive_remote_access(ALIAS, MIXED, check=False)
    review = ka.from_usage(copy_, ka.work_needs(seeded_usage()), split=True)
    assert ss.needs_split(review.access)
    replication, search = ss.halves(review.access)
    assert replication == {"replication": [{"names": ["auto-*", "leader-logs"]}]}
    assert search == {"search": [{"names": ["leader-logs"], "query": DLS}]}
    for half in (replication, search):
        pv.check_access(half)
    # role-copy: the mixed refusal gives way, any other refusal stands
    assert ss.needs_split(_derive(ALIAS, MIXED, check=True, split=NAME).access)
    bad = {"ccr": role(cluster=["read_ccr"], indices=[index(["leader-*"], ["cross_cluster_replication"], query=DLS)])}
    with pytest.raises(PreconditionError, match=pv.REPLICATION_DLS):
        _derive(ALIAS, bad, check=True, split=NAME)


# --- what moves ----------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, moved", [
    (f"{ALIAS}:leader-logs", f"{NAME}:leader-logs"),
    (f"local-idx,{ALIAS}:a-*,-{ALIAS}:a-old", f"local-idx,{NAME}:a-*,-{NAME}:a-old"),
    ("other:leader-logs", "other:leader-logs"), ("my_*:leader-logs", "my_*:leader-logs")])
def test_only_the_alias_itself_moves_in_an_index_expression(expression, moved):
    assert ss.moved_expression(expression, ALIAS, NAME) == moved
    assert ss.unmovable(["my_*:x", f"{ALIAS}:y"], ALIAS) == ["my_*:x"]


def test_a_transform_moves_its_whole_source_and_a_datafeed_its_indices_and_both_move_back():
    source = {"index": [f"{ALIAS}:leader-logs"], "query": {"match_all": {}}}
    move = ss.plan_move("transform", "ccs-hosts", source, ALIAS, NAME)
    assert move.call().path == "/_transform/ccs-hosts/_update"
    assert move.call().body == {"source": {"index": [f"{NAME}:leader-logs"], "query": {"match_all": {}}}}
    assert move.call(back=True).body == {"source": source}
    feed = ss.plan_move("datafeed", "datafeed-ccs-job", [f"{ALIAS}:leader-logs"], ALIAS, NAME)
    assert feed.call().path == "/_ml/datafeeds/datafeed-ccs-job/_update"
    assert feed.call().body == {"indices": [f"{NAME}:leader-logs"]}
    assert ss.Move.from_dict(json.loads(json.dumps(feed.to_dict()))) == feed
    assert ss.plan_move("datafeed", "d", ["other:x"], ALIAS, NAME) is None


def test_roles_that_search_through_the_alias_also_list_the_search_alias_and_keep_their_originals():
    searching = {"clusters": [ALIAS], "names": ["auto-logs-0001"], "privileges": ["read", "read_cross_cluster"]}
    replicating = {"clusters": [ALIAS], "names": ["leader-*"], "privileges": ["cross_cluster_replication"]}
    local = {"ccs_role": role(remote_indices=[searching]), "ccr_role": role(remote_indices=[replicating]),
             "plain": role()}
    plan = ss.plan_split_roles(pv.RolePlan(), local, ALIAS, NAME)
    [call] = plan.calls
    assert call.target == "role ccs_role"
    assert call.body["remote_indices"][0]["clusters"] == [ALIAS, NAME] and "transient_metadata" not in call.body
    assert plan.originals == {"ccs_role": local["ccs_role"]}
    again = {"ccs_role": {**call.body, "transient_metadata": {"enabled": True}}, **{k: local[k] for k in local
                                                                                   if k != "ccs_role"}}
    assert ss.plan_split_roles(pv.RolePlan(), again, ALIAS, NAME).calls == ()  # a re-run changes nothing


# --- the plan ------------------------------------------------------------------------------------

def test_the_plan_shows_both_keys_the_new_alias_each_move_and_what_users_must_change():
    replication, search = ss.halves({"search": [{"names": ["leader-logs"], "query": DLS}],
                                     "replication": [{"names": ["leader-logs"]}]})
    saved = {"alias": ALIAS, "persistent": {"mode": "proxy", "proxy_address": "127.0.0.5:9300"}, "transient": {}}
    state = AliasState(ALIAS, "local", "remote", saved=saved, key_access=replication,
                       split={"alias": NAME, "access": search},
                       work=[WorkItem("transform", "ccs-hosts", "started", remote_patterns=["leader-logs"]),
                             WorkItem("follower", "follower-logs", "active", remote_patterns=["leader-logs"])])
    facts = MigrationFacts(clusters={"local": {"versions": {"l0": "8.15.0"}}, "remote": {"versions": {}}},
                           nodes=[NodeState("local", "l0", "127.0.0.1", keystore=[])], aliases=[state],
                           remote_cluster_port={"remote": 9443})
    plan = build_plan(MigrationParams(inventory="i.yml", split_search_alias={ALIAS: NAME}), facts)
    text = plan.to_markdown()
    assert f"## Split of `{ALIAS}`: searches move to the new alias `{NAME}`" in text
    assert f"must name `{NAME}:<index>`" in text and "mode: proxy, proxy_address: 127.0.0.5:9443" in text
    assert f"transform ccs-hosts: {ALIAS}:leader-logs -> {NAME}:leader-logs" in text
    keys = [json.loads(c.detail) for c in plan.changes if c.summary.startswith("POST /_security/cross_cluster")]
    assert [k["access"] for k in keys] == [replication, search]
    assert keys[1]["name"] == f"esremote-local-{NAME}" and keys[1]["metadata"]["esremote"]["alias"] == NAME
    assert any(f"cluster.remote.{NAME}.credentials" in c.summary for c in plan.for_phase("stage_credentials"))
    [add] = [c for c in plan.for_phase("reconnect") if NAME in c.summary and c.kind == "api" and "PUT" in c.summary]
    assert json.loads(add.detail)["body"]["persistent"][f"cluster.remote.{NAME}.proxy_address"] == "127.0.0.5:9443"
    assert plan.to_dict()["split"][ALIAS]["moves"] and "follower" not in " ".join(plan.split[ALIAS]["moves"])
