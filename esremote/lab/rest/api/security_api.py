"""Security REST APIs: authenticate, users, roles (with `remote_indices` / `remote_cluster` checked
per version), REST and cross-cluster API keys (derived role descriptor per version, licence check),
has_privileges and user privileges. Objects are stored in the cluster state (state.py)."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from esremote.lab import errors
from esremote.lab.rest.http import Request, Response
from esremote.lab.rest.routes import api
from esremote.lab.models.security import (RESERVED_ROLES, RESERVED_USERS, User, hash_key, hash_password,
                                   new_api_key_secret, new_id)

_CCS_INDEX_PRIVILEGES = ["read", "read_cross_cluster", "view_index_metadata"]
_CCR_INDEX_PRIVILEGES = ["cross_cluster_replication", "cross_cluster_replication_internal"]
CLUSTER_PRIVILEGES = {
    "all", "cancel_task", "create_snapshot", "cross_cluster_replication", "cross_cluster_search", "delegate_pki",
    "grant_api_key", "manage", "manage_api_key", "manage_autoscaling", "manage_ccr", "manage_enrich",
    "manage_ilm", "manage_index_templates", "manage_ingest_pipelines", "manage_logstash_pipelines", "manage_ml",
    "manage_oidc", "manage_own_api_key", "manage_pipeline", "manage_rollup", "manage_saml", "manage_search_application",
    "manage_security", "manage_service_account", "manage_slm", "manage_token", "manage_transform", "manage_watcher",
    "monitor", "monitor_enrich", "monitor_ml", "monitor_rollup", "monitor_snapshot", "monitor_text_structure",
    "monitor_transform", "monitor_watcher", "none", "post_behavioral_analytics_event", "read_ccr", "read_ilm",
    "read_pipeline", "read_security", "read_slm", "transport_client", "manage_user_profile", "monitor_stats",
    "manage_data_stream_global_retention", "monitor_data_stream_global_retention", "manage_inference",
    "monitor_inference", "read_fleet_secrets", "write_fleet_secrets", "write_connector_secrets",
    "read_connector_secrets", "cluster_settings", "reload_secure_settings",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------------------- authenticate

@api("security.authenticate")
def authenticate(req: Request) -> dict:
    return req.user.authentication_body()


# ---------------------------------------------------------------------------------------- users

def _user_body(record: dict) -> dict:
    return {"username": record["username"], "roles": record.get("roles", []), "full_name": record.get("full_name"),
            "email": record.get("email"), "metadata": record.get("metadata", {}), "enabled": record.get("enabled", True)}


def _reserved_user(ctx, name: str, state: dict) -> dict:
    return state["security"]["users"].get(name) or {
        "username": name, "roles": ["superuser"] if name == "elastic" else [name],
        "metadata": {"_reserved": True}, "enabled": True}


@api("security.put_user")
def put_user(req: Request) -> dict:
    name = req.path_params["username"]
    body = req.json(required=True)
    password = body.get("password")
    problems = []
    if password is not None and len(password) < 6:
        problems.append("passwords must be at least [6] characters long")
    if name in RESERVED_USERS:
        problems.append(f"user [{name}] is reserved and only the password can be changed")
    if problems:
        raise errors.ValidationError(*problems)
    with req.ctx.store.transaction() as st:
        users = st["security"]["users"]
        existing = users.get(name)
        if existing is None and password is None and "password_hash" not in body:
            raise errors.ValidationError("password must be specified unless you are updating an existing user")
        record = dict(existing or {"username": name})
        record.update({"username": name, "roles": body.get("roles", record.get("roles", [])),
                       "full_name": body.get("full_name", record.get("full_name")),
                       "email": body.get("email", record.get("email")),
                       "metadata": body.get("metadata", record.get("metadata", {})),
                       "enabled": body.get("enabled", record.get("enabled", True))})
        if password is not None:
            record["password_hash"] = hash_password(password)
        users[name] = record
    return {"created": existing is None}


@api("security.get_user")
def get_user(req: Request) -> Response:
    state = req.ctx.store.snapshot()
    names = req.list_param("username")
    users = {n: _user_body(_reserved_user(req.ctx, n, state)) for n in RESERVED_USERS}
    users.update({n: _user_body(r) for n, r in state["security"]["users"].items()})
    if not names:
        return Response(200, users)
    found = {n: users[n] for n in names if n in users}
    return Response(200 if found else 404, found)


@api("security.delete_user")
def delete_user(req: Request) -> Response:
    name = req.path_params["username"]
    if name in RESERVED_USERS:
        raise errors.IllegalArgument(f"user [{name}] is reserved and cannot be deleted")
    with req.ctx.store.transaction() as st:
        found = st["security"]["users"].pop(name, None) is not None
    return Response(200 if found else 404, {"found": found})


@api("security.enable_user")
def enable_user(req: Request) -> dict:
    name = req.path_params["username"]
    with req.ctx.store.transaction() as st:
        record = st["security"]["users"].get(name)
        if record is None and name in RESERVED_USERS:
            record = st["security"]["users"][name] = _reserved_user(req.ctx, name, st)
        if record is None:
            raise errors.ResourceNotFound(f"user [{name}] not found")
        record["enabled"] = True
    return {}


@api("security.change_password")
def change_password(req: Request) -> dict:
    name = req.path_params.get("username") or req.user.username
    if name != req.user.username:
        req.ctx.security.require_cluster(req.user, "cluster:admin/xpack/security/user/change_password",
                                         ["manage_security", "all"])
    password = (req.json(required=True) or {}).get("password")
    if not password or len(password) < 6:
        raise errors.ValidationError("passwords must be at least [6] characters long")
    with req.ctx.store.transaction() as st:
        users = st["security"]["users"]
        record = users.get(name)
        if record is None and name in RESERVED_USERS:
            record = users[name] = _reserved_user(req.ctx, name, st)
        if record is None:
            raise errors.ValidationError(f"user [{name}] does not exist")
        record["password_hash"] = hash_password(password)
    return {}


# ---------------------------------------------------------------------------------------- roles

def _as_list(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value or [])


def validate_role(name: str, body: dict, version: tuple[int, int, int]) -> dict:
    """A role descriptor as Elasticsearch parses it, with its version-specific rules."""
    known = {"cluster", "indices", "applications", "run_as", "metadata", "global", "transient_metadata",
             "remote_indices", "description", "restriction"}
    if version >= (8, 15, 0):
        known.add("remote_cluster")
    for key in body:
        if key not in known:
            raise errors.ParseError(f"failed to parse role [{name}]. unexpected field [{key}]")
    cluster = _as_list(body.get("cluster"))
    for privilege in cluster:
        if privilege not in CLUSTER_PRIVILEGES and not privilege.startswith(("cluster:", "internal:", "indices:")):
            raise errors.IllegalArgument(
                f"unknown cluster privilege [{privilege}]. a privilege must be either one of the predefined cluster "
                f"privilege names [{','.join(sorted(CLUSTER_PRIVILEGES))}] or a pattern over one of the available "
                "cluster actions")
    role: dict[str, Any] = {"cluster": cluster, "indices": [], "applications": body.get("applications", []),
                            "run_as": _as_list(body.get("run_as")), "metadata": body.get("metadata", {}),
                            "transient_metadata": {"enabled": True}}
    if "global" in body:
        role["global"] = body["global"]
    for entry in body.get("indices", []):
        role["indices"].append(_index_entry(name, entry, "indices"))
    problems = []
    if "remote_indices" in body:
        role["remote_indices"] = []
        for entry in body["remote_indices"]:
            if "clusters" not in entry:
                raise errors.ParseError(f"failed to parse remote indices privileges for role [{name}]. "
                                        "missing required [clusters] field")
            clusters = _as_list(entry["clusters"])
            if any(c == "" for c in clusters):
                problems.append("remote index cluster alias cannot be an empty string")
            rendered = _index_entry(name, entry, "remote indices")
            rendered["clusters"] = clusters
            role["remote_indices"].append(rendered)
    if "remote_cluster" in body:
        allowed = ["monitor_enrich"] + (["monitor_stats"] if version >= (8, 17, 0) else [])
        role["remote_cluster"] = []
        for entry in body["remote_cluster"]:
            clusters = _as_list(entry.get("clusters"))
            if not clusters or any(not c for c in clusters):
                raise errors.IllegalArgument("remote_cluster clusters aliases must contain valid non-empty, "
                                             "non-null values")
            bad = [p for p in _as_list(entry.get("privileges")) if p not in allowed]
            if bad:
                raise errors.IllegalArgument(f"Invalid remote_cluster permissions found. Please remove the following: "
                                             f"[{', '.join(bad)}] Only [{', '.join(allowed)}] are allowed")
            role["remote_cluster"].append({"privileges": _as_list(entry.get("privileges")), "clusters": clusters})
    if problems:
        raise errors.ValidationError(*problems)
    if "description" in body:
        role["description"] = body["description"]
    return role


def _index_entry(role: str, entry: dict, what: str) -> dict:
    if "names" not in entry:
        raise errors.ParseError(f"failed to parse {what} privileges for role [{role}]. missing required [names] field")
    if "privileges" not in entry:
        raise errors.ParseError(f"failed to parse {what} privileges for role [{role}]. missing required "
                                "[privileges] field")
    rendered = {"names": _as_list(entry["names"]), "privileges": _as_list(entry["privileges"])}
    if "field_security" in entry:
        rendered["field_security"] = entry["field_security"]
    if "query" in entry:
        rendered["query"] = entry["query"]
    rendered["allow_restricted_indices"] = bool(entry.get("allow_restricted_indices", False))
    return rendered


_ROLE_ORDER = ("cluster", "global", "indices", "applications", "run_as", "metadata", "transient_metadata",
               "remote_indices", "remote_cluster", "description")


def role_body(role: dict) -> dict:
    return {k: role[k] for k in _ROLE_ORDER if k in role}


@api("security.put_role")
def put_role(req: Request) -> dict:
    name = req.path_params["name"]
    if name in RESERVED_ROLES:
        raise errors.IllegalArgument(f"role [{name}] is reserved and cannot be modified.")
    role = validate_role(name, req.json(required=True), req.ctx.config.version)
    with req.ctx.store.transaction() as st:
        created = name not in st["security"]["roles"]
        st["security"]["roles"][name] = role
    return {"role": {"created": created}}


@api("security.get_role")
def get_role(req: Request) -> Response:
    roles = {n: role_body({**RESERVED_ROLES[n], "transient_metadata": {"enabled": True}, "indices": RESERVED_ROLES[n].get("indices", []),
                           "applications": RESERVED_ROLES[n].get("applications", []), "run_as": RESERVED_ROLES[n].get("run_as", [])})
             for n in RESERVED_ROLES}
    roles.update({n: role_body(r) for n, r in req.ctx.store.snapshot()["security"]["roles"].items()})
    names = req.list_param("name")
    if not names:
        return Response(200, roles)
    found = {n: roles[n] for n in names if n in roles}
    return Response(200 if found else 404, found)


@api("security.delete_role")
def delete_role(req: Request) -> Response:
    name = req.path_params["name"]
    if name in RESERVED_ROLES:
        raise errors.IllegalArgument(f"role [{name}] is reserved and cannot be deleted")
    with req.ctx.store.transaction() as st:
        found = st["security"]["roles"].pop(name, None) is not None
    return Response(200 if found else 404, {"found": found})


# ------------------------------------------------------------------------------------- API keys

def _parse_expiration(value: Any) -> int | None:
    if value is None:
        return None
    from esremote.lab.rest.api.cluster import parse_time_param
    return _now_ms() + int(parse_time_param(str(value), 0) * 1000)


def _owner_descriptors(ctx, user: User) -> list[dict]:
    if user.api_key is not None:
        return [{n: rd} for n, rd in user.api_key.get("role_descriptors", {}).items()]
    return [{d["name"]: {k: v for k, v in d.items() if k != "name"} for d in user.descriptors}]


def _new_key(req: Request, name: str, kind: str, expiration: Any, metadata: dict, **fields: Any) -> dict:
    key_id, secret = new_id(), new_api_key_secret()
    user = req.user
    record = {"id": key_id, "name": name, "type": kind, "key_hash": hash_key(secret), "creation": _now_ms(),
              "expiration": _parse_expiration(expiration), "invalidated": False, "invalidation": None,
              "username": user.username, "realm": user.realm, "realm_type": user.realm_type,
              "metadata": metadata or {}, **fields}
    with req.ctx.store.transaction() as st:
        st["security"]["api_keys"][key_id] = record
    answer = {"id": key_id, "name": name}
    if record["expiration"] is not None:
        answer["expiration"] = record["expiration"]
    answer["api_key"] = secret
    answer["encoded"] = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return answer


def _check_metadata(metadata: Any) -> dict:
    metadata = metadata or {}
    reserved = [k for k in metadata if k.startswith("_")]
    if reserved:
        raise errors.ValidationError("API key metadata keys may not start with [_]")
    return metadata


@api("security.create_api_key")
def create_api_key(req: Request) -> dict:
    body = req.json(required=True)
    if not body.get("name"):
        raise errors.ValidationError("api key name is required")
    descriptors = {}
    for rname, rd in (body.get("role_descriptors") or {}).items():
        descriptors[rname] = validate_role(rname, rd, req.ctx.config.version)
    return _new_key(req, body["name"], "rest", body.get("expiration"), _check_metadata(body.get("metadata")),
                    role_descriptors=descriptors, limited_by=_owner_descriptors(req.ctx, req.user))


def cross_cluster_descriptor(access: Any, version: tuple[int, int, int]) -> dict:
    """The one `cross_cluster` role descriptor derived from `access` (CrossClusterApiKeyRoleDescriptorBuilder)."""
    if access is None:
        raise errors.IllegalArgument("access doesn't support values of type: VALUE_NULL")
    if not isinstance(access, dict):
        raise errors.ParseError("access must be an object")
    unknown = set(access) - {"search", "replication"}
    if unknown:
        raise errors.XContentParseError(f"[cross_cluster_api_key_access] unknown field [{sorted(unknown)[0]}]")
    search, replication = access.get("search") or [], access.get("replication") or []
    for entry in search + replication:
        if "privileges" in entry:
            raise errors.ParseError("failed to parse indices privileges for role [cross_cluster]. "
                                    "field [privileges] must not present")
        if "names" not in entry:
            raise errors.ParseError("failed to parse indices privileges for role [cross_cluster]. "
                                    "missing required [names] field")
    if not search and not replication:
        raise errors.IllegalArgument("must specify non-empty access for either [search] or [replication]")
    post_ga = version >= (8, 14, 0)
    ccs = ["cross_cluster_search", "monitor_enrich"] if post_ga else ["cross_cluster_search"]
    dls = lambda e: "query" in e or "field_security" in e  # noqa: E731
    if search and replication:
        cluster = ccs + ["cross_cluster_replication"]
        if post_ga and any(dls(e) for e in search):
            raise errors.IllegalArgument("search does not support document or field level security if "
                                         "replication is assigned")
    else:
        cluster = ccs if search else ["cross_cluster_replication"]
    if any(dls(e) for e in replication):
        raise errors.IllegalArgument("replication does not support document or field level security")
    indices = []
    for entry in search:
        rendered = {"names": _as_list(entry["names"]), "privileges": list(_CCS_INDEX_PRIVILEGES)}
        for extra in ("field_security", "query"):
            if extra in entry:
                rendered[extra] = entry[extra]
        rendered["allow_restricted_indices"] = bool(entry.get("allow_restricted_indices", False))
        indices.append(rendered)
    for entry in replication:
        indices.append({"names": _as_list(entry["names"]), "privileges": list(_CCR_INDEX_PRIVILEGES),
                        "allow_restricted_indices": bool(entry.get("allow_restricted_indices", False))})
    return {"cluster": cluster, "indices": indices, "applications": [], "run_as": [], "metadata": {},
            "transient_metadata": {"enabled": True}}


def _access_body(access: dict) -> dict:
    out = {}
    for kind in ("search", "replication"):
        if access.get(kind):
            out[kind] = [{**{k: v for k, v in e.items() if k != "allow_restricted_indices"},
                          "names": _as_list(e["names"]),
                          "allow_restricted_indices": bool(e.get("allow_restricted_indices", False))}
                         for e in access[kind]]
    return out


CERTIFICATE_IDENTITY_SINCE = (9, 3, 0)  # strong identity verification (technical preview, es-facts §12)


def _check_fields(req: Request, body: dict, parser: str, known: tuple[str, ...]) -> None:
    """The request parser's strictness: a field it does not know (`certificate_identity` before
    9.3 included) fails at its position in the body."""
    if req.ctx.config.version >= CERTIFICATE_IDENTITY_SINCE:
        known += ("certificate_identity",)
    for name in body:
        if name not in known:
            column = req.raw_body.find(f'"{name}"'.encode()) + 1
            raise errors.XContentParseError(f"[1:{max(column, 1)}] [{parser}] unknown field [{name}]")


def _certificate_identity(value: Any) -> str | None:
    """A pattern matched against the signing certificate's DN; null means none (CertificateIdentity)."""
    if value is None:
        return None
    try:
        re.compile(str(value))
    except re.error:
        raise errors.IllegalArgument(f"Invalid certificate_identity format: [{value}]. Must be a valid regex.") \
            from None
    return str(value)


