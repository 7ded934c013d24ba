import json
import stat

import pytest

from esremote.errors import ConfigError
from esremote.journal import Journal


def test_intent_is_durable_and_reopens_after_a_crash(tmp_path):
    j = Journal.create("run-1", state_dir=tmp_path, params={"aliases": ["my_remote"]})
    j.intent("reconnect/settings/my_remote", original={"mode": "proxy"})
    j.done("reconnect/settings/my_remote")
    j.intent("reconnect/keystore/local-0/my_remote", present_before=False)
    # a crash tears the last line in half
    with open(j.path, "a") as fh:
        fh.write('{"seq": 3, "kind": "do')
    again = Journal.open("run-1", state_dir=tmp_path)
    assert again.is_done("reconnect/settings/my_remote")
    assert not again.is_done("reconnect/keystore/local-0/my_remote")
    assert again.first_intent("reconnect/settings/my_remote").data == {"original": {"mode": "proxy"}}
    assert again.started_steps("reconnect/") == ["reconnect/settings/my_remote",
                                                 "reconnect/keystore/local-0/my_remote"]
    assert again.params == {"aliases": ["my_remote"]}


def test_first_original_wins_and_is_private(tmp_path):
    j = Journal.create("run-2", state_dir=tmp_path)
    name = j.save_original("local-0:/etc/elasticsearch/elasticsearch.yml", b"original\n")
    j.save_original("local-0:/etc/elasticsearch/elasticsearch.yml", b"edited by a retry\n")
    assert j.original(name) == b"original\n"
    assert stat.S_IMODE((j.run_dir / "originals" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(j.run_dir.stat().st_mode) == 0o700


def test_unknown_or_malformed_run_ids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no run 'nope'"):
        Journal.open("nope", state_dir=tmp_path)
    with pytest.raises(ConfigError, match="not valid"):
        Journal.create("../escape", state_dir=tmp_path)


def test_each_line_is_json(tmp_path):
    j = Journal.create("run-3", state_dir=tmp_path)
    j.note("preflight", versions={"local": "8.15.0"})
    lines = j.path.read_text().splitlines()
    assert json.loads(lines[0])["data"] == {"versions": {"local": "8.15.0"}}
