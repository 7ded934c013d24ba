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

The registry (`lookup`) describes every setting the lab knows: name pattern, type, dynamic or
static, secure or not. `settings.py` uses it for `PUT _cluster/settings`.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


def parse_version(text: str) -> tuple[int, int, int]:
    """`8.15.0` (or `8.15`, `9.0.0-SNAPSHOT`) -> (8, 15, 0)."""
    numbers = [int(p) for p in re.findall(r"\d+", text.split("-", 1)[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


class StartupError(Exception):
    """The node refuses to start; `exception` is the Java class name that prefixes the log line."""

    def __init__(self, message: str, exception: str = "java.lang.IllegalArgumentException",
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exception = exception
        self.cause = cause  # the `Caused by:` line Java prints under it


class SettingValueError(ValueError):
    """A value that does not parse as its setting's type (the message is Elasticsearch's)."""


# ------------------------------------------------------------------------------ value parsers

def parse_bool(key: str, value: Any) -> bool:
    text = _text(value)
    if text == "true":
        return True
    if text == "false":
        return False
    raise SettingValueError(f"Failed to parse value [{text}] as only [true] or [false] are allowed.")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return "" if value is None else str(value)


def int_parser(minimum: int | None = None, maximum: int | None = None) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        text = _text(value)
        try:
            number = int(text)
        except ValueError:
            raise SettingValueError(f"Failed to parse value [{text}] for setting [{key}]") from None
        if minimum is not None and number < minimum:
            raise SettingValueError(f"Failed to parse value [{text}] for setting [{key}] must be >= {minimum}")
        if maximum is not None and number > maximum:
            raise SettingValueError(f"Failed to parse value [{text}] for setting [{key}] must be <= {maximum}")
        return number
    return parse


def parse_port_range(key: str, value: Any) -> int:
    """`9200` or `9200-9300`: the first port of the range (the lab binds exactly that one)."""
    text = _text(value)
    first = text.split("-", 1)[0].split(",", 1)[0].strip()
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text.replace(" ", "")) or not 0 <= int(first) <= 65535:
        raise SettingValueError(f"Failed to parse value [{text}] for setting [{key}]")
    return int(first)


_TIME = re.compile(r"-?\d+(\.\d+)?(nanos|micros|ms|s|m|h|d)")
_BYTES = re.compile(r"-?\d+(\.\d+)?\s*(b|kb|k|mb|m|gb|g|tb|t|pb|p)?", re.IGNORECASE)


def parse_time(key: str, value: Any) -> str:
    text = _text(value).strip()
    if text in ("-1", "0") or _TIME.fullmatch(text):
        return text
    raise SettingValueError(
        f"failed to parse setting [{key}] with value [{text}] as a time value: unit is missing or unrecognized")


def parse_bytes(key: str, value: Any) -> str:
    text = _text(value).strip()
    if text.endswith("%") or _BYTES.fullmatch(text):
        return text
    raise SettingValueError(
        f"failed to parse setting [{key}] with value [{text}] as a size in bytes: unit is missing or unrecognized")


def parse_str(key: str, value: Any) -> str:
    return _text(value)


def parse_list(key: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [_text(v) for v in value]
    text = _text(value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def enum_parser(java_enum: str, values: tuple[str, ...]) -> Callable[[str, Any], str]:
    """Case-insensitive enum, failing like Java's `Enum.valueOf(value.toUpperCase())`."""
    def parse(key: str, value: Any) -> str:
        text = _text(value)
        if text.lower() in values:
            return text.lower()
        raise SettingValueError(f"No enum constant {java_enum}.{text.upper()}")
    return parse


def choice_parser(message: str, values: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        text = _text(value)
        if text.lower() in values:
            return text.lower()
        raise SettingValueError(message.format(value=text, key=key))
    return parse


def parse_port(entry: str) -> int:
    """Elasticsearch's `RemoteConnectionStrategy.parsePort` for `host:port` seeds and proxy addresses."""
    try:
        port = int(entry[entry.rindex(":") + 1:])
    except ValueError:
        raise SettingValueError("failed to parse port") from None
    if port <= 0:
        raise SettingValueError(f"port number must be > 0 but was: [{port}]")
    return port


def parse_address(key: str, value: Any) -> str:
    text = _text(value)
    if text == "":
        return text
    if ":" not in text:
        raise SettingValueError(f"remote hosts need to be configured as [host:port], found [{text}] instead")
    parse_port(text)
    return text


def parse_seeds(key: str, value: Any) -> list[str]:
    seeds = parse_list(key, value)
    for seed in seeds:
        parse_address(key, seed)
    return seeds


parse_connection_mode = enum_parser("org.elasticsearch.transport.RemoteConnectionStrategy.ConnectionStrategy",
                                    ("sniff", "proxy"))
parse_verification_mode = choice_parser("could not resolve ssl client verification mode, unknown value [{value}]",
                                        ("full", "certificate", "none"))
parse_client_auth = choice_parser("could not resolve ssl client authentication, unknown value [{value}]",
                                  ("none", "optional", "required"))
parse_license_type = choice_parser(
    "Invalid value [{value}] for [xpack.license.self_generated.type]. Must be one of [trial, basic]",
    ("basic", "trial"))


# ------------------------------------------------------------------------------ the registry

@dataclass(frozen=True)
class SettingDef:
    """One setting (or a family, `*` = one name segment, `**` = any rest): how it parses and
    whether it may change at runtime (dynamic) or live only in the keystore (secure)."""

    pattern: str
    parse: Callable[[str, Any], Any] = parse_str
    dynamic: bool = False
    secure: bool = False

    def regex(self) -> re.Pattern:
        parts = [re.escape(p) for p in self.pattern.split(".")]
        body = r"\.".join(parts).replace(r"\*\*", ".+").replace(r"\*", r"[^.]+")
        return re.compile(body)


def _defs() -> list[SettingDef]:
    d: list[SettingDef] = []

    def add(pattern: str, parse: Callable[[str, Any], Any] = parse_str, dynamic: bool = False,
            secure: bool = False) -> None:
        d.append(SettingDef(pattern, parse, dynamic, secure))

    boolean, port = parse_bool, int_parser(0, 65535)
    # Node, network, paths, discovery.
    for key in ("cluster.name", "node.name", "node.description", "path.home", "path.logs",
                "path.shared_data", "node.attr.*", "network.host", "network.bind_host",
                "network.publish_host", "http.host", "http.bind_host", "http.publish_host",
                "transport.host", "transport.bind_host", "transport.publish_host",
                "discovery.type", "cluster.routing.allocation.awareness.attributes",
                "http.cors.allow-origin", "http.cors.allow-headers", "http.cors.allow-methods",
                "node.processors", "ingest.geoip.downloader.endpoint"):
        add(key)
    for key in ("path.data", "path.repo", "discovery.seed_hosts", "cluster.initial_master_nodes", "discovery.seed_providers",
                "node.roles", "cluster.remote.node.attr"):
        add(key, parse_list)
    add("http.port", parse_port_range)
    add("transport.port", parse_port_range)
    add("http.publish_port", int_parser(-1, 65535))
    add("transport.publish_port", int_parser(-1, 65535))
    for key in ("http.cors.enabled", "http.compression", "bootstrap.memory_lock",
                "ingest.geoip.downloader.enabled", "node.store.allow_mmap", "transport.compress",
                "network.tcp.keep_alive", "network.tcp.no_delay", "network.tcp.reuse_address",
                "http.detailed_errors.enabled", "xpack.ml.enabled", "xpack.monitoring.collection.enabled",
                "xpack.watcher.enabled", "xpack.graph.enabled", "xpack.security.audit.enabled",
                "xpack.security.authc.token.enabled", "xpack.security.authc.api_key.enabled",
                "xpack.security.enrollment.enabled", "xpack.security.fips_mode.enabled",
                "xpack.security.dls_fls.enabled", "xpack.ccr.enabled", "xpack.transform.enabled"):
        add(key, boolean)
    for key in ("http.max_content_length", "indices.memory.index_buffer_size",
                "indices.fielddata.cache.size", "indices.queries.cache.size", "http.max_header_size",
                "http.max_initial_line_length", "indices.breaker.total.limit"):
        add(key, parse_bytes)
    add("cluster.routing.allocation.disk.watermark.*", parse_bytes, dynamic=True)
    add("cluster.routing.allocation.disk.threshold_enabled", boolean, dynamic=True)
    add("cluster.routing.allocation.enable", dynamic=True)
    add("cluster.routing.rebalance.enable", dynamic=True)
    add("cluster.routing.allocation.cluster_concurrent_rebalance", int_parser(-1), dynamic=True)
    add("cluster.routing.allocation.node_concurrent_recoveries", int_parser(0), dynamic=True)
    add("cluster.max_shards_per_node", int_parser(1), dynamic=True)
    add("cluster.info.update.interval", parse_time, dynamic=True)
    add("indices.recovery.*", dynamic=True)
    add("logger.**", dynamic=True)
    add("action.destructive_requires_name", boolean, dynamic=True)
    add("action.auto_create_index", dynamic=True)
    add("search.default_search_timeout", parse_time, dynamic=True)
    add("search.max_buckets", int_parser(0), dynamic=True)
    add("thread_pool.*.size", int_parser(1))
    add("thread_pool.*.queue_size", int_parser(-1))
    add("xpack.ml.max_open_jobs", int_parser(1), dynamic=True)
    add("xpack.ml.max_machine_memory_percent", int_parser(5, 200), dynamic=True)
    add("xpack.monitoring.collection.interval", parse_time, dynamic=True)
    # Licence and security.
    add("xpack.license.self_generated.type", parse_license_type)
    add("xpack.security.enabled", boolean)
    add("xpack.security.authc.anonymous.username")
    add("xpack.security.authc.anonymous.roles", parse_list)
    add("xpack.security.authc.anonymous.authz_exception", boolean)
    add("xpack.security.authc.realms.*.*.order", int_parser())
    add("xpack.security.authc.realms.*.*.enabled", boolean)
    add("xpack.security.authc.realms.*.*.**")
    add("xpack.security.authc.password_hashing.algorithm")
    add("xpack.security.authc.api_key.cache.*")
    add("xpack.security.transport.filter.*", parse_list, dynamic=True)
    add("xpack.security.http.filter.*", parse_list, dynamic=True)
    add("xpack.security.remote_cluster.filter.*", parse_list, dynamic=True)
    add("bootstrap.password", secure=True)
    add("keystore.seed", secure=True)
    add("autoconfiguration.password_hash", secure=True)
    add("xpack.security.http.ssl.secure_key_passphrase", secure=True)
    # TLS contexts.
    for prefix in SSL_PREFIXES:
        add(f"{prefix}.enabled", boolean)
        add(f"{prefix}.verification_mode", parse_verification_mode)
        if prefix != "xpack.security.remote_cluster_client.ssl":
            add(f"{prefix}.client_authentication", parse_client_auth)
        add(f"{prefix}.supported_protocols", parse_list)
        add(f"{prefix}.cipher_suites", parse_list)
        add(f"{prefix}.handshake_timeout", parse_time)
        add(f"{prefix}.key")
        add(f"{prefix}.certificate")
        add(f"{prefix}.certificate_authorities", parse_list)
        add(f"{prefix}.secure_key_passphrase", secure=True)
        for store in ("keystore", "truststore"):
            add(f"{prefix}.{store}.path")
            add(f"{prefix}.{store}.type")
            add(f"{prefix}.{store}.algorithm")
            add(f"{prefix}.{store}.secure_password", secure=True)
        add(f"{prefix}.keystore.secure_key_password", secure=True)
    # Remote cluster server (static) and remote clusters (dynamic per alias).
    add("remote_cluster_server.enabled", boolean)
    add("remote_cluster.host", parse_list)
    add("remote_cluster.bind_host", parse_list)
    add("remote_cluster.publish_host", parse_list)
    add("remote_cluster.port", port)
    add("remote_cluster.publish_port", int_parser(-1, 65535))
    add("remote_cluster.tcp.*")
    add("transport.profiles.*.**")
    add("cluster.remote.initial_connect_timeout", parse_time)
    add("cluster.remote.connections_per_cluster", int_parser(1))
    add("cluster.remote.connect", boolean)
    add("cluster.remote.*.mode", parse_connection_mode, dynamic=True)
    add("cluster.remote.*.seeds", parse_seeds, dynamic=True)
    add("cluster.remote.*.node_connections", int_parser(1), dynamic=True)
    add("cluster.remote.*.proxy", parse_address, dynamic=True)
    add("cluster.remote.*.proxy_address", parse_address, dynamic=True)
    add("cluster.remote.*.proxy_socket_connections", int_parser(1), dynamic=True)
    add("cluster.remote.*.server_name", dynamic=True)
    add("cluster.remote.*.skip_unavailable", boolean, dynamic=True)
    add("cluster.remote.*.transport.ping_schedule", parse_time, dynamic=True)
    add("cluster.remote.*.transport.compress", dynamic=True)
    add("cluster.remote.*.transport.compression_scheme", dynamic=True)
    add("cluster.remote.*.credentials", secure=True)
    return d


SSL_PREFIXES = ("xpack.security.http.ssl", "xpack.security.transport.ssl",
                "xpack.security.remote_cluster_server.ssl", "xpack.security.remote_cluster_client.ssl")

_EXACT: dict[str, SettingDef] | None = None
_PATTERNS: list[tuple[re.Pattern, SettingDef]] = []


def lookup(key: str) -> SettingDef | None:
    """The definition of a setting, or None when Elasticsearch would not know it."""
    global _EXACT
    if _EXACT is None:
        definitions = _defs()
        _PATTERNS.extend((d.regex(), d) for d in definitions if "*" in d.pattern)
        _EXACT = {d.pattern: d for d in definitions if "*" not in d.pattern}
    if key in _EXACT:
        return _EXACT[key]
    found = None
    for regex, definition in _PATTERNS:
        if regex.fullmatch(key):
            found = definition  # later, more specific definitions win
    return found


def unknown_setting(key: str) -> str:
    return (f"unknown setting [{key}] please check that any required plugins are installed, "
            "or check the breaking changes documentation for removed settings")


def validate_value(key: str, value: Any) -> Any:
    """Parse one setting's value; raises SettingValueError with Elasticsearch's message."""
    definition = lookup(key)
    if definition is None:
        raise SettingValueError(unknown_setting(key))
    return definition.parse(key, value)


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
    secure, keystore_path = _read_keystore(home, keystore_password, lab.get("version", "8.17.0"))
    settings = _validate(raw, secure)
    version_text = str(lab.get("version", "8.17.0"))
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


def _validate(raw: dict[str, Any], secure: dict[str, str]) -> dict[str, Any]:
    """Elasticsearch's order: every yml key known, not secure, well-typed; every keystore key known."""
    parsed: dict[str, Any] = {}
    for key in sorted(raw):
        definition = lookup(key)
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
        definition = lookup(key)
        if definition is None:
            raise StartupError(unknown_setting(key))
        if not definition.secure:
            raise StartupError(f"Setting [{key}] is a non-secure setting and must be stored inside "
                               "elasticsearch.yml, but was found inside the Elasticsearch keystore")
    return parsed


# ------------------------------------------------------------------------------ TLS contexts

_LAZY_LOCK = threading.Lock()


class _Material:
    """A TLS identity and trust read from the files one `*.ssl` prefix names (PEM strings)."""

    def __init__(self) -> None:
        self.chain_pem: str | None = None
        self.key_pem: str | None = None
        self.ca_pems: list[str] = []
        self.trust_description = "JDK-trusted-certs"


def _ssl_error(prefix: str, message: str, cause: str | None = None) -> StartupError:
    return StartupError(f"failed to load SSL configuration [{prefix}] - {message}",
                        "org.elasticsearch.ElasticsearchSecurityException", cause)


def _resolve(config: NodeConfig, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else config.config_dir / path


def _read_file(prefix: str, what: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] because the file does not exist") from None
    except PermissionError:
        raise _ssl_error(prefix, f"not permitted to read the {what} file [{path}]",
                         f"java.nio.file.AccessDeniedException: {path}") from None
    except OSError as exc:
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] - {exc.strerror}") from None


def _store_type(config: NodeConfig, prefix: str, store: str, path: Path) -> str:
    kind = str(config.settings.get(f"{prefix}.{store}.type") or "").upper()
    if not kind:
        kind = "PKCS12" if path.suffix.lower() in (".p12", ".pfx", ".pkcs12") else "jks"
    if kind not in ("PKCS12",):
        raise _ssl_error(prefix, f"cannot read configured [{kind}] keystore [{path}] - the lab reads PKCS#12 only")
    return kind


_P12_CACHE: dict[tuple[bytes, str], Any] = {}


def _open_p12(prefix: str, what: str, path: Path, password: str):
    """Open a PKCS#12 file (decryption is slow: the same file and password are opened once)."""
    from esremote.lab.formats import pkcs12

    data = _read_file(prefix, what, path)
    cached = _P12_CACHE.get((data, password))
    if cached is not None:
        return cached
    try:
        _P12_CACHE[(data, password)] = contents = pkcs12.load(data, password)
        return contents
    except pkcs12.Pkcs12Error:
        given = "a keystore password was provided" if password else "no password was provided"
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] - this is usually caused by "
                                 f"an incorrect password; ({given})") from None


def _pem(cert) -> str:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _read_material(config: NodeConfig, prefix: str) -> _Material:
    s, secure, m = config.settings, config.secure, _Material()
    keystore_path = s.get(f"{prefix}.keystore.path")
    if keystore_path and s.get(f"{prefix}.key"):
        raise StartupError(f"[{prefix}.keystore.path] and [{prefix}.key] may not be used at the same time")
    if keystore_path:
        path = _resolve(config, keystore_path)
        kind = _store_type(config, prefix, "keystore", path)
        contents = _open_p12(prefix, f"[{kind}] keystore", path,
                             secure.get(f"{prefix}.keystore.secure_password", ""))
        if contents.key is not None and contents.cert is not None:
            m.key_pem, m.chain_pem = _key_pem(contents.key), "".join(_pem(c) for c in contents.chain)
        m.ca_pems = [_pem(c) for c in contents.trusted.values()]
        m.trust_description = f"StoreTrustConfig{{path={keystore_path}, password=<non-empty>, type={kind}, algorithm=PKIX}}"
    elif s.get(f"{prefix}.key") or s.get(f"{prefix}.certificate"):
        from esremote.lab.formats import pem
        key_path = _resolve(config, s.get(f"{prefix}.key", ""))
        cert_path = _resolve(config, s.get(f"{prefix}.certificate", ""))
        key_data = _read_file(prefix, "PEM private key", key_path)
        cert_data = _read_file(prefix, "PEM certificate", cert_path)
        try:
            key = pem.load_private_key(key_data, secure.get(f"{prefix}.secure_key_passphrase") or None)
        except pem.PemError:
            raise _ssl_error(prefix, f"cannot load PEM private key from [{key_path}] due to "
                                     "UnrecoverableKeyException; this is usually caused by an incorrect password") from None
        m.key_pem, m.chain_pem = _key_pem(key), cert_data.decode("ascii", "replace")
    truststore = s.get(f"{prefix}.truststore.path")
    authorities = s.get(f"{prefix}.certificate_authorities")
    if truststore and authorities:
        raise StartupError(f"[{prefix}.truststore.path] and [{prefix}.certificate_authorities] may not be used at the same time")
    if truststore:
        path = _resolve(config, truststore)
        kind = _store_type(config, prefix, "truststore", path)
        contents = _open_p12(prefix, f"[{kind}] keystore (as a truststore)", path,
                             secure.get(f"{prefix}.truststore.secure_password", ""))
        m.ca_pems = [_pem(c) for c in contents.trusted.values()] + [_pem(c) for c in contents.chain]
        m.trust_description = f"StoreTrustConfig{{path={truststore}, password=<non-empty>, type={kind}, algorithm=PKIX}}"
    elif authorities:
        paths = [_resolve(config, a) for a in authorities]
        m.ca_pems = [_read_file(prefix, "PEM certificate_authorities", p).decode("ascii", "replace") for p in paths]
        m.trust_description = f"PEM-trust{{{','.join(str(p) for p in paths)}}}"
    return m


def _load_chain(context: ssl.SSLContext, m: _Material) -> None:
    """Load key and chain from memory: a memfd, so the private key never lands on disk."""
    fd = os.memfd_create("lab-ssl-identity")
    try:
        os.write(fd, (m.chain_pem + "\n" + m.key_pem).encode())
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _trust(context: ssl.SSLContext, m: _Material, jdk_default: bool) -> None:
    if m.ca_pems:
        context.load_verify_locations(cadata="\n".join(m.ca_pems))
    if jdk_default and not m.ca_pems:
        context.load_default_certs()


_PROTOCOLS = {"TLSv1.3": ssl.TLSVersion.TLSv1_3, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
              "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1": ssl.TLSVersion.TLSv1}


def _protocols(context: ssl.SSLContext, config: NodeConfig, prefix: str) -> None:
    """`supported_protocols` as the context's minimum and maximum TLS versions."""
    wanted = config.settings.get(f"{prefix}.supported_protocols")
    if not wanted:
        return
    unknown = [p for p in wanted if p not in _PROTOCOLS]
    if unknown:
        raise StartupError(f"failed to load SSL configuration [{prefix}] - unsupported protocol [{unknown[0]}]",
                           "org.elasticsearch.ElasticsearchSecurityException")
    versions = sorted(_PROTOCOLS[p] for p in wanted)
    context.minimum_version, context.maximum_version = versions[0], versions[-1]


def _server_context(config: NodeConfig, prefix: str, m: _Material, client_auth_default: str) -> ssl.SSLContext:
    if not (m.key_pem and m.chain_pem):
        raise StartupError(
            f"invalid SSL configuration for {prefix} - server ssl configuration requires a key and certificate, "
            f"but these have not been configured; you must set either [{prefix}.keystore.path], or both "
            f"[{prefix}.key] and [{prefix}.certificate]", "org.elasticsearch.ElasticsearchSecurityException")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _protocols(context, config, prefix)
    _load_chain(context, m)
    mode = config.settings.get(f"{prefix}.client_authentication", client_auth_default)
    context.verify_mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                           "required": ssl.CERT_REQUIRED}[mode]
    if mode != "none":
        _trust(context, m, jdk_default=True)
    return context


def _client_context(config: NodeConfig, prefix: str, m: _Material) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _protocols(context, config, prefix)
    mode = config.settings.get(f"{prefix}.verification_mode", "full")
    context.check_hostname = mode == "full"
    if mode == "none":
        context.verify_mode = ssl.CERT_NONE
    else:
        _trust(context, m, jdk_default=True)
    if m.key_pem and m.chain_pem:
        _load_chain(context, m)
    return context


def build_ssl_contexts(config: NodeConfig) -> None:
    """HTTP server; transport server + client (mutual TLS); remote-cluster server and client."""
    s = config.settings
    http = "xpack.security.http.ssl"
    config.http_ssl = bool(s.get(f"{http}.enabled", False))
    if config.http_ssl:
        config.http_server = _server_context(config, http, _read_material(config, http), "none")
        config.trust_descriptions[http] = "n/a"
    transport = "xpack.security.transport.ssl"
    if s.get(f"{transport}.enabled", False):
        m = _read_material(config, transport)
        config.transport_server = _server_context(config, transport, m, "required")
        config.transport_client = _client_context(config, transport, m)
        config.trust_descriptions[transport] = m.trust_description
    server = "xpack.security.remote_cluster_server.ssl"
    if config.remote_cluster_port is not None and s.get(f"{server}.enabled", True):
        config.remote_cluster_server = _server_context(config, server, _read_material(config, server), "none")
    client = "xpack.security.remote_cluster_client.ssl"
    if s.get(f"{client}.enabled", True):
        m = _read_material(config, client)  # read now: a bad file refuses the start
        config.lazy_factories["remote_cluster_client"] = lambda: _client_context(config, client, m)
        config.trust_descriptions[client] = m.trust_description


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
