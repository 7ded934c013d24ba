"""Every misconfiguration of es-facts §9, reproduced with real sockets and real TLS: the message in
the right side's log, `_remote/info` showing the link down, and the error a request gets."""

from __future__ import annotations

import socket

import pytest

from esremote.lab.errors import ESError
from tests.test_lab_link_harness import (  # noqa: F401  (lab is a fixture)
    connect_proxy, connect_sniff, free_ip, lab, remote_info, wait_for)

HANDSHAKE = "cluster:internal/remote_cluster/handshake"


def _remote(lab, *, version="8.17.0", license="trial", **node):
    remote = lab.cluster("remote", version=version, license=license)
    remote.add_node(**node).start(remote=False)
    return remote


def _local(lab, *, credentials=None, version="8.17.0", license="trial", **node):
    local = lab.cluster("local", version=version, license=license)
    secure = {"cluster.remote.my_remote.credentials": credentials} if credentials else {}
    local.add_node(secure=secure, **node).start()
    return local


def _logged(node, *fragments, what="log line"):
    return wait_for(lambda: all(f in node.log_text() for f in fragments), what=f"{what}: {fragments}")


def _search_error(local) -> ESError:
    user = local.user("elastic")
    with pytest.raises(ESError) as caught:
        local.node.remote.search("my_remote", "*", {}, user)
    return caught.value


# ------------------------------------------------------------------------------ unreachable

def test_proxy_connect_exception(lab):
    local = _local(lab)
    address = f"{free_ip()}:9400"
    connect_proxy(local, "my_remote", address, sockets=2)
    _logged(local.node, "[WARN ][o.e.t.ProxyConnectionStrategy] [local-0] failed to open any proxy connections "
                        "to cluster [my_remote]",
            f"org.elasticsearch.transport.ConnectTransportException: [][{address}] connect_exception")
    info = remote_info(local.node)["my_remote"]
    assert (info["connected"], info["num_proxy_sockets_connected"]) == (False, 0)
    error = _search_error(local)
    assert (error.status, error.type, error.reason) == (500, "connect_transport_exception",
                                                        f"[][{address}] connect_exception")


def test_sniff_connect_exception(lab):
    local = _local(lab)
    seed = f"{free_ip()}:9400"
    connect_sniff(local, "my_remote", [seed])
    _logged(local.node, "[WARN ][o.e.t.SniffConnectionStrategy] [local-0] fetching nodes from external cluster "
                        "[my_remote] failed",
            f"org.elasticsearch.transport.ConnectTransportException: [][{seed}] connect_exception")
    assert remote_info(local.node)["my_remote"]["num_nodes_connected"] == 0


def test_remote_port_blocked_fault_refuses_then_recovers(lab):
    remote = _remote(lab, remote_cluster_server=True)
    local = _local(lab, credentials=remote.api_key("ccs"))
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=2)
    wait_for(lambda: remote_info(local.node)["my_remote"]["num_proxy_sockets_connected"] == 2, what="connected")

    lab.fault("remote-port-blocked", nodes=[remote.node.config.name])
    wait_for(lambda: not remote_info(local.node)["my_remote"]["connected"], what="link down")
    _logged(local.node, f"[][{remote.node.config.ip}:9443] connect_exception")
    # 9300 is not affected by the fault
    socket.create_connection((remote.node.config.ip, 9300), timeout=2).close()

    lab.fault("remote-port-blocked", on=False)
    wait_for(lambda: remote_info(local.node)["my_remote"]["num_proxy_sockets_connected"] == 2, what="link back")


# ------------------------------------------------------------------------------ API-key model on the transport port

def test_api_key_model_on_transport_port_untrusted_server(lab):
    """Symptom 1: the remote-cluster client does not trust the transport certificate."""
    remote = _remote(lab)
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust="rcs")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    ca = lab.pki.ca("rcs")
    _logged(local.node, f"[WARN ][o.e.c.s.DiagnosticTrustManager] [local-0] failed to establish trust with server "
                        f"at [{remote.node.config.ip}]; the server provided a certificate with subject name "
                        "[CN=remote-0]",
            "the certificate is issued by [CN=transport CA] but this ssl context "
            f"([xpack.security.remote_cluster_client.ssl (with trust configuration: PEM-trust{{{ca}}})]) is not "
            "configured to trust that issuer but trusts [1] other issuers",
            "sun.security.validator.ValidatorException: PKIX path building failed: "
            "sun.security.provider.certpath.SunCertPathBuilderException: unable to find valid certification path "
            "to requested target")
    _logged(remote.node, "[WARN ][o.e.x.s.t.n.SecurityNetty4ServerTransport] [remote-0] client did not trust this "
                         "server's certificate, closing connection Netty4TcpChannel{localAddress=/"
                         f"{remote.node.config.ip}:9300", "profile=default}")
    # reading the server's certificate for the diagnosis leaves no trace on the remote
    assert "Empty client certificate chain" not in remote.node.log_text()
    error = _search_error(local)
    assert error.type == "connect_transport_exception"
    assert error.caused_by.type == "s_s_l_handshake_exception" and "PKIX path building failed" in error.caused_by.reason


