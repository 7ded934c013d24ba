"""Verification of an alias: the certificate model on the default lab, the API-key model on a lab
migrated by hand (remote cluster server, CA on the local side, cross-cluster key, credentials,
reload, alias on 9443), and failures mapped to the troubleshooting causes of es-facts §9."""

from __future__ import annotations


import pytest

from esremote import pki
from esremote.errors import ConfigError
from esremote.esyml import EsYml
from esremote.inventory import load_inventory
from esremote.node_keystore import NodeKeystore
from esremote.ssh import SSHPool
from esremote.verify import (
    CAUSES,
    VerificationError,
    diagnose,
    diagnose_log,
    log_entries,
    verify_api_key_link,
    verify_certificate_link,
)
from tests.test_probes import enable_remote_cluster_server

ALIAS = "my_remote"
REMOTE_INDICES = ["leader-*", "auto-*"]
RUN_ID = "test-verify"
CAUSE = {c.key: c for c in CAUSES}


# ------------------------------------------------------------- causes from the documented log lines

# Lines as es-facts §9 quotes them from Elastic's troubleshooting page and the source.
DOCUMENTED = {
    "unreachable": "[2023-06-28T16:36:47,264][WARN ][o.e.t.ProxyConnectionStrategy] [local-node] failed to open any "
                   "proxy connections to cluster [my]\norg.elasticsearch.transport.ConnectTransportException: "
                   "[][127.0.0.1:9400] connect_exception",
    "transport_port": "ElasticsearchSecurityException: missing authentication credentials for action "
                      "[cluster:internal/remote_cluster/handshake]",
    "no_api_key": "Cross cluster requests through the dedicated remote cluster server port require transport header "
                  "[_cross_cluster_access_credentials] but none found. Please ensure you have configured remote "
                  "cluster credentials on the cluster originating the request.",
    "tls_trust": "failed to establish trust with server at [127.0.0.1]; ... this ssl context ([(shared) (with trust "
                 "configuration: JDK-trusted-certs)]) is not configured to trust that issuer but trusts [97] other "
                 "issuers\nsun.security.validator.ValidatorException: PKIX path building failed",
    "wrong_key_type": "authentication expected API key type of [cross_cluster], but API key [agZXJocBmA2beJfq2yKu] "
                      "has type [rest]",
    "invalid_key": "unable to authenticate user [agZXJocBmA2beJfq2yKu] for action "
                   "[cluster:internal/remote_cluster/handshake]",
    "insufficient_privileges": "action [indices:data/read/search] towards remote cluster is unauthorized for user "
                               "[foo] with assigned roles [foo-role] authenticated by API key id [x] of user "
                               "[elastic-admin] on indices [cd], this action is granted by the index privileges "
                               "[read,all]",
    "no_remote_indices": "action [indices:data/read/search] towards remote cluster [my] is unauthorized for user "
                         "[foo] with effective roles [] (assigned roles [foo-role] were not found) because no "
                         "remote indices privileges apply for the target cluster",
    "licence": "current license is non-compliant for [advanced-remote-cluster-security]",
    "remote_too_old": "Settings for remote cluster [my] indicate cross cluster access headers should be sent but "
                      "target cluster version [8.9.0] does not support receiving them",
}


@pytest.mark.parametrize("key", sorted(DOCUMENTED))
def test_each_documented_symptom_maps_to_its_cause(key):
    cause, evidence = diagnose([DOCUMENTED[key]])
    assert cause.key == key and evidence == DOCUMENTED[key]


def test_transport_port_symptoms_beat_the_generic_headline():
    # The "connecting to the transport port with API keys" entry also carries the unreachable-style
    # headline; the specific cause wins, and the newest entry is read first.
    entry = ("failed to open any proxy connections to cluster [my]\njavax.net.ssl.SSLHandshakeException: "
             "Received fatal alert: bad_certificate")
    assert diagnose([entry, DOCUMENTED["unreachable"]])[0].key == "transport_port"
    untrusted = "client did not trust this server's certificate, closing connection Netty4TcpChannel{localAddress="
    assert diagnose([untrusted + "/127.0.0.1:9300, profile=default}"])[0].key == "transport_port"
    assert diagnose([untrusted + "/127.0.0.1:9443, profile=_remote_cluster}"])[0].key == "no_api_key"
    assert diagnose(["[INFO ][o.e.n.Node] started"]) is None


