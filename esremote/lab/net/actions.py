"""What a node answers on both transport ports: handshakes, node lists for sniffing, search,
resolve and CCR shard changes, each authenticated and authorized the way the port's model requires
(certificate model: the caller's role names; API-key model: the key's access within the caller's
`remote_indices`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from esremote.lab.errors import ESError, SecurityError
from esremote.lab.net import signing
from esremote.lab.net.protocol import (AUTHENTICATION_HEADER, CREDENTIALS_HEADER, Channel,
                                       FOLLOWER_COPIED_SETTINGS, REMOTE_CLUSTER_HANDSHAKE, REMOTE_CLUSTER_PROFILE,
                                       SUBJECT_HEADER, TCP_HANDSHAKE, TRANSPORT_HANDSHAKE, TRANSPORT_PROFILE,
                                       es_log, missing_credentials_error)

# Index privileges that grant each cross-cluster index action (Elasticsearch names them in its
# "this action is granted by the index privileges [..]" sentence, in this order).
GRANTING_PRIVILEGES = {
    "indices:data/read/search": ["read", "all"],
    "indices:admin/resolve/cluster": ["view_index_metadata", "manage", "read", "all"],
    "indices:data/read/xpack/ccr/shard_changes": ["cross_cluster_replication", "read", "all"],
    "indices:monitor/stats": ["cross_cluster_replication", "monitor", "manage", "all"],
}
# Privileges that imply others (what a descriptor entry really grants).
_IMPLIED = {
    "all": {"read", "view_index_metadata", "manage", "monitor", "cross_cluster_replication",
            "cross_cluster_replication_internal", "read_cross_cluster"},
    "manage": {"view_index_metadata", "monitor"},
    "read": set(),
}


def _expand(privileges: list[str]) -> set[str]:
    granted = set(privileges)
    for privilege in privileges:
        granted |= _IMPLIED.get(privilege, set())
    return granted


def _name_matches(patterns: list[str], index: str) -> bool:
    from fnmatch import fnmatchcase
    return any(fnmatchcase(index, pattern) for pattern in patterns)


def entries_grant(entries: list[dict], action: str, index: str) -> bool:
    """True when one of the index privilege entries lets `action` touch `index`."""
    needed = set(GRANTING_PRIVILEGES.get(action, ["all"]))
    for entry in entries:
        if _expand(entry.get("privileges", [])) & needed and _name_matches(entry.get("names", []), index):
            return True
    return False


@dataclass
class Subject:
    """Who a cross-cluster request acts for, and the index privileges that bound it.

    `groups` are lists of index privilege entries; a request may touch an index only when every
    group grants it (API-key model: the key's access and the user's remote_indices; certificate
    model: the remote's roles of the user's role names)."""

    user: str
    roles: list[str]
    groups: list[list[dict]]
    found_roles: list[str] | None = None
    api_key: dict | None = None

    def may(self, action: str, index: str) -> bool:
        return all(entries_grant(group, action, index) for group in self.groups)

    def visible(self, action: str) -> Callable[[str, dict], bool]:
        """Document level security: in every group, a document must match the `query` of one entry
        that grants the index, unless such an entry has none (then the group hides nothing)."""
        def check(index: str, doc: dict) -> bool:
            return all(_group_shows(group, action, index, doc) for group in self.groups)
        return check

    def describe(self) -> str:
        if self.api_key is not None:
            return (f"user [{self.user}] with assigned roles [{','.join(self.roles)}] authenticated by "
                    f"API key id [{self.api_key['id']}] of user [{self.api_key.get('username', '')}]")
        found = self.found_roles if self.found_roles is not None else self.roles
        missing = [r for r in self.roles if r not in found]
        text = f"user [{self.user}] with effective roles [{','.join(found)}]"
        if missing:
            text += f" (assigned roles [{','.join(missing)}] were not found)"
        return text

    def denied(self, action: str, indices: list[str]) -> ESError:
        towards = "towards remote cluster " if self.api_key is not None else ""
        granted = ",".join(GRANTING_PRIVILEGES.get(action, ["all"]))
        return SecurityError(f"action [{action}] {towards}is unauthorized for {self.describe()} on "
                             f"indices [{','.join(indices)}], this action is granted by the index "
                             f"privileges [{granted}]")


def version_info(version_text: str) -> dict:
    """The `version` object of `_resolve/cluster` and of the root endpoint."""
    major = int(version_text.split(".", 1)[0])
    return {"number": version_text, "build_flavor": "default",
            "minimum_wire_compatibility_version": "7.17.0" if major == 8 else "8.18.0",
            "minimum_index_compatibility_version": "7.0.0" if major == 8 else "8.0.0"}


class RemoteActions:
    """Answers to transport requests, for both ports of one node."""

    _NO_USER = {TCP_HANDSHAKE, TRANSPORT_HANDSHAKE, "cluster:monitor/state",
                "cluster:internal/remote_cluster/nodes"}

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._handlers: dict[str, Callable[[Subject | None, dict], dict]] = {
            TRANSPORT_HANDSHAKE: self._handshake,
            REMOTE_CLUSTER_HANDSHAKE: self._handshake,
            "cluster:monitor/state": self._cluster_state,
            "cluster:internal/remote_cluster/nodes": self._remote_cluster_nodes,
            "indices:data/read/search": self._search,
            "indices:admin/resolve/cluster": self._resolve_cluster,
            "indices:data/read/xpack/ccr/shard_changes": self._shard_changes,
        }

    # entry point -------------------------------------------------------------------------------

    def dispatch(self, channel: Channel, action: str, headers: dict, body: dict) -> dict:
        if action == TCP_HANDSHAKE:
            return {"version": self.ctx.config.version_text, "cluster_name": self.ctx.config.cluster_name}
        handler = self._handlers.get(action)
        # A node list needs no user; cluster state with index metadata (auto-follow) does.
        needs_user = action not in self._NO_USER or bool(body.get("metadata"))
        if channel.profile == REMOTE_CLUSTER_PROFILE:
            subject = self._authenticate_cross_cluster(channel, action, headers)
        else:
            subject = self._authenticate_transport(action, headers, needs_user)
        if handler is None:
            raise ESError(f"No handler for action [{action}]", status=500,
                          type="action_not_found_transport_exception")
        return handler(subject, body)

    # authentication, per port ----------------------------------------------------------------

    def _authenticate_transport(self, action: str, headers: dict, needs_user: bool) -> Subject | None:
        """Port 9300: the TLS client certificate authenticated the node; requests made for a user
        carry that user's name and role names, which this cluster resolves with its own roles."""
        if action == REMOTE_CLUSTER_HANDSHAKE:
            self._remote_handshake_on_transport_port(action)
        auth = headers.get(AUTHENTICATION_HEADER)
        if not needs_user:
            return None
        if not auth:
            raise SecurityError(f"missing authentication credentials for action [{action}]", status=401)
        roles = list(auth.get("roles", []))
        descriptors = self.ctx.security.role_descriptors(roles)
        return Subject(user=auth.get("user", ""), roles=roles, found_roles=[d["name"] for d in descriptors],
                       groups=[_index_entries(descriptors)])

    def _remote_handshake_on_transport_port(self, action: str) -> None:
        """An API-key client pointed at 9300 (es-facts §9, symptoms 3 and 4)."""
        settings = self.ctx.config.settings
        anonymous_roles = settings.get("xpack.security.authc.anonymous.roles") or []
        if not anonymous_roles:
            raise SecurityError(f"missing authentication credentials for action [{action}]", status=401)
        if "superuser" in anonymous_roles:
            raise ESError("remote cluster handshake action requires channel profile to be "
                          f"[{REMOTE_CLUSTER_PROFILE}], but got [{TRANSPORT_PROFILE}]", status=400,
                          type="illegal_argument_exception")
        user = settings.get("xpack.security.authc.anonymous.username") or "_anonymous"
        raise SecurityError(f"action [{action}] is unauthorized for user [{user}] with effective roles "
                            f"[{','.join(anonymous_roles)}], this action is granted by the cluster "
                            "privileges [cross_cluster_search,cross_cluster_replication,manage,all]")

    def _authenticate_cross_cluster(self, channel: Channel, action: str, headers: dict) -> Subject | None:
        """Port 9443: every request carries a cross-cluster API key, checked here each time."""
        credentials = headers.get(CREDENTIALS_HEADER)
        if not credentials:
            raise missing_credentials_error()
        encoded = credentials[len("ApiKey "):] if credentials.startswith("ApiKey ") else credentials
        key_id = _api_key_id(encoded)
        # 9.3: a signature is verified before the key (CrossClusterAccessAuthenticationService)
        signature = headers.get(signing.SIGNATURE_HEADER)
        leaf = (signing.verify(self.ctx, signature, credentials, headers.get(SUBJECT_HEADER))
                if signature is not None else None)
        try:
            key = self.ctx.security.authenticate_cross_cluster_key(encoded)
        except ESError as exc:
            if "expected API key type" in exc.reason:
                raise
            es_log(self.ctx, logging.WARNING, "o.e.x.s.a.ApiKeyAuthenticator",
                   f"Authentication using apikey failed - invalid credentials for API key [{key_id}]")
            raise SecurityError(f"unable to authenticate user [{key_id}] for action [{action}]",
                                status=401) from None
        if signing.enabled(self.ctx):
            signing.check_identity(key, leaf)
        self.ctx.security.require_advanced_remote_cluster_security()
        subject_info = headers.get(SUBJECT_HEADER) or {}
        key_entries = _index_entries(list((key.get("role_descriptors") or {}).values()))
        return Subject(user=subject_info.get("user", ""), roles=list(subject_info.get("roles", [])),
                       groups=[key_entries, list(subject_info.get("remote_indices", []))], api_key=key)

    # handlers --------------------------------------------------------------------------------

    def _node_info(self, *, remote_cluster: bool = False) -> dict:
        config = self.ctx.config
        return {"name": config.name, "version": config.version_text,
                "transport_address": f"{config.ip}:{config.transport_port}",
                "remote_cluster_address": (f"{config.ip}:{config.remote_cluster_port}"
                                           if config.remote_cluster_port else None)}

    def _handshake(self, subject: Subject | None, body: dict) -> dict:
        state = self.ctx.store.snapshot()
        return {"cluster_name": self.ctx.config.cluster_name, "cluster_uuid": state.get("cluster_uuid"),
                "version": self.ctx.config.version_text, "node": self._node_info()}

    def _live_nodes(self) -> list[dict]:
        return [n for n in self.ctx.store.live_nodes() if n.get("cluster", self.ctx.config.cluster_name)
                == self.ctx.config.cluster_name]

    def _cluster_state(self, subject: Subject | None, body: dict) -> dict:
        """Certificate-model sniffing: the nodes and their transport addresses."""
        nodes = [{"name": n["name"], "version": n.get("version"),
                  "transport_address": f"{n['ip']}:{n['transport_port']}"} for n in self._live_nodes()]
        answer: dict[str, Any] = {"cluster_name": self.ctx.config.cluster_name, "nodes": nodes}
        if body.get("metadata"):  # auto-follow: the leader indices the subject may follow
            indices = self.ctx.store.snapshot().get("indices", {})
            answer["indices"] = sorted(i for i in indices if not i.startswith(".")
                                       and subject.may("indices:monitor/stats", i))
            # A follower is created from its leader's metadata: shards and replicas included.
            answer["index_settings"] = {i: {k: v for k, v in indices[i].get("settings", {}).items()
                                            if k in FOLLOWER_COPIED_SETTINGS} for i in answer["indices"]}
        return answer

    def _remote_cluster_nodes(self, subject: Subject | None, body: dict) -> dict:
        """API-key-model sniffing (RemoteClusterNodesAction): remote-cluster server addresses."""
        nodes = [{"name": n["name"], "version": n.get("version"),
                  "remote_cluster_address": f"{n['ip']}:{n['remote_cluster_port']}"}
                 for n in self._live_nodes() if n.get("remote_cluster_port")]
        return {"cluster_name": self.ctx.config.cluster_name, "nodes": nodes}

    def _check_named(self, subject: Subject, action: str, expression: str) -> None:
        """A named index the subject may not touch is refused (403, Elasticsearch's sentence);
        wildcards are filtered instead (see `_allowed`)."""
        parts = [p.strip() for p in expression.split(",") if p.strip()]
        named = [p for p in parts if not p.startswith("-") and p != "_all" and "*" not in p and "?" not in p]
        denied = [p for p in named if not subject.may(action, p)]
        if denied:
            raise subject.denied(action, denied)

    @staticmethod
    def _allowed(subject: Subject, action: str) -> Callable[[str], bool]:
        return lambda index: subject.may(action, index)

    def _search(self, subject: Subject | None, body: dict) -> dict:
        from esremote.lab.models.search import search_local
        action = "indices:data/read/search"
        expression = body.get("index") or "*"
        self._check_named(subject, action, expression)
        return search_local(self.ctx.store, expression, body.get("body") or {},
                            allowed=self._allowed(subject, action), params=body.get("params") or {},
                            visible=subject.visible(action))

    def _resolve_cluster(self, subject: Subject | None, body: dict) -> dict:
        from esremote.lab.models.search import resolve_indices
        action = "indices:admin/resolve/cluster"
        expression = body.get("index") or "*"
        self._check_named(subject, action, expression)
        indices = resolve_indices(self.ctx.store.snapshot(), expression, ignore_unavailable=True,
                                  allowed=self._allowed(subject, action))
        return {"matching_indices": bool(indices), "version": version_info(self.ctx.config.version_text)}

    def _shard_changes(self, subject: Subject | None, body: dict) -> dict:
        """CCR's read of a leader index: operations after a sequence number."""
        from esremote.lab.errors import IndexNotFound
        index = body["index"]
        self._check_named(subject, "indices:data/read/xpack/ccr/shard_changes", index)
        state = self.ctx.store.snapshot()
        if index not in state.get("indices", {}):
            raise IndexNotFound(index)
        operations = self.ctx.store.read_docs(index, after_seq=int(body.get("from_seq_no", 0)) - 1,
                                              limit=int(body.get("max_operation_count", 5120)))
        return {"index": index, "operations": operations,
                "max_seq_no": operations[-1]["_seq"] if operations else int(body.get("from_seq_no", 0)) - 1}


def _group_shows(entries: list[dict], action: str, index: str, doc: dict) -> bool:
    import json

    from esremote.lab.models.search import matches
    granting = [e for e in entries if entries_grant([e], action, index)]
    if any(e.get("query") is None for e in granting):
        return True
    for entry in granting:
        query = entry["query"]
        if matches(json.loads(query) if isinstance(query, str) else query, doc):
            return True
    return False


def _index_entries(descriptors: list) -> list[dict]:
    entries: list[dict] = []
    for descriptor in descriptors:
        if isinstance(descriptor, dict):
            entries += descriptor.get("indices", [])
    return entries


def _api_key_id(encoded: str) -> str:
    import base64
    import binascii
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8").split(":", 1)[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""
