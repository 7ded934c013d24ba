"""One lab node: `python -m esremote.lab.node --home HOME [-d] [-p PIDFILE]`, what `bin/elasticsearch` runs.

Start-up, in Elasticsearch's order: read the keystore password (KEYSTORE_PASSWORD, else the first
line of stdin when the keystore has one), read and validate `lib/lab-node.json`, the yml, the
keystore and the TLS files (config.py), obey the `node-fails-to-start` and `slow-start` faults,
register as live in the cluster's state, serve HTTPS, start the transport, remote-cluster and
background-work parts when they exist, and log `started`. Any refusal is logged to
`logs/<cluster>.log` as Elasticsearch logs it (`fatal exception while booting Elasticsearch` and the
Java exception line) and the process exits 1.

`-d` forks first; the parent waits until the child reports started (exit 0) or failed (exit 1), so
a service command can wait on it. SIGTERM/SIGINT stop the node cleanly: unregister, close every
socket, remove the pid file.

A watcher thread polls the cluster state: a grown `reload.generation` makes the node re-read its
keystore (reload_secure_settings fan-out, see api/nodes.py), a change of the cluster settings calls
`remote.settings_changed()`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esremote.lab.node.config import NodeConfig, StartupError, early_log_path, load_node_config
from esremote.lab.node.identity import become_service_user
from esremote.lab.models.state import StateStore

_LEVELS = {"WARNING": "WARN", "CRITICAL": "FATAL"}
WATCH_POLL = 0.05  # seconds between two looks at the cluster state (a stat() when nothing changed)


class EsFormatter(logging.Formatter):
    """`[2026-11-28T06:40:00,123][WARN ][o.e.t.ProxyConnectionStrategy] [node-name] message`."""

    def __init__(self, node_name: str) -> None:
        super().__init__()
        self.node_name = node_name

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        level = _LEVELS.get(record.levelname, record.levelname)
        line = (f"[{stamp},{int(record.msecs):03d}][{level:<5}][{record.name}] [{self.node_name}] "
                f"{record.getMessage()}")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line += f"\n{getattr(exc, 'java_class', type(exc).__name__)}: {exc}"
            if getattr(exc, "cause", None):
                line += f"\nCaused by: {exc.cause}"
        return line


class NodeLogs:
    """The node's loggers, all writing to `logs/<cluster>.log` (never through the global registry,
    so several nodes can share one process in tests)."""

    def __init__(self, path: Path, node_name: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(EsFormatter(node_name))
        self._loggers: dict[str, logging.Logger] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> logging.Logger:
        with self._lock:
            logger = self._loggers.get(name)
            if logger is None:
                logger = logging.Logger(name, logging.INFO)
                logger.addHandler(self.handler)
                logger.propagate = False
                self._loggers[name] = logger
            return logger

    def close(self) -> None:
        self.handler.close()


def _settings_text(settings: dict) -> dict:
    """The yml settings as `_nodes/settings` shows them (strings; the yml holds no secrets)."""
    from esremote.lab.models.settings import as_setting_text
    return {k: as_setting_text(v) for k, v in settings.items()}


def node_id(cluster: str, name: str) -> str:
    """A stable 22-character node id, like Elasticsearch's."""
    digest = hashlib.sha256(f"{cluster}/{name}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


@dataclass
class NodeContext:
    """What every part of a node shares (ARCHITECTURE.md, "Contracts")."""

    config: NodeConfig
    store: StateStore
    logs: NodeLogs
    security: Any = None
    remote: Any = None
    work: Any = None
    servers: list = field(default_factory=list)
    id: str = ""
    _faults_cache: tuple[Any, dict] | None = None

    @property
    def log(self) -> logging.Logger:
        return self.logs.get("o.e.n.Node")

    def logger(self, name: str) -> logging.Logger:
        return self.logs.get(name)

    @property
    def name(self) -> str:
        return self.config.name

    def faults(self) -> dict:
        path = self.config.control_dir / "faults.json"
        try:
            stat = path.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_mtime_ns, stat.st_size)
        if self._faults_cache is None or self._faults_cache[0] != key:
            try:
                self._faults_cache = (key, json.loads(path.read_text(encoding="utf-8")) or {})
            except (OSError, ValueError):
                return {}
        return self._faults_cache[1]

    def fault(self, name: str) -> dict | None:
        """The fault's options when it is switched on for this node, else None."""
        entry = self.faults().get(name)
        if entry is None or entry is False:
            return None
        entry = entry if isinstance(entry, dict) else {}
        nodes = entry.get("nodes")
        if nodes is not None and self.config.name not in nodes:
            return None
        return entry

    def registration(self) -> dict:
        c = self.config
        return {"name": c.name, "id": self.id, "pid": os.getpid(), "ip": c.ip, "http_port": c.http_port,
                "transport_port": c.transport_port, "remote_cluster_port": c.remote_cluster_port,
                "version": c.version_text, "cluster": c.cluster_name, "roles": c.roles,
                "home": str(c.home), "settings": _settings_text(c.settings)}


