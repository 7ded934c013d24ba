"""`access=from-usage`: the key's access cut from the role copy to what the alias's work and the local
roles' remote_indices read; the diff against the role copy and what would stop working; the plan.

Inputs are the shapes Elasticsearch returns: GET `_security/role` renderings (es-facts §4), and the
work listings `esremote.cluster.usage.find_usage` reads (GET _transform, _ml/datafeeds, _ccr/info,
_ccr/auto_follow)."""

from __future__ import annotations

import json

import pytest

from esremote.cluster import key_access as ka
from esremote.cluster import privileges as pv
from esremote.cluster.api_key import same_access
from esremote.cluster.usage import find_usage
from esremote.errors import PreconditionError
from esremote.params import MigrationParams
from esremote.plan import build_plan
from esremote.plan_facts import AliasState, MigrationFacts

ALIAS = "my_remote"
READ = ["read", "read_cross_cluster", "view_index_metadata"]


def role(cluster=(), indices=(), remote_indices=None):
    body = {"cluster": list(cluster), "indices": list(indices), "applications": [], "run_as": [],
            "metadata": {}, "transient_metadata": {"enabled": True}}
    if remote_indices is not None:
        body["remote_indices"] = remote_indices
    return body


def index(names, privileges, **extra):
    return {"names": list(names), "privileges": list(privileges), "allow_restricted_indices": False, **extra}


# The lab's remote roles (esremote.lab.ops.seed): a CCS role and a CCR leader role on leader-*, auto-*.
REMOTE_ROLES = {
    "ccs_role": role(indices=[index(["leader-*", "auto-*"], READ)]),
    "ccr_role": role(cluster=["read_ccr"], indices=[index(["leader-*", "auto-*"],
                                                          ["monitor", "read", "view_index_metadata",
                                                           "cross_cluster_replication"])]),
}


def seeded_usage(*, transform_state="started"):
    """The lab's seeded work: a transform and a datafeed on leader-logs, a follower of it, an
    auto-follow pattern on auto-*."""
    return find_usage(
        ALIAS,
        transforms={"transforms": [{"id": "ccs-hosts", "source": {"index": [f"{ALIAS}:leader-logs"]},
                                    "authorization": {"roles": ["ccs_role"]}}]},
        transform_stats={"transforms": [{"id": "ccs-hosts", "state": transform_state}]},
        datafeeds={"datafeeds": [{"datafeed_id": "datafeed-ccs-job", "job_id": "ccs-job",
                                  "indices": [f"{ALIAS}:leader-logs"]}]},
        datafeed_stats={"datafeeds": [{"datafeed_id": "datafeed-ccs-job", "state": "started"}]},
        follow_info={"follower_indices": [{"follower_index": "follower-logs", "remote_cluster": ALIAS,
                                           "leader_index": "leader-logs", "status": "active"}]},
        auto_follow={"patterns": [{"name": "auto-logs", "pattern": {
            "remote_cluster": ALIAS, "leader_index_patterns": ["auto-*"], "active": True}}]})


def derive(local_roles=None, usage=None, remote_roles=REMOTE_ROLES):
    copy = pv.derive_remote_access(ALIAS, remote_roles, check=False)
    needs = [*ka.work_needs(usage if usage is not None else seeded_usage()),
             *ka.role_needs(ALIAS, local_roles or {})]
    return ka.from_usage(copy, needs)


def test_the_seeded_work_narrows_both_kinds_and_every_entry_says_whom_it_serves():
    review = derive()
    assert review.role_copy == {"search": [{"names": ["leader-*", "auto-*"]}],
                                "replication": [{"names": ["leader-*", "auto-*"]}]}
    # Search: what the transform and the datafeed read; replication: the follower's leader and the
    # auto-follow pattern. Never a search entry for replication-only work.
    assert review.access == {"search": [{"names": ["leader-logs"]}],
                             "replication": [{"names": ["auto-*", "leader-logs"]}]}
    assert review.narrower
    assert review.serves == ("search leader-logs: transform ccs-hosts, datafeed datafeed-ccs-job",
                             "replication auto-*: auto follow pattern auto-logs",
                             "replication leader-logs: follower follower-logs")
    # What the role copy allows and this key does not, per remote role and with its consequence.
    assert review.lost == (
        f"role ccs_role: search on leader-* narrowed to only leader-logs: its users can no longer search "
        f"other indices matching {ALIAS}:leader-* (403 from the remote)",
        f"role ccs_role: search on auto-* narrowed to nothing: its users can no longer search other indices "
        f"matching {ALIAS}:auto-* (403 from the remote)",
        f"role ccr_role: replication on leader-* narrowed to only leader-logs: its users can no longer "
        f"replicate from other indices matching {ALIAS}:leader-* (403 from the remote)")
    assert review.ungranted == ()


