"""From the certificate model's remote roles to the API-key model's two halves (es-facts §3-4):

* `remote_indices` on the local roles of the same names (the local user's half), and
* the cross-cluster API key's `access` (the remote cluster's half).

Under the certificate model the remote cluster authorizes a cross-cluster user by role *name*,
with the remote's definition of that role. Each index entry of such a definition is classified:

* replication (CCR leader): the entry grants `cross_cluster_replication`, or the role has the
  `read_ccr` cluster privilege and the entry grants `monitor`/`read`/`all` (Elastic's leader role);
  it becomes `replication` access and a remote_indices entry with `cross_cluster_replication`;
* search: the entry grants `read`, `read_cross_cluster` or `all` (a replication entry counts as
  search too only when it names `read_cross_cluster` or the role's users are known to search,
  e.g. they own a transform or datafeed on the alias); it becomes `search` access (with its DLS
  `query` and FLS `field_security`) and a remote_indices entry with
  `read, read_cross_cluster, view_index_metadata`;
* anything else (e.g. only `view_index_metadata`) grants no cross-cluster access and is reported.

The key's access is checked the way Elasticsearch checks it (`CrossClusterApiKeyRoleDescriptorBuilder`)
before any request, with Elasticsearch's messages. Role updates PUT the whole role with only
`remote_indices` extended (read-only `transient_metadata` stripped); the originals come back for
`restore_roles`.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from esremote.cluster.calls import ApiCall, Outcome, perform, segment
from esremote.errors import ClusterHTTPError, PreconditionError

SEARCH_PRIVILEGES = ["read", "read_cross_cluster", "view_index_metadata"]
REPLICATION_PRIVILEGES = ["cross_cluster_replication"]
_READ = {"read", "read_cross_cluster", "all"}
_CCR_LEADER = {"monitor", "read", "all"}
_READ_ONLY_FIELDS = ("transient_metadata",)

NO_ACCESS = "must specify non-empty access for either [search] or [replication]"
REPLICATION_DLS = "replication does not support document or field level security"
SEARCH_DLS_WITH_REPLICATION = "search does not support document or field level security if replication is assigned"


def _dls_fls(entry: Mapping[str, Any]) -> bool:
    return entry.get("query") is not None or entry.get("field_security") is not None


def _privileges(entry: Mapping[str, Any]) -> set[str]:
    return {str(p).lower() for p in entry.get("privileges") or []}


def classify(role: Mapping[str, Any], entry: Mapping[str, Any], *, searches: bool = False) -> tuple[bool, bool]:
    """(search, replication) for one index entry of a remote role; `searches` says the role's
    users are known to search remotely (they own transforms or datafeeds on the alias)."""
    privileges = _privileges(entry)
    cluster = {str(p).lower() for p in role.get("cluster") or []}
    replication = "cross_cluster_replication" in privileges or (
        "read_ccr" in cluster and bool(privileges & _CCR_LEADER))
    search = bool(privileges & _READ) and (not replication or searches or "read_cross_cluster" in privileges)
    return search, replication


def _remote_entry(alias: str, entry: Mapping[str, Any], privileges: list[str], *, dls: bool) -> dict:
    out: dict[str, Any] = {"names": list(entry.get("names") or []), "privileges": list(privileges)}
    if dls:
        for key in ("field_security", "query"):
            if entry.get(key) is not None:
                out[key] = copy.deepcopy(entry[key])
    out["allow_restricted_indices"] = bool(entry.get("allow_restricted_indices", False))
    out["clusters"] = [alias]
    return out


def _access_entry(entry: Mapping[str, Any], *, dls: bool) -> dict:
    out: dict[str, Any] = {"names": list(entry.get("names") or [])}
    if dls:
        for key in ("query", "field_security"):
            if entry.get(key) is not None:
                out[key] = copy.deepcopy(entry[key])
    if entry.get("allow_restricted_indices"):
        out["allow_restricted_indices"] = True
    return out


def merge_entries(entries: list[dict]) -> list[dict]:
    """Entries that differ only by names become one (names in first-seen order)."""
    merged: dict[str, dict] = {}
    for entry in entries:
        key = json.dumps({k: v for k, v in entry.items() if k != "names"}, sort_keys=True)
        if key in merged:
            merged[key]["names"] += [n for n in entry["names"] if n not in merged[key]["names"]]
        else:
            merged[key] = copy.deepcopy(entry)
    return list(merged.values())


@dataclass(frozen=True)
class RemoteAccess:
    """The derivation: remote_indices per local role, the key's access, and what was left out."""

    alias: str
    remote_indices: dict[str, list[dict]]
    access: dict[str, list[dict]]
    notes: tuple[str, ...] = ()
    overridden: bool = False


