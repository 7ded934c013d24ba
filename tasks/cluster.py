"""REST-side tasks: the cross-cluster API key, local roles, the alias's settings, reloading secure
settings, TLS probes and verification. Each journals its intent (with the original) first.

Journal steps (per alias unless noted):
    prepare_remote/api-key/A          done: key id, name, where the key is stored
    reconnect/roles/A                 intent: the roles' original definitions
    reconnect/save-settings/A         intent: the alias's settings as they were (persistent/transient)
    reconnect/save-yml/A              intent: the alias's settings in each node's yml (static alias)
    reconnect/remove-alias/A          done after the alias is gone from _remote/info
    reconnect/reload/CLUSTER          done after every node reloaded
    reconnect/readd/A                 done after the alias is back on the remote cluster port
(the consented split's steps: tasks/split.py)
"""

from __future__ import annotations

import base64
from typing import Any

from prefect import task

from esremote.alias_target import target_saved
from esremote.cluster import key_access, privileges, remote_settings, split_search
from esremote.cluster.api_key import (certificate_identity, ensure_cross_cluster_key, invalidate_key,
                                      list_cross_cluster_keys)
from esremote.cluster.client import mapped_errors, poll
from esremote.cluster.reload import reload_secure_settings
from esremote.cluster.remote_settings import SavedRemote
from esremote.errors import ClusterError
from esremote.pki import signing_dn
from esremote.plan_facts import AliasState, MigrationFacts
from esremote.probes import probe_remote_cluster
from esremote.verify import verify_api_key_link, verify_certificate_link
from esremote.tasks import reports
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.privileges import _custom_roles
from esremote.tasks.runtime import Run, get_run
from esremote.tasks.secret_store import block_name, drop_block, key_file, key_file_of, load_key, store_key
from esremote.tasks.work import split_name


def facts_of(run: Run) -> MigrationFacts:
    data = reports.load(run.journal.run_dir, "facts.json")
    if data is None:
        raise RuntimeError(f"run {run.id} has no facts: run the preflight phase first")
    return MigrationFacts.from_dict(data)


def alias_facts(run: Run, alias: str) -> AliasState:
    return next(a for a in facts_of(run).aliases if a.alias == alias)


def remote_info(run: Run, cluster: str) -> dict[str, Any]:
    with mapped_errors(cluster, "GET _remote/info"):
        return run.es(cluster).cluster.remote_info().body


# ---------------------------------------------------------------------------------- the API key


def _encoded_id(encoded: str) -> str:
    try:
        return base64.b64decode(encoded).decode().split(":", 1)[0]
    except ValueError:
        return ""


def _stored_lookup(run: Run, alias: str):
    """`stored_secret(key_id)` for ensure_cross_cluster_key: this run's record, else the Prefect
    block an earlier run saved; a value whose id does not match is ignored."""
    local = run.link(alias).local
    records = [e.data for e in run.journal.entries("done", f"prepare_remote/api-key/{alias}")]
    records.append({"kind": "prefect", "block": block_name(local, alias)})
    records.append({"kind": "file", "path": str(key_file(run, alias))})

    def lookup(key_id: str):
        for record in records:
            value = load_key(run, alias, record) if record.get("kind") != "prefect" or _prefect_ok() else None
            if value is not None and _encoded_id(value.get_secret_value()) == key_id:
                return value
        return None
    return lookup


def _prefect_ok() -> bool:
    from esremote.tasks.runtime import prefect_api_configured  # noqa: PLC0415

    return prefect_api_configured()


@task(name="api-key", task_run_name="api-key-{alias}", **RETRYING)
def cross_cluster_key(run_id: str, alias: str) -> str:
    """Create (or reuse) the cross-cluster API key for `alias` on the remote and store it."""
    run = get_run(run_id)
    step = f"prepare_remote/api-key/{alias}"
    link = run.link(alias)
    state = alias_facts(run, alias)
    if run.journal.is_done(step):
        record = [e.data for e in run.journal.entries("done", step)][-1]
        if load_key(run, alias, record) is not None:
            return record["key_id"]
    run.journal.intent(step, remote=link.remote, name=f"esremote-{link.local}-{alias}")
    identity = certificate_identity(signing_dn(link.local, alias)) if run.params.strong_identity else None
    key = ensure_cross_cluster_key(run.es(link.remote), link.remote, local_cluster=link.local, alias=alias,
                                   run_id=run.id, access=state.key_access, stored_secret=_stored_lookup(run, alias),
                                   expiration=run.params.key_expiration, identity=identity)
    record = store_key(run, alias, key.id, key.encoded)
    run.journal.done(step, **record, outcome=key.outcome)
    run_logger().info("cross-cluster API key %s for %s: %s (stored in %s)", key.id, alias, key.outcome,
                      record["kind"])
    return key.id


