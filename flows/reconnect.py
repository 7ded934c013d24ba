"""Phase `reconnect` (inside the outage): the alias's settings are saved in the journal and nulled;
the nodes reload secure settings (8.13+) or restart one by one; the alias comes back on the remote
cluster port. An alias defined in elasticsearch.yml is moved there instead, with a rolling restart.
The local roles' `remote_indices` and the credentials in every keystore were staged before the
outage (stage_credentials.py)."""

from __future__ import annotations

from prefect import flow

from esremote.alias_target import target_alias_settings
from esremote.params import MigrationParams
from esremote.plan import credentials_by
from esremote.flows.common import locals_of, pending_aliases, phase_done, wait_all
from esremote.flows.stage_credentials import PHASE as STAGED
from esremote.flows.stage_credentials import stage_credentials
from esremote.tasks.cluster import alias_facts, facts_of, readd_alias, reload_credentials, remove_alias
from esremote.tasks.nodes import edit_yml, restart_node
from esremote.tasks.runtime import Run, ensure_run
from esremote.tasks.split import add_split_alias, move_work

PHASE = "reconnect"


def _yml_edits(run: Run, facts, states, node) -> tuple[dict, list[str]]:
    """Settings of the yml-defined aliases on this node, moved to the remote cluster port."""
    desired, stale = {}, []
    for state in states:
        current = state.yml_settings.get(node.name)
        if state.defined_in != "yml" or not current:
            continue
        target = target_alias_settings(run.params, facts, state, current)
        prefix = f"cluster.remote.{state.alias}."
        desired.update({prefix + k: v for k, v in target.items()})
        stale += [prefix + k for k in current if k not in target]
    return desired, stale


def reconnect(run: Run) -> list[str]:
    """The phase's work, callable inside the outage flow without a subflow of its own. Roles and
    keystores were staged before the outage (stage_credentials.py); run alone, this does them too."""
    lines = [] if run.journal.entries("note", f"phase/{STAGED}") else stage_credentials(run)
    facts = facts_of(run)
    for local in locals_of(run):
        aliases = [a for a in pending_aliases(run) if run.link(a).local == local]
        if not aliases:
            lines.append(f"{local}: every alias already uses an API key")
            continue
        states = [alias_facts(run, a) for a in aliases]
        for state in states:
            if state.defined_in == "yml":
                if run.journal.first_intent(f"{PHASE}/save-yml/{state.alias}") is None:
                    run.journal.intent(f"{PHASE}/save-yml/{state.alias}", saved=state.yml_settings)
            else:
                remove_alias(run.id, state.alias)
        nodes = facts.nodes_of(local)
        futures = []
        for node in nodes:
            desired, stale = _yml_edits(run, facts, states, node)
            if desired:
                futures.append((f"yml {node.key}", edit_yml.submit(run.id, node.key, f"{PHASE}/yml/{node.key}",
                                                                   desired, stale)))
        wait_all(futures)
        how = credentials_by(run.params, facts, local)
        if how == "reload" and not any(s.defined_in == "yml" for s in states):
            step = f"{PHASE}/reload/{local}"
            if not run.journal.is_done(step):
                reload_credentials(run.id, local, step)
            lines.append(f"{local}: credentials reloaded without a restart")
        else:
            for node in nodes:
                restart_node(run.id, node.key, f"{PHASE}/restart/{node.key}")
            lines.append(f"{local}: nodes restarted one by one to load the credentials")
        for state in states:
            if state.defined_in != "yml":
                lines += readd_alias(run.id, state.alias)
        for state in (s for s in states if s.split):  # the consented split: searches move to their alias
            lines += add_split_alias(run.id, state.alias)
            lines += move_work(run.id, state.alias)
    return lines


@flow(name="reconnect", flow_run_name="reconnect-{run_id}")
def reconnect_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    lines = reconnect(run)
    phase_done(run, PHASE, lines)
    return lines
