"""Indices and documents: create/get/delete/exists an index, index/get/delete a document, bulk,
refresh/flush, and search/count (local indices here, `alias:index` through `ctx.remote`).

Index-level authorization happens here: an explicit index the user may not touch is a 403 with
Elasticsearch's text; wildcard expansion silently leaves such indices out, as Elasticsearch does.
"""

from __future__ import annotations

import time
from typing import Any

from esremote.lab import errors
from esremote.lab.models import search
from esremote.lab.rest.http import Request, Response
from esremote.lab.rest.routes import api
from esremote.lab.models.state import new_uuid

_WRITE = ["create_doc", "create", "index", "write", "all"]
_READ = ["read", "all"]
_DELETE = ["delete", "write", "all"]
_INVALID_NAME_CHARS = set('\\/*?"<>| ,#:')


def _authorize(req: Request, action: str, indices: list[str], privileges: list[str]) -> None:
    sec, user = req.ctx.security, req.user
    denied = [i for i in indices if not sec.can_access_index(user, i, privileges)]
    if denied:
        raise errors.SecurityError(f"action [{action}] is unauthorized for {sec.describe(user)} on indices "
                                   f"[{','.join(denied)}], this action is granted by the index privileges "
                                   f"[{','.join(privileges)}]")


def _allowed(req: Request, privileges: list[str]):
    return lambda index: req.ctx.security.can_access_index(req.user, index, privileges)


def validate_index_name(name: str) -> None:
    def invalid(reason: str) -> errors.ESError:
        return errors.ESError(f"Invalid index name [{name}], {reason}", status=400, type="invalid_index_name_exception",
                              **{"index_uuid": "_na_", "index": name})
    if name != name.lower():
        raise invalid("must be lowercase")
    if name.startswith(("_", "-", "+")):
        raise invalid("must not start with '_', '-', or '+'")
    bad = sorted(_INVALID_NAME_CHARS & set(name))
    if bad:
        raise invalid("must not contain the following characters [' ','\"','*',',','/','<','>','?','\\','|']")


def create_index(ctx: Any, st: dict, name: str, body: dict | None = None, *, follower: bool = False) -> dict:
    """Add an index to the state `st` (the caller holds the transaction)."""
    validate_index_name(name)
    body = body or {}
    from esremote.lab.models.settings import flatten
    settings = {k if k.startswith("index.") else f"index.{k}": str(v)
                for k, v in flatten(body.get("settings") or {}).items()}
    settings.setdefault("index.number_of_shards", "1")
    settings.setdefault("index.number_of_replicas", "1")
    meta = {"uuid": new_uuid(), "creation_date": int(time.time() * 1000), "settings": settings,
            "mappings": body.get("mappings") or {}, "aliases": body.get("aliases") or {}, "follower": follower}
    st["indices"][name] = meta
    return meta


def ensure_index(req: Request, index: str) -> None:
    """Auto-create on first write (action.auto_create_index defaults to true)."""
    if index in req.ctx.store.snapshot()["indices"]:
        return
    if str(req.ctx.store.snapshot()["settings"]["persistent"].get("action.auto_create_index", "true")) == "false":
        raise errors.IndexNotFound(index)
    _authorize(req, "indices:admin/auto_create", [index], ["create_index", "manage", "create_doc", "create",
                                                             "index", "write", "all"])
    with req.ctx.store.transaction() as st:
        if index not in st["indices"]:
            create_index(req.ctx, st, index)


def _reject_follower_write(req: Request, index: str) -> None:
    meta = req.ctx.store.snapshot()["indices"].get(index)
    if meta and meta.get("follower"):
        raise errors.ESError(f"index [{index}] is a follower index", status=403, type="cluster_block_exception")


def _write_result(index: str, doc_id: str, seq: int, version: int, result: str) -> dict:
    return {"_index": index, "_id": doc_id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq, "_primary_term": 1}


# ---------------------------------------------------------------------------------- indices

@api("indices.create")
def indices_create(req: Request) -> dict:
    index = req.path_params["index"]
    validate_index_name(index)
    _authorize(req, "indices:admin/create", [index], ["create_index", "manage", "all"])
    body = req.json() or {}
    with req.ctx.store.transaction() as st:
        if index in st["indices"]:
            raise errors.ResourceAlreadyExists(f"index [{index}/{st['indices'][index]['uuid']}] already exists",
                                               index_uuid=st["indices"][index]["uuid"], index=index)
        create_index(req.ctx, st, index, body)
    return {"acknowledged": True, "shards_acknowledged": True, "index": index}