def initial_state(ctx: NodeContext) -> None:
    """Fill what a new cluster starts with: the licence its binary and yml say."""
    c = ctx.config
    with ctx.store.transaction() as st:
        if not st.get("license"):
            kind = c.license if c.license in ("basic", "trial", "enterprise") else "basic"
            now = int(time.time() * 1000)
            st["license"] = {"type": kind, "uid": node_id(c.cluster_name, "license"),
                             "issue_date_in_millis": now,
                             "expiry_date_in_millis": now + 30 * 86400_000 if kind == "trial" else 253402214400000,
                             "trial_used": kind == "trial"}


class Node:
    """A running node: start() brings every part up, stop() takes it down (idempotent)."""

    def __init__(self, home: Path, keystore_password: str | None = None) -> None:
        self.home = Path(home).resolve()
        self.keystore_password = keystore_password
        self.ctx: NodeContext | None = None
        self._stopped = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> NodeContext:
        config = load_node_config(self.home, self.keystore_password)
        logs = NodeLogs(config.log_path, config.name)
        ctx = NodeContext(config, StateStore(config.state_dir), logs, id=node_id(config.cluster_name, config.name))
        self.ctx = ctx
        try:
            self._start_parts(ctx)
        except BaseException:
            self.stop()
            raise
        return ctx

    def _start_parts(self, ctx: NodeContext) -> None:
        log = ctx.log
        log.info("version[%s], pid[%s], build[default/tar], OS[Linux], JVM[lab]", ctx.config.version_text, os.getpid())
        failing = ctx.fault("node-fails-to-start")
        if failing is not None:
            raise StartupError(failing.get("message", "node start refused by the lab fault [node-fails-to-start]"),
                               "java.lang.IllegalStateException")
        slow = ctx.fault("slow-start")
        if slow is not None:
            delay = float(slow.get("seconds", slow.get("delay", 5)))
            log.info("slow start: waiting [%ss] before starting", delay)
            self._stopped.wait(delay)
        from esremote.lab.rest.routes import Pipeline
        from esremote.lab.models.security import Security
        from esremote.lab.rest.http import LabHTTPServer

        ctx.security = Security(ctx)
        initial_state(ctx)
        try:
            server = LabHTTPServer((ctx.config.ip, ctx.config.http_port), ctx, Pipeline(ctx),
                                   ctx.config.http_server if ctx.config.http_ssl else None)
        except OSError as exc:
            raise StartupError(f"Failed to bind to {ctx.config.ip}:{ctx.config.http_port}: {exc.strerror}",
                               "org.elasticsearch.http.BindHttpException") from None
        ctx.servers.append(server)
        log.info("publish_address {%s:%s}, bound_addresses {%s:%s}", ctx.config.ip, ctx.config.http_port,
                 ctx.config.ip, ctx.config.http_port)
        seen = ctx.store.snapshot()  # what the parts below start from (the watcher catches up)
        self._start_optional(ctx)
        ctx.store.record_applied(ctx.name, seen.get("version", 0))
        ctx.store.register_node(ctx.registration())
        server.start_background()
        self._watcher = threading.Thread(target=self._watch, args=(seen,), name=f"watch-{ctx.name}", daemon=True)
        self._watcher.start()
        log.info("started")

    def _start_optional(self, ctx: NodeContext) -> None:
        """transport / remote / work arrive in their own modules; the node runs without them."""
        try:
            from esremote.lab.net import transport
        except ImportError:
            transport = None
        if transport is not None:
            try:
                ctx.servers.extend(transport.start(ctx))
            except OSError as exc:
                raise StartupError(f"Failed to bind transport on {ctx.config.ip}: {exc.strerror}",
                                   "org.elasticsearch.transport.BindTransportException") from None
        try:
            from esremote.lab.net.remote import RemoteClusterService
        except ImportError:
            RemoteClusterService = None
        if RemoteClusterService is not None:
            ctx.remote = RemoteClusterService(ctx)
            ctx.remote.start()
        try:
            from esremote.lab.node.work import WorkRunner
        except ImportError:
            WorkRunner = None
        if WorkRunner is not None:
            ctx.work = WorkRunner(ctx)
            ctx.work.start()

    def _watch(self, seen: dict) -> None:
        """Apply each new cluster state version, then record it as applied: acknowledged APIs
        (settings updates) wait for every live node's record, as Elasticsearch waits for every
        node to apply a published cluster state."""
        ctx = self.ctx
        assert ctx is not None
        generation, layers = seen.get("reload", {}).get("generation", 0), seen.get("settings")
        applied = seen.get("version", 0)
        stamp = None
        while True:
            state = None
            if ctx.store.stamp() != stamp:
                try:
                    stamp, state = ctx.store.stamp(), ctx.store.snapshot()
                except (OSError, ValueError):
                    stamp = None
            if state is not None and state.get("version", 0) != applied:
                reload = state.get("reload", {})
                if reload.get("generation", 0) > generation:
                    generation = reload["generation"]
                    from esremote.lab.rest.api.nodes import reload_on_this_node
                    reload_on_this_node(ctx, reload)
                if state.get("settings") != layers:
                    layers = state.get("settings")
                    self._settings_changed(ctx)
                applied = state.get("version", 0)
                ctx.store.record_applied(ctx.name, applied)
            if self._stopped.wait(WATCH_POLL):
                return

    @staticmethod
    def _settings_changed(ctx: NodeContext) -> None:
        if ctx.remote is not None:
            try:
                ctx.remote.settings_changed()
            except Exception as exc:  # a remote-side bug must not stop the watcher
                ctx.logger("o.e.t.RemoteClusterService").warning("settings update failed: %r", exc)

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        ctx = self.ctx
        if ctx is None:
            return
        ctx.log.info("stopping ...")
        ctx.store.unregister_node(ctx.config.name)
        for part in (ctx.work, ctx.remote):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:
                    ctx.log.warning("failed to stop %s: %r", type(part).__name__, exc)
        for server in reversed(ctx.servers):
            try:
                (server.stop if hasattr(server, "stop") else server.close)()
            except Exception as exc:
                ctx.log.warning("failed to close %s: %r", type(server).__name__, exc)
        ctx.log.info("stopped")
        ctx.log.info("closing ...")
        ctx.log.info("closed")
        ctx.logs.close()


