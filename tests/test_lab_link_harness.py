"""In-process lab clusters for the link tests: real node configs, real state stores, real TLS
contexts over real certificates, real servers on 127.x.y.z:9300/9443, real security.

Each `HarnessNode` is what `node.py` hands to the transport, remote and work modules (a
NodeContext): `config`, `store`, `log` (Elasticsearch-format lines in logs/<cluster>.log),
`security`, `remote`, `fault(name)`. Several nodes live in one process, each on its own loopback
address, so a test can build two clusters and break the link between them in any way es-facts §9
lists. The module also checks the harness itself (the tests at the end).
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from esremote import pki
from esremote.lab.net import transport
from esremote.lab.node.config import NodeConfig, parse_version
from esremote.lab.node.process import NodeContext, NodeLogs, node_id
from esremote.lab.models.security import Security, hash_key, hash_password, new_api_key_secret, new_id
from esremote.lab.models.state import StateStore

_ADDRESSES = itertools.count(1)


def free_ip() -> str:
    """A loopback address whose 9300 and 9443 are free (other suites use 127.0.x.y)."""
    base = 200 + os.getpid() % 50
    for _ in range(2000):
        n = next(_ADDRESSES)
        ip = f"127.{base}.{n // 250}.{n % 250 + 1}"
        if all(_port_free(ip, port) for port in (9300, 9443)):
            return ip
    raise RuntimeError("no free loopback address")


def _port_free(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------------------ certificates

_CAS: dict[str, pki.CertificateAuthority] = {}


@functools.cache
def _node_key():
    return pki.generate_key(2048)


def _issue(ca: pki.CertificateAuthority, node: str, ip: str) -> pki.NodeCertificate:
    """A node certificate signed by `ca`, on one process-wide key: generating a 2048-bit key per
    certificate would cost a quarter of a second each, and the tests need dozens."""
    return pki.issue(ca, node, dns=[node], ips=[ip], days=2, key=_node_key())


@dataclass
class Pki:
    """CAs (made once per test process) and node certificates, written as PEM files: the SSL
    contexts load them from paths, as a node does."""

    root: Path

    def ca(self, name: str) -> Path:
        if name not in _CAS:
            _CAS[name] = pki.CertificateAuthority.create(f"CN={name} CA", key_size=2048)
        path = self.root / f"{name}-ca.crt"
        if not path.exists():
            path.write_bytes(_CAS[name].cert_pem())
        return path

    def cert(self, ca_name: str, node: str, ip: str) -> tuple[Path, Path]:
        self.ca(ca_name)
        crt, key = self.root / f"{ca_name}-{node}-{ip}.crt", self.root / f"{ca_name}-{node}-{ip}.key"
        if not crt.exists():
            issued = _issue(_CAS[ca_name], node, ip)
            crt.write_bytes(issued.cert_pem())
            key.write_bytes(issued.key_pem())
        return crt, key


def server_context(cert: tuple[Path, Path], client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    if client_ca is not None:  # client_authentication: required
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def client_context(trust: Path | None, cert: tuple[Path, Path] | None, *, full: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = full
    if trust is not None:
        context.load_verify_locations(trust)
    else:
        context.load_default_certs()
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


# ------------------------------------------------------------------------------ nodes

class HarnessNode(NodeContext):
    """node.py's NodeContext, started with only the parts under test (no HTTP)."""

    @property
    def log_path(self) -> Path:
        return self.config.log_path

    def log_text(self) -> str:
        self.logs.handler.flush()
        return self.log_path.read_text() if self.log_path.exists() else ""

    def start(self, *, remote: bool = True, work: bool = False) -> HarnessNode:
        self.store.register_node(self.registration())
        self.servers = transport.start(self)
        if remote:
            from esremote.lab.net.remote import RemoteClusterService
            self.remote = RemoteClusterService(self).start()
        if work:
            from esremote.lab.node.work import WorkRunner
            self.work = WorkRunner(self, interval=0.2).start()
        return self

    def stop(self) -> None:
        self.store.unregister_node(self.config.name)
        for part in (self.work, self.remote):
            if part is not None:
                part.stop()
        self.work = self.remote = None
        for server in self.servers:
            server.close()
        self.servers = []
        self.logs.close()


