"""`rollback`: back to the certificate model, driven by the journal (never by process memory), in
the order es-facts §11 requires: stop the work, remove the alias, restore the roles, restore
elasticsearch.yml and the keystores (the credentials REMOVED, which Elastic's guide forgets),
reload or restart, re-apply the saved alias settings, verify the certificate-model link (connected,
no `cluster_credentials`), resume the work.

Then, once that link is back and the work runs (`restore="everything"`, the default), what the
non-disruptive phases prepared goes too, one cluster at a time so that every step is a rolling one:
the local nodes' elasticsearch.yml, a rolling restart, the CA file they got removed (or its original
written back); then the same on the remote nodes (elasticsearch.yml, the keystore entries the run
added, the p12 and CA files); then the link and the work are checked again, the run's
cross-cluster API key is invalidated, and the run's backups leave the nodes. `restore="outage"`
stops after the first part and leaves those in place, the key and the backups too (a new attempt
reuses them).

A rollback undoes only what the run wrote, on the files as they are now (someone may have edited
them since): an elasticsearch.yml gets the settings the run set or unset back as they were, every
other line kept (esremote.yml_undo; the bytes from before the run when nobody touched it); a
setting someone changed since, or a p12/CA file that no longer holds the run's bytes, is left as
it is on that node and reported as a failure naming node, file and setting.

Every step is idempotent and runs even when an earlier one failed (the second part only runs when
the first succeeded); the failures are listed in one `RollbackError` at the end, and
`esremote rollback RUN_ID` runs it again.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from esremote.errors import RollbackError
from esremote.journal import Entry
from esremote.params import MigrationParams
from esremote.plan import RELOADABLE, credentials_by
from esremote.flows.common import locals_of, phase_done, remote_info, remotes_of, remove_backups
from esremote.flows.pair_lock import release_stale_leases
from esremote.flows.summary import Summary
from esremote.tasks.cluster import (
    facts_of,
    invalidate_run_key,
    null_alias,
    reload_credentials,
    restore_alias,
    restore_roles,
    verify_certificate,
)
from esremote.tasks.common import install_redaction, run_logger
from esremote.tasks.nodes import keystore_remove, remove_file, restart_node, restore_file, undo_yml
from esremote.tasks.runtime import Run, close_run, ensure_run, open_run
from esremote.tasks.split import invalidate_split_key, remove_split_alias, unmove_work
from esremote.tasks.work import check_work, records_of, resume_work, stop_work

PHASE = "rollback"
UNDO = f"{PHASE}/undo"
OUTAGE_UNDONE = f"{PHASE}/outage"
PREPARATION = ("prepare_remote", "stage_local")  # the phases before the outage, undone last


class _Steps:
    """Runs rollback steps, collecting failures instead of stopping at the first."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed: list[str] = []

    def run(self, label: str, fn, *args, **kwargs) -> bool:
        """Run one step; False (and its failure collected) when it raised."""
        try:
            result = fn(*args, **kwargs)
            self.lines += [f"{label}: {r}" for r in (result if isinstance(result, list) else [result])]
            return True
        except Exception as exc:  # noqa: BLE001 - one failed step must not stop the others
            self.failed.append(f"{label}: {exc}")
            run_logger().error("rollback step %s failed: %s", label, exc)
            return False

    def wait(self, futures: list[tuple[str, object]]) -> set[str]:
        """Results of submitted tasks, each failure collected under its label; the failed labels."""
        return {label for label, future in futures if not self.run(label, future.result)}


def _keystore_changes(run: Run, local: str) -> dict[str, list[str]]:
    """node -> entries reconnect added to its keystore (names that were not there before)."""
    out = {}
    for step in run.journal.started_steps("reconnect/keystore/"):
        first = run.journal.first_intent(step)
        node = first.data["node"]
        if node.startswith(f"{local}/"):
            out[node] = [n for n in first.data["adding"] if n not in first.data["before"]]
    return out


def _yml_changes(run: Run, local: str) -> dict[str, tuple[str, str]]:
    """node -> (path of its elasticsearch.yml, the reconnect step that edited it)."""
    out = {}
    for step in run.journal.started_steps("reconnect/yml/"):
        first = run.journal.first_intent(step)
        if first.data["node"].startswith(f"{local}/"):
            out[first.data["node"]] = (first.data["path"], step)
    return out


