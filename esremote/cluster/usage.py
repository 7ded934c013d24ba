"""Which cross-cluster work uses a remote alias: transforms, ML datafeeds (and their jobs), CCR
followers and auto-follow patterns, each with its state, its owner where Elasticsearch says, and the
remote index patterns it reads (for verification searches after the reconnect).

Index expressions follow Elasticsearch's rules (`RemoteClusterAware`): `cluster:index` names a
remote, the cluster part takes simple wildcards (`*`, `my_rem*`), a leading `-` excludes (`-c:*`
drops a whole cluster, `-c:idx` an index there), entries may be comma lists, and `<...>` date math
is local even though it may contain `:`.

Who owns the work: `GET _transform` and `GET _ml/datafeeds` return `authorization` (8.x): `roles`
(the user's roles at the last update; the user name is not returned), `api_key` (`id`, `name`) or
`service_account`; it is absent when security was off at the last update. The stored `headers` are
never returned. CCR follow info and auto-follow patterns carry no owner at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from esremote.cluster.calls import ApiCall, perform
from esremote.errors import ClusterHTTPError

Kind = Literal["transform", "datafeed", "follower", "auto_follow_pattern"]

TRANSFORM_RUNNING = frozenset({"started", "indexing", "waiting"})
DATAFEED_RUNNING = frozenset({"started", "starting"})
JOB_OPEN = frozenset({"opened", "opening"})


def is_running(kind: str, state: str | None) -> bool:
    """Whether an object in this state is doing cross-cluster work (jobs: open)."""
    if kind == "transform":
        return state in TRANSFORM_RUNNING
    if kind == "datafeed":
        return state in DATAFEED_RUNNING
    if kind == "job":
        return state in JOB_OPEN
    return state == "active"  # followers and auto-follow patterns


def simple_match(pattern: str, value: str) -> bool:
    """Elasticsearch's `Regex.simpleMatch`: `*` matches any run of characters, nothing else is special."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), value, re.DOTALL) is not None


@dataclass(frozen=True)
class RemotePatterns:
    """What an index expression reads on one alias: index patterns, and exclusions there."""

    patterns: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.patterns)


def split_expressions(value: str | Sequence[str] | None) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or [])
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def remote_patterns(expressions: str | Sequence[str] | None, alias: str) -> RemotePatterns:
    """The index patterns an expression list reads on `alias` (empty when it does not use it)."""
    patterns: list[str] = []
    excluded: list[str] = []
    dropped = False
    for expr in split_expressions(expressions):
        negative = expr.startswith("-")
        body = expr[1:] if negative else expr
        if body.startswith("<") or ":" not in body:
            continue  # a local index or date math
        cluster, _, index = body.partition(":")
        if not simple_match(cluster, alias):
            continue
        if negative and index == "*":
            dropped = True
        elif negative:
            excluded.append(index)
        elif index not in patterns:
            patterns.append(index)
    if dropped:
        return RemotePatterns()
    return RemotePatterns(tuple(patterns), tuple(excluded))


@dataclass(frozen=True)
class Owner:
    """Whose authority the work runs with, as Elasticsearch reports it."""

    roles: tuple[str, ...] = ()
    api_key_id: str | None = None
    api_key_name: str | None = None
    service_account: str | None = None

    @classmethod
    def from_authorization(cls, auth: Mapping[str, Any] | None) -> Owner | None:
        if not auth:
            return None
        key = auth.get("api_key") or {}
        return cls(tuple(auth.get("roles") or ()), key.get("id"), key.get("name"),
                   auth.get("service_account"))

    def describe(self) -> str:
        if self.api_key_id:
            return f"API key {self.api_key_name or ''} ({self.api_key_id})".replace("  ", " ")
        if self.service_account:
            return f"service account {self.service_account}"
        return "user with roles " + (", ".join(self.roles) or "(none)")

    def to_dict(self) -> dict[str, Any]:
        return {"roles": list(self.roles), "api_key_id": self.api_key_id,
                "api_key_name": self.api_key_name, "service_account": self.service_account}


@dataclass(frozen=True)
class Usage:
    """One object that uses the alias."""

    kind: Kind
    id: str
    state: str
    remote: RemotePatterns
    owner: Owner | None = None
    job_id: str | None = None      # datafeeds: their anomaly detection job
    job_state: str | None = None

    @property
    def running(self) -> bool:
        return is_running(self.kind, self.state)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "state": self.state,
                "remote_patterns": list(self.remote.patterns), "remote_excluded": list(self.remote.excluded),
                "owner": self.owner.to_dict() if self.owner else None,
                "job_id": self.job_id, "job_state": self.job_state}


@dataclass(frozen=True)
class UsageReport:
    alias: str
    items: tuple[Usage, ...] = ()
    notes: tuple[str, ...] = field(default=())  # features the cluster does not have, etc.

    def of(self, kind: Kind) -> list[Usage]:
        return [u for u in self.items if u.kind == kind]

    def remote_patterns(self) -> list[str]:
        """Every remote index pattern in use, once, for the verification searches."""
        seen: list[str] = []
        for item in self.items:
            seen.extend(p for p in item.remote.patterns if p not in seen)
        return seen

    def role_names(self) -> list[str]:
        """Roles of the users that own the work (as far as Elasticsearch reports owners)."""
        names: list[str] = []
        for item in self.items:
            if item.owner:
                names.extend(r for r in item.owner.roles if r not in names)
        return names


# --- facts -> usage (pure) ---------------------------------------------------------------------

