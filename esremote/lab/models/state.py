"""A cluster's shared state: one JSON document that every node process of the cluster reads and
writes under an exclusive `fcntl` lock, plus per-index document logs and the live-node registry.

Layout of `state_dir`:

    state.json            the cluster state (below), replaced atomically on every change
    state.lock            the lock every transaction takes (flock, exclusive)
    nodes/<name>.json     one registration per live node (a dead pid does not count)
    nodes/<name>.applied  the state version the node has applied (see `record_applied`)
    docs/<index>.jsonl    the index's document log, one operation per line (see append_docs)
    docs/<index>.lock     the log's lock

The cluster state document (modules agree on these shapes; add keys, do not rename them):

    cluster_uuid          str
    version               int, grows by one with every saved change (Elasticsearch's cluster
                          state version): acknowledged APIs wait until every live node applied it
    settings              {"persistent": {flat key: value}, "transient": {flat key: value}}
    license               {"type": basic|trial|enterprise, "uid", "issue_date_in_millis",
                           "expiry_date_in_millis", "trial_used": bool}
    security.users        {name: {"username", "password_hash", "roles": [...], "full_name", "email",
                           "metadata": {}, "enabled": bool}}
    security.roles        {name: role descriptor as PUT (cluster, indices, applications, run_as,
                           metadata, remote_indices?, remote_cluster?)}
    security.api_keys     {id: {"id", "name", "type": rest|cross_cluster, "key_hash", "creation",
                           "expiration" | None, "invalidated": bool, "invalidation" | None,
                           "username", "realm", "metadata", "role_descriptors": {name: rd},
                           "limited_by": [{name: rd}] (rest keys), "access" (cross_cluster keys)}}
    indices               {name: {"uuid", "creation_date", "settings": {flat "index.*": str},
                           "mappings": {}, "aliases": {}, "follower": bool, "state": open|close}}
    ccr.followers         {follower index: {"remote_cluster", "leader_index", "status":
                           active|paused, "parameters": {...}, "leader_seq": int (last leader
                           seq copied), "leader_max_seq": int, "read_exceptions": [{"from_seq_no",
                           "retries", "exception": {"type", "reason"}}], "auto_follow_pattern":
                           name|None, "username": creator (the work runs as this user),
                           "operations_read", "successful_reads", "failed_reads", "last_read": ms}}
    ccr.auto_follow       {name: {"remote_cluster", "leader_index_patterns": [...],
                           "leader_index_exclusion_patterns": [...], "follow_index_pattern",
                           "active": bool, "settings": {}, "parameters": {}, "followed": [leader
                           index, ...], "errors": [{"leader_index", "timestamp",
                           "auto_follow_exception": {"type", "reason"}}], "username": creator,
                           "failed_follow_indices": int, "failed_remote_requests": int}}
    transforms            {id: {"config": PUT body + "id", "create_time", "version",
                           "state": stopped|started|indexing|stopping|failed, "reason" | None,
                           "node" | None, "checkpoint": int, "source_seq": {index: last seq},
                           "stats": {"documents_processed", "documents_indexed", "pages_processed",
                           "trigger_count", "search_failures", "index_failures", ...},
                           "last_search_time": ms | None, "username": who created it (the work
                           runs as this user), "authorization": {"roles": [...]} | {"api_key":
                           {"id", "name"}} (what GET shows, fixed at creation)}}
    ml.jobs               {id: {"config": PUT body + "job_id", "state": closed|opening|opened|
                           closing|failed, "open_time" | None, "node" | None,
                           "assignment_explanation": "", "processed_record_count": int,
                           "username": creator}}
    ml.datafeeds          {id: {"config": PUT body + "datafeed_id", "job_id", "state": stopped|
                           starting|started|stopping, "node" | None, "reason" | None,
                           "source_seq": {index: last seq}, "search_count": int,
                           "last_search_time": ms | None, "failures": int, "username": who
                           created it, "authorization": as for transforms}}
    reload                {"generation": int, "requested_by": node name, "nodes": [names],
                           "password_file": path | None (0600, removed after the fan-out),
                           "results": {name: {} | {"reload_exception": {"type", "reason"}}}}:
                           nodes poll it and re-read their keystore when it grows

Documents live apart from the state (see `append_docs`); the state only holds index metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

STAMP_BYTES = 32  # enough for {"version":<any int>
STATE_FILE = "state.json"


def empty_state() -> dict:
    return {
        "cluster_uuid": new_uuid(),
        "version": 0,
        "settings": {"persistent": {}, "transient": {}},
        "license": {},
        "security": {"users": {}, "roles": {}, "api_keys": {}},
        "indices": {},
        "ccr": {"followers": {}, "auto_follow": {}},
        "transforms": {},
        "ml": {"jobs": {}, "datafeeds": {}},
        "reload": {"generation": 0},
    }


def new_uuid() -> str:
    """A random 22-character id (os.urandom: the uuid module imports `platform`, slow at start-up)."""
    return os.urandom(11).hex()


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


def _write_json_atomic(path: Path, data: Any) -> None:
    """Write then rename; 0600 because the state holds password and API-key hashes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class StateStore:
    """The cluster's state, shared by its node processes through files."""

    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.dir = Path(state_dir)
        (self.dir / "nodes").mkdir(parents=True, exist_ok=True)
        (self.dir / "docs").mkdir(parents=True, exist_ok=True)
        self._path = self.dir / STATE_FILE
        self._lock = self.dir / "state.lock"

    # -- the state document ---------------------------------------------------------------

    def _read(self) -> dict:
        # Parsed afresh on every read. A cache keyed by the file's stat went stale: an atomic
        # replace can reuse the old inode, with the same size and (coarse) mtime, when one state
        # change keeps the length (`started` -> `stopped`). Parsing is also faster than deepcopy.
        try:
            with open(self._path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            return empty_state()
        base = empty_state()
        base.update(data)
        return base

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict]:
        """Yield the whole state under the cluster lock; save it if the block does not raise."""
        with _locked(self._lock):
            state = self._read()
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before or not self._path.exists():
                version = int(state.pop("version", 0)) + 1
                # the version goes first: `stamp` reads it from the file's head
                _write_json_atomic(self._path, {"version": version, **state})
                state["version"] = version

    def stamp(self) -> bytes | None:
        """A cheap fingerprint of the saved state: the head of the file, which starts with the
        version every save raises (stat() fields can repeat across saves, see `_read`)."""
        try:
            with open(self._path, "rb") as f:
                return f.read(STAMP_BYTES)
        except FileNotFoundError:
            return None

    def snapshot(self) -> dict:
        """A private copy of the current state (replace-on-write makes a lock unnecessary)."""
        return self._read()

    # -- live nodes -------------------------------------------------------------------------

    def register_node(self, info: dict) -> None:
        info = {"started_at": int(time.time() * 1000), **info}
        _write_json_atomic(self.dir / "nodes" / f"{info['name']}.json", info)

    def unregister_node(self, name: str) -> None:
        for suffix in (".json", ".applied"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / "nodes" / f"{name}{suffix}").unlink()

    def record_applied(self, name: str, version: int) -> None:
        """Say that node `name` now acts on state `version` (its settings watcher calls this)."""
        _write_json_atomic(self.dir / "nodes" / f"{name}.applied", int(version))

    def applied_version(self, name: str) -> int:
        """The state version node `name` last recorded as applied (-1 when it recorded none)."""
        try:
            return int(json.loads((self.dir / "nodes" / f"{name}.applied").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return -1

    def wait_applied(self, version: int, timeout: float, poll: float = 0.02) -> bool:
        """Block until every live node applied `version` (True) or `timeout` seconds pass (False):
        what Elasticsearch waits for before it acknowledges a cluster state update. A node that
        never recorded a version (started by lab code older than these records) is not waited for."""
        deadline = time.monotonic() + timeout
        while True:
            behind = [n["name"] for n in self.live_nodes() if -1 < self.applied_version(n["name"]) < version]
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    def live_nodes(self) -> list[dict]:
        """Registrations whose process is alive, sorted by node name."""
        nodes = []
        for path in sorted((self.dir / "nodes").glob("*.json")):
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if pid_alive(int(info.get("pid", 0))):
                nodes.append(info)
        return sorted(nodes, key=lambda n: n["name"])

    # -- documents --------------------------------------------------------------------------

    def _docs_path(self, index: str) -> Path:
        return self.dir / "docs" / f"{index}.jsonl"

    def append_docs(self, index: str, docs: list[dict]) -> list[int]:
        """Append operations to an index's log and return their sequence numbers.

        An operation is `{"_id": id, "_source": {...}}` (index) or `{"_id": id, "deleted": True}`;
        the log adds `_seq` (0-based, per index) and `_version` (per id) to each line.
        """
        path = self._docs_path(index)
        with _locked(path.with_suffix(".lock")):
            existing = self.read_docs(index)
            seq = existing[-1]["_seq"] + 1 if existing else 0
            versions: dict[str, int] = {}
            for op in existing:
                versions[op["_id"]] = op["_version"]
            seqs, lines = [], []
            for doc in docs:
                version = versions.get(doc["_id"], 0) + 1
                versions[doc["_id"]] = version
                lines.append(json.dumps({**doc, "_seq": seq, "_version": version},
                                        separators=(",", ":")))
                seqs.append(seq)
                seq += 1
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
        return seqs

    def read_docs(self, index: str, after_seq: int = -1, limit: int | None = None) -> list[dict]:
        """Operations of an index with `_seq > after_seq`, oldest first (at most `limit`)."""
        out: list[dict] = []
        try:
            with open(self._docs_path(index), encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # a writer is mid-line: the rest is not committed yet
                    op = json.loads(line)
                    if op["_seq"] > after_seq:
                        out.append(op)
                        if limit is not None and len(out) >= limit:
                            break
        except FileNotFoundError:
            pass
        return out

    def current_docs(self, index: str) -> dict[str, dict]:
        """The index's live documents: id -> latest operation (deleted ones left out)."""
        latest: dict[str, dict] = {}
        for op in self.read_docs(index):
            if op.get("deleted"):
                latest.pop(op["_id"], None)
            else:
                latest[op["_id"]] = op
        return latest

    def delete_docs(self, index: str) -> None:
        """Forget an index's documents (index deletion)."""
        path = self._docs_path(index)
        with _locked(path.with_suffix(".lock")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