@api("indices.delete")
def indices_delete(req: Request) -> dict:
    expression = req.path_params["index"]
    state = req.ctx.store.snapshot()
    destructive = str(state["settings"]["persistent"].get("action.destructive_requires_name",
                                                          state["settings"]["transient"].get(
                                                              "action.destructive_requires_name", "true")))
    if destructive != "false" and ("*" in expression or expression == "_all"):
        raise errors.IllegalArgument("Wildcard expressions or all indices are not allowed")
    indices = search.resolve_indices(state, expression, ignore_unavailable=req.bool_param("ignore_unavailable"))
    _authorize(req, "indices:admin/delete", indices, ["delete_index", "manage", "all"])
    with req.ctx.store.transaction() as st:
        for index in indices:
            st["indices"].pop(index, None)
            st["ccr"]["followers"].pop(index, None)
    for index in indices:
        req.ctx.store.delete_docs(index)
    return {"acknowledged": True}


@api("indices.exists")
def indices_exists(req: Request) -> Response:
    try:
        found = search.resolve_indices(req.ctx.store.snapshot(), req.path_params["index"], allow_no_indices=False)
    except errors.IndexNotFound:
        found = []
    return Response(200 if found else 404, None)


@api("indices.get")
def indices_get(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    indices = search.resolve_indices(state, req.path_params["index"], allowed=_allowed(req, ["view_index_metadata", "manage", "read", "all"]))
    from esremote.lab.models.settings import nest
    out = {}
    for index in indices:
        meta = state["indices"][index]
        settings = {**meta.get("settings", {}), "index.uuid": meta["uuid"],
                    "index.creation_date": str(meta["creation_date"]), "index.provided_name": index}
        out[index] = {"aliases": meta.get("aliases", {}), "mappings": meta.get("mappings", {}),
                      "settings": nest(settings)}
    return out


def _shards_only(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    indices = search.resolve_indices(state, req.path_params.get("index"))
    n = sum(int(state["indices"][i]["settings"].get("index.number_of_shards", 1)) for i in indices)
    return {"_shards": {"total": 2 * n, "successful": n, "failed": 0}}


@api("indices.refresh")
def indices_refresh(req: Request) -> dict:
    return _shards_only(req)


@api("indices.flush")
def indices_flush(req: Request) -> dict:
    return _shards_only(req)


# -------------------------------------------------------------------------------- documents

@api("index")
def index_doc(req: Request) -> Response:
    index = req.path_params["index"]
    doc_id = req.path_params.get("id") or new_uuid()[:20]
    body = req.json(required=True)
    _authorize(req, "indices:data/write/index", [index], _WRITE)
    ensure_index(req, index)
    _reject_follower_write(req, index)
    op_type = req.param("op_type", "index")
    existing = req.ctx.store.current_docs(index).get(doc_id)
    if op_type == "create" and existing is not None:
        raise errors.VersionConflict(f"[{doc_id}]: version conflict, document already exists (current version "
                                     f"[{existing['_version']}])", index_uuid=req.ctx.store.snapshot()["indices"][index]["uuid"],
                                     shard="0", index=index)
    seq = req.ctx.store.append_docs(index, [{"_id": doc_id, "_source": body}])[0]
    version = (existing["_version"] + 1) if existing else 1
    created = existing is None
    return Response(201 if created else 200, _write_result(index, doc_id, seq, version,
                                                           "created" if created else "updated"))


@api("get")
def get_doc(req: Request) -> Response:
    index, doc_id = req.path_params["index"], req.path_params["id"]
    if index not in req.ctx.store.snapshot()["indices"]:
        raise errors.IndexNotFound(index)
    _authorize(req, "indices:data/read/get", [index], _READ)
    doc = req.ctx.store.current_docs(index).get(doc_id)
    if doc is None:
        return Response(404, {"_index": index, "_id": doc_id, "found": False})
    return Response(200, {"_index": index, "_id": doc_id, "_version": doc["_version"], "_seq_no": doc["_seq"],
                          "_primary_term": 1, "found": True, "_source": doc["_source"]})


@api("delete")
def delete_doc(req: Request) -> Response:
    index, doc_id = req.path_params["index"], req.path_params["id"]
    if index not in req.ctx.store.snapshot()["indices"]:
        raise errors.IndexNotFound(index)
    _authorize(req, "indices:data/write/delete", [index], _DELETE)
    _reject_follower_write(req, index)
    existing = req.ctx.store.current_docs(index).get(doc_id)
    if existing is None:
        return Response(404, _write_result(index, doc_id, -2, 1, "not_found"))
    seq = req.ctx.store.append_docs(index, [{"_id": doc_id, "deleted": True}])[0]
    return Response(200, _write_result(index, doc_id, seq, existing["_version"] + 1, "deleted"))


@api("bulk")
def bulk(req: Request) -> dict:
    started = time.monotonic()
    lines = req.ndjson()
    default_index = req.path_params.get("index")
    items, failed, i = [], False, 0
    while i < len(lines):
        action = lines[i]
        if not isinstance(action, dict) or len(action) != 1:
            raise errors.IllegalArgument(f"Malformed action/metadata line [{i + 1}], expected a simple value for "
                                         "field [_index] but found [START_OBJECT]")
        kind, meta = next(iter(action.items()))
        if kind not in ("index", "create", "update", "delete"):
            raise errors.IllegalArgument(f"Malformed action/metadata line [{i + 1}], expected one of [create, delete, "
                                         f"index, update] but found [{kind}]")
        source = None
        if kind != "delete":
            i += 1
            if i >= len(lines):
                raise errors.ValidationError("no requests added")
            source = lines[i]
        i += 1
        index, doc_id = meta.get("_index", default_index), meta.get("_id") or new_uuid()[:20]
        try:
            if index is None:
                raise errors.ValidationError("index is missing")
            items.append({kind: _bulk_item(req, kind, index, doc_id, source)})
        except errors.ESError as exc:
            failed = True
            items.append({kind: {"_index": index, "_id": doc_id, "status": exc.status, "error": exc.cause_body()}})
    return {"errors": failed, "took": int((time.monotonic() - started) * 1000), "items": items}


def _bulk_item(req: Request, kind: str, index: str, doc_id: str, source: Any) -> dict:
    store = req.ctx.store
    if kind == "delete":
        _authorize(req, "indices:data/write/delete", [index], _DELETE)
        existing = store.current_docs(index).get(doc_id) if index in store.snapshot()["indices"] else None
        if existing is None:
            return {**_write_result(index, doc_id, -2, 1, "not_found"), "status": 404}
        seq = store.append_docs(index, [{"_id": doc_id, "deleted": True}])[0]
        return {**_write_result(index, doc_id, seq, existing["_version"] + 1, "deleted"), "status": 200}
    _authorize(req, "indices:data/write/bulk[s]", [index], _WRITE)
    ensure_index(req, index)
    _reject_follower_write(req, index)
    existing = store.current_docs(index).get(doc_id)
    if kind == "create" and existing is not None:
        raise errors.VersionConflict(f"[{doc_id}]: version conflict, document already exists (current version "
                                     f"[{existing['_version']}])")
    if kind == "update":
        if existing is None:
            raise errors.ESError(f"[{doc_id}]: document missing", status=404, type="document_missing_exception")
        source = {**existing["_source"], **(source or {}).get("doc", {})}
    seq = store.append_docs(index, [{"_id": doc_id, "_source": source}])[0]
    version = existing["_version"] + 1 if existing else 1
    result = "created" if existing is None else "updated"
    return {**_write_result(index, doc_id, seq, version, result), "status": 201 if existing is None else 200}


# ----------------------------------------------------------------------------------- search

def _local_allowed(req: Request, local: list[str]) -> None:
    """Explicit (non-wildcard) local names must be readable: a 403 like Elasticsearch's otherwise."""
    explicit = [i for i in local if "*" not in i and not i.startswith("-") and i != "_all"]
    state = req.ctx.store.snapshot()
    concrete = [i for i in explicit if i in state["indices"]]
    _authorize(req, "indices:data/read/search", concrete, _READ)


@api("search")
def search_api(req: Request) -> dict:
    if "type" in req.path_params:
        raise errors.no_handler(req.path, req.method)  # typed search ended with 7.x
    body = _with_q(req, req.json() or {})
    expression = req.path_params.get("index") or "_all"
    local, remote = search.split_remote(expression)
    if not remote:
        _local_allowed(req, local)
        return search.search_local(req.ctx.store, expression, body, allowed=_allowed(req, _READ), params=req.params)
    return _cross_cluster_search(req, local, remote, body)


def _cross_cluster_search(req: Request, local: list[str], remote: list[str], body: dict) -> dict:
    ctx = req.ctx
    if ctx.remote is None:
        raise errors.NotImplementedInLab(f"cross-cluster search [{','.join(remote)}] needs the remote cluster "
                                         "service, which is not running on this node")
    by_alias: dict[str, list[str]] = {}
    for entry in remote:
        alias, _, index = entry.partition(":")
        by_alias.setdefault(alias, []).append(index)
    details: dict[str, dict] = {}
    answers = []
    inner = {**body, "size": int(req.params.get("size", body.get("size", 10))) + int(body.get("from", 0)), "from": 0}
    if local:
        _local_allowed(req, local)
        answers.append(search.search_local(ctx.store, ",".join(local), inner, allowed=_allowed(req, _READ)))
        details["(local)"] = {"status": "successful", "indices": ",".join(local), "took": answers[-1]["took"],
                              "timed_out": False, "_shards": answers[-1]["_shards"]}
    for alias, indices in by_alias.items():
        try:
            answer = ctx.remote.search(alias, ",".join(indices), inner, req.user)
        except errors.ESError as exc:
            skip = getattr(ctx.remote, "skip_unavailable", lambda a: False)(alias)
            if not skip:
                raise
            details[alias] = {"status": "skipped", "indices": ",".join(indices), "timed_out": False,
                              "failures": [{"shard": -1, "index": None, "reason": exc.cause_body()}]}
            continue
        answers.append(answer)
        details[alias] = {"status": "successful", "indices": ",".join(indices), "took": answer.get("took", 0),
                          "timed_out": False, "_shards": answer.get("_shards", search._shards(1))}
    return _merge(req, body, answers, details)


def _merge(req: Request, body: dict, answers: list[dict], details: dict) -> dict:
    hits = [h for a in answers for h in a["hits"]["hits"]]
    keys = search._sort_keys(body)
    if keys:
        for position, (_field, descending) in reversed(list(enumerate(keys))):
            hits.sort(key=lambda h: (h.get("sort", [None])[position] is None,
                                     isinstance(h.get("sort", [None])[position], str), h.get("sort", [0])[position] or 0),
                      reverse=descending)
    start = int(req.params.get("from", body.get("from", 0)))
    size = int(req.params.get("size", body.get("size", 10)))
    total = sum(a["hits"].get("total", {}).get("value", 0) for a in answers)
    shards = {k: sum(a["_shards"][k] for a in answers) for k in ("total", "successful", "skipped", "failed")}
    counts = {"total": len(details), "successful": sum(d["status"] == "successful" for d in details.values()),
              "skipped": sum(d["status"] == "skipped" for d in details.values()), "running": 0, "partial": 0,
              "failed": sum(d["status"] == "failed" for d in details.values())}
    return {"took": max((a.get("took", 0) for a in answers), default=0), "timed_out": False,
            "num_reduce_phases": 2 if len(answers) > 1 else 1, "_shards": shards,
            "_clusters": {**counts, "details": details},
            "hits": {"total": {"value": total, "relation": "eq"}, "max_score": None if keys else (1.0 if hits else None),
                     "hits": hits[start:start + size]}}


@api("count")
def count_api(req: Request) -> dict:
    """`_count` is a search of size 0 in Elasticsearch, so it crosses clusters too."""
    body = _with_q(req, req.json() or {})
    expression = req.path_params.get("index") or "_all"
    local, remote = search.split_remote(expression)
    if remote:
        answer = _cross_cluster_search(req, local, remote, {**body, "size": 0})
        return {"count": answer["hits"]["total"]["value"], "_shards": answer["_shards"]}
    _local_allowed(req, local)
    return search.count_local(req.ctx.store, expression, body, allowed=_allowed(req, _READ))


def _with_q(req: Request, body: dict) -> dict:
    """The `q` parameter's simplest forms: `field:value` (a match) or `value` (anywhere)."""
    q = req.param("q")
    if not q or "query" in body:
        return body
    field, sep, value = q.partition(":")
    if sep:
        return {**body, "query": {"match": {field: value}}}
    return {**body, "query": {"query_string": {"query": q}}}
