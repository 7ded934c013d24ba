"""Root info, cluster health/state/settings, `_remote/info`, `_resolve/cluster` and the cat APIs."""

from __future__ import annotations

import time
import zlib

from esremote.lab import errors
from esremote.lab.models import settings
from esremote.lab.rest.http import Request, Response
from esremote.lab.rest.routes import api

_BUILD = {"8": ("9.11.1", "7.17.0", "7.0.0"), "9": ("10.1.0", "8.18.0", "8.0.0")}


def version_body(ctx) -> dict:
    major = str(ctx.config.version[0])
    lucene, wire, index = _BUILD.get(major, _BUILD["8"])
    return {"number": ctx.config.version_text, "build_flavor": "default", "build_type": "tar",
            "build_hash": f"{zlib.crc32(ctx.config.version_text.encode()):08x}" * 5,
            "build_date": "2024-08-05T10:05:34.233336849Z", "build_snapshot": False,
            "lucene_version": lucene, "minimum_wire_compatibility_version": wire,
            "minimum_index_compatibility_version": index}


@api("info")
def info(req: Request) -> dict:
    ctx = req.ctx
    return {"name": ctx.config.name, "cluster_name": ctx.config.cluster_name,
            "cluster_uuid": ctx.store.snapshot()["cluster_uuid"], "version": version_body(ctx),
            "tagline": "You Know, for Search"}


# ---------------------------------------------------------------------------------------- health

def expected_nodes(ctx, live: list[dict]) -> list[str]:
    names = set(ctx.config.settings.get("cluster.initial_master_nodes") or [])
    names.update(n["name"] for n in live)
    return sorted(names)


def _replicas(settings: dict, nodes: int) -> int:
    """`index.number_of_replicas`, or what `index.auto_expand_replicas` ("0-1", "0-all") makes of
    it for this many live data nodes (system indices such as .ml-notifications use "0-1")."""
    expand = settings.get("index.auto_expand_replicas")
    if expand and expand != "false":
        low, _, high = str(expand).partition("-")
        most = nodes - 1 if high == "all" else int(high)
        return max(int(low), min(most, nodes - 1))
    return int(settings.get("index.number_of_replicas", 1))


def shard_table(ctx, state: dict, live: list[dict], indices: list[str] | None = None) -> dict:
    """Per shard copy: assigned and active or not, from which expected nodes are live."""
    nodes = expected_nodes(ctx, live)
    alive = {n["name"] for n in live}
    counts = {"active_primary_shards": 0, "active_shards": 0, "unassigned_shards": 0,
              "unassigned_primary_shards": 0, "status": "green"}
    rank = {"green": 0, "yellow": 1, "red": 2}
    for index, meta in sorted(state["indices"].items()):
        if indices is not None and index not in indices:
            continue
        shards = int(meta.get("settings", {}).get("index.number_of_shards", 1))
        replicas = _replicas(meta.get("settings", {}), max(len(alive), 1))
        offset = zlib.crc32(index.encode())
        for shard in range(shards):
            copies = []
            for copy in range(replicas + 1):
                node = nodes[(offset + shard + copy) % len(nodes)] if copy < len(nodes) else None
                copies.append(node is not None and node in alive)
            active = sum(copies)
            status = "green"
            if active == 0:
                status = "red"
                counts["unassigned_primary_shards"] += 1
            else:
                counts["active_primary_shards"] += 1
                if active < len(copies):
                    status = "yellow"
            counts["active_shards"] += active
            counts["unassigned_shards"] += len(copies) - active
            if rank[status] > rank[counts["status"]]:
                counts["status"] = status
    return counts


def health_body(ctx, indices: list[str] | None = None) -> dict:
    state, live = ctx.store.snapshot(), ctx.store.live_nodes()
    table = shard_table(ctx, state, live, indices)
    total = table["active_shards"] + table["unassigned_shards"]
    body = {"cluster_name": ctx.config.cluster_name, "status": table["status"], "timed_out": False,
            "number_of_nodes": len(live),
            "number_of_data_nodes": sum(1 for n in live if any(r.startswith("data") for r in n.get("roles", ["data"]))),
            "active_primary_shards": table["active_primary_shards"], "active_shards": table["active_shards"],
            "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": table["unassigned_shards"]}
    if ctx.config.version >= (8, 16, 0):
        body["unassigned_primary_shards"] = table["unassigned_primary_shards"]
    body.update({"delayed_unassigned_shards": 0, "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
                 "task_max_waiting_in_queue_millis": 0,
                 "active_shards_percent_as_number": 100.0 if total == 0 else 100.0 * table["active_shards"] / total})
    return body


