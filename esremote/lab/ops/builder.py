"""Lay out a lab directory: the clusters' homes, certificates, configs, keystores, bin scripts, secrets.

`plan(dir, options)` names every cluster and node (pure, no I/O); `build(dir, options)` writes them
in the "before" state of a migration: the certificate model (one transport CA shared by every
cluster, mutual TLS on the transport port), security on, HTTPS with the lab's HTTP CA. The layout is
in ARCHITECTURE.md. Secrets go to `DIR/secrets/` as 0600 files; nothing secret is printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from esremote.errors import ConfigError
from esremote.files import atomic_write
from esremote.lab.formats import certs, keystore, pkcs12
from esremote.lab.ops import package_layout

DEFAULT_VERSION = "8.17.0"
LICENSES = ("basic", "trial", "enterprise")
SSH_MODES = ("embedded", "openssh")
SUDO_MODES = ("nopasswd", "password")
ALIAS_MODES = ("proxy", "sniff")
HTTP_PORT, TRANSPORT_PORT, REMOTE_CLUSTER_PORT = 9200, 9300, 9443
SSH_PORTS = {"embedded": 2222, "openssh": 2223}
ELASTIC_USER = "elastic"
LAB_USERS = ("ccs_user", "ccr_user")  # the local users that own the cross-cluster work (seed.py)
MAX_NODES = 20
MAX_FILES_ONLY_NODES = 64  # nodes with no Elasticsearch process: one SSH endpoint process serves them all
MAX_REMOTES = 3
P12_SETTINGS = ("xpack.security.http.ssl.keystore.secure_password",
                "xpack.security.transport.ssl.keystore.secure_password",
                "xpack.security.transport.ssl.truststore.secure_password")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class LabOptions:
    """How to build the "before" state. Everything but `start_delay` is fixed once a lab is built."""

    local_nodes: int = 2
    remote_nodes: int = 2
    version: str = DEFAULT_VERSION
    remote_version: str | None = None      # the remote clusters' version (default: `version`)
    license: str = "trial"
    remote_license: str | None = None      # the remote clusters' licence (default: `license`)
    ssh: str = "embedded"
    sudo: str = "nopasswd"                 # with --ssh openssh as root: the login user's sudo needs no password, or one
    mode: str = "proxy"                    # the alias's connection mode
    alias_in_yml: bool = False             # alias defined statically in the local elasticsearch.yml
    keystore_password: bool = False        # password-protected keystores (password in DIR/secrets)
    remotes: int = 1                       # remote clusters: remote, remote2, ... (aliases my_remote, my_remote2, ...)
    start_delay: float = 0.0               # seconds bin/elasticsearch-service waits before starting a node
    net: int = 0                           # addresses 127.<net>.<k+1>.<i+1>: labs side by side need their own
    files_only: bool = False               # homes + SSH, no node process (no REST): for per-node steps

    def validate(self) -> LabOptions:
        """Raise ConfigError naming the first bad option; return self when all are good."""
        most = MAX_FILES_ONLY_NODES if self.files_only else MAX_NODES
        for name in ("local_nodes", "remote_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= most:
                more = "" if self.files_only else f" (up to {MAX_FILES_ONLY_NODES} with --files-only)"
                raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is out of range; use 1 to {most}{more}")
        if not 1 <= self.remotes <= MAX_REMOTES:
            raise ConfigError(f"--remotes: {self.remotes!r} is out of range; use 1 to {MAX_REMOTES}")
        for name in ("version", "remote_version"):
            value = getattr(self, name)
            if value is not None:
                parse_version(value, option=f"--{name.replace('_', '-')}")
        for name in ("license", "remote_license"):
            value = getattr(self, name)
            if value is not None and value not in LICENSES:
                raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is not a licence; use one of "
                                  f"{', '.join(LICENSES)}")
        if not isinstance(self.net, int) or not 0 <= self.net <= 254:
            raise ConfigError(f"--net: {self.net!r} is out of range; use 0 to 254")
        _choice("--ssh", self.ssh, SSH_MODES)
        _choice("--mode", self.mode, ALIAS_MODES)
        _choice("--sudo", self.sudo, SUDO_MODES)
        if not 0 <= self.start_delay <= 600:
            raise ConfigError(f"--start-delay: {self.start_delay!r} is out of range; use 0 to 600 seconds")
        return self

    def fixed(self) -> dict:
        """The options a built lab cannot change (compared when `lab up` reuses a directory)."""
        data = asdict(self)
        data.pop("start_delay")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LabOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option}: {value!r} is not valid; use one of {', '.join(allowed)}")


def parse_version(text: str, *, option: str = "version") -> tuple[int, int, int]:
    """`8.17.0` -> (8, 17, 0); the lab plays 8.10 and later (API-key remotes appeared in 8.10)."""
    match = _VERSION.match(text or "")
    if not match:
        raise ConfigError(f"{option}: {text!r} is not a version; write it like 8.17.0")
    version = tuple(int(p) for p in match.groups())
    if version < (8, 10, 0) or version[0] > 9:
        raise ConfigError(f"{option}: {text} is not supported; the lab plays 8.10.0 to 9.x")
    return version  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cluster: str
    ip: str
    home: Path
    ssh_port: int
    http_port: int = HTTP_PORT
    transport_port: int = TRANSPORT_PORT

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "elasticsearch.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.cluster}.log"

    @property
    def service(self) -> Path:
        return self.home / "bin" / "elasticsearch-service"


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    role: str             # "local" or "remote"
    version: str
    license: str
    state_dir: Path
    nodes: tuple[NodeSpec, ...]

    @property
    def url(self) -> str:
        return f"https://{self.nodes[0].ip}:{self.nodes[0].http_port}"


@dataclass(frozen=True)
class Layout:
    """Every path of a lab directory, and its clusters and nodes."""

    dir: Path
    options: LabOptions
    clusters: tuple[ClusterSpec, ...] = field(default=())

    @property
    def local(self) -> ClusterSpec:
        return self.clusters[0]

    @property
    def remotes(self) -> tuple[ClusterSpec, ...]:
        return self.clusters[1:]

    def cluster(self, name: str) -> ClusterSpec:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise ConfigError(f"no cluster named {name!r} in this lab; it has {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [c.name for c in self.clusters]

    def nodes(self) -> list[NodeSpec]:
        return [n for c in self.clusters for n in c.nodes]

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes():
            if node.name == name:
                return node
        raise ConfigError(f"--node: no node named {name!r} in this lab; it has "
                          f"{', '.join(n.name for n in self.nodes())}")

    def aliases(self) -> dict[str, str]:
        """alias -> remote cluster name: my_remote -> remote, my_remote2 -> remote2, ..."""
        return {f"my_{c.name}": c.name for c in self.remotes}

    # paths
    @property
    def pki_dir(self) -> Path:
        return self.dir / "pki"

    @property
    def http_ca(self) -> Path:
        return self.pki_dir / "http-ca.crt"

    @property
    def transport_ca(self) -> Path:
        return self.pki_dir / "transport-ca.crt"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    @property
    def ssh_dir(self) -> Path:
        return self.dir / "ssh"

    @property
    def control_dir(self) -> Path:
        return self.dir / "control"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def lab_json(self) -> Path:
        return self.dir / "lab.json"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    def secret_file(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.secret"

    def elastic_password_file(self, cluster: str) -> Path:
        return self.secret_file(f"{cluster}-elastic-password")

    def user_password_file(self, user: str) -> Path:
        return self.secret_file(f"{user}-password")

    def keystore_password_file(self, cluster: str) -> Path | None:
        return self.secret_file(f"{cluster}-keystore-password") if self.options.keystore_password else None


def plan(lab_dir: str | os.PathLike, options: LabOptions) -> Layout:
    """Name every cluster and node of a lab in `lab_dir` (no I/O)."""
    options.validate()
    lab_dir = Path(lab_dir).absolute()
    specs = [("local", "local", options.local_nodes, options.version, options.license)]
    for r in range(options.remotes):
        specs.append(("remote" if r == 0 else f"remote{r + 1}", "remote", options.remote_nodes,
                      options.remote_version or options.version, options.remote_license or options.license))
    clusters = []
    for k, (name, role, count, version, license_) in enumerate(specs):
        cluster_dir = lab_dir / "clusters" / name
        nodes = tuple(NodeSpec(name=f"{name}-{i}", cluster=name, ip=f"127.{options.net}.{k + 1}.{i + 1}",
                               home=cluster_dir / "nodes" / f"{name}-{i}", ssh_port=SSH_PORTS[options.ssh])
                      for i in range(count))
        clusters.append(ClusterSpec(name, role, version, license_, cluster_dir / "state", nodes))
    return Layout(lab_dir, options, tuple(clusters))


# ----------------------------------------------------------------------------------- building


def build(lab_dir: str | os.PathLike, options: LabOptions) -> Layout:
    """Write a fresh lab into `lab_dir` (which must not hold one yet) and return its layout."""
    layout = plan(lab_dir, options)
    layout.dir.mkdir(parents=True, exist_ok=True)
    for path in (layout.pki_dir, layout.control_dir, layout.run_dir, layout.ssh_dir):
        path.mkdir(exist_ok=True)
    layout.secrets_dir.mkdir(mode=0o700, exist_ok=True)
    http_ca, transport_ca = _make_cas(layout)
    for cluster in layout.clusters:
        _make_cluster_secrets(layout, cluster)
    jobs = [(cluster, node) for cluster in layout.clusters for node in cluster.nodes]
    # Key generation and the keystore's PBKDF2 run in C without the GIL: build nodes side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for future in [pool.submit(_make_node, layout, c, n, http_ca, transport_ca) for c, n in jobs]:
            future.result()
    if package_layout.active():
        _lay_out_like_a_package(layout)
    write_faults(layout, {})
    return layout


def _lay_out_like_a_package(layout: Layout) -> None:
    account = package_layout.service_account()
    for cluster in layout.clusters:
        package_layout.lay_out_state(cluster.state_dir, account)
        for node in cluster.nodes:
            package_layout.lay_out_node(node.home, account)


def _make_cas(layout: Layout) -> tuple[certs.CertificateAuthority, certs.CertificateAuthority]:
    cas = []
    for kind, path in (("HTTP", layout.http_ca), ("Transport", layout.transport_ca)):
        ca = certs.new_ca(dn=f"CN=Lab {kind} CA")
        atomic_write(path, ca.cert_pem(), mode=0o644)
        atomic_write(path.with_suffix(".key"), ca.key_pem(), mode=0o600)
        cas.append(ca)
    return cas[0], cas[1]


def _make_cluster_secrets(layout: Layout, cluster: ClusterSpec) -> None:
    write_secret(layout.elastic_password_file(cluster.name), new_password())
    write_secret(layout.secret_file(f"{cluster.name}-p12-password"), new_password())
    if (path := layout.keystore_password_file(cluster.name)) is not None:
        write_secret(path, new_password())
    if cluster.role == "local":
        for user in LAB_USERS:
            write_secret(layout.user_password_file(user), new_password())


def new_password() -> str:
    return secrets.token_urlsafe(18)


def write_secret(path: Path, value: str) -> None:
    atomic_write(path, value.encode() + b"\n", mode=0o600)


def read_secret(path: Path) -> str:
    return path.read_text().splitlines()[0] if path.exists() else ""


def _make_node(layout: Layout, cluster: ClusterSpec, node: NodeSpec,
               http_ca: certs.CertificateAuthority, transport_ca: certs.CertificateAuthority) -> None:
    home = node.home
    for sub in ("bin", "lib", "config/certs", "data", "logs", "run"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    cluster.state_dir.mkdir(parents=True, exist_ok=True)
    p12_password = read_secret(layout.secret_file(f"{cluster.name}-p12-password"))
    certs_dir = home / "config" / "certs"
    for name, ca in (("http", http_ca), ("transport", transport_ca)):
        cert = certs.issue(ca, f"CN={node.name}", dns=[node.name, "localhost"], ips=[node.ip])
        p12 = pkcs12.dump(p12_password, name=node.name, key=cert.key, chain=[cert.cert],
                          trusted={certs.CA_ALIAS: ca.cert})
        atomic_write(certs_dir / f"{name}.p12", p12, mode=0o660)
        atomic_write(certs_dir / f"{name}_ca.crt", ca.cert_pem(), mode=0o644)
    atomic_write(home / "config" / "elasticsearch.yml", node_yml(layout, cluster, node).encode(), mode=0o660)
    _make_keystore(layout, cluster, home, p12_password)
    atomic_write(home / "lib" / "lab-node.json", json.dumps(node_info(layout, cluster), indent=2).encode())
    for name, body in bin_scripts(home).items():
        atomic_write(home / "bin" / name, body.encode(), mode=0o755)


def _make_keystore(layout: Layout, cluster: ClusterSpec, home: Path, p12_password: str) -> None:
    store = keystore.Keystore.create()
    store.set_string("bootstrap.password", read_secret(layout.elastic_password_file(cluster.name)))
    for setting in P12_SETTINGS:
        store.set_string(setting, p12_password)
    password_file = layout.keystore_password_file(cluster.name)
    fmt = 6 if parse_version(cluster.version) >= (8, 14, 0) else 5
    store.save(home / "config" / keystore.KEYSTORE_FILENAME,
               password=read_secret(password_file) if password_file else "", version=fmt)


def node_info(layout: Layout, cluster: ClusterSpec) -> dict:
    """lib/lab-node.json: what the node's "binary" knows (see ARCHITECTURE.md)."""
    password_file = layout.keystore_password_file(cluster.name)
    return {"version": cluster.version, "cluster": cluster.name, "license": cluster.license,
            "state_dir": str(cluster.state_dir), "control_dir": str(layout.control_dir),
            "start_delay": layout.options.start_delay,
            "keystore_passphrase_file": str(password_file) if password_file else None,
            # The service's `User=`: who the node runs as (root-run labs only, like a package install).
            "user": package_layout.SERVICE_USER if package_layout.active() else None,
            # A files-only lab's node has a home and an SSH endpoint but no process: the service refuses start.
            **({"files_only": True} if layout.options.files_only else {})}


