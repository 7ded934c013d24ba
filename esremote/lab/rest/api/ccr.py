"""Cross-cluster replication: followers (follow, info, stats, pause, resume, unfollow) and
auto-follow patterns (put, get, delete, pause, resume), with es-facts §5's answers and errors.

These handlers only change the state (`ccr.followers`, `ccr.auto_follow`); the elected node's
`work.py` pulls the leader's operations through the link while a follower is `active` and records
read exceptions when the link breaks. A follower remembers who created it (`username`): the work
runs as that user, as Elasticsearch runs CCR with the creator's security headers.
"""

from __future__ import annotations

import time

from esremote.lab import errors
from esremote.lab.rest.api.documents import create_index, validate_index_name
from esremote.lab.rest.http import Request
from esremote.lab.rest.routes import api

DEFAULT_PARAMETERS = {
    "max_read_request_operation_count": 5120, "max_outstanding_read_requests": 12,
    "max_read_request_size": "32mb", "max_write_request_operation_count": 5120,
    "max_write_request_size": "9223372036854775807b", "max_outstanding_write_requests": 9,
    "max_write_buffer_count": 2147483647, "max_write_buffer_size": "512mb", "max_retry_delay": "500ms",
    "read_poll_timeout": "1m",
}


def _licensed(req: Request) -> None:
    if req.ctx.store.snapshot()["license"].get("type") not in ("trial", "platinum", "enterprise"):
        raise errors.LicenseNonCompliant("ccr")


def _remote(req: Request):
    if req.ctx.remote is None:
        raise errors.NotImplementedInLab("cross-cluster replication needs the remote cluster service, which is not "
                                         "running on this node")
    return req.ctx.remote


def _parameters(body: dict) -> dict:
    params = dict(DEFAULT_PARAMETERS)
    params.update({k: v for k, v in body.items() if k in DEFAULT_PARAMETERS})
    return params


# ---------------------------------------------------------------------------------- followers

@api("ccr.follow")
def follow(req: Request) -> dict:
    _licensed(req)
    index = req.path_params["index"]
    body = req.json(required=True)
    problems = [f"[{field}] is missing" for field in ("remote_cluster", "leader_index") if not body.get(field)]
    if problems:
        raise errors.ValidationError(*problems)
    validate_index_name(index)
    if index in req.ctx.store.snapshot()["indices"]:
        raise errors.ResourceAlreadyExists(f"index [{index}] already exists", index=index)
    alias, leader = body["remote_cluster"], body["leader_index"]
    _remote(req).read_changes(alias, leader, -1, req.user, limit=1)  # reachability, leader, privileges
    settings = follower_settings(_remote(req).leader_settings(alias, leader, req.user), body.get("settings"))
    with req.ctx.store.transaction() as st:
        if index in st["indices"]:
            raise errors.ResourceAlreadyExists(f"index [{index}] already exists", index=index)
        create_index(req.ctx, st, index, {"settings": settings}, follower=True)
        st["ccr"]["followers"][index] = new_follower(alias, leader, _parameters(body), req.user.username)
    return {"follow_index_created": True, "follow_index_shards_acked": True, "index_following_started": True}


def follower_settings(leader: dict[str, str], requested: dict | None) -> dict:
    """A follower's index settings: its leader's shards and replicas, under what the request sets."""
    from esremote.lab.models.settings import flatten

    merged = dict(leader)
    merged.update({k if k.startswith("index.") else f"index.{k}": v
                   for k, v in flatten(requested or {}).items()})
    return merged


def new_follower(alias: str, leader: str, parameters: dict, username: str, pattern: str | None = None) -> dict:
    return {"remote_cluster": alias, "leader_index": leader, "status": "active", "parameters": parameters,
            "leader_seq": -1, "read_exceptions": [], "auto_follow_pattern": pattern, "username": username,
            "created": int(time.time() * 1000)}


def _follower(req: Request, index: str) -> dict:
    state = req.ctx.store.snapshot()
    if index not in state["indices"]:
        raise errors.IndexNotFound(index)
    record = state["ccr"]["followers"].get(index)
    if record is None:
        raise errors.IllegalArgument(f"index [{index}] is not a follower index")
    return record


