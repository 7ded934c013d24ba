"""The cross-cluster API key: find an earlier one, update/reuse/recreate/create, licence refusal, and
the secret kept out of reprs, exceptions and logs. Response shapes from the 50_cross_cluster.yml
REST test and the create/update docs (es-facts §3, §10)."""

from __future__ import annotations

import base64
import logging

import pytest
from pydantic import SecretStr

from esremote.cluster import api_key as ak
from esremote.errors import PreconditionError
from esremote.redact import RedactingFilter, default_redactor
from tests.fixtures.scripted_es import ScriptedES  # noqa: F401

NAME = "esremote-local-my_remote"
ACCESS = {"search": [{"names": ["logs*"], "query": {"term": {"category": "shared"}},
                      "field_security": {"grant": ["*"], "except": ["private"]}}]}
METADATA = {"managed_by": "esremote", "esremote": {"run_id": "r1", "alias": "my_remote", "local_cluster": "local",
                                                   "access_sha256": ak.access_hash(ACCESS)}}
EARLIER_METADATA = {"esremote": {"run_id": "r0", "alias": "my_remote", "local_cluster": "local"}}  # earlier runs
NOW = 1_700_000_000_000




def get_key(key_id="VuaCfGcBCdbkQm-e5aOx", *, name=NAME, access=None, metadata=None, **extra):
    """A key as GET _security/api_key renders it: access with defaults, the query as a string."""
    access = access if access is not None else {
        "search": [{"names": ["logs*"], "field_security": {"grant": ["*"], "except": ["private"]},
                    "query": "{\"term\":{\"category\":\"shared\"}}", "allow_restricted_indices": False}]}
    key = {"id": key_id, "name": name, "creation": NOW - 1000, "invalidated": False, "username": "admin_user",
           "realm": "native1", "type": "cross_cluster", "metadata": metadata if metadata is not None else METADATA,
           "role_descriptors": {"cross_cluster": {"cluster": ["cross_cluster_search", "monitor_enrich"]}},
           "access": access}
    key.update(extra)
    return key


def test_key_name_and_metadata():
    assert ak.key_name("local", "my_remote") == NAME
    assert ak.key_metadata("r1", "my_remote", "local", ACCESS) == METADATA
    # Keys of earlier runs (no managed_by, no hash) are esremote's too; a key made by hand is not.
    assert ak.is_managed(METADATA) and ak.is_managed(EARLIER_METADATA)
    assert not ak.is_managed({}) and not ak.is_managed({"esremote": {"run_id": "x"}})
    assert not ak.is_managed({"managed_by": "terraform"})
    # The hash is the same for the access as sent and as GET renders it (defaults, query string).
    assert ak.access_hash(get_key()["access"]) == ak.access_hash(ACCESS)
    assert ak.access_hash({"search": [{"names": ["other"]}]}) != ak.access_hash(ACCESS)


def test_only_valid_cross_cluster_keys_of_that_name_count_newest_first():
    response = {"api_keys": [
        get_key("old", creation=NOW - 5000), get_key("new", creation=NOW - 10),
        get_key("gone", invalidated=True), get_key("expired", expiration=NOW - 1),
        get_key("later", expiration=NOW + 60_000, creation=1), get_key("rest", type="rest"),
        get_key("other", name="esremote-local-other")]}
    assert [k.id for k in ak.usable_keys(response, NAME, NOW)] == ["new", "old", "later"]


def test_plan_creates_when_there_is_no_earlier_key():
    plan = ak.plan_key([], name=NAME, access=ACCESS, metadata=METADATA, stored_secret=lambda _: None)
    (call,) = plan.calls
    assert (plan.action, call.method, call.path) == ("create", "POST", "/_security/cross_cluster/api_key")
    assert call.body == {"name": NAME, "access": ACCESS, "metadata": METADATA}


def test_plan_reuses_an_identical_key_whose_secret_is_stored():
    existing = ak.usable_keys({"api_keys": [get_key()]}, NAME, NOW)
    plan = ak.plan_key(existing, name=NAME, access=ACCESS, metadata=METADATA,
                       stored_secret=lambda key_id: SecretStr("stored"))
    assert (plan.action, plan.calls, plan.key_id) == ("unchanged", (), "VuaCfGcBCdbkQm-e5aOx")


