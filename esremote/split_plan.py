"""What the plan says of the consented split (`--split-search-alias`): the new search alias's
settings, the transforms and datafeeds that move to it, and the summary the plan shows. The calls
that make the split are in `esremote.cluster.split_search`. Pure functions of the facts, no I/O.
"""

from __future__ import annotations

from typing import Any

from esremote.alias_target import target_alias_settings, target_saved
from esremote.cluster.remote_settings import SavedRemote, readd_body
from esremote.params import MigrationParams
from esremote.plan_facts import AliasState, MigrationFacts


def split_alias_settings(params: MigrationParams, facts: MigrationFacts, alias: AliasState) -> dict[str, Any]:
    """The new search alias's settings: those the alias gets on the remote cluster port (same mode,
    proxy address or seeds, options), all of them persistent."""
    if alias.defined_in == "yml":
        current = next(iter(alias.yml_settings.values()), {})
        return target_alias_settings(params, facts, alias, current) if current else {}
    if not alias.saved:
        return {}
    target = target_saved(params, facts, alias, SavedRemote.from_dict(alias.saved))
    body = readd_body(alias.alias, target, facts.remote_cluster_port.get(alias.remote, 9443))
    prefix = f"cluster.remote.{alias.alias}."
    return {k[len(prefix):]: v for layer in ("persistent", "transient") for k, v in (body.get(layer) or {}).items()}


def work_moves(alias: AliasState) -> list[str]:
    """What moves to the search alias, one line per transform or datafeed."""
    name = alias.split_alias
    lines = []
    for w in alias.work:
        if w.kind in ("transform", "datafeed") and w.remote_patterns:
            api = "POST _transform/{}/_update (source.index)" if w.kind == "transform" else \
                "POST _ml/datafeeds/{}/_update (indices)"
            moves = ", ".join(f"{alias.alias}:{p} -> {name}:{p}" for p in w.remote_patterns)
            lines.append(f"{w.kind} {w.id}: {moves}; {api.format(w.id)}")
    return lines


def split_summary(params: MigrationParams, facts: MigrationFacts, alias: AliasState) -> dict[str, Any]:
    searching = {"read", "read_cross_cluster", "all"}
    roles = [r.role for r in alias.roles
             if any(searching & {str(p) for p in e.get("privileges") or []} for e in r.remote_indices)]
    return {"alias": alias.split_alias, "remote": alias.remote, "replication_access": alias.key_access,
            "search_access": alias.split["access"], "settings": split_alias_settings(params, facts, alias),
            "moves": work_moves(alias), "roles": roles}
