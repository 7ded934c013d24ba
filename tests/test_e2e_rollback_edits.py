"""`esremote rollback RUN_ID` after a successful migration, on nodes whose files an operator edited
since (real processes, real SSH, the lab's nodes reading their files at start):

1. A line and a comment added to a local node's elasticsearch.yml: the rollback exits 0, the run's
   settings are gone, the operator's lines are still there (the file is the one from before the run
   plus those lines, and the node starts with it); the edited file is kept in the journal first.
2. A setting the run wrote, changed by hand: the rollback stops on that node (exit 1, the message
   names node, file and setting with before run / run wrote / now), the file is byte for byte as
   the operator left it and the node was not restarted; once the operator puts the run's value
   back, rolling back again finishes.
3. A CA file the run put, changed by hand: kept and reported for that node, not removed.

Each test migrates the same lab and leaves it rolled back, as it found it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.lab import Lab
from tests.test_e2e_migration import esremote, journal, node_files, prefect_api  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ALIAS = "my_remote"
OPERATOR = b"# the rack this node is in, set by hand\nnode.attr.rack_by_hand: r1\n"
CLIENT_ENABLED = b"xpack.security.remote_cluster_client.ssl.enabled: true"


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory("rollback-edits", version="8.15.0", local_nodes=2, remote_nodes=1)
    try:
        yield lab
    finally:
        lab.down()  # two labs at once are too much for a 2-core machine


def yml_of(lab: Lab, node: str) -> Path:
    return Path(lab.node(node)["home"]) / "config" / "elasticsearch.yml"


def migrate(lab: Lab, prefect_api: str, state: Path) -> str:  # noqa: F811
    result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", prefect_api=prefect_api,
                      state_dir=state)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run_id] = [p.name for p in (state / "runs").iterdir()]
    return run_id


def rollback(lab: Lab, prefect_api: str, state: Path, run_id: str):  # noqa: F811
    return esremote("rollback", "--inventory", str(lab.inventory), run_id, prefect_api=prefect_api,
                    state_dir=state)


def edit_by_hand(path: Path, data: bytes) -> None:
    """As an editor saving in place: the file keeps its inode, owner, group and mode."""
    with path.open("r+b") as fh:
        fh.truncate(0)
        fh.write(data)


def test_an_operators_line_and_comment_survive_the_rollback(lab, prefect_api, tmp_path):  # noqa: F811
    before = node_files(lab)
    run_id = migrate(lab, prefect_api, tmp_path)
    name = lab.nodes("local")[0]["name"]
    yml = yml_of(lab, name)
    migrated = yml.read_bytes()
    assert CLIENT_ENABLED in migrated and migrated != before[name]["yml"]
    edit_by_hand(yml, migrated + OPERATOR)
    pids = lab.pids()

    result = rollback(lab, prefect_api, tmp_path, run_id)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "status: rolled-back" in result.stdout
    # The run's settings (and the block it put them in) are gone, the operator's lines stay, and the
    # node restarted with that file (a node refuses to start on a file it cannot read).
    assert yml.read_bytes() == before[name]["yml"] + OPERATOR
    assert len(lab.pids()[name]) > len(pids[name]) and lab.starts(name)[-1].started
    # The file as the operator left it went to the journal before the rollback wrote it.
    [backup] = (tmp_path / "runs" / run_id / "originals").glob(f"rollback_undo_*yml*{name}.yml")
    assert backup.read_bytes() == migrated + OPERATOR
    # Every other node of both clusters is as before the run, byte for byte.
    now = node_files(lab)
    for other, was in before.items():
        if other != name:
            assert now[other] == was, other
        assert now[other]["files"] == was["files"] and now[other]["keystore"] == was["keystore"], other
    info = lab.es("local").cluster.remote_info()[ALIAS]
    assert info["connected"] and "cluster_credentials" not in info
    # The run's cross-cluster key is used by no alias now: it is invalidated, not left valid.
    keys = [k for k in lab.es("remote").security.get_api_key()["api_keys"]
            if (k.get("metadata") or {}).get("esremote", {}).get("run_id") == run_id]
    assert keys and all(k["invalidated"] for k in keys), keys

    # Rolling back again changes nothing.
    entries = journal(tmp_path)
    again = rollback(lab, prefect_api, tmp_path, run_id)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert node_files(lab) == now
    later = [e for e in journal(tmp_path)[len(entries):] if e["kind"] == "done"]
    assert not [e["step"] for e in later if e["data"].get("changed") or e["data"].get("removed")]
    edit_by_hand(yml, before[name]["yml"])  # the lab as this test found it (read at the next start)


def test_a_setting_the_operator_changed_stops_the_rollback_on_that_node(lab, prefect_api, tmp_path):  # noqa: F811
    before = node_files(lab)
    run_id = migrate(lab, prefect_api, tmp_path)
    name = lab.nodes("local")[0]["name"]
    yml = yml_of(lab, name)
    migrated = yml.read_bytes()
    edited = migrated.replace(CLIENT_ENABLED, CLIENT_ENABLED.replace(b"true", b"false"))
    assert edited != migrated
    edit_by_hand(yml, edited)
    pids = lab.pids()

    result = rollback(lab, prefect_api, tmp_path, run_id)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    diff = ("xpack.security.remote_cluster_client.ssl.enabled: before run (not set) / run wrote true / "
            "now false")
    # In the summary and in the failure: node, file and the setting's three values.
    for text in (result.stdout, result.stderr):
        assert diff in text and str(yml) in text and name in text, text[-3000:]
    assert "status: rollback-failed" in result.stdout
    # Nothing changed on that node: its file byte for byte, and it was not restarted.
    assert yml.read_bytes() == edited
    assert lab.pids()[name] == pids[name]
    # The outage's part was undone all the same: the certificate-model link is back. So is every
    # other node: the held node stops nothing else (its alias is on the certificate model already).
    info = lab.es("local").cluster.remote_info()[ALIAS]
    assert info["connected"] and "cluster_credentials" not in info
    now = node_files(lab)
    for other, was in before.items():
        if other != name:
            assert now[other]["yml"] == was["yml"] and now[other]["keystore"] == was["keystore"], other
            assert [f for f in now[other]["files"] if ".esremote-" not in f] == was["files"], other

    # The operator puts the run's value back: rolling back again finishes, every node as before.
    edit_by_hand(yml, migrated)
    again = rollback(lab, prefect_api, tmp_path, run_id)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert node_files(lab) == before


def test_a_ca_file_changed_since_the_run_is_kept_and_reported(lab, prefect_api, tmp_path):  # noqa: F811
    before = node_files(lab)
    run_id = migrate(lab, prefect_api, tmp_path)
    name = lab.nodes("local")[0]["name"]
    ca = yml_of(lab, name).parent / "remote-cluster-ca.crt"
    assert "remote-cluster-ca.crt" not in before[name]["files"]
    edited = ca.read_bytes() + b"# another CA this node trusts, added by hand\n"
    edit_by_hand(ca, edited)

    result = rollback(lab, prefect_api, tmp_path, run_id)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{ca} was changed since the run wrote it" in result.stderr and name in result.stderr
    assert ca.read_bytes() == edited
    # The rest of the local cluster came back (the remote one waits: a failure stops the rollback
    # before the next cluster): every local node's yml, the other local node's CA file is gone (the
    # run's backups stay until a rollback has finished).
    now = node_files(lab)
    for other in (n["name"] for n in lab.nodes("local")):
        assert now[other]["yml"] == before[other]["yml"], other
        if other != name:
            assert [f for f in now[other]["files"] if ".esremote-" not in f] == before[other]["files"], other

    # The operator removes the file by hand (it was not there before the run): rolling back again
    # finishes.
    ca.unlink()
    again = rollback(lab, prefect_api, tmp_path, run_id)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert node_files(lab) == before
