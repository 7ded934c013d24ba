"""What an operator reads while a run works (`esremote migrate|demo|rollback`): the progress display
instead of Prefect's log lines, the full log in the run's directory, `--verbose`, `--output json`,
and the measured outage (from the journal's timestamps).

The display on a real migration is checked by the end-to-end tests (tests/test_e2e_migration.py
uses `assert_progress_display`); here: the outage arithmetic, the display fed with records, and a
run that fails in preflight (clusters nobody listens for) as a real process against the session's
Prefect test server.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esremote.journal import Journal, measured_outage
from esremote.flows.summary import Summary

# Prefect's console format: `21:04:16.226 | INFO    | prefect - ...`, `... | Flow run 'x' - ...`.
RAW_PREFECT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\|", re.M)
OUTAGE_LINE = re.compile(r"^outage: \d+\.\ds \(first work stopped \d\d:\d\d:\d\d\.\d{3} UTC, all work resumed "
                         r"\d\d:\d\d:\d\d\.\d{3} UTC\)", re.M)


def assert_progress_display(stderr: str, *phases: str) -> None:
    """The terminal shows the progress display (the given phases started and ended) and not one of
    Prefect's own log lines, nor a Python warning."""
    assert not RAW_PREFECT_LINE.search(stderr), RAW_PREFECT_LINE.search(stderr).group(0) + "\n" + stderr[-3000:]
    assert "Flow run '" not in stderr and "Task run '" not in stderr, stderr[-3000:]
    assert "Warning:" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert re.search(r"^\d\d:\d\d:\d\d esremote \w+: run \S+; full log in \S+/run\.log$", stderr, re.M), stderr[:2000]
    for phase in phases:
        assert f"▶ {phase}: " in stderr, (phase, stderr[-3000:])
        assert re.search(rf"^\d\d:\d\d:\d\d [✓✗] {phase}\b", stderr, re.M), (phase, stderr[-3000:])


# ------------------------------------------------------------------------------- the outage


def journal_with(tmp_path: Path, entries: list[tuple[str, str, str, dict]]) -> Journal:
    """A run's journal with these (time, kind, step, data) entries, times as written by the run."""
    journal = Journal.create("run-1", state_dir=tmp_path)
    lines = [json.dumps({"seq": i, "kind": kind, "step": step, "time": f"2026-12-06T21:{time}+00:00", "data": data})
             for i, (time, kind, step, data) in enumerate(entries)]
    journal.path.write_text("\n".join(lines) + "\n")
    (journal.run_dir / "plan.json").write_text(json.dumps({"outage": {"estimate": "seconds: a reload"}}))
    return Journal(journal.run_dir)


def test_the_outage_is_first_work_stopped_to_all_work_resumed(tmp_path):
    journal = journal_with(tmp_path, [
        ("05:00.000", "intent", "prepare_remote/restart/remote/remote-0", {}),
        ("05:07.027", "intent", "stop_cross_cluster_ops/stop/a", {"calls": ["stop transform t"]}),
        ("05:07.100", "intent", "stop_cross_cluster_ops/stop/b", {"calls": []}),
        ("05:08.000", "done", "stop_cross_cluster_ops/stop/a", {}),
        ("05:12.000", "done", "resume_cross_cluster_ops/resume/a", {}),
        ("05:12.661", "done", "resume_cross_cluster_ops/resume/b", {}),
    ])
    outage = measured_outage(journal)
    assert outage.seconds == 5.634 and outage.expected == "seconds: a reload"
    summary = Summary(run_id="run-1", status="migrated", aliases=["a", "b"]).measure_outage(journal)
    assert OUTAGE_LINE.search(summary.to_text())
    assert "outage: 5.6s (first work stopped 21:05:07.027 UTC, all work resumed 21:05:12.661 UTC); the plan " \
           "expected seconds: a reload" in summary.to_text()
    assert "- measured outage: 5.6s" in summary.to_markdown()
    assert Summary.from_dict(json.loads(json.dumps(summary.to_dict()))).outage == summary.outage


def test_a_rollback_ends_the_outage_and_an_unresumed_run_says_so(tmp_path):
    rolled_back = journal_with(tmp_path / "1", [
        ("06:58.685", "intent", "stop_cross_cluster_ops/stop/a", {"calls": ["stop transform t"]}),
        ("07:19.000", "intent", "rollback/stop/a", {"calls": []}),          # already stopped: no new window
        ("07:23.763", "done", "rollback/resume/a", {}),
        ("07:30.000", "intent", "rollback/undo/restart/local/local-0", {}),
    ])
    assert measured_outage(rolled_back).seconds == 25.078
    crashed = journal_with(tmp_path / "2", [("06:58.685", "intent", "stop_cross_cluster_ops/stop/a", {})])
    outage = measured_outage(crashed)
    assert outage.ended is None and outage.seconds is None
    assert outage.describe().startswith("not over: work stopped at 21:06:58.685 UTC and not resumed yet")
    assert measured_outage(journal_with(tmp_path / "3", [])) is None
    assert Summary(run_id="r", status="planned", aliases=[]).outage_text.startswith("none")


