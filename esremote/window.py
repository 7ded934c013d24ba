"""The maintenance window: does the rest of the migration fit in the time left?

A run may carry the window's end (`window_end`) or its length from the run's scheduled start
(`window_minutes`). Before each disruptive phase (CHECKPOINTS) the parent flow asks `check` whether
what is left of the plan, from that phase to the end of the outage, fits in the time left; when it
does not, the run stops there, before it disrupts anything. There is no check inside the outage
(stop_cross_cluster_ops .. resume_cross_cluster_ops): once work is stopped, the run finishes or rolls
back, whatever the clock says, because stopping half-way would leave work stopped and the alias
half-moved.

The estimate is the plan's changes priced one by one: a node restart at the longest restart this run
has measured so far (journal entries `*/restart/*` with their `seconds`), or `DEFAULT_SECONDS` before
any was measured; a secure-settings reload, a probe and any other single step at their defaults.
Steps that run in parallel are still added up, so the estimate errs long.

    end = window_end(params, scheduled_start)       # None: no window, no check
    result = check("stage_local", plan_changes, journal, end)
    result.fits, result.message, result.to_markdown()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from esremote.plan import OUTAGE_PHASES, PHASES

# Phases before which the window is checked, and every phase the rest of the migration runs (the
# plan's). The last checkpoint is before the credentials are staged: from there on the run goes
# through the outage without looking at the window (stage_credentials leaves keystores that only a
# finished migration or a rollback may leave).
CHECKPOINTS = ("prepare_remote", "stage_local", "stage_credentials")
OUTAGE = OUTAGE_PHASES

# Seconds per change kind when this run has measured nothing better. A restart is a whole rolling
# step of one node: shards moved off, stop, start, rejoin, cluster green again.
DEFAULT_SECONDS: dict[str, float] = {"restart": 120.0, "reload": 15.0, "probe": 10.0}
DEFAULT_STEP_SECONDS = 3.0     # any other change: one API call, a file, a keystore entry, a yml edit
PHASE_OVERHEAD_SECONDS = 5.0   # a phase's own bookkeeping: its subflow, reports, the checks after it


def window_end(params: Any, scheduled_start: datetime | None) -> datetime | None:
    """The window's end: `params.window_end`, or the scheduled start plus `params.window_minutes`
    (the flow run's expected start time; now when it has none). None when the run has no window."""
    if params.window_end is not None:
        return _aware(params.window_end)
    if params.window_minutes is not None:
        start = _aware(scheduled_start) if scheduled_start is not None else datetime.now(timezone.utc)
        return start + timedelta(minutes=params.window_minutes)
    return None


def measured_restart_seconds(journal: Any) -> float | None:
    """The longest node restart this run has done so far (None before the first one)."""
    seconds = [float(e.data["seconds"]) for e in journal.entries("done")
               if "/restart/" in e.step and isinstance(e.data.get("seconds"), (int, float)) and e.data["seconds"] > 0]
    return max(seconds) if seconds else None


def phase_seconds(changes: list[dict[str, Any]], restart_s: float) -> dict[str, float]:
    """Estimated seconds of each phase of the plan (`Plan.to_dict()["changes"]`)."""
    out = {phase: PHASE_OVERHEAD_SECONDS for phase in PHASES}
    for change in changes:
        phase, kind = change.get("phase"), change.get("kind")
        if phase not in out:
            continue
        out[phase] += restart_s if kind == "restart" else DEFAULT_SECONDS.get(kind, DEFAULT_STEP_SECONDS)
    return out


@dataclass
class WindowCheck:
    """The answer before `phase`: time left in the window against what the rest needs."""

    phase: str
    now: datetime
    end: datetime
    breakdown: dict[str, float]          # phase -> estimated seconds, from `phase` to the end of the outage
    restart_s: float
    restart_measured: bool
    restarts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def needed_s(self) -> float:
        return sum(self.breakdown.values())

    @property
    def left_s(self) -> float:
        return (self.end - self.now).total_seconds()

    @property
    def fits(self) -> bool:
        return self.needed_s <= self.left_s

    @property
    def message(self) -> str:
        left = _duration(self.left_s) if self.left_s > 0 else f"none (it ended {_duration(-self.left_s)} ago)"
        head = (f"maintenance window check before {self.phase}: {left} left until "
                f"{self.end.isoformat(timespec='seconds')}; the rest of the migration needs about "
                f"{_duration(self.needed_s)} ({self.restarts} restart(s) at {_duration(self.restart_s)} each, "
                f"{'measured in this run' if self.restart_measured else 'the default, none measured yet'})")
        if self.fits:
            return head + ": it fits"
        return head + f": it does not fit, so the run stops before {self.phase}"

    def to_markdown(self) -> str:
        verdict = "fits" if self.fits else f"does not fit: stopped before `{self.phase}`"
        lines = [f"# Maintenance window: {verdict}", "",
                 f"- checked before: `{self.phase}` at {self.now.isoformat(timespec='seconds')}",
                 f"- window ends: {self.end.isoformat(timespec='seconds')} "
                 f"({_duration(max(self.left_s, 0))} left)",
                 f"- the rest needs about {_duration(self.needed_s)}",
                 f"- a node restart is counted as {_duration(self.restart_s)} "
                 f"({'the longest measured in this run' if self.restart_measured else 'default: none measured yet'})"]
        lines += [f"- {note}" for note in self.notes]
        lines += ["", "| phase | estimate |", "|---|---|"]
        lines += [f"| {phase} | {_duration(seconds)} |" for phase, seconds in self.breakdown.items()]
        return "\n".join(lines) + "\n"


def check(phase: str, changes: list[dict[str, Any]], journal: Any, end: datetime,
          now: datetime | None = None) -> WindowCheck:
    """Whether the plan from `phase` to the end of the outage fits before `end`. `phase` must be a
    checkpoint: inside the outage nothing is checked (see the module docstring)."""
    if phase not in CHECKPOINTS:
        raise ValueError(f"the window is only checked before {', '.join(CHECKPOINTS)}, not before {phase}")
    measured = measured_restart_seconds(journal)
    restart_s = measured if measured is not None else DEFAULT_SECONDS["restart"]
    rest = PHASES[PHASES.index(phase):]
    estimate = phase_seconds(changes, restart_s)
    restarts = sum(1 for c in changes if c.get("kind") == "restart" and c.get("phase") in rest)
    return WindowCheck(phase=phase, now=now or datetime.now(timezone.utc), end=_aware(end),
                       breakdown={p: estimate[p] for p in rest}, restart_s=restart_s,
                       restart_measured=measured is not None, restarts=restarts)


def _aware(moment: datetime) -> datetime:
    """A time with a zone; a naive one is taken as UTC (Prefect's own times are UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 90:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
