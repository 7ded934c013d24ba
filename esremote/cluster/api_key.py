"""The cross-cluster API key on the remote cluster: create it once, reuse it on re-runs.

The key is named `esremote-<local cluster>-<alias>` and carries `{"esremote": {run_id, alias,
local_cluster}}` metadata. A re-run finds the key of an earlier attempt (same name, owned by the
caller, type `cross_cluster`, neither invalidated nor expired) and updates its access when it
differs (`PUT _security/cross_cluster/api_key/<id>`; `{"updated": false}` means nothing changed)
instead of creating a second one.

Elasticsearch returns the key's secret only when it creates it, so reuse needs the encoded value
from wherever the caller stored it: `ensure_cross_cluster_key` takes a lookup `stored_secret(key_id)`
and, when it has nothing, invalidates the old key and creates a new one. The encoded key comes back
as a `SecretStr`, is added to the redactor, and never appears in a plan, a repr or an exception.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from esremote.cluster.privileges import check_access
from esremote.cluster.calls import ApiCall, Outcome, perform, segment
from esremote.errors import ClusterHTTPError, PreconditionError
from esremote.redact import default_redactor

LICENCE_FEATURE = "advanced-remote-cluster-security"
SecretLookup = Callable[[str], "SecretStr | None"]


def key_name(local_cluster: str, alias: str) -> str:
    return f"esremote-{local_cluster}-{alias}"


def key_metadata(run_id: str, alias: str, local_cluster: str) -> dict[str, Any]:
    return {"esremote": {"run_id": run_id, "alias": alias, "local_cluster": local_cluster}}


@dataclass(frozen=True)
class KeyInfo:
    """A key as `GET _security/api_key` describes it (never with its secret)."""

    id: str
    name: str
    type: str
    access: Mapping[str, Any]
    metadata: Mapping[str, Any]
    creation: int = 0
    expiration: int | None = None
    invalidated: bool = False

    @classmethod
    def from_response(cls, key: Mapping[str, Any]) -> KeyInfo:
        return cls(id=key["id"], name=key.get("name") or "", type=key.get("type", "rest"),
                   access=key.get("access") or {}, metadata=key.get("metadata") or {},
                   creation=int(key.get("creation") or 0), expiration=key.get("expiration"),
                   invalidated=bool(key.get("invalidated")))

    def usable(self, now_ms: int) -> bool:
        return (self.type == "cross_cluster" and not self.invalidated
                and (self.expiration is None or self.expiration > now_ms))


def usable_keys(response: Mapping[str, Any], name: str, now_ms: int | None = None) -> list[KeyInfo]:
    """The valid cross-cluster keys called `name` in a GET/query response, newest first."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    keys = [KeyInfo.from_response(k) for k in response.get("api_keys") or []]
    found = [k for k in keys if k.name == name and k.usable(now_ms)]
    return sorted(found, key=lambda k: k.creation, reverse=True)


def _norm_entry(entry: Mapping[str, Any]) -> str:
    e = dict(entry)
    e["names"] = sorted(e.get("names") or [])
    e["allow_restricted_indices"] = bool(e.get("allow_restricted_indices", False))
    query = e.get("query")
    if isinstance(query, str):  # GET returns the DLS query as a JSON string
        try:
            query = json.loads(query)
        except ValueError:
            pass
    if query is not None:
        e["query"] = query
    return json.dumps(e, sort_keys=True)


