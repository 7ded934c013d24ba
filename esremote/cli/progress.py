"""What an operator sees while a run works, and the full log it leaves behind.

`RunOutput` wraps a Prefect run started from the terminal (`esremote migrate`, `demo`, `rollback`):

    with RunOutput(run_dir, verbose=False) as out:
        summary = run_migration(params)
    out.flow_run_id, out.log_file

- The full log (every Prefect record of the run, esremote's own records, the journal's entries and
  every wait) goes to `<run dir>/run.log` (0600, appended: a resumed run adds to it), through the
  redacting filter.
- The terminal (stderr) shows a progress display instead of Prefect's log lines: each phase as it
  starts and ends, the step the journal records (`restart remote/remote-0`), what the run waits for
  (`cluster health green with 2 nodes`), retries, warnings, errors, and the outage clock. On a
  terminal it is a live view (finished phases stay, the current step and waits change in place);
  into a pipe or file it is one plain line per event. `--verbose` keeps Prefect's own console
  lines as well (the full log, live), with the events as plain lines between them.

Nothing here sleeps or polls: the display moves only when the run records something, through a
logging handler this module installs (the journal and `poll` emit DEBUG records on
`esremote.journal` and `esremote.progress`, which it switches on).
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_FILE = "run.log"
FILE_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
FILE_DATEFMT = "%Y-%m-%d %H:%M:%S"
PARENT_FLOWS = ("migrate-remote-cluster",)
# Loggers whose records are the run's own: shown (reworded) on the terminal. Anything else (HTTP
# clients, SSH libraries, Prefect's internals) goes to the log file only.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "esremote")
# Loggers that do not propagate to the root logger but belong in the file.
DETACHED_LOGGERS = ("prefect._internal", "prefect.extra", "uvicorn", "fastapi")
EVENT_LOGGERS = ("esremote.journal", "esremote.progress")

PHASES = {
    "preflight": "access, versions, licence, what uses the alias",
    "plan": "every change, node by node",
    "prepare_remote": "remote cluster server, certificates, cross-cluster API key",
    "stage_local": "the remote's CA and client TLS on the local nodes",
    "stage_credentials": "roles' remote_indices, API key into every keystore (work still running)",
    "cross_cluster_outage": "stop the work, reconnect, verify, resume: the outage, in one flow run",
    "stop_cross_cluster_ops": "stop the work that uses the alias (the outage starts)",
    "reconnect": "alias removed, credentials reloaded, alias re-added on the remote cluster port",
    "verify": "every local node checks the link",
    "resume_cross_cluster_ops": "resume exactly the work that was stopped (the outage ends)",
    "rollback": "back to the certificate model",
    "retire_certificate_trust": "retire certificate trust (after approval)",
}
# Journal step actions (`<phase>/<action>/<target>`) in words.
ACTIONS = {
    "p12": "certificate (PKCS#12) to", "ca": "CA file to", "yml": "elasticsearch.yml of",
    "keystore": "keystore of", "restart": "restart", "api-key": "cross-cluster API key for",
    "list": "record the work using", "stop": "stop the work using", "roles": "remote_indices for the roles of",
    "save-settings": "save the settings of alias", "remove-alias": "remove alias", "reload": "reload secure settings on",
    "readd": "re-add alias", "resume": "resume the work using", "null": "remove alias",
    "restore": "restore alias", "undo": "undo",
}
SKIPPED_JOURNAL_PHASES = ("summary", "plan", "phase")
OUTAGE_START = "stop_cross_cluster_ops/stop/"
ROLLBACK_STOP = "rollback/stop/"
RESUMES = ("resume_cross_cluster_ops/resume/", "rollback/resume/")

_BEGIN = re.compile(r"^Beginning (sub)?flow run '(?P<run>.+)' for flow '(?P<flow>.+)'$")
_FINISHED = re.compile(r"^Finished in state (?P<state>\w+)\(", re.DOTALL)
_RETRY = re.compile(r"^Task run failed with (?:exception|state): (?P<error>.*) - Retry (?P<n>\d+)/(?P<of>\d+) "
                    r"will start (?P<when>.*)$", re.DOTALL)
_TASK_FAILED = re.compile(r"^Task run failed with (?:exception|state): (?P<error>.*?)(?: - Retries are exhausted)?$",
                          re.DOTALL)
_FINISHED_WITH = re.compile(r"^Finished in state \w+\((?P<message>.+)\)$", re.DOTALL)
_FLOW_FAILED = re.compile(r"^Encountered exception during execution: (?P<error>.*)$", re.DOTALL)
_SERVER = re.compile(r"^Starting temporary server on (?P<url>\S+)")
_PAUSED = re.compile(r"^Pausing flow|^Suspending flow")
_ENGINE = re.compile(r"^(Created (task|flow|subflow) run|Executing |Running |Finished in state|Beginning |"
                     r"Task run failed|Encountered exception|Stopping temporary server|Received |Crash detected)")


def exception_text(text: str) -> str:
    """`VerificationError('verification ... failed')` (how Prefect logs an exception) -> its message."""
    match = re.fullmatch(r"(?P<kind>[A-Za-z_][\w.]*)\((?P<args>.*)\)", text.strip(), re.DOTALL)
    if not match:
        return text.strip()
    try:
        args = ast.literal_eval(f"({match['args']},)") if match["args"].strip() else ()
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip()
    first = next((a for a in args if isinstance(a, str) and a), None)
    return first if first is not None else match["kind"]


def state_text(text: str) -> str:
    """`'Task run encountered an exception VerificationError: ...'` (a failed state's message, as
    Prefect logs it) -> the exception's message."""
    try:
        message = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        message = text
    if not isinstance(message, str):
        return str(message)
    message = re.sub(r"^(Task|Flow) run encountered an exception:? ", "", message)
    return re.sub(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|RolledBack): ", "", message, count=1)


