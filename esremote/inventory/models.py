"""The inventory's models: clusters, their nodes, how to reach them, and which alias links which
clusters; `Inventory.nodes(cluster)` merges each node's effective settings (see the package)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from esremote.errors import InventoryError
from esremote.secrets import SecretRef, local_path


# Elasticsearch's DEB/RPM layout and the SSH client's usual defaults.
DEFAULT_ES_HOME = PurePosixPath("/usr/share/elasticsearch")
DEFAULT_CONFIG_DIR = PurePosixPath("/etc/elasticsearch")
DEFAULT_SERVICE_USER = "elasticsearch"
DEFAULT_RESTART_COMMAND = "systemctl restart elasticsearch"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
KEYSTORE_FILE = "elasticsearch.keystore"
YML_FILE = "elasticsearch.yml"

Port = Annotated[int, Field(ge=1, le=65535)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _name(value: str) -> str:
    if not value or any(c.isspace() for c in value) or _CONTROL.search(value):
        raise ValueError("must be a non-empty name without spaces or control characters")
    return value


def _command(value: str) -> str:
    # A line break in a command run over SSH would start a second command; YAML cannot even carry
    # some of them (NEL, LS, PS) faithfully.
    if not value.strip() or _CONTROL.search(value):
        raise ValueError("must be one line of text (no line breaks or control characters)")
    return value


Name = Annotated[str, AfterValidator(_name)]
Command = Annotated[str, AfterValidator(_command)]


class _Model(BaseModel):
    # Inputs stay out of error texts: a secret pasted where a reference belongs must not be echoed.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


def _remote_path(value: PurePosixPath | None) -> PurePosixPath | None:
    if value is not None and not value.is_absolute():
        raise ValueError("must be an absolute path on the node (it is not resolved on this machine)")
    return value


class SSHSettings(_Model):
    """SSH settings at one level (inventory, cluster or node). Unset fields fall through to the level above."""

    user: Name | None = None
    port: Port | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool | None = None
    sudo: bool | None = None
    sudo_password: SecretRef | None = None
    connect_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _local(cls, value: Path | None, info) -> Path | None:
        return None if value is None else local_path(value, info.context)


class Auth(_Model):
    """How esremote authenticates to a cluster's REST API: username + password, or an API key."""

    username: Name | None = None
    password: SecretRef | None = None
    api_key: SecretRef | None = None

    @model_validator(mode="after")
    def _one_method(self) -> Auth:
        basic = self.username is not None or self.password is not None
        if self.api_key is not None and basic:
            raise ValueError("give either username + password or api_key, not both")
        if self.api_key is None and (self.username is None or self.password is None):
            raise ValueError("needs username and password (a secret reference), or api_key")
        return self


class Node(_Model):
    name: Name
    address: Name
    ssh: SSHSettings | None = None
    es_home: PurePosixPath | None = None
    config_dir: PurePosixPath | None = None
    service_user: Name | None = None
    restart_command: Command | None = None

    @field_validator("es_home", "config_dir")
    @classmethod
    def _on_node(cls, value: PurePosixPath | None) -> PurePosixPath | None:
        return _remote_path(value)


class Cluster(_Model):
    """One cluster. `name` comes from its key under `clusters:`."""

    name: str = ""
    role: Literal["local", "remote"]
    urls: list[str] = Field(min_length=1)
    ca_cert: Path | None = None
    auth: Auth
    es_home: PurePosixPath = DEFAULT_ES_HOME
    config_dir: PurePosixPath = DEFAULT_CONFIG_DIR
    service_user: Name = DEFAULT_SERVICE_USER
    restart_command: Command = DEFAULT_RESTART_COMMAND
    keystore_password: SecretRef | None = None
    remote_cluster_port: Port = 9443
    ssh: SSHSettings | None = None
    nodes: list[Node] = Field(min_length=1)

    @field_validator("es_home", "config_dir")
    @classmethod
    def _on_node(cls, value: PurePosixPath | None) -> PurePosixPath | None:
        return _remote_path(value)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                raise ValueError("each URL must look like https://host:9200") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("each URL must look like https://host:9200")
        return urls

    @field_validator("ca_cert")
    @classmethod
    def _local(cls, value: Path | None, info) -> Path | None:
        return None if value is None else local_path(value, info.context)


class AliasLink(_Model):
    """A remote-cluster alias defined on the `local` cluster, pointing at the `remote` cluster."""

    local: Name
    remote: Name


