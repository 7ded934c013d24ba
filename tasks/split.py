"""Tasks of the consented split (`split_search_alias`, `esremote.cluster.split_search`): the search
alias's key, the alias itself, the work moved onto it, its verification, and their undoing. Each
journals its intent (with the originals) before it changes anything; the rollback reads only the
journal.

Journal steps (per split alias A, search alias NAME):
    prepare_remote/split-key/A     intent {alias: NAME, local, remote}; done: where NAME's key is kept
    reconnect/split-alias/A        intent {alias: NAME, settings}; done once NAME is defined
    reconnect/move-work/A          intent {moves: [{kind, id, original, moved}]}; done after the updates
    rollback/unmove-work/A, rollback/null-split/A, rollback/undo/split-key/A
"""

from __future__ import annotations

from prefect import task

from esremote.cluster import key_access, remote_settings, split_search
from esremote.cluster.api_key import ensure_cross_cluster_key, invalidate_key, list_cross_cluster_keys
from esremote.cluster.calls import perform
from esremote.cluster.client import mapped_errors, poll
from esremote.cluster.remote_settings import SavedRemote
from esremote.errors import ClusterError
from esremote.split_plan import split_alias_settings
from esremote.verify import verify_api_key_link
from esremote.tasks.cluster import _encoded_id, alias_facts, facts_of, remote_info
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.runtime import Run, get_run
from esremote.tasks.secret_store import drop_block, key_file, key_file_of, load_key, store_key
from esremote.tasks.work import records_of, split_name

KEY_STEP = "prepare_remote/split-key/{alias}"


def _key_records(run: Run, alias: str) -> list[dict]:
    return [e.data for e in run.journal.entries("done", KEY_STEP.format(alias=alias))]


@task(name="split-search-key", task_run_name="split-search-key-{alias}", **RETRYING)
def split_key(run_id: str, alias: str) -> str:
    """The search alias's cross-cluster API key (the search half of the access, with its DLS/FLS)."""
    run = get_run(run_id)
    state = alias_facts(run, alias)
    name, link = state.split_alias, run.link(alias)
    step = KEY_STEP.format(alias=alias)
    records = _key_records(run, alias)
    if records and load_key(run, name, records[-1]) is not None:
        return records[-1]["key_id"]
    run.journal.intent(step, alias=name, local=link.local, remote=link.remote)

    def stored(key_id: str):
        for record in records:
            value = load_key(run, name, record)
            if value is not None and _encoded_id(value.get_secret_value()) == key_id:
                return value
        return None

    key = ensure_cross_cluster_key(run.es(link.remote), link.remote, local_cluster=link.local, alias=name,
                                   run_id=run.id, access=state.split["access"], stored_secret=stored,
                                   expiration=run.params.key_expiration)
    record = store_key(run, name, key.id, key.encoded, local=link.local)
    run.journal.done(step, **record, outcome=key.outcome)
    run_logger().info("cross-cluster API key %s for the search alias %s of %s: %s", key.id, name, alias, key.outcome)
    return key.id


def credentials_file(run: Run, alias: str) -> str:
    """The 0600 file with the search alias's encoded key (restored from its Prefect block when needed)."""
    name = split_name(run, alias)
    return key_file_of(run, name, _key_records(run, alias), f"the search alias {name}")


# ----------------------------------------------------------------------------------- the alias


@task(name="add-search-alias", task_run_name="add-search-alias-{alias}", **RETRYING)
def add_split_alias(run_id: str, alias: str) -> list[str]:
    """NAME in the persistent cluster settings, on the remote cluster port, then connected."""
    run = get_run(run_id)
    step = f"reconnect/split-alias/{alias}"
    if run.journal.is_done(step):
        return []
    state = alias_facts(run, alias)
    name, local = state.split_alias, state.local
    first = run.journal.first_intent(step)
    settings = first.data["settings"] if first else split_alias_settings(run.params, facts_of(run), state)
    if not settings:
        raise ClusterError(f"alias {alias}: no settings to derive the search alias {name} from")
    run.journal.intent(step, alias=name, settings=settings)
    es = run.es(local)
    calls = remote_settings.plan_restore(remote_settings.fetch_remote(es, local, name), SavedRemote(name, settings))
    outcomes = remote_settings.apply_settings(es, local, calls)
    poll(lambda: (remote_info(run, local).get(name) or {}).get("connected") is True,
         timeout=run.params.link_timeout_s, what=f"search alias {name} connected", cluster=local)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


