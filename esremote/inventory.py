"""The inventory: clusters, their nodes, how to reach them, and which alias links which clusters.

`load_inventory(path)` reads the YAML file (schema: deployments/inventory.example.yml) into pydantic
models and turns any problem into one `InventoryError` naming file, line and field. `dump_inventory`
writes YAML that `load_inventory` reads back equal. `Inventory.nodes(cluster)` gives each node's
effective settings (`ResolvedNode`), merged:

    SSH:       inventory `ssh`  <  cluster `ssh`  <  node `ssh`
    the rest:  cluster defaults <  node overrides (es_home, config_dir, service_user, restart_command)

Paths on this machine (ca_cert, ssh key_file/known_hosts, secret files) get `~` expanded and are
taken relative to the inventory file's directory. Paths on the nodes (es_home, config_dir) are
POSIX paths that must be absolute; they are never touched locally.
Secrets are `SecretRef`s, resolved only when something calls `.resolve()`.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean

from esremote.errors import InventoryError
from esremote.secrets import SecretRef, local_path

__all__ = [
    "AliasLink", "Auth", "Cluster", "Inventory", "Node", "NodeSSH", "ResolvedNode", "SSHSettings",
    "SecretRef", "dump_inventory", "load_inventory",
]

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
                raise ValueError(f"{_field_name(loc)}: {message}")
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


# ---------------------------------------------------------------- loading

_MAX_NODES = 100_000   # YAML aliases can expand a small file into a huge document ("billion laughs")
_MAX_DEPTH = 64


class _Problem(Exception):
    """A problem found while reading YAML, before the models see it."""

    def __init__(self, message: str, line: int | None, loc: tuple = ()) -> None:
        super().__init__(message)
        self.message, self.line, self.loc = message, line, loc


def load_inventory(path: str | os.PathLike) -> Inventory:
    """Read and validate an inventory file. Every problem is an `InventoryError` (file:line: field: what)."""
    path = Path(path)
    where = str(path)
    try:
        data, lines = _read_yaml(path)
    except _Problem as problem:
        raise InventoryError(problem.message, file=where, line=problem.line,
                             field=_field_name(problem.loc) or None) from None
    base_dir = path.parent.resolve()
    try:
        inventory = Inventory.model_validate(data, context={"base_dir": base_dir, "defer_checks": True})
    except ValidationError as exc:
        raise _validation_error(exc, where, lines) from None
    for loc, message in [*inventory.problems(), *_file_problems(inventory)]:
        raise InventoryError(message, file=where, line=_line_of(loc, lines), field=_field_name(loc))
    return inventory


def _read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Problem(f"cannot read the inventory ({exc.strerror or type(exc).__name__}); check the path"
                       " and its permissions", None) from None
    except UnicodeDecodeError:
        raise _Problem("the inventory is not UTF-8 text; save it as UTF-8", None) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except DuplicateKeyError as exc:
        match = re.search(r'duplicate key "(.*?)" with value', exc.problem or "")
        key = f" {match.group(1)!r}" if match else ""
        raise _Problem(f"duplicate key{key}; a key may appear only once in a mapping, remove one",
                       _mark_line(exc)) from None
    except MarkedYAMLError as exc:
        raise _Problem(f"invalid YAML: {exc.problem or exc.context}; fix the syntax", _mark_line(exc)) from None
    except (YAMLError, ValueError, TypeError, RecursionError, AttributeError) as exc:
        raise _Problem(f"invalid YAML ({type(exc).__name__}); fix the syntax", None) from None
    if doc is None:
        raise _Problem("the inventory is empty; start from deployments/inventory.example.yml", 1)
    if not isinstance(doc, dict):
        raise _Problem("the inventory must be a mapping with `clusters:` (and `ssh:`, `aliases:`)", 1)
    lines: dict[tuple, int] = {(): 1}
    data = _Walker(lines).plain(doc, ())
    return data, lines


def _mark_line(exc: MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


class _Walker:
    """Turns ruamel's round-trip nodes into plain Python values, recording each location's line."""

    def __init__(self, lines: dict[tuple, int]) -> None:
        self.lines = lines
        self.count = 0
        self.open: set[int] = set()

    def plain(self, value: Any, loc: tuple) -> Any:
        self.count += 1
        if self.count > _MAX_NODES or len(loc) > _MAX_DEPTH:
            raise _Problem("the inventory is too large or too deeply nested", self.lines.get(loc), loc)
        if isinstance(value, (dict, list)):
            if id(value) in self.open:
                raise _Problem("a YAML alias refers to the mapping or list that contains it",
                               self.lines.get(loc), loc)
            self.open.add(id(value))
            try:
                return self._mapping(value, loc) if isinstance(value, dict) else self._sequence(value, loc)
            finally:
                self.open.discard(id(value))
        return _scalar(value)

    def _mapping(self, value: dict, loc: tuple) -> dict:
        out = {}
        for key in value:
            line = _lc(value, "key", key) or self.lines.get(loc)
            if not isinstance(key, str):
                raise _Problem("keys must be text; quote this key", line, loc)
            self.lines[loc + (key,)] = line
            out[key] = self.plain(value[key], loc + (key,))
        return out

    def _sequence(self, value: list, loc: tuple) -> list:
        out = []
        for i, item in enumerate(value):
            self.lines[loc + (i,)] = _lc(value, "item", i) or self.lines.get(loc)
            out.append(self.plain(item, loc + (i,)))
        return out


def _lc(container: Any, kind: str, key: Any) -> int | None:
    if not isinstance(container, (CommentedMap, CommentedSeq)):
        return None
    try:
        return getattr(container.lc, kind)(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):  # e.g. keys brought in by a `<<:` merge
        return None


def _scalar(value: Any) -> Any:
    """ruamel's scalar subclasses (which keep formatting) become plain builtins."""
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value  # None, dates, tagged scalars, binary: the models accept or reject them


