"""`esremote diagnose` (a real process) on one lab migrated by hand to the API-key model, through
every lab fault that maps to a symptom of Elastic's troubleshooting page (es-facts §9), each
switched on, diagnosed and undone in turn: healthy (exit 0, no cause), one node with a wrong
credential (invalid API key, that node named), the remote cluster port blocked (not reachable), a
REST API key in a keystore (wrong API key type), a local node without the remote's CA (TLS trust),
and the key invalidated on the remote (invalid API key, last: it cannot be undone). Exit 1 with the
cause and its fix whenever something is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from esremote.cluster.client import poll
from esremote.lab.ops import control
from tests.test_lab_manual_migration import (
    ALIAS, Operator, create_cross_cluster_key, prepare_remote, reconnect_with_api_key, stage_local,
    stop_cross_cluster_operations, wait_green)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CA_SETTINGS = ("xpack.security.remote_cluster_client.ssl.enabled", "xpack.security.remote_cluster_client.ssl.certificate_authorities")


def diagnose(lab, *args: str) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, "-m", "esremote", "diagnose", "--inventory", str(lab.inventory), *args],
                            capture_output=True, text=True, timeout=300, env=os.environ.copy())
    return result.returncode, result.stdout, result.stderr


def cause_of(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("  cause")]
    assert len(lines) == 1, out
    return lines[0]


def healthy(lab) -> str:
    """Waits until diagnose finds the link healthy again (a node reconnects lazily after a fault)."""
    found = {}

    def ok():
        found["run"] = diagnose(lab, "--wait", "10")
        return found["run"][0] == 0

    poll(ok, timeout=180, what="the link to be healthy again", interval=1)  # a loaded 2-core CI machine
    return found["run"][1]


def named(lab, cause: str) -> tuple[int, str] | None:
    """Diagnose's answer once it names `cause` (None until then)."""
    code, out, _ = diagnose(lab)
    return (code, out) if any(line.startswith("  cause") and cause in line for line in out.splitlines()) else None


def reload(lab) -> None:
    assert lab.es("local").nodes.reload_secure_settings()["_nodes"]["failed"] == 0


@pytest.fixture(scope="module")
def migrated(lab_factory):
    """A 2 + 1 lab on the API-key link, migrated by hand (no esremote flow takes part)."""
    lab = lab_factory("diagnose", local_nodes=2, remote_nodes=1)
    op = Operator(lab)
    ca_pem = prepare_remote(op, lab)
    encoded = create_cross_cluster_key(lab)
    stage_local(op, lab, ca_pem)
    stop_cross_cluster_operations(lab)
    reconnect_with_api_key(op, lab, encoded)
    yield lab, op, encoded
    op.close()
    lab.down()


def test_diagnose_names_each_troubleshooting_cause_and_its_fix(migrated):
    lab, op, encoded = migrated

    # Healthy: exit 0, every node asked, the settings shown, no cause.
    out = healthy(lab)
    assert f"alias {ALIAS} (local -> remote): healthy; model: API key" in out
    assert "remote_info[local-0]: ok" in out and "resolve_cluster[local-1] my_remote:*: ok" in out
    assert "cause: none found" in out
    assert "remote_cluster_server.enabled=true" in out and ":9443" in out
    assert encoded not in out

    # One node loads another secret for the same key id: only what it coordinates fails.
    control.fault(lab.dir, "wrong-credentials", node="local-1")
    reload(lab)
    code, out, err = diagnose(lab)
    assert code == 1, out + err
    assert "NOT healthy on node(s) local-1;" in out
    assert "invalid API key [from resolve_cluster[local-1]" in cause_of(out)
    assert "fix: the key was invalidated, expired or mistyped" in out
    assert err.strip() == f"esremote: error: alias {ALIAS}: not healthy (the cause and its fix are above)"
    control.fault(lab.dir, "wrong-credentials", off=True)
    reload(lab)
    healthy(lab)

    # The remote cluster port refuses connections: not reachable, from the local nodes' logs.
    control.fault(lab.dir, "remote-port-blocked")

    def noticed():
        """The nodes' own connection attempts, refused, are in their logs (a busy machine lags)."""
        code, out, _ = diagnose(lab, "--output", "json")
        report = json.loads(out)
        found = report["aliases"][0].get("cause") or {}
        return (code, report) if found.get("key") == "unreachable" else None

    try:
        code, report = poll(noticed, timeout=90, interval=2, what="the refused connections in the nodes' logs")
    finally:
        control.fault(lab.dir, "remote-port-blocked", off=True)
    assert code == 1 and report["healthy"] is False
    [alias] = report["aliases"]
    assert alias["cause"]["key"] == "unreachable" and "connect_exception" in alias["evidence"]
    assert {v["node"] for v in alias["logs"]} == {"local/local-0", "local/local-1", "remote/remote-0"}
    healthy(lab)

    # A REST API key where a cross-cluster key belongs.
    rest_key = lab.es("remote").security.create_api_key(name="not-cross-cluster")["encoded"]
    op.keystore_add("local-0", f"cluster.remote.{ALIAS}.credentials", rest_key)
    reload(lab)
    code, out, _ = diagnose(lab)
    assert code == 1 and "wrong API key type" in cause_of(out), out
    assert "fix: the keystore holds a REST API key" in out
    op.keystore_add("local-0", f"cluster.remote.{ALIAS}.credentials", encoded)
    reload(lab)
    healthy(lab)

    # local-0 restarted without the remote cluster server's CA (its stage_local step skipped).
    yml = op.read("local-0", "config/elasticsearch.yml")
    without_ca = b"\n".join(line for line in yml.split(b"\n") if not line.decode().startswith(CA_SETTINGS))
    op.run("local-0", "cat > config/elasticsearch.yml", stdin=without_ca.decode())
    op.run("local-0", "bin/elasticsearch-service restart")
    wait_green(lab, "local")
    try:
        # the restarted node logs its refused handshake when it first connects (a busy machine lags)
        code, out = poll(lambda: named(lab, "TLS trust not established"), timeout=90, interval=2,
                         what="the failed handshake in local-0's log")
        assert code == 1 and "TLS trust not established" in cause_of(out), out
        assert "NOT healthy on node(s) local-0;" in out
        assert "fix: set xpack.security.remote_cluster_client.ssl.certificate_authorities" in out
    finally:
        op.run("local-0", "cat > config/elasticsearch.yml", stdin=yml.decode())
        op.run("local-0", "bin/elasticsearch-service restart")
        wait_green(lab, "local")
    healthy(lab)

    # The key is invalidated on the remote (last: it stays invalid).
    control.fault(lab.dir, "api-key-invalidated")
    code, out, _ = diagnose(lab, "--alias", ALIAS)
    assert code == 1 and "invalid API key" in cause_of(out), out
    assert "NOT healthy on node(s) local-0, local-1;" in out


def test_an_unknown_alias_is_refused(migrated):
    lab, _, _ = migrated
    code, out, err = diagnose(lab, "--alias", "nope")
    assert code == 2 and out == ""
    assert err.startswith("esremote: error: alias nope is not in the inventory's `aliases:`") and ALIAS in err
