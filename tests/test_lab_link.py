"""Remote connections for real: both security models, proxy and sniff, `_remote/info` as
Elasticsearch renders it (es-facts §2), settings layers and credential reloads (es-facts §1)."""

from __future__ import annotations

from tests.test_lab_link_harness import (  # noqa: F401  (lab is a fixture)
    connect_proxy, connect_sniff, lab, remote_info, wait_for)


def _two_clusters(lab, *, remote_nodes=1, local_version="8.17.0", remote_version="8.17.0", credentials=None):
    remote = lab.cluster("remote", version=remote_version)
    for _ in range(remote_nodes):
        remote.add_node(remote_cluster_server=True)
    for node in remote.nodes:
        node.start(remote=False)
    local = lab.cluster("local", version=local_version)
    secure = {"cluster.remote.my_remote.credentials": credentials} if credentials else {}
    local.add_node(secure=secure).start()
    return local, remote


def test_certificate_model_proxy_connects_all_sockets(lab):
    local, remote = _two_clusters(lab)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=3)

    info = wait_for(lambda: (i := remote_info(local.node))["my_remote"]["num_proxy_sockets_connected"] == 3 and i,
                    what="3 proxy sockets")
    assert list(info["my_remote"].items()) == [
        ("connected", True), ("mode", "proxy"), ("proxy_address", f"{remote.node.config.ip}:9300"),
        ("server_name", ""), ("num_proxy_sockets_connected", 3), ("max_proxy_socket_connections", 3),
        ("initial_connect_timeout", "30s"), ("skip_unavailable", True)]


def test_api_key_model_proxy_reports_redacted_credentials(lab):
    remote = lab.cluster("remote")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    encoded = remote.api_key("ccs")
    local = lab.cluster("local", version="8.14.3")
    local.add_node(secure={"cluster.remote.my_remote.credentials": encoded}).start()
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=2)

    info = wait_for(lambda: (i := remote_info(local.node))["my_remote"]["num_proxy_sockets_connected"] == 2 and i,
                    what="2 sockets")
    assert info == {"my_remote": {
        "connected": True, "mode": "proxy", "proxy_address": f"{remote.node.config.ip}:9443", "server_name": "",
        "num_proxy_sockets_connected": 2, "max_proxy_socket_connections": 2, "initial_connect_timeout": "30s",
        "skip_unavailable": False, "cluster_credentials": "::es_redacted::"}}
    assert list(info["my_remote"])[-1] == "cluster_credentials"


def test_certificate_model_sniff_discovers_transport_addresses(lab):
    local, remote = _two_clusters(lab, remote_nodes=3)
    seed = f"{remote.nodes[1].config.ip}:9300"
    connect_sniff(local, "my_remote", [seed], node_connections=2)

    info = wait_for(lambda: (i := remote_info(local.node))["my_remote"]["num_nodes_connected"] == 2 and i,
                    what="2 sniffed nodes")
    assert list(info["my_remote"].items()) == [
        ("connected", True), ("mode", "sniff"), ("seeds", [seed]), ("num_nodes_connected", 2),
        ("max_connections_per_cluster", 2), ("initial_connect_timeout", "30s"), ("skip_unavailable", True)]
    cluster = local.node.remote.cluster("my_remote")
    addresses = sorted(c.address for c in cluster.live())
    assert addresses == sorted(f"{n.config.ip}:9300" for n in remote.nodes[:2])


def test_api_key_model_sniff_discovers_remote_cluster_addresses(lab):
    remote = lab.cluster("remote")
    for _ in range(2):
        remote.add_node(remote_cluster_server=True)
    remote.add_node(remote_cluster_server=False)  # no 9443: not offered to API-key clients
    for node in remote.nodes:
        node.start(remote=False)
    local = lab.cluster("local")
    local.add_node(secure={"cluster.remote.my_remote.credentials": remote.api_key("ccs")}).start()
    connect_sniff(local, "my_remote", [f"{remote.nodes[0].config.ip}:9443"], node_connections=3)

    wait_for(lambda: remote_info(local.node)["my_remote"]["num_nodes_connected"] == 2, what="2 nodes")
    cluster = local.node.remote.cluster("my_remote")
    assert sorted(c.address for c in cluster.live()) == sorted(f"{n.config.ip}:9443" for n in remote.nodes[:2])
    info = remote_info(local.node)["my_remote"]
    assert info["max_connections_per_cluster"] == 3 and info["cluster_credentials"] == "::es_redacted::"


