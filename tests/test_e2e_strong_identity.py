"""`esremote migrate --strong-identity` (9.3 technical preview, es-facts §12) end to end on one 9.3 lab
(2 local nodes, 1 remote node), a real `esremote migrate` process reporting to a Prefect test server:

1. The key's `certificate_identity` is changed on the remote right after the run made it (another
   DN than the local nodes' signing certificate): the verification fails with Elasticsearch's
   `DN from provided certificate [...] does not match ...`, the run rolls back by itself (exit 3),
   and every node's elasticsearch.yml, keystore and config files are as before the run (the
   signing certificates, keys and settings gone).
2. The same lab, migrated with strong identity: connected and searching on every local node, each
   local node holding its signing certificate and key (the key never world-readable) and the
   settings, the remote trusting its CA for signing, the key bound to the certificate's DN exactly.
   The signature is really checked: a key pattern that no longer matches refuses the search.

Plus the version gate: preflight blocks `--strong-identity` below 9.3 on either cluster, in one line.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from esremote.cluster.api_key import certificate_identity, key_name
from esremote.cluster.facts import ClusterFacts, NodeFacts
from esremote.esyml import EsYml
from esremote.pki import signing_dn
from esremote.preflight import PreflightReport
from esremote.preflight.cluster_checks import _strong_identity
from tests.test_e2e_migration import (ALIAS, connected_on_every_local_node, esremote, journal, node_files,
                                      prefect_api, searches_on_every_local_node, wait_for)  # noqa: F401

VERSION = "9.3.0"
DN = signing_dn("local", ALIAS)
SIGNING = {f"cluster.remote.{ALIAS}.signing.certificate": f"certs/remote-signing-{ALIAS}.crt",
           f"cluster.remote.{ALIAS}.signing.key": f"certs/remote-signing-{ALIAS}.key"}


def _cluster(name: str, version: str) -> ClusterFacts:
    node = NodeFacts(id="n", name=f"{name}-0", ip="127.0.0.1", version_text=version)
    return ClusterFacts(name, name, (node,), "trial", "active", "green", 1, True)


def test_preflight_blocks_strong_identity_below_93_in_one_line():
    report = PreflightReport(ALIAS)
    _strong_identity(report, _cluster("local", "9.3.0"))
    _strong_identity(report, _cluster("remote", "9.2.4"))
    [block] = report.blocking
    assert (block.check, block.where) == ("strong_identity", "remote")
    assert block.detail == "--strong-identity needs Elasticsearch 9.3 or later, remote runs 9.2.4"
    assert "\n" not in block.detail + block.fix


@pytest.fixture(scope="module")
def lab93(lab_factory):
    return lab_factory("e2e-strong", version=VERSION, local_nodes=2, remote_nodes=1)


def _key(lab, name: str) -> dict:
    [key] = [k for k in lab.es("remote").security.get_api_key(name=name)["api_keys"] if not k["invalidated"]]
    return key


def _set_identity(lab, key_id: str, pattern: str) -> None:
    # elasticsearch-py 8.x has no certificate_identity parameter: the raw request
    lab.es("remote").perform_request("PUT", f"/_security/cross_cluster/api_key/{key_id}",
                                     headers={"content-type": "application/json", "accept": "application/json"},
                                     body={"certificate_identity": pattern})


def test_a_dn_that_does_not_match_the_key_fails_verification_and_rolls_back(lab93, prefect_api, tmp_path):
    lab = lab93
    before = node_files(lab)
    process = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--strong-identity",
                       "--link-timeout", "15", prefect_api=prefect_api, state_dir=tmp_path, wait=False)
    try:
        wait_for("the cross-cluster key", lambda: any(
            e["step"] == f"prepare_remote/api-key/{ALIAS}" and e["kind"] == "done" for e in journal(tmp_path)),
            timeout=300)
        key = _key(lab, key_name("local", ALIAS))
        assert key["certificate_identity"] == certificate_identity(DN)
        _set_identity(lab, key["id"], certificate_identity("CN=someone-else,O=esremote"))
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 3, stdout[-3000:] + stderr[-3000:]
    assert "status: rolled-back" in stdout
    run_log = "".join(p.read_text() for p in tmp_path.glob("runs/*/run.log"))
    assert f"DN from provided certificate [{DN}] does not match API Key certificate identity pattern" in (
        stdout + stderr + run_log)
    after = lab.es("local").cluster.remote_info()[ALIAS]
    assert after["connected"] and "cluster_credentials" not in after
    now = node_files(lab)
    for name, was in before.items():  # signing certificate, key and settings gone with the rest
        assert now[name] == was, name


def test_b_strong_identity_migration_signs_every_request(lab93, prefect_api, tmp_path):
    lab = lab93
    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--strong-identity",
                      "--link-timeout", "30", prefect_api=prefect_api, state_dir=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    connected_on_every_local_node(lab, ALIAS)
    searches_on_every_local_node(lab, ALIAS)

    for node in lab.nodes("local"):
        config = Path(node["home"]) / "config"
        yml = EsYml.parse((config / "elasticsearch.yml").read_text())
        assert {k: yml.get(k) for k in SIGNING} == SIGNING, node["name"]
        key_mode = stat.S_IMODE((config / SIGNING[f"cluster.remote.{ALIAS}.signing.key"]).stat().st_mode)
        assert key_mode & 0o007 == 0 and key_mode & 0o040, oct(key_mode)  # group-readable, never world
    for node in lab.nodes("remote"):
        yml = EsYml.parse((Path(node["home"]) / "config" / "elasticsearch.yml").read_text())
        assert yml.get("cluster.remote.signing.certificate_authorities") in (
            ["certs/remote-cluster-ca.crt"], "certs/remote-cluster-ca.crt")
    key = _key(lab, key_name("local", ALIAS))
    assert key["certificate_identity"] == "^" + re.escape(DN) + "$"

    # The remote checks every request: a pattern the signing certificate no longer matches refuses
    # (skip_unavailable, true by default since 8.15, turns the refusal into a skipped cluster).
    _set_identity(lab, key["id"], "^CN=nobody$")
    try:
        answer = lab.es("local", user="ccs_user").search(index=f"{ALIAS}:leader-logs", size=0)
        [failure] = answer["_clusters"]["details"][ALIAS]["failures"]
        assert failure["reason"]["reason"] == (f"DN from provided certificate [{DN}] does not match API Key "
                                               "certificate identity pattern [^CN=nobody$]"), answer
    finally:
        _set_identity(lab, key["id"], key["certificate_identity"])
    searches_on_every_local_node(lab, ALIAS)
