"""Which roles carry cross-cluster access for an alias, and what the API-key model needs from them
(`esremote.cluster.privileges` does the derivation; this module picks the roles and reads them).

Under the certificate model the remote authorizes a local user by its role *names*, with the
remote's definitions. So the roles that matter are those defined on both clusters (built-in ones
aside), plus the roles that own cross-cluster work (`esremote.cluster.usage`).
"""

from __future__ import annotations

from typing import Any

from esremote.cluster import key_access, privileges
from esremote.cluster.remote_settings import ApiCall, perform


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
                 roles_before: dict[str, dict | None] | None = None) -> dict[str, Any]:
    """{"roles": [{role, remote_indices, already}], "access": key access, "notes": [...],
    "role_names": [...], "access_review": from-usage review or None} for one alias (read-only).

    `mode` "from-usage" narrows the key's access to what `usage` (a `UsageReport`) and the local
    roles' remote_indices read (`esremote.cluster.key_access`); `roles_before` are the local roles
    as they were before this run changed them (the journal's originals)."""
    local_roles = _custom_roles(es_local, local)
    remote_roles = _custom_roles(es_remote, remote)
    names = cross_cluster_role_names(local_roles, remote_roles, list(owner_roles))
    derived = privileges.derive_remote_access(alias, {n: remote_roles.get(n) for n in names},
                                              check=mode == "role-copy")
    plan = privileges.plan_role_updates(derived, {n: local_roles.get(n) for n in derived.remote_indices})
    pending = {call.target.removeprefix("role ") for call in plan.calls}
    roles = [{"role": name, "remote_indices": entries, "already": name not in pending}
             for name, entries in derived.remote_indices.items()]
    access, review = derived.access, None
    if mode == "from-usage":
        before = {**local_roles, **(roles_before or {})}
        needs = [*key_access.work_needs(usage), *key_access.role_needs(alias, before)]
        review = key_access.from_usage(derived, needs).to_dict()
        access = review["access"]
    return {"roles": roles, "access": access, "notes": [*derived.notes, *plan.notes],
            "role_names": names, "access_review": review}
