"""End to end on the lab: one local node loads a wrong cross-cluster credential (lab fault
`wrong-credentials`, es-facts §12). `esremote migrate` must see it by asking that node itself: the
verification fails naming local-1 and the invalid-key cause, the run rolls back by itself (exit 3),
and every local node, asked at its own address, is back on the certificate-model link with the
work running."""

from __future__ import annotations

import pytest

from esremote.cluster.client import poll
from esremote.lab.ops import control
from tests.test_e2e_migration import (  # noqa: F401  (prefect_api is a fixture)
    ALIAS, esremote, journal, prefect_api, running, work_states)

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_one_node_with_a_wrong_credential_fails_verification_and_rolls_back(lab_factory, prefect_api, tmp_path):
    lab = lab_factory("e2e-wrong-cred", version="8.15.0", local_nodes=2, remote_nodes=1)
    before = {n["name"]: lab.es_at(n["name"]).cluster.remote_info()[ALIAS] for n in lab.nodes("local")}
    assert all(i["connected"] and "cluster_credentials" not in i for i in before.values())
    # local-1 loads the wrong value with the run's reload of secure settings, and its new API-key
    # connection fails its handshake, so the fault can be on from the start: before the run the node
    # has no credential to change, and the certificate model has none.
    control.fault(lab.dir, "wrong-credentials", node="local-1")

    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--link-timeout", "15",
                      prefect_api=prefect_api, state_dir=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-6000:]
    assert "status: rolled-back" in result.stdout
    # The verification named local-1 alone, the invalid-key cause, and the remote's refusal of the key.
    key_id = next(e["data"]["key_id"] for e in journal(tmp_path)
                  if e["step"] == f"prepare_remote/api-key/{ALIAS}" and e["kind"] == "done")
    assert f"verification of alias {ALIAS} (api-key model) failed on node(s) local-1: remote_info[local-1]" in output
    assert "likely cause (troubleshooting: invalid API key)" in output
    assert f"unable to authenticate user [{key_id}] for action [" in output
    from prefect.artifacts import Artifact  # noqa: PLC0415

    summary = Artifact.get("summary-my-remote").data
    assert "failed on node(s) local-1:" in summary and "invalid API key" in summary

    # Rolled back: every local node, asked at its own address, is on the certificate-model link.
    for name, was in before.items():
        info = poll(lambda name=name: (i := lab.es_at(name).cluster.remote_info()[ALIAS])["connected"] and i,
                    timeout=30, what=f"the certificate-model link on {name}")
        assert "cluster_credentials" not in info, name
        assert info["proxy_address"] == was["proxy_address"], name
    steps = [e["step"] for e in journal(tmp_path) if e["kind"] == "done"]
    assert f"rollback/restore/{ALIAS}" in steps and "rollback/reload/local" in steps
    poll(lambda: all(running(work_states(lab)).values()), timeout=60, what="the work to run again")