# ------------------------------------------------------------------------- the display, fed


def display_of(records: list[logging.LogRecord], journal_entries=()) -> str:
    """What the line display (no terminal) prints for these records."""
    from rich.console import Console

    from esremote.cli.progress import Display, Progress, ProgressHandler

    out = io.StringIO()
    handler = ProgressHandler(Display(Console(file=out, width=300, highlight=False), Progress(), live=False))
    handler.replay(journal_entries)
    for record in records:
        handler.handle(record)
    return out.getvalue()


def record(name: str, message: str, level=logging.INFO, created: float = 1_000_000.0, **extra) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, message, None, None)
    rec.created = created
    rec.__dict__.update(extra)
    return rec


FLOW = dict(flow_name="reconnect", flow_run_name="reconnect-run-1", flow_run_id="f-2")
TASK = dict(FLOW, task_run_id="t-1", task_run_name="restart-local/local-0", task_name="restart-node")


def test_records_become_phases_steps_waits_retries_and_problems():
    text = display_of([
        record("prefect", "Starting temporary server on http://127.0.0.1:8921\nSee https://www.prefect.io"),
        record("prefect.flow_runs", "Beginning flow run 'migrate-x' for flow 'migrate-remote-cluster'",
               flow_name="migrate-remote-cluster", flow_run_name="migrate-x", flow_run_id="f-1"),
        record("prefect.flow_runs", "Beginning subflow run 'reconnect-run-1' for flow 'reconnect'", **FLOW),
        record("esremote.journal", "journal: intent stop_cross_cluster_ops/stop/my_remote", logging.DEBUG,
               esremote_journal={"kind": "intent", "step": "stop_cross_cluster_ops/stop/my_remote"}),
        record("esremote.journal", "journal: intent reconnect/restart/local/local-0", logging.DEBUG,
               esremote_journal={"kind": "intent", "step": "reconnect/restart/local/local-0"}),
        record("esremote.progress", "waiting for node local-0 rejoining (up to 60s)", logging.DEBUG,
               esremote_wait="node local-0 rejoining"),
        record("prefect.task_runs", "Task run failed with exception: ClusterError('HTTP 503 from local') - "
                                    "Retry 1/3 will start 1 second(s) from now", **TASK),
        record("prefect.task_runs", "Finished in state Completed()", **TASK),
        record("prefect.task_runs", "Finished in state Failed('Task run encountered an exception "
                                    "VerificationError: verification of alias my_remote failed on node(s) local-1')",
               logging.ERROR, **dict(TASK, task_run_name="verify-my_remote")),
        record("prefect.flow_runs", "Encountered exception during execution: VerificationError('verification of "
                                    "alias my_remote failed on node(s) local-1')", logging.ERROR, **FLOW),
        record("esremote.journal", "journal: done resume_cross_cluster_ops/resume/my_remote", logging.DEBUG,
               created=1_000_004.5,
               esremote_journal={"kind": "done", "step": "resume_cross_cluster_ops/resume/my_remote"}),
        record("prefect.flow_runs", "Finished in state Failed('Flow run encountered an exception')", logging.ERROR,
               created=1_000_016.2, **FLOW),
    ])
    lines = [line.split(" ", 1)[1] for line in text.splitlines()]
    assert lines == [
        "  starting a temporary Prefect server (http://127.0.0.1:8921)",
        "▶ reconnect: alias removed, credentials reloaded, alias re-added on the remote cluster port",
        "⚠ outage started: cross-cluster work is being stopped",
        "  stop the work using my_remote",
        "  restart local/local-0",
        "  waiting for node local-0 rejoining",
        "↻ restart-local/local-0: retry 1/3 (1 second(s) from now) after HTTP 503 from local",
        "✗ verify-my_remote: verification of alias my_remote failed on node(s) local-1",
        "✓ outage over: all work resumed after 4.5s",
        "✗ reconnect failed (16.2s)",
    ]


def test_the_live_view_shows_the_phase_its_step_the_waits_and_the_outage_clock():
    """On a terminal the changing part is drawn in place: phase and its time, the outage clock, the
    step, what is waited for."""
    import time

    from rich.console import Console

    from esremote.cli.progress import Display, Phase, Progress

    now = time.time()
    progress = Progress(phases={"reconnect": Phase("reconnect", now - 12)}, current="reconnect",
                        step="reload secure settings on local", waits={1: "alias my_remote connected on node local-0"},
                        outage_started=now - 30)
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    console.print(Display(console, progress, live=True))
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r". reconnect 1[23]\.\ds  alias removed, credentials reloaded, alias re-added on the "
                        r"remote cluster port   outage 3[01]\.\ds *", lines[0]), lines
    assert lines[1:] == ["  reload secure settings on local", "  waiting for alias my_remote connected on node local-0"]