def test_the_diff_is_a_unified_diff_from_the_role_copy_to_the_narrowed_access():
    diff = derive().diff()
    assert diff.startswith("--- key access: role-copy\n+++ key access: from-usage\n")
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert '"leader-*",' in removed and '"leader-logs"' in added
    # The diff turns the role copy into the new access: applying it gives the new JSON.
    review = derive()
    assert json.loads(json.dumps(review.access)) == review.to_dict()["access"]
    assert review.to_dict()["narrower"] is True and review.to_dict()["diff"] == diff


def test_a_local_roles_remote_indices_keep_what_its_users_search_and_other_aliases_do_not_count():
    local = {
        "ccs_role": role(remote_indices=[
            {"clusters": ["my_*"], "names": ["auto-logs-0001"], "privileges": ["read", "read_cross_cluster"]},
            {"clusters": ["other_remote"], "names": ["leader-*"], "privileges": ["read"]}]),
        "nobody": None,
    }
    review = derive(local)
    assert review.access["search"] == [{"names": ["leader-logs", "auto-logs-0001"]}]
    assert "search auto-logs-0001: role ccs_role (remote_indices)" in review.serves


def test_stopped_work_still_counts_and_says_so():
    review = derive(usage=seeded_usage(transform_state="stopped"))
    assert review.access["search"] == [{"names": ["leader-logs"]}]
    assert review.serves[0] == "search leader-logs: transform ccs-hosts (stopped), datafeed datafeed-ccs-job"


def test_a_pattern_wider_than_the_copy_becomes_the_copied_names_and_dls_comes_along():
    remote = {"analyst": role(indices=[
        index(["logs-eu"], READ, query='{"term":{"team":"a"}}', field_security={"grant": ["*"], "except": ["ip"]}),
        index(["logs-us*"], READ), index(["metrics-*"], READ)])}
    usage = find_usage(ALIAS, transforms={"transforms": [
        {"id": "t", "source": {"index": f"{ALIAS}:logs-*,-{ALIAS}:logs-old"}}]})
    review = derive(usage=usage, remote_roles=remote)
    # logs-* is wider than what the remote grants: the key gets the granted names, each with the
    # copied entry's DLS/FLS (narrowing names never widens what a document or field shows).
    assert review.access == {"search": [
        {"names": ["logs-eu"], "query": '{"term":{"team":"a"}}', "field_security": {"grant": ["*"], "except": ["ip"]}},
        {"names": ["logs-us*"]}]}
    assert any(line.startswith("role analyst: search on metrics-* narrowed to nothing") for line in review.lost)


def test_work_the_role_copy_does_not_grant_is_reported_not_granted():
    usage = find_usage(ALIAS, transforms={"transforms": [{"id": "t", "source": {"index": [f"{ALIAS}:secret"]}}]},
                       transform_stats={"transforms": [{"id": "t", "state": "started"}]},
                       follow_info={"follower_indices": [{"follower_index": "f", "remote_cluster": ALIAS,
                                                          "leader_index": "leader-logs", "status": "active"}]})
    review = derive(usage=usage)
    assert review.access == {"replication": [{"names": ["leader-logs"]}]}
    assert review.ungranted == (f"transform t would search {ALIAS}:secret, which no copied remote role grants: it "
                                "fails with either access (grant it in a remote role its owner holds)",)


def test_when_everything_copied_is_used_it_is_not_narrower():
    usage = find_usage(ALIAS, transforms={"transforms": [
        {"id": "t", "source": {"index": [f"{ALIAS}:leader-*", f"{ALIAS}:auto-*"]}}]},
        auto_follow={"patterns": [{"name": "p", "pattern": {"remote_cluster": ALIAS,
                                                            "leader_index_patterns": ["*"]}}]})
    review = derive(usage=usage)
    assert same_access(review.access, review.role_copy)
    assert not review.narrower and review.lost == ()


def test_nothing_reading_through_the_alias_is_refused_with_elasticsearchs_reason():
    with pytest.raises(PreconditionError) as caught:
        derive(usage=find_usage(ALIAS))
    message = str(caught.value)
    assert pv.NO_ACCESS in message and "access=from-usage" in message and "remote_indices" in message
    assert "access=role-copy" in message


def test_dls_search_with_replication_is_refused_with_elasticsearchs_reason_and_the_split():
    remote = {"dls": role(indices=[index(["leader-*"], READ, query='{"term":{"team":"a"}}')]),
              "ccr": REMOTE_ROLES["ccr_role"]}
    with pytest.raises(PreconditionError) as caught:
        derive(remote_roles=remote)
    message = str(caught.value)
    assert pv.SEARCH_DLS_WITH_REPLICATION in message
    assert ('{"search": [{"names": ["leader-logs"], "query": "{\\"term\\":{\\"team\\":\\"a\\"}}"}]}' in message)
    assert '{"replication": [{"names": ["auto-*", "leader-logs"]}]}' in message
    assert "two aliases" in message


