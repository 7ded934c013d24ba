"""The lab fault `wrong-credentials` on a lab migrated by hand (es-facts §12, "_remote/info answers
for one node"): after a reload the faulty node still reports the API-key link connected with
credentials, yet every cross-cluster request it coordinates fails on the remote with the §9 text;
the other node, asked at its own address, works, and esremote's verification names the node by its
cross-cluster request alone. Switched off and reloaded, the node works again."""

from __future__ import annotations

import base64

import pytest

from esremote.cluster.client import poll
from esremote.inventory import load_inventory
from esremote.lab.ops import control
from esremote.verify import verify_api_key_link
from tests.test_lab_manual_migration import (  # noqa: F401  (operator is a fixture)
    ALIAS, create_cross_cluster_key, log_text, operator, prepare_remote, reconnect_with_api_key, stage_local,
    stop_cross_cluster_operations)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RESOLVE = "indices:admin/resolve/cluster"
SEARCH = "indices:data/read/search"


def connected_with_credentials(es) -> dict | None:
    info = es.cluster.remote_info().body.get(ALIAS, {})
    return info if info.get("connected") and info.get("cluster_credentials") == "::es_redacted::" else None


def reload(lab) -> None:
    answer = lab.es("local").nodes.reload_secure_settings()
    assert answer["_nodes"]["failed"] == 0, answer


def resolved(es) -> dict:
    return es.indices.resolve_cluster(name=f"{ALIAS}:leader-logs").body[ALIAS]


def searched(es) -> dict:
    """The alias's `_clusters` entry of a size-0 search (8.15+: skip_unavailable, so a failing
    remote is skipped with its failure rather than failing the search)."""
    return es.search(index=f"{ALIAS}:leader-logs", size=0).body["_clusters"]["details"][ALIAS]


@pytest.mark.parametrize("operator", [dict(local_nodes=2, remote_nodes=1)], indirect=True)
def test_wrong_credentials_fail_only_what_that_node_coordinates(operator):
    lab = operator.lab
    ca_pem = prepare_remote(operator, lab)
    encoded = create_cross_cluster_key(lab)
    stage_local(operator, lab, ca_pem)
    stop_cross_cluster_operations(lab)
    reconnect_with_api_key(operator, lab, encoded)
    key_id = base64.b64decode(encoded).decode().split(":", 1)[0]
    admin = {n["name"]: lab.es_at(n["name"]) for n in lab.nodes("local")}
    users = {name: lab.es_at(name, user="ccs_user") for name in admin}
    for name, es in admin.items():
        poll(lambda es=es: connected_with_credentials(es), timeout=30, what=f"the API-key link on {name}")

    assert control.fault(lab.dir, "wrong-credentials", node="local-1") == "wrong-credentials: on for local-1"
    reload(lab)
    # A changed value rebuilds no connection: local-1 still looks fine ...
    assert connected_with_credentials(admin["local-1"])
    # ... but the remote refuses the key of every request local-1 coordinates.
    failure = resolved(admin["local-1"])
    assert failure["connected"] is False
    assert failure["error"] == f"unable to authenticate user [{key_id}] for action [{RESOLVE}]"
    skipped = searched(users["local-1"])
    assert skipped["status"] == "skipped"
    assert skipped["failures"][0]["reason"]["reason"] == f"unable to authenticate user [{key_id}] for action [{SEARCH}]"
    assert f"Authentication using apikey failed - invalid credentials for API key [{key_id}]" in log_text(lab, "remote")
    # local-0 loaded the keystore's value: its link works.
    assert resolved(admin["local-0"])["connected"] is True
    assert searched(users["local-0"])["status"] == "successful"
    # Only the request local-1 coordinates shows it; no SSH pool: the REST error names the cause.
    report = verify_api_key_link(load_inventory(lab.inventory), ALIAS, check=False)
    assert {c.name: c.ok for c in report.checks} == {
        "remote_info[local-0]": True, "resolve_cluster[local-0] my_remote:*": True,
        "remote_info[local-1]": True, "resolve_cluster[local-1] my_remote:*": False}
    assert report.failed_nodes == ["local-1"] and report.failed[0].cause.key == "invalid_key"

    # Off, then reloaded, local-1 loads the keystore's value again.
    assert control.fault(lab.dir, "wrong-credentials", node="local-1", off=True) == "wrong-credentials: off"
    reload(lab)
    assert resolved(admin["local-1"])["connected"] is True
    assert searched(users["local-1"])["status"] == "successful"
