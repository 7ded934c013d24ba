"""A remote cluster alias's settings (`cluster.remote.<alias>.*`): read them, remove the alias, re-add
it on the remote cluster server port (9443), and put back exactly what was there for a rollback.

Facts in, changes out (pyinfra style): `SavedRemote` is what `GET _cluster/settings?flat_settings=true`
says about one alias, per layer (persistent, transient); the `*_body` functions turn it into a
`PUT _cluster/settings` body and the `plan_*` functions into `ApiCall`s (an empty list is a no-op).
For an alias defined statically in elasticsearch.yml, `read_yml_remote` and the `yml_*` functions
give the same transformations as `YmlEdit`s, ready for `EsYml.update(edit.set, edit.unset)`.

Removing an alias means nulling *all* of its keys in one request: nulling only `seeds` while
`skip_unavailable` is set is a 400 (`Cannot configure setting [...] if remote cluster is not
enabled.`), and a key of the other mode is a 400 too, so a mode switch nulls the other mode's keys
in the same request (es-facts §1, §6).

Planned requests are `ApiCall`s and their results `Outcome`s (`esremote.cluster.calls`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from esremote.cluster.calls import ApiCall, Outcome, apply_calls, perform, segment  # noqa: F401 (re-exported)
from esremote.cluster.facts import flatten
from esremote.errors import ConfigError, PreconditionError

LAYERS = ("persistent", "transient")
PREFIX = "cluster.remote."
DEFAULT_REMOTE_CLUSTER_PORT = 9443

# Per-remote dynamic settings (es-facts §1). `credentials` is a secure (keystore-only) setting: it
# never appears in cluster settings and a PUT may not null it, so it is deliberately absent here.
SNIFF_KEYS = ("seeds", "node_connections", "proxy")
PROXY_KEYS = ("proxy_address", "proxy_socket_connections", "server_name")
COMMON_KEYS = ("mode", "skip_unavailable", "transport.ping_schedule", "transport.compress",
               "transport.compression_scheme")
KNOWN_KEYS = COMMON_KEYS + SNIFF_KEYS + PROXY_KEYS

_ALIAS = re.compile(r"^[-\w]+$")  # Elasticsearch's affix-setting namespace, minus dots (ambiguous)


# --- the facts: an alias's settings -------------------------------------------------------------

@dataclass(frozen=True)
class SavedRemote:
    """An alias's settings as found, per layer, keyed by the part after `cluster.remote.<alias>.`.

    Transient settings override persistent ones; both are kept so that a restore is exact."""

    alias: str
    persistent: Mapping[str, Any] = field(default_factory=dict)
    transient: Mapping[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> Mapping[str, Any]:
        return self.persistent if name == "persistent" else self.transient

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers that define the alias, persistent first."""
        return tuple(name for name in LAYERS if self.layer(name))

    @property
    def effective(self) -> dict[str, Any]:
        return {**self.persistent, **self.transient}

    @property
    def mode(self) -> str:
        return str(self.effective.get("mode", "sniff")).lower()

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "persistent": dict(self.persistent),
                "transient": dict(self.transient)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SavedRemote:
        return cls(data["alias"], dict(data.get("persistent") or {}), dict(data.get("transient") or {}))


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias):
        raise ConfigError(f"remote cluster alias {alias!r} is not valid: give the name used in "
                          "cluster.remote.<alias>.* (letters, digits, '_' and '-')")
    return alias


def alias_settings(flat: Mapping[str, Any], alias: str) -> dict[str, Any]:
    """The alias's own settings out of flat settings, keyed by their suffix.

    Only known suffixes count, so alias `prod` does not pick up `cluster.remote.prod.eu.seeds`."""
    prefix = f"{PREFIX}{check_alias(alias)}."
    found = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            suffix = key[len(prefix):]
            if suffix in KNOWN_KEYS or (suffix.startswith("transport.") and "." not in suffix[10:]):
                found[suffix] = value
    return found


def find_remote(settings_response: Mapping[str, Any], alias: str) -> SavedRemote | None:
    """The alias in a `GET _cluster/settings` response (flat or nested), or None."""
    layers = {name: alias_settings(flatten(settings_response.get(name) or {}), alias) for name in LAYERS}
    if not any(layers.values()):
        return None
    return SavedRemote(alias, layers["persistent"], layers["transient"])


def read_remote(settings_response: Mapping[str, Any], alias: str, *, cluster: str | None = None) -> SavedRemote:
    """Like `find_remote`, but an alias that is not there is a `PreconditionError`."""
    saved = find_remote(settings_response, alias)
    if saved is None:
        where = f"cluster {cluster}: " if cluster else ""
        raise PreconditionError(
            f"{where}remote cluster alias '{alias}' is not in the persistent or transient cluster "
            "settings (GET _cluster/settings): check the alias name, or read it from "
            "elasticsearch.yml if it is defined there")
    _check_enabled(saved.effective, alias, saved.layers[0])
    return saved


