"""The plan, pyinfra style: facts in (real elasticsearch.yml files of public projects), changes out.
No cluster, no SSH, no Prefect: what `esremote plan` and the plan artifact show."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from esremote.errors import ConfigError, PreconditionError
from esremote.esyml import EsYml
from esremote.inventory import Inventory
from esremote.node_settings import (
    CLIENT_CA,
    SERVER_P12,
    SERVER_P12_PASSWORD,
    local_client_settings,
    remote_server_settings,
)
from esremote.params import MigrationParams
from esremote.plan import OUTAGE_PHASES, build_plan
from esremote.plan_facts import AliasState, MigrationFacts, NodeState, RoleChange, WorkItem

ALIAS = "my_remote"
DOCKER_TLS = "028-AlanNggg-docker-elk-tls-8.7.yml"        # a TLS-enabled node, no remote settings
STATIC_ALIAS = "001-jakelandis-es-docker-cross-cluster-with-kibana.yml"  # alias my_remote_cluster in yml
ENV_PLACEHOLDER = "004-beshu-tech-ror-sandbox.yml"         # proxy_address: '${ES_CLOUD_PROXY_ADDRESS}'


def params(**extra) -> MigrationParams:
    return MigrationParams(inventory="inventory.yml", **extra)


def work() -> list[WorkItem]:
    return [WorkItem("transform", "ccs-hosts", "started", remote_patterns=["leader-logs"]),
            WorkItem("datafeed", "datafeed-ccs-job", "started", job_id="ccs-job", job_state="opened"),
            WorkItem("auto_follow_pattern", "auto-logs", "active", remote_patterns=["auto-*"]),
            WorkItem("follower", "follower-logs", "active", remote_patterns=["leader-logs"]),
            WorkItem("transform", "stopped-before", "stopped")]


def facts(yml: str, *, version: str = "8.15.0", alias: AliasState | None = None, **node_extra) -> MigrationFacts:
    nodes = [NodeState(cluster, f"{cluster}-{i}", f"10.0.{k}.{i + 1}", version=version, yml=yml,
                       keystore=["keystore.seed"], config_dir="/etc/elasticsearch", service_user="elasticsearch",
                       **node_extra)
             for k, cluster in enumerate(("local", "remote"), start=1) for i in range(2)]
    alias = alias or AliasState(
        ALIAS, "local", "remote",
        saved={"alias": ALIAS, "persistent": {"mode": "proxy", "proxy_address": "10.0.2.1:9300",
                                              "skip_unavailable": "true"}, "transient": {}},
        remote_info={"connected": True, "mode": "proxy", "proxy_address": "10.0.2.1:9300"},
        work=work(), roles=[RoleChange("ccs_role", [{"names": ["leader-*"], "clusters": [ALIAS],
                                                     "privileges": ["read"]}])],
        key_access={"search": [{"names": ["leader-*"]}]})
    return MigrationFacts(clusters={"local": {"versions": {}}, "remote": {"versions": {}}}, nodes=nodes,
                          aliases=[alias], remote_cluster_port={"remote": 9443})


@pytest.fixture
def node_yml(testdata) -> str:
    return (testdata / "elasticsearch-yml" / DOCKER_TLS).read_text()


def changes(plan, phase, kind=None, target=None):
    return [c for c in plan.for_phase(phase) if (kind is None or c.kind == kind)
            and (target is None or c.target == target)]


def test_remote_nodes_get_the_server_as_a_diff_names_only_keystore_and_a_rolling_restart(node_yml):
    plan = build_plan(params(), facts(node_yml))
    [diff] = changes(plan, "prepare_remote", "yml", "remote/remote-0")
    assert "+remote_cluster_server.enabled: true" in diff.detail
    assert "+remote_cluster.host: 10.0.2.1" in diff.detail
    assert "+xpack.security.remote_cluster_server.ssl.keystore.path: certs/remote-cluster.p12" in diff.detail
    assert diff.detail.count("\n-") == 0  # only additions: every other line of the file is kept
    [keystore] = changes(plan, "prepare_remote", "keystore", "remote/remote-0")
    assert SERVER_P12_PASSWORD in keystore.summary and "stdin" in keystore.summary
    assert [c.target for c in changes(plan, "prepare_remote", "restart")] == ["remote/remote-0", "remote/remote-1"]
    assert not any(c.disruptive for c in plan.for_phase("prepare_remote") + plan.for_phase("stage_local"))
    [key] = changes(plan, "prepare_remote", "api")
    assert json.loads(key.detail)["access"] == {"search": [{"names": ["leader-*"]}]}


def test_credentials_are_reloaded_from_8_13_so_no_local_restart_in_the_outage(node_yml):
    plan = build_plan(params(), facts(node_yml, version="8.15.0"))
    assert plan.outage.credentials == "reload" and plan.outage.restarts_in_window == []
    assert changes(plan, "reconnect", "reload") and not changes(plan, "reconnect", "restart")
    # Keystores and roles are staged before the outage: inside it, no keystore write, no role update.
    keystores = changes(plan, "stage_credentials", "keystore")
    assert [c.target for c in keystores] == ["local/local-0", "local/local-1"]
    assert all(f"cluster.remote.{ALIAS}.credentials" in c.summary for c in keystores)
    assert [c.summary for c in changes(plan, "stage_credentials", "api")] == [
        "PUT _security/role/ccs_role: add remote_indices"]
    inside = [c for c in plan.changes if c.phase in OUTAGE_PHASES]
    assert not [c for c in inside if c.kind in ("keystore", "restart") or "_security/role" in c.summary]
    assert not any(c.disruptive for c in plan.changes if c.phase not in OUTAGE_PHASES)


def test_before_8_13_the_local_nodes_restart_one_by_one(node_yml):
    plan = build_plan(params(), facts(node_yml, version="8.12.2"))
    assert plan.outage.credentials == "restart"
    assert [c.target for c in changes(plan, "reconnect", "restart")] == ["local/local-0", "local/local-1"]
    assert plan.outage.restarts_in_window == ["local/local-0", "local/local-1"]
    assert not changes(plan, "reconnect", "reload")
    assert build_plan(params(restart_strategy="restart"), facts(node_yml)).outage.credentials == "restart"


def test_the_alias_is_nulled_whole_then_readded_on_the_remote_cluster_port(node_yml):
    plan = build_plan(params(), facts(node_yml))
    remove, readd = [c for c in changes(plan, "reconnect", "api") if "_cluster/settings" in c.summary]
    removed = json.loads(remove.detail)["body"]["persistent"]
    assert removed == {f"cluster.remote.{ALIAS}.{k}": None for k in ("mode", "proxy_address", "skip_unavailable")}
    added = json.loads(readd.detail)["body"]["persistent"]
    assert added[f"cluster.remote.{ALIAS}.proxy_address"] == "10.0.2.1:9443"
    assert added[f"cluster.remote.{ALIAS}.skip_unavailable"] == "true"  # options kept as they were


def test_switching_to_sniff_seeds_the_remote_nodes_on_9443_and_drops_proxy_keys(node_yml):
    plan = build_plan(params(connection_mode="sniff"), facts(node_yml))
    readd = [c for c in changes(plan, "reconnect", "api") if "re-add" in c.summary][0]
    added = json.loads(readd.detail)["body"]["persistent"]
    assert added[f"cluster.remote.{ALIAS}.mode"] == "sniff"
    assert added[f"cluster.remote.{ALIAS}.seeds"] == ["10.0.2.1:9443", "10.0.2.2:9443"]
    assert f"cluster.remote.{ALIAS}.proxy_address" not in added


def test_work_stops_and_resumes_only_what_ran_in_the_corrected_order(node_yml):
    plan = build_plan(params(), facts(node_yml))
    stops = [c.summary for c in plan.for_phase("stop_cross_cluster_ops")]
    resumes = [c.summary for c in plan.for_phase("resume_cross_cluster_ops")]
    assert not any("stopped-before" in s for s in stops + resumes)
    # es-facts §11.2: opening the job does not restart its datafeed, so both, job first.
    assert resumes.index("POST /_ml/anomaly_detectors/ccs-job/_open") < resumes.index(
        "POST /_ml/datafeeds/datafeed-ccs-job/_start")
    # es-facts §11.1: auto-follow patterns are resumed as patterns, followers as followers.
    assert "POST /_ccr/auto_follow/auto-logs/resume" in resumes
    assert "POST /follower-logs/_ccr/resume_follow {}" in resumes
    assert stops[0] == "POST /_transform/ccs-hosts/_stop?wait_for_completion=true"
    assert all(c.disruptive for c in plan.for_phase("stop_cross_cluster_ops"))
    assert plan.outage.work_stopped == ["transform ccs-hosts", "datafeed datafeed-ccs-job",
                                        "auto_follow_pattern auto-logs", "follower follower-logs"]


def test_a_migrated_cluster_plans_no_change(node_yml):
    after = facts(node_yml, files={SERVER_P12: True, CLIENT_CA: True})
    for node in after.nodes:  # the nodes as the migration leaves them
        yml = EsYml.parse(node.yml)
        yml.update(remote_server_settings(node.address, 9443) if node.cluster == "remote" else local_client_settings())
        node.yml = yml.text()
        node.keystore = ["keystore.seed", SERVER_P12_PASSWORD, f"cluster.remote.{ALIAS}.credentials"]
    alias = after.aliases[0]
    alias.remote_info = {"connected": True, "cluster_credentials": "::es_redacted::"}
    alias.key_exists = True
    alias.roles = [RoleChange(r.role, r.remote_indices, already=True) for r in alias.roles]
    plan = build_plan(params(), after)
    assert [c for c in plan.changes if c.kind != "probe"] == []
    assert plan.outage.work_stopped == [] and not any(c.disruptive for c in plan.changes)


def test_a_static_alias_moves_in_every_local_yml_with_restarts(testdata, node_yml):
    local_yml = (testdata / "elasticsearch-yml" / STATIC_ALIAS).read_text()
    alias = "my_remote_cluster"
    settings = {k.split(".", 3)[3]: v for k, v in EsYml.parse(local_yml).flat().items()
                if k.startswith(f"cluster.remote.{alias}.")}
    state = AliasState(alias, "local", "remote", defined_in="yml",
                       yml_settings={"local-0": settings, "local-1": settings},
                       remote_info={"connected": True})
    f = facts(node_yml, alias=state)
    for node in f.nodes_of("local"):
        node.yml = local_yml
    plan = build_plan(params(), f)
    # es-fulfill:9443 is on 9443 already: no yml change for the alias, but the credentials of a
    # static alias are loaded by restarting (the yml is read only at start).
    assert changes(plan, "reconnect", "yml") == []
    assert [c.target for c in changes(plan, "stage_credentials", "keystore")] == ["local/local-0", "local/local-1"]
    assert plan.outage.restarts_in_window == ["local/local-0", "local/local-1"]
    # The yml had remote_cluster_client.ssl.enabled: false; staging turns it on in place.
    [stage] = changes(plan, "stage_local", "yml", "local/local-0")
    assert "-xpack.security.remote_cluster_client.ssl.enabled: false" in stage.detail
    assert "+xpack.security.remote_cluster_client.ssl.enabled: true" in stage.detail


def test_a_static_alias_on_the_transport_port_gets_its_port_changed(testdata, node_yml):
    local_yml = ("cluster.name: query\n"
                 "cluster.remote:\n  my_remote:\n    mode: sniff\n    seeds: [\"10.0.2.1:9300\", \"10.0.2.2:9300\"]\n")
    state = AliasState(ALIAS, "local", "remote", defined_in="yml",
                       yml_settings={n: {"mode": "sniff", "seeds": ["10.0.2.1:9300", "10.0.2.2:9300"]}
                                     for n in ("local-0", "local-1")})
    f = facts(node_yml, alias=state)
    for node in f.nodes_of("local"):
        node.yml = local_yml
    plan = build_plan(params(), f)
    [diff] = changes(plan, "reconnect", "yml", "local/local-1")
    assert '-    seeds: ["10.0.2.1:9300", "10.0.2.2:9300"]' in diff.detail
    assert "10.0.2.1:9443" in diff.detail and "10.0.2.2:9443" in diff.detail
    assert diff.disruptive


def test_an_unresolvable_address_is_refused_with_elasticsearchs_message(testdata, node_yml):
    local_yml = (testdata / "elasticsearch-yml" / ENV_PLACEHOLDER).read_text()
    settings = {k.split(".", 3)[3]: v for k, v in EsYml.parse(local_yml).flat().items()
                if k.startswith("cluster.remote.escloud.")}
    state = AliasState("escloud", "local", "remote", defined_in="yml",
                       yml_settings={"local-0": settings, "local-1": settings})
    with pytest.raises(PreconditionError, match=r"remote hosts need to be configured as \[host:port\]"):
        build_plan(params(), facts(node_yml, alias=state))


def test_markdown_and_table_show_every_phase_and_the_key_store(node_yml):
    plan = build_plan(params(dry_run=True), facts(node_yml))
    text = plan.to_markdown()
    for phase in ("prepare_remote", "stage_local", "stop_cross_cluster_ops", "reconnect", "verify",
                  "resume_cross_cluster_ops"):
        assert f"## {phase}" in text
    assert "Dry run" in text and "0600 file" in text
    assert "```diff" in text
    assert {row["phase"] for row in plan.rows()} >= {"prepare_remote", "reconnect"}
    assert json.loads(json.dumps(plan.to_dict()))["aliases"] == [ALIAS]


def test_facts_survive_the_run_directory(node_yml):
    f = facts(node_yml)
    again = MigrationFacts.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again == f
    assert build_plan(params(), again).to_dict() == build_plan(params(), f).to_dict()


# ------------------------------------------------------------------------------------- parameters


def test_parameters_refuse_inconsistent_certificate_options():
    with pytest.raises(ValidationError, match="provided-ca needs ca_cert_file and ca_key_file"):
        params(certificate_strategy="provided-ca")
    with pytest.raises(ValidationError, match="only used with certificate_strategy provided-ca"):
        params(ca_cert_file="ca.crt")
    with pytest.raises(ValidationError, match="listed twice"):
        params(aliases=["a", "a"])
    with pytest.raises(ValidationError):
        params(connection_mode="tunnel")
    with pytest.raises(ValidationError):
        params(max_parallel=0)


def test_aliases_are_checked_against_the_inventory():
    auth = {"username": "u", "password": {"env": "P"}}
    inventory = Inventory.model_validate({
        "clusters": {"l": {"role": "local", "urls": ["https://l:9200"], "auth": auth,
                           "nodes": [{"name": "l0", "address": "l0"}]},
                     "r": {"role": "remote", "urls": ["https://r:9200"], "auth": auth,
                           "nodes": [{"name": "r0", "address": "r0"}]}},
        "aliases": {"one": {"local": "l", "remote": "r"}, "two": {"local": "l", "remote": "r"}}})
    assert params().selected_aliases(inventory) == ["one", "two"]
    assert params(aliases=["two"]).selected_aliases(inventory) == ["two"]
    with pytest.raises(ConfigError, match="alias three is not in inventory.yml; the inventory has: one, two"):
        params(aliases=["three"]).selected_aliases(inventory)


def test_the_run_form_schema_has_no_secret_field():
    schema = json.dumps(MigrationParams.model_json_schema())
    assert "password" not in schema and "writeOnly" not in schema


def test_strong_identity_lists_the_signing_certificates_settings_and_key_identity(node_yml):
    plan = build_plan(params(strong_identity=True), facts(node_yml, version="9.3.0"))
    dn = "CN=local-signing,OU=my_remote,O=esremote"
    [diff] = changes(plan, "prepare_remote", "yml", "remote/remote-0")
    assert "+cluster.remote.signing.certificate_authorities:" in diff.detail
    assert "certs/remote-cluster-ca.crt" in diff.detail.split("certificate_authorities", 1)[1]
    [signed] = [c for c in changes(plan, "prepare_remote", "secret") if "signing certificate" in c.summary]
    assert dn in signed.summary and "signed by the CA of remote" in signed.summary
    [local_yml] = changes(plan, "stage_local", "yml", "local/local-0")
    for line in ("+cluster.remote.my_remote.signing.certificate: certs/remote-signing-my_remote.crt",
                 "+cluster.remote.my_remote.signing.key: certs/remote-signing-my_remote.key"):
        assert line in local_yml.detail
    files = [c.summary for c in changes(plan, "stage_local", "file", "local/local-1")]
    assert any("certs/remote-signing-my_remote.key (0660" in f for f in files), files
    [key] = changes(plan, "prepare_remote", "api")
    assert json.loads(key.detail)["certificate_identity"] == "^" + re.escape(dn) + "$"
    assert any("Strong identity verification" in n for n in plan.notes)
    assert "certificate_identity" not in changes(build_plan(params(), facts(node_yml)), "prepare_remote", "api")[0].detail
