"""The cross-cluster API key on the remote cluster: create it once, reuse it on re-runs.

Keys esremote owns are named `esremote-<local cluster>-<alias>` (a rotated key keeps the name) and
carry the metadata

    {"managed_by": "esremote",
     "esremote": {"run_id": ..., "alias": ..., "local_cluster": ..., "access_sha256": ...}}

(`access_sha256`: SHA-256 of the access as Elasticsearch means it, see `access_hash`). Keys made by
earlier runs have only the `esremote` object without `managed_by` and `access_sha256`; `is_managed`
counts them as esremote's too. A re-run finds the key of an earlier attempt (same name, owned by the
caller, type `cross_cluster`, neither invalidated nor expired) and updates its access when it
differs (`PUT _security/cross_cluster/api_key/<id>`; `{"updated": false}` means nothing changed)
instead of creating a second one. `expiration` (an Elasticsearch duration such as `90d`) is sent
only when a key is created: a reused key keeps its expiry (rotate it to change that).

Elasticsearch returns the key's secret only when it creates it, so reuse needs the encoded value
from wherever the caller stored it: `ensure_cross_cluster_key` takes a lookup `stored_secret(key_id)`
and, when it has nothing, invalidates the old key and creates a new one. The encoded key comes back
as a `SecretStr`, is added to the redactor, and never appears in a plan, a repr or an exception.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import SecretStr

from esremote.cluster.privileges import check_access
from esremote.cluster.calls import ApiCall, Outcome, perform, segment
from esremote.durations import DAY_MS, duration_ms, duration_text
from esremote.errors import ClusterHTTPError, PreconditionError
from esremote.redact import default_redactor

LICENCE_FEATURE = "advanced-remote-cluster-security"
SecretLookup = Callable[[str], "SecretStr | None"]
MANAGED_BY = "esremote"


def key_name(local_cluster: str, alias: str) -> str:
    return f"esremote-{local_cluster}-{alias}"


def key_metadata(run_id: str, alias: str, local_cluster: str,
                 access: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """esremote's metadata of a key (with the hash of `access` when given)."""
    own: dict[str, Any] = {"run_id": run_id, "alias": alias, "local_cluster": local_cluster}
    if access is not None:
        own["access_sha256"] = access_hash(access)
    return {"managed_by": MANAGED_BY, "esremote": own}


def access_hash(access: Mapping[str, Any]) -> str:
    """SHA-256 of `access` in the form `same_access` compares (defaults filled in, names and entries
    sorted): equal for a key's access as sent and as GET returns it."""
    canonical = {k: sorted(map(_norm_entry, access.get(k) or [])) for k in ("search", "replication")}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def is_managed(metadata: Mapping[str, Any] | None) -> bool:
    """A key esremote made: `managed_by: esremote`, or (earlier runs) an `esremote` object that
    names the alias and the local cluster."""
    metadata = metadata or {}
    if metadata.get("managed_by") == MANAGED_BY:
        return True
    own = metadata.get("esremote")
    return isinstance(own, Mapping) and bool(own.get("alias")) and bool(own.get("local_cluster"))


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
    username: str = ""
    certificate_identity: str | None = None   # 9.3+: the DN pattern a signing certificate must match

    @classmethod
    def from_response(cls, key: Mapping[str, Any]) -> KeyInfo:
        return cls(id=key["id"], name=key.get("name") or "", type=key.get("type", "rest"),
                   access=key.get("access") or {}, metadata=key.get("metadata") or {},
                   creation=int(key.get("creation") or 0), expiration=key.get("expiration"),
                   invalidated=bool(key.get("invalidated")), username=str(key.get("username") or ""),
                   certificate_identity=key.get("certificate_identity"))

    def usable(self, now_ms: int) -> bool:
        return (self.type == "cross_cluster" and not self.invalidated
                and (self.expiration is None or self.expiration > now_ms))

    @property
    def managed(self) -> bool:
        return is_managed(self.metadata)

    @property
    def owner(self) -> tuple[str, str] | None:
        """(local cluster, alias) from esremote's metadata; None for a key esremote did not make."""
        own = self.metadata.get("esremote")
        if not self.managed or not isinstance(own, Mapping):
            return None
        return str(own.get("local_cluster") or ""), str(own.get("alias") or "")

    def days_left(self, now_ms: int) -> float | None:
        """Days until the key expires (negative once expired); None when it never expires."""
        return None if self.expiration is None else (self.expiration - now_ms) / DAY_MS

    def state(self, now_ms: int) -> Literal["active", "expired", "invalidated"]:
        if self.invalidated:
            return "invalidated"
        return "expired" if self.expiration is not None and self.expiration <= now_ms else "active"

    def lifetime(self) -> str | None:
        """The duration the key was created with (expiration - creation), as Elasticsearch writes it."""
        if self.expiration is None or not self.creation:
            return None
        return duration_text(max(1000, int(round((self.expiration - self.creation) / 1000)) * 1000))


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


def certificate_identity(dn: str) -> str:
    """The `certificate_identity` pattern that matches exactly one DN (Elasticsearch matches it as a
    Java regex against the whole DN: anchored, every special character escaped)."""
    return "^" + re.escape(dn) + "$"


def create_call(name: str, access: Mapping[str, Any], metadata: Mapping[str, Any],
                expiration: str | None = None, identity: str | None = None) -> ApiCall:
    body: dict[str, Any] = {"name": name, "access": dict(access), "metadata": dict(metadata)}
    if expiration:
        body["expiration"] = expiration
    if identity is not None:
        # 9.3+ only (strong identity); elasticsearch-py 8.x has no parameter for it, and every call
        # here goes through the client's raw request (`perform` -> es.perform_request) anyway.
        body["certificate_identity"] = identity
    return ApiCall("POST", "/_security/cross_cluster/api_key", body, target=f"API key {name}")


