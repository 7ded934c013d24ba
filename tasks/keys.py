"""Tasks of the key's life after the migration: which key an alias uses, and the steps of a rotation.
Each step journals its intent before it changes anything and `done` after, and is skipped when the
journal says it is done, so a resumed rotation never repeats one.

Journal steps of a rotation (per alias A):
    rotate/old-key/A              done: the key the local nodes use (id, access, metadata, lifetime) and
                                  where its value is kept to be put back (slot `previous`)
    rotate/create-key/A           done: the new key's id, expiration, where its value is (slot `next`)
    rotate/keystore/A/NODE        (keystore_add) the new value in the node's keystore
    rotate/reload/A               every local node reloaded its secure settings
    rotate/verify/A               every node holds and uses the new key
    rotate/invalidate-old/A       intent: from here on there is no way back; done: the old key invalid
    rotate/commit/A               done: the new key is the alias's key (main slot), key id, local, remote
    rotate/rollback/A             note: the rollback started (then rotate/rollback/keystore/A/NODE,
                                  rotate/rollback/reload/A, rotate/rollback/invalidate-new/A)
    rotate/end/A                  note: rotated | rolled-back | failed
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import task

from esremote.cluster import facts as cluster_facts
from esremote.cluster.api_key import (
    access_for_create,
    access_hash,
    create_key,
    get_key,
    invalidate_key,
    key_name,
    list_cross_cluster_keys,
)
from esremote.errors import ClusterError, EsRemoteError, PreconditionError
from esremote.key_inventory import (
    credentials_setting,
    key_id_of,
    node_keystore,
    read_alias_usage,
    unfinished_rotations,
)
from esremote.verify import Check, VerificationError, verify_api_key_link
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.runtime import Run, get_run
from esremote.tasks.secret_store import drop_block, load_key, store_key

PHASE = "rotate"


def step(kind: str, alias: str, node: str | None = None) -> str:
    return f"{PHASE}/{kind}/{alias}" + (f"/{node}" if node else "")


def done_data(run: Run, name: str) -> dict[str, Any] | None:
    entries = run.journal.entries("done", name)
    exact = [e for e in entries if e.step == name]
    return exact[-1].data if exact else None


def key_value_file(run: Run, alias: str, slot: str) -> str:
    """The 0600 file with a slot's encoded key (restored from its Prefect block when needed)."""
    which = {"previous": "old-key", "next": "create-key"}[slot]
    data = done_data(run, step(which, alias)) or {}
    record = data.get("record")
    value = load_key(run, alias, record)
    if value is None or not record or not record.get("path"):
        raise ClusterError(f"rotation run {run.id}: the {slot} key of alias {alias} is not where the run kept it "
                           f"({(record or {}).get('kind', 'nowhere')}); cannot write it to the keystores")
    return record["path"]


# ------------------------------------------------------------------------------------ the old key


