"""Every setting the lab knows, as Elasticsearch registers them: name pattern, type (with
Elasticsearch's parse errors), dynamic or static, secure or not. The node validates its yml and
keystore against it at start; `models/settings.py` validates `PUT _cluster/settings` against it."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any, Callable

from esremote.lab.node.errors import SettingValueError


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


def parse_filter_list(key: str, value: Any) -> list[str]:
    """An IP filter list: each value must make a rule (SecurityIpFilterRule's own messages)."""
    from esremote.lab.net.ipfilter import parse_rule  # noqa: PLC0415 - the rules live with the filter

    values = parse_list(key, value)
    for one in values:
        try:
            parse_rule(not key.endswith(".deny"), one)
        except ValueError as exc:
            raise SettingValueError(str(exc)) from None
    return values


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
    """One setting (or a family, `*` = one name segment, `**` = any rest): how it parses, whether
    it may change at runtime (dynamic) or live only in the keystore (secure), and the first
    version that knows it (`since`; an older node refuses it as unknown)."""

    pattern: str
    parse: Callable[[str, Any], Any] = parse_str
    dynamic: bool = False
    secure: bool = False
    since: tuple[int, int, int] = (0, 0, 0)

    def regex(self) -> re.Pattern:
        parts = [re.escape(p) for p in self.pattern.split(".")]
        body = r"\.".join(parts).replace(r"\*\*", ".+").replace(r"\*", r"[^.]+")
        return re.compile(body)


def _defs() -> list[SettingDef]:
    d: list[SettingDef] = []

    def add(pattern: str, parse: Callable[[str, Any], Any] = parse_str, dynamic: bool = False,
            secure: bool = False, since: tuple[int, int, int] = (0, 0, 0)) -> None:
        d.append(SettingDef(pattern, parse, dynamic, secure, since))

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
    # IP filtering (net/ipfilter.py): lists validated like IPFilterValidator, switches, all dynamic
    # but the bound-address guard.
    for family in ("xpack.security.transport.filter", "xpack.security.http.filter",
                   "xpack.security.remote_cluster.filter"):
        add(f"{family}.allow", parse_filter_list, dynamic=True)
        add(f"{family}.deny", parse_filter_list, dynamic=True)
    add("xpack.security.transport.filter.enabled", boolean, dynamic=True)
    add("xpack.security.http.filter.enabled", boolean, dynamic=True)
    add("xpack.security.filter.always_allow_bound_address", boolean)
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
    add("transport.profiles.*.xpack.security.filter.allow", parse_filter_list, dynamic=True)
    add("transport.profiles.*.xpack.security.filter.deny", parse_filter_list, dynamic=True)
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
    # 9.3 strong identity verification (technical preview, es-facts §12): the PEM forms only.
    add("cluster.remote.*.signing.certificate", dynamic=True, since=STRONG_IDENTITY)
    add("cluster.remote.*.signing.key", dynamic=True, since=STRONG_IDENTITY)
    add("cluster.remote.*.signing.secure_key_passphrase", secure=True, since=STRONG_IDENTITY)
    add("cluster.remote.signing.certificate_authorities", parse_list, dynamic=True, since=STRONG_IDENTITY)
    return d


STRONG_IDENTITY = (9, 3, 0)
SSL_PREFIXES = ("xpack.security.http.ssl", "xpack.security.transport.ssl",
                "xpack.security.remote_cluster_server.ssl", "xpack.security.remote_cluster_client.ssl")

_EXACT: dict[str, SettingDef] | None = None
_PATTERNS: list[tuple[re.Pattern, SettingDef]] = []


def lookup(key: str, version: tuple[int, int, int] | None = None) -> SettingDef | None:
    """The definition of a setting, or None when Elasticsearch (at `version`, when given) would not
    know it."""
    global _EXACT
    if _EXACT is None:
        definitions = _defs()
        _PATTERNS.extend((d.regex(), d) for d in definitions if "*" in d.pattern)
        _EXACT = {d.pattern: d for d in definitions if "*" not in d.pattern}
    found = _EXACT.get(key)
    if found is None:
        for regex, definition in _PATTERNS:
            if regex.fullmatch(key):
                found = definition  # later, more specific definitions win
    if found is not None and version is not None and tuple(version) < found.since:
        return None
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


