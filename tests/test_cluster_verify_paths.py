"""Verification paths that need the cluster's answers held still, served by scripted HTTP servers
(`ScriptedES`, real elasticsearch-py over real HTTP), one server per local node: each node answers
`_remote/info` and the cross-cluster requests it coordinates for itself (es-facts §12), so a node
whose link is broken must fail the verification by name while its neighbours pass. Also a follower
whose stats say "caught up" but which reads nothing any more, next to one that reads."""

from __future__ import annotations

import pytest

from esremote.inventory import Inventory
from esremote.verify import VerificationError, node_url, verify_api_key_link, verify_certificate_link
from tests.fixtures.scripted_es import ScriptedES

ALIAS = "my_remote"
KEY_ID = "agZXJocBmA2beJfq2yKu"
RESOLVE = f"/_resolve/cluster/{ALIAS}:*"
SEARCH = f"/{ALIAS}:*/_search"
ALL_ROLES = ["data", "ingest", "master", "remote_cluster_client", "transform"]
UNROUTABLE = "192.0.2.10"  # TEST-NET-1: a node esremote must not ask (or must ask elsewhere)


def remote_info(*, credentials: bool = True, connected: bool = True) -> dict:
    info = {"connected": connected, "mode": "proxy", "proxy_address": "10.0.0.1:9443", "server_name": "",
            "num_proxy_sockets_connected": 18 if connected else 0, "max_proxy_socket_connections": 18,
            "initial_connect_timeout": "30s", "skip_unavailable": True}
    return {ALIAS: {**info, "cluster_credentials": "::es_redacted::"} if credentials else info}


def node_entry(name: str, publish: str, version: str = "8.15.0", roles: list[str] = ALL_ROLES) -> dict:
    return {"name": name, "version": version, "roles": roles, "http": {"publish_address": publish}}


def resolved() -> dict:
    return {ALIAS: {"connected": True, "skip_unavailable": True, "version": {"number": "8.15.0"}}}


def search_answer() -> dict:
    return {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "_clusters": {"total": 1, "successful": 1, "skipped": 0, "running": 0, "partial": 0, "failed": 0,
                          "details": {ALIAS: {"status": "successful", "indices": "*", "timed_out": False}}},
            "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}


def unable_to_authenticate(action: str) -> str:
    return f"unable to authenticate user [{KEY_ID}] for action [{action}]"


def make_inventory(tmp_path, urls: list[str], nodes: list[dict]) -> Inventory:
    secret = tmp_path / "password.secret"
    secret.write_text("x\n")
    cluster = lambda role, urls, nodes: {"role": role, "urls": urls, "nodes": nodes,  # noqa: E731
                                         "auth": {"username": "elastic", "password": {"file": str(secret)}}}
    return Inventory.model_validate({
        "clusters": {"local": cluster("local", urls, nodes),
                     "remote": cluster("remote", ["https://127.0.0.1:9200"], [{"name": "remote-0",
                                                                                "address": "127.0.0.1"}])},
        "aliases": {ALIAS: {"local": "local", "remote": "remote"}}})


# ------------------------------------------------------------------------------------ every node


@pytest.fixture
def two_nodes(tmp_path):
    """local-1 and local-2, each its own server (answers scripted by `answer`), and data-1 without the
    remote_cluster_client role. The inventory lists local-1 under a cluster URL, and local-2 as
    `localhost` (not the published host) with no URL of its own: esremote must ask it at localhost,
    on its published port."""
    one, two = ScriptedES(), ScriptedES()
    inventory = make_inventory(tmp_path, [one.url], [{"name": "local-1", "address": "127.0.0.1"},
                                                      {"name": "local-2", "address": "localhost"}])
    yield one, two, inventory
    one.close()
    two.close()


def answer(one: ScriptedES, two: ScriptedES, *, version: str = "8.15.0", roles: list[str] = ALL_ROLES,
           info: tuple[dict, dict] = (remote_info(), remote_info()),
           request: tuple[str, str] = ("GET", RESOLVE), refusal: str | None = None) -> None:
    """Script both nodes: `_nodes/http` (on local-1), each node's `_remote/info`, and its own
    cross-cluster request, which local-2 refuses with `refusal` when given."""
    port_two = two.server.server_address[1]
    nodes = {"n1": node_entry("local-1", one.url.removeprefix("http://"), version, roles),
             "n2": node_entry("local-2", f"{UNROUTABLE}:{port_two}", version, roles),
             "n3": node_entry("data-1", f"{UNROUTABLE}:9200", version, ["data", "ingest"])}
    one.on("GET", "/_nodes/http", {"_nodes": {"total": 3, "successful": 3, "failed": 0}, "nodes": nodes})
    method, path = request
    for server, node_info in zip((one, two), info):
        server.on("GET", "/_remote/info", node_info)
        server.on(method, path, search_answer() if path.endswith("/_search") else resolved())
    if refusal is not None:
        two.script.pop((method, path))
        two.error(method, path, 401, "security_exception", refusal)


def test_every_node_with_the_role_is_asked_at_its_own_address(two_nodes):
    one, two, inventory = two_nodes
    answer(one, two)
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=5)
    assert report.ok
    assert [(c.name, str(c).split(": ")[1]) for c in report.checks] == [
        ("node[data-1]", "skipped"),
        ("remote_info[local-1]", "ok"), (f"resolve_cluster[local-1] {ALIAS}:*", "ok"),
        ("remote_info[local-2]", "ok"), (f"resolve_cluster[local-2] {ALIAS}:*", "ok")]
    assert report.skipped_nodes == ["data-1"] and "no remote_cluster_client role" in report.checks[0].detail
    for server in (one, two):
        assert [s.path for s in server.requests()].count(RESOLVE) == 1
    assert report.to_dict()["checks"][1]["node"] == "local-1"


