"""Scale (issue 12 §2): per-node work that need not wait for other nodes runs side by side, within the
run's bound (`max_parallel`), and the run's bookkeeping stays linear in the nodes. Proven with a
high-water mark of the calls in flight, never with a timing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from esremote.journal import Journal
from esremote.params import MigrationParams
from esremote.tasks import certs as cert_tasks
from esremote.tasks.runtime import close_run, open_run

HOLD_S = 10.0  # how long a call waits for the others to come in; only a serial or too-narrow run waits it out


class HighWater:
    """Wraps a function: counts the calls in flight and keeps each one in until `expected` are in at
    once (or HOLD_S passes), so `most` is the real concurrency, whatever the scheduling."""

    def __init__(self, fn, expected: int) -> None:
        self.fn, self.expected = fn, expected
        self.lock = threading.Lock()
        self.now = self.most = self.calls = 0
        self.together = threading.Event()

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)
            if self.now >= self.expected:
                self.together.set()
        try:
            self.together.wait(HOLD_S)
            return self.fn(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1


def _inventory(tmp_path: Path, remote_nodes: int) -> Path:
    path = tmp_path / "inventory.yml"
    access = {"urls": ["https://127.0.0.1:1"], "auth": {"username": "u", "password": {"env": "X"}}}
    path.write_text(yaml.safe_dump({
        "ssh": {"known_hosts": str(tmp_path / "known_hosts")},
        "clusters": {
            "local": {"role": "local", **access, "nodes": [{"name": "l0", "address": "127.0.0.1"}]},
            "remote": {"role": "remote", **access,
                       "nodes": [{"name": f"r{i}", "address": f"127.0.2.{i + 1}"} for i in range(remote_nodes)]}},
        "aliases": {"my_remote": {"local": "local", "remote": "remote"}}}))
    return path


@pytest.fixture
def run_of(tmp_path):
    opened = []

    def make(remote_nodes: int, max_parallel: int):
        params = MigrationParams(inventory=_inventory(tmp_path, remote_nodes), state_dir=tmp_path / "state",
                                 max_parallel=max_parallel)
        opened.append(open_run(params))
        return opened[-1]

    yield make
    for run in opened:
        close_run(run.id)


@pytest.mark.parametrize("nodes, max_parallel", [(5, 3), (4, 8)])
def test_node_certificates_are_made_side_by_side_within_max_parallel(run_of, monkeypatch, nodes, max_parallel):
    run = run_of(nodes, max_parallel)
    expected = min(nodes, max_parallel)
    issue = HighWater(cert_tasks.issue, expected)
    monkeypatch.setattr(cert_tasks, "issue", issue)
    keys = [str(n) for n in run.nodes("remote")]

    ca = cert_tasks.make_certificates.fn(run.id, "remote", keys)

    assert issue.calls == nodes
    assert issue.most == expected, f"at most {issue.most} of {nodes} certificates were made at once"
    assert Path(ca).exists()
    for node in run.nodes("remote"):
        assert cert_tasks.p12_path(run, "remote", node.name).stat().st_mode & 0o777 == 0o600
    # A second call (a resumed run) makes none again
    cert_tasks.make_certificates.fn(run.id, "remote", keys)
    assert issue.calls == nodes


def test_a_failing_node_certificate_fails_the_task_with_its_own_error(run_of, monkeypatch):
    run = run_of(3, 4)
    real = cert_tasks.issue

    def issue(ca, name, **kwargs):
        if name == "r1":
            raise ValueError("r1: no key for you")
        return real(ca, name, **kwargs)

    monkeypatch.setattr(cert_tasks, "issue", issue)
    with pytest.raises(ValueError, match="r1: no key for you"):
        cert_tasks.make_certificates.fn(run.id, "remote", [str(n) for n in run.nodes("remote")])
    assert not cert_tasks.p12_path(run, "remote", "r1").exists()


def test_fact_gathering_asks_the_cluster_all_at_once():
    from esremote.cluster import facts as cluster_facts  # noqa: PLC0415

    class Answer:
        def __init__(self, body):
            self.body = body

    class Cluster:
        def __init__(self, hold):
            self.health = hold(lambda: Answer({"status": "green", "number_of_nodes": 1, "cluster_name": "c"}))
            self.get_settings = hold(lambda **_: Answer({"persistent": {"a.b": "1"}, "transient": {}}))

    class ES:
        def __init__(self, hold):
            self.nodes = type("N", (), {"info": staticmethod(hold(lambda: Answer(
                {"cluster_name": "c", "nodes": {"id1": {"name": "n1", "ip": "127.0.0.1", "version": "8.17.0"}}})))})
            self.license = type("L", (), {"get": staticmethod(hold(lambda: Answer(
                {"license": {"type": "trial", "status": "active"}})))})
            self.xpack = type("X", (), {"info": staticmethod(hold(lambda **_: Answer(
                {"features": {"security": {"enabled": True}}})))})
            self.cluster = Cluster(hold)

    water = HighWater(lambda fn, *a, **k: fn(*a, **k), 5)
    found = cluster_facts.gather(ES(lambda fn: (lambda *a, **k: water(fn, *a, **k))), "c")
    assert water.calls == 5 and water.most == 5
    assert found.node_names == ["n1"] and found.licence_allows_rcs and found.health == "green"
    assert found.security_enabled and found.persistent == {"a.b": "1"}


def test_journal_appends_from_many_threads_keep_every_entry_once_and_in_order(tmp_path):
    journal = Journal.create("scale-1", state_dir=tmp_path)
    steps = [f"phase/put-file/remote/r{i}" for i in range(64)]

    def work(step):
        journal.intent(step, node=step)
        journal.done(step, changed=True)

    threads = [threading.Thread(target=work, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reopened = Journal.open("scale-1", state_dir=tmp_path)
    for j in (journal, reopened):
        assert [e.seq for e in j.entries()] == list(range(2 * len(steps)))
        assert all(j.is_done(s) and j.first_intent(s).data["node"] == s for s in steps)
        assert not j.is_done("phase/put-file/remote/r64") and j.first_intent("phase/other") is None
