"""`access=from-usage`: the cross-cluster API key's access narrowed to what really reads through the
alias, never wider than the copy of the remote roles (`esremote.cluster.privileges`).

What reads through an alias (each a *need*: search or replication of an index pattern there):

* the work that uses it (`esremote.cluster.usage`): transforms and datafeeds search their source
  patterns; followers replicate their leader index, auto-follow patterns their leader patterns.
  Stopped or paused work counts too: resuming it later must not fail;
* the local roles' `remote_indices` entries whose `clusters` match the alias: `read`,
  `read_cross_cluster` or `all` is a search need, `cross_cluster_replication` or `all` a replication
  need. They are the roles as they were before this run (its own role updates copy the remote roles
  and would make every copied entry a need): an operator who wants users to keep searching an index
  interactively gives their local role such an entry before migrating (the certificate model
  ignores it).

Each need is intersected with the role copy entries of its kind: a pattern that a copied name covers
stays as it is, a pattern that covers copied names becomes those names, and the copied entry's DLS
`query`, `field_security` and `allow_restricted_indices` come along, so narrowing the names never
widens what a document or field shows. A need the role copy does not grant is reported: it fails
with either access. Pattern containment is Elasticsearch's `simpleMatch` applied to the pattern
text (`leader-*` covers `leader-l*` and `leader-logs`), which is exact for `*` wildcards.

Effective access in the API-key model is the key's access intersected with the local user's
`remote_indices` (es-facts §4), so what the role copy grants and this key does not is what would stop
working; the review lists it per remote role. A key cannot hold DLS/FLS search together with
replication (8.14+, CVE-2024-23445, es-facts §12): such an access is refused with Elasticsearch's
reason and the two keys a split would need, unless the operator consents to the split
(`split_search_alias`, `esremote.cluster.split_search`).
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from esremote.cluster.privileges import (
    REPLICATION_PRIVILEGES,
    SEARCH_DLS_WITH_REPLICATION,
    RemoteAccess,
    check_access,
    merge_entries,
)
from esremote.cluster.usage import simple_match
from esremote.errors import PreconditionError

Kind = Literal["search", "replication"]
KINDS: tuple[Kind, ...] = ("search", "replication")
WORK_KIND: dict[str, Kind] = {"transform": "search", "datafeed": "search", "follower": "replication",
                              "auto_follow_pattern": "replication"}
_SEARCH = {"read", "read_cross_cluster", "all"}
_REPLICATION = {"cross_cluster_replication", "all"}
_VERB = {"search": "search", "replication": "replicate from"}
_ENTRY_EXTRAS = ("query", "field_security", "allow_restricted_indices")


@dataclass(frozen=True)
class Need:
    """One index pattern on the alias that something searches or replicates."""

    kind: Kind
    pattern: str
    by: str          # "transform ccs-hosts", "role ccs_role (remote_indices)"


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def work_needs(usage: Any) -> list[Need]:
    """From a `UsageReport`: what each piece of work reads through the alias."""
    needs = []
    for item in getattr(usage, "items", ()) or ():
        by = f"{item.kind.replace('_', ' ')} {item.id}" + ("" if item.running else f" ({item.state})")
        needs += [Need(WORK_KIND[item.kind], p, by) for p in item.remote.patterns]
    return needs


def role_needs(alias: str, roles: Mapping[str, Mapping[str, Any] | None]) -> list[Need]:
    """From local role definitions: their `remote_indices` entries that apply to `alias`."""
    needs = []
    for name, role in roles.items():
        for entry in (role or {}).get("remote_indices") or []:
            if not any(simple_match(c, alias) for c in _names(entry.get("clusters"))):
                continue
            privileges = {str(p).lower() for p in entry.get("privileges") or []}
            kinds = [k for k, granted in (("search", _SEARCH), ("replication", _REPLICATION)) if privileges & granted]
            needs += [Need(k, n, f"role {name} (remote_indices)") for k in kinds for n in _names(entry.get("names"))]
    return needs


# --- glob containment -----------------------------------------------------------------------

def covers(outer: str, inner: str) -> bool:
    """Every index `inner` matches, `outer` matches too (`*` wildcards only)."""
    return simple_match(outer, inner)


def _may_overlap(a: str, b: str) -> bool:
    """Two patterns that could match a common name (a cheap test: literal prefixes and suffixes agree)."""
    pa, pb = a.split("*", 1)[0], b.split("*", 1)[0]
    sa, sb = a.rsplit("*", 1)[-1], b.rsplit("*", 1)[-1]
    return (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa))


def within(pattern: str, granted: Sequence[str]) -> list[str]:
    """The part of `pattern` that the names `granted` grant: the pattern itself when one of them covers
    it, else the granted names it covers, or that may overlap it (kept whole: never wider than granted)."""
    if any(covers(g, pattern) for g in granted):
        return [pattern]
    return [g for g in granted if covers(pattern, g) or ("*" in pattern and "*" in g and _may_overlap(pattern, g))]


def _prune(names: list[str]) -> list[str]:
    """Names another name of the list covers are left out (`leader-logs` next to `leader-*`)."""
    kept = []
    for i, name in enumerate(names):
        if not any(covers(other, name) and (other != name or j < i) for j, other in enumerate(names) if j != i):
            kept.append(name)
    return kept


# --- the derivation -------------------------------------------------------------------------

@dataclass(frozen=True)
class AccessReview:
    """The from-usage access next to the role copy it narrows, and why each part is there."""

    alias: str
    access: dict[str, list[dict]]
    role_copy: dict[str, list[dict]]
    serves: tuple[str, ...] = ()        # "search leader-logs: transform ccs-hosts, datafeed ..."
    lost: tuple[str, ...] = ()          # what the role copy allows and this access does not
    ungranted: tuple[str, ...] = ()     # needs neither access grants
    notes: tuple[str, ...] = ()

    @property
    def narrower(self) -> bool:
        """Strictly narrower than the role copy (it is never wider, by construction)."""
        return bool(self.lost)

    def diff(self) -> str:
        def text(access: Mapping[str, Any]) -> list[str]:
            return (json.dumps(access, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)
        return "".join(difflib.unified_diff(text(self.role_copy), text(self.access),
                                            "key access: role-copy", "key access: from-usage"))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "from-usage", "alias": self.alias, "access": self.access, "role_copy": self.role_copy,
                "diff": self.diff(), "serves": list(self.serves), "lost": list(self.lost),
                "ungranted": list(self.ungranted), "notes": list(self.notes), "narrower": self.narrower}


def narrowed_entries(kind: Kind, needs: Sequence[Need],
                     copied: Sequence[Mapping[str, Any]]) -> tuple[list[dict], list[Need]]:
    """The key entries of one kind for `needs`, cut from the copied entries; and the needs none grants."""
    entries: list[dict] = []
    ungranted: list[Need] = []
    for need in needs:
        found = False
        for source in copied:
            names = within(need.pattern, _names(source.get("names")))
            if not names:
                continue
            found = True
            entry: dict[str, Any] = {"names": names}
            for extra in _ENTRY_EXTRAS if kind == "search" else ("allow_restricted_indices",):
                if source.get(extra) not in (None, False):
                    entry[extra] = copy.deepcopy(source[extra])
            entries.append(entry)
        if not found:
            ungranted.append(need)
    merged = merge_entries(entries)
    for entry in merged:
        entry["names"] = _prune(entry["names"])
    return merged, ungranted


def from_usage(role_copy: RemoteAccess, needs: Sequence[Need], *,
               remote_version: tuple[int, int] | None = None, split: bool = False) -> AccessReview:
    """The key's access for `needs`, bounded by `role_copy`; refused (PreconditionError) with
    Elasticsearch's reason when a key cannot hold it (`split`: the operator agreed to split a DLS/FLS
    search with replication over two keys, so that one is not refused here)."""
    alias = role_copy.alias
    access: dict[str, list[dict]] = {}
    ungranted: list[Need] = []
    for kind in KINDS:
        entries, missing = narrowed_entries(kind, [n for n in needs if n.kind == kind],
                                            role_copy.access.get(kind) or [])
        if entries:
            access[kind] = entries
        ungranted += missing
    review = AccessReview(
        alias, access, copy.deepcopy(role_copy.access), tuple(_serves(access, needs)),
        tuple(_lost(role_copy, access)),
        tuple(f"{n.by} would {_VERB[n.kind]} {alias}:{n.pattern}, which no copied remote role grants: it "
              "fails with either access (grant it in a remote role its owner holds)" for n in ungranted),
        role_copy.notes)
    _check(review, remote_version, split=split)
    return review


def _serves(access: Mapping[str, list[dict]], needs: Sequence[Need]) -> list[str]:
    lines = []
    for kind in KINDS:
        for entry in access.get(kind) or []:
            for name in entry["names"]:
                users = list(dict.fromkeys(n.by for n in needs if n.kind == kind
                                           and (covers(name, n.pattern) or covers(n.pattern, name))))
                lines.append(f"{kind} {name}: {', '.join(users)}")
    return lines


def _kind_of(entry: Mapping[str, Any]) -> Kind:
    return "replication" if list(entry.get("privileges") or []) == REPLICATION_PRIVILEGES else "search"


def _lost(role_copy: RemoteAccess, access: Mapping[str, list[dict]]) -> list[str]:
    """Per remote role: the copied names this access no longer grants in full."""
    lines = []
    for role, entries in role_copy.remote_indices.items():
        for entry in entries:
            kind = _kind_of(entry)
            kept = [n for e in access.get(kind) or [] for n in e["names"]]
            for name in _names(entry.get("names")):
                if any(covers(k, name) for k in kept):
                    continue
                inside = [k for k in kept if covers(name, k)]
                rest = f"only {', '.join(inside)}" if inside else "nothing"
                lines.append(f"role {role}: {kind} on {name} narrowed to {rest}: its users can no longer "
                             f"{_VERB[kind]} other indices matching {role_copy.alias}:{name} (403 from the remote)")
    return list(dict.fromkeys(lines))


def searchable(access: Mapping[str, Any], pattern: str) -> bool:
    """Whether a cross-cluster search of `pattern` can pass a key of this `access`: a name it holds
    for search covers the pattern, or (a wildcard pattern, whose unauthorized indices the remote
    leaves out) may match some of it. A pattern only replication reaches is refused by the remote."""
    names = [n for entry in access.get("search") or [] for n in _names(entry.get("names"))]
    return bool(within(pattern, names))


def split_access(access: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two keys a mixed access needs: search (with its DLS/FLS) and replication."""
    return ({"search": copy.deepcopy(list(access.get("search") or []))},
            {"replication": copy.deepcopy(list(access.get("replication") or []))})