def phase_of(flow_name: str | None) -> str | None:
    if not flow_name or flow_name in PARENT_FLOWS:
        return None
    return flow_name.replace("-", "_")


def _clock(created: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(created))


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 120 else f"{int(value // 60)}m{int(value % 60):02d}s"


@dataclass
class Phase:
    name: str
    started: float
    ended: float | None = None
    state: str = "running"       # running | done | failed


@dataclass
class Progress:
    """The run as the display shows it, changed only by events (records)."""

    phases: dict[str, Phase] = field(default_factory=dict)
    current: str | None = None
    step: str = ""
    waits: dict[int, str] = field(default_factory=dict)    # thread -> what it waits for
    outage_started: float | None = None
    outage_ended: float | None = None
    stopped: set[str] = field(default_factory=set)
    flow_run_id: str | None = None
    problems: list[str] = field(default_factory=list)
    status: str = "starting"


class Display:
    """Where events end up. `say` lines stay; `show` text is the changing part (a line when no live view)."""

    def __init__(self, console, progress: Progress, live: bool, steps: bool = True) -> None:
        self.console, self.progress, self.live_mode, self.steps = console, progress, live, steps
        self._live = None

    def start(self) -> None:
        if self.live_mode:
            from rich.live import Live  # noqa: PLC0415

            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def say(self, text: str, created: float, style: str = "") -> None:
        """A line that stays (a phase done, a problem, the outage)."""
        if self.live_mode:
            self.console.print(text, style=style or None, highlight=False, markup=False)
        else:
            self.console.print(f"{_clock(created)} {text}", style=style or None, highlight=False, markup=False,
                               soft_wrap=True)

    def show(self, text: str, created: float) -> None:
        """A line that only matters now (a step, a wait): the live view shows it in place."""
        if self.live_mode:
            if self._live is not None:
                self._live.refresh()
        elif self.steps:  # with --verbose the log's own lines say it
            self.console.print(f"{_clock(created)}   {text}", highlight=False, markup=False, soft_wrap=True,
                               style="dim")

    def __rich__(self):
        from rich.console import Group  # noqa: PLC0415
        from rich.spinner import Spinner  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        p, now = self.progress, time.time()
        phase = p.phases.get(p.current) if p.current else None
        head = Text()
        if phase is not None and phase.state == "running":
            head.append(f"{phase.name} ", style="bold")
            head.append(_seconds(now - phase.started), style="dim")
            head.append(f"  {PHASES.get(phase.name, '')}", style="dim")
        else:
            head.append(p.status, style="bold")
        if p.outage_started is not None and p.outage_ended is None:
            head.append(f"   outage {_seconds(now - p.outage_started)}", style="bold yellow")
        lines = [Spinner("dots", text=head)]
        if p.step:
            lines.append(Text(f"  {p.step}"))
        for what in list(p.waits.values())[-4:]:
            lines.append(Text(f"  waiting for {what}", style="cyan"))
        return Group(*lines)