class Cluster:
    """One cluster: its state dir and its nodes."""

    def __init__(self, lab: Lab, name: str, version: str, license: str) -> None:
        self.lab, self.name, self.version = lab, name, version
        self.dir = lab.root / name
        self.store = StateStore(self.dir / "state")
        self.nodes: list[HarnessNode] = []
        with self.store.transaction() as st:
            st["license"] = {"type": license}
            st["security"]["users"]["elastic"] = {"username": "elastic", "password_hash": hash_password("changeme"),
                                                  "roles": ["superuser"], "enabled": True, "metadata": {}}

    @property
    def node(self) -> HarnessNode:
        return self.nodes[0]

    def add_node(self, *, remote_cluster_server: bool = False, rcs_ca: str = "rcs",
                 transport_ca: str = "transport", client_trust: str | None = "rcs",
                 client_cert_ca: str | None = None, settings: dict | None = None,
                 secure: dict | None = None, rcs_client_auth: bool = False, rcs_tls: bool = True,
                 client_tls: bool = True) -> HarnessNode:
        """A node; its TLS set-up is named by CA: `transport_ca` signs its transport certificate
        and is trusted on 9300; `rcs_ca` signs its 9443 certificate; the remote-cluster client
        trusts `client_trust` (None: the system's CAs) and presents a `client_cert_ca` certificate.
        `rcs_tls` / `client_tls` False switch the remote-cluster server / client to plaintext."""
        p = self.lab.pki
        name = f"{self.name}-{len(self.nodes)}"
        ip = free_ip()
        home = self.dir / name
        (home / "config").mkdir(parents=True, exist_ok=True)
        transport_cert = p.cert(transport_ca, name, ip)
        flat = {"cluster.name": self.name, "node.name": name, "network.host": ip,
                "xpack.security.transport.ssl.certificate_authorities": [str(p.ca(transport_ca))],
                **(settings or {})}
        if client_trust is not None:
            flat["xpack.security.remote_cluster_client.ssl.certificate_authorities"] = [str(p.ca(client_trust))]
        config = NodeConfig(
            home=home, name=name, cluster_name=self.name, ip=ip, http_port=9200, transport_port=9300,
            remote_cluster_port=9443 if remote_cluster_server else None,
            version=parse_version(self.version), version_text=self.version, license="basic",
            state_dir=self.dir / "state", control_dir=self.lab.root / "control",
            settings=flat, raw_settings=dict(flat), secure=dict(secure or {}), roles=[],
            transport_server=server_context(transport_cert, p.ca(transport_ca)),
            transport_client=client_context(p.ca(transport_ca), transport_cert, full=False),
            remote_cluster_server=(server_context(p.cert(rcs_ca, name, ip),
                                                  p.ca(transport_ca) if rcs_client_auth else None)
                                   if remote_cluster_server and rcs_tls else None),
        )
        config.remote_cluster_client = client_context(
            p.ca(client_trust) if client_trust else None,
            p.cert(client_cert_ca, name, ip) if client_cert_ca else None, full=True) if client_tls else None
        node = HarnessNode(config, self.store, NodeLogs(config.log_path, name), id=node_id(self.name, name))
        node.security = Security(node)
        self.nodes.append(node)
        return node

    # cluster state helpers ---------------------------------------------------------------------

    def put_settings(self, persistent: dict | None = None, transient: dict | None = None) -> None:
        with self.store.transaction() as st:
            for layer, values in (("persistent", persistent or {}), ("transient", transient or {})):
                for key, value in values.items():
                    if value is None:
                        st["settings"][layer].pop(key, None)
                    else:
                        st["settings"][layer][key] = value
        for node in self.nodes:
            if node.remote is not None:
                node.remote.settings_changed()

    def put_role(self, name: str, descriptor: dict) -> None:
        with self.store.transaction() as st:
            st["security"]["roles"][name] = descriptor

    def put_user(self, name: str, roles: list[str], password: str = "password") -> None:
        with self.store.transaction() as st:
            st["security"]["users"][name] = {"username": name, "password_hash": hash_password(password),
                                             "roles": roles, "enabled": True, "metadata": {}}

    def user(self, name: str):
        return self.node.security.user(name)

    def create_index(self, index: str, docs: list[dict] = (), settings: dict | None = None) -> None:
        with self.store.transaction() as st:
            st["indices"].setdefault(index, {"uuid": new_id(), "creation_date": int(time.time() * 1000),
                                             "settings": dict(settings or {}), "mappings": {}, "aliases": {},
                                             "follower": False})
        if docs:
            self.index_docs(index, docs)

    def index_docs(self, index: str, docs: list[dict]) -> None:
        start = len(self.store.read_docs(index))
        self.store.append_docs(index, [{"_id": str(start + i), "_source": d} for i, d in enumerate(docs)])

    def api_key(self, name: str, *, kind: str = "cross_cluster", search: list[str] = ("*",),
                replication: list[str] = (), owner: str = "elastic") -> str:
        """A key written straight into the state (as the security API would); returns `encoded`."""
        key_id, secret = new_id(), new_api_key_secret()
        indices = [{"names": list(search), "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
                    "allow_restricted_indices": False}] if search else []
        if replication:
            indices.append({"names": list(replication), "privileges": ["cross_cluster_replication",
                                                                       "cross_cluster_replication_internal"],
                            "allow_restricted_indices": False})
        record = {"id": key_id, "name": name, "type": kind, "key_hash": hash_key(secret),
                  "creation": int(time.time() * 1000), "expiration": None, "invalidated": False,
                  "invalidation": None, "username": owner, "realm": "default_native", "metadata": {},
                  "role_descriptors": {"cross_cluster": {"cluster": ["cross_cluster_search"], "indices": indices}}
                  if kind == "cross_cluster" else {}, "limited_by": []}
        with self.store.transaction() as st:
            st["security"]["api_keys"][key_id] = record
        return base64.b64encode(f"{key_id}:{secret}".encode()).decode()

    def invalidate_keys(self) -> None:
        with self.store.transaction() as st:
            for record in st["security"]["api_keys"].values():
                record["invalidated"] = True


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = Pki(root / "pki")
        self.pki.root.mkdir(parents=True, exist_ok=True)
        (root / "control").mkdir(parents=True, exist_ok=True)
        self.clusters: list[Cluster] = []

    def fault(self, name: str, nodes: list[str] | None = None, on: bool = True) -> None:
        """Switch a fault the way `lab fault` does: control/faults.json, read by the nodes."""
        path = self.root / "control" / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        if on:
            faults[name] = {"nodes": nodes}
        else:
            faults.pop(name, None)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        os.replace(tmp, path)

    def cluster(self, name: str, *, version: str = "8.17.0", license: str = "trial") -> Cluster:
        cluster = Cluster(self, name, version, license)
        self.clusters.append(cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.clusters:
            for node in cluster.nodes:
                node.stop()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def connect_proxy(local: Cluster, alias: str, address: str, *, sockets: int = 2, layer: str = "persistent",
                  **extra) -> None:
    local.put_settings(**{layer: {f"cluster.remote.{alias}.mode": "proxy",
                                  f"cluster.remote.{alias}.proxy_address": address,
                                  f"cluster.remote.{alias}.proxy_socket_connections": str(sockets),
                                  **{f"cluster.remote.{alias}.{k}": v for k, v in extra.items()}}})


def connect_sniff(local: Cluster, alias: str, seeds: list[str], *, node_connections: int = 3, **extra) -> None:
    local.put_settings(persistent={f"cluster.remote.{alias}.mode": "sniff",
                                   f"cluster.remote.{alias}.seeds": seeds,
                                   f"cluster.remote.{alias}.node_connections": str(node_connections),
                                   **{f"cluster.remote.{alias}.{k}": v for k, v in extra.items()}})


def remote_info(node: HarnessNode) -> dict:
    return json.loads(json.dumps(node.remote.info()))


# ------------------------------------------------------------------------------ the harness itself

def test_nodes_serve_tls_on_their_own_addresses(lab):
    remote = lab.cluster("remote")
    node = remote.add_node(remote_cluster_server=True).start(remote=False)
    assert {s.port for s in node.servers} == {9300, 9443}
    with socket.create_connection((node.config.ip, 9443)) as raw:
        with client_context(lab.pki.ca("rcs"), None, full=True).wrap_socket(raw, server_hostname=node.config.ip) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
