"""Remote alias settings: facts (real `GET _cluster/settings` shapes) in, exact PUT bodies out; the
appliers against a scripted HTTP server speaking Elasticsearch's wire format; yml edits applied with
EsYml to a real elasticsearch.yml fixture; a round trip on the lab.

The scripted server (`scripted` fixture) is in `tests/fixtures/scripted_es.py`, the lab (`rest_lab`,
shared with the other tests/test_cluster_* files) in `tests/fixtures/lab.py`.
"""

from __future__ import annotations

import json

import pytest

from esremote.cluster import remote_settings as rs
from esremote.errors import ClusterHTTPError, ConfigError, PreconditionError
from esremote.esyml import EsYml
from tests.fixtures.lab import wait_for

ALIAS = "my_remote"


# --- facts: real response shapes ---------------------------------------------------------------

PROXY_PERSISTENT = {
    "persistent": {
        "cluster.remote.my_remote.mode": "proxy",
        "cluster.remote.my_remote.proxy_address": "remote.example.com:9300",
        "cluster.remote.my_remote.server_name": "remote.example.com",
        "cluster.remote.my_remote.skip_unavailable": "true",
        "cluster.remote.my_remote.proxy_socket_connections": "12",
        "cluster.remote.my_remote.transport.ping_schedule": "30s",
        "cluster.remote.other.mode": "proxy",
        "cluster.remote.other.proxy_address": "other:9300",
        "cluster.remote.my_remote.eu.seeds": ["not-this-alias:9300"],
        "indices.recovery.max_bytes_per_sec": "50mb",
    },
    "transient": {},
}

SNIFF_TRANSIENT = {  # the ccr__auto_follow.yml test's shape: transient, flat, seeds as a list
    "persistent": {"cluster.remote.my_remote.skip_unavailable": "false"},
    "transient": {"cluster.remote.my_remote.seeds": ["10.0.0.1:9300", "[fd00::2]:9300"],
                  "cluster.remote.my_remote.node_connections": "5"},
}


def test_read_finds_the_alias_per_layer_and_ignores_other_aliases():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    assert saved.layers == ("persistent",)
    assert saved.mode == "proxy"
    assert dict(saved.persistent) == {
        "mode": "proxy", "proxy_address": "remote.example.com:9300", "server_name": "remote.example.com",
        "skip_unavailable": "true", "proxy_socket_connections": "12", "transport.ping_schedule": "30s"}

    sniff = rs.read_remote(SNIFF_TRANSIENT, ALIAS)
    assert sniff.layers == ("persistent", "transient")
    assert sniff.mode == "sniff"  # no mode key: Elasticsearch's default
    assert rs.SavedRemote.from_dict(json.loads(json.dumps(sniff.to_dict()))) == sniff


def test_the_nested_rendering_reads_the_same():
    nested = {"persistent": {"cluster": {"remote": {"my_remote": {  # es-facts §6, flat_settings=false
        "mode": "proxy", "proxy_address": "remote.example.com:9300", "server_name": "remote.example.com",
        "skip_unavailable": "true", "proxy_socket_connections": "12",
        "transport": {"ping_schedule": "30s"}}}}}}
    assert rs.read_remote(nested, ALIAS) == rs.read_remote(PROXY_PERSISTENT, ALIAS)


def test_a_missing_alias_is_a_precondition_error_naming_it():
    with pytest.raises(PreconditionError, match=r"cluster local: remote cluster alias 'nope' is not in"):
        rs.read_remote(PROXY_PERSISTENT, "nope", cluster="local")
    assert rs.find_remote({}, ALIAS) is None  # `GET` with nothing set answers {}


def test_an_alias_without_its_address_is_refused():
    facts = {"persistent": {"cluster.remote.my_remote.mode": "proxy",
                            "cluster.remote.my_remote.skip_unavailable": "true"}}
    with pytest.raises(PreconditionError, match="proxy mode but has no proxy_address"):
        rs.read_remote(facts, ALIAS)


@pytest.mark.parametrize("alias", ["", "a b", "x:y", "*", "a.b"])
def test_bad_alias_names_are_config_errors(alias):
    with pytest.raises(ConfigError, match="alias"):
        rs.alias_settings({}, alias)


def test_removal_nulls_every_key_of_the_alias_in_one_request():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    assert rs.removal_body(ALIAS, saved) == {"persistent": {
        "cluster.remote.my_remote.mode": None,
        "cluster.remote.my_remote.proxy_address": None,
        "cluster.remote.my_remote.proxy_socket_connections": None,
        "cluster.remote.my_remote.server_name": None,
        "cluster.remote.my_remote.skip_unavailable": None,
        "cluster.remote.my_remote.transport.ping_schedule": None}}
    # both layers when the alias lives in both; the wildcard form on request
    sniff = rs.read_remote(SNIFF_TRANSIENT, ALIAS)
    assert rs.removal_body(ALIAS, sniff, wildcard=True) == {
        "persistent": {"cluster.remote.my_remote.*": None},
        "transient": {"cluster.remote.my_remote.*": None}}
    with pytest.raises(ValueError):
        rs.removal_body("other", saved)


