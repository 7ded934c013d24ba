"""The durable record of a migration run: what will change, the original, and what is done.

Each run has a directory `<state dir>/runs/<run id>/` on the orchestrator:

    journal.jsonl     one JSON object per line, appended and fsynced before the change it describes
    originals/        bytes of files as they were before the run (mode 0600)
    run.json          the run's parameters (no secrets), written once

Rollback and resume read the journal, never process memory: an intent without a matching `done`
means the change may or may not have happened, and the original is there to restore either way.
Step ids are stable names (`reconnect/keystore/local-0/my_remote`), so a re-run can ask
`is_done(step)` and skip.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as _random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from esremote.errors import ConfigError
from esremote.files import atomic_write

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Every entry is also a DEBUG record here (kind and step only, never data), so a terminal's progress
# display and the run's log file can follow the run; off unless someone lowers this logger's level.
_LOG = logging.getLogger("esremote.journal")


def default_state_dir() -> Path:
    """`$ESREMOTE_STATE_DIR`, else `$XDG_STATE_HOME/esremote`, else `~/.local/state/esremote`."""
    if os.environ.get("ESREMOTE_STATE_DIR"):
        return Path(os.environ["ESREMOTE_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "esremote"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + _random.token_hex(3)


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str            # "intent" | "done" | "note"
    step: str
    time: str
    data: dict[str, Any] = field(default_factory=dict)


class Journal:
    """Append-only journal of one run. Safe to reopen after the orchestrator died."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / "journal.jsonl"
        # Tasks of many nodes append at once: a lock keeps `seq` unique and in file order. The
        # two indexes keep `is_done` and `first_intent`, which every step asks, from scanning the
        # whole journal (a phase on N nodes would cost N^2).
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._done: set[str] = set()
        self._first_intents: dict[str, Entry] = {}
        for entry in self._read():
            self._index(entry)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, run_id: str | None = None, *, state_dir: Path | None = None,
               params: dict[str, Any] | None = None) -> "Journal":
        run_id = run_id or new_run_id()
        run_dir = cls._run_dir(run_id, state_dir)
        (run_dir / "originals").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(run_dir, 0o700)
        meta = run_dir / "run.json"
        if not meta.exists():
            atomic_write(meta, json.dumps({"run_id": run_id, "created": _now(), "params": params or {}},
                                          indent=2, sort_keys=True).encode(), mode=0o600)
        return cls(run_dir)

    @classmethod
    def open(cls, run_id: str, *, state_dir: Path | None = None) -> "Journal":
        run_dir = cls._run_dir(run_id, state_dir)
        if not (run_dir / "run.json").exists():
            raise ConfigError(f"no run {run_id!r} in {run_dir.parent}: check the run id "
                              "(`ls` that directory) or set ESREMOTE_STATE_DIR")
        return cls(run_dir)

    @staticmethod
    def _run_dir(run_id: str, state_dir: Path | None) -> Path:
        if not _RUN_ID.match(run_id):
            raise ConfigError(f"run id {run_id!r} is not valid: letters, digits, '.', '_' and '-' only")
        return (state_dir or default_state_dir()) / "runs" / run_id

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def params(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())["params"]

    # -- writing -------------------------------------------------------------------------------
    def intent(self, step: str, **data: Any) -> Entry:
        """Record what is about to change (and its original) before changing it."""
        return self._append("intent", step, data)

    def done(self, step: str, **data: Any) -> Entry:
        return self._append("done", step, data)

    def note(self, step: str, **data: Any) -> Entry:
        return self._append("note", step, data)

    def save_original(self, key: str, content: bytes) -> str:
        """Keep the bytes of a file as it was before the run; the first save of a key wins."""
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        target = self.run_dir / "originals" / name
        if not target.exists():
            atomic_write(target, content, mode=0o600)
        return name

    def original(self, name: str) -> bytes:
        return (self.run_dir / "originals" / name).read_bytes()

    def _append(self, kind: str, step: str, data: dict[str, Any]) -> Entry:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            with self._lock:  # the line and its seq in order; the fsync (the slow part) outside
                entry = Entry(seq=len(self._entries), kind=kind, step=step, time=_now(), data=data)
                line = json.dumps({"seq": entry.seq, "kind": kind, "step": step, "time": entry.time, "data": data},
                                  sort_keys=True, default=str)
                os.write(fd, (line + "\n").encode())
                self._index(entry)
            os.fsync(fd)  # returns once this line (and any written before it) is on disk
        finally:
            os.close(fd)
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("journal: %s %s", kind, step,
                       extra={"esremote_journal": {"run_id": self.run_id, "kind": kind, "step": step,
                                                   "time": entry.time}})
        return entry

    def _index(self, entry: Entry) -> None:
        self._entries.append(entry)
        if entry.kind == "done":
            self._done.add(entry.step)
        elif entry.kind == "intent":
            self._first_intents.setdefault(entry.step, entry)

    # -- reading -------------------------------------------------------------------------------
    def _read(self) -> Iterator[Entry]:
        if not self.path.exists():
            return
        with self.path.open() as fh:
            for raw in fh:
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError:
                    break  # a torn last line from a crash mid-write: everything before it stands
                yield Entry(obj["seq"], obj["kind"], obj["step"], obj["time"], obj.get("data", {}))

    def entries(self, kind: str | None = None, prefix: str = "") -> list[Entry]:
        return [e for e in self._entries if (kind is None or e.kind == kind) and e.step.startswith(prefix)]

    def is_done(self, step: str) -> bool:
        return step in self._done

    def first_intent(self, step: str) -> Entry | None:
        """The first intent of a step holds the true original, even after retries."""
        return self._first_intents.get(step)

    def started_steps(self, prefix: str = "") -> list[str]:
        """Steps with an intent, in the order they were first started (rollback undoes them in reverse)."""
        seen: dict[str, None] = {}
        for e in self._entries:
            if e.kind == "intent" and e.step.startswith(prefix):
                seen.setdefault(e.step)
        return list(seen)


