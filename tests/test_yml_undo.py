"""The rollback's three-way undo of elasticsearch.yml (esremote.yml_undo): the run's settings go,
what an operator wrote since stays, and a setting both touched stops the undo of that file."""

from __future__ import annotations

import pytest

from esremote.esyml import BEGIN_MARK, EsYml
from esremote.yml_undo import ABSENT, Conflict, Edit, YmlConflict, undo
from tests.test_esyml import FIXTURE_DIR, MIGRATION, VALID_FILES, _read

ORIGINAL = """\
# ---------------------------------- Cluster -----------------------------------
cluster.name: local
node.name: local-0
network.host: 127.0.1.1
xpack.security.enabled: true
xpack.security.transport.ssl:
  enabled: true   # the certificate model
  verification_mode: certificate
"""
CLIENT = {"xpack.security.remote_cluster_client.ssl.enabled": True,
          "xpack.security.remote_cluster_client.ssl.certificate_authorities": ["remote-cluster-ca.crt"]}
OPERATOR = "# rack of this node, set by hand\nnode.attr.rack_by_hand: r1\n"


def edit(original: str, set_: dict, unset: tuple[str, ...] = (), *, journaled: bool = True) -> Edit:
    """An edit as tasks/nodes.py edit_yml makes and journals it."""
    yml = EsYml.parse(original)
    yml.update(set_, list(unset))
    return Edit(original=original, set=set_, unset=list(unset), written=yml.text() if journaled else None)


def test_a_file_as_the_run_left_it_gets_its_original_bytes_back():
    staged = edit(ORIGINAL, CLIENT)
    result = undo(staged.written, [staged])
    assert result.whole_file and result.text == ORIGINAL and not result.conflicts
    assert result.restored == {k: ABSENT for k in CLIENT}


def test_an_operators_line_and_comment_stay_and_the_runs_settings_go():
    staged = edit(ORIGINAL, CLIENT)
    result = undo(staged.written + OPERATOR, [staged])
    assert not result.whole_file and not result.conflicts
    # The run's settings and its (now empty) managed block are gone; every other byte is kept.
    assert result.text == ORIGINAL + OPERATOR
    assert result.restored == {k: ABSENT for k in CLIENT}


def test_an_operators_line_in_the_middle_stays_in_place():
    staged = edit(ORIGINAL, CLIENT)
    current = staged.written.replace("network.host", "node.attr.zone: a  # by hand\nnetwork.host")
    result = undo(current, [staged])
    assert result.text == ORIGINAL.replace("network.host", "node.attr.zone: a  # by hand\nnetwork.host")


def test_a_value_the_run_changed_comes_back_in_place_keeping_the_operators_edits():
    original = ORIGINAL + "remote_cluster.port: 9500  # the old port\n"
    moved = edit(original, {"remote_cluster.port": 9443})
    result = undo("node.attr.rack_by_hand: r1\n" + moved.written, [moved])
    assert result.text == "node.attr.rack_by_hand: r1\n" + original and result.restored == {"remote_cluster.port": 9500}


def test_a_setting_the_run_removed_comes_back():
    original = ORIGINAL + "cluster.remote.my_remote.seeds: [\"127.0.2.1:9300\"]\n"
    moved = edit(original, {"cluster.remote.my_remote.mode": "proxy"}, ("cluster.remote.my_remote.seeds",))
    result = undo(moved.written + OPERATOR, [moved])
    assert not result.conflicts
    back = EsYml.parse(result.text)
    assert back.get("cluster.remote.my_remote.seeds") == ["127.0.2.1:9300"]
    assert "cluster.remote.my_remote.mode" not in back and back.get("node.attr.rack_by_hand") == "r1"


