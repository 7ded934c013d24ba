"""A settings update is acknowledged only once every live node of the cluster applied it, as
Elasticsearch acknowledges a cluster state update once every node applied it: three node
processes share one cluster, the PUT goes to one, `_remote/info` on each right after shows the
alias. A node that cannot apply (stopped with SIGSTOP) makes the PUT answer `acknowledged: false`
when the ack `timeout` ends the wait, and the update still stands."""

import os
import signal
import threading
import time

import pytest

from tests.lab_inprocess import Client, build_home, node_process

NET = "127.0.203"
ALIAS_SETTINGS = {"cluster.remote.acked.mode": "proxy", "cluster.remote.acked.proxy_address": "127.0.203.99:9443"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ack")
    names = [f"node-{i}" for i in range(3)]
    homes = [build_home(root, name=name, ip=f"{NET}.{i + 1}", state_dir=root / "state",
                        yml={"cluster.initial_master_nodes": names}) for i, name in enumerate(names)]
    procs = [node_process(home, wait=False) for home in homes]
    try:
        for home, proc in zip(homes, procs):
            _wait_started(home, proc)
        yield homes, procs
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            proc.wait(20)


def _wait_started(home, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if home.log.exists() and "] started" in home.log.read_text():
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError(f"{home.name} did not start within {timeout}s")


def _aliases(home) -> dict:
    status, body, _ = Client(home).get("/_remote/info")
    assert status == 200
    return body


def test_every_node_shows_an_added_alias_as_soon_as_the_update_is_acknowledged(cluster):
    homes, _ = cluster
    for attempt in range(3):  # several rounds: a lucky poll timing must not make it pass
        status, body, _ = Client(homes[attempt % 3]).put("/_cluster/settings", {"persistent": ALIAS_SETTINGS})
        assert status == 200 and body["acknowledged"] is True
        for home in homes:
            info = _aliases(home)
            assert info["acked"]["mode"] == "proxy" and info["acked"]["proxy_address"] == "127.0.203.99:9443", home.name
        status, body, _ = Client(homes[(attempt + 1) % 3]).put(
            "/_cluster/settings", {"persistent": {"cluster.remote.acked.*": None}})
        assert status == 200 and body == {"acknowledged": True, "persistent": {}, "transient": {}}
        assert all("acked" not in _aliases(home) for home in homes)


def test_a_node_that_cannot_apply_the_state_makes_the_update_unacknowledged(cluster):
    """What ends the wait for acknowledgements: every live node applying the update, or the ack
    `timeout`. With node-2 stopped (SIGSTOP) all along, a PUT with `timeout=1s` answers
    `acknowledged: false` while a PUT with a longer timeout, sent before it, is still waiting; the
    updates stand on the running nodes; once node-2 runs again and applies them, the waiting PUT
    answers `acknowledged: true`."""
    homes, procs = cluster
    answers: dict[str, tuple] = {}

    def put(name: str, timeout: str, settings: dict) -> None:
        answers[name] = Client(homes[0]).put(f"/_cluster/settings?timeout={timeout}", {"persistent": settings})

    # 20s: longer than the other's 1s, shorter than the 30s default, so a lab that ignored `timeout`
    # would answer this earlier PUT first.
    patient = threading.Thread(target=put, args=("patient", "20s", ALIAS_SETTINGS))
    os.kill(procs[2].pid, signal.SIGSTOP)
    try:
        patient.start()
        _wait("node-1 to apply the alias", lambda: "acked" in _aliases(homes[1]))
        put("impatient", "1s", {"cluster.remote.acked.skip_unavailable": True})
        status, body, _ = answers["impatient"]
        assert status == 200 and body["acknowledged"] is False  # ended by its timeout: node-2 never applied it
        assert "patient" not in answers and patient.is_alive()  # the long timeout still waits for node-2
        assert _aliases(homes[1])["acked"]["skip_unavailable"] is True  # the update stands
    finally:
        os.kill(procs[2].pid, signal.SIGCONT)
    patient.join(60)
    status, body, _ = answers["patient"]
    assert status == 200 and body["acknowledged"] is True  # ended by node-2 applying it
    assert _aliases(homes[2])["acked"]["skip_unavailable"] is True  # the stopped node caught up with both
    status, body, _ = Client(homes[2]).put("/_cluster/settings", {"persistent": {"cluster.remote.acked.*": None}})
    assert status == 200 and body["acknowledged"] is True


def _wait(what: str, probe, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:g}s"
        time.sleep(0.05)


def test_cluster_state_shows_the_version_each_update_makes(cluster):
    homes, _ = cluster
    client = Client(homes[1])
    before = client.get("/_cluster/state/version")[1]["version"]
    client.put("/_cluster/settings", {"transient": {"cluster.remote.acked.skip_unavailable": None}})  # a no-op
    assert client.get("/_cluster/state/version")[1]["version"] == before
    client.put("/_cluster/settings", {"persistent": ALIAS_SETTINGS})
    assert client.get("/_cluster/state/version")[1]["version"] == before + 1
    client.put("/_cluster/settings", {"persistent": {"cluster.remote.acked.*": None}})