@task(name="invalidate-run-key", task_run_name="invalidate-run-key-{alias}", **RETRYING)
def invalidate_run_key(run_id: str, alias: str, step: str) -> str:
    """Rollback: invalidate the cross-cluster API key the run created or reused for `alias` (once
    the certificate link is back, no alias uses it, and a valid key that nothing uses is a
    credential left lying around). A create whose record is missing is found by its metadata."""
    run = get_run(run_id)
    created = f"prepare_remote/api-key/{alias}"
    if run.journal.is_done(step) or run.journal.first_intent(created) is None:
        return "no key of this run"
    link = run.link(alias)
    es = run.es(link.remote)
    records = [e.data for e in run.journal.entries("done", created)]
    ids = {r["key_id"] for r in records if r.get("key_id")}
    ids |= {k.id for k in list_cross_cluster_keys(es, link.remote)
            if (k.metadata.get("esremote") or {}).get("run_id") == run.id
            and (k.metadata.get("esremote") or {}).get("alias") == alias}
    run.journal.intent(step, key_ids=sorted(ids))
    outcomes = [str(invalidate_key(es, link.remote, key_id)) for key_id in sorted(ids)]
    for record in records:
        drop_block(record)
    key_file(run, alias).unlink(missing_ok=True)
    run.journal.done(step, outcomes=outcomes)
    return "; ".join(outcomes) or "no key found"


def credentials_file(run: Run, alias: str) -> str:
    """The 0600 file with the encoded key (restored from the Prefect block when needed)."""
    records = [e.data for e in run.journal.entries("done", f"prepare_remote/api-key/{alias}")]
    return key_file_of(run, alias, records, f"alias {alias}")


# ----------------------------------------------------------------------------------------- roles


@task(name="update-roles", task_run_name="update-roles-{alias}", **RETRYING)
def update_roles(run_id: str, alias: str) -> list[str]:
    """Give the local roles their `remote_indices` (originals in the journal first)."""
    run = get_run(run_id)
    step = f"reconnect/roles/{alias}"
    if run.journal.is_done(step):
        return []
    link = run.link(alias)
    es_local, es_remote = run.es(link.local), run.es(link.remote)
    names = [r.role for r in alias_facts(run, alias).roles]
    remote_roles = _custom_roles(es_remote, link.remote)
    # Only the roles' half is used here; the key's access was checked when the facts were read
    # (with access=from-usage the role copy is a bound, and may be refused as a key of its own).
    derived = privileges.derive_remote_access(alias, {n: remote_roles.get(n) for n in names}, check=False)
    current = privileges.read_roles(es_local, link.local, list(derived.remote_indices))
    plan = privileges.plan_role_updates(derived, current)
    name = split_name(run, alias)
    if name:  # the consented split: roles that search through the alias search through its new alias too
        plan = split_search.plan_split_roles(plan, _custom_roles(es_local, link.local), alias, name)
    first = run.journal.first_intent(step)
    originals = first.data["originals"] if first else plan.originals
    run.journal.intent(step, originals=originals, diff=plan.diff)
    outcomes = privileges.apply_role_updates(es_local, link.local, plan)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


# ----------------------------------------------------------------------------------- the alias


def saved_remote(run: Run, alias: str) -> SavedRemote | None:
    first = run.journal.first_intent(f"reconnect/save-settings/{alias}")
    return SavedRemote.from_dict(first.data["saved"]) if first and first.data.get("saved") else None


@task(name="remove-alias", task_run_name="remove-alias-{alias}", **RETRYING)
def remove_alias(run_id: str, alias: str) -> bool:
    """Save the alias's settings in the journal, then null all of them in one request, and wait
    until `_remote/info` no longer lists the alias."""
    run = get_run(run_id)
    step = f"reconnect/remove-alias/{alias}"
    if run.journal.is_done(step):
        return False
    local = run.link(alias).local
    es = run.es(local)
    current = remote_settings.fetch_remote(es, local, alias)
    if saved_remote(run, alias) is None:
        run.journal.intent(f"reconnect/save-settings/{alias}", saved=current.to_dict() if current else None)
    run.journal.intent(step, cluster=local)
    remote_settings.apply_settings(es, local, remote_settings.plan_removal(current))
    poll(lambda: alias not in remote_info(run, local), timeout=run.params.link_timeout_s,
         what=f"alias {alias} gone from _remote/info", cluster=local)
    run.journal.done(step)
    return True


@task(name="readd-alias", task_run_name="readd-alias-{alias}", **RETRYING)
def readd_alias(run_id: str, alias: str) -> list[str]:
    """The saved alias again, on the remote cluster port (and in the wanted mode)."""
    run = get_run(run_id)
    step = f"reconnect/readd/{alias}"
    if run.journal.is_done(step):
        return []
    saved = saved_remote(run, alias)
    if saved is None:
        raise ClusterError(f"run {run.id} has no saved settings of alias {alias}: cannot re-add it")
    facts = facts_of(run)
    state = alias_facts(run, alias)
    target = target_saved(run.params, facts, state, saved)
    local = state.local
    es = run.es(local)
    run.journal.intent(step, target=target.to_dict())
    port = facts.remote_cluster_port.get(state.remote, 9443)
    calls = remote_settings.plan_readd(remote_settings.fetch_remote(es, local, alias), target, port)
    outcomes = remote_settings.apply_settings(es, local, calls)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


