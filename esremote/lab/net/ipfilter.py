"""Elasticsearch's IP filtering (x-pack `IPFilter`) on a node's ports: which peer addresses may
open a connection on the transport port (profile `default`), the remote-cluster server port
(`_remote_cluster`), a transport profile of its own, and HTTP (`.http`).

What Elasticsearch does, and the lab with it:

* Rules per profile, in order: the node's own bound address (`xpack.security.filter.always_allow_bound_address`,
  default true, so a node can never lock itself out), then every `allow` value, then every `deny`
  value; the first rule that matches decides, and an address no rule matches is accepted. Allow
  therefore wins over deny.
* A value is `_all` (alone), a CIDR block (`10.0.0.0/8`, one per value), an IP address, or a host
  name pattern (`localhost` means every loopback and local address; `*` and `?` wildcards are matched
  against the peer's host name, which is its address when it has no name); a value may hold several
  addresses or names separated by commas.
* `default`: `xpack.security.transport.filter.allow` / `.deny`. `_remote_cluster`:
  `xpack.security.remote_cluster.filter.allow` / `.deny`, each falling back to the transport one when
  not set (IPFilterTests#testThatRemoteAccessFallsBackToDefault). A profile `p`:
  `transport.profiles.p.xpack.security.filter.*`. `.http`: `xpack.security.http.filter.*`, falling back
  to `transport.profiles.default.xpack.security.filter.*`, then to the transport ones.
* `xpack.security.transport.filter.enabled` (default true) switches the transport, profile and
  remote-cluster filters, `xpack.security.http.filter.enabled` the HTTP one. Every setting is dynamic:
  the node's yml, overridden by persistent, overridden by transient cluster settings.
* Only a licence that includes IP filtering (gold and up, trial) enforces it; on basic every
  address is accepted.
* A denied peer's connection is accepted and closed at once, before TLS and before any request;
  with default logging Elasticsearch writes nothing about it (the audit trail's `connection_denied`
  only when auditing is on). The client sees its connection reset during the handshake.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from typing import Any

from esremote.lab.node.registry import SettingValueError, parse_bool, parse_list

TRANSPORT = "default"
REMOTE_CLUSTER = "_remote_cluster"
HTTP = ".http"
_LICENSED = ("gold", "platinum", "enterprise", "trial")
_SECURITY = "xpack.security."


@dataclass(frozen=True)
class Rule:
    """One rule: `allow` or deny, its text as Elasticsearch prints it (`allow 10.0.0.1`)."""

    allow: bool
    text: str
    everything: bool = False
    network: Any = None                 # ipaddress network (CIDR rule)
    addresses: tuple = ()               # exact addresses
    localhost: bool = False
    names: re.Pattern | None = None     # host-name wildcards

    def matches(self, peer: str) -> bool:
        if self.everything:
            return True
        address = ipaddress.ip_address(peer)
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        if address in self.addresses:
            return True
        if self.localhost and (address.is_loopback or _is_local(peer)):
            return True
        return self.names is not None and self.names.fullmatch(_host_name(peer)) is not None


def parse_rule(allow: bool, value: str) -> Rule:
    """SecurityIpFilterRule's parsing; raises ValueError with Elasticsearch's text."""
    kind = "allow" if allow else "deny"
    text = f"{kind} {value}"
    values = [v.strip() for v in value.split(",")]
    if "_all" in values:
        if len(values) != 1:
            raise ValueError("rules that specify _all may not have other values!")
        return Rule(allow, text, everything=True)
    if "/" in value:
        if len(values) != 1:
            raise ValueError("multiple subnet filters cannot be specified in a single rule!")
        try:
            return Rule(allow, text, network=ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"unable to create ip filter for rule [{kind} {value}]") from None
    addresses, names, localhost = [], [], False
    for single in values:
        try:
            addresses.append(ipaddress.ip_address(single))
        except ValueError:
            if single == "localhost":
                localhost = True
            else:
                names.append(re.escape(single).replace(r"\*", ".*").replace(r"\?", "."))
    pattern = re.compile("|".join(f"({n})" for n in names), re.IGNORECASE) if names else None
    return Rule(allow, text, addresses=tuple(addresses), localhost=localhost, names=pattern)


def _is_local(peer: str) -> bool:
    """An address of one of this machine's interfaces (what `localhost` also stands for)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in peer else socket.AF_INET) as probe:
            probe.bind((peer, 0))
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=256)
def _host_name(peer: str) -> str:
    """`InetAddress.getHostName()`: the reverse name, else the address itself (looked up only for
    rules that name hosts)."""
    try:
        return socket.gethostbyaddr(peer)[0]
    except OSError:
        return peer