def test_api_key_model_on_transport_port_without_client_certificate(lab):
    """Symptom 2: trusted, but 9300 wants a client certificate and the client has none."""
    remote = _remote(lab)
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust="transport")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    _logged(local.node, "javax.net.ssl.SSLHandshakeException: Received fatal alert: bad_certificate")
    _logged(remote.node, "javax.net.ssl.SSLHandshakeException: Empty client certificate chain", "profile=default")


def test_api_key_model_on_transport_port_with_client_certificate(lab):
    """Symptom 3: TLS works both ways; the transport port does not read the API key."""
    remote = _remote(lab)
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust="transport", client_cert_ca="transport")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    _logged(local.node, "org.elasticsearch.ElasticsearchSecurityException: missing authentication credentials "
                        f"for action [{HANDSHAKE}]")
    assert _search_error(local).reason == f"missing authentication credentials for action [{HANDSHAKE}]"


@pytest.mark.parametrize("roles, message", [
    (["reporting_user"], f"action [{HANDSHAKE}] is unauthorized for user [anonymous_foo] with effective roles "
                         "[reporting_user], this action is granted by the cluster privileges "
                         "[cross_cluster_search,cross_cluster_replication,manage,all]"),
    (["superuser"], "java.lang.IllegalArgumentException: remote cluster handshake action requires channel profile "
                    "to be [_remote_cluster], but got [default]"),
])
def test_api_key_model_on_transport_port_with_anonymous_access(lab, roles, message):
    """Symptom 4: anonymous access on the remote authenticates the handshake as anonymous."""
    remote = _remote(lab, settings={"xpack.security.authc.anonymous.username": "anonymous_foo",
                                    "xpack.security.authc.anonymous.roles": roles})
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust="transport", client_cert_ca="transport")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    _logged(local.node, message)


# ------------------------------------------------------------------------------ no API key against 9443

def test_certificate_model_on_remote_cluster_port_untrusted(lab):
    remote = _remote(lab, remote_cluster_server=True)
    local = _local(lab)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    _logged(local.node, "failed to establish trust with server",
            "this ssl context ([xpack.security.transport.ssl (with trust configuration: PEM-trust{",
            "unable to find valid certification path to requested target")
    _logged(remote.node, "client did not trust this server's certificate", "profile=_remote_cluster}")


def test_certificate_model_on_remote_cluster_port_trusted_needs_credentials(lab):
    remote = _remote(lab, remote_cluster_server=True, rcs_ca="transport")
    local = _local(lab)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    message = ("Cross cluster requests through the dedicated remote cluster server port require transport header "
               "[_cross_cluster_access_credentials] but none found. Please ensure you have configured remote "
               "cluster credentials on the cluster originating the request.")
    _logged(local.node, message)
    assert _search_error(local).reason == message


# ------------------------------------------------------------------------------ TLS on one side only

def test_plaintext_client_against_the_tls_remote_cluster_port(lab):
    remote = _remote(lab, remote_cluster_server=True)
    local = _local(lab, credentials=remote.api_key("ccs"), client_tls=False)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    _logged(remote.node, "received plaintext traffic on an encrypted channel, closing connection Netty4TcpChannel{",
            "profile=_remote_cluster}")
    _logged(local.node, f"[][{remote.node.config.ip}:9443] general node connection failure\n"
                        "Caused by: org.elasticsearch.transport.TransportException: handshake failed because connection reset")


def test_tls_client_against_a_plaintext_remote_cluster_port(lab):
    remote = _remote(lab, remote_cluster_server=True, rcs_tls=False)
    local = _local(lab, credentials=remote.api_key("ccs"))
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    _logged(remote.node, "java.io.StreamCorruptedException: invalid internal transport message format, got (16,3,1,")
    _logged(local.node, "javax.net.ssl.SSLHandshakeException: Remote host terminated the handshake")


# ------------------------------------------------------------------------------ TLS trust, keys, licence, versions

def test_remote_cluster_client_without_trust_configuration(lab):
    remote = _remote(lab, remote_cluster_server=True)
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust=None)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    _logged(local.node, "this ssl context ([(shared) (with trust configuration: JDK-trusted-certs)]) is not "
                        "configured to trust that issuer but trusts [", "PKIX path building failed")
    _logged(remote.node, "client did not trust this server's certificate")