@api("ccr.follow_info")
def follow_info(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    from esremote.lab.models.search import resolve_indices
    indices = resolve_indices(state, req.path_params["index"])
    out = []
    for index in indices:
        record = state["ccr"]["followers"].get(index)
        if record is None:
            continue
        entry = {"follower_index": index, "remote_cluster": record["remote_cluster"],
                 "leader_index": record["leader_index"], "status": record["status"]}
        if record["status"] == "active":
            entry["parameters"] = record["parameters"]
        out.append(entry)
    return {"follower_indices": out}


def shard_stats(index: str, record: dict, docs: int) -> dict:
    seq = record.get("leader_seq", -1)
    return {"remote_cluster": record["remote_cluster"], "leader_index": record["leader_index"],
            "follower_index": index, "shard_id": 0, "leader_global_checkpoint": record.get("leader_max_seq", seq),
            "leader_max_seq_no": record.get("leader_max_seq", seq), "follower_global_checkpoint": seq,
            "follower_max_seq_no": seq, "last_requested_seq_no": seq, "outstanding_read_requests": 1,
            "outstanding_write_requests": 0, "write_buffer_operation_count": 0, "write_buffer_size_in_bytes": 0,
            "follower_mapping_version": 1, "follower_settings_version": 1, "follower_aliases_version": 1,
            "total_read_time_millis": 0, "total_read_remote_exec_time_millis": 0,
            "successful_read_requests": record.get("successful_reads", 0), "failed_read_requests": record.get("failed_reads", 0),
            "operations_read": record.get("operations_read", 0), "bytes_read": 0, "total_write_time_millis": 0,
            "successful_write_requests": record.get("successful_reads", 0), "failed_write_requests": 0,
            "operations_written": record.get("operations_read", 0),
            "read_exceptions": record.get("read_exceptions", []),
            "time_since_last_read_millis": max(0, int(time.time() * 1000) - record.get("last_read", int(time.time() * 1000)))}


def _index_stats(req: Request, index: str, record: dict) -> dict:
    lag = max(0, record.get("leader_max_seq", -1) - record.get("leader_seq", -1))
    return {"index": index, "total_global_checkpoint_lag": lag,
            "shards": [shard_stats(index, record, 0)]}


@api("ccr.follow_stats")
def follow_stats(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    from esremote.lab.models.search import resolve_indices
    indices = resolve_indices(state, req.path_params["index"])
    out = [_index_stats(req, i, state["ccr"]["followers"][i]) for i in indices
           if i in state["ccr"]["followers"] and state["ccr"]["followers"][i]["status"] == "active"]
    if not out and len(indices) == 1 and indices[0] not in state["ccr"]["followers"]:
        raise errors.IllegalArgument(f"No shard follow tasks for follower indices [{indices[0]}]")
    return {"indices": out}


@api("ccr.pause_follow")
def pause_follow(req: Request) -> dict:
    index = req.path_params["index"]
    _follower(req, index)
    with req.ctx.store.transaction() as st:
        record = st["ccr"]["followers"][index]
        if record["status"] == "paused":
            raise errors.IllegalArgument(f"no shard follow tasks for [{index}]")
        record["status"] = "paused"
    return {"acknowledged": True}


@api("ccr.resume_follow")
def resume_follow(req: Request) -> dict:
    _licensed(req)
    index = req.path_params["index"]
    body = req.json() or {}
    _follower(req, index)
    with req.ctx.store.transaction() as st:
        record = st["ccr"]["followers"][index]
        if record["status"] == "active":
            uuid = st["indices"][index]["uuid"]
            raise errors.ResourceAlreadyExists(f"task with id {{{uuid}-0}} already exist")
        record.update({"status": "active", "parameters": _parameters({**record["parameters"], **body}),
                       "read_exceptions": []})
    return {"acknowledged": True}


@api("ccr.unfollow")
def unfollow(req: Request) -> dict:
    index = req.path_params["index"]
    record = _follower(req, index)
    meta = req.ctx.store.snapshot()["indices"][index]
    if meta.get("state", "open") != "close":
        raise errors.IllegalArgument(f"cannot convert the follower index [{index}] to a non-follower, because it "
                                     "has not been closed")
    if record["status"] == "active":
        raise errors.IllegalArgument(f"cannot convert the follower index [{index}] to a non-follower, because it "
                                     "has not been paused")
    with req.ctx.store.transaction() as st:
        st["ccr"]["followers"].pop(index, None)
        st["indices"][index]["follower"] = False
    return {"acknowledged": True}


@api("ccr.stats")
def ccr_stats(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    patterns = state["ccr"]["auto_follow"]
    errors_recent = [e for p in patterns.values() for e in p.get("errors", [])]
    followers = state["ccr"]["followers"]
    return {"auto_follow_stats": {
                "number_of_failed_follow_indices": sum(p.get("failed_follow_indices", 0) for p in patterns.values()),
                "number_of_failed_remote_cluster_state_requests": sum(p.get("failed_remote_requests", 0)
                                                                      for p in patterns.values()),
                "number_of_successful_follow_indices": sum(len(p.get("followed", [])) for p in patterns.values()),
                "recent_auto_follow_errors": errors_recent[-10:],
                "auto_followed_clusters": [{"cluster_name": p["remote_cluster"], "time_since_last_check_millis": 0,
                                            "last_seen_metadata_version": 1}
                                           for p in patterns.values() if p.get("active")]},
            "follow_stats": {"indices": [_index_stats(req, i, r) for i, r in sorted(followers.items())
                                         if r["status"] == "active"]}}


# ------------------------------------------------------------------------- auto-follow patterns

@api("ccr.put_auto_follow_pattern")
def put_auto_follow_pattern(req: Request) -> dict:
    _licensed(req)
    name = req.path_params["name"]
    body = req.json(required=True)
    problems = []
    if not body.get("remote_cluster"):
        problems.append("[remote_cluster] is missing")
    if not body.get("leader_index_patterns"):
        problems.append("[leader_index_patterns] is missing")
    if problems:
        raise errors.ValidationError(*problems)
    if req.ctx.remote is not None and body["remote_cluster"] not in req.ctx.remote.aliases():
        raise errors.NoSuchRemoteCluster(body["remote_cluster"])
    with req.ctx.store.transaction() as st:
        existing = st["ccr"]["auto_follow"].get(name, {})
        st["ccr"]["auto_follow"][name] = {
            "remote_cluster": body["remote_cluster"], "leader_index_patterns": list(body["leader_index_patterns"]),
            "leader_index_exclusion_patterns": list(body.get("leader_index_exclusion_patterns", [])),
            "follow_index_pattern": body.get("follow_index_pattern", "{{leader_index}}"),
            "active": existing.get("active", True), "settings": body.get("settings", {}),
            "parameters": _parameters(body), "followed": existing.get("followed", []), "errors": [],
            "username": req.user.username, "created": existing.get("created", int(time.time() * 1000))}
    return {"acknowledged": True}


def _pattern_body(name: str, p: dict) -> dict:
    pattern = {"active": p["active"], "remote_cluster": p["remote_cluster"],
               "leader_index_patterns": p["leader_index_patterns"],
               "leader_index_exclusion_patterns": p.get("leader_index_exclusion_patterns", []),
               "follow_index_pattern": p["follow_index_pattern"]}
    if p.get("settings"):
        pattern["settings"] = p["settings"]
    return {"name": name, "pattern": pattern}


def _pattern_names(req: Request, name: str) -> list[str]:
    patterns = req.ctx.store.snapshot()["ccr"]["auto_follow"]
    if name not in patterns:
        raise errors.ResourceNotFound(f"auto-follow pattern [{name}] is missing")
    return [name]


@api("ccr.get_auto_follow_pattern")
def get_auto_follow_pattern(req: Request) -> dict:
    patterns = req.ctx.store.snapshot()["ccr"]["auto_follow"]
    name = req.path_params.get("name")
    names = _pattern_names(req, name) if name else sorted(patterns)
    return {"patterns": [_pattern_body(n, patterns[n]) for n in names]}


@api("ccr.delete_auto_follow_pattern")
def delete_auto_follow_pattern(req: Request) -> dict:
    name = req.path_params["name"]
    with req.ctx.store.transaction() as st:
        if st["ccr"]["auto_follow"].pop(name, None) is None:
            raise errors.ResourceNotFound(f"auto-follow pattern [{name}] is missing")
    return {"acknowledged": True}


def _set_active(req: Request, active: bool) -> dict:
    name = req.path_params["name"]
    with req.ctx.store.transaction() as st:
        pattern = st["ccr"]["auto_follow"].get(name)
        if pattern is None:
            raise errors.ResourceNotFound(f"auto-follow pattern [{name}] is missing")
        pattern["active"] = active  # idempotent: the same state leaves the pattern as it is
    return {"acknowledged": True}


@api("ccr.pause_auto_follow_pattern")
def pause_auto_follow_pattern(req: Request) -> dict:
    return _set_active(req, False)


@api("ccr.resume_auto_follow_pattern")
def resume_auto_follow_pattern(req: Request) -> dict:
    return _set_active(req, True)
