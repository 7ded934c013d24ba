"""Cluster settings: the persistent and transient layers kept in the cluster state over the node's
own elasticsearch.yml, updated like `PUT _cluster/settings` updates them.

* `null` resets a key; a wildcard key (`"cluster.remote.my.*": null`) resets every match.
* Each value parses with its setting's type (node/registry.py); unknown keys are "not
  recognized", static ones "not dynamically updateable".
* Remote-cluster validators on the merged result (yml < persistent < transient), with Elasticsearch's
  texts: the strategy validator (a setting of the other mode) and "remote cluster is not enabled"
  (skip_unavailable and the transport settings without seeds / proxy_address).
* The response echoes what was set, nested, and leaves out reset keys.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from esremote.lab.node import registry
from esremote.lab import errors

_SNIFF_ONLY = ("seeds", "node_connections", "proxy")
_PROXY_ONLY = ("proxy_address", "proxy_socket_connections", "server_name")
_NEEDS_ENABLED = ("skip_unavailable", "transport.ping_schedule", "transport.compress",
                  "transport.compression_scheme")
REMOTE_PREFIX = "cluster.remote."


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested or dotted JSON to flat keys; lists stay lists."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat keys to nested objects (how Elasticsearch prints settings without flat_settings)."""
    out: dict[str, Any] = {}
    for key in sorted(flat):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {} if child is None else {"": child}
            node = child
        node[parts[-1]] = flat[key]
    return out


def as_setting_text(value: Any) -> Any:
    """Settings come back as strings (lists as lists of strings), as Elasticsearch renders them."""
    if isinstance(value, list):
        return [as_setting_text(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


def remote_aliases(flat: dict[str, Any]) -> set[str]:
    aliases = set()
    for key in flat:
        if key.startswith(REMOTE_PREFIX):
            rest = key[len(REMOTE_PREFIX):].split(".")
            if len(rest) >= 2:
                aliases.add(rest[0])
    return aliases


def effective(yml: dict[str, Any], persistent: dict[str, Any], transient: dict[str, Any]) -> dict[str, Any]:
    return {**yml, **persistent, **transient}


def remote_settings(merged: dict[str, Any], alias: str) -> dict[str, Any]:
    """The alias's settings (without the `cluster.remote.<alias>.` prefix), parsed."""
    prefix = f"{REMOTE_PREFIX}{alias}."
    out = {}
    for key, value in merged.items():
        if key.startswith(prefix):
            try:
                out[key[len(prefix):]] = registry.validate_value(key, value)
            except registry.SettingValueError:
                out[key[len(prefix):]] = value
    return out


def _mode(settings: dict[str, Any]) -> str:
    return str(settings.get("mode", "sniff")).lower()


def is_enabled(settings: dict[str, Any]) -> bool:
    """`RemoteConnectionStrategy.isConnectionEnabled`: seeds (sniff) or proxy_address (proxy)."""
    if _mode(settings) == "proxy":
        return bool(settings.get("proxy_address"))
    return bool(settings.get("seeds"))


def validate_remote(merged: dict[str, Any], changed: set[str]) -> None:
    """The cross-setting validators for every alias a changed key belongs to."""
    for key in sorted(changed):
        if not key.startswith(REMOTE_PREFIX):
            continue
        rest = key[len(REMOTE_PREFIX):]
        if "." not in rest:
            continue
        alias, name = rest.split(".", 1)
        if name == "credentials":
            continue
        settings = remote_settings(merged, alias)
        if name not in settings:
            continue  # reset
        mode = _mode(settings)
        if name in _SNIFF_ONLY and mode != "sniff" or name in _PROXY_ONLY and mode != "proxy":
            required = "SNIFF" if name in _SNIFF_ONLY else "PROXY"
            raise errors.IllegalArgument(
                f'Setting "{key}" cannot be used with the configured "{REMOTE_PREFIX}{alias}.mode" '
                f"[required={required}, configured={mode.upper()}]")
    for alias in sorted(remote_aliases({k: None for k in changed})):
        settings = remote_settings(merged, alias)
        if is_enabled(settings):
            continue
        for name in _NEEDS_ENABLED:
            if name in settings:
                raise errors.IllegalArgument(f"Cannot configure setting [{REMOTE_PREFIX}{alias}.{name}] "
                                             "if remote cluster is not enabled.")


def _parse_layer(scope: str, body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise errors.IllegalArgument(f"[{scope}] must be an object")
    return flatten(body)


def apply_update(state: dict, yml: dict[str, Any], body: dict, version: tuple[int, int, int] | None = None) -> dict:
    """Validate and apply a `PUT _cluster/settings` body to `state["settings"]` (settings known to
    the node's `version`); return the answer."""
    unknown = set(body) - {"persistent", "transient"}
    if unknown:
        raise errors.IllegalArgument(f"request [/_cluster/settings] contains unrecognized parameter: "
                                     f"[{sorted(unknown)[0]}]")
    layers = state["settings"]
    answer: dict[str, Any] = {"acknowledged": True}
    new_layers, changed = {}, set()
    for scope in ("persistent", "transient"):
        update = _parse_layer(scope, body.get(scope))
        current = dict(layers.get(scope, {}))
        echoed: dict[str, Any] = {}
        for key, value in update.items():
            if value is None:
                matches = [k for k in current if fnmatch.fnmatchcase(k, key)] if "*" in key else [key]
                for match in matches:
                    if current.pop(match, None) is not None or match == key:
                        changed.add(match)
                continue
            definition = registry.lookup(key, version)
            if definition is None:
                raise errors.IllegalArgument(f"{scope} setting [{key}], not recognized")
            if not definition.dynamic:
                raise errors.IllegalArgument(f"{scope} setting [{key}], not dynamically updateable")
            try:
                definition.parse(key, value)
            except registry.SettingValueError as exc:
                raise errors.IllegalArgument(str(exc)) from None
            current[key] = as_setting_text(value)
            echoed[key] = as_setting_text(value)
            changed.add(key)
        new_layers[scope] = current
        answer[scope] = nest(echoed)
    merged = effective(yml, new_layers["persistent"], new_layers["transient"])
    validate_remote(merged, changed)
    layers.update(new_layers)
    return answer


def render(state: dict, yml: dict[str, Any], *, flat: bool, include_defaults: bool) -> dict:
    """The `GET _cluster/settings` body."""
    layers = state["settings"]
    body: dict[str, Any] = {}
    for scope in ("persistent", "transient"):
        values = layers.get(scope, {})
        body[scope] = dict(sorted(values.items())) if flat else nest(values)
    if include_defaults:
        defaults = {k: as_setting_text(v) for k, v in yml.items()
                    if k not in layers.get("persistent", {}) and k not in layers.get("transient", {})}
        body["defaults"] = dict(sorted(defaults.items())) if flat else nest(defaults)
    return body