def set_start_delay(layout: Layout, delay: float) -> None:
    """Change the start-up delay of every node of a built lab (the one option a lab can change)."""
    for cluster in layout.clusters:
        for node in cluster.nodes:
            path = node.home / "lib" / "lab-node.json"
            info = json.loads(path.read_text())
            if info.get("start_delay") != delay:
                info["start_delay"] = delay
                atomic_write(path, json.dumps(info, indent=2).encode())


def node_yml(layout: Layout, cluster: ClusterSpec, node: NodeSpec) -> str:
    """The node's elasticsearch.yml in the certificate model (flat keys, like a hand-edited file)."""
    license_type = "trial" if cluster.license == "trial" else "basic"
    lines = [
        f"# Lab node {node.name} of cluster {cluster.name} (Elasticsearch {cluster.version})",
        f"cluster.name: {cluster.name}",
        f"node.name: {node.name}",
        f"network.host: {node.ip}",
        f"http.port: {node.http_port}",
        f"transport.port: {node.transport_port}",
        f"discovery.seed_hosts: {_yaml_list(f'{n.ip}:{n.transport_port}' for n in cluster.nodes)}",
        f"cluster.initial_master_nodes: {_yaml_list(n.name for n in cluster.nodes)}",
        "path.data: data",
        "path.logs: logs",
        "",
        "xpack.security.enabled: true",
        "xpack.security.enrollment.enabled: false",
        "xpack.security.http.ssl.enabled: true",
        "xpack.security.http.ssl.keystore.path: certs/http.p12",
        "xpack.security.transport.ssl.enabled: true",
        "xpack.security.transport.ssl.verification_mode: certificate",
        "xpack.security.transport.ssl.client_authentication: required",
        "xpack.security.transport.ssl.keystore.path: certs/transport.p12",
        "xpack.security.transport.ssl.truststore.path: certs/transport.p12",
        f"xpack.license.self_generated.type: {license_type}",
    ]
    if cluster.role == "local" and layout.options.alias_in_yml:
        lines.append("")
        for alias, remote in layout.aliases().items():
            lines += [f"cluster.remote.{alias}.{k}: {v}" for k, v in alias_settings(layout, remote).items()]
    return "\n".join(lines) + "\n"