@flow(name="rollback", flow_run_name="rollback-{run_id}")
def rollback_flow(params: MigrationParams, run_id: str | None = None,
                  restore: Literal["everything", "outage"] = "everything") -> list[str]:
    """Undo the run: the outage's changes, then (unless `restore="outage"`) the preparation's."""
    run = ensure_run(params, run_id)
    steps = _Steps()
    if not run.journal.is_done(OUTAGE_UNDONE):  # done once, it is not repeated (it would stop the work)
        if _staged_or_outage(run):
            _undo_outage(run, steps)
        if not steps.failed:
            run.journal.done(OUTAGE_UNDONE)
    if restore == "everything" and not steps.failed:
        _undo_preparation(run, steps)
    elif restore == "everything":
        steps.failed.append("the remote cluster server and the staged CA were left in place because the "
                            "certificate-model link is not back yet; fix that, then run the rollback again")
    phase_done(run, PHASE, steps.lines + [f"FAILED {f}" for f in steps.failed])
    if steps.failed:
        raise RollbackError(steps.failed)
    return steps.lines


def _staged_or_outage(run: Run) -> bool:
    """Whether the run got as far as stage_credentials (roles, keystore credentials) or the outage.
    Before that the certificate-model link was never touched, and a failed preparation may be what
    keeps it down now (the remote node an alias points at did not start with its new configuration):
    the rollback then goes straight to undoing the preparation, which brings that node back."""
    return any(run.journal.started_steps(prefix) for prefix in ("reconnect/", "stop_cross_cluster_ops/"))


def _undo_outage(run: Run, steps: _Steps) -> None:
    journal = run.journal
    facts = facts_of(run)
    for alias in run.aliases:
        steps.run(f"stop work {alias}", stop_work, run.id, alias, f"{PHASE}/stop/{alias}")
    for alias in run.aliases:  # a consented split: the moved transforms and datafeeds read the alias again
        if journal.started_steps(f"reconnect/move-work/{alias}"):
            steps.run(f"move work back to {alias}", unmove_work, run.id, alias, f"{PHASE}/unmove-work/{alias}")
    for alias in run.aliases:
        if any(journal.started_steps(f"reconnect/{what}/{alias}") for what in ("save-settings", "readd")):
            steps.run(f"remove alias {alias}", null_alias, run.id, alias, f"{PHASE}/null/{alias}")
        if journal.started_steps(f"reconnect/split-alias/{alias}"):
            steps.run(f"remove the search alias of {alias}", remove_split_alias, run.id, alias,
                      f"{PHASE}/null-split/{alias}")
    for alias in run.aliases:
        steps.run(f"restore roles {alias}", restore_roles, run.id, alias, f"{PHASE}/roles/{alias}")
    for local in locals_of(run):
        keystores = _keystore_changes(run, local)
        ymls = _yml_changes(run, local)
        # A node whose elasticsearch.yml cannot be undone (someone changed a setting the run wrote)
        # is left as it is: its keystore too, and it is not restarted.
        held = set()
        for node, (path, step) in ymls.items():
            if not steps.run(f"yml {node}", undo_yml, run.id, node, f"{PHASE}/yml/{node}", path, [step]):
                held.add(node)
        for node, names in keystores.items():
            if names and node not in held:
                steps.run(f"keystore {node}", keystore_remove, run.id, node, f"{PHASE}/keystore/{node}", names)
        restarted = bool(journal.started_steps(f"reconnect/restart/{local}/"))
        if not (keystores or ymls):
            continue
        # Below 8.13 a reload cannot drop the credentials, whatever the run's strategy was.
        reloadable = facts.min_version(local) >= RELOADABLE
        if ymls or restarted or not reloadable or credentials_by(run.params, facts, local) == "restart":
            for node in (n for n in _absent_first(run, local) if n not in held):
                steps.run(f"restart {node}", restart_node, run.id, node, f"{PHASE}/restart/{node}")
        else:
            steps.run(f"reload {local}", reload_credentials, run.id, local, f"{PHASE}/reload/{local}")
    for alias in run.aliases:
        steps.run(f"restore alias {alias}", restore_alias, run.id, alias, f"{PHASE}/restore/{alias}")
    for alias in run.aliases:
        steps.run(f"verify certificate link {alias}", verify_certificate, run.id, alias)
    for alias in run.aliases:
        steps.run(f"resume work {alias}", resume_work, run.id, alias, f"{PHASE}/resume/{alias}")