@api("security.create_cross_cluster_api_key")
def create_cross_cluster_api_key(req: Request) -> dict:
    req.ctx.security.require_advanced_remote_cluster_security()
    if req.user.api_key is not None:
        raise errors.IllegalArgument("authentication via API key not supported: An API key cannot be used to "
                                     "create a cross-cluster API key")
    body = req.json(required=True)
    _check_fields(req, body, "cross_cluster_api_key_request", ("name", "access", "expiration", "metadata"))
    if "access" not in body:
        raise errors.XContentParseError("[1:2] [cross_cluster_api_key_request] Required [access]")
    if not body.get("name"):
        raise errors.ValidationError("api key name is required")
    descriptor = cross_cluster_descriptor(body["access"], req.ctx.config.version)
    identity = {"certificate_identity": _certificate_identity(body["certificate_identity"])} \
        if body.get("certificate_identity") is not None else {}
    return _new_key(req, body["name"], "cross_cluster", body.get("expiration"), _check_metadata(body.get("metadata")),
                    role_descriptors={"cross_cluster": descriptor}, access=_access_body(body["access"]), **identity)


@api("security.update_cross_cluster_api_key")
def update_cross_cluster_api_key(req: Request) -> dict:
    req.ctx.security.require_advanced_remote_cluster_security()
    if req.user.api_key is not None:
        raise errors.IllegalArgument("authentication via API key not supported: An API key cannot be used to "
                                     "update an API key")
    key_id = req.path_params["id"]
    body = req.json(required=True)
    _check_fields(req, body, "update_cross_cluster_api_key_request", ("access", "expiration", "metadata"))
    if not {"access", "metadata", "expiration", "certificate_identity"} & set(body):
        raise errors.ValidationError("must update either [access] or [metadata] for cross-cluster API keys")
    with req.ctx.store.transaction() as st:
        record = st["security"]["api_keys"].get(key_id)
        if record is None or record["username"] != req.user.username:
            raise errors.ResourceNotFound(f"no API key owned by requesting user found for ID [{key_id}]")
        if record.get("type", "rest") != "cross_cluster":
            raise errors.IllegalArgument(f"cannot update API key of type [{record.get('type', 'rest')}] while "
                                         "expected type is [cross_cluster]")
        if record.get("invalidated"):
            raise errors.IllegalArgument(f"cannot update invalidated API key [{key_id}]")
        if record.get("expiration") and record["expiration"] < _now_ms():
            raise errors.IllegalArgument(f"cannot update expired API key [{key_id}]")
        before = dict(record)
        if "access" in body:
            record["role_descriptors"] = {"cross_cluster": cross_cluster_descriptor(body["access"], req.ctx.config.version)}
            record["access"] = _access_body(body["access"])
        if "metadata" in body:
            record["metadata"] = _check_metadata(body["metadata"])
        if "expiration" in body:
            record["expiration"] = _parse_expiration(body["expiration"])
        if "certificate_identity" in body:  # null clears it
            identity = _certificate_identity(body["certificate_identity"])
            if identity is None:
                record.pop("certificate_identity", None)
            else:
                record["certificate_identity"] = identity
        updated = record != before
    return {"updated": updated}


