"""`esremote plan|migrate|rollback|verify` on bad input: one line naming what is wrong, the right exit
code, no traceback, nothing changed (the journal directory stays empty)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml



@pytest.fixture
def inventory(tmp_path, monkeypatch) -> Path:
    """Two clusters nobody listens for (port 1 refuses at once)."""
    monkeypatch.setenv("ESREMOTE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ES_PASSWORD", "not-a-real-password")
    path = tmp_path / "inventory.yml"
    cluster = {"urls": ["https://127.0.0.1:1"], "auth": {"username": "elastic", "password": {"env": "ES_PASSWORD"}}}
    path.write_text(yaml.safe_dump({
        "ssh": {"port": 1, "known_hosts": str(tmp_path / "known_hosts"), "connect_timeout": 2},
        "clusters": {"local": {"role": "local", **cluster, "nodes": [{"name": "l0", "address": "127.0.0.1"}]},
                     "remote": {"role": "remote", **cluster, "nodes": [{"name": "r0", "address": "127.0.0.1"}]}},
        "aliases": {"my_remote": {"local": "local", "remote": "remote"}}}))
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    """The real command in its own process (as a user runs it: exit code, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "esremote", *args], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy())
    return result.returncode, result.stdout, result.stderr


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("esremote: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_missing_inventory_is_named(capsys, tmp_path):
    code, _, err = run(capsys, "plan", "--inventory", str(tmp_path / "nope.yml"))
    assert code == 2 and "nope.yml" in one_line_error(err) and "cannot read the inventory" in err


def test_an_unknown_alias_is_refused_before_anything_runs(capsys, inventory, tmp_path):
    code, _, err = run(capsys, "migrate", "--inventory", str(inventory), "--alias", "other", "--yes")
    line = one_line_error(err)
    assert code == 2 and "alias other is not in" in line and "my_remote" in line
    assert not (tmp_path / "state").exists()


def test_a_bad_parameter_names_the_field(capsys, inventory):
    code, _, err = run(capsys, "migrate", "--inventory", str(inventory), "--connection-mode", "tunnel", "--yes")
    assert code == 2 and "connection_mode" in one_line_error(err)


def test_migrate_asks_for_yes_when_nobody_can_answer(capsys, inventory, tmp_path):
    code, _, err = run(capsys, "migrate", "--inventory", str(inventory))
    assert code == 2 and "--yes" in one_line_error(err)
    assert not (tmp_path / "state").exists()


def test_rollback_of_an_unknown_run_says_where_it_looked(capsys, inventory, tmp_path):
    code, _, err = run(capsys, "rollback", "--inventory", str(inventory), "20990101-000000-abcdef")
    line = one_line_error(err)
    assert code == 2 and "no run '20990101-000000-abcdef'" in line and str(tmp_path / "state") in line


def test_plan_against_unreachable_clusters_lists_every_blocking_problem(capsys, inventory):
    code, out, err = run(capsys, "plan", "--inventory", str(inventory))
    assert code == 2 and out == ""
    # Nothing answers: every check failed on a transient error, which says so (and is retried in a run).
    assert "preflight for alias my_remote: 3 check(s) failed on a transient error" in err
    assert "Connection refused" in err and "Traceback" not in err
    assert "cluster local" in err and "not-a-real-password" not in err
