"""Verifying an alias on the local cluster, after the reconnect (API-key model) or after a
rollback (certificate model).

API-key model, `verify_api_key_link`:
  1. `_remote/info`: the alias connected, `cluster_credentials` == `::es_redacted::`, polled up to
     the alias's `initial_connect_timeout`;
  2. `_resolve/cluster` (8.13+): the alias connected, no error;
  3. a real cross-cluster search on each remote index pattern the stopped work used (a search that
     skipped the remote, which `skip_unavailable: true` allows, fails the check);
  4. followers making progress: per shard, the follower's global checkpoint reaches the leader's
     (lag 0) or advances, with no read exceptions.
Certificate model, `verify_certificate_link` (rollback): connected, and no `cluster_credentials`.

A failed check names itself and, where the evidence allows, the matching cause of Elastic's
troubleshooting page (es-facts §9): REST error texts first, then the newest matching entry of the
local nodes' logs, then of the remote nodes' logs (read over SSH), then what the state alone says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from esremote.cluster import facts as cluster_facts
from esremote.cluster.client import PollTimeout, connect, mapped_errors, poll
from esremote.cluster.restart import node_log_tail
from esremote.errors import ClusterError, ClusterHTTPError, ConfigError
from esremote.fanout import fan_out
from esremote.inventory import Inventory
from esremote.ssh import SSHPool

__all__ = ["CAUSES", "Cause", "Check", "VerificationError", "VerifyReport", "diagnose", "diagnose_log",
           "verify_api_key_link", "verify_certificate_link"]

REDACTED = "::es_redacted::"
DEFAULT_CONNECT_TIMEOUT = 30.0
LOG_LINES = 200


# ----------------------------------------------------------------------------- troubleshooting


@dataclass(frozen=True)
class Cause:
    """One cause of Elastic's remote-cluster troubleshooting page, and how to recognise it."""

    key: str
    title: str
    fix: str
    patterns: tuple[str, ...]

    def matches(self, text: str) -> bool:
        return any(re.search(p, text, re.DOTALL) for p in self.patterns)