def test_plan_updates_access_that_differs():
    existing = ak.usable_keys({"api_keys": [get_key()]}, NAME, NOW)
    wanted = {"search": [{"names": ["logs*"]}], "replication": [{"names": ["archive"]}]}
    plan = ak.plan_key(existing, name=NAME, access=wanted, metadata=METADATA,
                       stored_secret=lambda key_id: SecretStr("stored"))
    (call,) = plan.calls
    assert (call.method, call.path) == ("PUT", "/_security/cross_cluster/api_key/VuaCfGcBCdbkQm-e5aOx")
    assert call.body == {"access": wanted, "metadata": METADATA}


def test_plan_recreates_a_key_whose_secret_was_not_stored():
    existing = ak.usable_keys({"api_keys": [get_key()]}, NAME, NOW)
    plan = ak.plan_key(existing, name=NAME, access=ACCESS, metadata=METADATA, stored_secret=lambda _: None)
    assert plan.action == "recreate"
    assert [(c.method, c.path, c.body) for c in plan.calls] == [
        ("DELETE", "/_security/api_key", {"ids": ["VuaCfGcBCdbkQm-e5aOx"]}),
        ("POST", "/_security/cross_cluster/api_key", {"name": NAME, "access": ACCESS, "metadata": METADATA})]


CREATED = {"id": "VuaCfGcBCdbkQm-e5aOx", "name": NAME, "api_key": "ui2lp2axTNmsyakw9tvNnw",
           "encoded": "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="}


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def wire_log():
    """elastic_transport.debug_logging(): whole requests and responses on the node logger."""
    wire, handler = logging.getLogger("elastic_transport.node"), Collect()
    wire.addHandler(handler)
    wire.setLevel(logging.DEBUG)
    yield handler.messages
    wire.removeHandler(handler)
    wire.setLevel(logging.NOTSET)


def test_create_returns_the_encoded_key_as_a_secret_that_never_prints(scripted, wire_log):
    scripted.on("GET", "/_security/api_key", {"api_keys": []})
    scripted.on("POST", "/_security/cross_cluster/api_key", CREATED)
    key = ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                      run_id="r1", access=ACCESS, stored_secret=lambda _: None)
    assert (key.id, key.outcome) == ("VuaCfGcBCdbkQm-e5aOx", "created")
    assert key.encoded.get_secret_value() == base64.b64encode(
        f"{CREATED['id']}:{CREATED['api_key']}".encode()).decode()
    for text in (repr(key), str(key), str(key.outcomes)):
        assert CREATED["api_key"] not in text and CREATED["encoded"] not in text
    assert scripted.seen[0].params == {"name": NAME, "owner": "true"}
    assert scripted.writes() == [("POST", "/_security/cross_cluster/api_key",
                                  {"name": NAME, "access": ACCESS, "metadata": METADATA})]
    # elastic-transport's wire log (DEBUG, whole bodies) stayed quiet for the create
    assert any("/_security/api_key" in m for m in wire_log)  # the GET was logged, bodies and all
    assert all(CREATED["api_key"] not in m for m in wire_log)
    assert logging.getLogger("elastic_transport.node").level == logging.DEBUG  # and the level is back
    # the run's redactor now knows it: a log line that carries it is scrubbed
    record = logging.LogRecord("esremote", logging.INFO, __file__, 1, "header %s", (CREATED["encoded"],), None)
    RedactingFilter(default_redactor).filter(record)
    assert CREATED["encoded"] not in record.getMessage()


def test_a_reused_key_with_equal_access_sends_no_write(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": [get_key()]})
    key = ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                      run_id="r1", access=ACCESS, stored_secret={"VuaCfGcBCdbkQm-e5aOx": "stored"}.get)
    assert (key.outcome, key.encoded.get_secret_value()) == ("unchanged", "stored")
    assert isinstance(key.encoded, SecretStr) and "stored" not in repr(key)
    assert scripted.writes() == []


def test_an_update_elasticsearch_calls_a_no_op_is_unchanged(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": [get_key(metadata={"esremote": {"run_id": "r0"}})]})
    scripted.on("PUT", "/_security/cross_cluster/api_key/VuaCfGcBCdbkQm-e5aOx", {"updated": False})
    key = ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                      run_id="r1", access=ACCESS, stored_secret=lambda _: SecretStr("s"))
    assert key.outcome == "unchanged" and key.outcomes[0].detail == "Elasticsearch: no change"
    scripted.on("PUT", "/_security/cross_cluster/api_key/VuaCfGcBCdbkQm-e5aOx", {"updated": True})
    key = ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                      run_id="r1", access=ACCESS, stored_secret=lambda _: SecretStr("s"))
    assert key.outcome == "updated"