@task(name="reload-secure-settings", task_run_name="reload-secure-settings-{cluster}", **RETRYING)
def reload_credentials(run_id: str, cluster: str, step: str) -> list[str]:
    """POST _nodes/reload_secure_settings on every node (8.13+: credentials are reloadable)."""
    run = get_run(run_id)
    run.journal.intent(step, cluster=cluster)
    result = reload_secure_settings(run.inventory, cluster, es=run.es(cluster))
    run.journal.done(step, reloaded=result.reloaded, keystore_details=result.keystore_details,
                     digests=result.digests, keystore_paths=result.keystore_paths)
    return result.reloaded


# -------------------------------------------------------------------------------------- checks


@task(name="probe-remote-cluster-port", task_run_name="probe-{cluster}", **RETRYING)
def probe(run_id: str, cluster: str, ca_file: str) -> list[str]:
    """A TLS handshake with every node's remote cluster port, verified against the new CA."""
    run = get_run(run_id)
    from pathlib import Path  # noqa: PLC0415

    results = probe_remote_cluster(run.inventory, cluster, Path(ca_file).read_bytes(),
                                   max_workers=run.params.max_parallel)
    return [str(r) for r in results]


def work_patterns(run: Run, alias: str) -> tuple[list[str], list[str]]:
    """Remote index patterns in use and follower indices, from the journal's record of the work."""
    state = alias_facts(run, alias)
    first = run.journal.first_intent(f"stop_cross_cluster_ops/list/{alias}")
    work = first.data.get("work", []) if first else [w.__dict__ for w in state.work]
    patterns: list[str] = []
    for item in work:
        patterns += [p for p in item.get("remote_patterns", []) if p not in patterns and "*" not in p]
    for item in work:
        patterns += [p for p in item.get("remote_patterns", []) if p not in patterns]
    followers = [w["id"] for w in work if w["kind"] == "follower"]
    if state.key_access:  # a pattern only replication reaches (access=from-usage) is checked by its followers
        patterns = [p for p in patterns if key_access.searchable(state.key_access, p)]
    return patterns, followers


@task(name="verify-api-key-link", task_run_name="verify-{alias}", **RETRYING)
def verify_api_key(run_id: str, alias: str, followers: bool = False) -> list[str]:
    """`_remote/info` connected with redacted credentials, `_resolve/cluster`, a search per remote
    index pattern in use; with `followers`, the followers catching up too."""
    run = get_run(run_id)
    patterns, follower_indices = work_patterns(run, alias)
    local = run.link(alias).local
    report = verify_api_key_link(run.inventory, alias, es=run.es(local), pool=run.pool, index_patterns=patterns,
                                 followers=follower_indices if followers else (),
                                 connect_timeout=run.params.link_timeout_s)
    return [str(c) for c in report.checks]


@task(name="verify-certificate-link", task_run_name="verify-certificate-link-{alias}", **RETRYING)
def verify_certificate(run_id: str, alias: str) -> list[str]:
    run = get_run(run_id)
    local = run.link(alias).local
    report = verify_certificate_link(run.inventory, alias, es=run.es(local), pool=run.pool,
                                     connect_timeout=run.params.link_timeout_s)
    return [str(c) for c in report.checks]


# -------------------------------------------------------------------------------------- rollback


@task(name="null-alias", task_run_name="null-alias-{alias}", **RETRYING)
def null_alias(run_id: str, alias: str, step: str) -> list[str]:
    """Remove the alias as it is now (rollback's first change: no link while the model flips back)."""
    run = get_run(run_id)
    local = run.link(alias).local
    es = run.es(local)
    outcomes = remote_settings.apply_settings(es, local, remote_settings.plan_removal(
        remote_settings.fetch_remote(es, local, alias)))
    poll(lambda: alias not in remote_info(run, local), timeout=run.params.link_timeout_s,
         what=f"alias {alias} gone from _remote/info", cluster=local)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


@task(name="restore-roles", task_run_name="restore-roles-{alias}", **RETRYING)
def restore_roles(run_id: str, alias: str, step: str) -> list[str]:
    """Put the local roles back as the journal recorded them before reconnect changed them."""
    run = get_run(run_id)
    first = run.journal.first_intent(f"reconnect/roles/{alias}")
    if first is None:
        return []
    local = run.link(alias).local
    outcomes = privileges.restore_roles(run.es(local), local, first.data["originals"])
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]


@task(name="restore-alias", task_run_name="restore-alias-{alias}", **RETRYING)
def restore_alias(run_id: str, alias: str, step: str) -> list[str]:
    """The alias's saved settings again, exactly (certificate model, transport port)."""
    run = get_run(run_id)
    saved = saved_remote(run, alias)
    if saved is None:
        return []
    local = run.link(alias).local
    es = run.es(local)
    calls = remote_settings.plan_restore(remote_settings.fetch_remote(es, local, alias), saved)
    outcomes = remote_settings.apply_settings(es, local, calls)
    run.journal.done(step, outcomes=[str(o) for o in outcomes])
    return [str(o) for o in outcomes]
