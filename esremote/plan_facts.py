"""The facts a migration plan is built from: what the clusters and nodes say now (the tasks in
tasks/facts.py gather them; `esremote.plan.build_plan` turns them into changes). Plain data, no I/O;
`MigrationFacts.to_dict`/`from_dict` keep them in the run's `facts.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from esremote.cluster.facts import parse_version
from esremote.esyml import EsYml


@dataclass
class NodeState:
    """One node as SSH shows it: its elasticsearch.yml text, keystore entry names, files present."""

    cluster: str
    name: str
    address: str
    version: str = ""
    yml: str = ""
    keystore: list[str] | None = None           # entry names; None when it could not be read
    files: dict[str, bool] = field(default_factory=dict)  # config-relative path -> exists
    config_dir: str = ""
    service_user: str = ""

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.name}"

    def settings(self) -> dict[str, Any]:
        return EsYml(self.yml, source=f"{self.key}: elasticsearch.yml").flat() if self.yml else {}


@dataclass
class WorkItem:
    """A piece of cross-cluster work on the local cluster that uses the alias (`esremote.cluster.usage`)."""

    kind: Literal["transform", "datafeed", "follower", "auto_follow_pattern"]
    id: str
    state: str                       # as the cluster reports it (started, active, paused, ...)
    owner: str | None = None         # who owns it, as far as Elasticsearch says
    job_id: str | None = None        # a datafeed's anomaly detection job
    job_state: str | None = None
    remote_patterns: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        if self.kind == "datafeed":
            return self.state in ("started", "starting") or self.job_state in ("opened", "opening")
        return self.state in ("started", "indexing", "waiting", "active")


@dataclass
class RoleChange:
    """A local role that gets `remote_indices` for the alias."""

    role: str
    remote_indices: list[dict[str, Any]]
    already: bool = False            # the role has them already


@dataclass
class AliasState:
    alias: str
    local: str
    remote: str
    defined_in: Literal["settings", "yml"] = "settings"
    saved: dict[str, Any] | None = None          # SavedRemote.to_dict() when defined in settings
    yml_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> alias settings
    remote_info: dict[str, Any] = field(default_factory=dict)
    work: list[WorkItem] = field(default_factory=list)
    roles: list[RoleChange] = field(default_factory=list)
    key_access: dict[str, Any] = field(default_factory=dict)   # cross-cluster API key `access`
    key_access_review: dict[str, Any] | None = None  # access=from-usage: `key_access.AccessReview.to_dict()`
    key_exists: bool = False                     # an earlier run of this migration made the key
    # split_search_alias consented and needed: {"alias": NAME, "access": the search key's access}
    split: dict[str, Any] | None = None

    @property
    def split_alias(self) -> str | None:
        return (self.split or {}).get("alias")

    @property
    def migrated(self) -> bool:
        return self.remote_info.get("cluster_credentials") == "::es_redacted::" and bool(
            self.remote_info.get("connected"))


@dataclass
class MigrationFacts:
    clusters: dict[str, dict[str, Any]]          # name -> {"versions": {node: "8.15.0"}, "role": ...}
    nodes: list[NodeState]
    aliases: list[AliasState]
    remote_cluster_port: dict[str, int] = field(default_factory=dict)  # remote cluster -> port
    secret_store: str = "file"                   # "prefect" when a Prefect API server keeps the key
    # 9.x local cluster -> its aliases still on the certificate model (deprecations.CertificateModelAliases)
    certificate_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def nodes_of(self, cluster: str) -> list[NodeState]:
        return [n for n in self.nodes if n.cluster == cluster]

    def min_version(self, cluster: str) -> tuple[int, int, int]:
        versions = [parse_version(v) for v in self.clusters.get(cluster, {}).get("versions", {}).values()]
        versions += [parse_version(n.version) for n in self.nodes_of(cluster) if n.version]
        return min(versions, default=(0, 0, 0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationFacts:
        return cls(
            clusters=data["clusters"],
            nodes=[NodeState(**n) for n in data["nodes"]],
            aliases=[AliasState(**{**a, "work": [WorkItem(**w) for w in a.get("work", [])],
                                   "roles": [RoleChange(**r) for r in a.get("roles", [])]})
                     for a in data["aliases"]],
            remote_cluster_port=data.get("remote_cluster_port", {}),
            secret_store=data.get("secret_store", "file"),
            certificate_model=data.get("certificate_model", {}),
        )