def _log_fatal(home: Path, error: StartupError, config: NodeConfig | None = None) -> None:
    """Elasticsearch's boot failure: an ERROR line, then the exception line."""
    path = config.log_path if config is not None else early_log_path(home)
    name = config.name if config is not None else home.name
    logs = NodeLogs(path, name)
    exc = Exception(error.message)
    exc.java_class = error.exception  # type: ignore[attr-defined]
    exc.cause = error.cause  # type: ignore[attr-defined]
    logs.get("o.e.b.Elasticsearch").error("fatal exception while booting Elasticsearch", exc_info=(Exception, exc, None))
    logs.close()


def read_keystore_password(home: Path) -> str | None:
    """KEYSTORE_PASSWORD, else the first stdin line when the keystore is password-protected."""
    from esremote.lab.formats import keystore

    path = home / "config" / keystore.KEYSTORE_FILENAME
    if "KEYSTORE_PASSWORD" in os.environ:
        return os.environ["KEYSTORE_PASSWORD"]
    try:
        protected = path.exists() and keystore.load(path).has_password
    except Exception:
        return None  # a damaged keystore: load_node_config reports it
    if not protected:
        return None
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


def _daemonize() -> int | None:
    """Fork: the parent blocks until the child writes its verdict on a pipe (None in the child)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        verdict = os.read(read_fd, 1)
        return 0 if verdict == b"0" else 1
    os.close(read_fd)
    os.setsid()
    os.environ["_LAB_NODE_VERDICT_FD"] = str(write_fd)
    return None


def _report(ok: bool) -> None:
    fd = os.environ.pop("_LAB_NODE_VERDICT_FD", None)
    if fd is not None:
        os.write(int(fd), b"0" if ok else b"1")
        os.close(int(fd))
        devnull = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(devnull, target)
        os.close(devnull)


def run(argv: list[str] | None = None) -> int:
    """What `bin/elasticsearch` runs: as the service user (or refused as root), then `main`."""
    try:
        become_service_user()
    except StartupError as error:
        home = Path(_parser().parse_args(argv).home).resolve()
        _log_fatal(home, error)
        print(f"ERROR: {error.message}, see the log at {early_log_path(home)}", file=sys.stderr)
        return 1
    return main(argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticsearch", description="Start a lab Elasticsearch node.")
    parser.add_argument("--home", required=True, help="the node's home (bin/, config/, lib/, logs/)")
    parser.add_argument("-d", "--daemonize", action="store_true", help="run in the background once started")
    parser.add_argument("-p", "--pidfile", help="write the process id to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no console output")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start a node in this process's identity (tests call it directly)."""
    args = _parser().parse_args(argv)
    home = Path(args.home).resolve()
    if not (home / "lib" / "lab-node.json").is_file():
        print(f"ERROR: {home} is not a lab node home (lib/lab-node.json is missing)", file=sys.stderr)
        return 1
    password = read_keystore_password(home)
    if args.daemonize:
        verdict = _daemonize()
        if verdict is not None:
            return verdict
    node = Node(home, password)
    pidfile = Path(args.pidfile) if args.pidfile else None
    try:
        if pidfile is not None:
            pidfile.parent.mkdir(parents=True, exist_ok=True)
            pidfile.write_text(f"{os.getpid()}\n")
        try:
            node.start()
        except PermissionError as denied:  # a file the service user cannot read (es-facts §12)
            raise StartupError(str(denied.filename), "java.nio.file.AccessDeniedException") from denied
        except (OSError, ValueError, KeyError, TypeError) as unexpected:  # never a traceback: a log line
            raise StartupError(f"{type(unexpected).__name__}: {unexpected}", "java.lang.IllegalStateException") \
                from unexpected
    except StartupError as error:
        _log_fatal(home, error, node.ctx.config if node.ctx else None)
        if not args.quiet:
            print(f"ERROR: {error.message}, see the log at {early_log_path(home) if node.ctx is None else node.ctx.config.log_path}",
                  file=sys.stderr)
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)
        _report(False)
        return 1
    _report(True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    finally:
        node.stop()
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
