"""A lab node's start-up configuration: `lib/lab-node.json`, `config/elasticsearch.yml`, the keystore
and the TLS files, validated the way Elasticsearch validates them at boot.

`load_node_config(home, keystore_password)` returns a `NodeConfig` or raises `StartupError` whose
message is Elasticsearch's own (the node logs it and exits 1):

    unknown setting [x] please check that any required plugins are installed, or check the
        breaking changes documentation for removed settings
    Setting [x] is a secure setting and must be stored inside the Elasticsearch keystore, but was
        found inside elasticsearch.yml
    Failed to parse value [x] as only [true] or [false] are allowed.      (and the other types)
    failed to load SSL configuration [prefix] - cannot read configured [PKCS12] keystore [path] ...
    invalid SSL configuration for xpack.security.remote_cluster_server.ssl - server ssl
        configuration requires a key and certificate, ...

The settings it accepts are in `registry.py`, the TLS contexts are built by `tls.py`.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esremote.lab.node.errors import SettingValueError, StartupError  # noqa: F401 (part of this module's API)
from esremote.lab.node.registry import lookup, unknown_setting  # noqa: F401 (lookup: part of this module's API)
from esremote.lab.node.tls import build_ssl_contexts


def parse_version(text: str) -> tuple[int, int, int]:
    """`8.15.0` (or `8.15`, `9.0.0-SNAPSHOT`) -> (8, 15, 0)."""
    numbers = [int(p) for p in re.findall(r"\d+", text.split("-", 1)[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


# ------------------------------------------------------------------------------ yml

def read_yml(path: Path) -> dict[str, Any]:
    """elasticsearch.yml as Elasticsearch flattens it (values as text, `${...}` resolved); the
    lab's own reader (formats/yml.py), never the one esremote writes the file with."""
    from esremote.lab.formats import yml

    try:
        return yml.read_settings(path)
    except yml.YmlFormatError as exc:
        raise StartupError(exc.message, exc.exception) from None


# ------------------------------------------------------------------------------ the config

_LAZY_LOCK = threading.Lock()  # builds a lazily made TLS context once

@dataclass
class NodeConfig:
    """What a node knows after start-up; see ARCHITECTURE.md (NodeContext.config)."""

    home: Path
    name: str
    cluster_name: str
    ip: str
    http_port: int
    transport_port: int
    remote_cluster_port: int | None
    version: tuple[int, int, int]
    version_text: str
    license: str
    state_dir: Path
    control_dir: Path
    settings: dict[str, Any]          # flat, parsed
    raw_settings: dict[str, Any]      # flat, as written in the yml
    secure: dict[str, str]            # keystore strings (file entries as latin-1 text)
    roles: list[str]
    http_ssl: bool = True
    http_server: ssl.SSLContext | None = None
    transport_server: ssl.SSLContext | None = None
    transport_client: ssl.SSLContext | None = None
    remote_cluster_server: ssl.SSLContext | None = None
    trust_descriptions: dict[str, str] = field(default_factory=dict)
    keystore_path: Path | None = None
    lab: dict[str, Any] = field(default_factory=dict)
    lazy_contexts: dict[str, Any] = field(default_factory=dict, repr=False)
    lazy_factories: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def log_path(self) -> Path:
        logs = self.settings.get("path.logs")
        base = Path(logs) if logs else self.home / "logs"
        if not base.is_absolute():
            base = self.home / base
        return base / f"{self.cluster_name}.log"

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def remote_cluster_client(self) -> ssl.SSLContext | None:
        """Built on first use: with no CA configured it loads the system trust store (slow), and
        most nodes never open an API-key connection."""
        with _LAZY_LOCK:
            if "remote_cluster_client" not in self.lazy_contexts and self.lazy_factories.get("remote_cluster_client"):
                self.lazy_contexts["remote_cluster_client"] = self.lazy_factories.pop("remote_cluster_client")()
        return self.lazy_contexts.get("remote_cluster_client")

    @remote_cluster_client.setter
    def remote_cluster_client(self, context: ssl.SSLContext | None) -> None:
        self.lazy_contexts["remote_cluster_client"] = context


def read_lab_node(home: Path) -> dict[str, Any]:
    path = home / "lib" / "lab-node.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(f"{path} is missing: this home was not built by the lab builder",
                           "java.nio.file.NoSuchFileException") from None
    except ValueError as exc:
        raise StartupError(f"{path} is not valid JSON: {exc}") from None


def early_log_path(home: Path) -> Path:
    """Where a node logs before its configuration is valid: logs/<cluster>.log as far as known."""
    cluster = "elasticsearch"
    logs = home / "logs"
    try:
        cluster = read_lab_node(home).get("cluster", cluster)
    except StartupError:
        pass
    try:
        flat = read_yml(home / "config" / "elasticsearch.yml")
        cluster = str(flat.get("cluster.name", cluster))
        if flat.get("path.logs"):
            logs = Path(str(flat["path.logs"]))
            logs = logs if logs.is_absolute() else home / logs
    except Exception:  # the real error is reported by load_node_config
        pass
    return logs / f"{cluster}.log"