def test_rest_api_key_is_the_wrong_type(lab):
    remote = _remote(lab, remote_cluster_server=True)
    encoded = remote.api_key("rest", kind="rest")
    local = _local(lab, credentials=encoded)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    key_id = __import__("base64").b64decode(encoded).decode().split(":")[0]
    message = f"authentication expected API key type of [cross_cluster], but API key [{key_id}] has type [rest]"
    _logged(local.node, message)
    assert message not in remote.node.log_text()
    assert _search_error(local).reason == message


def test_invalid_api_key_both_sides(lab):
    remote = _remote(lab, remote_cluster_server=True)
    encoded = remote.api_key("ccs")
    remote.invalidate_keys()
    local = _local(lab, credentials=encoded)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    key_id = __import__("base64").b64decode(encoded).decode().split(":")[0]
    _logged(local.node, f"unable to authenticate user [{key_id}] for action [{HANDSHAKE}]")
    _logged(remote.node, "[WARN ][o.e.x.s.a.ApiKeyAuthenticator] [remote-0] Authentication using apikey failed - "
                         f"invalid credentials for API key [{key_id}]")
    error = _search_error(local)
    assert (error.status, error.type) == (401, "security_exception")


def test_key_invalidated_while_connected_fails_requests_not_sockets(lab):
    remote = _remote(lab, remote_cluster_server=True)
    local = _local(lab, credentials=remote.api_key("ccs"))
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")
    remote.invalidate_keys()
    error = _search_error(local)
    assert error.reason.startswith("unable to authenticate user [") and "[indices:data/read/search]" in error.reason
    assert remote_info(local.node)["my_remote"]["connected"]


@pytest.mark.parametrize("side", ["local", "remote"])
def test_licence_below_enterprise_refuses_api_key_model(lab, side):
    remote = _remote(lab, remote_cluster_server=True, license="basic" if side == "remote" else "trial")
    local = _local(lab, credentials=remote.api_key("ccs"), license="basic" if side == "local" else "enterprise")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    _logged(local.node, "current license is non-compliant for [advanced-remote-cluster-security]")
    error = _search_error(local)
    assert (error.status, error.type) == (403, "security_exception")
    assert error.extra == {"license.expired.feature": "advanced-remote-cluster-security"}


def test_remote_older_than_8_10_cannot_receive_cross_cluster_headers(lab):
    remote = _remote(lab, version="8.9.2")
    local = _local(lab, credentials=remote.api_key("ccs"), client_trust="transport", client_cert_ca="transport")
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9300", sockets=1)
    _logged(local.node, "Settings for remote cluster [my_remote] indicate cross cluster access headers should be "
                        "sent but target cluster version [8.9.2] does not support receiving them")


# ------------------------------------------------------------------------------ authorization on the remote

def _api_key_link(lab, *, search=("*",)):
    remote = _remote(lab, remote_cluster_server=True)
    remote.create_index("cd", [{"n": 1}])
    remote.create_index("logs-1", [{"n": 2}])
    encoded = remote.api_key("ccs", search=list(search))
    local = _local(lab, credentials=encoded)
    connect_proxy(local, "my_remote", f"{remote.node.config.ip}:9443", sockets=1)
    wait_for(lambda: remote_info(local.node)["my_remote"]["connected"], what="connected")
    key_id = __import__("base64").b64decode(encoded).decode().split(":")[0]
    return local, remote, key_id


def test_no_remote_indices_privileges_is_refused_locally(lab):
    local, remote, _ = _api_key_link(lab)
    local.put_role("foo-role", {"cluster": [], "indices": [{"names": ["local"], "privileges": ["read"]}]})
    local.put_user("foo", ["foo-role"])
    with pytest.raises(ESError) as caught:
        local.node.remote.search("my_remote", "cd", {}, local.user("foo"))
    assert caught.value.status == 403
    assert caught.value.reason == ("action [indices:data/read/search] towards remote cluster [my_remote] is "
                                   "unauthorized for user [foo] with effective roles [foo-role] because no remote "
                                   "indices privileges apply for the target cluster")


def test_key_access_limits_the_user_insufficient_privileges(lab):
    local, remote, key_id = _api_key_link(lab, search=["logs-*"])
    local.put_role("foo-role", {"remote_indices": [{"clusters": ["my_remote"], "names": ["*"],
                                                    "privileges": ["read"]}]})
    local.put_user("foo", ["foo-role"])
    with pytest.raises(ESError) as caught:
        local.node.remote.search("my_remote", "cd", {}, local.user("foo"))
    assert (caught.value.status, caught.value.type) == (403, "security_exception")
    assert caught.value.reason == (
        "action [indices:data/read/search] towards remote cluster is unauthorized for user [foo] with assigned "
        f"roles [foo-role] authenticated by API key id [{key_id}] of user [elastic] on indices [cd], this action "
        "is granted by the index privileges [read,all]")