def test_a_lost_secret_invalidates_the_old_key_and_creates_a_new_one(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": [get_key("old-key")]})
    scripted.on("DELETE", "/_security/api_key", {"invalidated_api_keys": ["old-key"],
                                                 "previously_invalidated_api_keys": [], "error_count": 0})
    scripted.on("POST", "/_security/cross_cluster/api_key", CREATED)
    key = ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                      run_id="r1", access=ACCESS, stored_secret=lambda _: None)
    assert key.outcome == "recreated" and key.id == CREATED["id"]
    assert [(o.target, o.status) for o in key.outcomes] == [("API key old-key", "changed"),
                                                             (f"API key {NAME}", "changed")]
    assert [w[0] for w in scripted.writes()] == ["DELETE", "POST"]


def test_the_licence_refusal_says_what_to_do(scripted):
    scripted.on("GET", "/_security/api_key", {"api_keys": []})
    reason = "current license is non-compliant for [advanced-remote-cluster-security]"
    scripted.on("POST", "/_security/cross_cluster/api_key",
                {"error": {"root_cause": [{"type": "security_exception", "reason": reason,
                                           "license.expired.feature": "advanced-remote-cluster-security"}],
                           "type": "security_exception", "reason": reason,
                           "license.expired.feature": "advanced-remote-cluster-security"}, "status": 403}, 403)
    with pytest.raises(PreconditionError, match=r"cluster remote: the licence does not allow cross-cluster "
                                                r"API keys .*start a trial .*enterprise licence"):
        ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                    run_id="r1", access=ACCESS, stored_secret=lambda _: None)


def test_an_impossible_access_is_refused_before_any_request(scripted):
    with pytest.raises(PreconditionError, match="must specify non-empty access"):
        ak.ensure_cross_cluster_key(scripted.client(), "remote", local_cluster="local", alias="my_remote",
                                    run_id="r1", access={}, stored_secret=lambda _: None)
    assert scripted.seen == []


def test_invalidate_key_reports_whether_it_did_anything(scripted):
    scripted.on("DELETE", "/_security/api_key", {"invalidated_api_keys": ["k"], "error_count": 0})
    assert ak.invalidate_key(scripted.client(), "remote", "k").status == "changed"
    scripted.on("DELETE", "/_security/api_key", {"invalidated_api_keys": [],
                                                 "previously_invalidated_api_keys": ["k"], "error_count": 0})
    assert ak.invalidate_key(scripted.client(), "remote", "k").status == "unchanged"


@pytest.mark.lab
def test_lab_key_lifecycle_create_reuse_update_recreate(rest_lab):
    from elasticsearch import AuthenticationException, Elasticsearch  # noqa: PLC0415

    remote = rest_lab.es("remote")
    stored: dict[str, SecretStr] = {}
    ensure = lambda access: ak.ensure_cross_cluster_key(  # noqa: E731
        remote, "remote", local_cluster="lab-test", alias="my_remote", run_id="r1", access=access,
        stored_secret=stored.get)
    search = {"search": [{"names": ["leader-*"]}]}
    created = ensure(search)
    stored[created.id] = created.encoded
    try:
        assert created.outcome == "created"
        # a cross-cluster key is refused for REST, as Elasticsearch refuses it
        with pytest.raises(AuthenticationException) as refused:
            info = rest_lab.cluster("remote")
            Elasticsearch(info["urls"], ca_certs=info["ca_cert"], request_timeout=30,
                          api_key=created.encoded.get_secret_value()).security.authenticate()
        assert "has type [cross_cluster]" in str(refused.value.body)
        assert ensure(search).outcome == "unchanged"
        assert (ensure({**search, "replication": [{"names": ["leader-*"]}]}).outcome, created.id) == (
            "updated", created.id)
        stored.clear()
        recreated = ensure(search)
        assert recreated.outcome == "recreated" and recreated.id != created.id
        keys = remote.security.get_api_key(name=ak.key_name("lab-test", "my_remote")).body["api_keys"]
        assert {k["id"]: k["invalidated"] for k in keys} == {created.id: True, recreated.id: False}
    finally:
        for key in remote.security.get_api_key(name=ak.key_name("lab-test", "my_remote")).body["api_keys"]:
            ak.invalidate_key(remote, "remote", key["id"])
