"""Remote roles (certificate model) -> local remote_indices and cross-cluster API key access.

Role shapes are GET `_security/role` renderings (es-facts §4: cluster, indices, applications, run_as,
metadata, transient_metadata; index entries with allow_restricted_indices, `query` as a string)."""

from __future__ import annotations

import re

import pytest

from esremote.cluster import privileges as pv
from esremote.errors import ClusterHTTPError, PreconditionError
from tests.fixtures.scripted_es import ScriptedES  # noqa: F401

ALIAS = "my_remote"




def role(cluster=(), indices=(), **extra):
    return {"cluster": list(cluster), "indices": list(indices), "applications": [], "run_as": [],
            "metadata": {}, "transient_metadata": {"enabled": True}, **extra}


def index(names, privileges, **extra):
    return {"names": list(names), "privileges": list(privileges), "allow_restricted_indices": False, **extra}


# The remote cluster's definitions (Elastic's certificate-model examples: a CCS role with
# read + read_cross_cluster; a CCR leader role with read_ccr and monitor + read).
REMOTE_ROLES = {
    "remote-search": role(indices=[index(["logs-*"], ["read", "read_cross_cluster"]),
                                   index(["metrics-*"], ["read"], query='{"term":{"team":"a"}}',
                                         field_security={"grant": ["*"], "except": ["secret"]})]),
    "remote-replication": role(cluster=["read_ccr"], indices=[index(["leader-*"], ["monitor", "read"])]),
}


def test_search_and_replication_roles_become_both_halves():
    derived = pv.derive_remote_access(ALIAS, {"remote-search": REMOTE_ROLES["remote-search"],
                                              "remote-replication": REMOTE_ROLES["remote-replication"],
                                              "ghost": None},
                                      remote_version=(8, 13))
    assert derived.remote_indices == {
        "remote-search": [
            {"names": ["logs-*"], "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
             "allow_restricted_indices": False, "clusters": [ALIAS]},
            {"names": ["metrics-*"], "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
             "field_security": {"grant": ["*"], "except": ["secret"]}, "query": '{"term":{"team":"a"}}',
             "allow_restricted_indices": False, "clusters": [ALIAS]}],
        "remote-replication": [
            {"names": ["leader-*"], "privileges": ["cross_cluster_replication"],
             "allow_restricted_indices": False, "clusters": [ALIAS]}],
    }
    assert derived.access == {
        "search": [{"names": ["logs-*"]},
                   {"names": ["metrics-*"], "query": '{"term":{"team":"a"}}',
                    "field_security": {"grant": ["*"], "except": ["secret"]}}],
        "replication": [{"names": ["leader-*"]}]}
    assert derived.notes == ("role ghost: not defined on the remote cluster, so it grants nothing there",)


def test_a_leader_role_whose_users_also_search_gets_both():
    leader = {"ccr": REMOTE_ROLES["remote-replication"]}
    assert pv.derive_remote_access(ALIAS, leader).access == {"replication": [{"names": ["leader-*"]}]}
    both = pv.derive_remote_access(ALIAS, leader, search_roles=["ccr"])
    assert both.access == {"search": [{"names": ["leader-*"]}], "replication": [{"names": ["leader-*"]}]}
    assert [e["privileges"] for e in both.remote_indices["ccr"]] == [
        pv.REPLICATION_PRIVILEGES, pv.SEARCH_PRIVILEGES]


def test_search_entries_without_restrictions_merge_their_names():
    roles = {"a": role(indices=[index(["x"], ["read"]), index(["y", "x"], ["read_cross_cluster"])])}
    assert pv.derive_remote_access(ALIAS, roles).access == {"search": [{"names": ["x", "y"]}]}


def test_dls_search_with_replication_is_refused_with_elasticsearchs_message_from_8_14():
    with pytest.raises(PreconditionError) as caught:
        pv.derive_remote_access(ALIAS, REMOTE_ROLES)
    message = str(caught.value)
    assert pv.SEARCH_DLS_WITH_REPLICATION in message
    assert "the access derived from roles remote-search, remote-replication" in message