# Most specific first: one log entry may carry a generic headline and a specific cause.
CAUSES: tuple[Cause, ...] = (
    Cause("licence", "licence does not allow API-key remote clusters",
          "install an enterprise licence (or start a trial) on both clusters",
          (r"current license is non-compliant for \[advanced-remote-cluster-security\]",)),
    Cause("remote_too_old", "remote cluster older than 8.10",
          "upgrade the remote cluster to 8.10 or later (8.14+ recommended)",
          (r"does not support receiving them",)),
    Cause("wrong_key_type", "wrong API key type",
          "the keystore holds a REST API key: create a cross-cluster API key on the remote "
          "(POST _security/cross_cluster/api_key), put its `encoded` value in every local node's keystore, reload",
          (r"authentication expected API key type of \[cross_cluster\]",)),
    Cause("invalid_key", "invalid API key",
          "the key was invalidated, expired or mistyped: create a new cross-cluster API key, put it in every "
          "local node's keystore and reload",
          # the handshake's refusal (es-facts §9), or any later action's once a connected key is invalidated
          (r"unable to authenticate user \[[^\]]*\] for action \[",
           r"Authentication using apikey failed")),
    Cause("transport_port", "connecting to the transport port when using API keys",
          "the alias points at the transport port: set its seeds / proxy_address to the remote cluster "
          "server port (remote_cluster.port, 9443)",
          (r"missing authentication credentials for action \[cluster:internal/remote_cluster/handshake\]",
           r"requires channel profile to be \[_remote_cluster\]",
           r"Empty client certificate chain",
           r"Received fatal alert: bad_certificate",
           r"ssl context \(\[xpack\.security\.remote_cluster_client\.ssl.*not configured to trust",
           r"client did not trust this server's certificate.*profile=default")),
    Cause("no_api_key", "connecting without a cross-cluster API key",
          "add cluster.remote.<alias>.credentials to the keystore of every local node, then reload secure "
          "settings (8.13+) or restart",
          (r"require transport header \[_cross_cluster_access_credentials\] but none found",
           r"ssl context \(\[xpack\.security\.transport\.ssl.*not configured to trust",
           r"client did not trust this server's certificate.*profile=_remote_cluster")),
    Cause("san_mismatch", "certificate does not name the address",
          "reissue the remote nodes' remote-cluster certificates with the address used in seeds / "
          "proxy_address as a SAN (or set server_name)",
          (r"No subject alternative (names|DNS name) matching",)),
    Cause("tls_trust", "TLS trust not established",
          "set xpack.security.remote_cluster_client.ssl.certificate_authorities to the remote cluster "
          "server's CA on every local node (or adjust verification_mode), then restart them",
          (r"failed to establish trust with server", r"unable to find valid certification path")),
    Cause("no_remote_indices", "no remote_indices privileges",
          "give the users' roles remote_indices for this alias (the reconnect phase does it)",
          (r"because no remote indices privileges apply",)),
    Cause("insufficient_privileges", "insufficient privileges",
          "the cross-cluster API key's access or the user's remote_indices do not cover the index: update "
          "the key (PUT _security/cross_cluster/api_key/<id>) or the role",
          (r"towards remote cluster( \[[^\]]*\])? is unauthorized",)),
    Cause("alias_missing", "alias not defined on the local cluster",
          "define the alias again (cluster.remote.<alias>.* in cluster settings or elasticsearch.yml)",
          (r"no such remote cluster: \[", r"unknown cluster alias \[")),
    Cause("unreachable", "remote cluster not reachable",
          "check the address and port in seeds / proxy_address, firewalls, and that remote_cluster_server."
          "enabled is true with remote_cluster.host set on every remote node",
          (r"connect_exception", r"failed to open any proxy connections",
           r"fetching nodes from external cluster", r"ConnectTransportException")),
)
_BY_KEY = {c.key: c for c in CAUSES}


def diagnose(texts: Iterable[str]) -> tuple[Cause, str] | None:
    """The first text (give them newest / most direct first) that matches a cause, with that cause."""
    for text in texts:
        for cause in CAUSES:
            if cause.matches(text):
                return cause, text
    return None


_TIMESTAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT[\d:,.]+)\]")
BURST_SECONDS = 10.0  # one failed connection attempt logs several entries within this span


def diagnose_log(entries: Sequence[tuple[str, str]]) -> tuple[Cause, str] | None:
    """The cause of the newest burst of matching log entries (timestamp, text), newest first.

    One failed attempt logs several entries (a specific diagnosis, then a generic headline whose
    stack trace may look like another cause), so within the newest burst the most specific cause
    wins, not simply the newest line."""
    matches: list[tuple[str, Cause, str]] = []
    for stamp, text in entries:
        found = diagnose([text])
        if found is not None:
            matches.append((stamp, found[0], text))
    if not matches:
        return None
    newest = _when(matches[0][0])
    burst = [m for m in matches if newest is None or (_when(m[0]) or newest) >= newest - BURST_SECONDS]
    stamp, cause, text = min(burst, key=lambda m: CAUSES.index(m[1]))
    return cause, text


