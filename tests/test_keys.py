"""The keys esremote owns, after the migration: listing the cross-cluster keys of a remote (scripted
Elasticsearch, response shapes of GET _security/api_key), which alias uses which, orphans and what
may be invalidated, expiry and days left, journals as a fallback, expiration options (one-line
errors naming the option), and the plan showing the expiry. No lab, no SSH, no Prefect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esremote.cluster import api_key as ak
from esremote.durations import DAY_MS, duration_ms, duration_text
from esremote.errors import ConfigError
from esremote.inventory import Inventory
from esremote.key_inventory import (
    AliasUsage,
    build_report,
    invalidate_orphans,
    key_id_of,
    recorded_key,
    unfinished_rotations,
)
from esremote.params import MigrationParams, RotationParams

NOW = 1_700_000_000_000
ACCESS = {"search": [{"names": ["leader-*"], "allow_restricted_indices": False}]}


def inventory() -> Inventory:
    auth = {"username": "elastic", "password": {"env": "ES_PASSWORD"}}
    return Inventory.model_validate({
        "clusters": {
            "local": {"role": "local", "urls": ["https://l:9200"], "auth": auth,
                      "nodes": [{"name": "local-0", "address": "10.0.1.1"}, {"name": "local-1", "address": "10.0.1.2"}]},
            "remote": {"role": "remote", "urls": ["https://r:9200"], "auth": auth,
                       "nodes": [{"name": "remote-0", "address": "10.0.2.1"}]},
            "remote2": {"role": "remote", "urls": ["https://r2:9200"], "auth": auth,
                        "nodes": [{"name": "remote2-0", "address": "10.0.3.1"}]}},
        "aliases": {"my_remote": {"local": "local", "remote": "remote"},
                    "my_remote2": {"local": "local", "remote": "remote2"}}},
        context={"base_dir": Path("."), "defer_checks": True})


def api_key(key_id: str, *, alias="my_remote", local="local", managed=True, earlier=False, type_="cross_cluster",
            creation=NOW - 10 * DAY_MS, **extra) -> dict:
    """A key as GET _security/api_key renders it (8.x)."""
    metadata = {}
    if managed:
        metadata = {"esremote": {"run_id": "r1", "alias": alias, "local_cluster": local}}
        if not earlier:
            metadata["managed_by"] = "esremote"
    body = {"id": key_id, "name": f"esremote-{local}-{alias}" if managed else "by-hand", "type": type_,
            "creation": creation, "invalidated": False, "username": "elastic", "realm": "reserved",
            "realm_type": "reserved", "metadata": metadata,
            "role_descriptors": {"cross_cluster": {"cluster": ["cross_cluster_search", "monitor_enrich"]}}}
    if type_ == "cross_cluster":
        body["access"] = ACCESS
    body.update(extra)
    return body


def keys_of(*bodies: dict) -> list[ak.KeyInfo]:
    return sorted((ak.KeyInfo.from_response(b) for b in bodies if b.get("type") == "cross_cluster"),
                  key=lambda k: (k.creation, k.id))


def usage(key_ids: dict[str, str | None], alias="my_remote", remote="remote", **extra) -> AliasUsage:
    return AliasUsage(alias, "local", remote, key_ids, **extra)


# ----------------------------------------------------------------------------------- listing


def test_listing_asks_get_api_key_without_a_type_filter_and_keeps_cross_cluster_keys(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": [
        api_key("newer", creation=NOW), api_key("rest-key", type_="rest"),
        api_key("older", creation=NOW - DAY_MS, expiration=NOW + 5 * DAY_MS),
        api_key("gone", invalidated=True, invalidation=NOW - 1000)]})
    found = ak.list_cross_cluster_keys(scripted.client(), "remote")
    assert [k.id for k in found] == ["gone", "older", "newer"]
    # GET _security/api_key has no `type` parameter in the spec (the lab refuses unknown ones)
    assert scripted.seen[0].params == {}
    older = found[1]
    assert older.expiration == NOW + 5 * DAY_MS and older.days_left(NOW) == 5.0
    assert older.state(NOW) == "active" and older.state(NOW + 5 * DAY_MS) == "expired"
    assert found[0].state(NOW) == "invalidated" and found[2].days_left(NOW) is None
    assert older.lifetime() == "6d" and found[2].lifetime() is None


def test_one_key_by_id_none_when_unknown(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": [api_key("k1")]})
    assert ak.get_key(scripted.client(), "remote", "k1").id == "k1"
    assert scripted.seen[-1].params == {"id": "k1"}
    scripted.on("GET", "/_security/api_key", {"api_keys": []})
    assert ak.get_key(scripted.client(), "remote", "k2") is None
    scripted.error("GET", "/_security/api_key", 404, "resource_not_found_exception", "api key not found")
    assert ak.get_key(scripted.client(), "remote", "k3") is None


def test_the_key_id_is_read_from_the_encoded_value_and_the_secret_is_dropped():
    import base64  # noqa: PLC0415

    from esremote.redact import default_redactor  # noqa: PLC0415

    encoded = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()
    assert key_id_of(encoded) == "VuaCfGcBCdbkQm-e5aOx"
    assert "ui2lp2axTNmsyakw9tvNnw" not in default_redactor.redact("x ui2lp2axTNmsyakw9tvNnw x")
    assert key_id_of("not base64!") is None and key_id_of(base64.b64encode(b"no-colon").decode()) is None


# ----------------------------------------------------------------------- users and orphans


def test_which_alias_uses_which_key_and_the_orphans():
    remote = keys_of(
        api_key("in-use", expiration=NOW + 40 * DAY_MS),
        api_key("stale-mine"),                                       # made by esremote, no node has it
        api_key("stale-earlier", earlier=True),                      # an earlier run's key, unused
        api_key("by-hand", managed=False),                           # not esremote's: never invalidated
        api_key("expired-mine", expiration=NOW - DAY_MS),            # expired: authenticates nothing
        api_key("invalid-mine", invalidated=True),
        api_key("other-local", local="elsewhere"))                   # a local cluster not in the inventory
    usages = {"my_remote": usage({"local-0": "in-use", "local-1": "in-use"}),
              "my_remote2": usage({"local-0": "k2", "local-1": "k2"}, alias="my_remote2", remote="remote2")}
    report = build_report(inventory(), {"remote": remote, "remote2": keys_of(api_key("k2", alias="my_remote2"))},
                          usages, NOW)
    rows = {r.key.id: r for r in report.keys["remote"]}
    assert rows["in-use"].used_by == ("my_remote on local-0, local-1",) and not rows["in-use"].orphan
    assert {r.key.id for r in report.orphans()} == {"stale-mine", "stale-earlier", "by-hand"}
    assert {r.key.id for r in report.orphans(managed_only=True)} == {"stale-mine", "stale-earlier"}
    assert not rows["expired-mine"].orphan and not rows["invalid-mine"].orphan
    assert "which this inventory does not list" in rows["other-local"].unknown and not rows["other-local"].orphan
    assert report.keys["remote2"][0].used_by == ("my_remote2 on local-0, local-1",)
    text = report.to_text()
    assert "ORPHAN (no alias uses it); not managed by esremote: left alone" in text
    assert "orphans: 2 managed by esremote (esremote keys --invalidate-orphans), 1 not managed" in text
    assert "40.0" in text and "never" in text
    json.dumps(report.to_dict())  # printable as --json


def test_no_orphan_on_a_remote_whose_usage_is_not_read_from_every_node(tmp_path):
    keys = {"remote": keys_of(api_key("in-use"), api_key("stale")), "remote2": []}
    shaky = usage({"local-0": "in-use"}, errors={"local-1": "SSH refused"}, recorded="in-use", recorded_by="r9")
    report = build_report(inventory(), keys, {"my_remote": shaky}, NOW)
    stale = next(r for r in report.keys["remote"] if r.key.id == "stale")
    assert not stale.orphan and "not read from every local node" in stale.unknown
    assert report.orphans() == []
    assert shaky.source == "journal" and not shaky.certain


def test_the_new_key_of_an_unfinished_rotation_is_no_orphan():
    keys = {"remote": keys_of(api_key("in-use"), api_key("rotating", metadata={
        "managed_by": "esremote", "esremote": {"run_id": "r-rot", "alias": "my_remote", "local_cluster": "local"}}))}
    used = {"my_remote": usage({"local-0": "in-use", "local-1": "in-use"})}
    report = build_report(inventory(), keys, used, NOW, unfinished={"r-rot": {"my_remote"}})
    assert report.orphans() == []
    assert "rotation run r-rot" in report.keys["remote"][1].unknown
    assert [r.key.id for r in build_report(inventory(), keys, used, NOW).orphans()] == ["rotating"]


def test_invalidate_orphans_sends_only_the_keys_esremote_made(scripted):
    scripted.on("DELETE", "/_security/api_key", {"invalidated_api_keys": ["stale-mine"],
                                                 "previously_invalidated_api_keys": [], "error_count": 0})
    keys = {"remote": keys_of(api_key("in-use"), api_key("stale-mine"), api_key("by-hand", managed=False))}
    report = build_report(inventory(), keys, {"my_remote": usage({"local-0": "in-use", "local-1": "in-use"})}, NOW)
    lines = invalidate_orphans(report, lambda cluster: scripted.client())
    assert scripted.writes() == [("DELETE", "/_security/api_key", {"ids": ["stale-mine"]})]
    assert lines == ["remote: key stale-mine (esremote-local-my_remote): changed (invalidated)"]


# ----------------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("days,warn,level", [(40, 14, "ok"), (14, 14, "warning"), (13.5, 14, "warning"),
                                             (0.25, 0, "ok"), (-1, 14, "error")])
def test_expiry_findings_and_days_left(days, warn, level):
    keys = {"remote": keys_of(api_key("k", expiration=int(NOW + days * DAY_MS)))}
    report = build_report(inventory(), keys, {"my_remote": usage({"local-0": "k", "local-1": "k"})}, NOW)
    [finding] = report.findings(warn)
    assert (finding.level, finding.key_id, finding.days_left) == (level, "k", days)
    if level == "warning":
        assert "esremote rotate --alias my_remote" in finding.message
    if level == "error":
        assert "expired on" in finding.message and "authentication error" in finding.message


def test_findings_for_keys_that_no_longer_work_or_nodes_that_disagree():
    keys = {"remote": keys_of(api_key("dead", invalidated=True), api_key("never"))}
    cases = {
        "dead": (usage({"local-0": "dead", "local-1": "dead"}), ["error"], "is invalidated"),
        "missing": (usage({"local-0": "nope", "local-1": "nope"}), ["error"], "which remote does not have"),
        "never": (usage({"local-0": "never", "local-1": "never"}), ["ok"], "never expires"),
        "split": (usage({"local-0": "never", "local-1": "dead"}), ["warning", "error", "ok"], "local nodes differ"),
        "certificate": (usage({"local-0": None, "local-1": None}), ["ok"], "certificate model"),
        "unread": (usage({}, errors={"local-0": "x", "local-1": "y"}), ["warning"], "unknown"),
    }
    for name, (used, levels, text) in cases.items():
        findings = build_report(inventory(), keys, {"my_remote": used}, NOW).findings(14)
        assert [f.level for f in findings] == levels, name
        assert text in findings[0].message, (name, findings[0].message)


# -------------------------------------------------------------------------------- journals


def _run(state: Path, run_id: str, entries: list[tuple[str, str, dict]], summary: str | None = None,
         day: int = 1) -> None:
    run_dir = state / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    lines = [json.dumps({"seq": i, "kind": k, "step": s, "time": f"2026-01-{day:02d}T00:00:{i:02d}",
                         "data": d}) for i, (k, s, d) in enumerate(entries)]
    (run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        (run_dir / "summary.json").write_text(json.dumps({"status": summary}))


def test_the_journal_records_what_a_run_left_the_alias_on(tmp_path):
    _run(tmp_path, "mig", [("intent", "prepare_remote/api-key/my_remote", {"name": "esremote-local-my_remote"}),
                           ("done", "prepare_remote/api-key/my_remote", {"key_id": "k1", "kind": "file"})],
         summary="migrated")
    _run(tmp_path, "rolledback", [("intent", "prepare_remote/api-key/my_remote", {"name": "esremote-local-my_remote"}),
                                  ("done", "prepare_remote/api-key/my_remote", {"key_id": "k0"})], summary="rolled-back")
    assert recorded_key("local", "my_remote", tmp_path) == ("k1", "mig")
    _run(tmp_path, "rotation-run", [
        ("intent", "rotate/create-key/my_remote", {}),
        ("done", "rotate/commit/my_remote", {"key_id": "k2", "local": "local"}),
        ("note", "rotate/end/my_remote", {"status": "rotated"})], day=2)
    assert recorded_key("local", "my_remote", tmp_path) == ("k2", "rotation-run")
    assert recorded_key("other", "my_remote", tmp_path) is None
    assert unfinished_rotations(tmp_path) == {}
    _run(tmp_path, "half", [("intent", "rotate/create-key/my_remote", {})])
    _run(tmp_path, "broken", [("intent", "rotate/create-key/my_remote", {}),
                              ("note", "rotate/end/my_remote", {"status": "rollback-failed"})])
    assert unfinished_rotations(tmp_path) == {"half": {"my_remote"}, "broken": {"my_remote"}}


# --------------------------------------------------------------------------- expiration input


def test_durations_are_elasticsearchs_with_one_line_errors_naming_the_option():
    assert duration_ms("90d") == 90 * DAY_MS and duration_ms("12h") == 12 * 3_600_000 and duration_ms("2s") == 2000
    assert duration_text(90 * DAY_MS) == "90d" and duration_text(36 * 3_600_000) == "36h"
    for bad in ("90", "1.5d", "90days", "-1d", "", "500ms"):
        with pytest.raises(ConfigError) as caught:
            duration_ms(bad, "--key-expiration")
        assert str(caught.value).startswith("--key-expiration: ") and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="key_expiration"):
        MigrationParams(inventory="i.yml", key_expiration="90x")
    with pytest.raises(ValueError, match="key_expiration"):
        RotationParams(inventory="i.yml", key_expiration="soon")
    assert RotationParams(inventory="i.yml", key_expiration="30d").migration_params().key_expiration == "30d"


def test_the_cli_refuses_a_bad_expiration_before_anything_starts(tmp_path, capsys):
    from esremote.cli import main  # noqa: PLC0415

    for command in ("migrate", "rotate", "plan"):
        assert main([command, "-i", str(tmp_path / "none.yml"), "--key-expiration", "ninety"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["esremote: error: --key-expiration: 'ninety' is not an Elasticsearch duration; give a "
                       "whole number and a unit (d, h, m, s, ms), e.g. 90d"], command


def test_the_plan_shows_the_new_keys_expiry(testdata):
    from tests.test_plan import DOCKER_TLS, facts, params  # noqa: PLC0415

    yml = (testdata / "elasticsearch-yml" / DOCKER_TLS).read_text()
    plan = __import__("esremote.plan", fromlist=["build_plan"]).build_plan(params(key_expiration="90d"), facts(yml))
    [change] = [c for c in plan.changes if c.kind == "api" and c.phase == "prepare_remote"]
    assert "expires after 90d: 90 days left" in change.summary
    body = json.loads(change.detail)
    assert body["expiration"] == "90d" and body["metadata"]["managed_by"] == "esremote"
    assert any("Key expiry: a key created by this run expires after 90d" in n for n in plan.notes)
    plain = __import__("esremote.plan", fromlist=["build_plan"]).build_plan(params(), facts(yml))
    assert any("never expires" in n for n in plain.notes)


def test_the_key_deployments_are_paused_and_the_rotation_trigger_parses():
    import yaml  # noqa: PLC0415
    from prefect.events import DeploymentEventTrigger  # noqa: PLC0415

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    rotate, check = deployments["rotate-keys"], deployments["check-key-expiry"]
    assert rotate["entrypoint"] == "flows/rotate.py:rotate_cross_cluster_key"
    assert check["entrypoint"] == "flows/key_expiry.py:check_key_expiry"
    assert [s["active"] for s in rotate["schedules"] + check["schedules"]] == [False, False]
    assert check["schedules"][0]["cron"] == "0 7 * * *"  # daily
    [trigger] = [DeploymentEventTrigger.model_validate(t) for t in rotate["triggers"]]
    assert trigger.enabled is False and trigger.expect == {"prefect.flow-run.Failed"}
    assert trigger.match_related.root["prefect.resource.name"] == "check-key-expiry"