def parse_time_param(value: str | None, default: float) -> float:
    """`30s`, `500ms`, `1m` -> seconds."""
    if not value:
        return default
    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))
    for unit, factor in units:
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * factor
    if value in ("-1", "0"):
        return 0.0
    raise errors.ParseError(f"failed to parse setting [timeout] with value [{value}] as a time value: "
                            "unit is missing or unrecognized")


@api("cluster.health")
def cluster_health(req: Request) -> Response:
    ctx = req.ctx
    indices = req.list_param("index") or None
    if indices:
        known = ctx.store.snapshot()["indices"]
        missing = [i for i in indices if i not in known and "*" not in i]
        if missing:
            return Response(408, {**health_body(ctx, []), "status": "red", "timed_out": True})
    wanted = req.param("wait_for_status")
    wanted_nodes = req.param("wait_for_nodes")
    deadline = time.monotonic() + parse_time_param(req.param("timeout"), 30.0)
    rank = {"green": 0, "yellow": 1, "red": 2}
    while True:
        body = health_body(ctx, indices)
        ok = wanted is None or rank[body["status"]] <= rank.get(wanted, 2)
        if wanted_nodes:
            target = wanted_nodes.lstrip(">=<")
            n = body["number_of_nodes"]
            ok = ok and (n >= int(target) if wanted_nodes.startswith(">=") else
                         n > int(target) if wanted_nodes.startswith(">") else
                         n <= int(target) if wanted_nodes.startswith("<=") else
                         n < int(target) if wanted_nodes.startswith("<") else n == int(target))
        if ok:
            return Response(200, body)
        if time.monotonic() >= deadline:
            body["timed_out"] = True
            return Response(408, body)
        time.sleep(0.1)


@api("cat.health")
def cat_health(req: Request) -> Response:
    body = health_body(req.ctx)
    now = int(time.time())
    row = {"epoch": str(now), "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)),
           "cluster": body["cluster_name"], "status": body["status"], "node.total": str(body["number_of_nodes"]),
           "node.data": str(body["number_of_data_nodes"]), "shards": str(body["active_shards"]),
           "pri": str(body["active_primary_shards"]), "relo": "0", "init": "0",
           "unassign": str(body["unassigned_shards"]), "pending_tasks": "0", "max_task_wait_time": "-",
           "active_shards_percent": f"{body['active_shards_percent_as_number']:.1f}%"}
    return _cat(req, [row])


@api("cat.nodes")
def cat_nodes(req: Request) -> Response:
    rows = []
    master = min((n["name"] for n in req.ctx.store.live_nodes()), default=None)
    for n in req.ctx.store.live_nodes():
        rows.append({"ip": n["ip"], "heap.percent": "10", "ram.percent": "50", "cpu": "1", "load_1m": "0.10",
                     "load_5m": "0.10", "load_15m": "0.10", "node.role": "cdfhilmrstw",
                     "master": "*" if n["name"] == master else "-", "name": n["name"]})
    return _cat(req, rows)


def _cat(req: Request, rows: list[dict]) -> Response:
    if req.param("format") == "json":
        return Response(200, rows)
    columns = list(rows[0]) if rows else []
    lines = []
    if req.bool_param("v"):
        lines.append(" ".join(columns))
    lines += [" ".join(r[c] for c in columns) for r in rows]
    return Response(200, "".join(line + "\n" for line in lines), content_type="text/plain; charset=UTF-8")


# -------------------------------------------------------------------------------------- settings

@api("cluster.get_settings")
def get_settings(req: Request) -> dict:
    ctx = req.ctx
    return settings.render(ctx.store.snapshot(), ctx.config.settings, flat=req.bool_param("flat_settings"),
                           include_defaults=req.bool_param("include_defaults"))


