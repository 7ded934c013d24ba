"""Lab security against real nodes: users, roles with remote_indices/remote_cluster by version,
REST and cross-cluster API keys (derived role descriptor, licence), authorization messages, and
reload_secure_settings across the nodes of a cluster."""

import base64

import pytest

from esremote import keystore
from esremote.lab import errors
from esremote.lab.rest.api.security_api import cross_cluster_descriptor, validate_role
from tests.lab_inprocess import Client, build_home, running_node

IP1, IP2 = "127.0.203.1", "127.0.203.2"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes of one 8.15.0 trial cluster sharing their state."""
    root = tmp_path_factory.mktemp("sec")
    homes = [build_home(root, name=f"node-{i}", ip=ip, version="8.15.0") for i, ip in enumerate((IP1, IP2))]
    with running_node(homes[0]) as ctx0, running_node(homes[1]) as ctx1:
        yield homes, [ctx0, ctx1]


@pytest.fixture
def es(cluster):
    return Client(cluster[0][0])


def reason(body):
    return body["error"]["reason"]


def make_user(es, name, cluster_privileges, **role):
    assert es.put(f"/_security/role/{name}-role", {"cluster": cluster_privileges, **role})[0] == 200
    assert es.put(f"/_security/user/{name}", {"password": "user-password", "roles": [f"{name}-role"]})[0] == 200
    return es.as_user(name, "user-password")


# --------------------------------------------------------------------------- users and roles

def test_users(es):
    status, body, _ = es.put("/_security/user/alice", {"password": "short", "roles": []})
    assert status == 400 and reason(body) == "Validation Failed: 1: passwords must be at least [6] characters long;"
    assert es.put("/_security/user/alice", {"password": "alice-password", "roles": ["viewer"]})[1] == {"created": True}
    assert es.put("/_security/user/alice", {"roles": ["viewer"], "full_name": "Alice"})[1] == {"created": False}
    assert es.get("/_security/user/alice")[1]["alice"]["full_name"] == "Alice"
    assert es.get("/_security/user/nobody")[:2] == (404, {})
    me = es.as_user("alice", "alice-password").get("/_security/_authenticate")[1]
    assert me["username"] == "alice" and me["authentication_realm"] == {"name": "default_native", "type": "native"}


def test_role_with_remote_indices_renders_like_elasticsearch(es):
    role = {"remote_indices": [{"clusters": ["my_remote"], "names": ["target-index"],
                                "privileges": ["read", "read_cross_cluster", "view_index_metadata"]}],
            "remote_cluster": [{"clusters": ["my_remote"], "privileges": ["monitor_enrich"]}]}
    assert es.put("/_security/role/remote-search", role)[1] == {"role": {"created": True}}
    assert es.put("/_security/role/remote-search", role)[1] == {"role": {"created": False}}
    got = es.get("/_security/role/remote-search")[1]["remote-search"]
    assert list(got) == ["cluster", "indices", "applications", "run_as", "metadata", "transient_metadata",
                         "remote_indices", "remote_cluster"]
    assert got["remote_indices"] == [{"names": ["target-index"], "privileges": ["read", "read_cross_cluster",
                                      "view_index_metadata"], "allow_restricted_indices": False, "clusters": ["my_remote"]}]
    assert es.get("/_security/role/no-such-role")[:2] == (404, {})


def test_role_validation_messages(es):
    status, body, _ = es.put("/_security/role/bad", {"remote_indices": [{"names": ["x"], "privileges": ["read"]}]})
    assert (status, body["error"]["type"]) == (400, "parse_exception")
    assert reason(body) == "failed to parse remote indices privileges for role [bad]. missing required [clusters] field"
    status, body, _ = es.put("/_security/role/bad", {"remote_indices": [{"clusters": [""], "names": ["x"],
                                                                        "privileges": ["read"]}]})
    assert status == 400 and "remote index cluster alias cannot be an empty string" in reason(body)
    status, body, _ = es.put("/_security/role/bad", {"remote_cluster": [{"clusters": ["a"], "privileges": ["monitor_stats"]}]})
    assert reason(body) == ("Invalid remote_cluster permissions found. Please remove the following: [monitor_stats] "
                            "Only [monitor_enrich] are allowed")


@pytest.mark.parametrize("version, accepted", [((8, 14, 3), False), ((8, 15, 0), True)])
def test_remote_cluster_field_arrives_in_8_15(version, accepted):
    body = {"remote_cluster": [{"clusters": ["a"], "privileges": ["monitor_enrich"]}]}
    if accepted:
        assert validate_role("r", body, version)["remote_cluster"] == [{"privileges": ["monitor_enrich"], "clusters": ["a"]}]
    else:
        with pytest.raises(errors.ParseError) as info:
            validate_role("r", body, version)
        assert info.value.reason == "failed to parse role [r]. unexpected field [remote_cluster]"
    stats = {"remote_cluster": [{"clusters": ["a"], "privileges": ["monitor_stats"]}]}
    assert validate_role("r", stats, (8, 17, 0))["remote_cluster"][0]["privileges"] == ["monitor_stats"]


def test_unauthorized_action_message(es):
    bob = make_user(es, "bob", [])
    status, body, _ = bob.get("/_cluster/health")
    assert status == 403 and reason(body) == (
        "action [cluster:monitor/health] is unauthorized for user [bob] with effective roles [bob-role], this action "
        "is granted by the cluster privileges [monitor,manage,all]")
    status, body, _ = bob.post("/secret-idx/_search", {})
    assert status == 404  # a missing index is reported before authorization of the search
    es.put("/secret-idx")
    status, body, _ = bob.post("/secret-idx/_search", {})
    assert status == 403 and reason(body).startswith("action [indices:data/read/search] is unauthorized for user [bob]")


# --------------------------------------------------------------------------------- API keys

def test_rest_api_key_authenticates(es):
    status, key, _ = es.post("/_security/api_key", {"name": "k1"})
    assert status == 200 and set(key) == {"id", "name", "api_key", "encoded"}
    assert base64.b64decode(key["encoded"]).decode() == f"{key['id']}:{key['api_key']}"
    me = es.with_api_key(key["encoded"]).get("/_security/_authenticate")[1]
    assert me["authentication_type"] == "api_key" and me["api_key"] == {"id": key["id"], "name": "k1"}
    invalidated = es.delete("/_security/api_key", {"ids": [key["id"]]})[1]
    assert invalidated["invalidated_api_keys"] == [key["id"]]
    status, body, _ = es.with_api_key(key["encoded"]).get("/")
    assert status == 401 and body["error"]["additional_unsuccessful_credentials"] == (
        f"API key: api key [{key['id']}] has been invalidated")
    assert body["error"]["header"]["WWW-Authenticate"][-1] == "ApiKey"
    wrong = base64.b64encode(f"{key['id']}:not-the-secret".encode()).decode()
    body = es.with_api_key(wrong).get("/")[1]
    assert body["error"]["additional_unsuccessful_credentials"] == f"API key: invalid credentials for API key [{key['id']}]"
    unknown = base64.b64encode(b"no-such-id:secret").decode()
    body = es.with_api_key(unknown).get("/")[1]
    assert body["error"]["additional_unsuccessful_credentials"] == "API key: unable to find apikey with id no-such-id"
    assert es.delete("/_security/api_key", {"ids": [key["id"]]})[1]["previously_invalidated_api_keys"] == [key["id"]]


def test_cross_cluster_api_key(cluster, es):
    access = {"search": [{"names": ["logs-*"]}], "replication": [{"names": ["archive"]}]}
    status, key, _ = es.post("/_security/cross_cluster/api_key", {"name": "cc", "access": access})
    assert status == 200 and "expiration" not in key
    assert base64.b64decode(key["encoded"]).decode() == f"{key['id']}:{key['api_key']}"
    got = es.get(f"/_security/api_key?id={key['id']}")[1]["api_keys"][0]
    assert got["type"] == "cross_cluster"
    assert got["role_descriptors"] == {"cross_cluster": {
        "cluster": ["cross_cluster_search", "monitor_enrich", "cross_cluster_replication"],
        "indices": [{"names": ["logs-*"], "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
                     "allow_restricted_indices": False},
                    {"names": ["archive"], "privileges": ["cross_cluster_replication", "cross_cluster_replication_internal"],
                     "allow_restricted_indices": False}],
        "applications": [], "run_as": [], "metadata": {}, "transient_metadata": {"enabled": True}}}
    assert got["access"] == {"search": [{"names": ["logs-*"], "allow_restricted_indices": False}],
                             "replication": [{"names": ["archive"], "allow_restricted_indices": False}]}
    status, body, _ = es.with_api_key(key["encoded"]).get("/")
    assert status == 401 and reason(body) == (f"authentication expected API key type of [rest], but API key "
                                              f"[{key['id']}] has type [cross_cluster]")
    ctx = cluster[1][0]
    assert ctx.security.authenticate_cross_cluster_key(key["encoded"])["id"] == key["id"]
    update = {"access": {"search": [{"names": ["logs-*"]}]}}
    assert es.put(f"/_security/cross_cluster/api_key/{key['id']}", update)[1] == {"updated": True}
    assert es.put(f"/_security/cross_cluster/api_key/{key['id']}", update)[1] == {"updated": False}
    rest = es.post("/_security/api_key", {"name": "plain"})[1]
    status, body, _ = es.put(f"/_security/cross_cluster/api_key/{rest['id']}", update)
    assert status == 400 and reason(body) == "cannot update API key of type [rest] while expected type is [cross_cluster]"
    with pytest.raises(errors.Unauthenticated) as wrong_type:
        ctx.security.authenticate_cross_cluster_key(rest["encoded"])
    assert wrong_type.value.reason == (f"authentication expected API key type of [cross_cluster], but API key "
                                       f"[{rest['id']}] has type [rest]")
    status, body, _ = es.with_api_key(rest["encoded"]).post("/_security/cross_cluster/api_key",
                                                            {"name": "x", "access": access})
    assert status == 400 and "An API key cannot be used to create a cross-cluster API key" in reason(body)


@pytest.mark.parametrize("access, message", [
    ({}, "must specify non-empty access for either [search] or [replication]"),
    ({"search": []}, "must specify non-empty access for either [search] or [replication]"),
    ({"replication": [{"names": ["a"], "query": {"match_all": {}}}]},
     "replication does not support document or field level security"),
    ({"search": [{"names": ["a"], "query": {"match_all": {}}}], "replication": [{"names": ["b"]}]},
     "search does not support document or field level security if replication is assigned"),
])
def test_cross_cluster_access_errors(es, access, message):
    status, body, _ = es.post("/_security/cross_cluster/api_key", {"name": "bad", "access": access})
    assert (status, body["error"]["type"], reason(body)) == (400, "illegal_argument_exception", message)


def test_derived_privileges_before_8_14():
    search_only = cross_cluster_descriptor({"search": [{"names": ["a"]}]}, (8, 13, 4))
    assert search_only["cluster"] == ["cross_cluster_search"]
    both = cross_cluster_descriptor({"search": [{"names": ["a"]}], "replication": [{"names": ["b"]}]}, (8, 10, 0))
    assert both["cluster"] == ["cross_cluster_search", "cross_cluster_replication"]
    dls = {"search": [{"names": ["a"], "query": {"match_all": {}}}], "replication": [{"names": ["b"]}]}
    assert cross_cluster_descriptor(dls, (8, 13, 0))["indices"][0]["query"] == {"match_all": {}}
    assert cross_cluster_descriptor({"replication": [{"names": ["b"]}]}, (8, 17, 0))["cluster"] == [
        "cross_cluster_replication"]


def test_cross_cluster_key_needs_an_enterprise_licence(tmp_path):
    home = build_home(tmp_path, ip="127.0.203.5", cluster="basic", license="basic",
                      yml={"xpack.license.self_generated.type": "basic"})
    with running_node(home):
        status, body, _ = Client(home).post("/_security/cross_cluster/api_key",
                                            {"name": "cc", "access": {"search": [{"names": ["a"]}]}})
    assert status == 403
    assert body["error"] == {"root_cause": [{"type": "security_exception",
                                             "reason": "current license is non-compliant for [advanced-remote-cluster-security]",
                                             "license.expired.feature": "advanced-remote-cluster-security"}],
                             "type": "security_exception",
                             "reason": "current license is non-compliant for [advanced-remote-cluster-security]",
                             "license.expired.feature": "advanced-remote-cluster-security"}


# ----------------------------------------------------------------------- reload secure settings

def add_to_keystore(home, name, value, password=""):
    path = home.path / "config" / keystore.KEYSTORE_FILENAME
    store = keystore.Keystore.load(path, password)
    store.set_string(name, value)
    store.save(path, password)


def test_reload_fans_out_to_every_node(cluster, es):
    homes, ctxs = cluster
    for home in homes:
        add_to_keystore(home, "cluster.remote.reload_me.credentials", "encoded-key")
    status, body, _ = es.post("/_nodes/reload_secure_settings", {})
    assert status == 200 and body["_nodes"] == {"total": 2, "successful": 2, "failed": 0}
    assert sorted(n["name"] for n in body["nodes"].values()) == ["node-0", "node-1"]
    assert all("reload_exception" not in n for n in body["nodes"].values())
    assert all(c.config.secure["cluster.remote.reload_me.credentials"] == "encoded-key" for c in ctxs)
    assert "Updated remote cluster credentials for clusters: [reload_me]" in homes[1].log.read_text()

    status, body, _ = es.post("/_nodes/reload_secure_settings", {"secure_settings_password": "wrong"})
    assert status == 200
    assert [n["reload_exception"] for n in body["nodes"].values()] == [
        {"type": "security_exception", "reason": "Provided keystore password was incorrect"}] * 2
    assert not list((homes[0].state_dir).glob(".reload-*.secret"))


def test_manage_only_reload_fails_until_8_15_1(es):
    operator = make_user(es, "operator", ["manage"])
    status, body, _ = operator.post("/_nodes/reload_secure_settings", {})
    assert status == 403 and reason(body) == (
        "action [cluster:admin/xpack/security/remote_cluster_credentials/reload] is unauthorized for user [operator] "
        "with effective roles [operator-role], this action is granted by the cluster privileges [manage_security,all]")


def test_credentials_are_not_reloadable_before_8_13(tmp_path):
    home = build_home(tmp_path, ip="127.0.203.6", cluster="old", version="8.12.2")
    with running_node(home) as ctx:
        add_to_keystore(home, "cluster.remote.late.credentials", "encoded-key")
        operator = make_user(Client(home), "op", ["manage"])
        status, body, _ = operator.post("/_nodes/reload_secure_settings", {})
        assert status == 200 and body["_nodes"]["successful"] == 1
        assert "cluster.remote.late.credentials" not in ctx.config.secure
