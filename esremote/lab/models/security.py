"""Users, roles and API keys of one lab cluster, and the checks Elasticsearch makes with them.

Objects live in the cluster state (`security.users`, `security.roles`, `security.api_keys`; shapes
in state.py). The `elastic` superuser's password is `bootstrap.password` from the node's keystore
until it is changed through the API, as in Elasticsearch.

Authentication: `Authorization: Basic ...` (native users) or `Authorization: ApiKey ...` (REST API
keys; a cross-cluster key is refused on REST). Authorization: cluster privileges per action
(`require_cluster`) and index privileges (`check_index_access`), with Elasticsearch's texts.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from esremote.lab import errors

RESERVED_USERS = ("elastic", "kibana_system", "logstash_system", "beats_system", "apm_system",
                  "remote_monitoring_user")
RESERVED_ROLES: dict[str, dict] = {
    "superuser": {"cluster": ["all"], "indices": [{"names": ["*"], "privileges": ["all"],
                                                    "allow_restricted_indices": True}],
                  "applications": [{"application": "*", "privileges": ["*"], "resources": ["*"]}],
                  "run_as": ["*"], "metadata": {"_reserved": True}, "transient_metadata": {"enabled": True}},
    "monitoring_user": {"cluster": [], "indices": [{"names": [".monitoring-*"], "privileges": ["read"]}],
                        "metadata": {"_reserved": True}},
    "kibana_system": {"cluster": ["monitor"], "indices": [], "metadata": {"_reserved": True}},
    "viewer": {"cluster": [], "indices": [{"names": ["*"], "privileges": ["read", "view_index_metadata"]}],
               "metadata": {"_reserved": True}},
    "editor": {"cluster": [], "indices": [{"names": ["*"], "privileges": ["read", "write", "view_index_metadata"]}],
               "metadata": {"_reserved": True}},
}
_RESERVED_USER_ROLES = {"elastic": ["superuser"], "kibana_system": ["kibana_system"]}

# Cluster privileges and what they imply (a subset of Elasticsearch's ClusterPrivilegeResolver).
_CLUSTER_IMPLIES: dict[str, set[str]] = {
    "all": {"*"},
    "manage": {"monitor", "manage_ccr", "manage_ml", "manage_transform", "manage_ilm", "manage_index_templates",
               "read_ccr", "monitor_ml", "monitor_transform", "cluster_settings", "manage_enrich",
               "monitor_enrich", "reload_secure_settings"},
    "manage_security": {"manage_api_key", "manage_own_api_key", "read_security", "manage_user", "manage_role",
                        "reload_secure_settings"},
    "manage_api_key": {"manage_own_api_key"},
    "manage_ml": {"monitor_ml"},
    "manage_transform": {"monitor_transform"},
    "manage_ccr": {"read_ccr"},
    "monitor": {"monitor_ml", "monitor_transform", "monitor_enrich"},
}

_INDEX_IMPLIES: dict[str, set[str]] = {
    "all": {"*"},
    "manage": {"view_index_metadata", "monitor", "create_index", "delete_index", "manage_follow_index"},
    "write": {"index", "create", "delete", "create_doc"},
    "read": {"read_cross_cluster"} ,
}

_PASSWORD_ITERATIONS = 10_000


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _PASSWORD_ITERATIONS)
    return f"{{PBKDF2}}{_PASSWORD_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        iterations, salt, digest = stored.removeprefix("{PBKDF2}").split("$")
        computed = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def privilege_granted(held: list[str], wanted: str, implies: dict[str, set[str]]) -> bool:
    for privilege in held:
        if privilege == wanted or fnmatch.fnmatchcase(wanted, privilege):
            return True
        granted = implies.get(privilege, set())
        if "*" in granted or wanted in granted:
            return True
    return False


@dataclass
class User:
    username: str
    roles: list[str]
    full_name: str | None = None
    email: str | None = None
    metadata: dict = field(default_factory=dict)
    enabled: bool = True
    realm: str = "default_native"
    realm_type: str = "native"
    api_key: dict | None = None      # the key record when authenticated by API key
    descriptors: list[dict] = field(default_factory=list)  # effective role descriptors
    limited_by: list[dict] | None = None                   # API keys: the owner's descriptors
    missing_roles: list[str] = field(default_factory=list)

    @property
    def is_superuser(self) -> bool:
        held = [p for rd in self.descriptors for p in rd.get("cluster", [])]
        limited = [p for rd in (self.limited_by or []) for p in rd.get("cluster", [])]
        return "all" in held and (self.limited_by is None or "all" in limited)

    def authorization_info(self) -> dict:
        """What a background task's config shows as `authorization` (Elasticsearch 8.x,
        `XContentUtils.addAuthorizationInfo`): the API key's id and name when the caller used one,
        else the user's roles at this moment (the lab has no service accounts)."""
        if self.api_key:
            return {"api_key": {"id": self.api_key["id"], "name": self.api_key["name"]}}
        return {"roles": list(self.roles)}

    def authentication_body(self) -> dict:
        body = {"username": self.username, "roles": self.roles, "full_name": self.full_name,
                "email": self.email, "metadata": self.metadata, "enabled": self.enabled,
                "authentication_realm": {"name": self.realm, "type": self.realm_type},
                "lookup_realm": {"name": self.realm, "type": self.realm_type},
                "authentication_type": "api_key" if self.api_key else "realm"}
        if self.api_key:
            body["api_key"] = {"id": self.api_key["id"], "name": self.api_key["name"]}
            body["authentication_realm"] = {"name": "_es_api_key", "type": "_es_api_key"}
            body["lookup_realm"] = {"name": self.api_key.get("realm", "default_native"),
                                    "type": "native"}
        return body