def _when(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp.replace(",", ".")[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def log_entries(lines: Sequence[str]) -> list[tuple[str, str]]:
    """Elasticsearch log lines grouped into entries (a timestamped line and its continuation lines),
    as (timestamp, text)."""
    entries: list[tuple[str, str]] = []
    for line in lines:
        match = _TIMESTAMP.match(line)
        if match or not entries:
            entries.append((match.group(1) if match else "", line))
        else:
            stamp, text = entries[-1]
            entries[-1] = (stamp, f"{text}\n{line}")
    return entries


# -------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    cause: Cause | None = None
    evidence: str = ""

    def __str__(self) -> str:
        text = f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.detail}"
        if self.cause is not None:
            text += f"; likely cause (troubleshooting: {self.cause.title}): {self.cause.fix}"
        if self.evidence:
            text += f"; evidence: {_first_lines(self.evidence)}"
        return text


@dataclass
class VerifyReport:
    alias: str
    cluster: str
    model: str                                   # "api_key" | "certificate"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def raise_if_failed(self) -> VerifyReport:
        if not self.ok:
            raise VerificationError(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """For artifacts and the journal."""
        return {"alias": self.alias, "cluster": self.cluster, "model": self.model, "ok": self.ok,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "evidence": c.evidence,
                            "cause": None if c.cause is None else {"key": c.cause.key, "title": c.cause.title,
                                                                   "fix": c.cause.fix}} for c in self.checks]}


class VerificationError(ClusterError):
    """A verification check failed; `check` is the first failed one, `report` holds them all."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.check = report.failed[0]
        self.cause = self.check.cause
        super().__init__(f"verification of alias {report.alias} ({report.model.replace('_', '-')} model) failed: "
                         + "; ".join(str(c) for c in report.failed), cluster=report.cluster, transient=False)


# ------------------------------------------------------------------------------------ API-key model


def verify_api_key_link(inventory: Inventory, alias: str, *, es: Any = None, pool: SSHPool | None = None,
                        index_patterns: Sequence[str] = (), followers: Sequence[str] = (),
                        connect_timeout: float | None = None, follower_timeout: float = 90.0,
                        check: bool = True) -> VerifyReport:
    """Every API-key check in order; stops at the first failure (later checks depend on the link).
    `pool` lets a failure read the nodes' logs for its cause. Raises `VerificationError` when `check`."""
    local, remote = _clusters(inventory, alias)
    es = es if es is not None else connect(inventory.cluster(local))
    report = VerifyReport(alias, local, "api_key")
    diag = _Diagnosis(inventory, local, remote, pool)
    steps = [lambda: _remote_info_check(es, local, alias, True, connect_timeout, diag),
             lambda: _resolve_check(es, local, alias, index_patterns, diag),
             *[(lambda p=p: _search_check(es, local, alias, p, diag)) for p in index_patterns],
             *[(lambda f=f: _follower_check(es, local, f, follower_timeout, diag)) for f in followers]]
    for step in steps:
        result = step()
        if result is None:
            continue
        report.checks.append(result)
        if not result.ok:
            break
    return report.raise_if_failed() if check else report


def verify_certificate_link(inventory: Inventory, alias: str, *, es: Any = None, pool: SSHPool | None = None,
                            connect_timeout: float | None = None, check: bool = True) -> VerifyReport:
    """The rollback's check: the alias connected in the certificate model (no `cluster_credentials`)."""
    local, remote = _clusters(inventory, alias)
    es = es if es is not None else connect(inventory.cluster(local))
    report = VerifyReport(alias, local, "certificate")
    report.checks.append(_remote_info_check(es, local, alias, False, connect_timeout,
                                            _Diagnosis(inventory, local, remote, pool)))
    return report.raise_if_failed() if check else report


def patterns_and_followers(usage: Any) -> tuple[list[str], list[str]]:
    """From cluster-ops' `UsageReport`: the remote index patterns and the follower indices to check."""
    followers = [u.id for u in getattr(usage, "items", ()) if u.kind == "follower"]
    return list(usage.remote_patterns()), followers


def _clusters(inventory: Inventory, alias: str) -> tuple[str, str]:
    link = inventory.aliases.get(alias)
    if link is None:
        raise ConfigError(f"alias {alias!r} is not in the inventory's `aliases:` (it has: "
                          f"{', '.join(inventory.aliases) or 'none'})")
    return link.local, link.remote


# ----------------------------------------------------------------------------------------- checks


def _remote_info(es, cluster: str) -> dict:
    with mapped_errors(cluster, "GET _remote/info"):
        return es.cluster.remote_info().body


