"""Key rotation on a 9.3 lab (2 local nodes + 1 remote, both 9.3), migrated by hand as in
tests/test_rotation_lab.py. From 9.3 a reload reports, per node, the keystore it read
(`keystore_path`, `keystore_digest`: es-facts §12), and the rotation checks that every local node
reloaded the very file esremote wrote.

1. The rotation: no node restarts, the old key is invalid afterwards, every node's reported digest
   is the SHA-256 of its keystore file as esremote wrote it (journaled), searches work on every node.
2. Something rewrites one node's keystore between esremote's write and the reload (the same value
   re-added through the node's keystore CLI: same content, new file): that node reports another
   digest, and the rotation rolls back by itself, naming the node; the old key is back and valid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from esremote.cluster.api_key import key_name
from esremote.cluster.client import poll
from esremote.params import RotationParams
from tests.test_flows import shared_prefect_api
from tests.test_lab_manual_migration import (
    ALIAS,
    Operator,
    check_remote_cluster_port,
    prepare_remote,
    reconnect_with_api_key,
    resume_cross_cluster_operations,
    stage_local,
    stop_cross_cluster_operations,
)
from tests.test_rotation_lab import ACCESS, key, keystore_key_ids, node_pids, search_on_every_local_node

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VERSION = "9.3.0"
CREDENTIALS = f"cluster.remote.{ALIAS}.credentials"


@pytest.fixture(scope="module")
def migrated(lab_factory, request):
    """A 9.3 lab on the API-key model, its key made as an earlier esremote run made keys. Yields
    (lab, operator, key id)."""
    shared_prefect_api(request.config)
    lab = lab_factory("rotate93", version=VERSION, local_nodes=2, remote_nodes=1)
    op = Operator(lab)
    try:
        ca_pem = prepare_remote(op, lab)
        check_remote_cluster_port(lab, ca_pem)
        created = lab.es("remote").security.create_cross_cluster_api_key(
            name=key_name("local", ALIAS), access=ACCESS,
            metadata={"esremote": {"run_id": "earlier-run", "alias": ALIAS, "local_cluster": "local"}})
        stage_local(op, lab, ca_pem)
        stop_cross_cluster_operations(lab)
        reconnect_with_api_key(op, lab, created["encoded"])
        local = lab.es("local")
        poll(lambda: local.cluster.remote_info()[ALIAS]["connected"], timeout=30, what="the API-key link")
        resume_cross_cluster_operations(lab)
        search_on_every_local_node(lab)
        yield lab, op, created["id"]
    finally:
        op.close()
        lab.down()


def journal(tmp_path: Path, run_id: str) -> list[dict]:
    path = tmp_path / "runs" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_93_rotation_checks_every_node_reloaded_the_keystore_it_wrote(migrated, tmp_path):
    from esremote.flows.rotate import run_rotation  # noqa: PLC0415

    lab, op, old_id = migrated
    pids = node_pids(lab)
    summary = run_rotation(RotationParams(inventory=lab.inventory, aliases=[ALIAS], state_dir=tmp_path))
    assert (summary.status, summary.exit_code) == ("rotated", 0), summary.to_text()
    new_id = summary.aliases[ALIAS]["new_key_id"]

    assert node_pids(lab) == pids, "a node restarted"
    assert key(lab, old_id)["invalidated"] is True
    assert key(lab, new_id)["invalidated"] is False
    assert keystore_key_ids(lab) == {n["name"]: new_id for n in lab.nodes("local")}
    search_on_every_local_node(lab)

    entries = journal(tmp_path, summary.run_id)
    written = {e["data"]["node"].split("/")[1]: e["data"]["digest"] for e in entries
               if e["kind"] == "done" and e["step"].startswith(f"rotate/digest/{ALIAS}/")}
    [reload] = [e["data"] for e in entries if e["kind"] == "done" and e["step"] == f"rotate/reload/{ALIAS}"]
    on_disk = {n["name"]: hashlib.sha256(op.read(n["name"], "config/elasticsearch.keystore")).hexdigest()
               for n in lab.nodes("local")}
    assert written == on_disk and reload["digests"] == on_disk and reload["keystore_details"] is True
    assert reload["keystore_paths"] == {n["name"]: f"{n['home']}/config/elasticsearch.keystore"
                                        for n in lab.nodes("local")}

    # The answer as the nodes give it (field names and shape of NodesReloadSecureSettingsResponse).
    answer = lab.es("local").nodes.reload_secure_settings()
    for node in answer["nodes"].values():
        assert list(node) == ["name", "secure_setting_names", "keystore_path", "keystore_digest",
                              "keystore_last_modified_time"]
        assert node["secure_setting_names"] == sorted(node["secure_setting_names"])
        assert {CREDENTIALS, "keystore.seed"} <= set(node["secure_setting_names"])
        assert node["keystore_digest"] == on_disk[node["name"]]
        assert node["keystore_last_modified_time"].endswith("Z") and "T" in node["keystore_last_modified_time"]


def test_a_node_that_reloaded_another_keystore_file_rolls_the_rotation_back(migrated, tmp_path, monkeypatch):
    from esremote.flows import rotate  # noqa: PLC0415

    lab, op, _ = migrated
    [current] = set(keystore_key_ids(lab).values())
    pids = node_pids(lab)
    second = lab.nodes("local")[1]["name"]

    def rewrite_one_keystore(run_id, alias, new_key_id):
        value = op.run(second, f"bin/elasticsearch-keystore show {CREDENTIALS}").strip()
        op.keystore_add(second, CREDENTIALS, value)  # the same value: a new file, a new digest

    monkeypatch.setattr(rotate, "BEFORE_RELOAD", [rewrite_one_keystore])
    summary = rotate.run_rotation(RotationParams(inventory=lab.inventory, aliases=[ALIAS], state_dir=tmp_path))
    assert (summary.status, summary.exit_code) == ("rolled-back", 3), summary.to_text()
    message = summary.aliases[ALIAS]["message"]
    assert "not every local node reloaded the keystore esremote wrote" in message, message
    assert f"{second} reloaded " in message and f"the old key {current} is back in every keystore" in message
    first = lab.nodes("local")[0]["name"]
    assert f"{first} reloaded" not in message, message

    assert node_pids(lab) == pids, "a node restarted"
    assert keystore_key_ids(lab) == {n["name"]: current for n in lab.nodes("local")}
    assert key(lab, current)["invalidated"] is False
    search_on_every_local_node(lab)
