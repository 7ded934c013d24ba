"""Nodes info/stats and `POST _nodes/reload_secure_settings`.

Reload fans out through the cluster state: the handling node bumps `reload.generation` (the
optional `secure_settings_password` goes to a 0600 file beside the state, never into it), every
live node's watcher re-reads its keystore from disk and records its result under
`reload.results[<node name>]`, and the handler waits for them with a deadline. Remote-cluster
credentials change only from 8.13 (before, they stay as read at start).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from esremote.lab.rest.api.cluster import version_body
from esremote.lab.rest.http import Request
from esremote.lab.rest.routes import api

_METRICS = {"settings", "os", "process", "jvm", "thread_pool", "transport", "http", "remote_cluster_server",
            "plugins", "ingest", "aggregations", "indices", "_all", "_none"}
_CREDENTIALS = "cluster.remote."
KEYSTORE_DETAILS = (9, 3, 0)  # reload reports the keystore it read (es-facts §12)


def _select(req: Request, live: list[dict]) -> list[dict]:
    ids = [i for i in req.list_param("node_id") if i not in _METRICS]
    if not ids or "_all" in ids:
        return live
    chosen = []
    for n in live:
        if n.get("id") in ids or n["name"] in ids or n["ip"] in ids or ("_local" in ids and n["name"] == req.ctx.name):
            chosen.append(n)
    return chosen


def _header(total: int, ok: int, cluster: str) -> dict:
    return {"_nodes": {"total": total, "successful": ok, "failed": total - ok}, "cluster_name": cluster}


@api("nodes.info")
def nodes_info(req: Request) -> dict:
    ctx = req.ctx
    nodes = _select(req, ctx.store.live_nodes())
    body = _header(len(nodes), len(nodes), ctx.config.cluster_name)
    version = version_body(ctx)
    body["nodes"] = {}
    for n in nodes:
        entry = {"name": n["name"], "transport_address": f"{n['ip']}:{n['transport_port']}", "host": n["ip"],
                 "ip": n["ip"], "version": n.get("version", ctx.config.version_text), "build_flavor": "default",
                 "build_type": "tar", "build_hash": version["build_hash"], "roles": n.get("roles", []),
                 "attributes": {},
                 "http": {"bound_address": [f"{n['ip']}:{n['http_port']}"], "publish_address": f"{n['ip']}:{n['http_port']}"},
                 "transport": {"bound_address": [f"{n['ip']}:{n['transport_port']}"],
                               "publish_address": f"{n['ip']}:{n['transport_port']}"}}
        # The process, as the JVM section reports it: a restart is a new pid and start time.
        entry["jvm"] = {"pid": n.get("pid"), "version": "21.0.2", "vm_name": "OpenJDK 64-Bit Server VM",
                        "start_time_in_millis": n.get("started_at")}
        if n.get("remote_cluster_port"):
            address = f"{n['ip']}:{n['remote_cluster_port']}"
            entry["remote_cluster_server"] = {"bound_address": [address], "publish_address": address}
        from esremote.lab.models.settings import nest
        entry["settings"] = nest(n.get("settings", {}))
        body["nodes"][n.get("id", n["name"])] = entry
    return body


@api("nodes.stats")
def nodes_stats(req: Request) -> dict:
    ctx = req.ctx
    nodes = _select(req, ctx.store.live_nodes())
    body = _header(len(nodes), len(nodes), ctx.config.cluster_name)
    body["nodes"] = {n.get("id", n["name"]): {"timestamp": int(time.time() * 1000), "name": n["name"],
                                                "transport_address": f"{n['ip']}:{n['transport_port']}",
                                                "host": n["ip"], "ip": n["ip"], "roles": n.get("roles", [])}
                     for n in nodes}
    return body


def _needs_manage_security(ctx) -> bool:
    """8.13.0 until the 8.15 backport of PR #111535: reload also needed manage_security (issue #111543)."""
    return (8, 13, 0) <= ctx.config.version < (8, 15, 1)


@api("nodes.reload_secure_settings")
def reload_secure_settings(req: Request) -> dict:
    ctx = req.ctx
    body = req.json() or {}
    password = body.get("secure_settings_password")
    if _needs_manage_security(ctx):
        ctx.security.require_cluster(req.user, "cluster:admin/xpack/security/remote_cluster_credentials/reload",
                                     ["manage_security", "all"])
    targets = _select(req, ctx.store.live_nodes())
    secret_file = None
    with ctx.store.transaction() as st:
        generation = st.get("reload", {}).get("generation", 0) + 1
        if password is not None:
            secret_file = ctx.store.dir / f".reload-{generation}.secret"
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(password)
        st["reload"] = {"generation": generation, "requested_by": ctx.name,
                        "nodes": [n["name"] for n in targets], "password_file": str(secret_file) if secret_file else None,
                        "results": {}}
    try:
        reload_on_this_node(ctx, {"generation": generation, "nodes": [n["name"] for n in targets],
                                  "password_file": str(secret_file) if secret_file else None})
        results = _wait_for(ctx, generation, {n["name"] for n in targets}, deadline=time.monotonic() + 10)
    finally:
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
    answer = _header(len(targets), sum(1 for n in targets if n["name"] in results), ctx.config.cluster_name)
    answer["nodes"] = {}
    for n in targets:
        if n["name"] in results:
            answer["nodes"][n.get("id", n["name"])] = {"name": n["name"], **results[n["name"]]}
    if answer["_nodes"]["failed"]:
        answer["_nodes"]["failures"] = [
            {"type": "failed_node_exception", "reason": f"Failed node [{n.get('id', n['name'])}]", "node_id": n.get("id"),
             "caused_by": {"type": "node_not_connected_exception",
                           "reason": f"[{n['name']}][{n['ip']}:{n['transport_port']}] Node not connected"}}
            for n in targets if n["name"] not in results]
    return answer