@task(name="rotation-start", task_run_name="rotation-start-{alias}", **RETRYING)
def rotation_start(run_id: str, alias: str) -> dict[str, Any]:
    """Check that the alias can be rotated without a restart and find the key it uses now: every
    local node 8.13+, every node's keystore read and holding the same key, a key esremote made for
    this alias. Its value is kept (slot `previous`) to be put back if anything fails."""
    run = get_run(run_id)
    name = step("old-key", alias)
    earlier = done_data(run, name)
    if earlier is not None:
        return earlier
    link = run.link(alias)
    facts = cluster_facts.gather(run.es(link.local), link.local)
    if not facts.reloads_credentials:
        old = [f"{n.name} ({n.version_text})" for n in facts.nodes if n.version < cluster_facts.RELOADABLE_CREDENTIALS]
        raise PreconditionError(
            f"alias {alias}: rotation without a restart needs Elasticsearch 8.13 or later on every node of "
            f"{link.local} (cluster.remote.*.credentials are reloadable from 8.13); older: "
            f"{', '.join(old) or 'no nodes reported'}. esremote rotate does not restart nodes: upgrade first, "
            "or rotate by hand (new key, keystore on every node, rolling restart, then invalidate the old key)")
    others = [r for r, aliases in unfinished_rotations(run.params.state_dir).items() if alias in aliases and r != run.id]
    if others:
        raise PreconditionError(f"alias {alias}: rotation run {', '.join(others)} has not ended; resume it "
                                f"(esremote rotate --resume RUN_ID) before starting another")
    usage = read_alias_usage(run.inventory, alias, run.pool, state_dir=run.params.state_dir,
                             max_workers=run.params.max_parallel)
    if usage.errors:
        raise ClusterError(f"alias {alias}: rotation writes every local node's keystore, and these could not be "
                           f"read: {usage.describe()}", cluster=link.local, transient=False)
    if not usage.key_ids:
        raise PreconditionError(f"alias {alias}: no local node has {credentials_setting(alias)}: the alias is on "
                                "the certificate model; migrate it first (esremote migrate)")
    if usage.split:
        raise PreconditionError(f"alias {alias}: the local nodes hold different keys ({usage.describe()}); make "
                                "them agree first (an interrupted rotation: resume it with esremote rotate "
                                "--resume RUN_ID)")
    old_id = usage.key_ids[0]
    key = get_key(run.es(link.remote), link.remote, old_id)
    if key is None:
        raise PreconditionError(f"alias {alias}: the local nodes use key {old_id}, which {link.remote} does not "
                                "know, so its access cannot be copied; re-run the migration's key step "
                                "(esremote migrate) instead")
    if not key.managed:
        raise PreconditionError(f"alias {alias}: key {old_id} ({key.name!r}) was not made by esremote (no "
                                "managed_by: esremote metadata); it may serve other clusters too, so esremote "
                                "does not replace and invalidate it")
    if key.owner is not None and key.owner != (link.local, alias):
        raise PreconditionError(f"alias {alias}: key {old_id} was made for alias {key.owner[1]} of "
                                f"{key.owner[0]}; invalidating it would break that alias")
    if key.state(int(time.time() * 1000)) != "active":
        run_logger().warning("alias %s: the key in use, %s, is %s: the new key repairs the link", alias, old_id,
                             key.state(int(time.time() * 1000)))
    run.journal.intent(name, old_key_id=old_id, local=link.local, remote=link.remote)
    first = run.node(f"{link.local}/{sorted(usage.by_node)[0]}")
    value = node_keystore(first, run.pool).show(credentials_setting(alias))
    if value is None or key_id_of(value.get_secret_value()) != old_id:
        raise ClusterError(f"alias {alias}: the keystore of {first} changed while it was read; run again",
                           cluster=link.local, transient=True)
    record = store_key(run, alias, old_id, value, slot="previous")
    data = {"old_key_id": old_id, "local": link.local, "remote": link.remote, "name": key.name,
            "access": dict(key.access), "metadata": dict(key.metadata), "lifetime": key.lifetime(),
            "expiration": key.expiration, "state": key.state(int(time.time() * 1000)), "record": record,
            "nodes": sorted(usage.by_node), "certificate_identity": key.certificate_identity}
    run.journal.done(name, **data)
    return data


# ------------------------------------------------------------------------------------ the new key


@task(name="create-rotated-key", task_run_name="create-rotated-key-{alias}", **RETRYING)
def create_rotated_key(run_id: str, alias: str) -> dict[str, Any]:
    """A new cross-cluster key with the old one's access and metadata (esremote's fields renewed),
    named like it, expiring after `key_expiration` (else the old key's lifetime). A create that
    may have happened without its done record (the orchestrator died) is undone first: its value
    was never kept."""
    run = get_run(run_id)
    name = step("create-key", alias)
    earlier = done_data(run, name)
    if earlier is not None:
        return earlier
    old = done_data(run, step("old-key", alias))
    if old is None:
        raise RuntimeError(f"rotation run {run.id}: no record of alias {alias}'s current key")
    es, remote = run.es(old["remote"]), old["remote"]
    if run.journal.first_intent(name) is not None:
        for key in list_cross_cluster_keys(es, remote):
            own = key.metadata.get("esremote") or {}
            if own.get("run_id") == run.id and own.get("alias") == alias and not key.invalidated:
                invalidate_key(es, remote, key.id)
                run.journal.note(name, invalidated_unrecorded=key.id)
    access = access_for_create(old["access"])
    expiration = run.params.key_expiration or old.get("lifetime")
    metadata = {k: v for k, v in (old.get("metadata") or {}).items()}
    metadata["managed_by"] = "esremote"
    metadata["esremote"] = {**(metadata.get("esremote") if isinstance(metadata.get("esremote"), dict) else {}),
                            "run_id": run.id, "alias": alias, "local_cluster": old["local"],
                            "access_sha256": access_hash(access), "rotated_from": old["old_key_id"]}
    run.journal.intent(name, name=key_name(old["local"], alias), expiration=expiration,
                       access_sha256=metadata["esremote"]["access_sha256"])
    key_id, encoded = create_key(es, remote, name=key_name(old["local"], alias), access=access, metadata=metadata,
                                 expiration=expiration, identity=old.get("certificate_identity"))
    record = store_key(run, alias, key_id, encoded, slot="next")
    info = get_key(es, remote, key_id)
    data = {"key_id": key_id, "expiration": expiration, "expires_at": info.expiration if info else None,
            "record": record}
    run.journal.done(name, **data)
    run_logger().info("alias %s: new cross-cluster API key %s (expires: %s)", alias, key_id, expiration or "never")
    return data


