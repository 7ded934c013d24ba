"""What the phase flows share: which clusters a run touches, waiting on submitted tasks, the
per-phase report (journal note + Markdown artifact), and removing the run's backups at its end."""

from __future__ import annotations

from collections.abc import Iterable

from esremote.errors import GroupError
from esremote.fanout import GroupResult
from esremote.tasks import reports
from esremote.tasks.runtime import Run


def remotes_of(run: Run) -> list[str]:
    return list(dict.fromkeys(run.link(a).remote for a in run.aliases))


def locals_of(run: Run) -> list[str]:
    return list(dict.fromkeys(run.link(a).local for a in run.aliases))


def pending_aliases(run: Run) -> list[str]:
    """Aliases this run still migrates: not on the API-key model when preflight looked, or already
    touched by this run (a resumed run finishes what it started)."""
    from esremote.tasks.cluster import alias_facts  # noqa: PLC0415

    return [a for a in run.aliases
            if not alias_facts(run, a).migrated or run.journal.started_steps(f"stop_cross_cluster_ops/list/{a}")]


def wait_all(futures: Iterable[tuple[str, object]]) -> list:
    """Results of submitted tasks, given as (label, future); when any failed, one GroupError naming
    every failure (by label, e.g. `put-file remote/remote-0`), raised after all of them finished."""
    outcomes = {}
    for label, future in futures:
        try:
            outcomes[label] = future.result()
        except Exception as exc:  # noqa: BLE001 - collected, then raised together
            outcomes[label] = exc
    result = GroupResult(outcomes)
    if result.failed:
        raise GroupError(result)
    return list(outcomes.values())


def phase_noted(run: Run, phase: str, lines: list[str]) -> None:
    """The phase is over: in the journal (what a resumed run and the rollback read)."""
    run.journal.note(f"phase/{phase}", summary=lines)


def phase_done(run: Run, phase: str, lines: list[str], *, note: bool = True) -> None:
    """The phase is over: in the journal, and its report as an artifact."""
    if note:
        phase_noted(run, phase, lines)
    reports.markdown(reports.run_key(run, phase), reports.phase_report(phase, lines),
                     description=f"Report of phase {phase}")


def remote_info(run: Run) -> dict:
    """`_remote/info` of each alias of the run, as the local clusters report it now."""
    from esremote.tasks.cluster import remote_info as fetch  # noqa: PLC0415

    out = {}
    for local in locals_of(run):
        try:
            info = fetch(run, local)
        except Exception as exc:  # noqa: BLE001 - the summary says it could not be read
            info = {a: {"error": str(exc)} for a in run.aliases}
        out.update({a: info.get(a, {}) for a in run.aliases if run.link(a).local == local})
    return out


def remove_backups(run: Run, prefix: str) -> int:
    """The run has ended verified: its backups go from every node it touched (tasks.nodes.
    remove_backups), journaled under `<prefix>/backups/<node>`; how many were removed. Raises a
    GroupError naming each node where that failed (its backups are then still there)."""
    from esremote.tasks.nodes import remove_backups as remove  # noqa: PLC0415

    nodes = {str(n) for cluster in dict.fromkeys(locals_of(run) + remotes_of(run)) for n in run.nodes(cluster)}
    journaled = (run.journal.first_intent(step).data.get("node") for step in run.journal.started_steps())
    touched = [node for node in dict.fromkeys(journaled) if node in nodes]
    removed = wait_all([(f"remove-backups {node}", remove.submit(run.id, node, f"{prefix}/backups/{node}"))
                        for node in touched])
    return sum(len(files) for files in removed)
