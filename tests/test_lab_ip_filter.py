"""The lab's IP filtering, with real sockets and real TLS: a node whose address the remote's filter
denies cannot connect (its connection is closed before TLS and it logs what Elasticsearch logs),
an allowed one can; the remote-cluster port has filters of its own that fall back to the transport
ones; filtering follows dynamic settings, its switch and the licence."""

from __future__ import annotations

import pytest

from esremote.lab.errors import ESError
from esremote.lab.node import registry
from esremote.lab.node.errors import SettingValueError
from tests.test_lab_link_harness import (  # noqa: F401  (lab is a fixture)
    connect_proxy, lab, remote_info, wait_for)

ALLOW, DENY = "xpack.security.transport.filter.allow", "xpack.security.transport.filter.deny"
RC_ALLOW, RC_DENY = "xpack.security.remote_cluster.filter.allow", "xpack.security.remote_cluster.filter.deny"


def _clusters(lab, *, license="trial", remote_cluster_server=False):
    remote = lab.cluster("remote", license=license)
    remote.add_node(remote_cluster_server=remote_cluster_server).start(remote=False)
    local = lab.cluster("local", license=license)
    credentials = remote.api_key("ccs") if remote_cluster_server else None
    local.add_node(secure={"cluster.remote.my_remote.credentials": credentials} if credentials else {}).start()
    return remote, local


def _connected(local, alias="my_remote") -> bool:
    return bool(remote_info(local.node).get(alias, {}).get("connected"))


def _refused(local, address: str, alias="my_remote") -> ESError:
    """A new connection to `address` is refused: the log line and the error a search gets."""
    wait_for(lambda: f"[][{address}] general node connection failure" in local.node.log_text()
             and "TransportException: handshake failed because connection reset" in local.node.log_text(),
             what=f"the refused connection to {address} in the local log")
    assert not _connected(local, alias)
    with pytest.raises(ESError) as caught:
        local.node.remote.search(alias, "*", {}, local.user("elastic"))
    return caught.value


def test_a_denied_address_cannot_connect_to_the_transport_port(lab):
    remote, local = _clusters(lab)
    address = f"{remote.node.config.ip}:9300"
    remote.put_settings(persistent={ALLOW: [remote.node.config.ip], DENY: "_all"})
    connect_proxy(local, "my_remote", address, sockets=1)
    error = _refused(local, address)
    assert (error.status, error.type, error.reason) == (500, "connect_transport_exception",
                                                        f"[][{address}] general node connection failure")
    assert error.caused_by.reason == "handshake failed because connection reset"
    assert "ERROR" not in remote.node.log_text() and "WARN" not in remote.node.log_text()  # closed before TLS


def test_an_allowed_address_connects_and_allow_wins_over_deny(lab):
    remote, local = _clusters(lab)
    remote.put_settings(persistent={ALLOW: [f"{local.node.config.ip}/32"], DENY: [local.node.config.ip, "_all"]})
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    wait_for(lambda: _connected(local), what="the allowed node connected")


def test_filtering_is_dynamic_and_leaves_open_connections_alone(lab):
    remote, local = _clusters(lab)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    wait_for(lambda: _connected(local), what="connected before the filter")
    remote.put_settings(persistent={DENY: "_all"})
    assert _connected(local)  # Elasticsearch filters when a connection opens, not later
    connect_proxy(local, "my_remote2", f"{remote.node.config.ip}:9300", sockets=1)
    _refused(local, f"{remote.node.config.ip}:9300", alias="my_remote2")
    remote.put_settings(persistent={DENY: None})
    connect_proxy(local, "my_remote3", f"{remote.node.config.ip}:9300", sockets=1)
    wait_for(lambda: _connected(local, "my_remote3"), what="connected once the deny rule is gone")


def test_the_remote_cluster_port_falls_back_to_the_transport_filter_until_it_has_its_own(lab):
    remote, local = _clusters(lab, remote_cluster_server=True)
    rcs = f"{remote.node.config.ip}:9443"
    remote.put_settings(persistent={ALLOW: [remote.node.config.ip], DENY: "_all"})
    connect_proxy(local, "my_remote", rcs, sockets=1)
    _refused(local, rcs)

    remote.put_settings(persistent={RC_ALLOW: [local.node.config.ip], RC_DENY: "_all"})
    connect_proxy(local, "my_remote", rcs, sockets=2)
    wait_for(lambda: remote_info(local.node)["my_remote"]["num_proxy_sockets_connected"] == 2,
             what="the API-key link through the remote-cluster port's own filter")
    connect_proxy(local, "cert_path", f"{remote.node.config.ip}:9300", sockets=1)
    _refused(local, f"{remote.node.config.ip}:9300", alias="cert_path")  # 9300 still closed to it


@pytest.mark.parametrize("off", ["switch", "basic licence"])
def test_no_filtering_when_switched_off_or_not_licensed(lab, off):
    remote, local = _clusters(lab, license="basic" if off == "basic licence" else "trial")
    settings = {DENY: "_all"}
    if off == "switch":
        settings["xpack.security.transport.filter.enabled"] = "false"
    remote.put_settings(persistent=settings)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    wait_for(lambda: _connected(local), what=f"connected with filtering off ({off})")


@pytest.mark.parametrize(("key", "value", "message"), [
    (ALLOW, ["_all,10.0.0.1"], "rules that specify _all may not have other values!"),
    (DENY, ["10.0.0.0/8,10.1.0.0/16"], "multiple subnet filters cannot be specified in a single rule!"),
    (RC_DENY, "10.0.0.0/99", "unable to create ip filter for rule [deny 10.0.0.0/99]"),
])
def test_a_rule_that_cannot_be_made_is_refused_with_elasticsearchs_message(key, value, message):
    with pytest.raises(SettingValueError) as caught:
        registry.validate_value(key, value)
    assert str(caught.value) == message
    assert registry.lookup(key).dynamic
    assert registry.validate_value("transport.profiles.client.xpack.security.filter.allow", "localhost") == [
        "localhost"]