def test_a_node_connected_without_credentials_fails_by_name(two_nodes):
    one, two, inventory = two_nodes
    answer(one, two, info=(remote_info(), remote_info(credentials=False)))  # keystore not reloaded on local-2
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=1, index_patterns=["logs-*"],
                                 check=False)
    (failed,) = report.failed
    assert failed.name == "remote_info[local-2]" and failed.node == "local-2"
    assert "connected without an API key" in failed.detail and failed.cause.key == "no_api_key"
    assert report.failed_nodes == ["local-2"]
    assert f"resolve_cluster[local-2] {ALIAS}:*" not in [c.name for c in report.checks]  # no link to ask through
    assert not [s for s in one.requests() if s.path.endswith("/_search")]  # cluster-wide checks wait for every node
    with pytest.raises(VerificationError, match=r"failed on node\(s\) local-2: remote_info\[local-2\]: FAILED"):
        report.raise_if_failed()


def test_the_verify_command_output_says_which_node_failed(two_nodes):
    from esremote.tasks.verification import AliasVerification  # noqa: PLC0415 (Prefect-side module)

    one, two, inventory = two_nodes
    answer(one, two, info=(remote_info(), remote_info(credentials=False)))
    text = AliasVerification(ALIAS, verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=1,
                                                        check=False)).to_text().splitlines()
    assert text[0] == f"alias {ALIAS}: FAILED on node(s) local-2 (api-key model)"
    assert [line.split(": ")[:2] for line in text[1:]] == [
        ["  node[data-1]", "skipped"], ["  remote_info[local-1]", "ok"], [f"  resolve_cluster[local-1] {ALIAS}:*", "ok"],
        ["  remote_info[local-2]", "FAILED"]]


@pytest.mark.parametrize("version, request_, action, request_check", [
    ("8.15.0", ("GET", RESOLVE), "indices:admin/resolve/cluster", f"resolve_cluster[local-2] {ALIAS}:*"),
    # no _resolve/cluster below 8.13: a search (size 0) on the work's first pattern
    ("8.12.2", ("POST", f"/{ALIAS}:logs-*/_search"), "indices:data/read/search", f"search[local-2] {ALIAS}:logs-*"),
])
def test_a_node_that_cannot_authenticate_fails_by_name_with_the_invalid_key_cause(two_nodes, version, request_,
                                                                                   action, request_check):
    """Its keystore holds another key value: connected with credentials, yet every request it
    coordinates is refused. Only a request sent to that node shows it."""
    one, two, inventory = two_nodes
    answer(one, two, version=version, request=request_, refusal=unable_to_authenticate(action))
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=5, index_patterns=["logs-*"],
                                 check=False)
    assert [c.name for c in report.checks if c.node == "local-2"] == ["remote_info[local-2]", request_check]
    (failed,) = report.failed
    assert failed.name == request_check and failed.cause.key == "invalid_key"
    assert failed.detail.startswith("cannot authenticate through the link") and KEY_ID in failed.detail
    assert [c.ok for c in report.checks if c.node == "local-1"] == [True, True]
    if version < "8.13":
        (search,) = [s for s in two.requests() if s.path == request_[1]]
        assert search.body["size"] == 0


def test_the_certificate_model_is_checked_on_every_node_too(two_nodes):
    one, two, inventory = two_nodes
    # credentials left in local-2's keystore keep it on the API-key model
    answer(one, two, info=(remote_info(credentials=False), remote_info(credentials=True)))
    report = verify_certificate_link(inventory, ALIAS, es=one.client(), connect_timeout=1, check=False)
    assert [c.name for c in report.checks if c.ok and not c.skipped] == [
        "remote_info[local-1]", f"resolve_cluster[local-1] {ALIAS}:*"]
    (failed,) = report.failed
    assert failed.name == "remote_info[local-2]" and failed.cause.key == "credentials_left"