def profile_lists(settings: dict[str, Any], profile: str) -> tuple[list[str], list[str]]:
    """The allow and deny values that apply to `profile`, with Elasticsearch's fallbacks."""
    def first(*keys: str) -> list[str]:
        for key in keys:
            if key in settings and settings[key] is not None:
                return parse_list(key, settings[key])
        return []

    def lists(*prefixes: str) -> tuple[list[str], list[str]]:
        return first(*(p + "allow" for p in prefixes)), first(*(p + "deny" for p in prefixes))

    transport = _SECURITY + "transport.filter."
    if profile == TRANSPORT:
        return lists(transport)
    if profile == REMOTE_CLUSTER:
        return lists(_SECURITY + "remote_cluster.filter.", transport)
    if profile == HTTP:
        return lists(_SECURITY + "http.filter.", "transport.profiles.default.xpack.security.filter.", transport)
    return lists(f"transport.profiles.{profile}.xpack.security.filter.")


def _enabled(settings: dict[str, Any], key: str) -> bool:
    try:
        return parse_bool(key, settings.get(key, True))
    except SettingValueError:
        return True


def rules(settings: dict[str, Any], profile: str, bound: str | None) -> list[Rule] | None:
    """The profile's rules in the order they are tried; None when its filtering is off."""
    switch = _SECURITY + ("http.filter.enabled" if profile == HTTP else "transport.filter.enabled")
    if not _enabled(settings, _SECURITY + "enabled") or not _enabled(settings, switch):
        return None
    allow, deny = profile_lists(settings, profile)
    found: list[Rule] = []
    if bound and _enabled(settings, _SECURITY + "filter.always_allow_bound_address"):
        found.append(parse_rule(True, bound))
    for allowed, values in ((True, allow), (False, deny)):
        for value in values:
            try:
                found.append(parse_rule(allowed, value))
            except ValueError:
                continue  # refused when set (registry); an old bad value matches nothing
    return found


def decide(found: list[Rule] | None, peer: str) -> Rule | None:
    """The rule that denies `peer`, or None when it may connect."""
    for rule in found or ():
        if rule.matches(peer):
            return None if rule.allow else rule
    return None


class IpFilter:
    """One node's filter: `accept(profile, peer)` against the current settings and licence,
    rebuilt when the cluster state changes."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._stamp: Any = object()
        self._licensed = False
        self._settings: dict[str, Any] = {}
        self._rules: dict[str, list[Rule] | None] = {}

    def accept(self, profile: str, peer: str) -> bool:
        return self.denied_by(profile, peer) is None

    def denied_by(self, profile: str, peer: str) -> Rule | None:
        with self._lock:
            self._refresh()
            if not self._licensed:
                return None
            if profile not in self._rules:
                self._rules[profile] = rules(self._settings, profile, self.ctx.config.ip)
            found = self._rules[profile]
        return decide(found, peer)

    def _refresh(self) -> None:
        store = self.ctx.store
        stamp = store.stamp()
        if stamp is not None and stamp == self._stamp:
            return
        state = store.snapshot()
        layers = state.get("settings") or {}
        self._settings = {**self.ctx.config.settings, **(layers.get("persistent") or {}),
                          **(layers.get("transient") or {})}
        self._licensed = (state.get("license") or {}).get("type", "basic") in _LICENSED
        self._rules = {}
        self._stamp = stamp