def same_access(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as Elasticsearch means them (defaults filled in, names and entries in any order)."""
    return all(sorted(map(_norm_entry, a.get(k) or [])) == sorted(map(_norm_entry, b.get(k) or []))
               for k in ("search", "replication"))


Action = Literal["create", "update", "unchanged", "recreate"]


@dataclass(frozen=True)
class KeyPlan:
    action: Action
    calls: tuple[ApiCall, ...] = ()
    key_id: str | None = None     # the existing key an update/reuse/recreate is about
    reason: str = ""


def plan_key(existing: Sequence[KeyInfo], *, name: str, access: Mapping[str, Any],
             metadata: Mapping[str, Any], stored_secret: SecretLookup) -> KeyPlan:
    """What to do given the usable keys of that name (newest first) and the stored secrets."""
    create = ApiCall("POST", "/_security/cross_cluster/api_key",
                     {"name": name, "access": dict(access), "metadata": dict(metadata)},
                     target=f"API key {name}")
    if not existing:
        return KeyPlan("create", (create,), reason="no earlier key of that name")
    key = existing[0]
    if stored_secret(key.id) is None:
        invalidate = ApiCall("DELETE", "/_security/api_key", {"ids": [key.id]}, target=f"API key {key.id}")
        return KeyPlan("recreate", (invalidate, create), key.id,
                       "its encoded value was not stored, so it cannot be given to the local cluster")
    if same_access(key.access, access) and dict(key.metadata) == dict(metadata):
        return KeyPlan("unchanged", (), key.id, "same access and metadata")
    update = ApiCall("PUT", f"/_security/cross_cluster/api_key/{segment(key.id)}",
                     {"access": dict(access), "metadata": dict(metadata)}, target=f"API key {name}")
    return KeyPlan("update", (update,), key.id, "access or metadata differ")


@dataclass(frozen=True)
class CrossClusterKey:
    """The key to put in `cluster.remote.<alias>.credentials` (encoded: base64 of id:api_key)."""

    id: str
    name: str
    encoded: SecretStr
    outcome: Literal["created", "recreated", "updated", "unchanged"]
    outcomes: tuple[Outcome, ...] = field(default=(), compare=False)


def find_keys(es, cluster: str | None, name: str) -> list[KeyInfo]:
    """Usable cross-cluster keys of that name that the caller owns (and so may update)."""
    try:
        response = perform(es, cluster, ApiCall("GET", "/_security/api_key",
                                                params={"name": name, "owner": "true"}))
    except ClusterHTTPError as exc:
        if exc.status == 404:  # no key of that name
            return []
        raise
    return usable_keys(response, name)


def ensure_cross_cluster_key(es, cluster: str | None, *, local_cluster: str, alias: str, run_id: str,
                             access: Mapping[str, Any], stored_secret: SecretLookup) -> CrossClusterKey:
    """Create the key, or bring the earlier one to `access`; the encoded value either way.

    `stored_secret(key_id)` gives the encoded value saved when that key was created (a
    `SecretStr`, or a plain string), or None when there is none."""
    check_access(access)

    def secret(key_id: str) -> SecretStr | None:
        return _as_secret(stored_secret(key_id))

    name = key_name(local_cluster, alias)
    metadata = key_metadata(run_id, alias, local_cluster)
    plan = plan_key(find_keys(es, cluster, name), name=name, access=access, metadata=metadata,
                    stored_secret=secret)
    if plan.action == "unchanged":
        return CrossClusterKey(plan.key_id, name, secret(plan.key_id), "unchanged",
                               (Outcome(f"API key {name}", "unchanged", plan.reason),))
    if plan.action == "update":
        (call,) = plan.calls
        updated = _licensed(cluster, lambda: perform(es, cluster, call)).get("updated")
        outcome = Outcome(call.target, "changed" if updated else "unchanged",
                          "access updated" if updated else "Elasticsearch: no change", call)
        return CrossClusterKey(plan.key_id, name, secret(plan.key_id),
                               "updated" if updated else "unchanged", (outcome,))
    outcomes = []
    for call in plan.calls[:-1]:  # invalidate the key whose secret is lost
        perform(es, cluster, call)
        outcomes.append(Outcome(call.target, "changed", "invalidated: " + plan.reason, call))
    key_id, encoded = _create(es, cluster, plan.calls[-1])
    outcomes.append(Outcome(plan.calls[-1].target, "changed", f"created {key_id}", plan.calls[-1]))
    return CrossClusterKey(key_id, name, encoded, "created" if plan.action == "create" else "recreated",
                           tuple(outcomes))


def _as_secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


@contextlib.contextmanager
def _no_wire_debug() -> Iterator[None]:
    """elastic-transport logs whole response bodies at DEBUG, the new secret included, before the
    redactor can know it: keep that logger above DEBUG while the key is created."""
    wire = logging.getLogger("elastic_transport.node")
    level = wire.level
    wire.setLevel(max(logging.INFO, wire.getEffectiveLevel()))
    try:
        yield
    finally:
        wire.setLevel(level)


def _create(es, cluster: str | None, call: ApiCall) -> tuple[str, SecretStr]:
    with _no_wire_debug():
        response = _licensed(cluster, lambda: perform(es, cluster, call))
    key_id, api_key = response.get("id"), response.get("api_key")
    encoded = response.get("encoded")
    response.clear()  # nothing else should hold the secret
    if not key_id or not (api_key or encoded):
        raise PreconditionError(f"cluster {cluster}: creating the cross-cluster API key returned no key "
                                "(fields id/api_key missing): check the cluster's version (8.10 or later)")
    if not encoded:
        encoded = base64.b64encode(f"{key_id}:{api_key}".encode()).decode()
    if api_key:
        default_redactor.add_api_key(key_id, api_key)
    default_redactor.add(encoded, with_encodings=False)
    return key_id, SecretStr(encoded)


def _licensed(cluster: str | None, send: Callable[[], Any]) -> Any:
    """Run a create/update; the licence refusal becomes a `PreconditionError` that says what to do."""
    try:
        return send()
    except ClusterHTTPError as exc:
        if exc.status == 403 and f"non-compliant for [{LICENCE_FEATURE}]" in exc.reason:
            raise PreconditionError(
                f"cluster {cluster}: the licence does not allow cross-cluster API keys "
                f"(feature [{LICENCE_FEATURE}] needs an enterprise licence): start a trial "
                "(POST _license/start_trial?acknowledge=true) or install an enterprise licence, "
                "then run again") from exc
        raise


def invalidate_key(es, cluster: str | None, key_id: str) -> Outcome:
    """Invalidate a key (rollback, retirement); one already invalidated is unchanged."""
    call = ApiCall("DELETE", "/_security/api_key", {"ids": [key_id]}, target=f"API key {key_id}")
    response = perform(es, cluster, call)
    if key_id in (response.get("invalidated_api_keys") or []):
        return Outcome(call.target, "changed", "invalidated", call)
    return Outcome(call.target, "unchanged", "already invalidated or unknown", call)
