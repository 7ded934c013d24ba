"""Failure paths of the cluster operations that the other lab tests leave out, on one seeded lab
(two local nodes, one remote node, password-protected keystores): a transform that reaches the alias
only through wildcards, an alias that is gone, a node that SSH cannot reach or whose ES home is
wrong, a reload that fails on one node only, a node that is down, and a remote whose licence does
not include cross-cluster API keys. The tests run in file order; the disruptive ones come last."""

from __future__ import annotations

import shlex

import pytest

from esremote.cluster import remote_settings as rs
from esremote.cluster import usage as cluster_usage
from esremote.cluster import xcluster_work as xw
from esremote.cluster.api_key import (
    LICENCE_FEATURE,
    ensure_cross_cluster_key,
    find_keys,
    key_name,
)
from esremote.cluster.client import connect, poll
from esremote.cluster.reload import ReloadError, reload_secure_settings
from esremote.cluster.restart import RestartError, RestartTimeouts, rolling_restart
from esremote.errors import PreconditionError
from esremote.inventory import Inventory, load_inventory
from esremote.lab.ops import control
from esremote.preflight import preflight
from esremote.ssh import SSHPool
from esremote.verify import verify_api_key_link, verify_certificate_link

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
WILDCARD_TRANSFORMS = {"wild-all": ["*:leader-logs"], "wild-prefix": [f"{ALIAS[:6]}*:leader-*"]}


@pytest.fixture(scope="module")
def paths_lab(lab_factory):
    lab = lab_factory("paths", local_nodes=2, remote_nodes=1, keystore_password=True)
    yield lab, load_inventory(lab.inventory)
    lab.down()


@pytest.fixture
def pool():
    with SSHPool() as pool:
        yield pool


def with_node(inventory: Inventory, cluster: str, node: str, **changes) -> Inventory:
    """The inventory with one node's settings changed (e.g. a wrong es_home)."""
    spec = inventory.clusters[cluster]
    nodes = [n.model_copy(update=changes) if n.name == node else n for n in spec.nodes]
    return inventory.model_copy(update={"clusters": {**inventory.clusters,
                                                      cluster: spec.model_copy(update={"nodes": nodes})}})


def usage_when(es, predicate) -> cluster_usage.UsageReport:
    last: list[cluster_usage.UsageReport] = []

    def probe():
        report = cluster_usage.read_usage(es, "local", ALIAS)
        last[:] = [report]
        return report if predicate(report) else None

    def describe(_):  # what each object was doing at the last look, for the timeout message
        return ", ".join(f"{i.kind} {i.id}: {i.state}" for i in last[0].items) if last else "no answer"
    return poll(probe, timeout=60, what="cross-cluster work in the expected state", cluster="local", interval=0.3,
                describe=describe)


# ---------------------------------------------------------------------------------- wildcards


def test_a_transform_reaching_the_alias_only_through_wildcards_is_stopped_and_resumed(paths_lab):
    _, inventory = paths_lab
    es = connect(inventory.cluster("local"))
    seeded = es.transform.get_transform(transform_id="ccs-hosts").body["transforms"][0]
    for transform_id, source in WILDCARD_TRANSFORMS.items():
        es.transform.put_transform(transform_id=transform_id, source={**seeded["source"], "index": source},
                                   dest={"index": f"{transform_id}-dest"}, pivot=seeded["pivot"],
                                   sync=seeded.get("sync"), frequency=seeded.get("frequency"))
        es.transform.start_transform(transform_id=transform_id)
    # a transform on a local index (the follower) does not use the alias
    es.transform.put_transform(transform_id="local-only", source={**seeded["source"], "index": ["follower-logs"]},
                               dest={"index": "local-only-dest"}, pivot=seeded["pivot"])

    # The seeded auto-follow pattern makes its follower on its own schedule: waiting for it keeps a
    # follower made after the record (and so never stopped) out of this test.
    before = usage_when(es, lambda r: len(r.of("transform")) == 3 and len(r.of("follower")) == 2
                        and all(i.running for i in r.items))
    found = {i.id: i for i in before.of("transform")}
    assert set(found) == {"ccs-hosts", *WILDCARD_TRANSFORMS}
    assert found["wild-all"].remote.patterns == ("leader-logs",)
    assert found["wild-prefix"].remote.patterns == ("leader-*",)

    records = xw.record_work(before)
    steps = xw.plan_stop(records, before)
    assert {s.record.id for s in steps if s.record.kind == "transform"} == {"ccs-hosts", *WILDCARD_TRANSFORMS}
    assert all("wait_for_completion" in str(s.call) for s in steps if s.record.kind == "transform")
    assert not xw.failed(xw.apply_steps(es, "local", steps))
    stopped = usage_when(es, lambda r: not any(i.running for i in r.items))
    assert {i.id for i in stopped.of("transform")} == set(found)

    resumed = xw.apply_steps(es, "local", xw.plan_resume(records, stopped))
    assert not xw.failed(resumed), resumed
    usage_when(es, lambda r: r.items and all(i.running for i in r.items))
    states = {t["id"]: t["state"] for t in es.transform.get_transform_stats(transform_id="_all").body["transforms"]}
    assert all(states[t] in ("started", "indexing") for t in WILDCARD_TRANSFORMS)
    assert states["local-only"] == "stopped"  # never the migration's to touch
    # the wildcard patterns are verified through the link like named ones
    checks = verify_certificate_link(inventory, ALIAS)
    assert checks.ok
    for transform_id in WILDCARD_TRANSFORMS:
        es.transform.stop_transform(transform_id=transform_id, wait_for_completion=True)
        es.transform.delete_transform(transform_id=transform_id)


