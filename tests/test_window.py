"""The maintenance window's arithmetic (esremote.window): the window's end from the parameters, the
plan priced phase by phase with the restarts this run measured (or the default), and the answer at
each checkpoint. The run on a lab with a window too short for its plan is in test_operating.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from esremote import window
from esremote.journal import Journal
from esremote.params import MigrationParams

T0 = datetime(2026, 12, 12, 3, 0, tzinfo=timezone.utc)


def changes(*rows: tuple[str, str]) -> list[dict]:
    return [{"phase": phase, "kind": kind} for phase, kind in rows]


PLAN = changes(("prepare_remote", "file"), ("prepare_remote", "yml"), ("prepare_remote", "restart"),
               ("prepare_remote", "restart"), ("stage_local", "yml"), ("stage_local", "restart"),
               ("stage_credentials", "keystore"), ("stop_cross_cluster_ops", "api"), ("reconnect", "reload"),
               ("verify", "probe"), ("resume_cross_cluster_ops", "api"))


def test_the_window_ends_where_the_parameters_say(tmp_path):
    inventory = tmp_path / "inventory.yml"
    assert window.window_end(MigrationParams(inventory=inventory), T0) is None
    end = datetime(2026, 12, 12, 6, 0, tzinfo=timezone(timedelta(hours=1)))
    assert window.window_end(MigrationParams(inventory=inventory, window_end=end), T0) == end
    assert window.window_end(MigrationParams(inventory=inventory, window_minutes=90), T0) == T0 + timedelta(minutes=90)
    naive = window.window_end(MigrationParams(inventory=inventory, window_end="2026-12-12T06:00:00"), T0)
    assert naive == datetime(2026, 12, 12, 6, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="window_end or as window_minutes, not both"):
        MigrationParams(inventory=inventory, window_end=end, window_minutes=10)


def test_before_any_restart_the_plan_is_priced_with_the_defaults(tmp_path):
    journal = Journal.create("w1", state_dir=tmp_path)
    result = window.check("prepare_remote", PLAN, journal, T0 + timedelta(hours=1), now=T0)
    restart = window.DEFAULT_SECONDS["restart"]
    assert result.restart_s == restart and not result.restart_measured and result.restarts == 3
    assert list(result.breakdown) == list(window.PHASES)
    assert result.breakdown["prepare_remote"] == (window.PHASE_OVERHEAD_SECONDS + 2 * window.DEFAULT_STEP_SECONDS
                                                  + 2 * restart)
    assert result.breakdown["reconnect"] == window.PHASE_OVERHEAD_SECONDS + window.DEFAULT_SECONDS["reload"]
    assert result.breakdown["stage_credentials"] == window.PHASE_OVERHEAD_SECONDS + window.DEFAULT_STEP_SECONDS
    assert result.fits and result.message.endswith(": it fits")


def test_a_window_too_short_stops_before_the_phase_and_says_why(tmp_path):
    journal = Journal.create("w2", state_dir=tmp_path)
    result = window.check("prepare_remote", PLAN, journal, T0 + timedelta(minutes=3), now=T0)
    assert not result.fits and result.left_s == 180 and result.needed_s > 180
    assert "it does not fit, so the run stops before prepare_remote" in result.message
    text = result.to_markdown()
    assert text.startswith("# Maintenance window: does not fit: stopped before `prepare_remote`")
    assert "| stage_local |" in text and "default: none measured yet" in text
    ended = window.check("prepare_remote", PLAN, journal, T0 - timedelta(minutes=1), now=T0)
    assert not ended.fits and "none (it ended 60s ago)" in ended.message


def test_later_checks_use_the_restarts_this_run_measured_and_only_what_is_left(tmp_path):
    journal = Journal.create("w3", state_dir=tmp_path)
    for node, seconds in (("remote/remote-0", 20.0), ("remote/remote-1", 35.5)):
        journal.intent(f"prepare_remote/restart/{node}", node=node)
        journal.done(f"prepare_remote/restart/{node}", seconds=seconds)
    journal.done("stage_local/restart/local/local-0", seconds=0.0)  # skipped (done earlier): not a measure
    assert window.measured_restart_seconds(journal) == 35.5
    result = window.check("stage_local", PLAN, journal, T0 + timedelta(minutes=2), now=T0)
    assert result.restart_measured and result.restart_s == 35.5 and result.restarts == 1
    assert list(result.breakdown) == list(window.PHASES[1:])
    assert result.fits, result.message   # with the default (120 s a restart) it would not
    assert "measured in this run" in result.message
    last = window.check("stage_credentials", PLAN, journal, T0 + timedelta(minutes=2), now=T0)
    assert list(last.breakdown) == ["stage_credentials", *window.OUTAGE]


def test_the_window_is_never_checked_inside_the_outage(tmp_path):
    journal = Journal.create("w4", state_dir=tmp_path)
    for phase in ("stop_cross_cluster_ops", "reconnect", "verify", "resume_cross_cluster_ops"):
        with pytest.raises(ValueError, match="only checked before prepare_remote, stage_local, stage_credentials"):
            window.check(phase, PLAN, journal, T0, now=T0)