def _remote_info_check(es, cluster: str, alias: str, api_key: bool, timeout: float | None,
                       diag: _Diagnosis) -> Check:
    name = "remote_info"
    first = _remote_info(es, cluster).get(alias)
    timeout = timeout if timeout is not None else _seconds((first or {}).get("initial_connect_timeout"))

    def wanted() -> dict | None:
        info = _remote_info(es, cluster).get(alias)
        if not info or not info.get("connected"):
            return None
        has_key = info.get("cluster_credentials") == REDACTED
        return info if has_key == api_key and (api_key or "cluster_credentials" not in info) else None

    try:
        info = poll(wanted, timeout=timeout, what=f"alias {alias} connected", cluster=cluster, interval=0.5)
    except PollTimeout as exc:
        if isinstance(exc.last, ClusterError):
            return Check(name, False, f"_remote/info kept failing: {exc.last}")
        return _remote_info_failure(alias, api_key, _remote_info(es, cluster).get(alias), timeout, diag)
    model = "API key (cluster_credentials redacted)" if api_key else "certificate model (no cluster_credentials)"
    return Check(name, True, f"connected, {info.get('mode')} mode, {model}")


def _remote_info_failure(alias: str, api_key: bool, info: Mapping | None, timeout: float, diag: _Diagnosis) -> Check:
    name = "remote_info"
    if info is None:
        return Check(name, False, f"alias {alias} is not in _remote/info: it is not defined (anymore)",
                     cause=_BY_KEY["alias_missing"])
    shown = _brief(info)
    has_key = "cluster_credentials" in info
    if not api_key and has_key:
        return Check(name, False, f"{shown}: the alias still uses an API key",
                     cause=Cause("credentials_left", "credentials still in the keystore",
                                 f"remove cluster.remote.{alias}.credentials from every local node's keystore, "
                                 "then reload secure settings (8.13+) or restart", ()))
    if api_key and info.get("connected") and not has_key:
        return Check(name, False, f"{shown}: connected without an API key (certificate model)",
                     cause=_BY_KEY["no_api_key"])
    found = diag.find()
    if found is None and api_key and not has_key:
        found = (_BY_KEY["no_api_key"], "")
    if found is None:
        found = (_BY_KEY["unreachable"], "")
    return Check(name, False, f"not connected after {timeout:g}s ({shown})", cause=found[0], evidence=found[1])


def _resolve_check(es, cluster: str, alias: str, patterns: Sequence[str], diag: _Diagnosis) -> Check | None:
    local_facts_version = _min_version(es, cluster)
    if local_facts_version < cluster_facts.RESOLVE_CLUSTER:
        return None
    expression = f"{alias}:{patterns[0] if patterns else '*'}"
    try:
        with mapped_errors(cluster, "GET _resolve/cluster"):
            body = es.indices.resolve_cluster(name=expression).body
    except ClusterHTTPError as exc:
        return _failure(f"resolve_cluster {expression}", str(exc), [exc.reason], diag)
    entry = body.get(alias) or {}
    error = entry.get("error")
    if not entry.get("connected") or error:
        return _failure(f"resolve_cluster {expression}", f"connected {entry.get('connected')}"
                        + (f", error: {error}" if error else ""), [str(error or "")], diag)
    return Check(f"resolve_cluster {expression}", True, "connected" +
                 (f", matching indices {entry.get('matching_indices')}" if "matching_indices" in entry else ""))


