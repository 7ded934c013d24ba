"""What a verification found: one `Check` per thing asked (per node where a node answers only for
itself), gathered in a `VerifyReport`; `VerificationError` carries a failed report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esremote.errors import ClusterError
from esremote.verify.causes import Cause

__all__ = ["Check", "VerificationError", "VerifyReport"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    cause: Cause | None = None
    evidence: str = ""
    node: str | None = None       # the local node that answered, for checks made per node
    skipped: bool = False         # the node was not asked (ok stays True: nothing is wrong with it)

    def __str__(self) -> str:
        verdict = "skipped" if self.skipped else "ok" if self.ok else "FAILED"
        text = f"{self.name}: {verdict}: {self.detail}"
        if self.cause is not None:
            text += f"; likely cause (troubleshooting: {self.cause.title}): {self.cause.fix}"
        if self.evidence:
            text += f"; evidence: {_first_lines(self.evidence)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        cause = None if self.cause is None else {"key": self.cause.key, "title": self.cause.title,
                                                 "fix": self.cause.fix}
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "node": self.node,
                "detail": self.detail, "evidence": self.evidence, "cause": cause}


@dataclass
class VerifyReport:
    alias: str
    cluster: str
    model: str                                   # "api_key" | "certificate"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def failed_nodes(self) -> list[str]:
        return list(dict.fromkeys(c.node for c in self.failed if c.node))

    @property
    def skipped_nodes(self) -> list[str]:
        return [c.node for c in self.checks if c.skipped and c.node]

    def raise_if_failed(self) -> VerifyReport:
        if not self.ok:
            raise VerificationError(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """For artifacts and the journal."""
        return {"alias": self.alias, "cluster": self.cluster, "model": self.model, "ok": self.ok,
                "failed_nodes": self.failed_nodes, "skipped_nodes": self.skipped_nodes,
                "checks": [c.to_dict() for c in self.checks]}


class VerificationError(ClusterError):
    """A verification check failed; `check` is the first failed one, `report` holds them all."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.check = report.failed[0]
        self.cause = self.check.cause
        where = f" on node(s) {', '.join(report.failed_nodes)}" if report.failed_nodes else ""
        super().__init__(f"verification of alias {report.alias} ({report.model.replace('_', '-')} model) failed"
                         f"{where}: " + "; ".join(str(c) for c in report.failed),
                         cluster=report.cluster, transient=False)


def _first_lines(text: str, count: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[:count])[:600]
