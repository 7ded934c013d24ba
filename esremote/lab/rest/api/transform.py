"""Transforms: put, get, stats, start, stop, delete, with es-facts §5's answers and errors.

Handlers change `transforms.<id>` in the state; the elected node's `work.py` runs a started
transform on its schedule (reading `source.index`, possibly `alias:index` through the link) and
sets `state: failed` with a `reason` when the link breaks. As in Elasticsearch, a transform runs with
the authority of whoever created it (`username`, shown as `authorization`); starting it changes
neither. Updating it does: Elasticsearch stores the updating user's headers, so the transform then
runs with that user's authority (`TransportUpdateTransformAction`).
"""

from __future__ import annotations

import fnmatch
import time

from esremote.lab import errors
from esremote.lab.rest.api.nodes import elected_node, task_node_body
from esremote.lab.rest.http import Request
from esremote.lab.rest.routes import api

_STATS_ZERO = {"pages_processed": 0, "documents_processed": 0, "documents_indexed": 0, "documents_deleted": 0,
               "trigger_count": 0, "index_time_in_ms": 0, "index_total": 0, "index_failures": 0,
               "search_time_in_ms": 0, "search_total": 0, "search_failures": 0, "processing_time_in_ms": 0,
               "processing_total": 0, "delete_time_in_ms": 0, "exponential_avg_checkpoint_duration_ms": 0.0,
               "exponential_avg_documents_indexed": 0.0, "exponential_avg_documents_processed": 0.0}


def _not_found(transform_id: str) -> errors.ESError:
    return errors.ResourceNotFound(f"Transform with id [{transform_id}] could not be found")


def select(transforms: dict, expression: str | None, allow_no_match: bool = True) -> list[str]:
    """Ids matching `_all`, `*`, wildcards or a comma list; a missing explicit id is a 404."""
    parts = [p for p in (expression or "_all").split(",") if p]
    chosen: list[str] = []
    for part in parts:
        if part in ("_all", "*") or "*" in part:
            matches = [t for t in sorted(transforms) if fnmatch.fnmatchcase(t, "*" if part == "_all" else part)]
            if not matches and not allow_no_match:
                raise _not_found(part)
            chosen += [m for m in matches if m not in chosen]
        elif part in transforms:
            chosen.append(part)
        else:
            raise _not_found(part)
    return chosen


@api("transform.put_transform")
def put_transform(req: Request) -> dict:
    transform_id = req.path_params["transform_id"]
    body = req.json(required=True)
    problems = []
    if not (body.get("source") or {}).get("index"):
        problems.append("source.index is missing")
    if not (body.get("dest") or {}).get("index"):
        problems.append("dest.index is missing")
    if "pivot" not in body and "latest" not in body:
        problems.append("Transform configuration must specify exactly 1 function")
    if problems:
        raise errors.ValidationError(*problems)
    if not req.bool_param("defer_validation"):
        _validate_sources(req, body["source"]["index"])
    with req.ctx.store.transaction() as st:
        if transform_id in st["transforms"]:
            raise errors.ResourceAlreadyExists(f"Transform with id [{transform_id}] already exists")
        st["transforms"][transform_id] = {
            "config": {"id": transform_id, **body}, "create_time": int(time.time() * 1000),
            "version": req.ctx.config.version_text, "state": "stopped", "reason": None, "node": None,
            "checkpoint": 0, "source_seq": {}, "stats": dict(_STATS_ZERO), "last_search_time": None,
            "username": req.user.username, "authorization": req.user.authorization_info()}
    return {"acknowledged": True}


def _validate_sources(req: Request, sources) -> None:
    from esremote.lab.models.search import resolve_indices, split_remote
    sources = sources if isinstance(sources, list) else [sources]
    local, _remote = split_remote(",".join(sources))
    if local:
        try:
            found = resolve_indices(req.ctx.store.snapshot(), local)
        except errors.IndexNotFound as exc:
            raise errors.ValidationError(f"Source index [{exc.extra['index']}] does not exist") from None
        if not found:
            raise errors.ValidationError(f"Source index [{','.join(local)}] does not exist")


# TransformConfigUpdate's fields: anything else is refused by its parser.
_UPDATABLE = ("source", "dest", "frequency", "sync", "description", "settings", "_meta", "retention_policy")


@api("transform.update_transform")
def update_transform(req: Request) -> dict:
    transform_id = req.path_params["transform_id"]
    body = req.json(required=True)
    unknown = [k for k in body if k not in _UPDATABLE]
    if unknown:
        raise errors.XContentParseError(f"[data_frame_transform_config_update] unknown field [{unknown[0]}]")
    if "source" in body and not (body["source"] or {}).get("index"):
        raise errors.ValidationError("source.index is missing")
    if "source" in body and not req.bool_param("defer_validation"):
        _validate_sources(req, body["source"]["index"])
    with req.ctx.store.transaction() as st:
        record = st["transforms"].get(transform_id)
        if record is None:
            raise _not_found(transform_id)
        record["config"].update(body)
        record.update({"username": req.user.username, "authorization": req.user.authorization_info()})
        return _config_body(record, True)