class ProgressHandler(logging.Handler):
    """Turns the run's records into progress events."""

    def __init__(self, display: Display) -> None:
        super().__init__(logging.DEBUG)
        self.display = display
        self.progress = display.progress
        self._shown: set[str] = set()
        self._state_lock = threading.RLock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self._state_lock:
                self._event(record)
        except Exception:  # noqa: BLE001 - the display must never break the run
            self.handleError(record)

    # -------------------------------------------------------------------------------- events
    def _event(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(RUN_LOGGERS) and record.name != "prefect":
            return
        data = record.__dict__
        if "esremote_journal" in data:
            return self._journal(data["esremote_journal"], record.created)
        if "esremote_phase" in data:
            return self._phase_event(data["esremote_phase"], record.created)
        if "esremote_wait" in data:
            self.progress.waits[record.thread] = data["esremote_wait"]
            return self.display.show(f"waiting for {data['esremote_wait']}", record.created)
        if "esremote_wait_over" in data:
            self.progress.waits.pop(record.thread, None)
            return self.display.show("", record.created) if self.display.live_mode else None
        message = record.getMessage()
        if record.name == "prefect":
            server = _SERVER.match(message)
            if server:
                self.progress.status = "starting a temporary Prefect server"
                self.display.show(f"starting a temporary Prefect server ({server['url']})", record.created)
            return None
        if "flow_name" in data and "task_run_id" not in data:
            return self._flow(record, message)
        if "task_run_id" in data:
            return self._task(record, message)
        return self._note(record, message)

    def _flow(self, record: logging.LogRecord, message: str) -> None:
        p, created = self.progress, record.created
        flow_name = record.__dict__.get("flow_name")
        phase = phase_of(flow_name)
        begin = _BEGIN.match(message)
        if begin:
            if phase is None:
                p.flow_run_id = p.flow_run_id or record.__dict__.get("flow_run_id")
                p.status = "running"
                return None
            return self._phase_began(phase, created, PHASES.get(phase, flow_name))
        finished = _FINISHED.match(message)
        if finished:
            if phase is None or phase not in p.phases:
                return None
            return self._phase_ended(phase, created, finished["state"])
        failed = _FLOW_FAILED.match(message)
        if failed and phase is not None:  # the parent's own failure is the summary's message
            return self._problem(exception_text(failed["error"]), created)
        if message.startswith("View at "):
            if phase is None:
                self.display.say(f"the run in the Prefect UI: {message.removeprefix('View at ').strip()}", created)
            return None
        if _PAUSED.match(message):
            p.step = "paused: waiting for an approval in the Prefect UI"
            return self.display.say("⏸ waiting for an approval in the Prefect UI", created, style="bold yellow")
        return self._note(record, message)

    def _phase_began(self, phase: str, created: float, what: str) -> None:
        p = self.progress
        p.phases[phase] = Phase(phase, created)
        p.current, p.step = phase, ""
        self.display.say(f"▶ {phase}: {what}", created, style="bold")

    def _phase_ended(self, phase: str, created: float, state: str) -> None:
        p = self.progress
        entry = p.phases[phase]
        entry.ended = created
        entry.state = "done" if state == "Completed" else "failed"
        took = _seconds(created - entry.started)
        p.step, p.current, p.status = "", None, "working"
        if entry.state == "done":
            self.display.say(f"✓ {phase} ({took})", created, style="green")
        else:
            self.display.say(f"✗ {phase} {state.lower()} ({took})", created, style="bold red")

    def _phase_event(self, event: dict, created: float) -> None:
        """A phase inside one flow run (the outage's): what a subflow's begin and end would say."""
        phase = event["phase"]
        if event["event"] == "begin":
            return self._phase_began(phase, created, PHASES.get(phase, phase))
        if phase in self.progress.phases:
            self._phase_ended(phase, created, "Completed" if event["event"] == "end" else "Failed")
        return None

    def _task(self, record: logging.LogRecord, message: str) -> None:
        created, task = record.created, record.__dict__.get("task_run_name", "task")
        retry = _RETRY.match(message)
        if retry:
            return self.display.say(f"↻ {task}: retry {retry['n']}/{retry['of']} ({retry['when']}) after "
                                    f"{exception_text(retry['error'])}", created, style="yellow")
        failed = _TASK_FAILED.match(message)
        if failed and record.levelno >= logging.ERROR:
            return self._problem(exception_text(failed["error"]), created, task=task)
        finished = _FINISHED_WITH.match(message)
        if finished and record.levelno >= logging.ERROR:  # a failure not retried logs only its final state
            return self._problem(state_text(finished["message"]), created, task=task)
        return self._note(record, message)

    def _note(self, record: logging.LogRecord, message: str) -> None:
        """esremote's own messages: warnings and errors stay; an info is the step's detail."""
        if _ENGINE.match(message) or not record.name.startswith(RUN_LOGGERS):
            return None
        if record.levelno >= logging.ERROR:
            return self._problem(message, record.created)
        if record.levelno >= logging.WARNING:
            return self.display.say(f"! {message}", record.created, style="yellow")
        if record.levelno >= logging.INFO:
            task = record.__dict__.get("task_run_name")
            self.progress.step = f"{task}: {message}" if task else message
            self.display.show(self.progress.step, record.created)
        return None

    def _problem(self, text: str, created: float, task: str | None = None) -> None:
        if not text or text in self._shown:
            return None
        self._shown.add(text)
        self.progress.problems.append(text)
        where = f"{task}: " if task else ""
        self.display.say(f"✗ {where}{text}", created, style="red")
        return None

    def replay(self, entries) -> None:
        """What an earlier attempt of the run left in its journal (a resumed run's outage began there)."""
        from datetime import datetime  # noqa: PLC0415

        for entry in entries:
            self._outage(entry.kind, entry.step, datetime.fromisoformat(entry.time).timestamp(), quiet=True)

    def _outage(self, kind: str, step: str, created: float, quiet: bool = False) -> None:
        p = self.progress
        if kind == "intent" and (step.startswith(OUTAGE_START) or step.startswith(ROLLBACK_STOP)):
            if not p.stopped and step.startswith(OUTAGE_START):
                p.outage_started, p.outage_ended = created, None
                if not quiet:
                    self.display.say("⚠ outage started: cross-cluster work is being stopped", created,
                                     style="bold yellow")
            if p.outage_started is not None and p.outage_ended is None:
                p.stopped.add(step.rsplit("/", 1)[-1])
        if kind == "done" and step.startswith(RESUMES) and p.stopped:
            p.stopped.discard(step.rsplit("/", 1)[-1])
            if not p.stopped and p.outage_started is not None:
                p.outage_ended = created
                if not quiet:
                    self.display.say(f"✓ outage over: all work resumed after "
                                     f"{_seconds(created - p.outage_started)}", created, style="bold green")

    def _journal(self, entry: dict[str, Any], created: float) -> None:
        p, step, kind = self.progress, entry["step"], entry["kind"]
        phase, _, rest = step.partition("/")
        self._outage(kind, step, created)
        if kind != "intent" or phase in SKIPPED_JOURNAL_PHASES or not rest:
            return None
        action, _, target = rest.partition("/")
        words = ACTIONS.get(action, action)
        p.step = f"{words} {target}".strip()
        self.display.show(p.step, created)
        return None


class RunOutput:
    """The terminal and the log file of one run (see the module's docstring)."""

    def __init__(self, run_dir: Path, *, verbose: bool = False, console=None) -> None:
        from rich.console import Console  # noqa: PLC0415

        self.run_dir = Path(run_dir)
        self.log_file = self.run_dir / LOG_FILE
        self.verbose = verbose
        self.console = console or Console(stderr=True, highlight=False)
        self.progress = Progress()
        live = self.console.is_terminal and not verbose
        self.display = Display(self.console, self.progress, live=live, steps=not verbose)
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self._detached: list[tuple[logging.Logger, logging.Handler]] = []
        self._levels: dict[str, int] = {}

    @property
    def flow_run_id(self) -> str | None:
        return self.progress.flow_run_id

    def __enter__(self) -> RunOutput:
        from prefect.logging.configuration import ensure_logging_setup  # noqa: PLC0415

        from esremote.redact import RedactingFilter, default_redactor  # noqa: PLC0415

        ensure_logging_setup()  # Prefect's handlers exist now, so they can be set aside
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        file_handler = logging.FileHandler(self.log_file, mode="a", encoding="utf-8")
        file_handler.setFormatter(_file_formatter())
        progress_handler = ProgressHandler(self.display)
        from esremote.journal import Journal  # noqa: PLC0415

        progress_handler.replay(Journal(self.run_dir).entries())
        for handler in (file_handler, progress_handler):
            handler.addFilter(RedactingFilter(default_redactor))
        root = logging.getLogger()
        self._attach(root, file_handler)
        self._attach(root, progress_handler)
        for name in DETACHED_LOGGERS:
            self._attach(logging.getLogger(name), file_handler)
        for name in EVENT_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        if not self.verbose:
            self._quiet_consoles()
        self.display.start()
        return self

    def __exit__(self, *exc) -> None:
        """The display stops. The log file keeps what comes until the process ends, and the terminal
        stays quiet (Prefect's temporary server says goodbye at exit); `close()` undoes it all."""
        self.display.stop()
        for logger, handler in list(self._handlers):
            if isinstance(handler, ProgressHandler):
                logger.removeHandler(handler)
                self._handlers.remove((logger, handler))

    def close(self) -> None:
        """Everything as it was before `__enter__` (for callers that go on after the run)."""
        self.display.stop()
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        for logger, handler in self._detached:
            logger.addHandler(handler)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        for handler in {id(h): h for _, h in self._handlers}.values():
            handler.close()
        self._handlers.clear()
        self._detached.clear()

    def _attach(self, logger: logging.Logger, handler: logging.Handler) -> None:
        logger.addHandler(handler)
        self._handlers.append((logger, handler))

    def _quiet_consoles(self) -> None:
        """Take every handler that writes to the terminal off its logger (Prefect's console handler on
        the root logger, the debug handler of `prefect._internal`, uvicorn's); they come back on exit."""
        loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                                           if isinstance(logging.Logger.manager.loggerDict[name], logging.Logger)]
        for logger in loggers:
            for handler in list(logger.handlers):
                if _writes_to_terminal(handler):
                    logger.removeHandler(handler)
                    self._detached.append((logger, handler))

    def say(self, text: str, style: str = "") -> None:
        self.display.say(text, time.time(), style=style)


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.FileHandler):
        return False
    if type(handler).__name__ == "PrefectConsoleHandler":
        return True
    stream = getattr(handler, "stream", None)
    return stream is not None and stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def _file_formatter() -> logging.Formatter:
    try:
        from prefect.logging.formatters import PrefectFormatter  # noqa: PLC0415

        return PrefectFormatter(
            format=FILE_FORMAT, datefmt=FILE_DATEFMT,
            flow_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
            task_run_fmt="%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s")
    except Exception:  # noqa: BLE001 - a plain format is as good for a file
        return logging.Formatter(FILE_FORMAT, datefmt=FILE_DATEFMT)


