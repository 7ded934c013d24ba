"""The consented split (`split_search_alias`): a key access that Elasticsearch refuses as one key
(DLS/FLS search together with replication, 8.14+, CVE-2024-23445) becomes two keys on two aliases
to the same remote cluster.

Which way round: the existing alias keeps the REPLICATION. A follower index and an auto-follow
pattern record their remote cluster alias and cannot be moved to another one without re-creating
the followers, which copies every leader index again; transforms and datafeeds, by contrast, take a
new source with one update call while they are stopped anyway (the outage). So the new alias gets
the SEARCH access (with its DLS/FLS) in a second key, and what searches moves to it:

* transforms: `source.index` entries `ALIAS:pattern` -> `NAME:pattern` (POST _transform/<id>/_update);
* datafeeds: `indices` likewise (POST _ml/datafeeds/<id>/_update, only while stopped);
* local roles: each `remote_indices` entry for the alias that grants a search privilege also lists
  NAME in its `clusters`, so that users can search through it.

Users' own searches `ALIAS:index` must become `NAME:index`: esremote cannot see or change them,
which is why the split needs the operator's consent. Elasticsearch records the updating user's
roles on a transform or datafeed: after the move (and after a rollback's move back) they run with
the roles of the user esremote connects as.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from esremote.cluster.calls import ApiCall, perform, segment
from esremote.cluster.privileges import RolePlan, _dls_fls, _role_text, putable
from esremote.cluster.usage import simple_match

SEARCHING = ("transform", "datafeed")  # the work that searches, and moves to the search alias
_SEARCH_PRIVILEGES = {"read", "read_cross_cluster", "all"}


def needs_split(access: Mapping[str, Any]) -> bool:
    """Whether Elasticsearch (8.14+) refuses this access as one key: DLS/FLS search with replication."""
    return bool(access.get("replication")) and any(_dls_fls(e) for e in access.get("search") or [])


def halves(access: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(replication access: the alias's key, search access: the new alias's key)."""
    return ({"replication": copy.deepcopy(list(access.get("replication") or []))},
            {"search": copy.deepcopy(list(access.get("search") or []))})


# --- sources ----------------------------------------------------------------------------------

def moved_expression(expression: str, alias: str, name: str) -> str:
    """`ALIAS:pattern` -> `NAME:pattern` in one index expression (comma lists and `-` exclusions
    too); other clusters, local indices and wildcard cluster expressions stay as they are."""
    parts = []
    for part in expression.split(","):
        negated = part.startswith("-")
        cluster, sep, index = part.lstrip("-").partition(":")
        if sep and cluster == alias:
            part = f"{'-' if negated else ''}{name}:{index}"
        parts.append(part)
    return ",".join(parts)


def moved_sources(sources: str | Sequence[str], alias: str, name: str) -> list[str]:
    items = [sources] if isinstance(sources, str) else list(sources)
    return [moved_expression(s, alias, name) for s in items]


def unmovable(sources: str | Sequence[str], alias: str) -> list[str]:
    """Entries that reach the alias through a wildcard cluster expression (`my_*:logs`): left as they
    are (they may mean other aliases too) and named in the plan, to be changed by hand."""
    items = [sources] if isinstance(sources, str) else list(sources)
    out = []
    for item in items:
        for part in item.split(","):
            cluster, sep, _ = part.lstrip("-").partition(":")
            if sep and "*" in cluster and simple_match(cluster, alias):
                out.append(part)
    return out


@dataclass(frozen=True)
class Move:
    """One transform or datafeed: its sources as they were and as they become."""

    kind: str
    id: str
    original: Any          # a transform's whole `source` object; a datafeed's `indices` list
    moved: Any

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "original": self.original, "moved": self.moved}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Move:
        return cls(data["kind"], data["id"], data["original"], data["moved"])

    def call(self, *, back: bool = False) -> ApiCall:
        value = self.original if back else self.moved
        if self.kind == "transform":
            return ApiCall("POST", f"/_transform/{segment(self.id)}/_update", {"source": value},
                           target=f"transform {self.id}")
        return ApiCall("POST", f"/_ml/datafeeds/{segment(self.id)}/_update", {"indices": value},
                       target=f"datafeed {self.id}")


def read_source(es, cluster: str | None, kind: str, work_id: str) -> Any:
    """A transform's `source` object or a datafeed's `indices`, as the cluster has them now."""
    if kind == "transform":
        body = perform(es, cluster, ApiCall("GET", f"/_transform/{segment(work_id)}"))
        return body["transforms"][0]["source"]
    body = perform(es, cluster, ApiCall("GET", f"/_ml/datafeeds/{segment(work_id)}"))
    return body["datafeeds"][0]["indices"]


def plan_move(kind: str, work_id: str, source: Any, alias: str, name: str) -> Move | None:
    """The move of one object's sources; None when nothing in them names the alias."""
    if kind == "transform":
        moved = {**source, "index": moved_sources(source["index"], alias, name)}
        same = moved["index"] == (source["index"] if isinstance(source["index"], list) else [source["index"]])
    else:
        moved = moved_sources(source, alias, name)
        same = moved == (source if isinstance(source, list) else [source])
    return None if same else Move(kind, work_id, copy.deepcopy(source), moved)


# --- roles ------------------------------------------------------------------------------------

def with_search_alias(role: Mapping[str, Any], alias: str, name: str) -> dict[str, Any]:
    """The role with `name` added to the `clusters` of each remote_indices entry for `alias` that
    grants a search privilege (an entry that already matches `name` is left alone)."""
    out = copy.deepcopy(dict(role))
    for entry in out.get("remote_indices") or []:
        clusters = [entry["clusters"]] if isinstance(entry.get("clusters"), str) else list(entry.get("clusters") or [])
        privileges = {str(p).lower() for p in entry.get("privileges") or []}
        if (alias in clusters and privileges & _SEARCH_PRIVILEGES
                and not any(simple_match(c, name) for c in clusters)):
            entry["clusters"] = clusters + [name]
    return out


def plan_split_roles(plan: RolePlan, local_roles: Mapping[str, Mapping[str, Any] | None], alias: str,
                     name: str) -> RolePlan:
    """The role updates with the search alias added: each planned role, and each other local role
    whose remote_indices search through the alias; the originals of all of them, for the rollback."""
    planned = {call.target.removeprefix("role "): call.body for call in plan.calls}
    calls, originals, diffs = [], dict(plan.originals), []
    for role in list(planned) + [n for n in local_roles if n not in planned]:
        current = local_roles.get(role)
        if current is not None and (current.get("metadata") or {}).get("_reserved"):
            continue
        before = planned.get(role) or putable(current)
        after = with_search_alias(before, alias, name)
        if role not in planned and after == before:
            continue
        calls.append(ApiCall("PUT", f"/_security/role/{segment(role)}", after, target=f"role {role}"))
        if role not in originals:
            originals[role] = copy.deepcopy(dict(current)) if current is not None else None
        diffs.append("".join(difflib.unified_diff(
            _role_text(putable(current) if current is not None else None), _role_text(after),
            f"role {role} (before)", f"role {role} (after)")))
    return RolePlan(tuple(calls), originals, "".join(diffs), plan.notes)