def _file_problems(inventory: Inventory) -> Iterator[tuple[tuple, str]]:
    """Local files the run will need: SSH keys and CA certificates must be readable now."""
    def ssh_keys(settings: SSHSettings | None, loc: tuple):
        if settings is not None and settings.key_file is not None:
            yield loc + ("ssh", "key_file"), settings.key_file, "SSH private key"

    candidates = [*ssh_keys(inventory.ssh, ())]
    for cname, cluster in inventory.clusters.items():
        if cluster.ca_cert is not None:
            candidates.append((("clusters", cname, "ca_cert"), cluster.ca_cert, "CA certificate"))
        candidates.extend(ssh_keys(cluster.ssh, ("clusters", cname)))
        for i, node in enumerate(cluster.nodes):
            candidates.extend(ssh_keys(node.ssh, ("clusters", cname, "nodes", i)))
    for loc, file, what in candidates:
        if not file.is_file() or not os.access(file, os.R_OK):
            state = "is not a readable file" if file.exists() else "does not exist"
            yield loc, f"{what} {file} {state}; fix the path or the file's permissions"


# ---------------------------------------------------------------- errors

_HINTS = {
    "missing": "field required; add it",
    "extra_forbidden": "unknown key; remove it or fix its spelling",
}


def _validation_error(exc: ValidationError, where: str, lines: dict[tuple, int]) -> InventoryError:
    errors = exc.errors(include_url=False, include_input=False)
    # Top to bottom; a missing key last, since a misspelt key nearby usually explains it.
    errors.sort(key=lambda e: (e["type"] == "missing", _line_of(tuple(e["loc"]), lines) or 0))
    first = errors[0]
    loc = tuple(first["loc"])
    message = _HINTS.get(first["type"])
    if message is None:
        text = first["msg"].removeprefix("Value error, ")
        message = text[:1].lower() + text[1:]
        if first["type"] != "value_error":
            message += "; fix the value"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if guess:
            message += f"; did you mean {guess[0]}?"
        if allowed:
            message += f" (allowed here: {', '.join(allowed)})"
    if len(errors) > 1:
        message += f" [{len(errors) - 1} more problem(s) after this one]"
    return InventoryError(message, file=where, line=_line_of(loc, lines), field=_field_name(loc) or None)


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of `loc`, or of its closest enclosing location (a missing key points at its parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys of the model found at `loc` (for "unknown key" hints), walking the type annotations."""
    kind: Any = Inventory
    for part in loc:
        kind = _unwrap(kind)
        if typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]
        elif isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [k for k in kind.model_fields if not (kind is Cluster and k == "name")]
    return []


def _unwrap(kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _unwrap(typing.get_args(kind)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _unwrap(options[0]) if len(options) == 1 else kind
    return kind


# ---------------------------------------------------------------- writing

def dump_inventory(inventory: Inventory) -> str:
    """YAML for `inventory` that `load_inventory` reads back equal (only what was set is written).

    Relative local paths are written as they are, so they are read relative to the file's directory.
    """
    data = inventory.model_dump(mode="json", exclude_unset=True,
                                exclude={"clusters": {"__all__": {"name"}}})
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.Representer = _Representer
    out = io.StringIO()
    out.write("# esremote inventory (see deployments/inventory.example.yml for every field)\n")
    yaml.dump(_flow_secret_refs(data), out)
    return out.getvalue()


class _Representer(RoundTripRepresenter):
    """`null` written out (ruamel writes an empty value); a subclass, so other YAML users are unaffected."""


_Representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))


_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./~-]*")


def _flow_secret_refs(value: Any) -> Any:
    """Secret references as `{env: NAME}`, the way the example writes them."""
    if isinstance(value, list):
        return [_flow_secret_refs(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in ("env", "file", "prefect"):
        # Quoted unless plainly safe: ruamel writes some plain scalars (`?0`) that are not valid
        # inside a flow mapping.
        ref = CommentedMap({k: v if _PLAIN_SAFE.fullmatch(str(v)) else DoubleQuotedScalarString(v)
                            for k, v in value.items()})
        ref.fa.set_flow_style()
        return ref
    return {k: _flow_secret_refs(v) for k, v in value.items()}
