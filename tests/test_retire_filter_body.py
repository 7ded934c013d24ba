"""The retirement's IP-filter settings, judged by the lab's own IP filter (Elasticsearch's IPFilter
rules, net/ipfilter.py): after the change only the remote's nodes pass its transport port, while the
HTTP port and the remote-cluster port (the API-key link) decide every address as they did before,
whatever filters the remote already had (in its yml or its cluster settings)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from esremote.flows.retire_certificate_trust import ip_filter_body
from esremote.lab.net.ipfilter import HTTP, REMOTE_CLUSTER, TRANSPORT, decide, rules

REMOTE_NODES = ["10.1.0.1", "10.1.0.2"]
LOCAL_NODE, OPERATOR, OUTSIDER, BLOCKED = "10.2.0.1", "192.168.7.7", "172.16.0.9", "10.9.9.9"
PEERS = [LOCAL_NODE, OPERATOR, OUTSIDER, BLOCKED, *REMOTE_NODES]
RUN = SimpleNamespace(nodes=lambda remote: [SimpleNamespace(address=a) for a in REMOTE_NODES])
T, H, R = "xpack.security.transport.filter.", "xpack.security.http.filter.", "xpack.security.remote_cluster.filter."


def admitted(settings: dict, profile: str) -> dict[str, bool]:
    found = rules(settings, profile, bound="10.1.0.1")
    return {peer: decide(found, peer) is None for peer in PEERS}


@pytest.mark.parametrize("before", [
    pytest.param({}, id="no filter anywhere"),
    pytest.param({T + "deny": ["10.9.0.0/16"]}, id="transport deny only"),
    pytest.param({T + "allow": ["10.9.9.9"], T + "deny": ["10.9.0.0/16", "172.16.0.0/12"]},
                 id="transport allow and deny"),
    pytest.param({T + "deny": "10.9.9.9", H + "allow": "_all", R + "allow": [LOCAL_NODE], R + "deny": "_all"},
                 id="HTTP and 9443 with their own rules"),
    pytest.param({"transport.profiles.default.xpack.security.filter.deny": ["172.16.0.0/12"]},
                 id="HTTP through the default profile"),
    pytest.param({R + "allow": [LOCAL_NODE]}, id="9443 allow of its own, deny from transport"),
])
def test_only_the_transport_port_changes(before):
    after = {**before, **ip_filter_body(RUN, "remote", before)["persistent"]}
    assert admitted(after, TRANSPORT) == {peer: peer in REMOTE_NODES for peer in PEERS}
    for profile in (HTTP, REMOTE_CLUSTER):
        assert admitted(after, profile) == admitted(before, profile), profile


def test_with_no_filter_before_http_and_9443_are_pinned_open():
    assert ip_filter_body(RUN, "remote", {}) == {"persistent": {
        T + "allow": REMOTE_NODES, T + "deny": "_all", H + "allow": ["_all"], R + "allow": ["_all"]}}


def test_filters_of_their_own_are_left_alone():
    own = {H + "allow": ["10.0.0.0/8"], H + "deny": "_all", R + "allow": [LOCAL_NODE], R + "deny": ["_all"]}
    assert ip_filter_body(RUN, "remote", own) == {"persistent": {T + "allow": REMOTE_NODES, T + "deny": "_all"}}