def key_body(record: dict, with_limited_by: bool = False) -> dict:
    body = {"id": record["id"], "name": record["name"], "type": record.get("type", "rest"),
            "creation": record["creation"]}
    if record.get("expiration") is not None:
        body["expiration"] = record["expiration"]
    body["invalidated"] = record.get("invalidated", False)
    if record.get("invalidation") is not None:
        body["invalidation"] = record["invalidation"]
    body.update({"username": record["username"], "realm": record.get("realm", "default_native"),
                 "realm_type": record.get("realm_type", "native"), "metadata": record.get("metadata", {}),
                 "role_descriptors": {n: role_body(rd) for n, rd in record.get("role_descriptors", {}).items()}})
    if record.get("type") == "cross_cluster":
        body["access"] = record.get("access", {})
        if record.get("certificate_identity") is not None:
            body["certificate_identity"] = record["certificate_identity"]
    elif with_limited_by:
        body["limited_by"] = record.get("limited_by", [])
    return body


def _visible_keys(req: Request, state: dict) -> list[dict]:
    manage_all = req.ctx.security.has_cluster_privilege(req.user, "manage_api_key")
    keys = list(state["security"]["api_keys"].values())
    if not manage_all:
        keys = [k for k in keys if k["username"] == req.user.username]
    return keys


