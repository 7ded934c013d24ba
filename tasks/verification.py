"""`esremote verify`: each alias checked as the verify phase checks it, without Prefect and without
changing anything (the work's index patterns come from what uses the alias now)."""

from __future__ import annotations

from dataclasses import dataclass

from esremote.cluster.key_access import WORK_KIND
from esremote.cluster.usage import read_usage
from esremote.verify import VerifyReport, patterns_and_followers, verify_api_key_link
from esremote.tasks.runtime import Run


@dataclass
class AliasVerification:
    alias: str
    report: VerifyReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_text(self) -> str:
        """A headline naming the failed nodes, then one line per check (per node where a node answers
        for itself, so no line says ok for a node that was not asked)."""
        report = self.report
        where = f" on node(s) {', '.join(report.failed_nodes)}" if report.failed_nodes else ""
        lines = [f"alias {self.alias}: {'OK' if self.ok else 'FAILED'}{where} ({report.model.replace('_', '-')} model)"]
        lines += [f"  {check}" for check in report.checks]
        return "\n".join(lines)


def verify_aliases(run: Run) -> list[AliasVerification]:
    results = []
    for alias in run.aliases:
        local = run.link(alias).local
        es = run.es(local)
        usage = read_usage(es, local, alias)
        patterns, followers = patterns_and_followers(usage)
        # Search what the work searches: a leader that only followers and auto-follow patterns read
        # may be outside what the key lets search (access=from-usage); followers show their progress.
        searched = {p for u in usage.items if WORK_KIND[u.kind] == "search" for p in u.remote.patterns}
        patterns = [p for p in patterns if p in searched]
        report = verify_api_key_link(run.inventory, alias, es=es, pool=run.pool, index_patterns=patterns,
                                     followers=followers, connect_timeout=run.params.link_timeout_s, check=False)
        results.append(AliasVerification(alias, report))
    return results
