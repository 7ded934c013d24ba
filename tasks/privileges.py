"""Which roles carry cross-cluster access for an alias, and what the API-key model needs from them
(`esremote.cluster.privileges` does the derivation; this module picks the roles and reads them).

Under the certificate model the remote authorizes a local user by its role *names*, with the
remote's definitions. So the roles that matter are those defined on both clusters (built-in ones
aside), plus the roles that own cross-cluster work (`esremote.cluster.usage`).
"""

from __future__ import annotations

from typing import Any

from esremote.cluster import key_access, privileges, split_search
from esremote.cluster.remote_settings import ApiCall, perform
from esremote.errors import PreconditionError


def _custom_roles(es, cluster: str) -> dict[str, dict]:
    roles = perform(es, cluster, ApiCall("GET", "/_security/role"))
    return {name: body for name, body in roles.items() if not (body.get("metadata") or {}).get("_reserved")}


def cross_cluster_role_names(local_roles: dict[str, dict], remote_roles: dict[str, dict],
                             owner_roles: list[str] = ()) -> list[str]:
    names = [n for n in local_roles if n in remote_roles]
    names += [n for n in owner_roles if n in remote_roles and n not in names]
    return sorted(names)


def alias_access(es_local, local: str, es_remote, remote: str, alias: str,
                 owner_roles: list[str] = (), *, mode: str = "role-copy", usage: Any = None,
                 roles_before: dict[str, dict | None] | None = None, split: str | None = None) -> dict[str, Any]:
    """{"roles": [{role, remote_indices, already}], "access": key access, "notes": [...],
    "role_names": [...], "access_review": from-usage review or None, "split": None or {"alias": NAME,
    "access": the search key's access}} for one alias (read-only).

    `mode` "from-usage" narrows the key's access to what `usage` (a `UsageReport`) and the local
    roles' remote_indices read (`esremote.cluster.key_access`); `roles_before` are the local roles
    as they were before this run changed them (the journal's originals). `split` (the operator's
    consent, `split_search_alias`) names the new search alias: an access Elasticsearch refuses as one
    key (DLS/FLS search with replication) becomes the alias's replication and NAME's search."""
    local_roles = _custom_roles(es_local, local)
    remote_roles = _custom_roles(es_remote, remote)
    names = cross_cluster_role_names(local_roles, remote_roles, list(owner_roles))
    derived = _derive(alias, {n: remote_roles.get(n) for n in names}, check=mode == "role-copy", split=split)
    plan = privileges.plan_role_updates(derived, {n: local_roles.get(n) for n in derived.remote_indices})
    pending = {call.target.removeprefix("role ") for call in plan.calls}
    roles = [{"role": name, "remote_indices": entries, "already": name not in pending}
             for name, entries in derived.remote_indices.items()]
    access, review = derived.access, None
    if mode == "from-usage":
        before = {**local_roles, **(roles_before or {})}
        needs = [*key_access.work_needs(usage), *key_access.role_needs(alias, before)]
        review = key_access.from_usage(derived, needs, split=split is not None).to_dict()
        access = review["access"]
    notes, parted = [*derived.notes, *plan.notes], None
    if split is not None and split_search.needs_split(access):
        access, search = split_search.halves(access)
        parted = {"alias": split, "access": search}
    elif split is not None:
        notes.append(f"split_search_alias {alias}={split}: not needed (the key holds no DLS/FLS search next to "
                     "replication), so no second alias is made")
    return {"roles": roles, "access": access, "notes": notes, "role_names": names, "access_review": review,
            "split": parted}


def _derive(alias: str, remote_roles: dict[str, dict | None], *, check: bool, split: str | None):
    """The role copy; with a consented split, a DLS/FLS search next to replication is not refused
    (each half is checked as its own key), any other refusal stands."""
    if not (check and split):
        return privileges.derive_remote_access(alias, remote_roles, check=check)
    try:
        return privileges.derive_remote_access(alias, remote_roles)
    except PreconditionError as exc:
        if privileges.SEARCH_DLS_WITH_REPLICATION not in str(exc):
            raise
    derived = privileges.derive_remote_access(alias, remote_roles, check=False)
    for half in split_search.halves(derived.access):
        if any(half.values()):
            privileges.check_access(half, context=f"alias {alias}: the split access")
    return derived