# ------------------------------------------------------------------------------- alias missing


def test_verification_of_an_alias_that_is_gone_names_that_cause(paths_lab):
    _, inventory = paths_lab
    es = connect(inventory.cluster("local"))
    saved = rs.fetch_remote(es, "local", ALIAS)
    rs.apply_settings(es, "local", rs.plan_removal(saved))
    try:
        poll(lambda: ALIAS not in es.cluster.remote_info().body, timeout=30, what="alias gone")
        for report in (verify_api_key_link(inventory, ALIAS, connect_timeout=1, index_patterns=["leader-logs"],
                                           check=False),
                       verify_certificate_link(inventory, ALIAS, connect_timeout=1, check=False)):
            nodes = [n.name for n in inventory.nodes("local")]
            assert [f.name for f in report.failed] == [f"remote_info[{n}]" for n in nodes]
            for failed in report.failed:
                assert failed.cause.key == "alias_missing" and "not defined" in failed.detail
            assert len(report.checks) == len(nodes)  # no request is tried without a link
        with pytest.raises(PreconditionError, match=f"'{ALIAS}'"):
            rs.read_remote(es.cluster.get_settings(flat_settings=True).body, ALIAS, cluster="local")
        assert rs.plan_removal(rs.fetch_remote(es, "local", ALIAS)) == []  # removing again: nothing to do
    finally:
        rs.apply_settings(es, "local", rs.plan_restore(rs.fetch_remote(es, "local", ALIAS), saved))
    verify_certificate_link(inventory, ALIAS)


# ---------------------------------------------------------------------------------- preflight


def test_preflight_blocks_a_node_ssh_cannot_reach_and_a_wrong_es_home(paths_lab, pool):
    lab, inventory = paths_lab
    wrong_home = with_node(inventory, "remote", "remote-0", es_home="/opt/not-elasticsearch")
    control.fault(lab.dir, "ssh-drop", node="local-1")
    try:
        report = preflight(wrong_home, ALIAS, pool=pool)
    finally:
        control.fault(lab.dir, "ssh-drop", off=True)
    blocking = {(f.check, f.where): f for f in report.blocking}
    assert set(blocking) == {("ssh", "local/local-1"), ("es_home", "remote/remote-0")}, report.blocking
    assert "fix SSH access" in blocking[("ssh", "local/local-1")].fix
    home = blocking[("es_home", "remote/remote-0")]
    assert "/opt/not-elasticsearch/bin/elasticsearch-keystore not found" in home.detail
    assert "set es_home for this node" in home.fix
    with pytest.raises(PreconditionError, match="2 blocking"):
        report.raise_if_blocked()


# -------------------------------------------------------------------------------------- reload


def keystore_passwd(pool: SSHPool, inventory: Inventory, node_name: str, old: str, new: str) -> None:
    """Change one node's keystore password with its own CLI (old, new, confirm on stdin)."""
    node = next(n for n in inventory.nodes("local") if n.name == node_name)
    command = (f"ES_PATH_CONF={shlex.quote(str(node.config_dir))} "
               f"{shlex.quote(str(node.es_home))}/bin/elasticsearch-keystore passwd")
    pool.get(node.ssh_target()).run(command, stdin=f"{old}\n{new}\n{new}\n", sudo=node.ssh.sudo)