def _states(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, str]:
    return {row[key]: str(row.get("state", "unknown")) for row in rows}


def transforms_using(alias: str, transforms: Mapping[str, Any], stats: Mapping[str, Any]) -> list[Usage]:
    """From `GET _transform` and `GET _transform/_stats`."""
    states = _states(stats.get("transforms") or [], "id")
    found = []
    for t in transforms.get("transforms") or []:
        remote = remote_patterns((t.get("source") or {}).get("index"), alias)
        if remote:
            found.append(Usage("transform", t["id"], states.get(t["id"], "unknown"), remote,
                               Owner.from_authorization(t.get("authorization"))))
    return found


def datafeeds_using(alias: str, datafeeds: Mapping[str, Any], datafeed_stats: Mapping[str, Any],
                    job_stats: Mapping[str, Any]) -> list[Usage]:
    """From `GET _ml/datafeeds`, `GET _ml/datafeeds/_stats`, `GET _ml/anomaly_detectors/_stats`."""
    states = _states(datafeed_stats.get("datafeeds") or [], "datafeed_id")
    jobs = _states(job_stats.get("jobs") or [], "job_id")
    found = []
    for d in datafeeds.get("datafeeds") or []:
        remote = remote_patterns(d.get("indices"), alias)
        if remote:
            found.append(Usage("datafeed", d["datafeed_id"], states.get(d["datafeed_id"], "unknown"),
                               remote, Owner.from_authorization(d.get("authorization")),
                               job_id=d.get("job_id"), job_state=jobs.get(d.get("job_id"), "unknown")))
    return found


def followers_using(alias: str, follow_info: Mapping[str, Any]) -> list[Usage]:
    """From `GET /_all/_ccr/info` (or one index's): `remote_cluster` is an exact alias."""
    return [Usage("follower", f["follower_index"], str(f.get("status", "unknown")),
                  RemotePatterns((f["leader_index"],)))
            for f in follow_info.get("follower_indices") or [] if f.get("remote_cluster") == alias]


def auto_follow_using(alias: str, auto_follow: Mapping[str, Any]) -> list[Usage]:
    """From `GET /_ccr/auto_follow`: state `active` or `paused`."""
    found = []
    for p in auto_follow.get("patterns") or []:
        pattern = p.get("pattern") or {}
        if pattern.get("remote_cluster") == alias:
            remote = RemotePatterns(tuple(pattern.get("leader_index_patterns") or ()),
                                    tuple(pattern.get("leader_index_exclusion_patterns") or ()))
            found.append(Usage("auto_follow_pattern", p["name"],
                               "active" if pattern.get("active", True) else "paused", remote))
    return found


def find_usage(alias: str, *, transforms: Mapping[str, Any] | None = None,
               transform_stats: Mapping[str, Any] | None = None,
               datafeeds: Mapping[str, Any] | None = None,
               datafeed_stats: Mapping[str, Any] | None = None,
               job_stats: Mapping[str, Any] | None = None,
               follow_info: Mapping[str, Any] | None = None,
               auto_follow: Mapping[str, Any] | None = None,
               notes: Sequence[str] = ()) -> UsageReport:
    """Everything that uses `alias`, from the API responses (absent ones count as empty)."""
    items = [*transforms_using(alias, transforms or {}, transform_stats or {}),
             *datafeeds_using(alias, datafeeds or {}, datafeed_stats or {}, job_stats or {}),
             *auto_follow_using(alias, auto_follow or {}),
             *followers_using(alias, follow_info or {})]
    return UsageReport(alias, tuple(items), tuple(notes))


# --- reading the facts from a cluster -------------------------------------------------------------

_PAGE = 1000


def _get(es, cluster: str | None, path: str, params: Mapping[str, str] | None, notes: list[str]) -> dict:
    """A GET whose feature may be missing on the cluster (ML disabled: no handler): {} and a note."""
    try:
        return perform(es, cluster, ApiCall("GET", path, params=params or {}))
    except ClusterHTTPError as exc:
        if exc.status in (400, 404, 410) and "no handler found" in exc.reason:
            notes.append(f"{path}: not available on this cluster ({exc.reason})")
            return {}
        raise


def _paged(es, cluster: str | None, path: str, key: str, notes: list[str]) -> dict:
    """All pages of a `from`/`size` listing (transforms default to 100 per page)."""
    rows: list[Any] = []
    while True:
        page = _get(es, cluster, path, {"from": str(len(rows)), "size": str(_PAGE)}, notes)
        batch = page.get(key) or []
        rows.extend(batch)
        if not batch or len(rows) >= int(page.get("count", len(rows))):
            return {"count": len(rows), key: rows}


def read_usage(es, cluster: str | None, alias: str) -> UsageReport:
    """Read every listing and find what uses `alias` (read-only)."""
    notes: list[str] = []
    return find_usage(
        alias,
        transforms=_paged(es, cluster, "/_transform", "transforms", notes),
        transform_stats=_paged(es, cluster, "/_transform/_stats", "transforms", notes),
        datafeeds=_get(es, cluster, "/_ml/datafeeds", None, notes),
        datafeed_stats=_get(es, cluster, "/_ml/datafeeds/_stats", None, notes),
        job_stats=_get(es, cluster, "/_ml/anomaly_detectors/_stats", None, notes),
        follow_info=_get(es, cluster, "/_all/_ccr/info", None, notes),
        auto_follow=_get(es, cluster, "/_ccr/auto_follow", None, notes),
        notes=notes)
