"""Where a node is and how to reach it: SSHTarget, ~/.ssh/config, strict host-key checking, and
the one boundary where paramiko's connect errors become esremote's."""

from __future__ import annotations

import getpass
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import paramiko
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from esremote.errors import AuthenticationError, ConnectError, HostKeyError


class SSHTarget(BaseModel):
    """How to reach one node. Unset `port`/`user`/`key_file` come from ~/.ssh/config, then defaults."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    trust_on_first_use: bool = False
    connect_timeout: float = Field(default=10.0, gt=0)
    sudo_password: SecretStr | None = None
    ssh_config: Path | None = Path("~/.ssh/config")
    allow_agent: bool = True
    name: str | None = None  # what messages call the node (defaults to host)

    @property
    def label(self) -> str:
        return self.name or self.host


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """`ssh-ed25519 SHA256:...`, as `ssh-keygen -lf` and OpenSSH's prompts show it."""
    return f"{key.get_name()} {key.fingerprint}"


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with ~/.ssh/config applied: what paramiko is actually given."""

    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_command: str | None
    known_hosts: Path


def resolve_target(target: SSHTarget) -> ResolvedTarget:
    cfg: dict = {}
    if target.ssh_config is not None:
        path = target.ssh_config.expanduser()
        if path.is_file():
            cfg = paramiko.SSHConfig.from_path(str(path)).lookup(target.host)
    key_files = (str(target.key_file.expanduser()),) if target.key_file else tuple(
        os.path.expanduser(p) for p in cfg.get("identityfile", []) if os.path.exists(os.path.expanduser(p)))
    return ResolvedTarget(
        hostname=cfg.get("hostname", target.host),
        port=target.port or int(cfg.get("port", 22)),
        user=target.user or cfg.get("user") or getpass.getuser(),
        key_files=key_files,
        proxy_command=cfg.get("proxycommand"),
        known_hosts=target.known_hosts.expanduser(),
    )


def _known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host key: refuse with the fingerprint, or (trust on first use) append it to known_hosts."""

    _lock = threading.Lock()

    def __init__(self, target: SSHTarget, resolved: ResolvedTarget) -> None:
        self.target, self.resolved = target, resolved

    def missing_host_key(self, client, hostname, key) -> None:
        known_hosts = self.resolved.known_hosts
        if not self.target.trust_on_first_use:
            raise HostKeyError(
                f"unknown host key {host_key_fingerprint(key)} for {hostname}: it is not in {known_hosts}. "
                f"Check the fingerprint with the node's administrator, then add it with "
                f"`ssh-keyscan -p {self.resolved.port} {self.resolved.hostname} >> {known_hosts}`, "
                f"or set trust_on_first_use: true to accept it on first connection",
                host=self.target.label)
        with self._lock:
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


@contextmanager
def connect_errors(target: SSHTarget, resolved: ResolvedTarget) -> Iterator[None]:
    """The one boundary where paramiko/socket errors of connecting become esremote errors."""
    where = f"{resolved.user}@{resolved.hostname}:{resolved.port}"
    try:
        yield
    except HostKeyError:
        raise
    except paramiko.BadHostKeyException as exc:
        name = _known_hosts_name(resolved.hostname, resolved.port)
        raise HostKeyError(
            f"host key CHANGED for {name}: {resolved.known_hosts} has {host_key_fingerprint(exc.expected_key)}, "
            f"the server offers {host_key_fingerprint(exc.key)}. If the node was reinstalled, confirm the new "
            f"fingerprint, remove the old key with `ssh-keygen -R '{name}' -f {resolved.known_hosts}` "
            f"and connect again; otherwise someone may be intercepting the connection: stop",
            host=target.label) from exc
    except paramiko.PasswordRequiredException as exc:
        raise AuthenticationError(f"the private key for {where} is encrypted: load it into ssh-agent "
                                  f"or give an unencrypted key_file", host=target.label) from exc
    except paramiko.AuthenticationException as exc:
        keys = ", ".join(resolved.key_files) or "the agent and ~/.ssh keys"
        raise AuthenticationError(f"authentication failed for {where} with {keys}: check key_file and "
                                  f"the user's authorized_keys", host=target.label) from exc
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {resolved.hostname}: {exc.strerror}; check the node's address",
                           host=target.label, transient=False) from exc
    except (socket.timeout, TimeoutError) as exc:
        raise ConnectError(f"timed out connecting to {where} after {target.connect_timeout:g}s",
                           host=target.label) from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise ConnectError(f"cannot connect to {where}: {exc or type(exc).__name__}",
                           host=target.label) from exc


