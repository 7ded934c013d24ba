"""Machine learning anomaly detection: jobs (put, get, stats, open, close, delete) and datafeeds
(put, get, stats, start, stop, delete), with es-facts §5's state rules: closing a job first stops
its datafeed (since 7.14); opening a job does not restart its datafeed.

Handlers change `ml.jobs` / `ml.datafeeds`; the elected node's `work.py` runs a started datafeed
(reading `indices`, possibly `alias:index` through the link) and records failures.
"""

from __future__ import annotations

import fnmatch
import time

from esremote.lab import errors
from esremote.lab.rest.api.nodes import elected_node, task_node_body
from esremote.lab.rest.http import Request
from esremote.lab.rest.routes import api


def _licensed(req: Request) -> None:
    if req.ctx.store.snapshot()["license"].get("type") not in ("trial", "platinum", "enterprise"):
        raise errors.LicenseNonCompliant("ml")


def _job_missing(job_id: str) -> errors.ESError:
    return errors.ResourceNotFound(f"No known job with id '{job_id}'")


def _datafeed_missing(datafeed_id: str) -> errors.ESError:
    return errors.ResourceNotFound(f"No datafeed with id [{datafeed_id}] exists")


def _select(objects: dict, expression: str | None, missing, allow_no_match: bool = True) -> list[str]:
    parts = [p for p in (expression or "_all").split(",") if p]
    chosen: list[str] = []
    for part in parts:
        if part in ("_all", "*") or "*" in part:
            matches = [o for o in sorted(objects) if fnmatch.fnmatchcase(o, "*" if part == "_all" else part)]
            if not matches and not allow_no_match:
                raise missing(part)
            chosen += [m for m in matches if m not in chosen]
        elif part in objects:
            chosen.append(part)
        else:
            raise missing(part)
    return chosen


def _datafeed_of(state: dict, job_id: str) -> str | None:
    return next((d for d, r in state["ml"]["datafeeds"].items() if r["job_id"] == job_id), None)


# --------------------------------------------------------------------------------------- jobs

@api("ml.put_job")
def put_job(req: Request) -> dict:
    _licensed(req)
    job_id = req.path_params["job_id"]
    body = req.json(required=True)
    if "analysis_config" not in body:
        raise errors.IllegalArgument("[job_details] Required [analysis_config]")
    if "data_description" not in body:
        raise errors.IllegalArgument("[job_details] Required [data_description]")
    now = int(time.time() * 1000)
    config = {"job_id": job_id, "job_type": "anomaly_detector", "job_version": req.ctx.config.version_text,
              "create_time": now, **{k: v for k, v in body.items() if k != "datafeed_config"},
              "results_index_name": "shared", "allow_lazy_open": body.get("allow_lazy_open", False)}
    with req.ctx.store.transaction() as st:
        if job_id in st["ml"]["jobs"]:
            raise errors.ResourceAlreadyExists(f"The job cannot be created with the Id '{job_id}'. The Id is "
                                               "already used.")
        st["ml"]["jobs"][job_id] = {"config": config, "state": "closed", "open_time": None, "node": None,
                                    "assignment_explanation": "", "processed_record_count": 0,
                                    "username": req.user.username}
    return config


@api("ml.get_jobs")
def get_jobs(req: Request) -> dict:
    jobs = req.ctx.store.snapshot()["ml"]["jobs"]
    ids = _select(jobs, req.path_params.get("job_id"), _job_missing, req.bool_param("allow_no_match", True))
    return {"count": len(ids), "jobs": [jobs[j]["config"] for j in ids]}


@api("ml.get_job_stats")
def get_job_stats(req: Request) -> dict:
    jobs = req.ctx.store.snapshot()["ml"]["jobs"]
    ids = _select(jobs, req.path_params.get("job_id"), _job_missing, req.bool_param("allow_no_match", True))
    out = []
    for j in ids:
        record = jobs[j]
        entry = {"job_id": j,
                 "data_counts": {"job_id": j, "processed_record_count": record.get("processed_record_count", 0),
                                 "processed_field_count": 0, "input_bytes": 0, "input_field_count": 0,
                                 "invalid_date_count": 0, "missing_field_count": 0, "out_of_order_timestamp_count": 0,
                                 "empty_bucket_count": 0, "sparse_bucket_count": 0, "bucket_count": 0},
                 "model_size_stats": {"job_id": j, "result_type": "model_size_stats", "model_bytes": 0,
                                      "memory_status": "ok"},
                 "forecasts_stats": {"total": 0, "forecasted_jobs": 0},
                 "state": record["state"]}
        node = task_node_body(req.ctx, record.get("node")) if record["state"] in ("opened", "opening") else None
        if node:
            entry["node"] = node
        entry["assignment_explanation"] = record.get("assignment_explanation", "")
        if record.get("open_time"):
            entry["open_time"] = f"{max(0, int(time.time() - record['open_time'] / 1000))}s"
        entry["timing_stats"] = {"job_id": j, "bucket_count": 0, "total_bucket_processing_time_ms": 0.0}
        out.append(entry)
    return {"count": len(out), "jobs": out}