def alias_settings(layout: Layout, remote_name: str) -> dict[str, str]:
    """The certificate-model alias settings (flat, yml-ready values) pointing at a remote's transport port."""
    remote = layout.cluster(remote_name)
    if layout.options.mode == "proxy":
        first = remote.nodes[0]
        return {"mode": "proxy", "proxy_address": f"{first.ip}:{first.transport_port}"}
    seeds = [f"{n.ip}:{n.transport_port}" for n in remote.nodes[:3]]
    return {"mode": "sniff", "seeds": _yaml_list(seeds)}


def _yaml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def bin_scripts(home: Path) -> dict[str, str]:
    """The node's bin/ scripts; each runs this Python (fixed at build time) on a lab module."""
    python, q_home = shlex.quote(sys.executable), shlex.quote(str(home))

    def script(body: str) -> str:
        return f"#!/bin/sh\n# Lab node script (built by esremote lab up)\nES_HOME={q_home}\nexport ES_HOME\n{body}\n"

    return {
        "elasticsearch": script(f'exec {python} -m esremote.lab.node --home {q_home} "$@"'),
        "elasticsearch-keystore": script(f'exec {python} -m esremote.lab.tools.keystore_cli "$@"'),
        "elasticsearch-certutil": script(f'exec {python} -m esremote.lab.tools.certutil_cli "$@"'),
        "elasticsearch-service": script(f'exec {python} -m esremote.lab.node.service --home {q_home} "$@"'),
    }


def write_faults(layout: Layout, faults: dict) -> None:
    layout.control_dir.mkdir(exist_ok=True)
    atomic_write(layout.control_dir / "faults.json", (json.dumps(faults, indent=2) + "\n").encode(),
                 mode=0o644)