def _check_enabled(settings: Mapping[str, Any], alias: str, where: str) -> None:
    mode = str(settings.get("mode", "sniff")).lower()
    if mode not in ("sniff", "proxy"):
        raise PreconditionError(f"remote cluster alias '{alias}' ({where}): mode {mode!r} is neither "
                                "sniff nor proxy")
    needed = "seeds" if mode == "sniff" else "proxy_address"
    if not settings.get(needed):
        raise PreconditionError(f"remote cluster alias '{alias}' ({where}) is in {mode} mode but has "
                                f"no {needed}: it is not connected, so there is nothing to migrate")


# --- PUT _cluster/settings bodies ---------------------------------------------------------------

def _full(alias: str, suffix: str) -> str:
    return f"{PREFIX}{alias}.{suffix}"


def _same_alias(alias: str, saved: SavedRemote) -> None:
    if alias != saved.alias:
        raise ValueError(f"the saved settings are those of alias {saved.alias!r}, not {alias!r}")


def removal_body(alias: str, saved: SavedRemote, *, wildcard: bool = False) -> dict[str, Any]:
    """Null every key of the alias in every layer that has one, in one request.

    `wildcard=True` sends `cluster.remote.<alias>.*: null` instead of the explicit keys."""
    _same_alias(alias, saved)
    body: dict[str, Any] = {}
    for name in saved.layers:
        if wildcard:
            body[name] = {_full(alias, "*"): None}
        else:
            body[name] = {_full(alias, k): None for k in sorted(saved.layer(name))}
    return body


def readd_body(alias: str, saved: SavedRemote, port: int = DEFAULT_REMOTE_CLUSTER_PORT,
               addresses: Sequence[str] | str | None = None) -> dict[str, Any]:
    """The alias again, same mode and options, pointing at the remote cluster server port.

    Proxy mode: `proxy_address` gets `port` (or the one explicit address). Sniff mode: every seed
    gets `port` (or the explicit seeds replace them). Everything else is kept as it was."""
    _same_alias(alias, saved)
    return {name: {_full(alias, k): v for k, v in layer.items()}
            for name, layer in _readd_layers(saved, port, addresses).items()}


def _readd_layers(saved: SavedRemote, port: int, addresses,
                  where: str | None = None) -> dict[str, dict[str, Any]]:
    _check_enabled(saved.effective, saved.alias, where or "/".join(saved.layers))
    key = "proxy_address" if saved.mode == "proxy" else "seeds"
    new_addresses = _target_addresses(saved.mode, saved.effective[key], port, addresses, saved.alias)
    layers = {}
    for name in saved.layers:
        layer = dict(saved.layer(name))
        if key in layer:
            layer[key] = new_addresses
        layers[name] = layer
    return layers


def _target_addresses(mode: str, current: Any, port: int, explicit, alias: str) -> Any:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"port: {port!r} is not a TCP port (1-65535)")
    if explicit is not None:
        given = [explicit] if isinstance(explicit, str) else list(explicit)
        for address in given:
            split_address(address, what="addresses")
        if mode == "proxy":
            if len(given) != 1:
                raise ConfigError(f"addresses: proxy mode takes exactly one address, got {len(given)}")
            return given[0]
        if not given:
            raise ConfigError("addresses: sniff mode needs at least one seed")
        return given
    what = f"cluster.remote.{alias}." + ("proxy_address" if mode == "proxy" else "seeds")
    if mode == "proxy":
        return with_port(str(current), port, what=what)
    return [with_port(seed, port, what=what) for seed in as_list(current)]


def as_list(value: Any) -> list[str]:
    """A list setting as given: a YAML/JSON list, or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def split_address(address: str, *, what: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port), with Elasticsearch's messages for bad ones."""
    host, sep, port_text = str(address).strip().rpartition(":")
    if not sep or not host:
        raise PreconditionError(f"{what}: remote hosts need to be configured as [host:port], found "
                                f"[{address}] instead")
    try:
        port = int(port_text)
    except ValueError:
        raise PreconditionError(f"{what}: failed to parse port in [{address}]") from None
    if not 0 < port < 65536:
        raise PreconditionError(f"{what}: port number must be > 0 but was: [{port}]")
    return host, port


def with_port(address: str, port: int, *, what: str) -> str:
    host, _ = split_address(address, what=what)
    return f"{host}:{port}"


def restore_body(saved: SavedRemote) -> dict[str, Any]:
    """Exactly the saved settings, every other known key of the alias nulled (the other mode's
    included), in each layer the alias was saved in. Settings the migration added are thus gone."""
    body: dict[str, Any] = {}
    for name in saved.layers:
        layer = saved.layer(name)
        values = {_full(saved.alias, k): None for k in KNOWN_KEYS if k not in layer}
        values.update({_full(saved.alias, k): v for k, v in layer.items()})
        body[name] = dict(sorted(values.items()))
    return body


# --- plans: bodies as calls, empty when the cluster already says so -------------------------------

def _settings_call(alias: str, body: dict[str, Any], why: str) -> ApiCall:
    return ApiCall("PUT", "/_cluster/settings", body, {"flat_settings": "true"},
                   target=f"alias {alias} ({why})")


