"""Helpers for lab-core tests: build a node home like the lab builder does (certificates, keystore,
yml, lib/lab-node.json) and run the node in this process (`running_node`) or as a subprocess
(`node_process`). TLS is real: the HTTP CA is written beside the home for clients."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import ssl

from esremote import keystore, pki
from esremote.lab.node import identity
from esremote.lab.ops import package_layout

ELASTIC_PASSWORD = "lab-elastic-pw"
P12_PASSWORD = "p12-secret"


@functools.lru_cache(maxsize=None)
def _cas() -> tuple[pki.CertificateAuthority, pki.CertificateAuthority]:
    return pki.CertificateAuthority.create(dn="CN=lab http CA"), pki.CertificateAuthority.create(dn="CN=lab transport CA")


@functools.lru_cache(maxsize=None)
def _node_key():
    return pki.generate_key(2048)


@functools.lru_cache(maxsize=None)
def _node_cert(ca_index: int, name: str, ip: str) -> pki.NodeCertificate:
    """A node certificate (CN and SANs like certutil's) on one process-wide key: a 2048-bit key per
    certificate would dominate the tests' run time."""
    return pki.issue(_cas()[ca_index], name, dns=[name, "localhost"], ips=[ip], days=30, key=_node_key())


@dataclass
class Home:
    path: Path
    name: str
    cluster: str
    ip: str
    state_dir: Path
    control_dir: Path
    http_ca: Path

    @property
    def log(self) -> Path:
        return self.path / "logs" / f"{self.cluster}.log"

    @property
    def url(self) -> str:
        return f"https://{self.ip}:9200"

    def write_yml(self, text: str) -> None:
        (self.path / "config" / "elasticsearch.yml").write_text(text)

    def yml(self) -> str:
        return (self.path / "config" / "elasticsearch.yml").read_text()

    def set_fault(self, name: str, **options: Any) -> None:
        path = self.control_dir / "faults.json"
        faults = json.loads(path.read_text()) if path.exists() else {}
        faults[name] = {"nodes": None, **options}
        path.write_text(json.dumps(faults))


def base_yml(name: str, cluster: str, ip: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    yml = {
        "cluster.name": cluster, "node.name": name, "network.host": ip, "http.port": 9200, "transport.port": 9300,
        "discovery.seed_hosts": [f"{ip}:9300"], "cluster.initial_master_nodes": [name],
        "xpack.security.enabled": True, "xpack.security.enrollment.enabled": False,
        "xpack.security.http.ssl.enabled": True, "xpack.security.http.ssl.keystore.path": "certs/http.p12",
        "xpack.security.transport.ssl.enabled": True,
        "xpack.security.transport.ssl.verification_mode": "certificate",
        "xpack.security.transport.ssl.client_authentication": "required",
        "xpack.security.transport.ssl.keystore.path": "certs/transport.p12",
        "xpack.security.transport.ssl.truststore.path": "certs/transport.p12",
        "xpack.license.self_generated.type": "trial",
    }
    yml.update(extra or {})
    return {k: v for k, v in yml.items() if v is not None}


def build_home(root: Path, *, name: str = "node-0", cluster: str = "local", ip: str = "127.0.1.1",
               version: str = "8.15.0", license: str = "trial", yml: dict[str, Any] | None = None,
               secure: dict[str, str] | None = None, keystore_password: str = "",
               state_dir: Path | None = None) -> Home:
    """A node home as `lab up` lays it out, with flat yml keys (`yml` adds or, with None, removes)."""
    home = root / name
    for sub in ("bin", "config/certs", "lib", "logs", "data"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    state_dir = state_dir or root / "state"
    control_dir = root / "control"
    control_dir.mkdir(exist_ok=True)
    http_ca, transport_ca = _cas()
    certs = home / "config" / "certs"
    (certs / "http.p12").write_bytes(pki.to_pkcs12(_node_cert(0, name, ip), http_ca, P12_PASSWORD, name=name))
    (certs / "transport.p12").write_bytes(pki.to_pkcs12(_node_cert(1, name, ip), transport_ca, P12_PASSWORD, name=name))
    (certs / "http_ca.crt").write_bytes(http_ca.cert_pem())
    (certs / "transport_ca.crt").write_bytes(transport_ca.cert_pem())
    settings = base_yml(name, cluster, ip)
    settings.update(yml or {})
    settings = {k: v for k, v in settings.items() if v is not None}
    (home / "config" / "elasticsearch.yml").write_text(
        "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
    store = keystore.Keystore.create(version=5)
    entries = {"bootstrap.password": ELASTIC_PASSWORD,
               "xpack.security.http.ssl.keystore.secure_password": P12_PASSWORD,
               "xpack.security.transport.ssl.keystore.secure_password": P12_PASSWORD,
               "xpack.security.transport.ssl.truststore.secure_password": P12_PASSWORD}
    entries.update(secure or {})
    for key, value in entries.items():
        if value is not None:
            store.set_string(key, value)
    store.save(home / "config" / keystore.KEYSTORE_FILENAME, keystore_password, version=5)
    (home / "lib" / "lab-node.json").write_text(json.dumps({
        "version": version, "cluster": cluster, "license": license, "state_dir": str(state_dir),
        "control_dir": str(control_dir), "start_delay": 0.0, "keystore_passphrase_file": None}))
    if package_layout.active():  # run as root, nodes run as elasticsearch: lay the home out for it
        account = package_layout.service_account()
        package_layout.lay_out_node(home, account)
        package_layout.lay_out_state(state_dir, account)
    return Home(home, name, cluster, ip, state_dir, control_dir, certs / "http_ca.crt")


def node_env(env: dict | None = None) -> dict:
    """The environment `bin/elasticsearch-service` gives a node: run by root, the service user."""
    environment = {**os.environ, **(env or {})}
    if package_layout.active():
        environment[identity.RUN_AS_ENV] = package_layout.SERVICE_USER
    return environment


@contextlib.contextmanager
def running_node(home: Home, keystore_password: str | None = None) -> Iterator[Any]:
    """Start the node in this process; yields its NodeContext; stops it on exit."""
    from esremote.lab.node.process import Node

    node = Node(home.path, keystore_password)
    ctx = node.start()
    try:
        yield ctx
    finally:
        node.stop()


def node_process(home: Home, *args: str, password: str | None = None, env: dict | None = None,
                 wait: bool = True) -> subprocess.Popen:
    """Run `python -m esremote.lab.node --home HOME ARGS` (what bin/elasticsearch does)."""
    environment = node_env(env)
    proc = subprocess.Popen([sys.executable, "-m", "esremote.lab.node", "--home", str(home.path), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment,
                            text=True)
    if password is not None:
        proc.stdin.write(password + "\n")
        proc.stdin.flush()
    if wait:
        wait_for_log(home, "started", proc=proc)
    return proc


def wait_for_log(home: Home, text: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> str:
    """Poll the node's log until a line contains `text` (fails early if the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = home.log.read_text() if home.log.exists() else ""
        for line in content.splitlines():
            if text in line:
                return line
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"node exited with {proc.returncode}: {proc.stderr.read()}\n{content}")
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r} within {timeout}s")


class Client:
    """A tiny HTTPS client (real TLS, the lab's HTTP CA) returning (status, body, headers)."""

    def __init__(self, home: Home, user: str = "elastic", password: str = ELASTIC_PASSWORD) -> None:
        self.url = home.url
        self.context = ssl.create_default_context(cafile=str(home.http_ca))
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def as_user(self, user: str, password: str) -> "Client":
        clone = object.__new__(Client)
        clone.url, clone.context = self.url, self.context
        clone.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return clone

    def with_api_key(self, encoded: str) -> "Client":
        clone = object.__new__(Client)
        clone.url, clone.context, clone.auth = self.url, self.context, f"ApiKey {encoded}"
        return clone

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                raw: bytes | None = None) -> tuple[int, Any, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.auth:
            req.add_header("Authorization", self.auth)
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as resp:
                payload = resp.read()
                status, hdrs = resp.status, resp.headers
        except urllib.error.HTTPError as exc:
            payload, status, hdrs = exc.read(), exc.code, exc.headers
        ctype = hdrs.get("content-type", "")
        parsed = json.loads(payload) if payload and "json" in ctype else payload.decode()
        return status, parsed, hdrs

    def get(self, path: str, **kw: Any):
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any = None, **kw: Any):
        return self.request("PUT", path, body, **kw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, body: Any = None, **kw: Any):
        return self.request("DELETE", path, body, **kw)