def test_a_resumed_run_counts_its_outage_from_the_first_attempt(tmp_path):
    journal = journal_with(tmp_path, [("05:07.027", "intent", "stop_cross_cluster_ops/stop/a", {})])
    first = Journal(journal.run_dir).entries()[0]
    from datetime import datetime

    stopped = datetime.fromisoformat(first.time).timestamp()
    text = display_of([record("esremote.journal", "journal: done resume_cross_cluster_ops/resume/a", logging.DEBUG,
                              created=stopped + 65.0,
                              esremote_journal={"kind": "done", "step": "resume_cross_cluster_ops/resume/a"})],
                      journal.entries())
    assert "✓ outage over: all work resumed after 65.0s" in text


# -------------------------------------------------------------- a real process, failing early


@pytest.fixture
def unreachable(tmp_path, request) -> tuple[Path, dict]:
    """An inventory of two clusters nobody listens for, and the environment of a run reporting to
    the session's Prefect test server."""
    from tests.test_flows import shared_prefect_api  # noqa: PLC0415

    path = tmp_path / "inventory.yml"
    cluster = {"urls": ["https://127.0.0.1:1"], "auth": {"username": "elastic", "password": {"env": "ES_PASSWORD"}}}
    path.write_text(yaml.safe_dump({
        "ssh": {"port": 1, "known_hosts": str(tmp_path / "known_hosts"), "connect_timeout": 2},
        "clusters": {"local": {"role": "local", **cluster, "nodes": [{"name": "l0", "address": "127.0.0.1"}]},
                     "remote": {"role": "remote", **cluster, "nodes": [{"name": "r0", "address": "127.0.0.1"}]}},
        "aliases": {"my_remote": {"local": "local", "remote": "remote"}}}))
    env = {**os.environ, "ESREMOTE_STATE_DIR": str(tmp_path / "state"), "ES_PASSWORD": "not-a-real-password",
           "PREFECT_API_URL": shared_prefect_api(request.config), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return path, env


def esremote(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esremote", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_a_failed_run_shows_progress_and_json_and_keeps_the_full_log(unreachable, tmp_path):
    inventory, env = unreachable
    result = esremote(env, "migrate", "--inventory", str(inventory), "--yes", "--output", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    # stdout: the summary as JSON, nothing else.
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 1 and summary["outage"] is None
    assert summary["prefect_url"].startswith("http://") and "/runs/flow-run/" in summary["prefect_url"]
    # stderr: the progress display, the preflight failure in full, the one-line error last.
    assert_progress_display(result.stderr, "preflight")
    assert "✗ preflight failed" in result.stderr
    assert "preflight for alias my_remote" in result.stderr and "cluster local" in result.stderr
    # Retries are visible as such (nobody listens on port 1: a transient error).
    assert re.search(r"^\d\d:\d\d:\d\d ↻ read-node-local/l0: retry 1/3 \(.*\) after local/l0: cannot connect",
                     result.stderr, re.M), result.stderr
    assert "the run in the Prefect UI: http://" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("esremote: error: migration failed (run ")
    assert "not-a-real-password" not in result.stdout + result.stderr
    # The full log, with Prefect's own lines, in the run's directory, private.
    log = Path(summary["log_file"])
    assert log.parent == tmp_path / "state" / "runs" / summary["run_id"]
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    assert "Beginning flow run" in text and "Flow run 'preflight-" in text and "not-a-real-password" not in text


def test_verbose_shows_the_full_log_live(unreachable):
    inventory, env = unreachable
    result = esremote(env, "migrate", "--inventory", str(inventory), "--yes", "--verbose")
    assert result.returncode == 1
    assert RAW_PREFECT_LINE.search(result.stderr) and "Flow run 'preflight-" in result.stderr
    assert re.search(r"^\d\d:\d\d:\d\d ✗ preflight failed", result.stderr, re.M)  # the events too
    assert result.stdout.startswith("run id: ") and "\nstatus: failed\n" in result.stdout
    assert "\noutage: none (no cross-cluster work was stopped)\n" in result.stdout


def test_output_must_be_text_or_json(unreachable):
    inventory, env = unreachable
    result = esremote(env, "migrate", "--inventory", str(inventory), "--yes", "--output", "yaml")
    assert result.returncode == 2 and result.stderr.strip() == "esremote: error: --output 'yaml': use text or json"
