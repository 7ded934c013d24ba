"""TLS probes of the remote cluster server port against a lab whose remote nodes serve 9443 with
certificates from a fresh CA (made with esremote.pki, installed over SSH, full restart)."""

from __future__ import annotations

import secrets
import socket
import threading

import pytest

from esremote import pki
from esremote.cluster.restart import full_restart
from esremote.errors import CertificateError
from esremote.esyml import EsYml
from esremote.inventory import Inventory, load_inventory
from esremote.node_keystore import NodeKeystore
from esremote.probes import ProbeError, probe_remote_cluster, probe_tls
from esremote.ssh import SSHPool

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RUN_ID = "test-probes"
P12 = "certs/remote-cluster.p12"
P12_PASSWORD_SETTING = "xpack.security.remote_cluster_server.ssl.keystore.secure_password"


def enable_remote_cluster_server(inventory: Inventory, pool: SSHPool, ca: pki.CertificateAuthority, *,
                                 without_ip: tuple[str, ...] = ()) -> None:
    """What prepare_remote does by hand: per remote node a certificate from `ca` (SANs: its name and,
    unless listed in `without_ip`, its address), the p12 and settings, then a full restart."""
    remote = next(c.name for c in inventory.clusters.values() if c.role == "remote")
    password = secrets.token_urlsafe(12)
    for node in inventory.nodes(remote):
        conn = pool.get(node.ssh_target())
        ips = [] if node.name in without_ip else [node.address]
        cert = pki.issue(ca, f"CN={node.name}", dns=[node.name], ips=ips)
        conn.write_file(f"{node.config_dir}/{P12}", pki.to_pkcs12(cert, ca, password, name=node.name),
                        run_id=RUN_ID, mode=0o640)
        yml = EsYml.parse(conn.read_file(str(node.yml_path)).decode())
        yml.update({"remote_cluster_server.enabled": True, "remote_cluster.host": node.address,
                    "xpack.security.remote_cluster_server.ssl.enabled": True,
                    "xpack.security.remote_cluster_server.ssl.keystore.path": P12})
        conn.write_file(str(node.yml_path), yml.text().encode(), run_id=RUN_ID)
        keystore_password = node.keystore_password.resolve() if node.keystore_password else None
        NodeKeystore(conn, es_home=str(node.es_home), config_dir=str(node.config_dir),
                     password=keystore_password).add(P12_PASSWORD_SETTING, password)
    full_restart(inventory, remote, pool=pool)


@pytest.fixture(scope="module")
def served(lab_factory):
    """A lab whose remote-0 has a certificate naming its IP and remote-1 one without it."""
    lab = lab_factory("probes", local_nodes=1, remote_nodes=2, seed=False)
    inventory = load_inventory(lab.inventory)
    ca = pki.CertificateAuthority.create("CN=esremote test remote cluster CA", key_size=2048)
    with SSHPool() as pool:
        enable_remote_cluster_server(inventory, pool, ca, without_ip=("remote-1",))
    yield lab, inventory, ca
    lab.down()


def test_a_certificate_from_the_new_ca_naming_the_address_passes(served):
    lab, _, ca = served
    remote0 = lab.node("remote-0")
    result = probe_tls(remote0["ip"], 9443, ca.cert_pem(), node="remote/remote-0")
    assert result.ok, result
    assert result.subject == "CN=remote-0" and result.issuer == ca.subject
    assert f"IP:{remote0['ip']}" in result.names and result.tls_version.startswith("TLS")


def test_a_missing_san_fails_naming_the_node_and_what_the_certificate_holds(served):
    lab, inventory, ca = served
    with pytest.raises(ProbeError) as caught:
        probe_remote_cluster(inventory, "remote", ca.cert_pem())
    message = str(caught.value)
    ip1 = lab.node("remote-1")["ip"]
    assert f"remote/remote-1 ({ip1}:9443): the certificate does not name {ip1}" in message
    assert "DNS:remote-1" in message and f"an IP SAN {ip1}" in message
    assert "remote/remote-0" not in message  # the good node is not blamed
    results = {r.node: r for r in caught.value.results}
    assert results["remote/remote-0"].ok and results["remote/remote-1"].problem == "name"
    # By the DNS name it holds, remote-1's certificate is fine: the SAN check is on the address used.
    by_name = probe_tls(ip1, 9443, ca.cert_pem(), node="remote-1")
    assert not by_name.ok and by_name.problem == "name"


def test_a_chain_from_another_ca_fails_as_untrusted(served):
    _, inventory, _ = served
    other = pki.CertificateAuthority.create("CN=some other CA", key_size=2048)
    results = probe_remote_cluster(inventory, "remote", other.cert_pem(), check=False)
    assert [r.problem for r in results] == ["untrusted", "untrusted"]
    assert "does not verify against the new CA" in results[0].detail
    assert "CN=esremote test remote cluster CA" in results[0].detail  # who did issue it


def test_a_node_without_the_remote_cluster_server_is_refused(served, tmp_path):
    lab, _, ca = served
    local0 = lab.node("local-0")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem())
    result = probe_tls(local0["ip"], 9443, ca_file, node="local/local-0")
    assert not result.ok and result.problem == "refused"
    assert "remote_cluster_server.enabled" in result.detail


def test_a_plain_tcp_listener_fails_the_handshake(served):
    lab, _, ca = served
    ip = lab.node("local-0")["ip"]
    with socket.socket() as server:
        server.bind((ip, 0))
        server.listen()
        port = server.getsockname()[1]
        # Something that answers in plain text: not a TLS server.
        def accept_and_close():
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()

        thread = threading.Thread(target=accept_and_close, daemon=True)
        thread.start()
        result = probe_tls(ip, port, ca.cert_pem(), node="x", timeout=5)
        thread.join(5)
    assert not result.ok and result.problem == "handshake"


def test_the_ca_must_be_a_pem_certificate(tmp_path):
    with pytest.raises(CertificateError, match="cannot read the CA certificate"):
        probe_tls("127.0.0.1", 9, tmp_path / "missing.crt")
    with pytest.raises(CertificateError, match="must be a PEM certificate"):
        probe_tls("127.0.0.1", 9, b"not a certificate")