def derive_remote_access(alias: str, remote_roles: Mapping[str, Mapping[str, Any] | None], *,
                         override: Mapping[str, Any] | None = None,
                         remote_version: tuple[int, int] | None = None,
                         search_roles: Collection[str] = (), check: bool = True) -> RemoteAccess:
    """Derive both halves from the remote's definitions of the cross-cluster users' roles.

    `override` replaces the derived key access (it is still checked); `remote_version` (major,
    minor) relaxes the 8.14+ rule on DLS/FLS search with replication for older remotes;
    `search_roles` (e.g. `UsageReport.role_names()`: owners of transforms and datafeeds) get search
    on their readable entries even where the entry also reads like a CCR leader grant. `check=False`
    returns the copy even when Elasticsearch would refuse it as a key's access (the problems become
    notes): `access=from-usage` only uses it as the bound of what the key may hold, and checks its
    own, narrower access (`esremote.cluster.key_access`)."""
    per_role: dict[str, list[dict]] = {}
    search: list[dict] = []
    replication: list[dict] = []
    notes: list[str] = []
    problems: list[str] = []
    for name, role in remote_roles.items():
        if role is None:
            notes.append(f"role {name}: not defined on the remote cluster, so it grants nothing there")
            continue
        entries: list[dict] = []
        for entry in role.get("indices") or []:
            wants_search, wants_replication = classify(role, entry, searches=name in search_roles)
            names = ",".join(entry.get("names") or [])
            if wants_replication:
                if _dls_fls(entry):
                    problems.append(
                        f"role {name} on the remote cluster replicates [{names}] with document or field "
                        f"level security: {REPLICATION_DLS} (Elasticsearch refuses such a cross-cluster "
                        "API key); drop the query/field_security from that entry or pass an explicit access")
                replication.append(_access_entry(entry, dls=False))
                entries.append(_remote_entry(alias, entry, REPLICATION_PRIVILEGES, dls=False))
            if wants_search:
                search.append(_access_entry(entry, dls=True))
                entries.append(_remote_entry(alias, entry, SEARCH_PRIVILEGES, dls=True))
            if not (wants_search or wants_replication):
                notes.append(f"role {name}: [{names}] with privileges {sorted(_privileges(entry))} grants "
                             "neither search nor replication; left out")
        if entries:
            per_role[name] = merge_entries(entries)
    derived = {k: v for k, v in (("search", merge_entries(search)), ("replication", merge_entries(replication))) if v}
    if override is not None:
        check_access(override, remote_version=remote_version, context="the explicit access")
        return RemoteAccess(alias, per_role, copy.deepcopy(dict(override)), tuple(notes), overridden=True)
    if not check:
        return RemoteAccess(alias, per_role, derived, tuple(notes + problems))
    if problems:
        raise PreconditionError("cross-cluster API key: " + "; ".join(problems))
    check_access(derived, remote_version=remote_version,
                 context=f"the access derived from roles {', '.join(remote_roles) or '(none)'}")
    return RemoteAccess(alias, per_role, derived, tuple(notes))


def check_access(access: Mapping[str, Any], *, remote_version: tuple[int, int] | None = None,
                 context: str = "access") -> None:
    """Refuse, with Elasticsearch's own reason, an access a cross-cluster API key cannot have."""
    def refuse(reason: str, fix: str) -> PreconditionError:
        return PreconditionError(f"cross-cluster API key: {context}: {reason}; {fix}")

    if not isinstance(access, Mapping) or set(access) - {"search", "replication"}:
        raise refuse("access takes only [search] and [replication] lists", "fix the access")
    search, replication = access.get("search") or [], access.get("replication") or []
    if not search and not replication:
        raise refuse(NO_ACCESS, "give the cross-cluster users' roles (defined on the remote cluster) "
                                "or an explicit access")
    for kind, entries in (("search", search), ("replication", replication)):
        for entry in entries:
            if not isinstance(entry, Mapping) or not entry.get("names"):
                raise refuse(f"every {kind} entry needs a non-empty [names] list", "fix the access")
            if "privileges" in entry:
                raise refuse(f"{kind} entries must not specify privileges", "remove them")
    if any(_dls_fls(e) for e in replication):
        raise refuse(REPLICATION_DLS, "remove query/field_security from the replication entries")
    if replication and any(_dls_fls(e) for e in search) and (remote_version is None or remote_version >= (8, 14)):
        raise refuse(SEARCH_DLS_WITH_REPLICATION,
                     "use one key for search with DLS/FLS and a separate alias and key for replication, "
                     "or drop the query/field_security, or run with --split-search-alias ALIAS=NAME")


# --- local role updates -----------------------------------------------------------------------

def putable(role: Mapping[str, Any] | None) -> dict[str, Any]:
    """A role as GET returns it, made fit for PUT: read-only fields stripped."""
    return {k: copy.deepcopy(v) for k, v in (role or {}).items() if k not in _READ_ONLY_FIELDS}