# ------------------------------------------------------------------ what the preparation changed


def _first_intents(run: Run, cluster: str, kind: str, phases: tuple[str, ...] = PREPARATION) -> list[Entry]:
    """First intent of every `<phase>/<kind>/...` step on the cluster's nodes, in journal order."""
    entries = [run.journal.first_intent(step) for step in run.journal.started_steps()
               if step.split("/")[0] in phases and step.split("/")[1:2] == [kind]]
    return [e for e in entries if e.data.get("node", "").startswith(f"{cluster}/")]


def _yml_edits(run: Run, cluster: str) -> dict[tuple[str, str], list[str]]:
    """(node, path) -> the steps that edited that elasticsearch.yml, in the order they started (the
    first one holds the bytes from before the run: reconnect edits a file stage_local edited)."""
    out: dict[tuple[str, str], list[str]] = {}
    for entry in _first_intents(run, cluster, "yml", PREPARATION + ("reconnect",)):
        out.setdefault((entry.data["node"], entry.data["path"]), []).append(entry.step)
    return out


def _added_entries(run: Run, cluster: str) -> dict[str, list[str]]:
    """node -> keystore entries the preparation added (names that were not there before)."""
    out: dict[str, list[str]] = {}
    for entry in _first_intents(run, cluster, "keystore"):
        added = [n for n in entry.data["adding"] if n not in entry.data["before"]]
        out.setdefault(entry.data["node"], []).extend(n for n in added if n not in out.get(entry.data["node"], []))
    return out


def _needs_restart(run: Run, node: str) -> bool:
    """The node runs with what the run changed: it was restarted after the change, or rollback
    changed its files back (in this attempt or an earlier one)."""
    if any(run.journal.is_done(f"{phase}/restart/{node}") for phase in PREPARATION):
        return True
    return any(e.step.endswith(f"/{node}") and (e.data.get("changed") or e.data.get("removed"))
               for e in run.journal.entries("done", f"{UNDO}/") if not e.step.startswith(f"{UNDO}/restart/"))


def _absent_first(run: Run, cluster: str) -> list[str]:
    """The cluster's nodes, those not in the cluster now first: a node that did not start with the
    run's configuration is brought back before any running one restarts (a rolling restart waits for
    green with every node, which a missing node would never let it see)."""
    nodes = [str(n) for n in run.nodes(cluster)]
    try:
        present = {row.get("name") for row in run.es(cluster).cat.nodes(format="json", h="name").body}
    except Exception:  # noqa: BLE001 - cannot tell: the inventory's order
        return nodes
    return sorted(nodes, key=lambda key: key.rsplit("/", 1)[-1] in present)


