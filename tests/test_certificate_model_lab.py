"""On a 9.x local cluster, `preflight` and `esremote plan` list every alias still on the
certificate model, from the local nodes' deprecation logs (key
`remote_cluster_certificate_access-<alias>`, es-facts §12) checked against `_remote/info`.

The lab: local 9.1 (2 nodes) with two remotes on 8.18 (aliases my_remote and my_remote2, both on
the certificate model), plus an alias `ghost` whose proxy address nobody answers (on the certificate
model, never connected, so no log names it). Then my_remote2 is removed: its old log lines stay,
and it is no longer listed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from esremote.cluster.client import poll
from esremote.inventory import load_inventory
from esremote.preflight import preflight
from esremote.ssh import SSHPool

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIASES = ["my_remote", "my_remote2"]


def deprecation_codes(lab, node: dict) -> set[str]:
    path = os.path.join(node["home"], "logs", "local_deprecation.json")
    if not os.path.exists(path):
        return set()
    with open(path, encoding="utf-8") as log:
        return {json.loads(line)["event.code"] for line in log if line.strip()}


@pytest.fixture(scope="module")
def lab9(lab_factory):
    lab = lab_factory("cert-model-9", version="9.1.0", remote_version="8.18.0", local_nodes=2, remote_nodes=1,
                      remotes=2)
    local = lab.es("local")
    ghost = f"{lab.nodes('remote')[0]['ip']}:9301"  # nothing listens there
    local.cluster.put_settings(persistent={"cluster.remote.ghost.mode": "proxy",
                                           "cluster.remote.ghost.proxy_address": ghost})
    wanted = {f"remote_cluster_certificate_access-{a}" for a in ALIASES}
    for node in lab.nodes("local"):
        poll(lambda n=node: wanted <= deprecation_codes(lab, n), timeout=60,
             what=f"{node['name']}: both certificate-model links logged")
    return lab


def certificate_findings(report) -> list:
    return [f for f in report.findings if f.check == "certificate-model aliases"]


def test_preflight_lists_every_alias_still_on_the_certificate_model(lab9):
    inventory = load_inventory(lab9.inventory)
    with SSHPool() as pool:
        report = preflight(inventory, "my_remote", pool=pool)
    local_nodes = [n["name"] for n in lab9.nodes("local")]
    found = report.certificate_model
    assert found.logged == {"my_remote": local_nodes, "my_remote2": local_nodes}
    assert found.unlogged == ["ghost"] and found.unread == {}
    [finding] = certificate_findings(report)
    assert finding.status == "warn" and finding.where == "local"
    assert "3 alias(es) still on the certificate model" in finding.detail
    assert f"my_remote (deprecation log of {', '.join(local_nodes)})" in finding.detail
    assert "ghost (in _remote/info, no certificate-model connection logged)" in finding.detail
    assert "esremote migrate --alias ALIAS" in finding.fix
    assert report.to_dict()["certificate_model"]["logged"]["my_remote2"] == local_nodes


def test_the_plan_lists_them_and_what_it_leaves(lab9, tmp_path):
    result = subprocess.run([sys.executable, "-m", "esremote", "plan", "--inventory", str(lab9.inventory),
                             "--alias", "my_remote", "--json"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ESREMOTE_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    notes = [n for n in json.loads(result.stdout)["notes"] if "certificate model, deprecated" in n]
    assert len(notes) == 1, json.loads(result.stdout)["notes"]
    assert notes[0].startswith("local (9.x): aliases still on the certificate model, deprecated since 9.0: ")
    assert "`my_remote` (deprecation log of local-0, local-1)" in notes[0]
    assert "`ghost` (no certificate-model connection logged)" in notes[0]
    assert notes[0].endswith("after this plan: `ghost`, `my_remote2`.")


def test_a_removed_alias_is_not_listed_though_its_log_line_stays(lab9):
    local = lab9.es("local")
    names = ("mode", "proxy_address", "proxy_socket_connections", "seeds", "server_name", "skip_unavailable")
    local.cluster.put_settings(persistent={f"cluster.remote.my_remote2.{k}": None for k in names},
                               transient={f"cluster.remote.my_remote2.{k}": None for k in names})
    poll(lambda: "my_remote2" not in local.cluster.remote_info(), timeout=30, what="my_remote2 removed")
    assert all("remote_cluster_certificate_access-my_remote2" in deprecation_codes(lab9, n)
               for n in lab9.nodes("local"))
    with SSHPool() as pool:
        report = preflight(load_inventory(lab9.inventory), "my_remote", pool=pool)
    assert sorted(report.certificate_model.logged) == ["my_remote"]
    assert report.certificate_model.aliases == ["ghost", "my_remote"]