def load_node_config(home: str | os.PathLike, keystore_password: str | None = None,
                     *, build_ssl: bool = True) -> NodeConfig:
    """Read and validate everything a node reads at start; StartupError on the first problem."""
    home = Path(home).resolve()
    lab = read_lab_node(home)
    yml_path = home / "config" / "elasticsearch.yml"
    try:
        raw = read_yml(yml_path)
    except FileNotFoundError:
        raise StartupError(f"{yml_path} does not exist", "java.nio.file.NoSuchFileException") from None
    version_text = str(lab.get("version", "8.17.0"))
    secure, keystore_path = _read_keystore(home, keystore_password, version_text)
    settings = _validate(raw, secure, parse_version(version_text))
    cluster_name = str(settings.get("cluster.name", lab.get("cluster", "elasticsearch")))
    name = str(settings.get("node.name", home.name))
    ip = _address(settings)
    server_enabled = settings.get("remote_cluster_server.enabled", False)
    if server_enabled and any(k.startswith("transport.profiles._remote_cluster.") for k in settings):
        raise StartupError("Remote Access settings should not be configured using the [_remote_cluster] "
                           "profile. Use the [remote_cluster.] settings instead.")
    config = NodeConfig(
        home=home, name=name, cluster_name=cluster_name, ip=ip,
        http_port=settings.get("http.port", 9200), transport_port=settings.get("transport.port", 9300),
        remote_cluster_port=settings.get("remote_cluster.port", 9443) if server_enabled else None,
        version=parse_version(version_text), version_text=version_text,
        license=str(lab.get("license", settings.get("xpack.license.self_generated.type", "basic"))),
        state_dir=Path(lab.get("state_dir", home / "state")), control_dir=Path(lab.get("control_dir", home / "control")),
        settings=settings, raw_settings=raw, secure=secure,
        roles=settings.get("node.roles", ["master", "data", "ingest", "ml", "remote_cluster_client", "transform"]),
        keystore_path=keystore_path, lab=lab,
    )
    if build_ssl:
        build_ssl_contexts(config)
        from esremote.lab.net.signing import check_startup  # noqa: PLC0415 - 9.3 signing files
        check_startup(config)
    return config


def _address(settings: dict[str, Any]) -> str:
    host = settings.get("network.host") or "127.0.0.1"
    host = host[0] if isinstance(host, list) else host
    return {"_local_": "127.0.0.1", "localhost": "127.0.0.1", "0.0.0.0": "127.0.0.1"}.get(host, host)


def _read_keystore(home: Path, password: str | None, version: str) -> tuple[dict[str, str], Path | None]:
    from esremote.lab.formats import keystore

    path = home / "config" / keystore.KEYSTORE_FILENAME
    if not path.exists():
        return {}, None
    try:
        store = keystore.Keystore.open(path, password or "", keystore_format(version))
    except keystore.KeystoreFormatError as exc:  # unreadable files included, as Java names them
        raise StartupError(exc.message, exc.exception) from None
    return store.strings(), path


def keystore_format(version: str) -> int:
    """The newest keystore format a version reads and writes: 6 from 8.14 on, 5 before."""
    return 6 if parse_version(str(version)) >= (8, 14, 0) else 5


def _validate(raw: dict[str, Any], secure: dict[str, str],
              version: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Elasticsearch's order: every yml key known (to this version), not secure, well-typed; every
    keystore key known."""
    parsed: dict[str, Any] = {}
    for key in sorted(raw):
        definition = lookup(key, version)
        if definition is None:
            raise StartupError(unknown_setting(key))
        if definition.secure:
            raise StartupError(f"Setting [{key}] is a secure setting and must be stored inside the "
                               "Elasticsearch keystore, but was found inside elasticsearch.yml")
        try:
            parsed[key] = definition.parse(key, raw[key])
        except SettingValueError as exc:
            raise StartupError(str(exc)) from None
    _validate_remotes(parsed)
    for key in sorted(secure):
        definition = lookup(key, version)
        if definition is None:
            raise StartupError(unknown_setting(key))
        if not definition.secure:
            raise StartupError(f"Setting [{key}] is a non-secure setting and must be stored inside "
                               "elasticsearch.yml, but was found inside the Elasticsearch keystore")
    return parsed


def _validate_remotes(parsed: dict[str, Any]) -> None:
    """The remote-cluster validators (strategy, "not enabled") hold for the yml too."""
    from esremote.lab import errors
    from esremote.lab.models.settings import REMOTE_PREFIX, validate_remote

    remote_keys = {k for k in parsed if k.startswith(REMOTE_PREFIX)}
    if remote_keys:
        try:
            validate_remote(parsed, remote_keys)
        except errors.ESError as exc:
            raise StartupError(exc.reason) from None
