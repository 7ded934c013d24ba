"""Outbound remote-cluster connections of one node: one `RemoteCluster` per configured alias.

The alias's settings come from elasticsearch.yml, then persistent, then transient cluster settings
(a later layer wins); its credentials from this node's keystore (`cluster.remote.<alias>.credentials`).
Credentials decide the model: with them, TLS to the remote's remote-cluster port verified with
`xpack.security.remote_cluster_client.ssl.*` and the key sent on every request; without them,
mutual TLS to the remote's transport port with `xpack.security.transport.ssl.*`.
The lab fault `wrong-credentials` makes a node load another value than its keystore's (see
`RemoteClusterService._load_credentials`).

Proxy mode keeps `proxy_socket_connections` sockets to `proxy_address`; sniff mode asks a seed for
the remote's nodes and keeps up to `node_connections` node connections. A maintenance thread per
alias keeps that many sockets open (pinging them, reopening dead ones), so `_remote/info`'s
`connected` is what the sockets really are. Failures are logged the way Elasticsearch logs them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from esremote.lab.errors import ESError, NoSuchRemoteCluster, SecurityError
from esremote.lab.net.connection import Connection, TransportFailure, closed_failure
from esremote.lab.net.protocol import (AUTHENTICATION_HEADER, CREDENTIALS_HEADER, REMOTE_CLUSTER_HANDSHAKE,
                                       REMOTE_CLUSTER_PROFILE, SUBJECT_HEADER, TRANSPORT_HANDSHAKE,
                                       TRANSPORT_PROFILE, LinkClosed, es_log)
from esremote.lab.net.signing import sign_headers
from esremote.lab.net.wire_compat import check_handshake, note_certificate_model

PREFIX = "cluster.remote."
CREDENTIALS_SUFFIX = ".credentials"
TICK = 1.0                      # maintenance period: quick enough for tests, cheap enough for 2 cores
REDACTED = "::es_redacted::"
PROXY_LOGGER = "o.e.t.ProxyConnectionStrategy"
SNIFF_LOGGER = "o.e.t.SniffConnectionStrategy"
TRUST_LOGGER = "o.e.c.s.DiagnosticTrustManager"
LOG_REPEAT_SECONDS = 30.0       # the same failure is logged again at most this often
RETRY_MAX = 8.0                 # longest wait between two background connection attempts
SETTINGS_POLL = 5.0             # fallback poll; node.py calls settings_changed() on each change
WRONG_CREDENTIALS = "wrong-credentials"  # lab fault: the node loads a wrong value for the alias

# Settings whose change means new sockets (the others, like skip_unavailable, apply in place).
_CONNECTION_FIELDS = ("mode", "seeds", "node_connections", "proxy_address", "proxy_socket_connections",
                      "server_name", "api_key_model")


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    text = str(value).strip().strip("[]")
    return [part.strip() for part in text.split(",") if part.strip()]


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class RemoteSettings:
    """One alias's effective settings (what `_remote/info` reports and the sockets use)."""

    alias: str
    mode: str = "sniff"
    seeds: tuple[str, ...] = ()
    node_connections: int = 3
    proxy_address: str = ""
    proxy_socket_connections: int = 18
    server_name: str = ""
    skip_unavailable: bool = False
    api_key_model: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.proxy_address) if self.mode == "proxy" else bool(self.seeds)

    def connection_key(self) -> tuple:
        return tuple(getattr(self, name) for name in _CONNECTION_FIELDS)


def effective_remote_settings(yml: dict, persistent: dict, transient: dict) -> dict[str, dict[str, Any]]:
    """`cluster.remote.<alias>.<key>` from the three layers (transient > persistent > yml), per alias."""
    merged: dict[str, Any] = {}
    for layer in (yml, persistent, transient):
        for key, value in layer.items():
            if key.startswith(PREFIX) and value is not None:
                merged[key] = value
    by_alias: dict[str, dict[str, Any]] = {}
    for key, value in merged.items():
        rest = key[len(PREFIX):]
        alias, dot, name = rest.partition(".")
        if not dot or name == "credentials":
            continue  # node-wide settings such as cluster.remote.initial_connect_timeout
        by_alias.setdefault(alias, {})[name] = value
    return by_alias


