"""Retirement for real, on a lab of its own: `esremote migrate --retire-trust` migrates, pauses at the
approval gate on the session's Prefect server, is resumed through Prefect's API with `approve` ticked,
and retires certificate trust. Then the lab shows what that means: a new certificate-model
connection from the local cluster to the remote's transport port is refused by the remote's IP
filter (the local node logs Elasticsearch's failure), while the API-key link on 9443 and the
remote's REST API, which read the transport filter lists while their own are not set, still work.
Nothing of the flow is replaced: the plan, the gate, the filter and its settings all run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.lab import Lab, wait_for
from tests.test_e2e_migration import esremote

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
CERT_PATH = "cert_path"  # an alias of the certificate model, to the remote's transport port
FLOW = "migrate-remote-cluster"


@pytest.fixture(scope="module")
def lab(lab_factory):
    # Two local nodes: the lab creates `.ml-notifications-000002` with one replica (Elasticsearch's
    # template auto-expands it to 0-1), so a one-node local cluster turns yellow during the run and
    # the rolling restart of stage_local waits for a green that never comes.
    lab = lab_factory("retire", local_nodes=2, remote_nodes=1)
    try:
        yield lab
    finally:
        lab.down()  # two labs at once are too much for a 2-core machine


def paused_migration():
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.state is not None and r.state.is_paused()]
        return next((r for r in runs if client.read_flow(r.flow_id).name == FLOW), None)


def cert_path(lab: Lab, address: str | None) -> None:
    """Point (or, with None, remove) the local alias CERT_PATH at `address` in the certificate model."""
    keys = ("mode", "proxy_address", "skip_unavailable")
    values = ("proxy", address, "false") if address else (None, None, None)
    lab.es("local").cluster.put_settings(persistent={f"cluster.remote.{CERT_PATH}.{k}": v
                                                     for k, v in zip(keys, values)})


def connected(lab: Lab, alias: str) -> dict | None:
    info = lab.es("local").cluster.remote_info().body.get(alias, {})
    return info if info.get("connected") else None


def cross_cluster_hits(lab: Lab, alias: str) -> int:
    found = lab.es("local").search(index=f"{alias}:leader-logs", size=0, track_total_hits=True)
    return found["hits"]["total"]["value"]


def test_an_approved_retirement_closes_the_certificate_path_and_keeps_the_api_key_link(
        lab, prefect_server, tmp_path):
    from elasticsearch import ApiError  # noqa: PLC0415
    from prefect.flow_runs import resume_flow_run  # noqa: PLC0415

    remote_node = lab.nodes("remote")[0]
    transport = f"{remote_node['ip']}:9300"
    run = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--retire-trust",
                   prefect_api=prefect_server.url, state_dir=tmp_path, wait=False)
    try:
        paused = wait_for("the migration paused at the approval gate",
                          lambda: "exited" if run.poll() is not None else paused_migration(),
                          timeout=600, interval=1)
        if paused == "exited":
            out, err = run.communicate()
            pytest.fail(f"the migration ended before asking for approval:\n{out[-3000:]}{err[-3000:]}")

        # Migrated, not yet retired: the certificate path is still open.
        assert connected(lab, ALIAS)["cluster_credentials"] == "::es_redacted::"
        cert_path(lab, transport)
        wait_for("a certificate-model connection before the retirement", lambda: connected(lab, CERT_PATH))
        cert_path(lab, None)

        resume_flow_run(paused.id, run_input={"approve": True, "transport_ip_filter": True,
                                              "ca_rotation_plan": False, "delete_cross_cluster_roles": False})
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, out[-3000:] + err[-3000:]
    assert "certificate trust retired: remote: transport port open only to its own nodes" in out, out[-3000:]

    # The remote's transport port is open to its own nodes only; HTTP and 9443 kept their rules.
    persistent = lab.es("remote").cluster.get_settings(flat_settings=True)["persistent"]
    assert persistent["xpack.security.transport.filter.allow"] == [remote_node["ip"]]
    assert persistent["xpack.security.transport.filter.deny"] == "_all"
    assert persistent["xpack.security.http.filter.allow"] == persistent[
        "xpack.security.remote_cluster.filter.allow"] == ["_all"]  # no deny rule before: everyone in

    # A new certificate-model connection from the local node is refused, as Elasticsearch refuses it.
    cert_path(lab, transport)
    local_node = lab.nodes("local")[0]
    log = Path(local_node["home"]) / "logs" / "local.log"
    wait_for("the refused certificate-model connection in the local node's log",
             lambda: f"[][{transport}] general node connection failure\nCaused by: "
                     "org.elasticsearch.transport.TransportException: handshake failed because connection reset"
                     in log.read_text())
    assert not connected(lab, CERT_PATH)
    with pytest.raises(ApiError) as refused:
        cross_cluster_hits(lab, CERT_PATH)
    assert refused.value.meta.status == 500
    assert refused.value.body["error"]["type"] == "connect_transport_exception", json.dumps(refused.value.body)
    assert refused.value.body["error"]["reason"] == f"[][{transport}] general node connection failure"
    cert_path(lab, None)

    # The API-key link still works, through the remote-cluster port.
    info = connected(lab, ALIAS)
    assert info and info["cluster_credentials"] == "::es_redacted::", info
    assert cross_cluster_hits(lab, ALIAS) > 0
