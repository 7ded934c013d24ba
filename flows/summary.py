"""The outcome of a migration run, for the CLI, the final artifact and the exit code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from esremote.journal import Journal, Outage, measured_outage

# out-of-window: stopped before a disruptive phase because the rest did not fit the maintenance
# window; busy: another run holds the cluster pair and this one was told not to wait. Neither
# stopped any cross-cluster work.
Status = Literal["planned", "migrated", "rolled-back", "failed", "rollback-failed", "out-of-window", "busy"]
EXIT_CODES = {"planned": 0, "migrated": 0, "rolled-back": 3, "failed": 1, "rollback-failed": 1,
              "out-of-window": 4, "busy": 5}


@dataclass
class Summary:
    run_id: str
    status: Status
    aliases: list[str]
    message: str = ""
    remote_info_before: dict[str, Any] = field(default_factory=dict)
    remote_info_after: dict[str, Any] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)       # phases completed, in order
    plan_file: str = ""
    journal_dir: str = ""
    # The measured outage (esremote.journal.Outage.to_dict()): first work stopped to all work
    # resumed, from the journal's timestamps; None when no work was stopped.
    outage: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def measure_outage(self, journal: Journal) -> Summary:
        """Set `outage` from the run's journal (the journal is the truth, whoever wrote the summary)."""
        outage = measured_outage(journal)
        self.outage = outage.to_dict() if outage is not None else None
        return self

    @property
    def outage_text(self) -> str:
        if not self.outage:
            return "none (no cross-cluster work was stopped)"
        return Outage(self.outage["started"], self.outage.get("ended"), self.outage.get("expected", "")).describe()

    def to_markdown(self) -> str:
        lines = [f"# Migration {self.status}: {', '.join(self.aliases)}", "",
                 f"- run id: `{self.run_id}`", f"- phases done: {', '.join(self.phases) or 'none'}"]
        if self.message:
            lines.append(f"- {self.message}")
        lines.append(f"- measured outage: {self.outage_text}")
        for title, info in (("before", self.remote_info_before), ("after", self.remote_info_after)):
            lines += ["", f"## `_remote/info` {title}", "", "```json", json.dumps(info, indent=2, sort_keys=True),
                      "```"]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        lines = [f"run id: {self.run_id}", f"status: {self.status}", f"aliases: {', '.join(self.aliases)}",
                 f"phases done: {', '.join(self.phases) or 'none'}"]
        if self.message:
            lines.append(f"message: {self.message}")
        lines.append(f"outage: {self.outage_text}")
        for alias in self.aliases:
            before = _link(self.remote_info_before.get(alias))
            after = _link(self.remote_info_after.get(alias))
            lines.append(f"{alias}: before {before}; after {after}")
        if self.plan_file:
            lines.append(f"plan: {self.plan_file}")
        if self.journal_dir:
            lines.append(f"journal: {self.journal_dir}")
        return "\n".join(lines)


def _link(info: dict[str, Any] | None) -> str:
    if not info:
        return "not defined"
    model = "API key" if "cluster_credentials" in info else "certificate"
    address = info.get("proxy_address") or ",".join(info.get("seeds") or [])
    return f"{'connected' if info.get('connected') else 'NOT connected'} ({model} model, {info.get('mode')} {address})"