# ------------------------------------------------------------------------------ the commands' side

OUTPUT_FORMATS = ("text", "json")


def check_output(output: str) -> str:
    from esremote.errors import ConfigError  # noqa: PLC0415

    if output not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {output!r}: use text or json")
    return output


def run_in_terminal(fn, params, command: str, *, verbose: bool, output: str):
    """Run `fn(params)` (a flow's entry point returning a Summary) behind the progress display, then
    print its summary: text, or JSON alone on stdout. Returns (summary, the RunOutput)."""
    from esremote.journal import Journal, new_run_id  # noqa: PLC0415

    if params.run_id is None:
        params = params.model_copy(update={"run_id": new_run_id()})
    run_dir = Journal._run_dir(params.run_id, params.state_dir)
    with RunOutput(run_dir, verbose=verbose) as out:
        out.say(f"esremote {command}: run {params.run_id}; full log in {out.log_file}")
        summary = fn(params)
    print_summary(summary, out, output)
    return summary, out


def print_summary(summary, out: RunOutput, output: str) -> None:
    import json  # noqa: PLC0415

    import typer  # noqa: PLC0415

    from esremote.journal import Journal  # noqa: PLC0415

    summary.measure_outage(Journal(Path(summary.journal_dir or out.run_dir)))
    url = prefect_run_url(out.flow_run_id)
    if output == "json":
        data = {**summary.to_dict(), "outage_text": summary.outage_text, "exit_code": summary.exit_code,
                "log_file": str(out.log_file), "prefect_url": url}
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    lines = [summary.to_text(), f"log: {out.log_file}"]
    if url:
        lines.append(f"Prefect: {url}")
    typer.echo("\n".join(lines))


def prefect_run_url(flow_run_id: str | None) -> str | None:
    """The run's page in the Prefect UI, when the run reported to a server that outlives it."""
    if not flow_run_id:
        return None
    from esremote.tasks.runtime import prefect_api_configured  # noqa: PLC0415

    if not prefect_api_configured():
        return None
    try:
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL  # noqa: PLC0415

        ui = PREFECT_UI_URL.value() or str(PREFECT_API_URL.value() or "").removesuffix("/").removesuffix("/api")
    except Exception:  # noqa: BLE001 - no URL is better than a wrong one
        return None
    return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None
