"""Elastic's migration guide done by hand on a lab: REST calls, the keystore and certutil CLIs over
SSH, restarts through each node's service command. No esremote flow takes part: this checks that
the lab behaves like Elasticsearch for an operator who follows the documentation, including the
documented failure when a step is skipped (es-facts §9, "TLS trust not established")."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import time
from pathlib import Path

import pytest

from esremote.cluster.client import poll
from esremote.ssh import SSHPool
from tests.fixtures.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
REMOTE_INDICES = ["leader-*", "auto-*"]
RUN_ID = "manual"


class Operator:
    """What an operator does on the nodes: shell commands over SSH, in the node's home."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.pool = SSHPool()
        self.sudo = lab.data["ssh"]["sudo"]

    def close(self) -> None:
        self.pool.close()

    def conn(self, node: str):
        return self.pool.get(self.lab.ssh_target(node))

    def run(self, node: str, command: str, stdin: str | None = None) -> str:
        home = self.lab.node(node)["home"]
        return self.conn(node).run(f"cd {home} && {command}", stdin=stdin, sudo=self.sudo).stdout

    def read(self, node: str, relative: str) -> bytes:
        return self.conn(node).read_file(f"{self.lab.node(node)['home']}/{relative}", sudo=self.sudo)

    def write(self, node: str, relative: str, data: bytes, mode: int = 0o660) -> None:
        path = f"{self.lab.node(node)['home']}/{relative}"
        self.conn(node).write_file(path, data, run_id=RUN_ID, sudo=self.sudo, mode=mode)

    def append_yml(self, node: str, lines: list[str]) -> None:
        self.run(node, "cat >> config/elasticsearch.yml", stdin="\n" + "\n".join(lines) + "\n")

    def keystore_add(self, node: str, setting: str, value: str) -> None:
        self.run(node, f"bin/elasticsearch-keystore add -x -f {setting}", stdin=value + "\n")

    def rolling_restart(self, cluster: str) -> None:
        for node in self.lab.nodes(cluster):
            self.run(node["name"], "bin/elasticsearch-service restart")
            wait_green(self.lab, cluster)


def wait_green(lab: Lab, cluster: str, timeout: float = 60) -> None:
    es = lab.es(cluster)
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = es.cluster.health()
            if health["status"] == "green" and health["number_of_nodes"] == len(lab.nodes(cluster)):
                return
        except Exception:  # noqa: BLE001 - a node is coming back: poll again
            pass
        assert time.monotonic() < deadline, f"{cluster} not green after {timeout}s"
        time.sleep(0.2)


# ---------------------------------------------------------------- the guide's steps


def prepare_remote(op: Operator, lab: Lab) -> bytes:
    """Remote cluster: remote cluster server with its own CA, on every node, rolling restart.
    Returns the CA certificate (PEM)."""
    first = lab.nodes("remote")[0]["name"]
    op.run(first, "bin/elasticsearch-certutil ca --pem --out config/certs/rcs-ca.zip"
                  " && unzip -o -q config/certs/rcs-ca.zip -d config/certs/rcs-ca")
    p12_password = secrets.token_urlsafe(12)
    for node in lab.nodes("remote"):
        name = node["name"]
        op.run(first, "bin/elasticsearch-certutil cert --ca-cert config/certs/rcs-ca/ca/ca.crt"
                      f" --ca-key config/certs/rcs-ca/ca/ca.key --name {name} --ip {node['ip']} --dns {name}"
                      f" --out config/certs/rcs-{name}.p12 --pass", stdin=p12_password + "\n")
        op.write(name, "config/certs/remote-cluster.p12", op.read(first, f"config/certs/rcs-{name}.p12"))
        op.append_yml(name, ["remote_cluster_server.enabled: true",
                             f"remote_cluster.host: {node['ip']}",
                             "xpack.security.remote_cluster_server.ssl.enabled: true",
                             "xpack.security.remote_cluster_server.ssl.keystore.path: certs/remote-cluster.p12"])
        op.keystore_add(name, "xpack.security.remote_cluster_server.ssl.keystore.secure_password", p12_password)
    op.rolling_restart("remote")
    return op.read(first, "config/certs/rcs-ca/ca/ca.crt")


def check_remote_cluster_port(lab: Lab, ca_pem: bytes) -> None:
    """Every remote node now serves TLS on 9443 with a certificate from the new CA."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    for node in lab.nodes("remote"):
        with socket.create_connection((node["ip"], 9443), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=node["ip"]) as tls:
                assert tls.version() is not None


def create_cross_cluster_key(lab: Lab) -> str:
    key = lab.es("remote").security.create_cross_cluster_api_key(
        name="my-migration-key",
        access={"search": [{"names": REMOTE_INDICES}], "replication": [{"names": REMOTE_INDICES}]})
    return key["encoded"]


def stage_local(op: Operator, lab: Lab, ca_pem: bytes) -> None:
    """Local cluster: trust the remote cluster server's CA, rolling restart."""
    for node in lab.nodes("local"):
        op.write(node["name"], "config/remote-cluster-ca.crt", ca_pem, mode=0o644)
        op.append_yml(node["name"], [
            "xpack.security.remote_cluster_client.ssl.enabled: true",
            'xpack.security.remote_cluster_client.ssl.certificate_authorities: ["remote-cluster-ca.crt"]'])
    op.rolling_restart("local")


def stop_cross_cluster_operations(lab: Lab) -> None:
    es = lab.es("local")
    es.transform.stop_transform(transform_id="ccs-hosts", wait_for_completion=True)
    es.ml.close_job(job_id="ccs-job")  # stops its datafeed too (since 7.14)
    es.ccr.pause_auto_follow_pattern(name="auto-logs")
    es.ccr.pause_follow(index="follower-logs")