@api("ml.open_job")
def open_job(req: Request) -> dict:
    _licensed(req)
    job_id = req.path_params["job_id"]
    node = elected_node(req.ctx)
    with req.ctx.store.transaction() as st:
        record = st["ml"]["jobs"].get(job_id)
        if record is None:
            raise _job_missing(job_id)
        if record["state"] != "opened":
            record.update({"state": "opened", "open_time": int(time.time() * 1000),
                           "node": node["name"] if node else None, "assignment_explanation": ""})
    return {"opened": True, "node": node.get("id", "") if node else ""}


@api("ml.close_job")
def close_job(req: Request) -> dict:
    force = req.bool_param("force")
    with req.ctx.store.transaction() as st:
        jobs = st["ml"]["jobs"]
        ids = _select(jobs, req.path_params["job_id"], _job_missing, req.bool_param("allow_no_match", True))
        for j in ids:
            if jobs[j]["state"] == "failed" and not force:
                raise errors.StatusConflict(f"cannot close job [{j}] because it failed, use force close")
        for j in ids:
            datafeed = _datafeed_of(st, j)
            if datafeed is not None:  # since 7.14 closing a job stops its datafeed first
                st["ml"]["datafeeds"][datafeed].update({"state": "stopped", "node": None})
            jobs[j].update({"state": "closed", "node": None, "open_time": None})
    return {"closed": True}


@api("ml.delete_job")
def delete_job(req: Request) -> dict:
    job_id = req.path_params["job_id"]
    with req.ctx.store.transaction() as st:
        record = st["ml"]["jobs"].get(job_id)
        if record is None:
            raise _job_missing(job_id)
        datafeed = _datafeed_of(st, job_id)
        if datafeed is not None:
            raise errors.StatusConflict(f"Cannot delete job [{job_id}] because datafeed [{datafeed}] refers to it")
        if record["state"] != "closed" and not req.bool_param("force"):
            raise errors.StatusConflict(f"Cannot delete job [{job_id}] because the job is {record['state']}")
        del st["ml"]["jobs"][job_id]
    return {"acknowledged": True}


# ---------------------------------------------------------------------------------- datafeeds

@api("ml.put_datafeed")
def put_datafeed(req: Request) -> dict:
    _licensed(req)
    datafeed_id = req.path_params["datafeed_id"]
    body = req.json(required=True)
    if not body.get("job_id"):
        raise errors.IllegalArgument("[datafeed_config] Required [job_id]")
    if not body.get("indices") and not body.get("indexes"):
        raise errors.ValidationError("indices cannot be empty")
    indices = body.get("indices") or body.get("indexes")
    indices = indices if isinstance(indices, list) else [indices]
    config = {"datafeed_id": datafeed_id, "job_id": body["job_id"], "query_delay": body.get("query_delay", "60s"),
              "indices": indices, "query": body.get("query", {"match_all": {"boost": 1.0}}),
              "scroll_size": body.get("scroll_size", 1000), "chunking_config": {"mode": "auto"},
              "delayed_data_check_config": {"enabled": True}, **({"frequency": body["frequency"]}
                                                                  if "frequency" in body else {})}
    with req.ctx.store.transaction() as st:
        if datafeed_id in st["ml"]["datafeeds"]:
            raise errors.ResourceAlreadyExists(f"A datafeed with id [{datafeed_id}] already exists")
        if body["job_id"] not in st["ml"]["jobs"]:
            raise _job_missing(body["job_id"])
        other = _datafeed_of(st, body["job_id"])
        if other is not None:
            raise errors.ResourceAlreadyExists(f"A datafeed [{other}] already exists for job [{body['job_id']}]")
        st["ml"]["datafeeds"][datafeed_id] = {"config": config, "job_id": body["job_id"], "state": "stopped",
                                              "node": None, "reason": None, "source_seq": {}, "search_count": 0,
                                              "last_search_time": None, "failures": 0,
                                              "username": req.user.username,
                                              "authorization": req.user.authorization_info()}
    return {**config, "authorization": st["ml"]["datafeeds"][datafeed_id]["authorization"]}


# DatafeedUpdate's fields (job_id may not change here: the lab has one datafeed per job).
_DATAFEED_UPDATABLE = ("indices", "indexes", "query", "query_delay", "frequency", "scroll_size", "chunking_config",
                       "delayed_data_check_config", "max_empty_searches", "indices_options", "runtime_mappings")