def test_in_a_burst_of_log_entries_the_most_specific_cause_wins():
    diagnosis = ("[2026-11-28T07:17:42,459][WARN ][o.e.c.s.DiagnosticTrustManager] [local-0] failed to establish trust "
                 "with server at [10.0.0.1]; ... but this ssl context ([xpack.security.remote_cluster_client.ssl (with "
                 "trust configuration: PEM-trust{/etc/elasticsearch/ca.crt})]) is not configured to trust that issuer")
    headline = ("[2026-11-28T07:17:42,470][WARN ][o.e.t.ProxyConnectionStrategy] [local-0] failed to open any proxy "
                "connections to cluster [my]\nCaused by: sun.security.provider.certpath.SunCertPathBuilderException: "
                "unable to find valid certification path to requested target")
    stale = "[2026-11-28T07:10:00,000][WARN ][o.e.x.s.t.ServerTransportFilter] [local-0] " + DOCUMENTED["no_api_key"]
    entries = sorted(log_entries([stale, diagnosis, *headline.splitlines()]), reverse=True)
    assert diagnose_log(entries)[0].key == "transport_port"  # not the headline's generic PKIX text
    assert diagnose_log(sorted(log_entries([stale, *headline.splitlines()]), reverse=True))[0].key == "tls_trust"
    assert diagnose_log([("", DOCUMENTED["licence"])])[0].key == "licence"
    assert diagnose_log([]) is None


def test_log_entries_keep_continuation_lines_with_their_entry():
    lines = ["[2026-11-28T07:00:00,001][WARN ][o.e.t.ProxyConnectionStrategy] [local-0] failed to open any",
             "org.elasticsearch.transport.ConnectTransportException: [][127.0.0.1:9443] connect_exception",
             "[2026-11-28T07:00:01,002][INFO ][o.e.n.Node] [local-0] started"]
    entries = log_entries(lines)
    assert [stamp for stamp, _ in entries] == ["2026-11-28T07:00:00,001", "2026-11-28T07:00:01,002"]
    assert entries[0][1].endswith("connect_exception")



def test_log_entries_start_at_the_nodes_last_start():
    """What the node logged before its restart (a REST key it no longer holds) is not evidence now."""
    lines = ["[2026-11-28T07:00:00,001][WARN ][o.e.x.c.a.ShardFollowNodeTask] [local-0] authentication expected "
             "API key type of [cross_cluster], but API key [k] has type [rest]",
             "[2026-11-28T07:00:05,000][INFO ][o.e.n.Node               ] [local-0] version[8.13.4], pid[42], "
             "build[default/deb], OS[Linux], JVM[Oracle]",
             "[2026-11-28T07:00:09,000][WARN ][o.e.t.ProxyConnectionStrategy] [local-0] failed to open any proxy "
             "connections to cluster [my_remote]"]
    entries = log_entries(lines)
    assert [stamp for stamp, _ in entries] == ["2026-11-28T07:00:05,000", "2026-11-28T07:00:09,000"]
    assert diagnose_log(sorted(entries, reverse=True))[0].key == "unreachable"
    assert len(log_entries(lines[:1])) == 1  # a tail without the start line is kept whole

# ------------------------------------------------------------------------- certificate model (lab)


@pytest.mark.lab
@pytest.mark.slow
def test_the_certificate_model_link_verifies_and_is_no_api_key_link(lab):
    inventory = load_inventory(lab.inventory)
    report = verify_certificate_link(inventory, ALIAS)
    local_nodes = [n.name for n in inventory.nodes("local")]
    # every local node asked for itself: its _remote/info and a _resolve/cluster it coordinates
    assert [c.name for c in report.checks] == [name for node in local_nodes for name in
                                               (f"remote_info[{node}]", f"resolve_cluster[{node}] {ALIAS}:*")]
    assert report.ok and "certificate model" in report.checks[0].detail
    with pytest.raises(VerificationError) as caught:
        verify_api_key_link(inventory, ALIAS, connect_timeout=1)
    assert caught.value.report.failed_nodes == local_nodes
    assert caught.value.check.name == f"remote_info[{local_nodes[0]}]"
    assert caught.value.cause.key == "no_api_key"
    assert "connected without an API key" in str(caught.value)


@pytest.mark.lab
@pytest.mark.slow
def test_an_alias_not_in_the_inventory_is_a_config_error(lab):
    with pytest.raises(ConfigError, match="alias 'other' is not in the inventory"):
        verify_certificate_link(load_inventory(lab.inventory), "other")


# -------------------------------------------------------------------------------- API-key model


def stage_local(inventory, pool, ca: pki.CertificateAuthority) -> None:
    """Trust the remote cluster server's CA on every local node, then restart each one."""
    for node in inventory.nodes("local"):
        conn = pool.get(node.ssh_target())
        conn.write_file(f"{node.config_dir}/remote-cluster-ca.crt", ca.cert_pem(), run_id=RUN_ID, mode=0o644)
        yml = EsYml.parse(conn.read_file(str(node.yml_path)).decode())
        yml.update({"xpack.security.remote_cluster_client.ssl.enabled": True,
                    "xpack.security.remote_cluster_client.ssl.certificate_authorities": ["remote-cluster-ca.crt"]})
        conn.write_file(str(node.yml_path), yml.text().encode(), run_id=RUN_ID)
        conn.run(node.restart_command, sudo=node.ssh.sudo, timeout=120)


