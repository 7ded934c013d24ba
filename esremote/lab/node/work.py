"""Background work of a cluster, run by its elected node (the lowest live node name; when it dies
the next one takes over on its next tick): CCR followers and auto-follow patterns, transforms and
ML datafeeds. They read through the remote link (`ctx.remote`) as the user who set them up, so
they stop making progress and report it the way Elasticsearch does when the link breaks.

What each task reads and writes in the cluster state (state.py shapes, plus the keys below):

* `ccr.followers[f]` while `active`: pulls the leader's operations after `leader_seq` and appends
  them to the follower index, keeping `leader_max_seq`, `operations_read`, `successful_reads`,
  `failed_reads` and `last_read`. A failed read puts `{"from_seq_no", "retries", "exception":
  {"type", "reason"}}` in `read_exceptions` (one entry, retries counting up); the next good read
  clears it. `paused` followers are left alone.
* `ccr.auto_follow[p]` while `active`: follows new leader indices matching the pattern (a follower
  named by `follow_index_pattern`, default `{{leader_index}}`); failures go to `errors` (the
  `recent_auto_follow_errors` of `_ccr/stats`) and count in `failed_remote_requests` /
  `failed_follow_indices`.
* `transforms[t]` while `started`/`indexing`: every `frequency` (default 1m) one checkpoint:
  search the sources (`alias:index` through the link), pivot or latest into the local `dest`.
  Without `sync` it stops after one checkpoint (a batch transform). A failed search counts in
  `stats.search_failures` and `failure_count`; an irrecoverable one (401, 403, 404, ...) or more
  than `settings.num_failure_retries` (default 10) make the transform `failed` with
  Elasticsearch's reason, unless it is `unattended`.
* `ml.datafeeds[d]` while `started` and its job `opened`: every `frequency` (default 1m) new
  documents of its indices (by sequence number) are fed to the job (`processed_record_count`).
  A failed search is audited once per streak, as Elasticsearch's ProblemTracker does, in the job
  messages index `.ml-notifications-000002` ("Datafeed is encountering errors extracting data:
  ...") and counted in `failures`; the datafeed keeps running and recovers with the link.

Each object's `username` (written by the API that created it; starting does not change it) says
who it acts for, as Elasticsearch stores the creator's security headers; without it the lab runs it
as `elastic`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from fnmatch import fnmatchcase
from typing import Any

from esremote.lab.errors import ESError

TICK = 1.0
NOTIFICATIONS_INDEX = ".ml-notifications-000002"
MAX_AUTO_FOLLOW_ERRORS = 5
DEFAULT_TRANSFORM_RETRIES = 10
# Statuses Elasticsearch's transforms do not retry (ExceptionRootCauseFinder).
IRRECOVERABLE_STATUSES = {400, 401, 403, 404, 405, 406, 410, 501}
PAGE = 10_000

_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(value: Any, default: float) -> float:
    """`"1s"`, `"500ms"`, `"1m"` -> seconds (default when absent or unreadable)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)\s*", str(value or ""))
    return float(match[1]) * _TIME_UNITS[match[2]] if match else default


def now_ms() -> int:
    return int(time.time() * 1000)


def _failure(exc: Exception) -> dict:
    if isinstance(exc, ESError):
        return {"type": exc.type, "reason": exc.reason}
    return {"type": "exception", "reason": str(exc)}


def split_source(expression: str) -> tuple[str | None, str]:
    """`alias:index` -> (alias, index); a local index -> (None, index)."""
    if ":" in expression:
        alias, index = expression.split(":", 1)
        return alias, index
    return None, expression