def _undo_cluster(run: Run, steps: _Steps, cluster: str) -> set[str]:
    """One cluster's nodes as before the run: elasticsearch.yml (the run's settings undone, anyone
    else's lines kept) and keystore entries, a rolling restart, then the files the run put (after
    the restart: no running node points at them). A node whose elasticsearch.yml cannot be undone
    (someone changed a setting the run wrote) is held: nothing more changes on it (its keystore, its
    restart, the files its yml may still name) until a later rollback can undo it; the other nodes
    go on. Returns the held nodes."""
    futures = [(f"yml {node}", undo_yml.submit(run.id, node, f"{UNDO}/{edits[0]}", path, edits))
               for (node, path), edits in _yml_edits(run, cluster).items()]
    held = {label.removeprefix("yml ") for label in steps.wait(futures)}
    allowed = len(steps.failed)  # the held nodes' failures: the rest of the cluster still goes on
    steps.wait([(f"keystore {node}", keystore_remove.submit(run.id, node, f"{UNDO}/keystore/{node}", names))
                for node, names in _added_entries(run, cluster).items() if names and node not in held])
    if len(steps.failed) > allowed:
        return held
    for node in _absent_first(run, cluster):  # one at a time: the cluster stays up
        if node not in held and _needs_restart(run, node):
            steps.run(f"restart {node}", restart_node, run.id, node, f"{UNDO}/restart/{node}")
    if len(steps.failed) > allowed:
        return held
    futures = []
    # "signing": strong identity's signing certificate and key on the local nodes
    puts = [e for kind in ("p12", "ca", "signing") for e in _first_intents(run, cluster, kind)
            if e.data["node"] not in held]
    for entry in puts:
        node, path, label = entry.data["node"], entry.data["path"], f"file {entry.data['path']} on {entry.data['node']}"
        wrote = entry.data.get("wrote")  # SHA-256 of the bytes the run put there
        if wrote is None:  # journaled before what the run wrote was: the file may hold someone else's bytes
            steps.lines.append(f"{label}: kept (the journal does not say what the run wrote)")
        elif not entry.data["existed"]:
            directory = None if entry.data.get("dir_existed", True) else path.rsplit("/", 1)[0]
            futures.append((label, remove_file.submit(run.id, node, f"{UNDO}/{entry.step}", path, directory,
                                                      wrote)))
        elif entry.data.get("original"):
            futures.append((label, restore_file.submit(run.id, node, f"{UNDO}/{entry.step}", path,
                                                       entry.data["original"], entry.data.get("mode"), wrote)))
        else:  # journaled before originals of put files were kept: nothing to write back
            steps.lines.append(f"{label}: kept (the journal has no copy of its original)")
    steps.wait(futures)
    return held


def _undo_preparation(run: Run, steps: _Steps) -> None:
    """Local clusters first (they stop trusting the remote cluster servers), then the remote ones
    (no server left that a local node would use), then the link and the work checked again. A node
    held for an operator's edit stops nothing else: its alias already runs on the certificate-model
    link (the outage's part is undone), so the remote cluster server can go."""
    held = 0
    for cluster in locals_of(run) + [c for c in remotes_of(run) if c not in locals_of(run)]:
        held += len(_undo_cluster(run, steps, cluster))
        if len(steps.failed) > held:
            return
    for alias in run.aliases:
        steps.run(f"verify certificate link {alias} again", verify_certificate, run.id, alias)
    for alias in run.aliases:
        if records_of(run, alias) is None:  # the outage never began: the work as at the run's start
            steps.run(f"work of {alias} as before the run", resume_work, run.id, alias, f"{UNDO}/work/{alias}",
                      baseline=True)
        steps.run(f"work of {alias} still runs", check_work, run.id, alias)
    if len(steps.failed) > held:
        return
    for alias in run.aliases:  # last: the certificate link is back, no alias uses the key
        steps.run(f"invalidate the cross-cluster API key of {alias}", invalidate_run_key, run.id, alias,
                  f"{UNDO}/api-key/{alias}")
        steps.run(f"invalidate the search key of {alias}", invalidate_split_key, run.id, alias,
                  f"{UNDO}/split-key/{alias}")
    if not steps.failed:  # every node as before: the run's backups are stray files now
        steps.run("backups", lambda: f"{remove_backups(run, UNDO)} removed from the nodes")


def run_rollback(params: MigrationParams) -> Summary:
    """`esremote rollback RUN_ID`: the rollback flow on its own, for a run found in the journal."""
    install_redaction()
    run = open_run(params)
    # The run's orchestrator died holding its pair's concurrency slots (this command is for a run
    # that is not running any more): give them back now rather than when the server expires them.
    release_stale_leases(run)
    summary = Summary(run_id=run.id, status="rollback-failed", aliases=run.aliases,
                      journal_dir=str(run.journal.run_dir), remote_info_before=remote_info(run))
    try:
        state = rollback_flow(params, run.id, return_state=True)
        if state.is_completed():
            summary.status, summary.message = "rolled-back", "the certificate-model link is back"
            summary.phases.append("rollback")
        else:
            try:
                state.result()
            except Exception as exc:  # noqa: BLE001 - one line for the summary
                summary.message = str(exc)
        summary.remote_info_after = remote_info(run)
    finally:
        close_run(run.id)
    return summary