def test_dls_on_a_replication_entry_is_refused_even_with_old_remotes():
    roles = {"leader": role(cluster=["read_ccr"], indices=[index(["l-*"], ["monitor", "read"],
                                                                 query='{"match_all":{}}')])}
    with pytest.raises(PreconditionError, match=r"role leader .*replicates \[l-\*\].*replication does not "
                                                r"support document or field level security"):
        pv.derive_remote_access(ALIAS, roles, remote_version=(8, 10))


def test_an_explicit_override_replaces_the_derived_access_but_is_still_checked():
    override = {"search": [{"names": ["logs-*"]}]}
    derived = pv.derive_remote_access(ALIAS, REMOTE_ROLES, override=override)
    assert derived.access == override and derived.overridden
    assert "remote-search" in derived.remote_indices  # the local roles' half is still derived
    with pytest.raises(PreconditionError, match="the explicit access: " + pv.REPLICATION_DLS):
        pv.derive_remote_access(ALIAS, {}, override={"replication": [{"names": ["a"], "query": "{}"}]})


@pytest.mark.parametrize("access, message", [
    ({}, re.escape(pv.NO_ACCESS)),
    ({"search": []}, re.escape(pv.NO_ACCESS)),
    ({"search": [{"names": []}]}, r"needs a non-empty \[names\]"),
    ({"search": [{"names": ["a"], "privileges": ["read"]}]}, "must not specify privileges"),
    ({"read": [{"names": ["a"]}]}, r"only \[search\] and \[replication\]"),
])
def test_check_access_refuses_what_elasticsearch_refuses(access, message):
    with pytest.raises(PreconditionError, match=message):
        pv.check_access(access)


def test_roles_granting_nothing_remotely_leave_no_access_and_say_why():
    roles = {"viewer": role(indices=[index(["a"], ["view_index_metadata"])])}
    with pytest.raises(PreconditionError, match=re.escape(pv.NO_ACCESS)):
        pv.derive_remote_access(ALIAS, roles)


LOCAL_SEARCH = role(cluster=["monitor"], indices=[index(["local-*"], ["read"])],
                    metadata={"owner": "team-a"},
                    remote_indices=[{"names": ["x"], "privileges": ["read"], "allow_restricted_indices": False,
                                     "clusters": ["other_remote"]}])


def test_role_plan_keeps_everything_else_and_strips_read_only_fields():
    derived = pv.derive_remote_access(ALIAS, {"remote-search": REMOTE_ROLES["remote-search"]})
    plan = pv.plan_role_updates(derived, {"remote-search": LOCAL_SEARCH})
    (call,) = plan.calls
    assert (call.method, call.path) == ("PUT", "/_security/role/remote-search")
    expected = {k: v for k, v in LOCAL_SEARCH.items() if k != "transient_metadata"}
    expected["remote_indices"] = LOCAL_SEARCH["remote_indices"] + derived.remote_indices["remote-search"]
    assert call.body == expected
    assert plan.originals == {"remote-search": LOCAL_SEARCH}
    assert plan.diff.startswith("--- role remote-search (before)\n+++ role remote-search (after)\n")
    assert '+      "clusters": [\n+        "my_remote"\n' in plan.diff
    assert "transient_metadata" not in plan.diff


def test_role_plan_is_empty_once_applied_even_as_get_renders_it():
    derived = pv.derive_remote_access(ALIAS, {"remote-search": REMOTE_ROLES["remote-search"]})
    applied = pv.plan_role_updates(derived, {"remote-search": LOCAL_SEARCH}).calls[0].body
    as_get = {**applied, "transient_metadata": {"enabled": True}}
    for entry in as_get["remote_indices"]:  # GET renders the DLS query as a string with its own spacing
        if "query" in entry:
            entry["query"] = '{"term": {"team": "a"}}'
    assert pv.plan_role_updates(derived, {"remote-search": as_get}).calls == ()


def test_role_plan_creates_a_missing_role_and_skips_built_in_ones():
    derived = pv.derive_remote_access(ALIAS, {"remote-search": REMOTE_ROLES["remote-search"],
                                              "superuser": REMOTE_ROLES["remote-search"]})
    superuser = role(cluster=["all"], metadata={"_reserved": True})
    plan = pv.plan_role_updates(derived, {"remote-search": None, "superuser": superuser})
    (call,) = plan.calls
    assert call.body == {"remote_indices": derived.remote_indices["remote-search"]}
    assert plan.originals == {"remote-search": None}
    assert "--- role remote-search (absent)" in plan.diff
    assert plan.notes and plan.notes[0].startswith("role superuser: built-in")