class NodeSSH(BaseModel):
    """How to reach one node, levels merged. `port`/`user` left unset fall back to ~/.ssh/config,
    then to 22 and the local user (the SSH layer does that, as OpenSSH would)."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int | None
    user: str | None
    key_file: Path | None
    known_hosts: Path
    trust_on_first_use: bool
    connect_timeout: float
    sudo: bool
    sudo_password: SecretRef | None


class ResolvedNode(BaseModel):
    """A node with its cluster's defaults and the inventory's SSH defaults merged in."""

    model_config = ConfigDict(frozen=True)

    cluster: str
    role: Literal["local", "remote"]
    name: str
    address: str
    es_home: PurePosixPath
    config_dir: PurePosixPath
    service_user: str
    restart_command: str
    keystore_password: SecretRef | None
    ssh: NodeSSH

    @property
    def keystore_path(self) -> PurePosixPath:
        return self.config_dir / KEYSTORE_FILE

    @property
    def yml_path(self) -> PurePosixPath:
        return self.config_dir / YML_FILE

    def __str__(self) -> str:
        return f"{self.cluster}/{self.name}"

    def ssh_target(self):
        """An `esremote.ssh.SSHTarget` for this node; resolves the sudo password reference now."""
        from esremote.ssh import SSHTarget  # lazy: loading an inventory does not need paramiko

        ssh = self.ssh
        return SSHTarget(
            host=ssh.host, port=ssh.port, user=ssh.user, key_file=ssh.key_file, known_hosts=ssh.known_hosts,
            trust_on_first_use=ssh.trust_on_first_use, connect_timeout=ssh.connect_timeout,
            sudo_password=ssh.sudo_password.resolve() if ssh.sudo_password is not None else None,
            name=str(self),
        )


class Inventory(_Model):
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    clusters: dict[Name, Cluster] = Field(min_length=1)
    aliases: dict[Name, AliasLink] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _name_clusters(cls, data: Any) -> Any:
        clusters = data.get("clusters") if isinstance(data, dict) else None
        if not isinstance(clusters, dict):
            return data
        named = {}
        for key, cluster in clusters.items():
            if isinstance(cluster, Cluster):
                cluster = cluster.model_copy(update={"name": key})
            elif isinstance(cluster, dict) and "name" not in cluster:
                cluster = {"name": key, **cluster}
            named[key] = cluster
        return {**data, "clusters": named}

    @model_validator(mode="after")
    def _consistent(self, info) -> Inventory:
        # load_inventory runs these checks itself, to point at the offending line.
        if not (info.context or {}).get("defer_checks"):
            for loc, message in self.problems():
                raise ValueError(f"{field_name(loc)}: {message}")
        return self

    def problems(self) -> Iterator[tuple[tuple, str]]:
        """Cross-field problems as (location, message): duplicate nodes, aliases to wrong clusters."""
        for cname, cluster in self.clusters.items():
            if cluster.name != cname:
                yield ("clusters", cname, "name"), f"must be the cluster's key ({cname}); remove it"
            for field in ("name", "address"):
                seen: dict[str, int] = {}
                for i, node in enumerate(cluster.nodes):
                    value = getattr(node, field)
                    if value in seen:
                        yield (("clusters", cname, "nodes", i, field),
                               f"duplicate node {field} {value!r} (also nodes[{seen[value]}]); every node"
                               f" of a cluster needs its own {field}")
                    seen.setdefault(value, i)
        for alias, link in self.aliases.items():
            for side in ("local", "remote"):
                target = getattr(link, side)
                cluster = self.clusters.get(target)
                if cluster is None:
                    yield (("aliases", alias, side),
                           f"no cluster named {target!r}; use one of: {', '.join(self.clusters)}")
                elif cluster.role != side:
                    yield (("aliases", alias, side),
                           f"cluster {target!r} has role {cluster.role}; the {side} side of an alias must"
                           f" be a cluster with role: {side}")

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise InventoryError(f"no cluster named {name!r}; the inventory has: "
                                 f"{', '.join(self.clusters)}") from None

    def nodes(self, cluster: str | None = None) -> list[ResolvedNode]:
        """Every node of `cluster` (or of every cluster, in inventory order), settings merged."""
        clusters = [self.cluster(cluster)] if cluster is not None else list(self.clusters.values())
        return [self._resolve(c, node) for c in clusters for node in c.nodes]

    def _resolve(self, cluster: Cluster, node: Node) -> ResolvedNode:
        ssh: dict[str, Any] = {}
        for layer in (self.ssh, cluster.ssh, node.ssh):
            if layer is not None:
                ssh.update({k: getattr(layer, k) for k in layer.model_fields_set})

        def pick(key: str, default):
            return ssh[key] if ssh.get(key) is not None else default

        target = NodeSSH(
            host=node.address,
            port=ssh.get("port"),
            user=ssh.get("user"),
            key_file=ssh.get("key_file"),
            known_hosts=pick("known_hosts", Path(DEFAULT_KNOWN_HOSTS).expanduser()),
            trust_on_first_use=pick("trust_on_first_use", False),
            connect_timeout=pick("connect_timeout", 10.0),
            sudo=pick("sudo", True),
            sudo_password=ssh.get("sudo_password"),
        )
        return ResolvedNode(
            cluster=cluster.name, role=cluster.role, name=node.name, address=node.address,
            es_home=node.es_home or cluster.es_home,
            config_dir=node.config_dir or cluster.config_dir,
            service_user=node.service_user or cluster.service_user,
            restart_command=node.restart_command or cluster.restart_command,
            keystore_password=cluster.keystore_password,
            ssh=target,
        )


def field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        if not isinstance(part, int) and not (str(part).isprintable() and str(part).strip()):
            part = repr(str(part))  # a key with a line break (or blank) must not split the one-line error
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