def test_readd_proxy_moves_the_address_to_9443_and_keeps_every_option():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    assert rs.readd_body(ALIAS, saved) == {"persistent": {
        "cluster.remote.my_remote.mode": "proxy",
        "cluster.remote.my_remote.proxy_address": "remote.example.com:9443",
        "cluster.remote.my_remote.server_name": "remote.example.com",
        "cluster.remote.my_remote.skip_unavailable": "true",
        "cluster.remote.my_remote.proxy_socket_connections": "12",
        "cluster.remote.my_remote.transport.ping_schedule": "30s"}}
    explicit = rs.readd_body(ALIAS, saved, addresses="lb.example.com:443")
    assert explicit["persistent"]["cluster.remote.my_remote.proxy_address"] == "lb.example.com:443"


def test_readd_sniff_moves_every_seed_including_ipv6():
    saved = rs.read_remote(SNIFF_TRANSIENT, ALIAS)
    assert rs.readd_body(ALIAS, saved, port=9444) == {
        "persistent": {"cluster.remote.my_remote.skip_unavailable": "false"},
        "transient": {"cluster.remote.my_remote.seeds": ["10.0.0.1:9444", "[fd00::2]:9444"],
                      "cluster.remote.my_remote.node_connections": "5"}}
    explicit = rs.readd_body(ALIAS, saved, addresses=["a:9443", "b:9443"])
    assert explicit["transient"]["cluster.remote.my_remote.seeds"] == ["a:9443", "b:9443"]


@pytest.mark.parametrize("kwargs, message", [
    ({"port": 0}, "port: 0 is not a TCP port"),
    ({"addresses": ["a:1", "b:2"]}, "proxy mode takes exactly one address"),
    ({"addresses": "nohost"}, r"configured as \[host:port\], found \[nohost\]"),
    ({"addresses": "h:x"}, "failed to parse port"),
])
def test_readd_rejects_bad_parameters(kwargs, message):
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    with pytest.raises((ConfigError, PreconditionError), match=message):
        rs.readd_body(ALIAS, saved, **kwargs)


def test_restore_puts_back_exactly_the_saved_settings_and_nulls_the_other_mode():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    body = rs.restore_body(saved)["persistent"]
    assert {k: v for k, v in body.items() if v is not None} == {
        f"cluster.remote.my_remote.{k}": v for k, v in saved.persistent.items()}
    for key in ("seeds", "node_connections", "proxy", "transport.compress"):
        assert body[f"cluster.remote.my_remote.{key}"] is None
    assert "cluster.remote.my_remote.credentials" not in body  # secure: never through the API


def test_plans_are_empty_when_the_cluster_is_already_there():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    assert rs.plan_removal(None) == []
    readd = rs.readd_body(ALIAS, saved)
    moved = rs.find_remote({"persistent": readd["persistent"]}, ALIAS)
    assert rs.plan_readd(moved, saved) == []
    assert rs.plan_restore(saved, saved) == []
    # a bool or int given by an earlier PUT compares equal to the string Elasticsearch returns
    as_given = rs.SavedRemote(ALIAS, {**saved.persistent, "skip_unavailable": True,
                                      "proxy_socket_connections": 12})
    assert rs.plan_restore(as_given, saved) == []


def test_plan_readd_also_clears_a_layer_the_target_does_not_use():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    stray = rs.SavedRemote(ALIAS, {}, {"skip_unavailable": "false", "proxy_address": "x:1",
                                       "mode": "proxy"})
    (call,) = rs.plan_readd(stray, saved)
    assert call.body["transient"] == {"cluster.remote.my_remote.mode": None,
                                      "cluster.remote.my_remote.proxy_address": None,
                                      "cluster.remote.my_remote.skip_unavailable": None}
    assert call.body["persistent"]["cluster.remote.my_remote.proxy_address"] == "remote.example.com:9443"
    assert str(call).startswith('PUT /_cluster/settings?flat_settings=true {"persistent": ')


def test_plan_readd_over_the_other_mode_nulls_its_keys_in_the_same_request():
    saved = rs.read_remote(PROXY_PERSISTENT, ALIAS)
    sniffing = rs.SavedRemote(ALIAS, {"mode": "sniff", "seeds": ["a:9300"], "node_connections": "3"})
    (call,) = rs.plan_readd(sniffing, saved)
    body = call.body["persistent"]
    assert body["cluster.remote.my_remote.seeds"] is None and body["cluster.remote.my_remote.node_connections"] is None
    assert body["cluster.remote.my_remote.mode"] == "proxy"


# --- against the wire ----------------------------------------------------------------------------