def test_a_reload_that_fails_on_one_node_names_that_node_only(paths_lab, pool):
    _, inventory = paths_lab
    password = inventory.cluster("local").keystore_password.resolve().get_secret_value()
    keystore_passwd(pool, inventory, "local-1", password, "another-password")
    try:
        with pytest.raises(ReloadError) as caught:
            reload_secure_settings(inventory, "local")
    finally:
        keystore_passwd(pool, inventory, "local-1", "another-password", password)
    result = caught.value.result
    assert result.reloaded == ["local-0"] and set(result.failed) == {"local-1"}
    assert "Provided keystore password was incorrect" in result.failed["local-1"]
    assert "on 1 node(s): local-1:" in str(caught.value) and "local-0" not in str(caught.value)
    assert password not in str(caught.value)
    assert reload_secure_settings(inventory, "local").ok  # fixed: every node reloads


def test_a_node_that_is_down_fails_the_reload_and_blocks_preflight(paths_lab, pool):
    """Runs after the others: it stops a local node, then brings it back with a rolling restart."""
    lab, inventory = paths_lab
    node = next(n for n in inventory.nodes("local") if n.name == "local-1")
    spec = inventory.cluster("local")
    # a client of the node that stays up (one whose URL list holds the stopped node fails every other call)
    es = connect(spec.model_copy(update={"urls": [u for u in spec.urls if lab.node("local-0")["ip"] in u]}))
    pool.get(node.ssh_target()).run(f"{node.es_home}/bin/elasticsearch-service stop", sudo=node.ssh.sudo)
    poll(lambda: es.cluster.health().body["number_of_nodes"] == 1, timeout=30, what="local-1 gone")
    try:
        with pytest.raises(ReloadError) as caught:
            reload_secure_settings(inventory, "local", es=es)
        assert caught.value.result.reloaded == ["local-0"]
        assert "missing from the answer" in caught.value.result.failed["local-1"]
        report = preflight(inventory, ALIAS, pool=pool, clients={"local": es})
        blocking = {(f.check, f.where) for f in report.blocking}
        assert ("membership", "local/local-1") in blocking and ("health", "local") in blocking
    finally:
        rolling_restart(inventory, "local", pool=pool, es=es)  # starts the node that is down first
    assert es.cluster.health().body["number_of_nodes"] == 2


def test_a_restart_command_that_outlasts_its_deadline_stops_the_rolling_restart(paths_lab, pool):
    """The restart waits with deadlines: a node whose start hangs stops the restart at the command's
    deadline (not the start delay), names the node and leaves the next node alone."""
    lab, inventory = paths_lab
    es = connect(inventory.cluster("local"))
    before = lab.pids("local")
    control.fault(lab.dir, "slow-start", node="local-1", options={"seconds": 20})
    try:
        with pytest.raises(RestartError) as caught:
            rolling_restart(inventory, "local", pool=pool, es=es, nodes=["local-1", "local-0"],
                            timeouts=RestartTimeouts(command=3, rejoin=5, green=10))
        # What ended the wait: the restart command's 3s deadline (not the rejoin deadline, not the
        # 20s start delay: local-1 has not started again when the restart gives up)
        error = caught.value
        assert error.node == "local/local-1" and error.done == []
        assert "restart command" in error.why and "did not finish within its 3s timeout" in error.why, error.why
        assert not [s for s in lab.starts("local-1") if s.pid not in before["local-1"] and s.started]
    finally:
        control.fault(lab.dir, "slow-start", off=True)
    assert "allocation is left at `primaries`" in str(error)
    assert lab.pids("local")["local-0"] == before["local-0"]  # the next node left alone: not restarted
    rolling_restart(inventory, "local", pool=pool, es=es)  # fixed: the node is back and the cluster green
    assert es.cluster.health().body["status"] == "green"


# ------------------------------------------------------------------------------------- licence


def test_a_remote_without_an_enterprise_licence_refuses_the_key_with_what_to_do(paths_lab, pool):
    """Runs last: it leaves the remote on a platinum licence."""
    _, inventory = paths_lab
    remote = connect(inventory.cluster("remote"))
    remote.license.post(license={"type": "platinum", "uid": "paths-platinum"})
    assert remote.license.get().body["license"]["type"] == "platinum"
    with pytest.raises(PreconditionError) as caught:
        ensure_cross_cluster_key(remote, "remote", local_cluster="local", alias=ALIAS, run_id="paths",
                                 access={"search": [{"names": ["leader-*"]}]}, stored_secret=lambda _: None)
    message = str(caught.value)
    assert f"feature [{LICENCE_FEATURE}] needs an enterprise licence" in message and "start_trial" in message
    assert find_keys(remote, "remote", key_name("local", ALIAS)) == []  # nothing was created
    licence = [f for f in preflight(inventory, ALIAS, pool=pool).blocking if f.check == "licence"]
    assert [f.where for f in licence] == ["remote"] and "licence is platinum" in licence[0].detail