def reconnect(lab, inventory, pool, encoded: str) -> None:
    es = lab.es("local")
    for role, privileges in {"ccs_role": ["read", "read_cross_cluster", "view_index_metadata"],
                             "ccr_role": ["cross_cluster_replication", "cross_cluster_replication_internal"]}.items():
        body = es.security.get_role(name=role)[role]
        es.security.put_role(name=role, cluster=body["cluster"], indices=body["indices"],
                             remote_indices=[{"clusters": [ALIAS], "names": REMOTE_INDICES, "privileges": privileges}])
    es.cluster.put_settings(persistent={f"cluster.remote.{ALIAS}.mode": None,
                                        f"cluster.remote.{ALIAS}.proxy_address": None})
    for node in inventory.nodes("local"):
        NodeKeystore(pool.get(node.ssh_target()), es_home=str(node.es_home), config_dir=str(node.config_dir)
                     ).add(f"cluster.remote.{ALIAS}.credentials", encoded)
    assert es.nodes.reload_secure_settings()["_nodes"]["failed"] == 0
    point_alias(lab, 9443)


def point_alias(lab, port: int) -> None:
    address = f"{lab.node('remote-0')['ip']}:{port}"
    lab.es("local").cluster.put_settings(persistent={f"cluster.remote.{ALIAS}.mode": "proxy",
                                                     f"cluster.remote.{ALIAS}.proxy_address": address})


@pytest.fixture(scope="module")
def migrated(lab_factory):
    lab = lab_factory("verify", local_nodes=1, remote_nodes=2)
    inventory = load_inventory(lab.inventory)
    ca = pki.CertificateAuthority.create("CN=esremote verify CA", key_size=2048)
    with SSHPool() as pool:
        enable_remote_cluster_server(inventory, pool, ca)
        stage_local(inventory, pool, ca)
        key = lab.es("remote").security.create_cross_cluster_api_key(
            name="verify-key", access={"search": [{"names": REMOTE_INDICES}],
                                       "replication": [{"names": REMOTE_INDICES}]})
        reconnect(lab, inventory, pool, key["encoded"])
    yield lab, inventory
    lab.down()


@pytest.fixture
def pool():
    with SSHPool() as pool:
        yield pool


@pytest.mark.lab
@pytest.mark.slow
def test_the_api_key_link_passes_every_check(migrated, pool):
    _, inventory = migrated
    report = verify_api_key_link(inventory, ALIAS, pool=pool, index_patterns=["leader-logs", "auto-*"],
                                 followers=["follower-logs"])
    names = [c.name for c in report.checks]
    assert names == ["remote_info[local-0]", f"resolve_cluster[local-0] {ALIAS}:*", f"search {ALIAS}:leader-logs",
                     f"search {ALIAS}:auto-*", "follower follower-logs"]
    assert report.ok and "cluster_credentials redacted" in report.checks[0].detail
    assert int(report.checks[2].detail.split()[0]) >= 60  # the seeded documents, read through the link


@pytest.mark.lab
@pytest.mark.slow
def test_the_rollback_check_fails_while_credentials_are_in_the_keystore(migrated):
    _, inventory = migrated
    report = verify_certificate_link(inventory, ALIAS, connect_timeout=1, check=False)
    check = report.failed[0]
    assert check.cause.key == "credentials_left"
    assert report.to_dict()["checks"][0]["cause"]["key"] == "credentials_left"
    assert f"remove cluster.remote.{ALIAS}.credentials from every local node's keystore" in str(check)


@pytest.mark.lab
@pytest.mark.slow
def test_a_search_outside_the_key_access_fails_with_its_cause(migrated, pool):
    lab, inventory = migrated
    lab.es("remote").indices.create(index="private-logs")
    report = verify_api_key_link(inventory, ALIAS, pool=pool, index_patterns=["leader-logs", "private-logs"],
                                 check=False)
    assert [c.ok for c in report.checks] == [True, True, True, False]
    failed = report.failed[0]
    assert failed.name == f"search {ALIAS}:private-logs"
    assert "towards remote cluster is unauthorized" in failed.detail and "private-logs" in failed.detail
    assert failed.cause.key == "insufficient_privileges" and failed.node is None  # the key's access, not a node


@pytest.mark.lab
@pytest.mark.slow
def test_an_alias_on_the_transport_port_fails_with_that_cause(migrated, pool):
    """Runs last: it breaks the link."""
    lab, inventory = migrated
    point_alias(lab, 9300)
    with pytest.raises(VerificationError) as caught:
        verify_api_key_link(inventory, ALIAS, pool=pool, connect_timeout=5, index_patterns=["leader-logs"])
    error = caught.value
    assert error.check.name == "remote_info[local-0]" and not error.check.ok
    assert error.check.detail.startswith("not connected after 5s (")  # the wait given, not the alias's 30s default
    assert error.cause is CAUSE["transport_port"]
    assert "remote cluster server port" in str(error) and error.check.evidence