def test_settings_layers_transient_wins_and_removal_disconnects(lab):
    local, remote = _two_clusters(lab, remote_nodes=2)
    first, second = (f"{n.config.ip}:9300" for n in remote.nodes)
    connect_proxy(local, "my_remote", first, sockets=1, layer="persistent")
    connect_proxy(local, "my_remote", second, sockets=1, layer="transient")
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")
    assert remote_info(local.node)["my_remote"]["proxy_address"] == second
    assert [c.address for c in local.node.remote.cluster("my_remote").live()] == [second]

    local.put_settings(transient={"cluster.remote.my_remote.mode": None, "cluster.remote.my_remote.proxy_address": None,
                                  "cluster.remote.my_remote.proxy_socket_connections": None})
    wait_for(lambda: remote_info(local.node)["my_remote"]["proxy_address"] == first, what="persistent layer")
    local.put_settings(persistent={"cluster.remote.my_remote.mode": None, "cluster.remote.my_remote.proxy_address": None,
                                   "cluster.remote.my_remote.proxy_socket_connections": None})
    assert remote_info(local.node) == {}


def test_alias_in_elasticsearch_yml_is_used_below_cluster_settings(lab):
    remote = lab.cluster("remote")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    local = lab.cluster("local")
    address = f"{remote.node.config.ip}:9300"
    local.add_node(settings={"cluster.remote.my_remote.mode": "proxy",
                             "cluster.remote.my_remote.proxy_address": address,
                             "cluster.remote.my_remote.proxy_socket_connections": 1,
                             "cluster.remote.my_remote.skip_unavailable": False}).start()
    wait_for(lambda: remote_info(local.node).get("my_remote", {}).get("connected"), what="yml alias")
    assert remote_info(local.node)["my_remote"]["skip_unavailable"] is False
    local.put_settings(persistent={"cluster.remote.my_remote.skip_unavailable": "true"})
    assert remote_info(local.node)["my_remote"]["skip_unavailable"] is True
    # skip_unavailable applies in place: the same sockets stay
    assert remote_info(local.node)["my_remote"]["num_proxy_sockets_connected"] == 1


def test_credentials_added_by_reload_switch_the_model(lab):
    remote = lab.cluster("remote")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    local = lab.cluster("local", version="8.13.0")
    node = local.add_node().start()
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    first = remote.api_key("first")
    node.config.secure["cluster.remote.my_remote.credentials"] = first  # what a reload does
    node.remote.settings_changed()
    wait_for(lambda: remote_info(node)["my_remote"].get("cluster_credentials") and remote_info(node)["my_remote"]["connected"],
             what="API-key model after reload")
    sockets = node.remote.cluster("my_remote").live()

    node.config.secure["cluster.remote.my_remote.credentials"] = remote.api_key("second")
    node.remote.settings_changed()
    assert node.remote.cluster("my_remote").live() == sockets  # a changed value: no rebuild
    assert node.remote.credentials("my_remote") != first

    del node.config.secure["cluster.remote.my_remote.credentials"]
    node.remote.settings_changed()
    assert "cluster_credentials" not in remote_info(node)["my_remote"]


def test_before_8_13_a_reload_does_not_change_credentials(lab):
    remote = lab.cluster("remote")
    remote.add_node(remote_cluster_server=True).start(remote=False)
    local = lab.cluster("local", version="8.12.2")
    node = local.add_node().start()
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    node.config.secure["cluster.remote.my_remote.credentials"] = remote.api_key("late")
    node.remote.settings_changed()
    assert "cluster_credentials" not in remote_info(node)["my_remote"]


def test_sniff_mode_moves_to_another_node_when_its_node_stops(lab):
    local, remote = _two_clusters(lab, remote_nodes=2)
    seeds = [f"{n.config.ip}:9300" for n in remote.nodes]
    connect_sniff(local, "my_remote", seeds, node_connections=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")
    cluster = local.node.remote.cluster("my_remote")
    first = cluster.live()[0].address
    stopping = next(n for n in remote.nodes if f"{n.config.ip}:9300" == first)
    stopping.stop()
    survivor = next(s for s in seeds if s != first)
    wait_for(lambda: [c.address for c in cluster.live()] == [survivor], what="re-sniffed to the other node")
    assert remote_info(local.node)["my_remote"]["num_nodes_connected"] == 1