# -- the measured outage ------------------------------------------------------------------------

OUTAGE_START = "stop_cross_cluster_ops/stop/"
ROLLBACK_STOP = "rollback/stop/"
RESUME_STEPS = ("resume_cross_cluster_ops/resume/", "rollback/resume/")


@dataclass(frozen=True)
class Outage:
    """The outage a run caused, as its journal timed it: from the first work stopped (the intent of
    the first stop step) to all work resumed (the `done` of the last resume step, after the migration
    or its rollback). `ended` is None while some alias's work is still stopped."""

    started: str
    ended: str | None
    expected: str = ""          # the plan's estimate, when the run has a plan

    @property
    def seconds(self) -> float | None:
        if self.ended is None:
            return None
        return round((_parse(self.ended) - _parse(self.started)).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        return {"started": self.started, "ended": self.ended, "seconds": self.seconds, "expected": self.expected}

    def describe(self) -> str:
        start = _clock(self.started)
        if self.ended is None:
            text = f"not over: work stopped at {start} and not resumed yet"
        else:
            text = f"{self.seconds:.1f}s (first work stopped {start}, all work resumed {_clock(self.ended)})"
        return text + (f"; the plan expected {self.expected}" if self.expected else "")


def measured_outage(journal: Journal) -> Outage | None:
    """The run's last outage window (a run that was later rolled back by hand has two: the migration's
    and the rollback's), or None when no work was ever stopped. Entries are in the order they were
    written; per alias, work counts as stopped from its stop step until a resume step is done."""
    stopped: set[str] = set()
    started: str | None = None
    windows: list[tuple[str, str | None]] = []
    for entry in journal.entries():
        step = entry.step
        if entry.kind == "intent" and (step.startswith(OUTAGE_START)
                                       or (step.startswith(ROLLBACK_STOP) and entry.data.get("calls"))):
            if not stopped:
                started = entry.time
            stopped.add(step.rsplit("/", 1)[-1])
        elif entry.kind == "done" and step.startswith(RESUME_STEPS) and stopped:
            stopped.discard(step.rsplit("/", 1)[-1])
            if not stopped and started is not None:
                windows.append((started, entry.time))
                started = None
    if started is not None:
        windows.append((started, None))
    if not windows:
        return None
    return Outage(*windows[-1], expected=_expected_outage(journal.run_dir))


def _expected_outage(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "plan.json").read_text())["outage"]["estimate"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def _clock(stamp: str) -> str:
    """`20:59:45.034 UTC`"""
    return _parse(stamp).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
