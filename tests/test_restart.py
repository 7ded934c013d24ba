"""Rolling and full restarts, and reloading secure settings, on a lab: local cluster on 8.15 with two
nodes, remote cluster on 8.12, password-protected keystores."""

from __future__ import annotations

import threading
from pathlib import Path, PurePosixPath

import pytest

from esremote.cluster.facts import gather
from esremote.cluster.reload import ReloadError, reload_secure_settings
from esremote.cluster.restart import (
    ALLOCATION,
    RestartError,
    RestartTimeouts,
    full_restart,
    node_log_path,
    rolling_restart,
)
from esremote.errors import PreconditionError
from esremote.inventory import load_inventory
from esremote.lab.ops import control
from esremote.node_keystore import NodeKeystore
from esremote.secrets import SecretRef
from esremote.ssh import SSHPool

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory("restart", local_nodes=2, remote_nodes=1, version="8.15.0", remote_version="8.12.2",
                      keystore_password=True, seed=False)
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def inventory(lab):
    return load_inventory(lab.inventory)


@pytest.fixture
def pool():
    with SSHPool() as pool:
        yield pool


def pids(lab, cluster: str) -> dict[str, int | None]:
    """Each node's process id from its pid file (None: not running)."""
    files = {n["name"]: Path(n["home"]) / "run" / "elasticsearch.pid" for n in lab.nodes(cluster)}
    return {name: int(f.read_text()) if f.exists() else None for name, f in files.items()}


class AllocationWatcher:
    """Records every value of the allocation setting seen while a restart runs."""

    def __init__(self, es) -> None:
        self.es, self.seen, self._stop = es, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                value = self.es.cluster.get_settings(flat_settings=True)["persistent"].get(ALLOCATION)
                if not self.seen or self.seen[-1] != value:
                    self.seen.append(value)
            except Exception:  # noqa: BLE001 - a node is restarting: ask again
                pass
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def test_rolling_restart_restarts_each_node_in_turn_and_resets_allocation(lab, inventory, pool):
    before = pids(lab, "local")
    es = lab.es("local")
    with AllocationWatcher(es) as watcher:
        report = rolling_restart(inventory, "local", pool=pool)
    assert [r.node for r in report.nodes] == ["local-0", "local-1"] and report.mode == "rolling"
    after = pids(lab, "local")
    assert all(after[name] != before[name] for name in before)  # really restarted, every one
    assert "primaries" in watcher.seen  # replicas were held back while a node was away
    assert ALLOCATION not in es.cluster.get_settings(flat_settings=True)["persistent"]
    assert es.cluster.health()["status"] == "green"


def test_full_restart_restarts_every_node(lab, inventory, pool):
    before = pids(lab, "local")
    report = full_restart(inventory, "local", pool=pool)
    assert report.mode == "full" and {r.node for r in report.nodes} == {"local-0", "local-1"}
    after = pids(lab, "local")
    assert all(after[name] != before[name] for name in before)
    es = lab.es("local")
    assert ALLOCATION not in es.cluster.get_settings(flat_settings=True)["persistent"]
    assert es.cluster.health()["status"] == "green"


def test_a_node_that_fails_to_start_stops_the_restart_with_its_log_lines(lab, inventory, pool):
    before = pids(lab, "local")
    control.fault(lab.dir, "node-fails-to-start", node="local-1")
    try:
        with pytest.raises(RestartError) as caught:
            rolling_restart(inventory, "local", pool=pool, nodes=["local-1", "local-0"],
                            timeouts=RestartTimeouts(rejoin=20, green=30))
    finally:
        control.fault(lab.dir, "node-fails-to-start", off=True)
    error = caught.value
    assert error.node == "local/local-1" and error.done == []
    assert any("fatal exception while booting Elasticsearch" in line for line in error.log_tail)
    assert "node start refused by the lab fault" in str(error)
    assert "allocation is left at `primaries`" in str(error)
    assert pids(lab, "local")["local-0"] == before["local-0"]  # the restart stopped: local-0 untouched
    es = lab.es("local")
    assert es.cluster.get_settings(flat_settings=True)["persistent"][ALLOCATION] == "primaries"
    # Once the node is fixed, re-running starts it first (the cluster cannot be green without it).
    report = rolling_restart(inventory, "local", pool=pool, nodes=["local-0", "local-1"])
    assert [r.node for r in report.nodes] == ["local-1", "local-0"]
    assert ALLOCATION not in es.cluster.get_settings(flat_settings=True)["persistent"]
    assert es.cluster.health()["status"] == "green"


def test_node_log_path_follows_path_logs_and_the_override(inventory):
    node = inventory.nodes("local")[0]
    home = node.es_home
    assert node_log_path(node, {}, None, "prod") == home / "logs" / "prod.log"
    assert node_log_path(node, {"path.logs": "var/log"}, None, "prod") == home / "var/log" / "prod.log"
    assert node_log_path(node, {"path.logs": "/var/log/elasticsearch"}, None, "prod") == \
        PurePosixPath("/var/log/elasticsearch/prod.log")
    assert node_log_path(node, {"path.logs": "/x"}, {node.name: "/custom"}, "c") == PurePosixPath("/custom/c.log")
    assert node_log_path(node, {"path.logs": "/x"}, "/all", "c") == PurePosixPath("/all/c.log")


# ------------------------------------------------------------------------------------------ reload


def test_reload_on_815_loads_new_credentials_with_the_keystore_password(lab, inventory, pool):
    for node in inventory.nodes("local"):
        NodeKeystore(pool.get(node.ssh_target()), es_home=str(node.es_home), config_dir=str(node.config_dir),
                     password=node.keystore_password.resolve()
                     ).add("cluster.remote.reload_probe.credentials", "not-a-real-key")
    result = reload_secure_settings(inventory, "local")
    assert sorted(result.reloaded) == ["local-0", "local-1"] and result.ok
    for node in lab.nodes("local"):  # each node really re-read its keystore
        log = (Path(node["home"]) / "logs" / "local.log").read_text()
        assert "Updated remote cluster credentials for clusters: [reload_probe]" in log


def test_reload_with_a_wrong_keystore_password_fails_per_node(lab, inventory, tmp_path):
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-password\n")
    cluster = inventory.clusters["local"].model_copy(update={"keystore_password": SecretRef(file=wrong)})
    bad = inventory.model_copy(update={"clusters": {**inventory.clusters, "local": cluster}})
    with pytest.raises(ReloadError) as caught:
        reload_secure_settings(bad, "local")
    assert set(caught.value.result.failed) == {"local-0", "local-1"}
    assert "Provided keystore password was incorrect" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_reload_is_refused_below_813(lab, inventory):
    facts = gather(lab.es("remote"), "remote")
    assert facts.min_version == (8, 12, 2) and not facts.reloads_credentials
    with pytest.raises(PreconditionError, match=r"reloadable only from Elasticsearch 8\.13.*remote-0 \(8\.12\.2\)"
                                                r".*Restart the nodes instead"):
        reload_secure_settings(inventory, "remote", facts=facts)