class WorkRunner:
    """Runs the cluster's background tasks while this node is the elected one."""

    def __init__(self, ctx, interval: float = TICK) -> None:
        self.ctx = ctx
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"work-{ctx.config.name}", daemon=True)
        self._due: dict[str, float] = {}          # task key -> monotonic time of its next run
        self._problems: set[str] = set()          # datafeeds whose extraction problem was audited
        self.rounds = 0                           # completed rounds as the elected node

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> WorkRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def elected(self) -> bool:
        live = [n["name"] for n in self.ctx.store.live_nodes()
                if n.get("cluster", self.ctx.config.cluster_name) == self.ctx.config.cluster_name]
        return bool(live) and min(live) == self.ctx.config.name

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.elected():
                    self.tick()
                    self.rounds += 1
            except Exception as exc:  # one bad object must not stop the cluster's work
                self._log(logging.ERROR, "o.e.x.c.WorkRunner", f"background work failed: {exc!r}")

    def tick(self) -> None:
        """One round over every task (tests call it directly)."""
        state = self.ctx.store.snapshot()
        for name in list(state["ccr"]["auto_follow"]):
            self._auto_follow(name)
        for name in list(state["ccr"]["followers"]):
            self._follow(name)
        for name in list(state["transforms"]):
            self._transform(name)
        for name in list(state["ml"]["datafeeds"]):
            self._datafeed(name)

    # helpers ---------------------------------------------------------------------------------

    def _log(self, level: int, logger: str, message: str) -> None:
        self.ctx.logger(logger).log(level, message)

    def _user(self, obj: dict):
        """The identity a task acts for: its creator as the security layer knows them now (a
        deleted user keeps its name and no roles, so the remote refuses it)."""
        from esremote.lab.models.security import User
        username = obj.get("username") or "elastic"
        return self.ctx.security.user(username) or User(username, [], missing_roles=[])

    def _remote(self):
        if self.ctx.remote is None:
            raise ESError("remote cluster service is not running on this node", status=500)
        return self.ctx.remote

    def _due_now(self, key: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(key, 0.0):
            return False
        self._due[key] = now + every
        return True

    def _ensure_index(self, st: dict, index: str, *, follower: bool = False, settings: dict | None = None) -> None:
        if index not in st["indices"]:
            from esremote.lab.rest.api.documents import create_index
            create_index(self.ctx, st, index, {"settings": settings or {}}, follower=follower)

    # CCR followers ---------------------------------------------------------------------------

    def _follow(self, name: str) -> None:
        follower = self.ctx.store.snapshot()["ccr"]["followers"].get(name)
        if not follower or follower.get("status") != "active":
            return
        after = int(follower.get("leader_seq", -1))
        try:
            answer = self._remote().read_changes(follower["remote_cluster"], follower["leader_index"], after,
                                                 self._user(follower))
        except ESError as exc:
            self._read_failed(name, after + 1, exc)
            return
        operations = answer.get("operations", [])
        with self.ctx.store.transaction() as st:
            current = st["ccr"]["followers"].get(name)
            if not current or current.get("status") != "active" or int(current.get("leader_seq", -1)) != after:
                return  # paused, unfollowed or already advanced meanwhile
            self._ensure_index(st, name, follower=True)
            if operations:
                self.ctx.store.append_docs(name, [_replica(op) for op in operations])
                current["leader_seq"] = operations[-1]["_seq"]
            current["leader_max_seq"] = max(int(answer.get("max_seq_no", -1)), int(current.get("leader_seq", -1)))
            current["operations_read"] = int(current.get("operations_read", 0)) + len(operations)
            current["successful_reads"] = int(current.get("successful_reads", 0)) + 1
            current["last_read"] = now_ms()
            current["read_exceptions"] = []

    def _read_failed(self, name: str, from_seq_no: int, exc: ESError) -> None:
        with self.ctx.store.transaction() as st:
            current = st["ccr"]["followers"].get(name)
            if not current or current.get("status") != "active":
                return
            previous = (current.get("read_exceptions") or [{}])[0]
            retries = int(previous.get("retries", 0)) + 1 if previous.get("from_seq_no") == from_seq_no else 1
            current["read_exceptions"] = [{"from_seq_no": from_seq_no, "retries": retries,
                                           "exception": _failure(exc)}]
            current["failed_reads"] = int(current.get("failed_reads", 0)) + 1
        if retries == 1:
            self._log(logging.WARNING, "o.e.x.c.a.ShardFollowNodeTask",
                      f"[{name}][0] shard follow task encountered an error while reading from the leader "
                      f"[{from_seq_no}]: {exc.reason}")

    # auto-follow -----------------------------------------------------------------------------

    def _auto_follow(self, name: str) -> None:
        pattern = self.ctx.store.snapshot()["ccr"]["auto_follow"].get(name)
        if not pattern or not pattern.get("active", True):
            return
        alias = pattern["remote_cluster"]
        try:
            leaders = self._remote().leader_indices(alias, self._user(pattern))
        except ESError as exc:
            if exc.type == "no_such_remote_cluster_exception":
                self._log(logging.WARNING, "o.e.x.c.a.AutoFollowCoordinator", f"unknown cluster alias [{alias}]")
            self._auto_follow_error(name, name, exc, counter="failed_remote_requests")
            return
        wanted = [i for i in leaders
                  if any(fnmatchcase(i, p) for p in pattern.get("leader_index_patterns", []))
                  and not any(fnmatchcase(i, p) for p in pattern.get("leader_index_exclusion_patterns", []))
                  and i not in pattern.get("followed", [])]
        for leader in wanted:
            try:
                leader_settings = self._remote().leader_settings(alias, leader, self._user(pattern))
            except ESError as exc:
                self._auto_follow_error(name, name, exc, counter="failed_remote_requests")
                return
            self._start_following(name, pattern, leader, leader_settings)

    def _start_following(self, name: str, pattern: dict, leader: str, leader_settings: dict) -> None:
        from esremote.lab.rest.api.ccr import follower_settings, new_follower
        follow = (pattern.get("follow_index_pattern") or "{{leader_index}}").replace("{{leader_index}}", leader)
        with self.ctx.store.transaction() as st:
            current = st["ccr"]["auto_follow"].get(name)
            if not current or not current.get("active", True) or leader in current.get("followed", []):
                return
            if follow in st["indices"]:
                self._record_error(current, f"{name}:{leader}", {
                    "type": "resource_already_exists_exception", "reason": f"index [{follow}] already exists"})
                current["failed_follow_indices"] = int(current.get("failed_follow_indices", 0)) + 1
                return
            self._ensure_index(st, follow, follower=True,
                               settings=follower_settings(leader_settings, current.get("settings")))
            st["ccr"]["followers"][follow] = new_follower(pattern["remote_cluster"], leader,
                                                          dict(current.get("parameters") or {}),
                                                          current.get("username") or "elastic", pattern=name)
            current.setdefault("followed", []).append(leader)
            current["errors"] = [e for e in current.get("errors", []) if e.get("leader_index") != name]
        self._log(logging.INFO, "o.e.x.c.a.AutoFollowCoordinator",
                  f"auto following leader index [{pattern['remote_cluster']}:{leader}] as follower index [{follow}]")

    @staticmethod
    def _record_error(pattern: dict, key: str, exception: dict) -> None:
        errors = [e for e in pattern.get("errors", []) if e.get("leader_index") != key]
        errors.append({"leader_index": key, "timestamp": now_ms(), "auto_follow_exception": exception})
        pattern["errors"] = errors[-MAX_AUTO_FOLLOW_ERRORS:]

    def _auto_follow_error(self, name: str, key: str, exc: ESError, *, counter: str) -> None:
        with self.ctx.store.transaction() as st:
            current = st["ccr"]["auto_follow"].get(name)
            if not current:
                return
            self._record_error(current, key, _failure(exc))
            current[counter] = int(current.get(counter, 0)) + 1

    # reading sources (transforms, datafeeds) -------------------------------------------------

    def _read_sources(self, sources: list[str], query: dict | None, user) -> list[tuple[str, dict]]:
        """Every matching document of the sources: `(index as the search names it, hit)`."""
        from esremote.lab.models.search import search_local
        body = {"query": query or {"match_all": {}}, "size": PAGE, "seq_no_primary_term": True}
        hits: list[dict] = []
        remote: dict[str, list[str]] = {}
        local: list[str] = []
        for source in sources:
            alias, index = split_source(source)
            if alias is None:
                local.append(index)
            else:
                aliases = self._remote().matching_aliases(alias) if "*" in alias else [alias]
                for name in aliases:
                    remote.setdefault(name, []).append(index)
        if local:
            hits += search_local(self.ctx.store, ",".join(local), body,
                                 params={"ignore_unavailable": "true"})["hits"]["hits"]
        for alias, indices in remote.items():
            hits += self._remote().search(alias, ",".join(indices), body, user)["hits"]["hits"]
        return [(hit["_index"], hit) for hit in hits]

    # transforms ------------------------------------------------------------------------------

    def _transform(self, name: str) -> None:
        transform = self.ctx.store.snapshot()["transforms"].get(name)
        if not transform or transform.get("state") not in ("started", "indexing"):
            self._due.pop(f"transform:{name}", None)
            return
        config = transform["config"]
        if not self._due_now(f"transform:{name}", seconds(config.get("frequency"), 60.0)):
            return
        sources = config["source"]["index"]
        sources = [sources] if isinstance(sources, str) else list(sources)
        try:
            hits = self._read_sources(sources, config["source"].get("query"), self._user(transform))
        except ESError as exc:
            self._transform_failed(name, config, exc)
            return
        seen = dict(transform.get("source_seq") or {})
        changed = _new_hits(hits, seen)
        with self.ctx.store.transaction() as st:
            current = st["transforms"].get(name)
            if not current or current.get("state") not in ("started", "indexing"):
                return
            stats = current.setdefault("stats", {})
            stats["trigger_count"] = int(stats.get("trigger_count", 0)) + 1
            stats["search_total"] = int(stats.get("search_total", 0)) + 1
            current["last_search_time"] = now_ms()
            current["failure_count"] = 0
            current["node"] = self.ctx.config.name
            if changed or int(current.get("checkpoint", 0)) == 0:
                # A new checkpoint only when the sources changed; groups are recomputed whole.
                docs = _transform_docs(config, [hit for _, hit in hits])
                dest = config["dest"]["index"]
                self._ensure_index(st, dest)
                if docs:
                    self.ctx.store.append_docs(dest, docs)
                for key, grow in (("documents_processed", len(changed)), ("documents_indexed", len(docs)),
                                  ("pages_processed", 1), ("index_total", 1 if docs else 0)):
                    stats[key] = int(stats.get(key, 0)) + grow
                current["checkpoint"] = int(current.get("checkpoint", 0)) + 1
                current["source_seq"] = seen
            if "sync" not in config:  # a batch transform stops after its checkpoint
                current["state"] = "stopped"
                current["node"] = None

    def _transform_failed(self, name: str, config: dict, exc: ESError) -> None:
        """Elasticsearch's TransformFailureHandler: an irrecoverable status (401, 403, 404, 400, ...)
        fails the transform at once; others are retried `num_failure_retries` times (-1: forever);
        an unattended transform never fails."""
        settings = config.get("settings") or {}
        retries = int(settings.get("num_failure_retries", DEFAULT_TRANSFORM_RETRIES))
        unattended = str(settings.get("unattended", "false")).lower() == "true"
        with self.ctx.store.transaction() as st:
            current = st["transforms"].get(name)
            if not current or current.get("state") not in ("started", "indexing"):
                return
            count = int(current.get("failure_count", 0)) + 1
            current["failure_count"] = count
            stats = current.setdefault("stats", {})
            stats["search_failures"] = int(stats.get("search_failures", 0)) + 1
            reason = None
            if not unattended and exc.status in IRRECOVERABLE_STATUSES:
                reason = f"task encountered irrecoverable failure: {exc.reason}"
            elif not unattended and retries != -1 and count > retries:
                reason = f"task encountered more than {retries} failures; latest failure: {exc.reason}"
            if reason is not None:
                current["state"], current["reason"] = "failed", reason
        if reason is not None:
            self._log(logging.ERROR, "o.e.x.t.t.TransformIndexer", f"[{name}] {reason}")
        else:
            self._log(logging.WARNING, "o.e.x.t.t.TransformIndexer",
                      f"[{name}] transform encountered an exception: {exc.reason}; will retry")

    # datafeeds -------------------------------------------------------------------------------

    def _datafeed(self, name: str) -> None:
        state = self.ctx.store.snapshot()
        datafeed = state["ml"]["datafeeds"].get(name)
        if not datafeed or datafeed.get("state") != "started":
            self._due.pop(f"datafeed:{name}", None)
            return
        job_id = datafeed.get("job_id") or datafeed["config"].get("job_id")
        job = state["ml"]["jobs"].get(job_id)
        if not job or job.get("state") != "opened":
            return
        config = datafeed["config"]
        if not self._due_now(f"datafeed:{name}", seconds(config.get("frequency"), 60.0)):
            return
        try:
            hits = self._read_sources(list(config.get("indices", [])), config.get("query"), self._user(datafeed))
        except ESError as exc:
            self._extraction_problem(name, job_id, exc)
            return
        seen = dict(datafeed.get("source_seq", {}))
        new = _new_hits(hits, seen)
        with self.ctx.store.transaction() as st:
            current = st["ml"]["datafeeds"].get(name)
            job = st["ml"]["jobs"].get(job_id)
            if not current or current.get("state") != "started" or not job:
                return
            current["source_seq"] = seen
            current["search_count"] = int(current.get("search_count", 0)) + 1
            current["last_search_time"] = now_ms()
            current["node"] = self.ctx.config.name
            job["processed_record_count"] = int(job.get("processed_record_count", 0)) + len(new)
            if new:
                job["latest_record_timestamp"] = now_ms()
        if name in self._problems:
            self._problems.discard(name)
            self._audit(job_id, "info", "Datafeed has recovered data extraction and analysis")

    def _extraction_problem(self, name: str, job_id: str, exc: ESError) -> None:
        with self.ctx.store.transaction() as st:
            current = st["ml"]["datafeeds"].get(name)
            if current:
                current["failures"] = int(current.get("failures", 0)) + 1
        if name not in self._problems:
            self._problems.add(name)
            self._audit(job_id, "error", f"Datafeed is encountering errors extracting data: {exc.reason}")

    def _audit(self, job_id: str, level: str, message: str) -> None:
        """A job message, where Elasticsearch's ML auditor writes it (the notifications index)."""
        with self.ctx.store.transaction() as st:
            if NOTIFICATIONS_INDEX not in st["indices"]:
                self._ensure_index(st, NOTIFICATIONS_INDEX)
                # as Elasticsearch's template makes it: one replica only where a second node is
                st["indices"][NOTIFICATIONS_INDEX]["settings"] = {"index.hidden": "true",
                                                                  "index.auto_expand_replicas": "0-1"}
        doc = {"job_id": job_id, "message": message, "level": level, "timestamp": now_ms(),
               "node_name": self.ctx.config.name, "job_type": "anomaly_detector"}
        self.ctx.store.append_docs(NOTIFICATIONS_INDEX, [{"_id": _doc_id(doc), "_source": doc}])
        logger = "o.e.x.m.n.AnomalyDetectionAuditor"
        self._log(logging.WARNING if level == "error" else logging.INFO, logger, f"[{job_id}] {message}")


def _new_hits(hits: list[tuple[str, dict]], seen: dict[str, int]) -> list[tuple[str, dict]]:
    """Hits past the last sequence number seen per index; `seen` is advanced in place."""
    new = [(index, hit) for index, hit in hits if hit.get("_seq_no", -1) > seen.get(index, -1)]
    for index, hit in new:
        seen[index] = max(seen.get(index, -1), hit["_seq_no"])
    return new


def _replica(op: dict) -> dict:
    """A leader operation as the follower index stores it."""
    if op.get("deleted"):
        return {"_id": op["_id"], "deleted": True}
    return {"_id": op["_id"], "_source": op.get("_source", {})}


def _doc_id(source: dict) -> str:
    return hashlib.sha1(json.dumps(source, sort_keys=True).encode()).hexdigest()[:20]


def _transform_docs(config: dict, hits: list[dict]) -> list[dict]:
    """The destination documents of one checkpoint: `pivot` (group_by terms + aggregations) or
    `latest` (the newest document per unique key)."""
    from esremote.lab.models.search import aggregate, field_value
    docs = [{"_source": hit.get("_source", {})} for hit in hits]
    if "latest" in config:
        latest = config["latest"]
        keys, sort = latest.get("unique_key", []), latest.get("sort")
        newest: dict[str, dict] = {}
        for doc in docs:
            key = json.dumps([field_value(doc["_source"], k) for k in keys])
            if key not in newest or str(field_value(doc["_source"], sort)) >= str(
                    field_value(newest[key]["_source"], sort)):
                newest[key] = doc
        return [{"_id": _doc_id({"key": key}), "_source": doc["_source"]} for key, doc in newest.items()]
    pivot = config.get("pivot", {})
    group_by = pivot.get("group_by", {})
    groups: dict[str, tuple[dict, list[dict]]] = {}
    for doc in docs:
        key_values = {}
        for out_name, source in group_by.items():
            kind, spec = next(iter(source.items()))
            key_values[out_name] = field_value(doc["_source"], spec.get("field", "")) if kind == "terms" else None
        key = json.dumps(key_values, sort_keys=True, default=str)
        groups.setdefault(key, (key_values, []))[1].append(doc)
    out = []
    for key, (key_values, members) in groups.items():
        aggs = aggregate(pivot.get("aggregations") or pivot.get("aggs") or {}, members)
        source = dict(key_values)
        for agg_name, result in aggs.items():
            source[agg_name] = result.get("value", result) if isinstance(result, dict) else result
        out.append({"_id": _doc_id({"group": key}), "_source": source})
    return out