@api("transform.get_transform")
def get_transform(req: Request) -> dict:
    transforms = req.ctx.store.snapshot()["transforms"]
    ids = select(transforms, req.path_params.get("transform_id"), req.bool_param("allow_no_match", True))
    generated = not req.bool_param("exclude_generated")
    return {"count": len(ids), "transforms": [_config_body(transforms[t], generated) for t in _page(req, ids)]}


def _config_body(record: dict, generated: bool) -> dict:
    """TransformConfig's rendering: id, then (unless exclude_generated) authorization, version and
    create_time, then the PUT body."""
    config = dict(record["config"])
    body = {"id": config.pop("id")}
    if generated:
        if record.get("authorization"):
            body["authorization"] = record["authorization"]
        body.update({"version": record["version"], "create_time": record["create_time"]})
    body.update(config)
    return body


def _page(req: Request, ids: list[str]) -> list[str]:
    """`from` / `size` (default 100), as the transform listings page."""
    start, size = int(req.param("from", "0")), int(req.param("size", "100"))
    return ids[start:start + size]


@api("transform.get_transform_stats")
def get_transform_stats(req: Request) -> dict:
    transforms = req.ctx.store.snapshot()["transforms"]
    ids = select(transforms, req.path_params.get("transform_id"), req.bool_param("allow_no_match", True))
    out = []
    for t in _page(req, ids):
        record = transforms[t]
        entry = {"id": t, "state": record["state"]}
        if record.get("reason"):
            entry["reason"] = record["reason"]
        node = task_node_body(req.ctx, record.get("node")) if record["state"] != "stopped" else None
        if node:
            entry["node"] = node
        checkpoint = record.get("checkpoint", 0)
        entry["stats"] = {**_STATS_ZERO, **record.get("stats", {})}
        entry["checkpointing"] = {"last": {"checkpoint": checkpoint,
                                           **({"timestamp_millis": record["last_search_time"]}
                                              if record.get("last_search_time") else {})},
                                  "operations_behind": 0}
        if record["state"] == "failed":
            entry["health"] = {"status": "red", "issues": [{"type": "transform_task_failed",
                                                            "issue": "Transform task state is [failed]",
                                                            "details": record.get("reason"), "count": 1}]}
        else:
            entry["health"] = {"status": "green"}
        out.append(entry)
    return {"count": len(ids), "transforms": out}


@api("transform.start_transform")
def start_transform(req: Request) -> dict:
    transform_id = req.path_params["transform_id"]
    node = elected_node(req.ctx)
    with req.ctx.store.transaction() as st:
        record = st["transforms"].get(transform_id)
        if record is None:
            raise _not_found(transform_id)
        if record["state"] == "failed":
            raise errors.StatusConflict(f"Unable to start transform [{transform_id}] as it is in a failed state. "
                                        "Use force stop and then restart the transform once error is resolved. "
                                        f"More details: [{record.get('reason')}]")
        if record["state"] != "stopped":
            raise errors.StatusConflict(f"Cannot start transform [{transform_id}] as it is already started.")
        record.update({"state": "started", "reason": None, "node": node["name"] if node else None})
    return {"acknowledged": True}


@api("transform.stop_transform")
def stop_transform(req: Request) -> dict:
    force = req.bool_param("force")
    with req.ctx.store.transaction() as st:
        ids = select(st["transforms"], req.path_params["transform_id"], req.bool_param("allow_no_match", True))
        for t in ids:
            record = st["transforms"][t]
            if record["state"] == "failed" and not force:
                raise errors.StatusConflict(f"Unable to stop transform [{t}] as it is in a failed state. Use force "
                                            f"stop to stop the transform. More details: [{record.get('reason')}]")
        for t in ids:
            st["transforms"][t].update({"state": "stopped", "reason": None, "node": None})
    return {"acknowledged": True}


@api("transform.delete_transform")
def delete_transform(req: Request) -> dict:
    transform_id = req.path_params["transform_id"]
    with req.ctx.store.transaction() as st:
        record = st["transforms"].get(transform_id)
        if record is None:
            raise _not_found(transform_id)
        if record["state"] != "stopped" and not req.bool_param("force"):
            raise errors.StatusConflict(f"Cannot delete transform [{transform_id}] as the task is running. "
                                        "Stop the task first")
        del st["transforms"][transform_id]
    return {"acknowledged": True}
