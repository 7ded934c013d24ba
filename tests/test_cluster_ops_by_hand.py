"""The migration run by hand with esremote's core functions only (no Prefect flow, no raw REST for
the steps): preflight, prepare the remote, stage the local side, derive privileges and create the
cross-cluster key, stop the work, reconnect with the API key, verify, resume; then the way back to
the certificate model, with all cross-cluster work running again at the end of each direction.

What the core does not offer is glue written here, named in comments as such: enabling the remote
cluster server on a node (yml + p12 + keystore), trusting the CA on a local node, and choosing which
roles carry cross-cluster access (the tasks layer does that, `tasks/privileges.py`)."""

from __future__ import annotations

import secrets

import pytest

from esremote import pki
from esremote.cluster import privileges
from esremote.cluster import remote_settings as rs
from esremote.cluster import usage as cluster_usage
from esremote.cluster import xcluster_work as xw
from esremote.cluster.api_key import ensure_cross_cluster_key
from esremote.cluster.client import connect, poll
from esremote.cluster.reload import reload_secure_settings
from esremote.cluster.restart import rolling_restart
from esremote.esyml import EsYml
from esremote.inventory import Inventory, ResolvedNode, load_inventory
from esremote.lab.ops import control
from esremote.node_keystore import NodeKeystore
from esremote.preflight import preflight
from esremote.probes import probe_remote_cluster
from esremote.ssh import SSHPool
from esremote.verify import (
    patterns_and_followers,
    verify_api_key_link,
    verify_certificate_link,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
RUN_ID = "by-hand"
P12 = "certs/remote-cluster.p12"
P12_PASSWORD = "xpack.security.remote_cluster_server.ssl.keystore.secure_password"
CREDENTIALS = f"cluster.remote.{ALIAS}.credentials"
CA_FILE = "remote-cluster-ca.crt"


# ------------------------------------------------------------------------------- glue (core gaps)


def keystore(pool: SSHPool, node: ResolvedNode) -> NodeKeystore:
    password = node.keystore_password.resolve() if node.keystore_password else None
    return NodeKeystore(pool.get(node.ssh_target()), es_home=str(node.es_home), config_dir=str(node.config_dir),
                        password=password)


def edit_yml(pool: SSHPool, node: ResolvedNode, changes: dict) -> None:
    conn = pool.get(node.ssh_target())
    yml = EsYml.parse(conn.read_file(str(node.yml_path), sudo=node.ssh.sudo).decode())
    if yml.update(changes):
        conn.write_file(str(node.yml_path), yml.text().encode(), run_id=RUN_ID, sudo=node.ssh.sudo)


def enable_remote_cluster_server(pool: SSHPool, node: ResolvedNode, ca: pki.CertificateAuthority) -> None:
    """Gap: no core function prepares one remote node (certificate + p12 + yml + keystore)."""
    p12_password = secrets.token_urlsafe(16)
    cert = pki.issue(ca, f"CN={node.name}", dns=[node.name], ips=[node.address])
    pool.get(node.ssh_target()).write_file(f"{node.config_dir}/{P12}", pki.to_pkcs12(cert, ca, p12_password,
                                                                                      name=node.name),
                                           run_id=RUN_ID, sudo=node.ssh.sudo, mode=0o640)
    edit_yml(pool, node, {"remote_cluster_server.enabled": True, "remote_cluster.host": node.address,
                          "xpack.security.remote_cluster_server.ssl.enabled": True,
                          "xpack.security.remote_cluster_server.ssl.keystore.path": P12})
    keystore(pool, node).add(P12_PASSWORD, p12_password)


def trust_remote_cluster_ca(pool: SSHPool, node: ResolvedNode, ca: pki.CertificateAuthority) -> None:
    """Gap: no core function stages one local node (CA file + client TLS settings)."""
    pool.get(node.ssh_target()).write_file(f"{node.config_dir}/{CA_FILE}", ca.cert_pem(), run_id=RUN_ID,
                                           sudo=node.ssh.sudo, mode=0o644)
    edit_yml(pool, node, {"xpack.security.remote_cluster_client.ssl.enabled": True,
                          "xpack.security.remote_cluster_client.ssl.certificate_authorities": [CA_FILE]})


def custom_roles(es) -> dict[str, dict]:
    return {name: body for name, body in es.security.get_role().body.items()
            if not (body.get("metadata") or {}).get("_reserved")}


def cross_cluster_role_names(es_local, es_remote, owner_roles: list[str]) -> list[str]:
    """Gap (the tasks layer has it): under the certificate model the remote authorizes a local user
    by role name, so the roles that matter are those defined on both sides, plus the work owners'."""
    local, remote = custom_roles(es_local), custom_roles(es_remote)
    return sorted({n for n in local if n in remote} | {n for n in owner_roles if n in remote})


def prepare_remote(pool: SSHPool, inventory: Inventory, remote: str, ca: pki.CertificateAuthority) -> None:
    for node in inventory.nodes(remote):
        enable_remote_cluster_server(pool, node, ca)
    rolling_restart(inventory, remote, pool=pool)


def stage_local(pool: SSHPool, inventory: Inventory, local: str, ca: pki.CertificateAuthority) -> None:
    for node in inventory.nodes(local):
        trust_remote_cluster_ca(pool, node, ca)
    rolling_restart(inventory, local, pool=pool)


# ------------------------------------------------------------------------------------- checks


def usage_now(es) -> cluster_usage.UsageReport:
    return cluster_usage.read_usage(es, "local", ALIAS)


def wait_all(es, running: bool, what: str, timeout: float = 60.0) -> cluster_usage.UsageReport:
    def probe():
        report = usage_now(es)
        return report if report.items and all(i.running is running for i in report.items) else None
    return poll(probe, timeout=timeout, what=what, cluster="local", interval=0.3)


def assert_all_work_running(lab, es) -> None:
    report = wait_all(es, True, "all cross-cluster work running")
    kinds = {(i.kind, i.id): i for i in report.items}
    assert kinds[("transform", "ccs-hosts")].state in ("started", "indexing")
    datafeed = kinds[("datafeed", "datafeed-ccs-job")]
    assert (datafeed.state, datafeed.job_state) == ("started", "opened")
    assert kinds[("auto_follow_pattern", "auto-logs")].state == "active"
    followers = report.of("follower")
    assert {f.id for f in followers} >= {"follower-logs", "auto-logs-0001-follower"}
    assert all(f.state == "active" for f in followers)
    # the manual follower catches up with a leader that the lab's writer keeps adding to
    remote = lab.es("remote")
    poll(lambda: es.count(index="follower-logs")["count"] >= remote.count(index="leader-logs")["count"] - 5
         and remote.count(index="leader-logs")["count"], timeout=60, what="follower-logs catching up")
    # and it keeps following: a document written after this point arrives
    start = remote.count(index="leader-logs")["count"]
    poll(lambda: es.count(index="follower-logs")["count"] > start, timeout=60, what="follower-logs progressing")


# --------------------------------------------------------------------------------------- test


@pytest.fixture(scope="module")
def by_hand(lab_factory):
    # Two local nodes: the lab's follower indices have a replica whatever their leader has, so a
    # one-node local cluster stays yellow, which preflight blocks and a rolling restart waits out.
    lab = lab_factory("by-hand", local_nodes=2, remote_nodes=1)
    inventory = load_inventory(lab.inventory)
    with SSHPool() as pool:
        yield lab, inventory, pool
    lab.down()


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("CN=esremote by-hand remote cluster CA", key_size=2048)


def test_the_operations_by_hand_migrate_to_the_api_key_model_and_back(by_hand, ca):
    lab, inventory = by_hand[0], by_hand[1]
    pool: SSHPool = by_hand[2]
    link = inventory.aliases[ALIAS]
    es_local, es_remote = connect(inventory.cluster(link.local)), connect(inventory.cluster(link.remote))

    # -- preflight: read-only, nothing blocks
    report = preflight(inventory, ALIAS, pool=pool).raise_if_blocked()
    assert report.definition.sources == ["persistent"] and report.definition.mode == "proxy"
    assert not report.definition.uses_api_key and report.definition.connected

    # -- prepare the remote: remote cluster server with a fresh CA on every node, rolling restart, probe
    prepare_remote(pool, inventory, link.remote, ca)
    assert all(r.ok for r in probe_remote_cluster(inventory, link.remote, ca.cert_pem()))

    # -- stage the local side: trust that CA, rolling restart; the certificate link still works
    stage_local(pool, inventory, link.local, ca)
    verify_certificate_link(inventory, ALIAS, pool=pool)

    # -- privileges and the cross-cluster key
    usage = wait_all(es_local, True, "seeded work running")
    assert any(i.id == "auto-logs-0001-follower" for i in usage.of("follower"))
    names = cross_cluster_role_names(es_local, es_remote, usage.role_names())
    assert {"ccs_role", "ccr_role"} <= set(names)
    derived = privileges.derive_remote_access(ALIAS, privileges.read_roles(es_remote, link.remote, names),
                                              search_roles=usage.role_names())
    assert derived.access.get("search") and derived.access.get("replication")
    stored: dict = {}
    key = ensure_cross_cluster_key(es_remote, link.remote, local_cluster=link.local, alias=ALIAS, run_id=RUN_ID,
                                   access=derived.access, stored_secret=stored.get)
    stored[key.id] = key.encoded
    assert key.outcome == "created"
    again = ensure_cross_cluster_key(es_remote, link.remote, local_cluster=link.local, alias=ALIAS,
                                     run_id=RUN_ID, access=derived.access, stored_secret=stored.get)
    assert (again.outcome, again.id) == ("unchanged", key.id)

    # -- stop exactly the work that uses the alias
    records = xw.record_work(usage)
    assert not xw.failed(xw.apply_steps(es_local, link.local, xw.plan_stop(records, usage)))
    stopped = wait_all(es_local, False, "work stopped")
    assert xw.plan_stop(records, stopped) == []

    # -- reconnect: roles, alias saved and removed, credentials, reload, alias on 9443
    role_plan = privileges.plan_role_updates(derived, privileges.read_roles(es_local, link.local,
                                                                            list(derived.remote_indices)))
    assert role_plan.calls and "remote_indices" in role_plan.diff
    assert all(o.ok for o in privileges.apply_role_updates(es_local, link.local, role_plan))
    saved = rs.fetch_remote(es_local, link.local, ALIAS)
    assert saved is not None and saved.mode == "proxy"
    rs.apply_settings(es_local, link.local, rs.plan_removal(saved))
    poll(lambda: ALIAS not in es_local.cluster.remote_info().body, timeout=30, what="alias gone")
    assert rs.fetch_remote(es_local, link.local, ALIAS) is None
    for node in inventory.nodes(link.local):
        keystore(pool, node).add(CREDENTIALS, key.encoded)
    reloaded = reload_secure_settings(inventory, link.local)
    assert reloaded.ok and reloaded.reloaded == [n.name for n in inventory.nodes(link.local)]
    port = inventory.cluster(link.remote).remote_cluster_port
    rs.apply_settings(es_local, link.local, rs.plan_readd(None, saved, port=port))
    assert rs.plan_readd(rs.fetch_remote(es_local, link.local, ALIAS), saved, port=port) == []

    # -- verify the API-key link (followers are checked once resumed: a paused one cannot progress)
    patterns, followers = patterns_and_followers(usage)
    checked = verify_api_key_link(inventory, ALIAS, pool=pool, index_patterns=patterns)
    assert "cluster_credentials redacted" in checked.checks[0].detail
    assert {f"search {ALIAS}:leader-logs", f"search {ALIAS}:auto-*"} <= {c.name for c in checked.checks}

    # -- resume exactly what was stopped
    resumed = xw.apply_steps(es_local, link.local, xw.plan_resume(records, usage_now(es_local)))
    assert not xw.failed(resumed), resumed
    verify_api_key_link(inventory, ALIAS, pool=pool, followers=followers)
    assert_all_work_running(lab, es_local)
    info = es_local.cluster.remote_info().body[ALIAS]
    assert info["proxy_address"].endswith(f":{port}") and info["cluster_credentials"] == "::es_redacted::"

    # ============================================================ and back to the certificate model
    records_back = xw.record_work(usage_now(es_local))
    assert not xw.failed(xw.apply_steps(es_local, link.local, xw.plan_stop(records_back, usage_now(es_local))))
    wait_all(es_local, False, "work stopped for the way back")
    rs.apply_settings(es_local, link.local, rs.plan_removal(rs.fetch_remote(es_local, link.local, ALIAS)))
    poll(lambda: ALIAS not in es_local.cluster.remote_info().body, timeout=30, what="alias gone")
    restored = privileges.restore_roles(es_local, link.local, role_plan.originals)
    assert {o.status for o in restored} == {"changed"}
    for name, original in role_plan.originals.items():
        now = privileges.read_roles(es_local, link.local, [name])[name]
        assert privileges.putable(now) == privileges.putable(original) and "remote_indices" not in now
    for node in inventory.nodes(link.local):
        ks = keystore(pool, node)
        assert ks.remove(CREDENTIALS) is True and CREDENTIALS not in ks.list()
    assert reload_secure_settings(inventory, link.local).ok
    rs.apply_settings(es_local, link.local, rs.plan_restore(rs.fetch_remote(es_local, link.local, ALIAS), saved))
    assert rs.fetch_remote(es_local, link.local, ALIAS) == saved
    back = verify_certificate_link(inventory, ALIAS, pool=pool)
    assert "certificate model" in back.checks[0].detail
    assert "cluster_credentials" not in es_local.cluster.remote_info().body[ALIAS]
    resumed = xw.apply_steps(es_local, link.local, xw.plan_resume(records_back, usage_now(es_local)))
    assert not xw.failed(resumed), resumed
    assert_all_work_running(lab, es_local)
    # a second resume has nothing left to do
    assert xw.plan_resume(records_back, usage_now(es_local)) == []


def test_a_key_without_the_needed_access_or_invalidated_fails_verification_with_its_cause(by_hand, ca):
    """After the round trip above (or after preparing here): the reconnect with a key whose access
    misses the leader indices. The followers cannot read, and verification says why; updating the
    key's access heals them; invalidating the key fails the next action through the link."""
    lab, inventory, pool = by_hand
    link = inventory.aliases[ALIAS]
    es_local, es_remote = connect(inventory.cluster(link.local)), connect(inventory.cluster(link.remote))
    if not all(r.ok for r in probe_remote_cluster(inventory, link.remote, ca.cert_pem(), check=False)):
        prepare_remote(pool, inventory, link.remote, ca)
        stage_local(pool, inventory, link.local, ca)
    usage = wait_all(es_local, True, "work running")
    names = cross_cluster_role_names(es_local, es_remote, usage.role_names())
    derived = privileges.derive_remote_access(ALIAS, privileges.read_roles(es_remote, link.remote, names),
                                              override={"search": [{"names": ["other-*"]}],
                                                        "replication": [{"names": ["other-*"]}]})
    key = ensure_cross_cluster_key(es_remote, link.remote, local_cluster=link.local, alias=ALIAS, run_id=RUN_ID,
                                   access=derived.access, stored_secret=lambda _: None)
    assert key.outcome in ("created", "recreated")
    stored = {key.id: key.encoded}
    privileges.apply_role_updates(es_local, link.local, privileges.plan_role_updates(
        derived, privileges.read_roles(es_local, link.local, list(derived.remote_indices))))
    saved = rs.fetch_remote(es_local, link.local, ALIAS)
    rs.apply_settings(es_local, link.local, rs.plan_removal(saved))
    for node in inventory.nodes(link.local):
        keystore(pool, node).add(CREDENTIALS, key.encoded)
    reload_secure_settings(inventory, link.local)
    rs.apply_settings(es_local, link.local, rs.plan_readd(None, saved,
                                                          port=inventory.cluster(link.remote).remote_cluster_port))

    report = verify_api_key_link(inventory, ALIAS, pool=pool, followers=["follower-logs"], follower_timeout=5,
                                 check=False)
    nodes = [n.name for n in inventory.nodes(link.local)]
    per_node = [name for n in nodes for name in (f"remote_info[{n}]", f"resolve_cluster[{n}] {ALIAS}:*")]
    assert [c.name for c in report.checks] == per_node + ["follower follower-logs"], report.checks
    failed = report.failed[0]
    assert failed.name == "follower follower-logs", report.checks
    assert "towards remote cluster" in failed.detail and "is unauthorized" in failed.detail
    assert failed.cause.key == "insufficient_privileges" and "update the key" in failed.cause.fix

    # The fix the cause names: update the key's access (same key, nothing to change on the local side).
    needed = privileges.derive_remote_access(ALIAS, privileges.read_roles(es_remote, link.remote, names))
    updated = ensure_cross_cluster_key(es_remote, link.remote, local_cluster=link.local, alias=ALIAS,
                                       run_id=RUN_ID, access=needed.access, stored_secret=stored.get)
    assert (updated.outcome, updated.id) == ("updated", key.id)
    assert verify_api_key_link(inventory, ALIAS, pool=pool, followers=["follower-logs"], follower_timeout=30).ok

    # An invalidated key: the link stays connected, but every action through it is refused.
    control.fault(lab.dir, "api-key-invalidated")
    report = verify_api_key_link(inventory, ALIAS, followers=["follower-logs"], follower_timeout=10, check=False)
    assert [f.name for f in report.failed] == [f"resolve_cluster[{n}] {ALIAS}:*" for n in nodes]
    for failed in report.failed:  # every node coordinates with the same invalid key
        assert "unable to authenticate user" in failed.detail
        assert failed.cause.key == "invalid_key" and "create a new cross-cluster API key" in failed.cause.fix