def _wait_for(ctx, generation: int, names: set[str], deadline: float) -> dict:
    while True:
        reload = ctx.store.snapshot().get("reload", {})
        if reload.get("generation") != generation:
            return {}
        results = {n: r for n, r in reload.get("results", {}).items() if not r.get("pending")}
        alive = {n["name"] for n in ctx.store.live_nodes()}
        if all(n in results or n not in alive for n in names) or time.monotonic() > deadline:
            return results
        time.sleep(0.05)


def reload_on_this_node(ctx, reload: dict) -> None:
    """Re-read this node's keystore and record the outcome (called once per generation)."""
    from esremote.lab.formats import keystore

    generation, name = reload.get("generation"), ctx.name
    if reload.get("nodes") is not None and name not in reload["nodes"]:
        return
    with ctx.store.transaction() as st:
        current = st.get("reload", {})
        if current.get("generation") != generation or name in current.get("results", {}):
            return
        current.setdefault("results", {})[name] = {"pending": True}
    password = ""
    if reload.get("password_file"):
        try:
            password = Path(reload["password_file"]).read_text(encoding="utf-8")
        except OSError:
            password = ""
    result: dict = {}
    path = ctx.config.keystore_path or ctx.config.config_dir / keystore.KEYSTORE_FILENAME
    try:
        raw = path.read_bytes() if path.exists() else None
        store = keystore.Keystore.open(path, password) if raw is not None else keystore.Keystore({})
        _apply_reloaded(ctx, store.strings())
        if raw is not None and ctx.config.version >= KEYSTORE_DETAILS:
            result.update(keystore_details(path, raw, store.names()))
    except keystore.KeystoreFormatError as exc:
        reason = exc.message
        kind = _error_type(exc.exception)
        result["reload_exception"] = {"type": kind, "reason": reason}
        ctx.logger("o.e.a.a.c.n.r.TransportNodesReloadSecureSettingsAction").warning(
            "Reload failed for plugin [RemoteClusterCredentialsManager]: %s", reason)
    with ctx.store.transaction() as st:
        current = st.get("reload", {})
        if current.get("generation") == generation:
            current.setdefault("results", {})[name] = result


def keystore_details(path: Path, raw: bytes, names: list[str]) -> dict:
    """What a 9.3 node reports about the keystore it reloaded (NodesReloadSecureSettingsResponse,
    elastic/elasticsearch PR #138052): every setting name, sorted; the file's path; the hex SHA-256
    of the file's bytes; its last-modified time as an ISO instant."""
    modified = path.stat().st_mtime
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(modified)) + f".{int(modified * 1000) % 1000:03d}Z"
    return {"secure_setting_names": sorted(names), "keystore_path": str(path),
            "keystore_digest": hashlib.sha256(raw).hexdigest(), "keystore_last_modified_time": stamp}


def _error_type(java_class: str) -> str:
    """ElasticsearchException.getExceptionName: the simple class name in snake case
    (`java.lang.SecurityException` -> `security_exception`)."""
    name = java_class.rsplit(".", 1)[-1]
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def _is_credential(key: str) -> bool:
    return key.startswith(_CREDENTIALS) and key.endswith(".credentials")


def _apply_reloaded(ctx, secure: dict[str, str]) -> None:
    """Credentials are reloadable from 8.13; the rest of the keystore is read only at start."""
    if ctx.config.version < (8, 13, 0):
        return
    old = {k: v for k, v in ctx.config.secure.items() if _is_credential(k)}
    new = {k: v for k, v in secure.items() if _is_credential(k)}
    for key in old:
        ctx.config.secure.pop(key, None)
    ctx.config.secure.update(new)
    if old != new:
        aliases = sorted({k[len(_CREDENTIALS):-len(".credentials")] for k in set(old) | set(new)})
        ctx.logger("o.e.t.RemoteClusterCredentialsManager").info(
            "Updated remote cluster credentials for clusters: [%s]", ", ".join(aliases))
    if ctx.remote is not None:
        ctx.remote.settings_changed()


def elected_node(ctx) -> dict | None:
    """The node that runs background work: the lowest live node name (see work.py)."""
    live = ctx.store.live_nodes()
    return live[0] if live else None


def task_node_body(ctx, name: str | None) -> dict | None:
    """How task APIs show the node a task runs on (`node` in transform / ML stats)."""
    node = next((n for n in ctx.store.live_nodes() if n["name"] == name), None)
    if node is None:
        return None
    return {"id": node.get("id", name), "name": name, "ephemeral_id": node.get("id", name)[::-1],
            "transport_address": f"{node['ip']}:{node['transport_port']}", "attributes": {}}