# ------------------------------------------------------------------------------------ verification


def keystore_checks(run: Run, alias: str, expected: str) -> list[Check]:
    """Each local node's keystore holds `expected` for the alias (read back over SSH)."""
    local = run.link(alias).local
    usage = read_alias_usage(run.inventory, alias, run.pool, max_workers=run.params.max_parallel)
    checks = []
    for node in sorted(set(usage.by_node) | set(usage.errors)):
        if node in usage.errors:
            checks.append(Check(f"keystore[{node}]", False, f"cannot read it: {usage.errors[node]}", node=node))
        else:
            found = usage.by_node[node]
            checks.append(Check(f"keystore[{node}]", found == expected,
                                f"{credentials_setting(alias)} holds key {found}"
                                + ("" if found == expected else f", not {expected}"), node=node))
    if not checks:
        checks.append(Check(f"keystore[{local}]", False, "no local node in the inventory"))
    return checks


def verify_key_in_use(run: Run, alias: str, key_id: str) -> list[str]:
    """Every node's keystore holds the key, then every node with the remote_cluster_client role, at
    its own address, is connected with credentials and coordinates a cross-cluster request
    (`_resolve/cluster` from 8.13): a node that loaded another value fails there (es-facts §12)."""
    local = run.link(alias).local
    report = verify_api_key_link(run.inventory, alias, es=run.es(local), pool=run.pool,
                                 connect_timeout=run.params.link_timeout_s, check=False)
    report.checks[:0] = keystore_checks(run, alias, key_id)
    if not report.ok:
        raise VerificationError(report)
    return [str(c) for c in report.checks]


@task(name="verify-rotation", task_run_name="verify-rotation-{alias}", **RETRYING)
def verify_rotation(run_id: str, alias: str) -> list[str]:
    run = get_run(run_id)
    name = step("verify", alias)
    if run.journal.is_done(name):
        return []
    new = done_data(run, step("create-key", alias)) or {}
    lines = verify_key_in_use(run, alias, new["key_id"])
    run.journal.done(name, checks=lines)
    return lines


# ------------------------------------------------------------------------------ no way back from here


@task(name="invalidate-old-key", task_run_name="invalidate-old-key-{alias}", **RETRYING)
def invalidate_old_key(run_id: str, alias: str) -> str:
    run = get_run(run_id)
    name = step("invalidate-old", alias)
    old = done_data(run, step("old-key", alias)) or {}
    if run.journal.is_done(name):
        return old.get("old_key_id", "")
    run.journal.intent(name, key_id=old["old_key_id"])
    outcome = invalidate_key(run.es(old["remote"]), old["remote"], old["old_key_id"])
    run.journal.done(name, key_id=old["old_key_id"], outcome=str(outcome))
    return str(outcome)