@api("security.get_api_key")
def get_api_key(req: Request) -> dict:
    state = req.ctx.store.snapshot()
    keys = _visible_keys(req, state)
    wanted = {"id": req.param("id"), "name": req.param("name"), "username": req.param("username"),
              "realm": req.param("realm_name")}
    if req.bool_param("owner"):
        wanted["username"] = req.user.username
    import fnmatch
    for field, value in wanted.items():
        if value:
            keys = [k for k in keys if fnmatch.fnmatchcase(str(k.get(field)), value)]
    if req.bool_param("active_only"):
        keys = [k for k in keys if not k.get("invalidated") and not (k.get("expiration") and k["expiration"] < _now_ms())]
    return {"api_keys": [key_body(k, req.bool_param("with_limited_by")) for k in sorted(keys, key=lambda k: k["creation"])]}


@api("security.query_api_keys")
def query_api_keys(req: Request) -> dict:
    body = req.json() or {}
    keys = _visible_keys(req, req.ctx.store.snapshot())
    query = body.get("query") or {}
    if "ids" in query:
        keys = [k for k in keys if k["id"] in query["ids"].get("values", [])]
    for clause in ("term", "match"):
        for field, value in (query.get(clause) or {}).items():
            value = value.get("value", value.get("query")) if isinstance(value, dict) else value
            keys = [k for k in keys if str(k.get(field)) == str(value)]
    rendered = [key_body(k) for k in sorted(keys, key=lambda k: k["creation"])]
    size = int(body.get("size", 10))
    return {"total": len(rendered), "count": min(size, len(rendered)), "api_keys": rendered[:size]}