def wrong_credential(encoded: str) -> str:
    """The same key id with another secret, as a mistyped keystore value usually is: the remote
    finds the key, refuses the secret and names the id (es-facts §9, "Invalid API key")."""
    try:
        raw = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raw = encoded
    return base64.b64encode(f"{raw}-wrong".encode()).decode()


class RemoteCluster:
    """The connections to one alias, kept alive by a maintenance thread."""

    def __init__(self, service: RemoteClusterService, settings: RemoteSettings) -> None:
        self.service = service
        self.ctx = service.ctx
        self.settings = settings
        self.connections: list[Connection] = []
        self.known_nodes: list[str] = []     # sniff: addresses learnt from the remote
        self.remote_version: str | None = None
        self._lock = threading.Lock()            # the connection list (held briefly)
        self._connecting = threading.Lock()      # one connection attempt at a time (may take long)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_logged: tuple[str, float] | None = None
        self._next = 0
        self._thread = threading.Thread(target=self._maintain, name=f"remote-{settings.alias}", daemon=True)

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            conn.close()

    def _maintain(self) -> None:
        """Keep the sockets open. After a failed attempt the next one waits longer (up to
        RETRY_MAX) so a broken link does not flood either side's log; requests still try at once."""
        failures = 0
        next_attempt = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_attempt:
                try:
                    self.ensure_connected()
                    failures = 0
                except (TransportFailure, ESError):
                    failures += 1  # logged by ensure_connected
                except Exception as exc:  # a bug must not kill the link silently
                    failures += 1
                    es_log(self.ctx, logging.ERROR, self._logger, f"remote cluster [{self.alias}]: {exc!r}")
                next_attempt = time.monotonic() + min(RETRY_MAX, TICK * 2 ** max(failures - 1, 0)) if failures else 0.0
            self._wake.wait(TICK)
            self._wake.clear()
            self._ping_all()

    # state -----------------------------------------------------------------------------------

    @property
    def alias(self) -> str:
        return self.settings.alias

    @property
    def _logger(self) -> str:
        return PROXY_LOGGER if self.settings.mode == "proxy" else SNIFF_LOGGER

    @property
    def target(self) -> int:
        s = self.settings
        return s.proxy_socket_connections if s.mode == "proxy" else s.node_connections

    def live(self) -> list[Connection]:
        with self._lock:
            self.connections = [c for c in self.connections if c.alive]
            return list(self.connections)

    def _add(self, conn: Connection) -> None:
        with self._lock:
            if self._stop.is_set():
                conn.close()
                return
            self.connections.append(conn)

    def _ping_all(self) -> None:
        for conn in self.live():
            if self._stop.is_set():
                return
            conn.ping(timeout=3.0)

    # connecting ------------------------------------------------------------------------------

    def ensure_connected(self) -> None:
        """Open sockets up to the target; raise the failure when none can be opened."""
        if self._stop.is_set():
            return
        with self._connecting:
            missing = self.target - len(self.live())
            if missing <= 0:
                return
            try:
                if self.settings.mode == "proxy":
                    self._open_proxy(missing)
                else:
                    self._open_sniff(missing)
            except (TransportFailure, ESError) as failure:
                if not self.live():
                    self._log_failure(failure)
                    raise
            else:
                self._last_logged = None

    def _open_proxy(self, missing: int) -> None:
        host, port = split_address(self.settings.proxy_address)
        for _ in range(missing):
            self._add(self._open(host, port))

    def _open_sniff(self, missing: int) -> None:
        if not self.live() or not self.known_nodes:
            self.known_nodes = self._sniff()
        connected = {c.address for c in self.live()}
        failure: Exception | None = None
        for address in self.known_nodes:
            if missing <= 0:
                break
            if address in connected:
                continue
            try:
                self._add(self._open(*split_address(address)))
                missing -= 1
            except (TransportFailure, ESError) as exc:
                failure = exc
        if not self.live() and failure is not None:
            raise failure

    def _sniff(self) -> list[str]:
        """Ask the seeds, in order, for the remote's nodes (transport or remote-cluster addresses)."""
        failure: Exception | None = None
        for seed in self.settings.seeds:
            try:
                conn = self._open(*split_address(seed))
            except (TransportFailure, ESError) as exc:
                failure = exc
                continue
            try:
                if self.settings.api_key_model:
                    answer = conn.request("cluster:internal/remote_cluster/nodes",
                                          headers=self._key_headers(None))
                    return [n["remote_cluster_address"] for n in answer.get("nodes", [])]
                answer = conn.request("cluster:monitor/state", {"nodes": True})
                return [n["transport_address"] for n in answer.get("nodes", [])]
            except ESError as exc:
                failure = exc
            except (LinkClosed, OSError) as exc:
                failure = exc
            finally:
                conn.close()
        if isinstance(failure, (TransportFailure, ESError)):
            raise failure
        raise ESError(f"no seed node left for cluster: [{self.alias}]", status=500,
                      type="no_seed_node_left_exception")

    def _open(self, host: str, port: int) -> Connection:
        """One socket: TLS, version handshake, then the model's cluster handshake."""
        config = self.ctx.config
        api_key = self.settings.api_key_model
        context = config.remote_cluster_client if api_key else config.transport_client
        conn = Connection.open(host, port, context, profile=REMOTE_CLUSTER_PROFILE if api_key else TRANSPORT_PROFILE,
                               server_hostname=self.settings.server_name or None,
                               context_text=self._context_text(), local_version=config.version_text,
                               source=config.ip)
        check_handshake(self.ctx, conn)  # 9.x reads no wire format older than 8.18's
        try:
            if api_key:
                self._check_remote_version(conn.remote_version)
                self.service.check_local_license()
                answer = conn.request(REMOTE_CLUSTER_HANDSHAKE, headers=self._key_headers(None))
            else:
                answer = conn.request(TRANSPORT_HANDSHAKE)
        except ESError:
            conn.close()
            raise
        except (LinkClosed, OSError) as exc:
            conn.close()
            raise closed_failure(host, port) from exc
        conn.remote_node = answer.get("node", {})
        self.remote_version = answer.get("version") or conn.remote_version
        if not api_key:
            note_certificate_model(self.ctx, self.alias)
        return conn

    def _check_remote_version(self, version: str | None) -> None:
        from esremote.lab.node.config import parse_version
        if version and parse_version(version) < (8, 10, 0):
            raise ESError(f"Settings for remote cluster [{self.alias}] indicate cross cluster access headers "
                          f"should be sent but target cluster version [{version}] does not support "
                          "receiving them", status=400, type="illegal_argument_exception")

    def _context_text(self) -> str:
        """How Elasticsearch names the SSL context that verified the server, with its trust
        (`config.trust_descriptions` holds the trust part, as config.py read it)."""
        config = self.ctx.config
        prefix = ("xpack.security.remote_cluster_client.ssl" if self.settings.api_key_model
                  else "xpack.security.transport.ssl")
        settings = config.settings
        trust = (getattr(config, "trust_descriptions", None) or {}).get(prefix)
        if not trust:
            if settings.get(f"{prefix}.certificate_authorities"):
                trust = "PEM-trust{" + ",".join(str(config.config_dir / p)
                                                for p in settings[f"{prefix}.certificate_authorities"]) + "}"
            elif settings.get(f"{prefix}.truststore.path"):
                trust = (f"StoreTrustConfig{{path={config.config_dir / settings[f'{prefix}.truststore.path']}, "
                         "password=<non-empty>, type=PKCS12, algorithm=PKIX}")
            else:
                trust = "JDK-trusted-certs"
        configured = any(key.startswith(prefix + ".") for key in settings)
        return f"{prefix if configured else '(shared)'} (with trust configuration: {trust})"

    def _log_failure(self, failure: Exception) -> None:
        text = failure.log_text if isinstance(failure, TransportFailure) else _exception_text(failure)
        now = time.monotonic()
        if self._last_logged and self._last_logged[0] == text and now - self._last_logged[1] < LOG_REPEAT_SECONDS:
            return
        self._last_logged = (text, now)
        diagnosis = failure.diagnosis if isinstance(failure, TransportFailure) else None
        if diagnosis:
            es_log(self.ctx, logging.WARNING, TRUST_LOGGER, diagnosis)
        if self.settings.mode == "proxy":
            headline = f"failed to open any proxy connections to cluster [{self.alias}]"
        else:
            headline = f"fetching nodes from external cluster [{self.alias}] failed"
        es_log(self.ctx, logging.WARNING, self._logger, f"{headline}\n{text}")

    # requests --------------------------------------------------------------------------------

    def _key_headers(self, user: Any, remote_indices: list | None = None) -> dict:
        headers = {CREDENTIALS_HEADER: "ApiKey " + self.service.credentials(self.alias)}
        if user is not None:
            headers[SUBJECT_HEADER] = {"user": user.username, "roles": list(user.roles),
                                       "remote_indices": remote_indices or []}
        # 9.3: signed with the alias's signing certificate when it has one (net/signing.py)
        return sign_headers(self.ctx, self.alias, headers, CREDENTIALS_HEADER, SUBJECT_HEADER)

    def request(self, action: str, body: dict, user: Any, remote_indices: list | None = None) -> dict:
        """Send an action for a user over a live socket (connecting first when none is)."""
        if self.settings.api_key_model:
            self.service.check_local_license()
            headers = self._key_headers(user, remote_indices)
        else:
            headers = {AUTHENTICATION_HEADER: {"user": user.username, "roles": list(user.roles)}}
        for attempt in range(2):
            conn = self._pick()
            try:
                return conn.request(action, body, headers)
            except (LinkClosed, OSError) as exc:
                if attempt == 1:
                    raise ESError(f"[{conn.remote_node.get('name', '')}][{conn.address}][{action}] disconnected",
                                  status=500, type="node_disconnected_exception") from exc
        raise AssertionError("unreachable")

    def _pick(self) -> Connection:
        live = self.live()
        if not live:
            try:
                self.ensure_connected()
            except TransportFailure as failure:
                raise failure.error from None
            live = self.live()
            if not live:
                raise ESError(f"Unable to connect to [{self.alias}]", status=500,
                              type="connect_transport_exception")
        self._next += 1
        return live[self._next % len(live)]

    # `_remote/info` ---------------------------------------------------------------------------

    def info(self, initial_connect_timeout: str, has_credentials: bool) -> dict:
        s = self.settings
        live = len(self.live())
        body: dict[str, Any] = {"connected": live > 0, "mode": s.mode}
        if s.mode == "proxy":
            body.update({"proxy_address": s.proxy_address, "server_name": s.server_name,
                         "num_proxy_sockets_connected": live,
                         "max_proxy_socket_connections": s.proxy_socket_connections})
        else:
            body.update({"seeds": list(s.seeds), "num_nodes_connected": live,
                         "max_connections_per_cluster": s.node_connections})
        body["initial_connect_timeout"] = initial_connect_timeout
        body["skip_unavailable"] = s.skip_unavailable
        if has_credentials:
            body["cluster_credentials"] = REDACTED
        return body


