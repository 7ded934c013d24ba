"""The alias's settings on the remote cluster port: what the reconnect phase re-adds (an alias in
the cluster settings) or writes into elasticsearch.yml (an alias defined there), in the connection
mode the run asks for. Used by the plan and by the apply steps alike (tasks/cluster.py,
flows/reconnect.py). Pure functions of the facts, no I/O.
"""

from __future__ import annotations

from typing import Any

from esremote.cluster.remote_settings import SavedRemote, split_address
from esremote.params import MigrationParams
from esremote.plan_facts import AliasState, MigrationFacts


def target_saved(params: MigrationParams, facts: MigrationFacts, alias: AliasState,
                 saved: SavedRemote) -> SavedRemote:
    """The alias's settings to re-add, before the port move: the saved ones, in the wanted mode."""
    mode = saved.mode if params.connection_mode == "keep" else params.connection_mode
    if mode == saved.mode:
        return saved
    return SavedRemote(saved.alias, **{layer: switch_mode(dict(saved.layer(layer)), mode, facts, alias)
                                       for layer in saved.layers})


def target_alias_settings(params: MigrationParams, facts: MigrationFacts, alias: AliasState,
                          current: dict[str, Any]) -> dict[str, Any]:
    """An alias defined in elasticsearch.yml: its settings on the remote cluster port."""
    from esremote.cluster.remote_settings import yml_readd  # noqa: PLC0415

    mode = str(current.get("mode", "sniff")).lower()
    wanted = mode if params.connection_mode == "keep" else params.connection_mode
    settings = switch_mode(dict(current), wanted, facts, alias) if wanted != mode else dict(current)
    port = facts.remote_cluster_port.get(alias.remote, 9443)
    edit = yml_readd(alias.alias, {"n": settings}, port)["n"]
    prefix = f"cluster.remote.{alias.alias}."
    return {k[len(prefix):]: v for k, v in edit.set.items()}


def switch_mode(settings: dict[str, Any], mode: str, facts: MigrationFacts, alias: AliasState) -> dict[str, Any]:
    """Settings of the other mode: proxy points at the first remote node, sniff seeds up to three."""
    from esremote.cluster.remote_settings import PROXY_KEYS, SNIFF_KEYS  # noqa: PLC0415

    port = facts.remote_cluster_port.get(alias.remote, 9443)
    addresses = [f"{n.address}:{port}" for n in facts.nodes_of(alias.remote)]
    drop = SNIFF_KEYS if mode == "proxy" else PROXY_KEYS
    out = {k: v for k, v in settings.items() if k not in drop}
    out["mode"] = mode
    if mode == "proxy":
        out["proxy_address"] = addresses[0]
    else:
        out["seeds"] = addresses[:3]
    for address in addresses[:1]:
        split_address(address, what=f"remote cluster {alias.remote} node address")
    return out