def test_narrowing_can_make_a_key_that_the_role_copy_cannot_be():
    # The copy mixes DLS search (on secret-*) with replication: Elasticsearch refuses it as a key.
    remote = {**REMOTE_ROLES, "dls": role(indices=[index(["secret-*"], READ, query='{"match_all":{}}')])}
    with pytest.raises(PreconditionError, match="search does not support document or field level security"):
        pv.derive_remote_access(ALIAS, remote)
    # Nothing reads secret-*: the from-usage key leaves it out, and is valid.
    review = derive(remote_roles=remote)
    pv.check_access(review.access)
    assert "secret-*" not in json.dumps(review.access)


@pytest.mark.parametrize("outer, inner, expected", [
    ("leader-*", "leader-logs", True), ("leader-*", "leader-l*", True), ("*", "leader-*", True),
    ("leader-logs", "leader-*", False), ("a*c", "a*", False), ("leader-*", "auto-*", False)])
def test_covers_is_containment_of_wildcard_patterns(outer, inner, expected):
    assert ka.covers(outer, inner) is expected


def test_overlapping_patterns_keep_the_copied_name_whole():
    assert ka.within("logs-*", ["*-eu"]) == ["*-eu"]       # logs-eu matches both: keep what was granted
    assert ka.within("logs-*", ["metrics-*"]) == []        # no index can match both


def test_verification_searches_only_what_the_key_lets_search():
    access = derive().access  # search leader-logs; replication auto-*, leader-logs
    assert ka.searchable(access, "leader-logs") and ka.searchable(access, "leader-*")
    assert not ka.searchable(access, "auto-*") and not ka.searchable(access, "auto-logs-0001")
    assert not ka.searchable({"replication": [{"names": ["leader-logs"]}]}, "leader-logs")


def test_the_plan_shows_the_diff_what_each_entry_serves_and_what_would_stop_working():
    review = derive().to_dict()
    alias = AliasState(ALIAS, "local", "remote", key_access=review["access"], key_access_review=review)
    facts = MigrationFacts(clusters={"local": {"versions": {}}, "remote": {"versions": {}}}, nodes=[],
                           aliases=[alias])
    plan = build_plan(MigrationParams(inventory="inventory.yml", access="from-usage"), facts)
    text = plan.to_markdown()
    assert f"## Key access of `{ALIAS}`: from usage" in text and "Narrower than the copy" in text
    assert "```diff\n--- key access: role-copy\n+++ key access: from-usage" in text
    assert "- search leader-logs: transform ccs-hosts, datafeed datafeed-ccs-job" in text
    assert "**What would stop working (the role copy allows it, this key does not)**" in text
    [create] = [c for c in plan.changes if c.summary.startswith("POST /_security/cross_cluster/api_key")]
    assert "access from usage, narrower than the role copy" in create.summary
    assert json.loads(create.detail)["access"] == review["access"]
    assert plan.to_dict()["access"][ALIAS]["lost"] == review["lost"]
    # The facts keep the review through facts.json (a resumed run's plan shows it again).
    again = MigrationFacts.from_dict(json.loads(json.dumps(facts.to_dict())))
    assert again.aliases[0].key_access_review == review
    # role-copy: no access section.
    plain = AliasState(ALIAS, "local", "remote", key_access=review["role_copy"])
    facts.aliases = [plain]
    assert "## Key access" not in build_plan(MigrationParams(inventory="inventory.yml"), facts).to_markdown()


def test_access_parameter_names_itself_when_wrong():
    assert MigrationParams(inventory="i.yml").access == "role-copy"
    with pytest.raises(ValueError, match="access"):
        MigrationParams(inventory="i.yml", access="everything")


def test_a_resumed_run_reads_the_local_roles_as_they_were_before_its_own_role_updates(tmp_path):
    """After the run put the role copy into the local roles' remote_indices, those entries are not
    usage: the journal's originals stand in for the roles it changed."""
    from types import SimpleNamespace  # noqa: PLC0415

    from esremote.journal import Journal  # noqa: PLC0415
    from esremote.tasks.facts import roles_before_run  # noqa: PLC0415

    run = SimpleNamespace(journal=Journal.create("run-1", state_dir=tmp_path))
    assert roles_before_run(run, ALIAS) == {}
    original = role(remote_indices=[{"clusters": [ALIAS], "names": ["auto-logs-0001"], "privileges": ["read"]}])
    run.journal.intent(f"reconnect/roles/{ALIAS}", originals={"ccs_role": original, "ccr_role": None})
    copied = {"clusters": [ALIAS], "names": ["leader-*", "auto-*"], "privileges": READ}
    now = {"ccs_role": role(remote_indices=[*original["remote_indices"], copied]),
           "ccr_role": role(remote_indices=[{"clusters": [ALIAS], "names": ["leader-*", "auto-*"],
                                             "privileges": ["cross_cluster_replication"]}])}
    before = {**now, **roles_before_run(run, ALIAS)}
    assert derive(before).access == {"search": [{"names": ["leader-logs", "auto-logs-0001"]}],
                                     "replication": [{"names": ["auto-*", "leader-logs"]}]}
    assert same_access(derive(now).access, derive().role_copy)  # what reading the changed roles would give