@api("cluster.put_settings")
def put_settings(req: Request) -> dict:
    ctx = req.ctx
    body = req.json(required=True)
    ack_timeout = parse_time_param(req.param("timeout"), 30.0)
    with ctx.store.transaction() as st:
        answer = settings.apply_update(st, ctx.config.settings, body, ctx.config.version)
    # the transaction saved version+1 when it changed anything; re-read it after the lock
    version = ctx.store.snapshot().get("version", 0)
    if ctx.remote is not None:
        ctx.remote.settings_changed()
    # Elasticsearch acknowledges once every node applied the new cluster state (or the ack
    # timeout passed: then `acknowledged: false`, the update stays).
    acknowledged = ctx.store.wait_applied(version, ack_timeout)
    if req.bool_param("flat_settings"):
        answer = {**answer, **{scope: settings.flatten(answer[scope]) for scope in ("persistent", "transient")}}
    return {**answer, "acknowledged": acknowledged}


# ------------------------------------------------------------------------------ remote clusters

@api("cluster.remote_info")
def remote_info(req: Request) -> dict:
    if req.ctx.remote is None:
        return {}
    return req.ctx.remote.info()


@api("indices.resolve_cluster")
def resolve_cluster(req: Request) -> dict:
    ctx = req.ctx
    if ctx.config.version < (8, 13, 0):
        raise errors.no_handler(req.path, req.method)  # the API arrived in 8.13
    expression = req.path_params.get("name")
    if expression is None:
        if ctx.config.version < (9, 0, 0):
            raise errors.ValidationError("index expression is required")  # 8.x needs one
        expression = "*:*"
    from esremote.lab.models.search import resolve_local, split_remote
    local, remote = split_remote(expression)
    body: dict = {}
    if local:
        v = version_body(ctx)
        body["(local)"] = {**resolve_local(ctx.store, ",".join(local)),
                           "version": {k: v[k] for k in ("number", "build_flavor", "minimum_wire_compatibility_version",
                                                         "minimum_index_compatibility_version")}}
    if remote:
        if ctx.remote is None:
            raise errors.NotImplementedInLab("remote cluster service is not running on this node: "
                                              "cannot resolve [" + ",".join(remote) + "]")
        body.update(ctx.remote.resolve_cluster(",".join(remote), req.user))
    return body


# ------------------------------------------------------------------------------- cluster state

@api("cluster.state")
def cluster_state(req: Request) -> dict:
    ctx = req.ctx
    state, live = ctx.store.snapshot(), ctx.store.live_nodes()
    master = min((n["name"] for n in live), default=None)
    master_id = next((n.get("id") for n in live if n["name"] == master), None)
    body = {"cluster_name": ctx.config.cluster_name, "cluster_uuid": state["cluster_uuid"],
            "version": state.get("version", 0), "state_uuid": f"{state['cluster_uuid']}-{state.get('version', 0)}",
            "master_node": master_id,
            "nodes": {n.get("id", n["name"]): {"name": n["name"], "transport_address": f"{n['ip']}:{n['transport_port']}",
                                               "roles": n.get("roles", [])} for n in live},
            "metadata": {"cluster_uuid": state["cluster_uuid"],
                         "persistent_settings": settings.nest(state["settings"]["persistent"]),
                         "indices": {name: {"state": "open", "settings": settings.nest(m.get("settings", {}))}
                                     for name, m in state["indices"].items()}}}
    metrics = req.list_param("metric")
    if metrics and "_all" not in metrics:
        keep = {"cluster_name", "cluster_uuid"} | set(metrics) | ({"state_uuid"} if "version" in metrics else set())
        body = {k: v for k, v in body.items() if k in keep}
    return body


@api("cluster.allocation_explain")
def allocation_explain(req: Request) -> dict:
    table = shard_table(req.ctx, req.ctx.store.snapshot(), req.ctx.store.live_nodes())
    if table["unassigned_shards"] == 0:
        raise errors.IllegalArgument("No shard was specified in the explain API request, so this request explains "
                                     "a randomly chosen unassigned shard. There are no unassigned shards in this "
                                     "cluster, so this request cannot explain any unassigned shards.")
    return {"can_allocate": "no", "allocate_explanation": "the node holding this shard copy is not running"}
