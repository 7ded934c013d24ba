"""What the lab's 9.x nodes add to remote connections (es-facts §12, "9.0"):

- a certificate-model connection writes the deprecation warning, key
  `remote_cluster_certificate_access-<alias>`, once, to `logs/<cluster>_deprecation.json`; an
  API-key connection and an 8.x node write none;
- a 9.x local node refuses a remote older than 8.18 in the transport handshake, with
  `TransportHandshaker`'s message, on the transport port and on the remote-cluster port alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esremote.lab.errors import ESError
from esremote.lab.node.deprecation import deprecation_log_path
from tests.test_lab_link_harness import connect_proxy, lab, remote_info, wait_for  # noqa: F401

CERT_MESSAGE = ("The remote cluster connection to [my_remote] is using the certificate-based security model. "
                "The certificate-based security model is deprecated and will be removed in a future major "
                "version. Migrate the remote cluster from the certificate-based to the API key-based security "
                "model.")


def _clusters(lab, local_version, remote_version, *, credentials=False):
    remote = lab.cluster("remote", version=remote_version)
    remote.add_node(remote_cluster_server=True).start(remote=False)
    local = lab.cluster("local", version=local_version)
    secure = {"cluster.remote.my_remote.credentials": remote.api_key("ccs")} if credentials else {}
    local.add_node(secure=secure).start()
    port = 9443 if credentials else 9300
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:{port}", sockets=3)
    return local, remote


def _deprecations(node) -> list[dict]:
    path = deprecation_log_path(node.config)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("local_version", ["9.0.0", "9.3.0"])
def test_a_certificate_model_connection_on_9x_writes_the_deprecation_warning_once(lab, local_version):
    local, _ = _clusters(lab, local_version, "8.18.0")
    wait_for(lambda: remote_info(local.node)["my_remote"]["num_proxy_sockets_connected"] == 3, what="3 sockets")

    [entry] = _deprecations(local.node)  # three sockets, one line: the key is rate-limited
    assert entry["event.code"] == "remote_cluster_certificate_access-my_remote"
    assert entry["message"] == CERT_MESSAGE
    assert entry["elasticsearch.event.category"] == "security"
    assert entry["log.level"] == "WARN" and entry["data_stream.dataset"] == "deprecation.elasticsearch"
    assert entry["elasticsearch.node.name"] == local.node.config.name
    assert deprecation_log_path(local.node.config).name == "local_deprecation.json"


@pytest.mark.parametrize(("local_version", "credentials"), [("8.19.0", False), ("9.1.0", True)])
def test_no_deprecation_warning_on_8x_or_with_an_api_key(lab, local_version, credentials):
    local, _ = _clusters(lab, local_version, "9.1.0", credentials=credentials)
    info = wait_for(lambda: (i := remote_info(local.node)["my_remote"])["num_proxy_sockets_connected"] == 3 and i,
                    what="3 sockets")
    assert ("cluster_credentials" in info) is credentials
    assert _deprecations(local.node) == []


@pytest.mark.parametrize("credentials", [False, True], ids=["transport-port", "remote-cluster-port"])
def test_a_9x_local_cluster_refuses_a_remote_older_than_8_18(lab, credentials):
    local, remote = _clusters(lab, "9.0.0", "8.17.0", credentials=credentials)
    start = "[WARN ][o.e.t.TransportHandshaker]"
    line = wait_for(lambda: next((ln for ln in local.node.log_text().splitlines() if start in ln), None),
                    what="the handshaker's warning")
    assert ("Rejecting unreadable transport handshake from remote node with version [8.17.0-8.17.2/8797002] "
            "received on [Netty4TcpChannel{localAddress=/") in line
    assert (f"remoteAddress=/{remote.node.config.ip}:{9443 if credentials else 9300}, profile="
            f"{'_remote_cluster' if credentials else 'default'}}}] since this node has version "
            "[9.0.0/9000009] which has an incompatible wire format.") in line
    assert "Caused by: java.lang.IllegalStateException: Rejecting unreadable transport handshake" in \
        local.node.log_text()
    assert remote_info(local.node)["my_remote"]["connected"] is False
    with pytest.raises(ESError) as refused:
        local.node.remote.search("my_remote", "*", {}, local.user("elastic"))
    assert refused.value.type == "connect_transport_exception"
    assert refused.value.reason.endswith("general node connection failure")
    assert _deprecations(local.node) == []  # no connection was made


def test_an_8_18_remote_is_read_by_9x_and_8x_reads_8_17(lab):
    """The floor is 9.x's: 8.19 still reads 8.17, and 9.3 reads 8.18."""
    local, _ = _clusters(lab, "9.3.0", "8.18.0")
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="9.3 -> 8.18")
    older = lab.cluster("old", version="8.17.0")
    older.add_node().start(remote=False)
    newer_8 = lab.cluster("new8", version="8.19.0")
    newer_8.add_node().start()
    connect_proxy(newer_8, "old", f"{older.node.config.ip}:9300", sockets=1)
    wait_for(lambda: remote_info(newer_8.node)["old"]["connected"], what="8.19 -> 8.17")
    assert "TransportHandshaker" not in newer_8.node.log_text()


def test_before_9_3_a_reload_reports_no_keystore_details(rest_lab):
    """The 9.3 fields come with 9.3 (the 9.3 answer is checked in tests/test_rotation_lab_93.py)."""
    answer = rest_lab.es("local").nodes.reload_secure_settings()
    assert answer["_nodes"]["failed"] == 0
    for node in answer["nodes"].values():
        assert list(node) == ["name"], node
    homes = [n["home"] for n in rest_lab.nodes("local")]
    assert all(not any(p.name.endswith("_deprecation.json") for p in (Path(h) / "logs").iterdir()) for h in homes), \
        "an 8.x node wrote a deprecation warning for its certificate-model link"
