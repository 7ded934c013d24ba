"""The cluster state store the REST handlers rely on: transactions are atomic across processes,
dead registrations do not count, document logs keep sequence numbers and versions."""

import multiprocessing
import os
import subprocess
import sys

import pytest

from esremote.lab.models.state import StateStore


def _increment(state_dir: str, times: int) -> None:
    store = StateStore(state_dir)
    for _ in range(times):
        with store.transaction() as st:
            st.setdefault("counter", 0)
            st["counter"] += 1


def _append(state_dir: str, worker: int) -> None:
    store = StateStore(state_dir)
    for i in range(20):
        store.append_docs("logs", [{"_id": f"{worker}-{i}", "_source": {"w": worker}}])


def test_transactions_are_atomic_across_processes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_increment, args=(str(tmp_path), 40)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert StateStore(tmp_path).snapshot()["counter"] == 160
    assert oct(os.stat(tmp_path / "state.json").st_mode & 0o777) == "0o600"


def test_a_failed_transaction_changes_nothing(tmp_path):
    store = StateStore(tmp_path)
    with store.transaction() as st:
        st["settings"]["persistent"]["a"] = "1"
    with pytest.raises(RuntimeError, match="validation failed"), store.transaction() as st:  # it propagates
        st["settings"]["persistent"]["a"] = "2"
        raise RuntimeError("validation failed")
    assert store.snapshot()["settings"]["persistent"] == {"a": "1"}
    copy = store.snapshot()
    copy["settings"]["persistent"]["a"] = "3"
    assert store.snapshot()["settings"]["persistent"] == {"a": "1"}


def test_dead_registrations_do_not_count(tmp_path):
    store = StateStore(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.register_node({"name": "node-1", "pid": gone.pid, "ip": "127.0.0.1"})
    store.register_node({"name": "node-0", "pid": os.getpid(), "ip": "127.0.0.1"})
    assert [n["name"] for n in store.live_nodes()] == ["node-0"]
    store.unregister_node("node-0")
    assert store.live_nodes() == []


def test_document_logs_keep_sequence_numbers_and_versions(tmp_path):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append, args=(str(tmp_path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    store = StateStore(tmp_path)
    ops = store.read_docs("logs")
    assert [op["_seq"] for op in ops] == list(range(60))
    assert [op["_seq"] for op in store.read_docs("logs", after_seq=57)] == [58, 59]
    assert len(store.read_docs("logs", after_seq=-1, limit=5)) == 5
    store.append_docs("logs", [{"_id": "0-0", "_source": {"w": "again"}}, {"_id": "1-0", "deleted": True}])
    current = store.current_docs("logs")
    assert len(current) == 59 and current["0-0"]["_version"] == 2 and current["0-0"]["_source"] == {"w": "again"}
    store.delete_docs("logs")
    assert store.read_docs("logs") == []


def test_every_saved_change_is_a_new_version_that_nodes_acknowledge(tmp_path):
    store = StateStore(tmp_path)
    with store.transaction() as st:
        st["settings"]["persistent"]["a"] = "1"
    version = store.snapshot()["version"]
    with store.transaction():
        pass  # no change: no new version
    assert store.snapshot()["version"] == version
    for name in ("node-0", "node-1", "old-node"):
        store.register_node({"name": name, "pid": os.getpid(), "ip": "127.0.0.1"})
    store.record_applied("node-0", version)
    store.record_applied("node-1", version - 1)
    assert store.wait_applied(version, timeout=0.2) is False  # node-1 is behind
    store.record_applied("node-1", version)
    assert store.wait_applied(version, timeout=0.2) is True  # old-node never records: not waited for
    store.unregister_node("node-1")
    assert store.applied_version("node-1") == -1


def test_a_change_that_keeps_the_size_and_reuses_the_inode_is_seen(tmp_path):
    """An atomic replace can reuse a freed inode; with the same size and mtime the file's stat()
    is what a node saw before while the content changed (`started` -> `stopped`). Nodes must see it."""
    writer, reader = StateStore(tmp_path), StateStore(tmp_path)
    with writer.transaction() as st:
        st["transforms"]["t"] = {"state": "started", "mark": "a"}
    path = tmp_path / "state.json"
    assert reader.snapshot()["transforms"]["t"]["state"] == "started"
    seen, stamp = os.stat(path), reader.stamp()
    # two saves (versions 2 and 3), the second of the same size as the first; it may take its inode
    for change in ({"state": "stopped"}, {"mark": "b"}):
        with writer.transaction() as st:
            st["transforms"]["t"].update(change)
    now = os.stat(path)
    assert now.st_size == seen.st_size
    os.utime(path, ns=(seen.st_atime_ns, seen.st_mtime_ns))  # as within one tick of a coarse clock
    assert reader.snapshot()["transforms"]["t"] == {"state": "stopped", "mark": "b"}
    assert reader.stamp() != stamp