def _exception_text(exc: Exception) -> str:
    if isinstance(exc, ESError):
        java = {"security_exception": "org.elasticsearch.ElasticsearchSecurityException",
                "illegal_argument_exception": "java.lang.IllegalArgumentException",
                "no_seed_node_left_exception": "org.elasticsearch.transport.NoSeedNodeLeftException"}
        return f"{java.get(exc.type, 'org.elasticsearch.ElasticsearchException')}: {exc.reason}"
    return repr(exc)


class RemoteClusterService:
    """All remote clusters of this node; see the module docstring."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.clusters: dict[str, RemoteCluster] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._seen_settings: dict | None = None
        self._seen_credentials: dict[str, str] = {}
        # What the node loaded: at start, then (from 8.13, see settings_changed) again on each reload.
        self._credentials = self._load_credentials()
        self._thread = threading.Thread(target=self._watch, name="remote-settings", daemon=True)

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> RemoteClusterService:
        self.refresh()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            clusters, self.clusters = dict(self.clusters), {}
        for cluster in clusters.values():
            cluster.close()

    def settings_changed(self) -> None:
        """Re-read settings and credentials now (a settings update or a reload just happened).
        Before 8.13 a reload does not touch remote credentials: they stay what the node read at start."""
        if tuple(self.ctx.config.version) >= (8, 13, 0):
            self._credentials = self._load_credentials()
        self.refresh()

    def _watch(self) -> None:
        while not self._stop.wait(SETTINGS_POLL):
            try:
                self.refresh()
            except Exception as exc:  # keep watching: a torn read is retried on the next tick
                es_log(self.ctx, logging.ERROR, "o.e.t.RemoteClusterService", f"settings refresh failed: {exc!r}")

    # settings and credentials ----------------------------------------------------------------

    def _load_credentials(self) -> dict[str, str]:
        """`cluster.remote.<alias>.credentials` from the node's secure settings, as the node loads
        them. The fault `wrong-credentials` (option `alias`: only that alias) stands for a keystore
        holding another value: it is read here, when the node loads, not on each request, so like
        a keystore edit it takes effect at start or on the next reload (from 8.13; the lab also
        reloads on a cluster-settings update, see settings_changed). A changed value rebuilds no
        connection (refresh): `_remote/info` stays connected with credentials while every request
        this node sends fails on the remote (es-facts §12); a new connection's handshake fails too."""
        secure = getattr(self.ctx.config, "secure", None) or {}
        loaded = {key[len(PREFIX):-len(CREDENTIALS_SUFFIX)]: value for key, value in secure.items()
                  if key.startswith(PREFIX) and key.endswith(CREDENTIALS_SUFFIX) and value}
        fault = self.ctx.fault(WRONG_CREDENTIALS)
        if fault is not None:
            loaded = {alias: wrong_credential(value) if fault.get("alias") in (None, alias) else value
                      for alias, value in loaded.items()}
        return loaded

    def _current_credentials(self) -> dict[str, str]:
        return self._credentials

    def credentials(self, alias: str) -> str:
        return self._current_credentials().get(alias, "")

    def _desired(self) -> dict[str, RemoteSettings]:
        state_settings = self.ctx.store.snapshot().get("settings", {})
        by_alias = effective_remote_settings(self.ctx.config.settings, state_settings.get("persistent", {}),
                                             state_settings.get("transient", {}))
        credentials = self._current_credentials()
        default_connections = _int(self.ctx.config.settings.get("cluster.remote.connections_per_cluster"), 3)
        skip_default = tuple(self.ctx.config.version) >= (8, 15, 0)
        desired = {}
        for alias, values in by_alias.items():
            settings = RemoteSettings(
                alias=alias, mode=str(values.get("mode", "sniff")).lower(),
                seeds=tuple(_list(values.get("seeds"))),
                node_connections=_int(values.get("node_connections"), default_connections),
                proxy_address=str(values.get("proxy_address") or ""),
                proxy_socket_connections=_int(values.get("proxy_socket_connections"), 18),
                server_name=str(values.get("server_name") or ""),
                skip_unavailable=_bool(values.get("skip_unavailable"), skip_default),
                api_key_model=alias in credentials)
            if settings.enabled:
                desired[alias] = settings
        return desired

    def refresh(self) -> None:
        """Bring the connections in line with settings and credentials: new aliases connect,
        removed ones disconnect, changed connection settings or an added/removed credential
        rebuild; a changed credential value is used from the next request on (es-facts §1)."""
        desired = self._desired()
        with self._lock:
            for alias in list(self.clusters):
                if alias not in desired:
                    self.clusters.pop(alias).close()
            for alias, settings in desired.items():
                cluster = self.clusters.get(alias)
                if cluster is not None and cluster.settings.connection_key() == settings.connection_key():
                    cluster.settings = settings  # e.g. skip_unavailable: no new sockets
                    continue
                if cluster is not None:
                    cluster.close()
                cluster = RemoteCluster(self, settings)
                self.clusters[alias] = cluster
                if not self._stop.is_set():
                    cluster.start()

    # licence ---------------------------------------------------------------------------------

    def check_local_license(self) -> None:
        self.ctx.security.require_advanced_remote_cluster_security()

    # what the REST layer asks ---------------------------------------------------------------

    def aliases(self) -> list[str]:
        with self._lock:
            return sorted(self.clusters)

    def cluster(self, alias: str) -> RemoteCluster:
        with self._lock:
            cluster = self.clusters.get(alias)
        if cluster is None:
            raise NoSuchRemoteCluster(alias)
        return cluster

    def skip_unavailable(self, alias: str) -> bool:
        return self.cluster(alias).settings.skip_unavailable

    def matching_aliases(self, pattern: str) -> list[str]:
        return [alias for alias in self.aliases() if fnmatchcase(alias, pattern)]

    def info(self) -> dict:
        """The `_remote/info` body (es-facts §2)."""
        timeout = str(self.ctx.config.settings.get("cluster.remote.initial_connect_timeout") or "30s")
        credentials = self._current_credentials()
        return {alias: self.cluster(alias).info(timeout, alias in credentials) for alias in self.aliases()}

    def _remote_indices(self, user: Any, alias: str, action: str) -> list:
        """The user's remote_indices for this alias (API-key model); none is a local 403."""
        entries = list(self.ctx.security.remote_indices_for(user, alias) or [])
        if not entries:
            raise SecurityError(f"action [{action}] towards remote cluster [{alias}] is unauthorized for "
                                f"{self.ctx.security.describe(user)} because no remote indices privileges "
                                "apply for the target cluster")
        return [{k: v for k, v in entry.items() if k != "clusters"} for entry in entries]

    def _send(self, alias: str, action: str, body: dict, user: Any) -> dict:
        """`user` is a security.User (REST) or a task's stored identity resolved to one."""
        cluster = self.cluster(alias)
        remote_indices = (self._remote_indices(user, alias, action) if cluster.settings.api_key_model else None)
        return cluster.request(action, body, user, remote_indices)

    def search(self, alias: str, index_expr: str, body: dict, user: Any, params: dict | None = None) -> dict:
        """A search on the remote through a live socket; hits' `_index` become `alias:index`.
        `params` are the URL parameters the remote's search reads (`from`, `size`, ...)."""
        answer = self._send(alias, "indices:data/read/search",
                            {"index": index_expr, "body": body, "params": params or {}}, user)
        for hit in answer.get("hits", {}).get("hits", []):
            hit["_index"] = f"{alias}:{hit['_index']}"
        return answer

    def read_changes(self, alias: str, index: str, after_seq: int, user: Any, limit: int = 5120) -> dict:
        """CCR: the leader index's operations after `after_seq` (`operations`, `max_seq_no`)."""
        return self._send(alias, "indices:data/read/xpack/ccr/shard_changes",
                          {"index": index, "from_seq_no": after_seq + 1, "max_operation_count": limit}, user)

    def leader_indices(self, alias: str, user: Any) -> list[str]:
        """Auto-follow: the remote's indices this user may follow."""
        return self._send(alias, "cluster:monitor/state", {"metadata": True}, user).get("indices", [])

    def leader_settings(self, alias: str, index: str, user: Any) -> dict[str, str]:
        """The settings a follower of `index` copies from it (shards, replicas)."""
        answer = self._send(alias, "cluster:monitor/state", {"metadata": True}, user)
        return dict(answer.get("index_settings", {}).get(index, {}))

    def resolve_cluster(self, expr: str | None, user: Any) -> dict:
        """`_resolve/cluster` entries for the remote part of an expression (`alias:index`, alias
        wildcards allowed); the REST layer adds the local cluster. No expression: every remote."""
        wanted: dict[str, list[str]] = {}
        if not expr:
            wanted = {alias: [] for alias in self.aliases()}
        for part in [p.strip() for p in (expr or "").split(",") if p.strip()]:
            if ":" not in part:
                continue
            pattern, index = part.split(":", 1)
            aliases = self.matching_aliases(pattern)
            if not aliases and "*" not in pattern:
                raise NoSuchRemoteCluster(pattern)
            for alias in aliases:
                wanted.setdefault(alias, []).append(index)
        return {alias: self._resolve_one(alias, indices, user) for alias, indices in wanted.items()}

    def _resolve_one(self, alias: str, indices: list[str], user: Any) -> dict:
        skip = self.skip_unavailable(alias)
        try:
            answer = self._send(alias, "indices:admin/resolve/cluster",
                                {"index": ",".join(indices) or "*"}, user)
        except TransportFailure as failure:
            return {"connected": False, "skip_unavailable": skip, "error": failure.error.reason}
        except ESError as exc:
            return {"connected": False, "skip_unavailable": skip, "error": exc.reason}
        entry: dict[str, Any] = {"connected": True, "skip_unavailable": skip}
        if indices:
            entry["matching_indices"] = answer["matching_indices"]
        entry["version"] = answer["version"]
        return entry