def test_apply_and_restore_roles_on_the_wire(scripted):
    derived = pv.derive_remote_access(ALIAS, {"remote-search": REMOTE_ROLES["remote-search"],
                                              "new-role": REMOTE_ROLES["remote-search"]})
    scripted.on("GET", "/_security/role/remote-search,new-role", {"remote-search": LOCAL_SEARCH})
    es = scripted.client()
    local = pv.read_roles(es, "local", ["remote-search", "new-role"])
    assert local == {"remote-search": LOCAL_SEARCH, "new-role": None}
    plan = pv.plan_role_updates(derived, local)
    scripted.on("PUT", "/_security/role/remote-search", {"role": {"created": False}})
    scripted.on("PUT", "/_security/role/new-role", {"role": {"created": True}})
    outcomes = pv.apply_role_updates(es, "local", plan)
    assert [(o.target, o.status, o.detail) for o in outcomes] == [
        ("role remote-search", "changed", "updated"), ("role new-role", "changed", "created")]

    # rollback: the changed role comes back whole, the created one goes
    updated = {**plan.calls[0].body, "transient_metadata": {"enabled": True}}
    scripted.on("GET", "/_security/role/remote-search,new-role",
                {"remote-search": updated, "new-role": plan.calls[1].body})
    scripted.on("DELETE", "/_security/role/new-role", {"found": True})
    outcomes = pv.restore_roles(es, "local", plan.originals)
    assert [(o.target, o.status, o.detail) for o in outcomes] == [
        ("role remote-search", "changed", "restored"), ("role new-role", "changed", "deleted")]
    puts = [w for w in scripted.writes() if w[0] != "GET"]
    assert puts[-2] == ("PUT", "/_security/role/remote-search",
                        {k: v for k, v in LOCAL_SEARCH.items() if k != "transient_metadata"})
    assert puts[-1] == ("DELETE", "/_security/role/new-role", None)


def test_restore_is_a_no_op_when_roles_are_as_they_were(scripted):
    scripted.error("GET", "/_security/role/gone", 404, "resource_not_found_exception", "role [gone] not found")
    scripted.on("GET", "/_security/role/kept", {"kept": LOCAL_SEARCH})
    es = scripted.client()
    assert [o.status for o in pv.restore_roles(es, "local", {"gone": None})] == ["unchanged"]
    assert [o.status for o in pv.restore_roles(es, "local", {"kept": LOCAL_SEARCH})] == ["unchanged"]
    assert scripted.writes() == []


def test_read_roles_reports_other_errors(scripted):
    scripted.error("GET", "/_security/role/a", 403, "security_exception", "action [cluster:admin/xpack/security/role/get] is unauthorized")
    with pytest.raises(ClusterHTTPError, match="403"):
        pv.read_roles(scripted.client(), "remote", ["a"])


@pytest.mark.lab
def test_lab_roles_get_remote_indices_and_come_back(rest_lab):
    names = ["ccs_role", "ccr_role"]
    remote, local = rest_lab.es("remote"), rest_lab.es("local")
    derived = pv.derive_remote_access(ALIAS, pv.read_roles(remote, "remote", names))
    assert derived.access == {"search": [{"names": ["leader-*", "auto-*"]}],
                              "replication": [{"names": ["leader-*", "auto-*"]}]}
    before = pv.read_roles(local, "local", names)
    plan = pv.plan_role_updates(derived, before)
    assert [c.target for c in plan.calls] == ["role ccs_role", "role ccr_role"]
    try:
        assert [o.status for o in pv.apply_role_updates(local, "local", plan)] == ["changed", "changed"]
        after = pv.read_roles(local, "local", names)
        assert after["ccr_role"]["remote_indices"] == derived.remote_indices["ccr_role"]
        assert {k: v for k, v in after["ccs_role"].items() if k != "remote_indices"} == before["ccs_role"]
        assert pv.plan_role_updates(derived, after).calls == ()  # the lab's GET rendering compares equal
    finally:
        pv.restore_roles(local, "local", plan.originals)
    assert pv.read_roles(local, "local", names) == before