def test_a_setting_the_operator_changed_is_a_conflict_and_nothing_changes():
    staged = edit(ORIGINAL, CLIENT)
    current = staged.written.replace("remote_cluster_client.ssl.enabled: true",
                                     "remote_cluster_client.ssl.enabled: false") + OPERATOR
    result = undo(current, [staged])
    assert result.text == current and result.restored == {}
    assert result.conflicts == [Conflict("xpack.security.remote_cluster_client.ssl.enabled", ABSENT, True, False)]
    assert result.conflicts[0].describe() == ("xpack.security.remote_cluster_client.ssl.enabled: "
                                              "before run (not set) / run wrote true / now false")
    message = str(YmlConflict("local/local-0", "/etc/elasticsearch/elasticsearch.yml", result.conflicts))
    assert "local/local-0" in message and "/etc/elasticsearch/elasticsearch.yml" in message
    assert "xpack.security.remote_cluster_client.ssl.enabled: before run (not set) / run wrote true / now false" \
        in message


def test_a_setting_the_operator_already_put_back_or_removed_is_left_alone():
    staged = edit(ORIGINAL, CLIENT)
    yml = EsYml.parse(staged.written + OPERATOR)
    yml.unset("xpack.security.remote_cluster_client.ssl.enabled")  # removed by hand: as before the run
    result = undo(yml.text(), [staged])
    assert not result.conflicts
    assert result.restored == {"xpack.security.remote_cluster_client.ssl.certificate_authorities": ABSENT}
    assert result.text == ORIGINAL + OPERATOR


def test_undoing_again_changes_nothing():
    staged = edit(ORIGINAL, CLIENT)
    once = undo(staged.written + OPERATOR, [staged])
    again = undo(once.text, [staged])
    assert again.text == once.text and again.restored == {} and not again.conflicts


def test_an_edit_journaled_without_its_written_text_is_replayed():
    staged = edit(ORIGINAL, CLIENT, journaled=False)
    assert staged.written is None
    assert undo(staged.result(), [staged]).text == ORIGINAL


def test_two_edits_of_one_setting_the_outage_rollback_half_undid():
    """stage_local wrote a value, reconnect another, the outage's rollback put the first back:
    undoing both still removes the setting (any value the run wrote counts as the run's)."""
    staged = edit(ORIGINAL, {"cluster.remote.my_remote.mode": "sniff"})
    moved = edit(staged.written, {"cluster.remote.my_remote.mode": "proxy"})
    outage = undo(moved.written + OPERATOR, [moved])
    assert EsYml.parse(outage.text).get("cluster.remote.my_remote.mode") == "sniff"
    both = undo(outage.text, [staged, moved])
    assert both.text == ORIGINAL + OPERATOR and not both.conflicts


def test_an_edit_made_between_two_of_the_runs_edits_is_kept():
    """The bytes from before the run would drop a line written between its edits: the undo goes
    setting by setting even when the file is exactly what the last edit wrote."""
    staged = edit(ORIGINAL, CLIENT)
    moved = edit(staged.written + OPERATOR, {"cluster.remote.my_remote.mode": "proxy"})
    result = undo(moved.written, [staged, moved])
    assert not result.whole_file
    assert result.text == ORIGINAL + OPERATOR


def test_both_run_edits_as_written_give_the_original_bytes():
    staged = edit(ORIGINAL, CLIENT)
    moved = edit(staged.written, {"cluster.remote.my_remote.mode": "proxy"})
    assert undo(moved.written, [staged, moved]).text == ORIGINAL
    assert undo(staged.written, [staged, moved]).text == ORIGINAL  # the outage's part already undone


@pytest.mark.parametrize("name", VALID_FILES)
def test_every_real_file_with_an_operators_line_comes_back_with_only_that_line(testdata, name):
    original = _read(testdata, name)
    migrated = edit(original, MIGRATION)
    assert undo(migrated.written, [migrated]).text == original
    if BEGIN_MARK not in migrated.written or not migrated.written.endswith("\n"):
        return  # the settings went into a flow map: no block to append the operator's line after
    # The operator's lines at the root's indentation (some files indent the whole document).
    indent = migrated.written.rsplit("\n", 2)[-2].split("#")[0]
    operator = "".join(indent + line + "\n" for line in OPERATOR.splitlines())
    result = undo(migrated.written + operator, [migrated])
    assert not result.conflicts
    assert EsYml.parse(result.text).flat() == {**EsYml.parse(original).flat(), "node.attr.rack_by_hand": "r1"}
    assert result.text.endswith(operator) and operator not in original