@api("security.invalidate_api_key")
def invalidate_api_key(req: Request) -> dict:
    body = req.json(required=True)
    ids = _as_list(body.get("ids")) + ([body["id"]] if body.get("id") else [])
    name, owner = body.get("name"), body.get("owner")
    if not ids and not name and not owner and not body.get("username") and not body.get("realm_name"):
        raise errors.ValidationError("One of [api key id(s), api key name, username, realm name] must be specified "
                                     "if [owner] flag is false")
    manage_all = req.ctx.security.has_cluster_privilege(req.user, "manage_api_key")
    done, already = [], []
    with req.ctx.store.transaction() as st:
        for record in st["security"]["api_keys"].values():
            if ids and record["id"] not in ids or name and record["name"] != name:
                continue
            if owner and record["username"] != req.user.username:
                continue
            if body.get("username") and record["username"] != body["username"]:
                continue
            if not manage_all and record["username"] != req.user.username:
                continue
            if record.get("invalidated"):
                already.append(record["id"])
            else:
                record["invalidated"], record["invalidation"] = True, _now_ms()
                done.append(record["id"])
    return {"invalidated_api_keys": done, "previously_invalidated_api_keys": already, "error_count": 0}


# ---------------------------------------------------------------------------------- privileges

@api("security.has_privileges")
def has_privileges(req: Request) -> dict:
    body = req.json() or {}
    sec, user = req.ctx.security, req.user
    cluster = {p: sec.has_cluster_privilege(user, p) for p in body.get("cluster", [])}
    index: dict[str, dict[str, bool]] = {}
    for entry in body.get("index", []):
        for name in _as_list(entry.get("names")):
            index.setdefault(name, {}).update({p: sec.can_access_index(user, name, [p])
                                                for p in entry.get("privileges", [])})
    everything = all(cluster.values()) and all(v for i in index.values() for v in i.values())
    return {"username": user.username, "has_all_requested": everything, "cluster": cluster, "index": index,
            "application": {}}


@api("security.get_user_privileges")
def get_user_privileges(req: Request) -> dict:
    user = req.user
    body = {"cluster": sorted({p for rd in user.descriptors for p in rd.get("cluster", [])}), "global": [],
            "indices": [e for rd in user.descriptors for e in rd.get("indices", [])],
            "applications": [], "run_as": sorted({p for rd in user.descriptors for p in rd.get("run_as", [])})}
    remote = [e for rd in user.descriptors for e in rd.get("remote_indices", [])]
    if remote:
        body["remote_indices"] = remote
    remote_cluster = [e for rd in user.descriptors for e in rd.get("remote_cluster", [])]
    if remote_cluster:
        body["remote_cluster"] = remote_cluster
    return body