@api("ml.update_datafeed")
def update_datafeed(req: Request) -> dict:
    """Only a stopped datafeed can be updated; it then runs as the updating user (its headers)."""
    datafeed_id = req.path_params["datafeed_id"]
    body = req.json(required=True)
    unknown = [k for k in body if k not in _DATAFEED_UPDATABLE]
    if unknown:
        raise errors.XContentParseError(f"[datafeed_update] unknown field [{unknown[0]}]")
    with req.ctx.store.transaction() as st:
        record = st["ml"]["datafeeds"].get(datafeed_id)
        if record is None:
            raise _datafeed_missing(datafeed_id)
        if record["state"] != "stopped":
            raise errors.StatusConflict(f"Cannot update datafeed [{datafeed_id}] while its status is started")
        update = dict(body)
        if "indexes" in update:
            update["indices"] = update.pop("indexes")
        if "indices" in update:
            indices = update["indices"]
            update["indices"] = indices if isinstance(indices, list) else [indices]
            if not update["indices"]:
                raise errors.ValidationError("indices cannot be empty")
        record["config"].update(update)
        record.update({"username": req.user.username, "authorization": req.user.authorization_info()})
        return _datafeed_body(record)


@api("ml.get_datafeeds")
def get_datafeeds(req: Request) -> dict:
    feeds = req.ctx.store.snapshot()["ml"]["datafeeds"]
    ids = _select(feeds, req.path_params.get("datafeed_id"), _datafeed_missing, req.bool_param("allow_no_match", True))
    return {"count": len(ids), "datafeeds": [_datafeed_body(feeds[d]) for d in ids]}


def _datafeed_body(record: dict) -> dict:
    """The datafeed config and, as Elasticsearch 8.x adds it, who it runs as (`authorization`)."""
    if not record.get("authorization"):
        return record["config"]
    return {**record["config"], "authorization": record["authorization"]}


@api("ml.get_datafeed_stats")
def get_datafeed_stats(req: Request) -> dict:
    feeds = req.ctx.store.snapshot()["ml"]["datafeeds"]
    ids = _select(feeds, req.path_params.get("datafeed_id"), _datafeed_missing, req.bool_param("allow_no_match", True))
    out = []
    for d in ids:
        record = feeds[d]
        entry = {"datafeed_id": d, "state": record["state"]}
        node = task_node_body(req.ctx, record.get("node")) if record["state"] == "started" else None
        if node:
            entry["node"] = node
        entry["assignment_explanation"] = record.get("reason") or ""
        entry["timing_stats"] = {"job_id": record["job_id"], "search_count": record.get("search_count", 0),
                                 "bucket_count": 0, "total_search_time_ms": 0.0}
        entry["running_state"] = {"real_time_configured": True, "real_time_running": record["state"] == "started"}
        out.append(entry)
    return {"count": len(out), "datafeeds": out}


@api("ml.start_datafeed")
def start_datafeed(req: Request) -> dict:
    _licensed(req)
    datafeed_id = req.path_params["datafeed_id"]
    node = elected_node(req.ctx)
    with req.ctx.store.transaction() as st:
        record = st["ml"]["datafeeds"].get(datafeed_id)
        if record is None:
            raise _datafeed_missing(datafeed_id)
        job = st["ml"]["jobs"].get(record["job_id"])
        if job is None or job["state"] != "opened":
            state = job["state"] if job else "closed"
            raise errors.StatusConflict(f"cannot start datafeed [{datafeed_id}] because job [{record['job_id']}] "
                                        f"is {state}")
        if record["state"] == "started":
            raise errors.StatusConflict(f"cannot start datafeed [{datafeed_id}] because it has already been started")
        record.update({"state": "started", "node": node["name"] if node else None, "reason": None})
    return {"started": True, "node": node.get("id", "") if node else ""}


@api("ml.stop_datafeed")
def stop_datafeed(req: Request) -> dict:
    with req.ctx.store.transaction() as st:
        feeds = st["ml"]["datafeeds"]
        ids = _select(feeds, req.path_params["datafeed_id"], _datafeed_missing, req.bool_param("allow_no_match", True))
        for d in ids:
            feeds[d].update({"state": "stopped", "node": None})
    return {"stopped": True}


@api("ml.delete_datafeed")
def delete_datafeed(req: Request) -> dict:
    datafeed_id = req.path_params["datafeed_id"]
    with req.ctx.store.transaction() as st:
        record = st["ml"]["datafeeds"].get(datafeed_id)
        if record is None:
            raise _datafeed_missing(datafeed_id)
        if record["state"] != "stopped" and not req.bool_param("force"):
            raise errors.StatusConflict(f"Cannot delete datafeed [{datafeed_id}] while its status is {record['state']}")
        del st["ml"]["datafeeds"][datafeed_id]
    return {"acknowledged": True}


@api("ml.set_upgrade_mode")
def set_upgrade_mode(req: Request) -> dict:
    return {"acknowledged": True}