def _check(review: AccessReview, remote_version: tuple[int, int] | None, *, split: bool = False) -> None:
    """Refuse, with Elasticsearch's reason, an access a key cannot hold; say what to do instead."""
    context = f"alias {review.alias}: the access derived from usage (access=from-usage)"
    if not review.access:
        raise PreconditionError(
            f"cross-cluster API key: {context}: must specify non-empty access for either [search] or "
            "[replication] (nothing reads through the alias: no work uses it and no local role has "
            "remote_indices for it); give the local roles of the users who search it remote_indices for "
            "the alias, or run with access=role-copy")
    try:
        for part in split_access(review.access) if split else (review.access,):
            if part.get("search") or part.get("replication"):
                check_access(part, remote_version=remote_version, context=context)
    except PreconditionError as exc:
        if SEARCH_DLS_WITH_REPLICATION not in str(exc):
            raise
        search, replication = split_access(review.access)
        raise PreconditionError(
            f"cross-cluster API key: {context}: {SEARCH_DLS_WITH_REPLICATION} (Elasticsearch refuses such "
            "a key); split it over two aliases to the remote cluster, each with its own key: one for the "
            f"searches with access {json.dumps(search, sort_keys=True)}, one for the followers and "
            f"auto-follow patterns with access {json.dumps(replication, sort_keys=True)} (define the second "
            "alias, move the replication onto it, then migrate both), or run with --split-search-alias "
            f"{review.alias}=NAME") from None