def plan_key(existing: Sequence[KeyInfo], *, name: str, access: Mapping[str, Any],
             metadata: Mapping[str, Any], stored_secret: SecretLookup, expiration: str | None = None,
             identity: str | None = None) -> KeyPlan:
    """What to do given the usable keys of that name (newest first) and the stored secrets;
    `identity` is the `certificate_identity` the key must carry (None: none)."""
    create = create_call(name, access, metadata, expiration, identity)
    if not existing:
        return KeyPlan("create", (create,), reason="no earlier key of that name")
    key = existing[0]
    if stored_secret(key.id) is None:
        invalidate = ApiCall("DELETE", "/_security/api_key", {"ids": [key.id]}, target=f"API key {key.id}")
        return KeyPlan("recreate", (invalidate, create), key.id,
                       "its encoded value was not stored, so it cannot be given to the local cluster")
    same_identity = key.certificate_identity == identity
    if same_access(key.access, access) and dict(key.metadata) == dict(metadata) and same_identity:
        return KeyPlan("unchanged", (), key.id, "same access and metadata")
    body: dict[str, Any] = {"access": dict(access), "metadata": dict(metadata)}
    if not same_identity:  # null clears it; sent only when it changes (a key below 9.3 has none)
        body["certificate_identity"] = identity
    update = ApiCall("PUT", f"/_security/cross_cluster/api_key/{segment(key.id)}", body, target=f"API key {name}")
    return KeyPlan("update", (update,), key.id,
                   "access or metadata differ" if same_identity else "certificate_identity differs")


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
                             access: Mapping[str, Any], stored_secret: SecretLookup,
                             expiration: str | None = None, identity: str | None = None) -> CrossClusterKey:
    """Create the key, or bring the earlier one to `access`; the encoded value either way.

    `stored_secret(key_id)` gives the encoded value saved when that key was created (a
    `SecretStr`, or a plain string), or None when there is none. `expiration` applies to a key
    created now; `identity` is its `certificate_identity` (strong identity, 9.3+)."""
    check_access(access)
    if expiration:
        duration_ms(expiration)

    def secret(key_id: str) -> SecretStr | None:
        return _as_secret(stored_secret(key_id))

    name = key_name(local_cluster, alias)
    metadata = key_metadata(run_id, alias, local_cluster, access)
    plan = plan_key(find_keys(es, cluster, name), name=name, access=access, metadata=metadata,
                    stored_secret=secret, expiration=expiration, identity=identity)
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


def create_key(es, cluster: str | None, *, name: str, access: Mapping[str, Any], metadata: Mapping[str, Any],
               expiration: str | None = None, identity: str | None = None) -> tuple[str, SecretStr]:
    """A new cross-cluster key (rotation, which keeps the old key's `certificate_identity`): its id
    and encoded value (a redacted `SecretStr`)."""
    check_access(access)
    return _create(es, cluster, create_call(name, access, metadata, expiration, identity))


def get_key(es, cluster: str | None, key_id: str) -> KeyInfo | None:
    """One key by id (None when the cluster does not know it)."""
    try:
        response = perform(es, cluster, ApiCall("GET", "/_security/api_key", params={"id": key_id}))
    except ClusterHTTPError as exc:
        if exc.status == 404:
            return None
        raise
    found = [KeyInfo.from_response(k) for k in response.get("api_keys") or [] if k.get("id") == key_id]
    return found[0] if found else None


def list_cross_cluster_keys(es, cluster: str | None) -> list[KeyInfo]:
    """Every cross-cluster key the caller may see, oldest first, invalidated and expired ones included.

    `GET _security/api_key` has no type filter (its parameters: id, name, username, realm_name,
    owner, with_limited_by), so the REST keys are dropped here; with `manage_security` (which
    creating cross-cluster keys needs) the caller sees every user's keys."""
    try:
        response = perform(es, cluster, ApiCall("GET", "/_security/api_key"))
    except ClusterHTTPError as exc:
        if exc.status == 404:
            return []
        raise
    keys = [KeyInfo.from_response(k) for k in response.get("api_keys") or []]
    return sorted((k for k in keys if k.type == "cross_cluster"), key=lambda k: (k.creation, k.id))


def access_for_create(access: Mapping[str, Any]) -> dict[str, Any]:
    """A key's `access` as GET shows it, made fit for a create request: a DLS query that GET returns
    as a JSON string goes back as an object."""
    out: dict[str, Any] = {}
    for kind in ("search", "replication"):
        entries = []
        for entry in access.get(kind) or []:
            e = dict(entry)
            if isinstance(e.get("query"), str):
                try:
                    e["query"] = json.loads(e["query"])
                except ValueError:
                    pass
            entries.append(e)
        if entries:
            out[kind] = entries
    return out


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
    """Invalidate a key (rollback, retirement, rotation); one already invalidated is unchanged."""
    call = ApiCall("DELETE", "/_security/api_key", {"ids": [key_id]}, target=f"API key {key_id}")
    try:
        response = perform(es, cluster, call)
    except ClusterHTTPError as exc:
        if exc.status == 404:
            return Outcome(call.target, "unchanged", "unknown to the cluster", call)
        raise
    if key_id in (response.get("invalidated_api_keys") or []):
        return Outcome(call.target, "changed", "invalidated", call)
    return Outcome(call.target, "unchanged", "already invalidated or unknown", call)