def reconnect_with_api_key(op: Operator, lab: Lab, encoded_key: str) -> None:
    es = lab.es("local")
    grants = {"ccs_role": ["read", "read_cross_cluster", "view_index_metadata"],
              "ccr_role": ["cross_cluster_replication", "cross_cluster_replication_internal"]}
    for role, privileges in grants.items():
        body = es.security.get_role(name=role)[role]
        es.security.put_role(name=role, cluster=body["cluster"], indices=body["indices"],
                             remote_indices=[{"clusters": [ALIAS], "names": REMOTE_INDICES,
                                              "privileges": privileges}])
    es.cluster.put_settings(persistent={f"cluster.remote.{ALIAS}.mode": None,
                                        f"cluster.remote.{ALIAS}.proxy_address": None})
    poll(lambda: ALIAS not in es.cluster.remote_info(), timeout=10, what="the alias to go")
    for node in lab.nodes("local"):
        op.keystore_add(node["name"], f"cluster.remote.{ALIAS}.credentials", encoded_key)
    reload = es.nodes.reload_secure_settings()
    assert reload["_nodes"]["failed"] == 0, reload
    remote_first = lab.nodes("remote")[0]
    es.cluster.put_settings(persistent={f"cluster.remote.{ALIAS}.mode": "proxy",
                                        f"cluster.remote.{ALIAS}.proxy_address": f"{remote_first['ip']}:9443"})


def resume_cross_cluster_operations(lab: Lab) -> None:
    es = lab.es("local")
    es.transform.start_transform(transform_id="ccs-hosts")
    es.ml.open_job(job_id="ccs-job")
    es.ml.start_datafeed(datafeed_id="datafeed-ccs-job")  # opening the job does not restart it
    es.ccr.resume_auto_follow_pattern(name="auto-logs")
    es.ccr.resume_follow(index="follower-logs")


def log_text(lab: Lab, cluster: str) -> str:
    return "".join((Path(n["home"]) / "logs" / f"{cluster}.log").read_text(errors="replace")
                   for n in lab.nodes(cluster))


# ---------------------------------------------------------------------------------- tests


@pytest.fixture
def operator(lab_factory, request):
    """A fresh seeded lab for one test; `@pytest.mark.parametrize("operator", [options], indirect=True)`
    changes its options."""
    options = getattr(request, "param", {})
    lab = lab_factory(f"lab-manual-{request.node.name[-20:]}", **options)
    op = Operator(lab)
    yield op
    op.close()
    lab.down()


def test_the_documented_migration_by_hand(operator):
    lab = operator.lab
    ca_pem = prepare_remote(operator, lab)
    check_remote_cluster_port(lab, ca_pem)
    encoded = create_cross_cluster_key(lab)
    stage_local(operator, lab, ca_pem)
    # The certificate-model link still works after the local rolling restart.
    assert lab.es("local").cluster.remote_info()[ALIAS]["connected"] is True
    stop_cross_cluster_operations(lab)
    reconnect_with_api_key(operator, lab, encoded)

    local = lab.es("local")
    info = poll(lambda: (i := local.cluster.remote_info()[ALIAS])["connected"] and i, timeout=30,
                what="the API-key link")
    assert info["cluster_credentials"] == "::es_redacted::"
    assert info["proxy_address"].endswith(":9443") and info["num_proxy_sockets_connected"] > 0
    assert encoded not in json.dumps(info)
    hits = lab.es("local", user="ccs_user").search(index=f"{ALIAS}:leader-logs", size=0)
    assert hits["hits"]["total"]["value"] >= 60

    resume_cross_cluster_operations(lab)
    assert local.ccr.follow_info(index="follower-logs")["follower_indices"][0]["status"] == "active"
    assert local.ml.get_datafeed_stats(datafeed_id="datafeed-ccs-job")["datafeeds"][0]["state"] == "started"
    state = local.transform.get_transform_stats(transform_id="ccs-hosts")["transforms"][0]["state"]
    assert state in ("started", "indexing")
    # The follower catches up through the API-key link with what the writer keeps adding.
    remote = lab.es("remote")
    poll(lambda: local.count(index="follower-logs")["count"] >= remote.count(index="leader-logs")["count"] - 5,
         timeout=30, what="the follower to catch up")


# One node a side over real OpenSSH: a non-root login that works through sudo, like an operator's.
@pytest.mark.openssh
@pytest.mark.parametrize("operator", [dict(local_nodes=1, remote_nodes=1, ssh="openssh")], indirect=True)
def test_skipping_the_ca_on_the_local_nodes_fails_as_documented(operator):
    lab = operator.lab
    ca_pem = prepare_remote(operator, lab)
    encoded = create_cross_cluster_key(lab)
    # stage_local skipped: the local nodes do not trust the remote cluster server's CA.
    stop_cross_cluster_operations(lab)
    reconnect_with_api_key(operator, lab, encoded)

    local = lab.es("local")
    poll(lambda: "failed to establish trust with server" in log_text(lab, "local"), timeout=30,
         what="the local side's trust failure in its log")
    assert "unable to find valid certification path" in log_text(lab, "local")
    poll(lambda: "client did not trust this server's certificate" in log_text(lab, "remote"), timeout=30,
         what="the remote side's view of it")
    info = local.cluster.remote_info()[ALIAS]
    assert info["connected"] is False and info["num_proxy_sockets_connected"] == 0
    assert info["cluster_credentials"] == "::es_redacted::"
    assert ca_pem  # the CA exists on the remote; only the local nodes lack it