@task(name="remove-search-alias", task_run_name="remove-search-alias-{alias}", **RETRYING)
def remove_split_alias(run_id: str, alias: str, step: str) -> list[str]:
    """Rollback: NAME's settings nulled, until `_remote/info` no longer lists it."""
    run = get_run(run_id)
    first = run.journal.first_intent(f"reconnect/split-alias/{alias}")
    if first is None:
        return []
    name, local = first.data["alias"], run.link(alias).local
    es = run.es(local)
    outcomes = remote_settings.apply_settings(es, local, remote_settings.plan_removal(
        remote_settings.fetch_remote(es, local, name)))
    poll(lambda: name not in remote_info(run, local), timeout=run.params.link_timeout_s,
         what=f"search alias {name} gone from _remote/info", cluster=local)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes] or [f"search alias {name} already gone"]


# ------------------------------------------------------------------------------------ the work


@task(name="move-search-work", task_run_name="move-search-work-{alias}", **RETRYING)
def move_work(run_id: str, alias: str) -> list[str]:
    """Transforms and datafeeds (stopped: inside the outage) read through NAME instead of the alias;
    each one's sources as they were go in the journal first."""
    run = get_run(run_id)
    step = f"reconnect/move-work/{alias}"
    if run.journal.is_done(step):
        return []
    name, local = split_name(run, alias), run.link(alias).local
    es = run.es(local)
    first = run.journal.first_intent(step)
    if first is not None:
        moves = [split_search.Move.from_dict(m) for m in first.data["moves"]]
    else:
        moves = []
        for record in records_of(run, alias) or []:
            if record.kind in split_search.SEARCHING:
                source = split_search.read_source(es, local, record.kind, record.id)
                move = split_search.plan_move(record.kind, record.id, source, alias, name)
                moves += [move] if move else []
        run.journal.intent(step, alias=name, moves=[m.to_dict() for m in moves])
    lines = [_send(es, local, move.call(), f"{move.kind} {move.id} now reads {move.moved}") for move in moves]
    run.journal.done(step, outcomes=lines)
    return lines


@task(name="unmove-search-work", task_run_name="unmove-search-work-{alias}", **RETRYING)
def unmove_work(run_id: str, alias: str, step: str) -> list[str]:
    """Rollback: every moved transform and datafeed gets its sources back (they are stopped)."""
    run = get_run(run_id)
    first = run.journal.first_intent(f"reconnect/move-work/{alias}")
    if first is None:
        return []
    local = run.link(alias).local
    es = run.es(local)
    lines = [_send(es, local, move.call(back=True), f"{move.kind} {move.id} reads {move.original} again")
             for move in (split_search.Move.from_dict(m) for m in first.data["moves"])]
    run.journal.done(step, outcomes=lines)
    return lines


def _send(es, local: str, call, line: str) -> str:
    with mapped_errors(local, f"{call.method} {call.path}"):
        perform(es, local, call)
    return line


# ------------------------------------------------------------------------------- verification


@task(name="verify-search-alias", task_run_name="verify-search-alias-{alias}", **RETRYING)
def verify_split(run_id: str, alias: str) -> list[str]:
    """NAME on every local node (connected with its key, a request it coordinates), then a search per
    pattern the moved work reads."""
    run = get_run(run_id)
    name, link = split_name(run, alias), run.link(alias)
    state = alias_facts(run, alias)
    first = run.journal.first_intent(f"stop_cross_cluster_ops/list/{alias}")
    work = first.data.get("work", []) if first else [w.__dict__ for w in state.work]
    patterns = list(dict.fromkeys(p for w in work if w["kind"] in split_search.SEARCHING
                                  for p in w.get("remote_patterns", [])))
    patterns = [p for p in patterns if key_access.searchable(state.split["access"], p)]
    report = verify_api_key_link(run.inventory, name, es=run.es(link.local), pool=run.pool, index_patterns=patterns,
                                 connect_timeout=run.params.link_timeout_s, clusters=(link.local, link.remote))
    return [f"{name}: {c}" for c in report.checks]


# ----------------------------------------------------------------------------------- the key


@task(name="invalidate-search-key", task_run_name="invalidate-search-key-{alias}", **RETRYING)
def invalidate_split_key(run_id: str, alias: str, step: str) -> str:
    """Rollback, last: the search alias's key (found by its record, else by its metadata)."""
    run = get_run(run_id)
    first = run.journal.first_intent(KEY_STEP.format(alias=alias))
    if run.journal.is_done(step) or first is None:
        return "no search key of this run"
    name, remote = first.data["alias"], first.data["remote"]
    es = run.es(remote)
    records = _key_records(run, alias)
    ids = {r["key_id"] for r in records if r.get("key_id")}
    ids |= {k.id for k in list_cross_cluster_keys(es, remote)
            if (k.metadata.get("esremote") or {}).get("run_id") == run.id
            and (k.metadata.get("esremote") or {}).get("alias") == name}
    run.journal.intent(step, key_ids=sorted(ids))
    outcomes = [str(invalidate_key(es, remote, key_id)) for key_id in sorted(ids)]
    for record in records:
        drop_block(record)
    key_file(run, name).unlink(missing_ok=True)
    run.journal.done(step, outcomes=outcomes)
    return "; ".join(outcomes) or "no key found"