def test_an_inventory_node_missing_from_the_cluster_fails(two_nodes, tmp_path):
    one, two, _ = two_nodes
    answer(one, two)
    inventory = make_inventory(tmp_path, [one.url], [{"name": "local-1", "address": "127.0.0.1"},
                                                      {"name": "local-2", "address": "localhost"},
                                                      {"name": "local-3", "address": "127.0.0.3"}])
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=5, check=False)
    (failed,) = report.failed
    assert failed.name == "node[local-3]" and "not in the cluster" in failed.detail


def test_a_node_that_does_not_answer_fails_by_name(two_nodes):
    one, two, inventory = two_nodes
    answer(one, two)
    two.close()
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=1, check=False)
    (failed,) = report.failed
    assert failed.name == "remote_info[local-2]" and "cannot ask node local-2 at http://localhost:" in failed.detail


def test_no_node_with_the_role_fails(two_nodes):
    one, two, inventory = two_nodes
    answer(one, two, roles=["data"])
    report = verify_api_key_link(inventory, ALIAS, es=one.client(), connect_timeout=5, check=False)
    assert report.skipped_nodes == ["data-1", "local-1", "local-2"]
    assert [c.name for c in report.failed] == ["remote_cluster_client"]


@pytest.mark.parametrize("publish, listed, expected", [
    ("10.0.0.7:9201", None, "https://10.0.0.7:9201"),
    ("es-7.example.com/10.0.0.7:9201", None, "https://es-7.example.com:9201"),  # the node's name, for the SAN
    ("[::1]:9201", None, "https://[::1]:9201"),
    ("10.0.0.7:9201", "es-7.example.com", "https://es-7.example.com:9201"),  # inventory host, published port
    ("10.0.0.7:9201", "es-1.example.com", "https://es-1.example.com:9200"),  # a cluster URL names it
    (None, "es-7.example.com", "https://es-7.example.com:9200"),
    (None, None, None),
])
def test_the_node_url_prefers_the_inventory(tmp_path, publish, listed, expected):
    nodes = [{"name": "es-1", "address": "es-1.example.com"}]
    if listed and listed != "es-1.example.com":
        nodes.append({"name": "es-7", "address": listed})
    inventory = make_inventory(tmp_path, ["https://es-1.example.com:9200"], nodes)
    name = "es-1" if listed == "es-1.example.com" else "es-7"
    assert node_url(inventory.cluster("local"), name, publish) == expected


# ------------------------------------------------------------------------------------- followers


@pytest.fixture
def scripted():
    server = ScriptedES()
    server.on("GET", "/_remote/info", remote_info())
    server.on("GET", "/_nodes/http", {"nodes": {"n1": node_entry("local-0", server.url.removeprefix("http://"),
                                                                 version="8.12.2")}})  # no resolve
    server.on("POST", SEARCH, search_answer())
    yield server
    server.close()


@pytest.fixture
def inventory(tmp_path, scripted) -> Inventory:
    return make_inventory(tmp_path, [scripted.url], [{"name": "local-0", "address": "127.0.0.1"}])


def follow_stats(checkpoint: int, reads: int) -> dict:
    return {"indices": [{"index": "follower-logs", "total_global_checkpoint_lag": 0, "shards": [{
        "remote_cluster": ALIAS, "leader_index": "leader-logs", "follower_index": "follower-logs", "shard_id": 0,
        "leader_global_checkpoint": checkpoint, "follower_global_checkpoint": checkpoint,
        "successful_read_requests": reads, "failed_read_requests": 0, "read_exceptions": []}]}]}


def test_a_caught_up_follower_that_reads_nothing_is_not_progress(scripted, inventory):
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))  # the same answer every time
    report = verify_api_key_link(inventory, ALIAS, es=scripted.client(), followers=["follower-logs"],
                                 follower_timeout=1.5, check=False)
    (failed,) = report.failed
    assert failed.name == "follower follower-logs"
    assert "no progress in 1.5s (shard 0: follower 41 / leader 41)" in failed.detail


def test_a_caught_up_follower_whose_reads_succeed_passes(scripted, inventory):
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 7))
    scripted.on("GET", "/follower-logs/_ccr/stats", follow_stats(41, 8))  # a long poll came back, empty
    report = verify_api_key_link(inventory, ALIAS, es=scripted.client(), followers=["follower-logs"],
                                 follower_timeout=10)
    assert report.ok and report.checks[-1].detail == "caught up (lag 0)"
    # below 8.13 the node's own request is a search (size 0) through the alias
    assert [c.name for c in report.checks] == ["remote_info[local-0]", f"search[local-0] {ALIAS}:*",
                                               "follower follower-logs"]
    (search,) = [s for s in scripted.requests() if s.path == SEARCH]
    assert search.body["size"] == 0