class Security:
    """Authentication and authorization against the cluster's state."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._verified: dict[tuple[str, str], str] = {}  # (user, stored hash) -> password digest
        self._lock = threading.Lock()

    # -- lookups -------------------------------------------------------------------------------

    def bootstrap_password(self) -> str | None:
        return self.ctx.config.secure.get("bootstrap.password")

    def role_descriptors(self, role_names: list[str], state: dict | None = None) -> list[dict]:
        """Descriptors of the named roles that exist (reserved roles first, then native)."""
        state = state or self.ctx.store.snapshot()
        roles = state["security"]["roles"]
        found = []
        for name in role_names:
            if name in RESERVED_ROLES:
                found.append({"name": name, **RESERVED_ROLES[name]})
            elif name in roles:
                found.append({"name": name, **roles[name]})
        return found

    def _user_record(self, username: str, state: dict) -> dict | None:
        record = state["security"]["users"].get(username)
        if record is None and username in RESERVED_USERS:
            bootstrap = self.bootstrap_password()
            return {"username": username, "roles": _RESERVED_USER_ROLES.get(username, []),
                    "full_name": None, "email": None, "metadata": {"_reserved": True}, "enabled": True,
                    "password": bootstrap, "reserved": True}
        return record

    def user(self, username: str, state: dict | None = None) -> User | None:
        state = state or self.ctx.store.snapshot()
        record = self._user_record(username, state)
        if record is None:
            return None
        roles = list(record.get("roles", []))
        descriptors = self.role_descriptors(roles, state)
        known = {d["name"] for d in descriptors}
        reserved = username in RESERVED_USERS
        return User(username, roles, record.get("full_name"), record.get("email"),
                    record.get("metadata", {}), record.get("enabled", True),
                    realm="reserved" if reserved else "default_native",
                    realm_type="reserved" if reserved else "native",
                    descriptors=descriptors, missing_roles=[r for r in roles if r not in known])

    # -- authentication ------------------------------------------------------------------------

    def authenticate_http(self, headers: Any, path: str = "/") -> User:
        header = headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            return self._authenticate_basic(value.strip(), path)
        if scheme.lower() == "apikey":
            return self._authenticate_api_key(value.strip(), path, expected_type="rest")
        raise errors.Unauthenticated(f"missing authentication credentials for REST request [{path}]")

    def _authenticate_basic(self, value: str, path: str) -> User:
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.Unauthenticated(f"missing authentication credentials for REST request [{path}]") from None
        state = self.ctx.store.snapshot()
        record = self._user_record(username, state)
        if record is None or not self._password_ok(username, record, password) or not record.get("enabled", True):
            raise errors.Unauthenticated(f"unable to authenticate user [{username}] for REST request [{path}]")
        return self.user(username, state)  # type: ignore[return-value]

    def _password_ok(self, username: str, record: dict, password: str) -> bool:
        if "password_hash" in record:
            stored = record["password_hash"]
            digest = hashlib.sha256(password.encode()).hexdigest()
            with self._lock:
                if self._verified.get((username, stored)) == digest:
                    return True
            if verify_password(password, stored):
                with self._lock:
                    self._verified[(username, stored)] = digest
                return True
            return False
        expected = record.get("password")
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def _decode_key(self, encoded: str) -> tuple[str, str]:
        try:
            key_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "", ""
        return key_id, secret

    def find_api_key(self, encoded: str, state: dict | None = None) -> tuple[str, dict | None, str]:
        """(key id, the key record when the secret is right and the key usable, else why not)."""
        key_id, secret = self._decode_key(encoded)
        state = state or self.ctx.store.snapshot()
        record = state["security"]["api_keys"].get(key_id)
        if record is None:
            return key_id, None, f"unable to find apikey with id {key_id}"
        if not hmac.compare_digest(record["key_hash"], hash_key(secret)):
            return key_id, None, f"invalid credentials for API key [{key_id}]"
        if record.get("invalidated"):
            return key_id, None, f"api key [{key_id}] has been invalidated"
        if record.get("expiration") and record["expiration"] < time.time() * 1000:
            return key_id, None, "api key is expired"
        return key_id, record, ""

    def _authenticate_api_key(self, encoded: str, path: str, expected_type: str) -> User:
        state = self.ctx.store.snapshot()
        key_id, record, why = self.find_api_key(encoded, state)
        if record is None:
            raise errors.Unauthenticated(
                "unable to authenticate with provided credentials and anonymous access is not allowed "
                "for this request", additional_unsuccessful_credentials=f"API key: {why}")
        if record.get("type", "rest") != expected_type:
            raise errors.Unauthenticated(f"authentication expected API key type of [{expected_type}], but API key "
                                         f"[{key_id}] has type [{record.get('type', 'rest')}]")
        descriptors = [{"name": n, **rd} for n, rd in record.get("role_descriptors", {}).items()]
        limited = [{"name": n, **rd} for group in record.get("limited_by", []) for n, rd in group.items()]
        owner = self.user(record["username"], state)
        if not descriptors and owner is not None:
            descriptors = owner.descriptors  # a key without role descriptors has its owner's access
        return User(record["username"], [], None, None, {}, True, realm=record.get("realm", "default_native"),
                    api_key=record, descriptors=descriptors, limited_by=limited or None)

    def authenticate_cross_cluster_key(self, encoded: str) -> dict:
        """The cross-cluster key record behind `encoded`; ESError 401 otherwise (es-facts §9)."""
        state = self.ctx.store.snapshot()
        key_id, record, _why = self.find_api_key(encoded, state)
        if record is None:
            raise errors.Unauthenticated(f"unable to authenticate user [{key_id}] for action "
                                         "[cluster:internal/remote_cluster/handshake]")
        if record.get("type", "rest") != "cross_cluster":
            raise errors.Unauthenticated(f"authentication expected API key type of [cross_cluster], but API key "
                                         f"[{key_id}] has type [{record.get('type', 'rest')}]")
        return record

    # -- authorization -------------------------------------------------------------------------

    def has_cluster_privilege(self, user: User, privilege: str) -> bool:
        def ok(descriptors: list[dict]) -> bool:
            held = [p for rd in descriptors for p in rd.get("cluster", [])]
            return privilege_granted(held, privilege, _CLUSTER_IMPLIES)
        return ok(user.descriptors) and (user.limited_by is None or ok(user.limited_by))

    def require_cluster(self, user: User, action: str, privileges: list[str]) -> None:
        """Pass when the user holds one of `privileges`; else Elasticsearch's 403 text."""
        if any(self.has_cluster_privilege(user, p) for p in privileges):
            return
        raise errors.SecurityError(f"action [{action}] is unauthorized for {self.describe(user)}, "
                                   f"this action is granted by the cluster privileges [{','.join(privileges)}]")

    def describe(self, user: User) -> str:
        if user.api_key:
            return (f"API key id [{user.api_key['id']}] of user [{user.username}]")
        effective = [r for r in user.roles if r not in user.missing_roles]
        text = f"user [{user.username}] with effective roles [{','.join(effective)}]"
        if user.missing_roles:
            text += f" (assigned roles [{','.join(user.missing_roles)}] were not found)"
        return text

    def index_privileges(self, descriptors: list[dict], index: str) -> list[str]:
        held = []
        for rd in descriptors:
            for entry in rd.get("indices", []):
                names = entry.get("names", [])
                names = [names] if isinstance(names, str) else names
                if any(fnmatch.fnmatchcase(index, n) for n in names):
                    held.extend(entry.get("privileges", []))
        return held

    def check_index_access(self, descriptors: list[dict], action: str, indices: list[str],
                           privileges: list[str] | None = None, user: User | None = None) -> None:
        """Every index must be granted one of `privileges` (default: read) by `descriptors`."""
        privileges = privileges or ["read", "all"]
        denied = [i for i in indices
                  if not any(privilege_granted(self.index_privileges(descriptors, i), p, _INDEX_IMPLIES)
                             for p in privileges)]
        if denied:
            who = self.describe(user) if user is not None else "user"
            raise errors.SecurityError(f"action [{action}] is unauthorized for {who} on indices "
                                       f"[{','.join(denied)}], this action is granted by the index privileges "
                                       f"[{','.join(privileges)}]")

    def can_access_index(self, user: User, index: str, privileges: list[str]) -> bool:
        def ok(descriptors: list[dict]) -> bool:
            held = self.index_privileges(descriptors, index)
            return any(privilege_granted(held, p, _INDEX_IMPLIES) for p in privileges)
        return ok(user.descriptors) and (user.limited_by is None or ok(user.limited_by))

    def remote_indices_for(self, user: User, alias: str) -> list[dict]:
        """The user's `remote_indices` entries whose `clusters` match `alias` (superuser: all)."""
        if user.is_superuser and not user.api_key:
            return [{"names": ["*"], "privileges": ["all"], "allow_restricted_indices": False, "clusters": ["*"]}]
        entries = []
        for rd in user.descriptors:
            for entry in rd.get("remote_indices", []):
                if any(fnmatch.fnmatchcase(alias, c) for c in entry.get("clusters", [])):
                    entries.append(entry)
        return entries

    def licence_type(self) -> str:
        return self.ctx.store.snapshot().get("license", {}).get("type", "basic")

    def require_advanced_remote_cluster_security(self) -> None:
        if self.licence_type() not in ("enterprise", "trial"):
            raise errors.LicenseNonCompliant("advanced-remote-cluster-security")


def new_api_key_secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def new_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode()