def test_fetch_and_apply_send_exactly_the_planned_requests(scripted):
    scripted.on("GET", "/_cluster/settings", PROXY_PERSISTENT)
    scripted.on("PUT", "/_cluster/settings", {"acknowledged": True, "persistent": {}, "transient": {}})
    es = scripted.client()
    current = rs.fetch_remote(es, "local", ALIAS)
    assert scripted.seen[0].params == {"flat_settings": "true"}
    outcomes = rs.apply_settings(es, "local", rs.plan_removal(current))
    assert [o.status for o in outcomes] == ["changed"]
    assert scripted.writes() == [("PUT", "/_cluster/settings", rs.removal_body(ALIAS, current))]
    assert rs.apply_settings(es, "local", [])[0].status == "unchanged"


def test_a_400_from_elasticsearch_becomes_a_cluster_http_error(scripted):
    reason = "Cannot configure setting [cluster.remote.my_remote.skip_unavailable] if remote cluster is not enabled."
    scripted.error("PUT", "/_cluster/settings", 400, "illegal_argument_exception", reason)
    calls = [rs.ApiCall("PUT", "/_cluster/settings", {"persistent": {"cluster.remote.my_remote.seeds": None}})]
    with pytest.raises(ClusterHTTPError) as caught:
        rs.apply_settings(scripted.client(), "local", calls)
    assert caught.value.status == 400 and not caught.value.transient
    assert "cluster local: PUT /_cluster/settings -> HTTP 400 illegal_argument_exception" in str(caught.value)


# --- the static case ---------------------------------------------------------------------------

YML = """\
cluster.name: local
# the link to the remote cluster
cluster:
  remote:
    my_remote:
      seeds:
        - 10.0.0.1:9300
        - 10.0.0.2:9300
      skip_unavailable: true
      transport.ping_schedule: 30s
node.name: local-0
"""


def test_yml_removal_readd_and_restore_round_trip_with_esyml():
    original = EsYml.parse(YML)
    saved = rs.read_yml_remote({"local-0": original.flat(), "local-1": {"cluster.name": "local"}}, ALIAS)
    assert list(saved) == ["local-0"]
    assert saved["local-0"]["seeds"] == ["10.0.0.1:9300", "10.0.0.2:9300"]

    doc = EsYml.parse(YML)
    edit = rs.yml_removal(ALIAS, saved)["local-0"]
    assert doc.update(edit.set, edit.unset)
    assert not any(k.startswith("cluster.remote.") for k in doc.flat())
    assert "# the link to the remote cluster" in doc.text()

    edit = rs.yml_readd(ALIAS, saved)["local-0"]
    doc.update(edit.set, edit.unset)
    assert doc.get("cluster.remote.my_remote.seeds") == ["10.0.0.1:9443", "10.0.0.2:9443"]
    assert doc.get("cluster.remote.my_remote.skip_unavailable") is True

    edit = rs.yml_restore(ALIAS, saved, {"local-0": doc.flat()})["local-0"]
    doc.update(edit.set, edit.unset)
    assert doc.flat() == original.flat()


def test_yml_without_the_alias_anywhere_is_refused():
    with pytest.raises(PreconditionError, match="not defined in elasticsearch.yml on any of the nodes read"):
        rs.read_yml_remote({"local-0": {"cluster.name": "x"}}, ALIAS)


# --- on the lab ----------------------------------------------------------------------------------

@pytest.mark.lab
def test_lab_remove_readd_and_restore_an_alias(rest_lab):
    alias = "my_remote2"  # idle: no cross-cluster work breaks while it is away
    es = rest_lab.es("local")
    saved = rs.fetch_remote(es, "local", alias)
    assert saved is not None and saved.mode == "proxy" and saved.layers == ("persistent",)
    remote_info = lambda: es.cluster.remote_info().body  # noqa: E731

    try:
        assert [o.status for o in rs.apply_settings(es, "local", rs.plan_removal(saved))] == ["changed"]
        wait_for("alias gone from _remote/info", lambda: alias not in remote_info())
        assert rs.fetch_remote(es, "local", alias) is None and rs.plan_removal(None) == []

        # re-added on 9443 without credentials: the lab accepts the settings and points at 9443
        rs.apply_settings(es, "local", rs.plan_readd(None, saved))
        info = wait_for("alias back", lambda: remote_info().get(alias))
        assert info["proxy_address"].endswith(":9443") and "cluster_credentials" not in info
        assert rs.plan_readd(rs.fetch_remote(es, "local", alias), saved) == []
    finally:
        now = rs.fetch_remote(es, "local", alias)
        rs.apply_settings(es, "local", rs.plan_restore(now, saved))
    info = wait_for("certificate-model link connected again",
                    lambda: (remote_info().get(alias) or {}).get("connected") and remote_info()[alias])
    assert info["proxy_address"] == saved.persistent["proxy_address"]
    assert rs.plan_restore(rs.fetch_remote(es, "local", alias), saved) == []