def _norm_entry(entry: Mapping[str, Any]) -> str:
    e = dict(entry)
    e.setdefault("allow_restricted_indices", False)
    if isinstance(e.get("query"), Mapping):
        e["query"] = json.dumps(e["query"], sort_keys=True, separators=(",", ":"))
    elif isinstance(e.get("query"), str):
        try:
            e["query"] = json.dumps(json.loads(e["query"]), sort_keys=True, separators=(",", ":"))
        except ValueError:
            pass  # a template or invalid JSON: compare as given
    return json.dumps(e, sort_keys=True)


def _role_text(role: Mapping[str, Any] | None) -> list[str]:
    if role is None:
        return []
    return (json.dumps(role, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)


@dataclass(frozen=True)
class RolePlan:
    """Role PUTs, the originals they replace (None: the role does not exist locally), a diff."""

    calls: tuple[ApiCall, ...] = ()
    originals: dict[str, dict | None] = field(default_factory=dict)
    diff: str = ""
    notes: tuple[str, ...] = ()


def plan_role_updates(derived: RemoteAccess, local_roles: Mapping[str, Mapping[str, Any] | None]) -> RolePlan:
    """Add the derived remote_indices to each local role, keeping everything else as it is.

    Entries already there are not added twice, so a re-run plans nothing. A role missing locally
    is created with only remote_indices; a reserved (built-in) role cannot be changed and is noted."""
    calls, originals, diffs, notes = [], {}, [], []
    for name, wanted in derived.remote_indices.items():
        current = local_roles.get(name)
        if current is not None and (current.get("metadata") or {}).get("_reserved"):
            notes.append(f"role {name}: built-in, cannot be changed (built-in superuser roles already "
                         "reach every remote index)")
            continue
        before = putable(current)
        after = putable(current)
        have = [_norm_entry(e) for e in after.get("remote_indices") or []]
        missing = [e for e in wanted if _norm_entry(e) not in have]
        if not missing:
            continue
        after["remote_indices"] = list(after.get("remote_indices") or []) + copy.deepcopy(missing)
        calls.append(ApiCall("PUT", f"/_security/role/{segment(name)}", after, target=f"role {name}"))
        originals[name] = copy.deepcopy(dict(current)) if current is not None else None
        diffs.append("".join(difflib.unified_diff(
            _role_text(before if current is not None else None), _role_text(after),
            f"role {name} (before)" if current is not None else f"role {name} (absent)",
            f"role {name} (after)")))
    return RolePlan(tuple(calls), originals, "".join(diffs), tuple(notes))


def plan_role_restore(originals: Mapping[str, Mapping[str, Any] | None],
                      current: Mapping[str, Mapping[str, Any] | None]) -> list[ApiCall]:
    """Calls that put each role back as it was: PUT the original, or DELETE a role we created."""
    calls = []
    for name, original in originals.items():
        now = current.get(name)
        if original is None:
            if now is not None:
                calls.append(ApiCall("DELETE", f"/_security/role/{segment(name)}", target=f"role {name}"))
        elif now is None or putable(now) != putable(original):
            calls.append(ApiCall("PUT", f"/_security/role/{segment(name)}", putable(original),
                                 target=f"role {name}"))
    return calls


# --- against a cluster ------------------------------------------------------------------------

def read_roles(es, cluster: str | None, names: Sequence[str]) -> dict[str, dict | None]:
    """Definitions by name (None for a role the cluster does not have)."""
    if not names:
        return {}
    path = "/_security/role/" + ",".join(segment(n) for n in names)
    try:
        found = perform(es, cluster, ApiCall("GET", path))
    except ClusterHTTPError as exc:
        if exc.status != 404:
            raise
        found = {}
    return {name: found.get(name) for name in names}


def apply_role_updates(es, cluster: str | None, plan: RolePlan) -> list[Outcome]:
    """PUT each planned role; nothing planned means every role already has its remote_indices."""
    if not plan.calls:
        return [Outcome("roles", "unchanged", "remote_indices already in place")]
    outcomes = []
    for call in plan.calls:
        response = perform(es, cluster, call)
        created = (response.get("role") or {}).get("created")
        outcomes.append(Outcome(call.target, "changed", "created" if created else "updated", call))
    return outcomes


def restore_roles(es, cluster: str | None, originals: Mapping[str, Mapping[str, Any] | None]) -> list[Outcome]:
    """Put the roles back as they were before `apply_role_updates` (idempotent)."""
    current = read_roles(es, cluster, list(originals))
    calls = plan_role_restore(originals, current)
    outcomes = [Outcome(f"role {name}", "unchanged", "as it was")
                for name in originals if not any(c.target == f"role {name}" for c in calls)]
    for call in calls:
        try:
            perform(es, cluster, call)
        except ClusterHTTPError as exc:
            if not (call.method == "DELETE" and exc.status == 404):
                raise
            outcomes.append(Outcome(call.target, "unchanged", "already gone", call))
            continue
        outcomes.append(Outcome(call.target, "changed", "deleted" if call.method == "DELETE" else "restored", call))
    return outcomes