def _search_check(es, cluster: str, alias: str, pattern: str, diag: _Diagnosis) -> Check:
    index = f"{alias}:{pattern}"
    name = f"search {index}"
    try:
        with mapped_errors(cluster, f"GET {index}/_search"):
            body = es.search(index=index, size=0, track_total_hits=True).body
    except ClusterHTTPError as exc:
        return _failure(name, str(exc), [exc.reason], diag)
    clusters = body.get("_clusters") or {}
    detail = (clusters.get("details") or {}).get(alias) or {}
    problems = [f.get("reason", {}).get("reason", "") if isinstance(f.get("reason"), dict) else str(f.get("reason"))
                for f in (detail.get("failures") or []) + ((body.get("_shards") or {}).get("failures") or [])]
    skipped = clusters.get("skipped", 0) or clusters.get("failed", 0) or detail.get("status") in ("skipped", "failed")
    if skipped or problems:
        status = detail.get("status", "skipped" if clusters.get("skipped") else "failed")
        return _failure(name, f"the remote was {status} (skip_unavailable hides this)"
                        + (f": {problems[0]}" if problems else ""), problems, diag)
    hits = ((body.get("hits") or {}).get("total") or {}).get("value", 0)
    return Check(name, True, f"{hits} hits through the link")


def _follower_check(es, cluster: str, follower: str, timeout: float, diag: _Diagnosis) -> Check:
    """Progress with no read exceptions: on every shard a read succeeded (or the checkpoint moved)
    after the check began. Being caught up is no proof: the stats keep the last good read's view,
    so a follower that was caught up before a broken reconnect looks caught up until its next read
    fails. Exceptions left from before the reconnect clear as reads succeed again (Elasticsearch
    drops a read's exception once it succeeds), so they are polled away; a fatal exception (the
    follow task stopped) fails at once. On an idle leader a read returns after the follower's
    `read_poll_timeout` (1m by default), so `timeout` should be longer than that."""
    name = f"follower {follower}"
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
            return _failure(name, f"read exceptions for {timeout:g}s: {errors[0]}", errors, diag)
        lag = [f"shard {s['shard_id']}: follower {s.get('follower_global_checkpoint')} / leader "
               f"{s.get('leader_global_checkpoint')}" for s in shards]
        return _failure(name, f"no progress in {timeout:g}s ({'; '.join(lag) or 'not a follower'})", [], diag)
    fatal = _follow_errors([{"fatal_exception": s["fatal_exception"]} for s in shards if s.get("fatal_exception")])
    if fatal:
        return _failure(name, f"the follow task stopped: {fatal[0]}", fatal, diag)
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


def _failure(name: str, detail: str, texts: Sequence[str], diag: _Diagnosis) -> Check:
    found = diagnose(t for t in texts if t) or diag.find()
    return Check(name, False, detail, cause=found[0] if found else None, evidence=found[1] if found else "")


def _min_version(es, cluster: str) -> cluster_facts.Version:
    with mapped_errors(cluster, "GET _nodes"):
        nodes = es.nodes.info(metric="_none").body.get("nodes") or {}
    return min((cluster_facts.parse_version(n.get("version", "0")) for n in nodes.values()), default=(0, 0, 0))


# ------------------------------------------------------------------------------------ diagnosis


class _Diagnosis:
    """Reads the nodes' logs (only when a check fails) and finds the newest matching cause."""

    def __init__(self, inventory: Inventory, local: str, remote: str, pool: SSHPool | None) -> None:
        self.inventory, self.local, self.remote, self.pool = inventory, local, remote, pool
        self._found: tuple[Cause, str] | None | bool = False

    def find(self) -> tuple[Cause, str] | None:
        if self._found is False:
            self._found = None
            if self.pool is not None:
                self._found = diagnose_log(self._entries(self.local)) or diagnose_log(self._entries(self.remote))
        return self._found or None

    def _entries(self, cluster: str) -> list[tuple[str, str]]:
        """Every node's recent log entries, newest first."""
        nodes = self.inventory.nodes(cluster)
        tails = fan_out(nodes, lambda n: node_log_tail(self.pool, n, lines=LOG_LINES))
        entries = [e for n in nodes if isinstance(tails[n], list) for e in log_entries(tails[n])]
        entries.sort(key=lambda e: e[0], reverse=True)
        return entries


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


def _first_lines(text: str, count: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[:count])[:600]