@task(name="commit-rotation", task_run_name="commit-rotation-{alias}", **RETRYING)
def commit_rotation(run_id: str, alias: str) -> dict[str, Any]:
    """The new key becomes the alias's key where the migration keeps it (Prefect Secret block or the
    run's file); the blocks of the `previous` and `next` slots go."""
    run = get_run(run_id)
    name = step("commit", alias)
    earlier = done_data(run, name)
    if earlier is not None:
        return earlier
    old = done_data(run, step("old-key", alias)) or {}
    new = done_data(run, step("create-key", alias)) or {}
    value = load_key(run, alias, new.get("record"))
    if value is None:
        raise ClusterError(f"rotation run {run.id}: the new key of alias {alias} is no longer where the run kept "
                           "it; it is in every keystore and in use, so only the record is missing")
    record = store_key(run, alias, new["key_id"], value)
    data = {"key_id": new["key_id"], "old_key_id": old.get("old_key_id"), "local": old.get("local"),
            "remote": old.get("remote"), "record": record, "expiration": new.get("expiration"),
            "expires_at": new.get("expires_at")}
    run.journal.done(name, **data)
    for slot_record in (old.get("record"), new.get("record")):
        drop_block(slot_record)
    return data


# ------------------------------------------------------------------------------------------ rollback


@task(name="invalidate-new-key", task_run_name="invalidate-new-key-{alias}", **RETRYING)
def invalidate_new_key(run_id: str, alias: str) -> str:
    """Rollback's last step: the new key (in no keystore any more) is invalidated; a create whose
    record is missing is found by its metadata (this run, this alias)."""
    run = get_run(run_id)
    name = f"{PHASE}/rollback/invalidate-new/{alias}"
    old = done_data(run, step("old-key", alias)) or {}
    new = done_data(run, step("create-key", alias))
    if run.journal.first_intent(step("create-key", alias)) is None:
        run.journal.done(name, outcome="no new key was created")
        return "no new key was created"
    es, remote = run.es(old["remote"]), old["remote"]
    ids = [new["key_id"]] if new else [
        k.id for k in list_cross_cluster_keys(es, remote)
        if (k.metadata.get("esremote") or {}).get("run_id") == run.id
        and (k.metadata.get("esremote") or {}).get("alias") == alias and k.id != old.get("old_key_id")]
    run.journal.intent(name, key_ids=ids)
    outcomes = [str(invalidate_key(es, remote, key_id)) for key_id in ids]
    run.journal.done(name, outcomes=outcomes)
    drop_block((new or {}).get("record"))
    return "; ".join(outcomes) or "no new key found"


def rollback_verify(run: Run, alias: str) -> list[str]:
    """After the rollback: the old key back in every keystore and working on every node."""
    old = done_data(run, step("old-key", alias)) or {}
    name = f"{PHASE}/rollback/verify/{alias}"
    try:
        lines = verify_key_in_use(run, alias, old["old_key_id"])
    except EsRemoteError as exc:
        run.journal.note(name, ok=False, error=str(exc))
        raise
    run.journal.done(name, checks=lines)
    return lines


# ------------------------------------------------------------------------------------- the report


def key_report(inventory, *, aliases=None, state_dir=None, pool=None):
    """`esremote.key_inventory.gather_report` with the inventory's clients and an SSH pool (closed
    afterwards when it is made here)."""
    from esremote.cluster.client import connect  # noqa: PLC0415
    from esremote.key_inventory import gather_report  # noqa: PLC0415
    from esremote.ssh import SSHPool  # noqa: PLC0415
    from esremote.tasks.runtime import remember_cluster_secrets  # noqa: PLC0415

    own_pool = pool is None
    pool = pool or SSHPool()
    clients: dict[str, Any] = {}

    def es_of(cluster: str):
        if cluster not in clients:
            spec = inventory.cluster(cluster)
            remember_cluster_secrets(spec)
            clients[cluster] = connect(spec)
        return clients[cluster]

    try:
        report = gather_report(inventory, pool, es_of, aliases=aliases, state_dir=state_dir)
        return report, es_of
    finally:
        if own_pool:
            pool.close()


@task(name="key-report", task_run_name="key-report-{label}", **RETRYING)
def key_report_task(inventory_path: str, aliases: list[str], state_dir: str | None, label: str = "all"):
    """The key report of the aliases (all of the inventory's when empty)."""
    from esremote.inventory import load_inventory  # noqa: PLC0415

    report, _ = key_report(load_inventory(inventory_path), aliases=aliases or None,
                           state_dir=Path(state_dir) if state_dir else None)
    return report
