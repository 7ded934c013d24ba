"""The checks of a link, each asked of one client: per node (that node's `_remote/info`, one
cross-cluster request it coordinates) or of the cluster (searches on the work's patterns, followers).
A failed check carries the cause of es-facts §9 its evidence points at."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from esremote.cluster import facts as cluster_facts
from esremote.cluster.client import PollTimeout, mapped_errors, poll
from esremote.errors import ClusterError, ClusterHTTPError
from esremote.verify.causes import BY_KEY, Cause, Diagnosis, diagnose
from esremote.verify.nodes import LocalNode
from esremote.verify.report import Check

__all__ = ["REDACTED", "Link", "follower_check", "link_on_node", "search_check"]

REDACTED = "::es_redacted::"
DEFAULT_CONNECT_TIMEOUT = 30.0
AUTHENTICATION_CAUSES = ("invalid_key", "wrong_key_type")


@dataclass(frozen=True)
class Link:
    """The alias under check on the local cluster, the model it must be in, and where causes come from."""

    cluster: str
    alias: str
    api_key: bool
    diag: Diagnosis


def _named(check: str, node: str | None, target: str = "") -> str:
    name = f"{check}[{node}]" if node else check
    return f"{name} {target}" if target else name


# ------------------------------------------------------------------------------------- per node


def link_on_node(es, link: Link, node: LocalNode, *, timeout: float | None, pattern: str) -> list[Check]:
    """The node's own view of the link, then one request through it that the node coordinates: a node
    whose keystore holds another key value still shows connected with credentials (es-facts §12)."""
    info = remote_info_check(es, link, node.name, timeout)
    return [info, coordinated_request_check(es, link, node, pattern)] if info.ok else [info]


def coordinated_request_check(es, link: Link, node: LocalNode, pattern: str) -> Check:
    """`_resolve/cluster/<alias>:*` from 8.13 (the node's own version: it serves the request), below
    that a search on the work's first pattern."""
    if node.version >= cluster_facts.RESOLVE_CLUSTER:
        return resolve_check(es, link, f"{link.alias}:*", node.name)
    return search_check(es, link, pattern, node.name)


def _remote_info(es, link: Link, node: str) -> dict:
    with mapped_errors(link.cluster, f"GET _remote/info on node {node}"):
        return es.cluster.remote_info().body


def remote_info_check(es, link: Link, node: str, timeout: float | None) -> Check:
    """Polled up to the alias's `initial_connect_timeout`: a reload or re-add connects lazily."""
    name, alias = _named("remote_info", node), link.alias
    first = poll(lambda: _remote_info(es, link, node), timeout=timeout or DEFAULT_CONNECT_TIMEOUT,
                 what=f"node {node} answering", cluster=link.cluster, interval=0.5).get(alias)  # it may restart
    timeout = timeout if timeout is not None else _seconds((first or {}).get("initial_connect_timeout"))

    def wanted() -> dict | None:
        info = _remote_info(es, link, node).get(alias)
        return info if info and info.get("connected") and _in_model(info, link.api_key) else None

    try:
        info = poll(wanted, timeout=timeout, what=f"alias {alias} connected on node {node}", cluster=link.cluster,
                    interval=0.5)
    except PollTimeout as exc:
        if isinstance(exc.last, ClusterError):
            return Check(name, False, f"_remote/info kept failing: {exc.last}", node=node)
        return _remote_info_failure(name, node, link, _remote_info(es, link, node).get(alias), timeout)
    model = "API key (cluster_credentials redacted)" if link.api_key else "certificate model (no cluster_credentials)"
    return Check(name, True, f"connected, {info.get('mode')} mode, {model}", node=node)


def _in_model(info: Mapping, api_key: bool) -> bool:
    return info.get("cluster_credentials") == REDACTED if api_key else "cluster_credentials" not in info


def _remote_info_failure(name: str, node: str, link: Link, info: Mapping | None, timeout: float) -> Check:
    alias = link.alias
    if info is None:
        return Check(name, False, f"alias {alias} is not in _remote/info: it is not defined (anymore)",
                     cause=BY_KEY["alias_missing"], node=node)
    shown = _brief(info)
    has_key = "cluster_credentials" in info
    if not link.api_key and has_key:
        return Check(name, False, f"{shown}: the alias still uses an API key", node=node,
                     cause=Cause("credentials_left", "credentials still in the keystore",
                                 f"remove cluster.remote.{alias}.credentials from every local node's keystore, "
                                 "then reload secure settings (8.13+) or restart", ()))
    if link.api_key and info.get("connected") and not has_key:
        return Check(name, False, f"{shown}: connected without an API key (certificate model)",
                     cause=BY_KEY["no_api_key"], node=node)
    found = link.diag.find(node)
    if found is None and link.api_key and not has_key:
        found = (BY_KEY["no_api_key"], "")
    if found is None:
        found = (BY_KEY["unreachable"], "")
    return Check(name, False, f"not connected after {timeout:g}s ({shown})", cause=found[0], evidence=found[1],
                 node=node)


def resolve_check(es, link: Link, expression: str, node: str) -> Check:
    name = _named("resolve_cluster", node, expression)
    try:
        with mapped_errors(link.cluster, f"GET _resolve/cluster/{expression} on node {node}"):
            body = es.indices.resolve_cluster(name=expression).body
    except ClusterHTTPError as exc:
        return _failure(name, str(exc), [exc.reason], link, node)
    entry = body.get(link.alias) or {}
    error = entry.get("error")
    if not entry.get("connected") or error:
        return _failure(name, f"connected {entry.get('connected')}" + (f", error: {error}" if error else ""),
                        [str(error or "")], link, node)
    return Check(name, True, "connected" + (f", matching indices {entry.get('matching_indices')}"
                                            if "matching_indices" in entry else ""), node=node)


# ------------------------------------------------------------------------------------ searches


def search_check(es, link: Link, pattern: str, node: str | None = None) -> Check:
    """A real cross-cluster search (size 0); a remote that was skipped, which `skip_unavailable: true`
    allows, fails it."""
    alias = link.alias
    index = f"{alias}:{pattern}"
    name = _named("search", node, index)
    try:
        with mapped_errors(link.cluster, f"GET {index}/_search" + (f" on node {node}" if node else "")):
            body = es.search(index=index, size=0, track_total_hits=True).body
    except ClusterHTTPError as exc:
        return _failure(name, str(exc), [exc.reason], link, node)
    clusters = body.get("_clusters") or {}
    detail = (clusters.get("details") or {}).get(alias) or {}
    problems = [f.get("reason", {}).get("reason", "") if isinstance(f.get("reason"), dict) else str(f.get("reason"))
                for f in (detail.get("failures") or []) + ((body.get("_shards") or {}).get("failures") or [])]
    skipped = clusters.get("skipped", 0) or clusters.get("failed", 0) or detail.get("status") in ("skipped", "failed")
    if skipped or problems:
        status = detail.get("status", "skipped" if clusters.get("skipped") else "failed")
        return _failure(name, f"the remote was {status} (skip_unavailable hides this)"
                        + (f": {problems[0]}" if problems else ""), problems, link, node)
    hits = ((body.get("hits") or {}).get("total") or {}).get("value", 0)
    return Check(name, True, f"{hits} hits through the link", node=node)


# ----------------------------------------------------------------------------------- followers


def follower_check(es, link: Link, follower: str, timeout: float) -> Check:
    """Progress with no read exceptions: on every shard a read succeeded (or the checkpoint moved)
    after the check began. Being caught up is no proof: the stats keep the last good read's view,
    so a follower that was caught up before a broken reconnect looks caught up until its next read
    fails. Exceptions left from before the reconnect clear as reads succeed again (Elasticsearch
    drops a read's exception once it succeeds), so they are polled away; a fatal exception (the
    follow task stopped) fails at once. On an idle leader a read returns after the follower's
    `read_poll_timeout` (1m by default), so `timeout` should be longer than that."""
    name, cluster = f"follower {follower}", link.cluster
    start = {s["shard_id"]: s for s in _follow_shards(es, cluster, follower)}
    last: list[dict] = []

    def read_since_start(s: dict) -> bool:
        before = start.get(s["shard_id"], {})
        return (s.get("follower_global_checkpoint", -1) > before.get("follower_global_checkpoint", -1)
                or s.get("successful_read_requests", 0) > before.get("successful_read_requests", 0))

    def progressing() -> list | None:
        nonlocal last
        last = _follow_shards(es, cluster, follower)
        if any(s.get("fatal_exception") for s in last):
            return last
        ok = last and all(not s.get("read_exceptions") and read_since_start(s) for s in last)
        return last if ok else None

    try:
        shards = poll(progressing, timeout=timeout, what=f"follower {follower} progressing", cluster=cluster,
                      interval=0.5)
    except PollTimeout:
        shards = last
        errors = _follow_errors(shards)
        if errors:
            return _failure(name, f"read exceptions for {timeout:g}s: {errors[0]}", errors, link)
        lag = [f"shard {s['shard_id']}: follower {s.get('follower_global_checkpoint')} / leader "
               f"{s.get('leader_global_checkpoint')}" for s in shards]
        return _failure(name, f"no progress in {timeout:g}s ({'; '.join(lag) or 'not a follower'})", [], link)
    fatal = _follow_errors([{"fatal_exception": s["fatal_exception"]} for s in shards if s.get("fatal_exception")])
    if fatal:
        return _failure(name, f"the follow task stopped: {fatal[0]}", fatal, link)
    lag = sum(max(0, s.get("leader_global_checkpoint", 0) - s.get("follower_global_checkpoint", 0)) for s in shards)
    return Check(name, True, "caught up (lag 0)" if lag == 0 else f"advancing (lag {lag})")


def _follow_errors(shards: list[dict]) -> list[str]:
    return [_exception_text(e) for s in shards for e in
            (s.get("read_exceptions") or []) + ([s["fatal_exception"]] if s.get("fatal_exception") else [])]


def _follow_shards(es, cluster: str, follower: str) -> list[dict]:
    with mapped_errors(cluster, f"GET {follower}/_ccr/stats"):
        body = es.ccr.follow_stats(index=follower).body
    return [s for i in body.get("indices") or [] if i.get("index") == follower for s in i.get("shards") or []]


def _exception_text(error: Mapping) -> str:
    exc = error.get("exception", error)
    reason = exc.get("reason", "") if isinstance(exc, Mapping) else str(exc)
    caused = exc.get("caused_by") if isinstance(exc, Mapping) else None
    if isinstance(caused, Mapping) and caused.get("reason"):
        reason += f" (caused by: {caused['reason']})"
    return reason


def _failure(name: str, detail: str, texts: Sequence[str], link: Link, node: str | None = None) -> Check:
    found = diagnose(t for t in texts if t) or link.diag.find(node)
    cause = found[0] if found else None
    if node and cause is not None and cause.key in AUTHENTICATION_CAUSES:
        detail = f"cannot authenticate through the link: {detail}"  # connected, yet every request is refused
    return Check(name, False, detail, cause=cause, evidence=found[1] if found else "", node=node)


# ---------------------------------------------------------------------------------------- helpers


def _seconds(value: Any) -> float:
    """`30s`, `1m`, `500ms` -> seconds (the default initial_connect_timeout when unset)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(value or "").strip())
    if not match:
        return DEFAULT_CONNECT_TIMEOUT
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * factor


def _brief(info: Mapping) -> str:
    keys = ("connected", "mode", "proxy_address", "seeds", "num_proxy_sockets_connected", "num_nodes_connected",
            "cluster_credentials")
    return ", ".join(f"{k} {info[k]}" for k in keys if k in info)