def plan_removal(current: SavedRemote | None, *, wildcard: bool = False) -> list[ApiCall]:
    """Remove the alias as it is now; nothing when it is already gone."""
    if current is None:
        return []
    return [_settings_call(current.alias, removal_body(current.alias, current, wildcard=wildcard),
                           "remove")]


def plan_readd(current: SavedRemote | None, saved: SavedRemote,
               port: int = DEFAULT_REMOTE_CLUSTER_PORT,
               addresses: Sequence[str] | str | None = None) -> list[ApiCall]:
    """Re-add the saved alias on `port`; nothing when the cluster already has exactly that."""
    target = _readd_layers(saved, port, addresses)
    return _plan_towards(current, saved.alias, target, readd_body(saved.alias, saved, port, addresses),
                         "re-add")


def plan_restore(current: SavedRemote | None, saved: SavedRemote) -> list[ApiCall]:
    """Put the saved settings back; nothing when the cluster already has exactly them."""
    target = {name: dict(saved.layer(name)) for name in saved.layers}
    return _plan_towards(current, saved.alias, target, restore_body(saved), "restore")


def _plan_towards(current: SavedRemote | None, alias: str, target: dict[str, dict[str, Any]],
                  body: dict[str, Any], why: str) -> list[ApiCall]:
    if current is not None and all(_same(current.layer(n), target.get(n, {})) for n in LAYERS):
        return []
    if current is not None:  # keys the cluster has and the target lacks go in the same request
        for name in current.layers:
            layer = body.setdefault(name, {})
            for key in sorted(current.layer(name)):
                if key not in target.get(name, {}):
                    layer.setdefault(_full(alias, key), None)
    return [_settings_call(alias, body, why)]


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as Elasticsearch stores them: scalars as strings, lists as lists of strings."""
    def norm(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [norm(v) for v in value]
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)
    return {k: norm(v) for k, v in a.items()} == {k: norm(v) for k, v in b.items()}


# --- reading and applying against a cluster -------------------------------------------------------

def fetch_remote(es, cluster: str | None, alias: str) -> SavedRemote | None:
    """The alias's settings now (persistent and transient), or None when it is not defined."""
    response = perform(es, cluster, ApiCall("GET", "/_cluster/settings", params={"flat_settings": "true"}))
    return find_remote(response, alias)


def apply_settings(es, cluster: str | None, calls: Sequence[ApiCall]) -> list[Outcome]:
    """Apply planned settings calls; an empty plan reports the alias as already in its target state."""
    if not calls:
        return [Outcome("cluster settings", "unchanged", "already in the target state")]
    return apply_calls(es, cluster, calls)


# --- the static case: elasticsearch.yml on each node --------------------------------------------

@dataclass(frozen=True)
class YmlEdit:
    """Setting changes for one node's elasticsearch.yml: `EsYml.update(edit.set, edit.unset)`."""

    set: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.unset)


def read_yml_remote(per_node: Mapping[str, Mapping[str, Any]], alias: str) -> dict[str, dict[str, Any]]:
    """Each node's settings of the alias (by suffix) from its flat elasticsearch.yml settings.

    A node whose file does not define the alias is left out; none at all is a `PreconditionError`."""
    found = {node: alias_settings(flat, alias) for node, flat in per_node.items()}
    found = {node: settings for node, settings in found.items() if settings}
    if not found:
        raise PreconditionError(f"remote cluster alias '{alias}' is not defined in elasticsearch.yml "
                                f"on any of the nodes read ({', '.join(sorted(per_node)) or 'none'})")
    for node, settings in found.items():
        _check_enabled(settings, alias, f"elasticsearch.yml on {node}")
    return found


def yml_removal(alias: str, saved: Mapping[str, Mapping[str, Any]]) -> dict[str, YmlEdit]:
    """Remove every key of the alias from each node's file."""
    return {node: YmlEdit(unset=tuple(_full(alias, k) for k in sorted(settings)))
            for node, settings in saved.items()}


def yml_readd(alias: str, saved: Mapping[str, Mapping[str, Any]], port: int = DEFAULT_REMOTE_CLUSTER_PORT,
              addresses: Sequence[str] | str | None = None) -> dict[str, YmlEdit]:
    """The alias again in each node's file, moved to `port` as `readd_body` does."""
    edits = {}
    for node, settings in saved.items():
        moved = _readd_layers(SavedRemote(alias, persistent=settings), port, addresses,
                              f"elasticsearch.yml on {node}")["persistent"]
        edits[node] = YmlEdit(set={_full(alias, k): v for k, v in moved.items()})
    return edits


def yml_restore(alias: str, saved: Mapping[str, Mapping[str, Any]],
                current: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, YmlEdit]:
    """Each node's saved settings back; keys of the alias that the node has now (per `current`, its
    flat settings) but did not have before are removed."""
    edits = {}
    for node, settings in saved.items():
        now = alias_settings((current or {}).get(node, {}), alias)
        edits[node] = YmlEdit(set={_full(alias, k): v for k, v in settings.items()},
                              unset=tuple(_full(alias, k) for k in sorted(now) if k not in settings))
    return edits
