"""Node access over SSH (paramiko): connections, strict host keys, sudo, atomic file edits.

    target = SSHTarget(host="es-1.example.com", user="esadmin", key_file="~/.ssh/id_ed25519")
    with SSHPool() as pool:
        node = pool.get(target)                     # lazy: connects on first use, then reused
        node.run("systemctl is-active elasticsearch", sudo=True)
        node.write_file("/etc/elasticsearch/elasticsearch.yml", data, run_id=run_id, sudo=True)

Running a step on many nodes at once is `esremote.fanout`.

Rules kept here:
- Host keys are checked strictly against known_hosts; trust-on-first-use only when asked for.
- paramiko and socket errors are mapped to esremote's errors in one place (`_connect_errors`,
  `_session_errors`): `ConnectError` (transient), `AuthenticationError`, `HostKeyError`.
- Secrets never go into a command line: they travel on stdin (the sudo password too).
- Files are backed up (`NAME.esremote-<run id>.bak`, `cp -p`: the original's owner, group and
  mode), written to a 0600 temp file in the same directory, fsynced, renamed over the original
  with its mode, owner and group, and read back.
- A new file or directory can take its parent directory's owner and group (`inherit_owner`,
  `ensure_dir`): on a deb/rpm node that is `root:elasticsearch`, the group Elasticsearch reads
  through (es-facts §12).
"""

from __future__ import annotations

import getpass
import os
import re
import select
import shlex
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import paramiko
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from esremote.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    SSHError,
    SudoError,
)

__all__ = [
    "SSHTarget", "SSHConnection", "SSHPool", "CommandResult", "FileStat", "WriteResult",
    "CommandTimeoutError", "host_key_fingerprint",
]

_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_SUDO_PROBE_TIMEOUT = 30.0


class CommandTimeoutError(SSHError):
    """A remote command did not finish in time (its channel is closed; worth a retry)."""

    transient = True


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


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str
    exit_code: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class FileStat:
    path: str
    mode: int  # permission bits, e.g. 0o640
    uid: int
    gid: int
    owner: str
    group: str
    size: int


@dataclass(frozen=True)
class WriteResult:
    host: str
    path: str
    backup_path: str | None  # the run's backup (the original), None when the file did not exist
    changed: bool
    created: bool = False


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """`ssh-ed25519 SHA256:...`, as `ssh-keygen -lf` and OpenSSH's prompts show it."""
    return f"{key.get_name()} {key.fingerprint}"


@dataclass(frozen=True)
class _Resolved:
    """A target with ~/.ssh/config applied: what paramiko is actually given."""

    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...]
    proxy_command: str | None
    known_hosts: Path


def _resolve(target: SSHTarget) -> _Resolved:
    cfg: dict = {}
    if target.ssh_config is not None:
        path = target.ssh_config.expanduser()
        if path.is_file():
            cfg = paramiko.SSHConfig.from_path(str(path)).lookup(target.host)
    key_files = (str(target.key_file.expanduser()),) if target.key_file else tuple(
        os.path.expanduser(p) for p in cfg.get("identityfile", []) if os.path.exists(os.path.expanduser(p)))
    return _Resolved(
        hostname=cfg.get("hostname", target.host),
        port=target.port or int(cfg.get("port", 22)),
        user=target.user or cfg.get("user") or getpass.getuser(),
        key_files=key_files,
        proxy_command=cfg.get("proxycommand"),
        known_hosts=target.known_hosts.expanduser(),
    )


def _known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host key: refuse with the fingerprint, or (trust on first use) append it to known_hosts."""

    _lock = threading.Lock()

    def __init__(self, target: SSHTarget, resolved: _Resolved) -> None:
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


class SSHConnection:
    """One node, one SSH connection: opened on first use, reopened if it dropped, closed by `close()`.

    Thread-safe: several threads may run commands on the same connection (one channel each).
    """

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()
        self._identity: tuple[int, str] | None = None  # (uid, user name) of the login user
        self._sudo_mode: str | None = None  # "root" | "nopasswd" | "password"

    # ----------------------------------------------------------------------------- connection
    @property
    def host(self) -> str:
        return self.target.label

    @property
    def connected(self) -> bool:
        client = self._client
        transport = client.get_transport() if client else None
        return bool(transport and transport.is_active())

    def connect(self) -> SSHConnection:
        self._transport()
        return self

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            if not self.connected:
                self.close()
                self._client = self._open_client()
            return self._client.get_transport()

    def _open_client(self) -> paramiko.SSHClient:
        resolved = _resolve(self.target)
        client = paramiko.SSHClient()
        if resolved.known_hosts.is_file():
            client.load_host_keys(str(resolved.known_hosts))
        client.set_missing_host_key_policy(_HostKeyPolicy(self.target, resolved))
        timeout = self.target.connect_timeout
        try:
            with _connect_errors(self.target, resolved):
                sock = paramiko.ProxyCommand(resolved.proxy_command) if resolved.proxy_command else None
                client.connect(
                    resolved.hostname, port=resolved.port, username=resolved.user,
                    key_filename=list(resolved.key_files) or None,
                    look_for_keys=not resolved.key_files, allow_agent=self.target.allow_agent,
                    timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                    channel_timeout=timeout, sock=sock)
        except BaseException:
            client.close()
            raise
        client.get_transport().set_keepalive(30)
        return client

    # ------------------------------------------------------------------------------- commands
    def run(self, command: str, *, stdin: bytes | str | None = None, sudo: bool = False,
            as_user: str | None = None, check: bool = True, timeout: float | None = None,
            display: str | None = None) -> CommandResult:
        """Run `command` through the login shell; `sudo`/`as_user` run it as root/that user.

        `stdin` (bytes or text) is sent and then closed: it is where secrets go, never the command.
        A non-zero exit raises `RemoteCommandError` when `check` is true. `display` is what
        results and errors call the command (e.g. "write /etc/x" for a long script).
        """
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        wrapped, data = self._wrap(command, data, sudo=sudo or as_user is not None, as_user=as_user)
        shown = _short(display or command)
        if sudo or as_user:
            shown = f"sudo{' -u ' + as_user if as_user else ''} {shown}"
        code, out, err = self._exec(wrapped, data, timeout, shown)
        result = CommandResult(self.host, shown, code, out, err)
        if (sudo or as_user) and code == 1 and not out and err.startswith(b"sudo: "):
            raise SudoError(f"sudo refused `{shown}`: {_tail(err)}; grant it in sudoers", host=self.host)
        if check and code != 0:
            raise RemoteCommandError(host=self.host, command=shown, exit_code=code,
                                     stderr=result.stderr, stdout=result.stdout)
        return result

    def _wrap(self, command: str, data: bytes, *, sudo: bool, as_user: str | None) -> tuple[str, bytes]:
        if not sudo:
            return command, data
        mode = self._sudo()
        if mode == "root" and as_user is None:
            return command, data
        user = f"-u {shlex.quote(as_user)} " if as_user else ""
        inner = f"sh -c {shlex.quote(command)}"
        if mode == "password":
            # -k: always ask, so the first stdin line is always consumed as the password; the
            # password was validated by _sudo(), so sudo never re-reads the command's data as one.
            password = self.target.sudo_password.get_secret_value().encode()
            return f"sudo -S -k -p '' {user}-- {inner}", password + b"\n" + data
        return f"sudo -n {user}-- {inner}", data

    def _sudo(self) -> str:
        """How this login may use sudo, found once per connection; SudoError when it cannot."""
        if self._sudo_mode is not None:
            return self._sudo_mode
        if self.identity()[0] == 0:
            self._sudo_mode = "root"
            return self._sudo_mode
        code, _, err = self._exec("sudo -n true", b"", _SUDO_PROBE_TIMEOUT)
        user = self.identity()[1]
        if code == 0:
            self._sudo_mode = "nopasswd"
            return self._sudo_mode
        reason = _tail(err)
        if code == 127 or "not found" in reason:
            raise SudoError(f"sudo is not installed for {user}: install sudo or log in as root", host=self.host)
        if "password" not in reason.lower():  # e.g. "user x is not in the sudoers file"
            raise SudoError(f"sudo refused {user}: {reason}; grant it in sudoers", host=self.host)
        if self.target.sudo_password is None:
            raise SudoError(
                f"sudo needs a password for {user} and none is configured: set ssh.sudo_password "
                f"(a secret reference) or allow NOPASSWD for {user} in sudoers", host=self.host)
        password = self.target.sudo_password.get_secret_value().encode()
        code, _, err = self._exec("sudo -S -k -p '' -v", password + b"\n", _SUDO_PROBE_TIMEOUT)
        if code != 0:
            raise SudoError(f"sudo refused the configured password for {user} ({_tail(err) or 'exit ' + str(code)}):"
                            f" check ssh.sudo_password", host=self.host)
        self._sudo_mode = "password"
        return self._sudo_mode

    def identity(self) -> tuple[int, str]:
        """(uid, name) of the login user on the node."""
        if self._identity is None:
            code, out, err = self._exec("id -u; id -un", b"", _SUDO_PROBE_TIMEOUT)
            lines = out.decode().split()
            if code != 0 or len(lines) != 2:
                raise RemoteCommandError(host=self.host, command="id -u; id -un", exit_code=code,
                                         stderr=err.decode("utf-8", "replace"))
            self._identity = (int(lines[0]), lines[1])
        return self._identity

    def _exec(self, command: str, data: bytes, timeout: float | None,
              shown: str | None = None) -> tuple[int, bytes, bytes]:
        """Run one command on a new channel: (exit code, stdout, stderr). -1: killed by a signal."""
        deadline = None if timeout is None else time.monotonic() + timeout
        shown = shown or command
        transport = self._transport()
        with self._session_errors(shown):
            chan = transport.open_session(timeout=self.target.connect_timeout)
            try:
                chan.settimeout(timeout)
                chan.exec_command(command)
                if data:
                    chan.sendall(data)
                chan.shutdown_write()
                out, err = self._collect(chan, shown, deadline, timeout)
                while not chan.exit_status_ready():
                    if not transport.is_active():
                        raise EOFError("connection closed before the command's exit status arrived")
                    self._check_deadline(chan, shown, deadline, timeout)
                    chan.status_event.wait(0.05)
                if chan.exit_status == -1 and not chan.eof_received and _connection_lost(transport):
                    raise EOFError("connection closed while the command was running")
                return chan.recv_exit_status(), out, err
            finally:
                chan.close()

    def _collect(self, chan: paramiko.Channel, command: str, deadline: float | None,
                 timeout: float | None) -> tuple[bytes, bytes]:
        out, err = bytearray(), bytearray()
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                return bytes(out), bytes(err)
            self._check_deadline(chan, command, deadline, timeout)
            select.select([chan], [], [], 0.02)

    def _check_deadline(self, chan, shown: str, deadline: float | None, timeout: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            chan.close()
            raise CommandTimeoutError(f"command `{shown}` did not finish within its {timeout:g}s timeout; "
                                      "it may still be running on the node", host=self.host)

    @contextmanager
    def _session_errors(self, shown: str) -> Iterator[None]:
        """The boundary for errors on an open connection: a drop becomes a transient ConnectError."""
        try:
            yield
        except (socket.timeout, TimeoutError) as exc:
            raise CommandTimeoutError(f"command `{shown}` timed out", host=self.host) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise ConnectError(f"connection lost while running `{shown}`: "
                               f"{exc or type(exc).__name__}; retry when the node is reachable",
                               host=self.host) from exc

    # ---------------------------------------------------------------------------------- files
    def read_file(self, path: str | PurePosixPath, *, sudo: bool = False) -> bytes:
        return self.run(f"cat -- {shlex.quote(str(path))}", sudo=sudo).stdout_bytes

    def exists(self, path: str | PurePosixPath, *, sudo: bool = False) -> bool:
        q = shlex.quote(str(path))
        return self.run(f"test -e {q} || test -L {q}", sudo=sudo, check=False).exit_code == 0

    def stat(self, path: str | PurePosixPath, *, sudo: bool = False) -> FileStat | None:
        """Mode, owner and size of `path` (symlinks followed), or None when it does not exist."""
        path = str(path)
        q = shlex.quote(path)
        result = self.run(f"if [ -e {q} ]; then stat -L -c '%a %u %g %U %G %s' -- {q}; else echo missing; fi",
                          sudo=sudo)
        fields = result.stdout.split()
        if fields == ["missing"]:
            return None
        if len(fields) != 6:
            raise SSHError(f"cannot read the mode and owner of {path}: unexpected `stat` output "
                           f"{result.stdout.strip()!r}; is GNU coreutils installed?", host=self.host)
        mode, uid, gid, owner, group, size = fields
        return FileStat(path, int(mode, 8), int(uid), int(gid), owner, group, int(size))

    def write_file(self, path: str | PurePosixPath, data: bytes, *, run_id: str, sudo: bool = False, mode: int | None = None,
                   owner: str | None = None, group: str | None = None,
                   inherit_owner: bool = False) -> WriteResult:
        """Replace `path` with `data` safely; a no-op when it already holds exactly that.

        Backs up the original once per run (`NAME.esremote-<run id>.bak`: a second call of the same
        run keeps the first backup, which is the original, with its owner, group and mode), writes a
        0600 temp file in the same directory, fsyncs it, sets the original mode, owner and group (or
        `mode`/`owner`/`group`), renames it over `path` and reads it back. With `inherit_owner`, a
        file that does not exist yet gets its directory's owner and group (unless `owner`/`group`
        say otherwise), like every file Elasticsearch reads in a package install's `root:elasticsearch`
        config directory. Uses sudo when asked or when the login user does not own the file
        (keeping or giving another user's ownership needs root). A symlink is followed: its target
        is the file replaced, so a link kept by configuration management stays a link.
        """
        path = str(path)
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r} must match {_RUN_ID.pattern}")
        if not path.startswith("/"):
            raise ValueError(f"write_file needs an absolute path, got {path!r}")
        path = self._real_path(path, sudo=sudo)
        before = self.stat(path, sudo=sudo)
        if before is None and inherit_owner:
            parent = self._parent(path, sudo=sudo)
            owner = owner or str(parent.uid)
            group = group or str(parent.gid)
        use_sudo = sudo or self._needs_root_to_keep(before, owner)
        backup = _backup_path(path, run_id)
        if before is not None and self._already_there(path, data, before, use_sudo, mode, owner, group):
            return WriteResult(self.host, path, backup if self.exists(backup, sudo=use_sudo) else None,
                               changed=False)
        self.run(_write_script(path, backup, before, mode, owner, group), stdin=data, sudo=use_sudo,
                 display=f"write {path}")
        if self.read_file(path, sudo=use_sudo) != data:
            raise SSHError(f"{path} does not hold what was written (read-back differs); "
                           f"the original is in {backup}", host=self.host)
        return WriteResult(self.host, path, backup if before is not None else None, changed=True,
                           created=before is None)

    def backup(self, path: str | PurePosixPath, *, run_id: str, sudo: bool = False) -> str | None:
        """Copy `path` to the run's backup `NAME.esremote-<run id>.bak` (`cp -p`: owner, group and
        mode kept) unless the run made it already; for a file edited by another program (the
        keystore CLI). Returns the backup's path, None when `path` does not exist."""
        path = str(path)
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r} must match {_RUN_ID.pattern}")
        p, b = shlex.quote(path), shlex.quote(_backup_path(path, run_id))
        result = self.run(f"set -eu\numask 077\n[ -e {p} ] || exit 3\n"
                          f"if [ ! -e {b} ]; then cp -p -- {p} {b}.tmp && mv -f -- {b}.tmp {b}; fi\n",
                          sudo=sudo, check=False, display=f"backup {path}")
        if result.exit_code == 3:
            return None
        if result.exit_code != 0:
            raise RemoteCommandError(host=self.host, command=result.command, exit_code=result.exit_code,
                                     stderr=result.stderr, stdout=result.stdout)
        return _backup_path(path, run_id)

    def ensure_dir(self, path: str | PurePosixPath, *, sudo: bool = False, mode: int = 0o2750) -> list[str]:
        """Create `path` and any missing parents; each one it creates gets its parent's owner and
        group (`chown --reference`) and `mode` (default 2750: setgid, so files made in it later
        inherit the group, as in a package install's config directory). Returns the directories
        created, top first; an existing directory is left as it is."""
        path = str(path)
        if not path.startswith("/"):
            raise ValueError(f"ensure_dir needs an absolute path, got {path!r}")
        target, m = path.rstrip("/") or "/", f"{mode:o}"
        # Walk up to the deepest directory that exists, then create the rest top down. A directory
        # made meanwhile by a concurrent call is fine (that call sets its owner and mode).
        script = (
            "set -eu\n"
            f"target={shlex.quote(target)}\n"
            "d=$target\n"
            'while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done\n'
            'rest=${target#"$d"}\n'
            "IFS=/\n"
            "set -f\n"
            "for part in $rest; do\n"
            '  [ -n "$part" ] || continue\n'
            '  d="${d%/}/$part"\n'
            f'  if mkdir -m {m} -- "$d" 2>/dev/null; then\n'
            '    chown --reference="$(dirname -- "$d")" -- "$d"\n'
            f'    chmod {m} -- "$d"\n'
            "    printf '%s\\n' \"$d\"\n"
            f'  elif [ ! -d "$d" ]; then mkdir -m {m} -- "$d"; fi\n'
            "done\n")
        result = self.run(script, sudo=sudo, display=f"mkdir {path}")
        return [line for line in result.stdout.splitlines() if line]

    def readable_by(self, path: str | PurePosixPath, user: str) -> bool | None:
        """Whether `user` can read `path` (directories on the way included), asked as that user;
        None when it cannot be told (no such user on the node, or sudo may not run as it)."""
        q = shlex.quote(str(path))
        if user in self.identity():
            return self.run(f"test -r {q}", check=False).exit_code == 0
        if self.run(f"id -u -- {shlex.quote(user)}", check=False).exit_code != 0:
            return None
        try:
            return self.run(f"test -r {q}", as_user=user, check=False).exit_code == 0
        except SudoError:
            return None

    def _parent(self, path: str, *, sudo: bool) -> FileStat:
        directory = os.path.dirname(path) or "/"
        parent = self.stat(directory, sudo=sudo)
        if parent is None:
            raise SSHError(f"cannot write {path}: its directory {directory} does not exist (or the login user "
                           f"cannot see it: set ssh.sudo)", host=self.host)
        return parent

    def _real_path(self, path: str, *, sudo: bool) -> str:
        q = shlex.quote(path)
        result = self.run(f"if [ -L {q} ]; then readlink -f -- {q}; else echo {q}; fi", sudo=sudo)
        return result.stdout.rstrip("\n") or path

    def _needs_root_to_keep(self, before: FileStat | None, owner: str | None) -> bool:
        uid, name = self.identity()
        if uid == 0:
            return False
        if owner is not None and owner not in (name, str(uid)):
            return True
        return before is not None and before.uid != uid

    def _already_there(self, path, data, before: FileStat, use_sudo, mode, owner, group) -> bool:
        if mode is not None and before.mode != mode:
            return False
        if owner is not None and owner not in (before.owner, str(before.uid)):
            return False
        if group is not None and group not in (before.group, str(before.gid)):
            return False
        return before.size == len(data) and self.read_file(path, sudo=use_sudo) == data


def _write_script(path: str, backup: str, before: FileStat | None, mode: int | None,
                  owner: str | None, group: str | None) -> str:
    """Shell that does the atomic replace on the node; the new content arrives on stdin."""
    directory, name = os.path.split(path)
    p, b = shlex.quote(path), shlex.quote(backup)
    new_mode = mode if mode is not None else (before.mode if before else 0o644)
    user = owner or (str(before.uid) if before else "")
    grp = group or (str(before.gid) if before else "")
    chown = f'chown {shlex.quote(user + (":" + grp if grp else ""))} "$t"\n' if user else (
        f'chgrp {shlex.quote(grp)} "$t"\n' if grp else "")
    backup_step = (f'if [ ! -e {b} ]; then cp -p -- {p} {b}.tmp && mv -f -- {b}.tmp {b}; fi\n'
                   if before is not None else "")
    return (
        "set -eu\numask 077\n"
        + backup_step
        + f"t=$(mktemp {shlex.quote(directory or '/')}/.{shlex.quote(name)}.esremote-XXXXXX)\n"
        "trap 'rm -f -- \"$t\"' EXIT\n"
        'dd of="$t" bs=65536 conv=fsync status=none\n'
        + chown
        + f'chmod {new_mode:o} "$t"\n'
        f'mv -f -- "$t" {p}\n'
        "trap - EXIT\n"
        f"sync -- {shlex.quote(directory or '/')} 2>/dev/null || true\n"
    )


def _connection_lost(transport: paramiko.Transport, grace: float = 2.0) -> bool:
    """Whether a channel that closed without exit status went down with its connection.

    Servers end a channel with EOF, then exit status (or the signal that killed the command, which
    paramiko does not record), then close; a channel cut with its connection has neither EOF nor
    status. paramiko closes the channels just before marking the transport inactive, so give
    its thread a moment to finish.
    """
    transport.join(grace)
    return not transport.is_active()


def _backup_path(path: str, run_id: str) -> str:
    return f"{path}.esremote-{run_id}.bak"


def _tail(data: bytes, lines: int = 3) -> str:
    return " / ".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


def _short(command: str, limit: int = 160) -> str:
    """A command as results and errors show it: its first line, cut to `limit` characters."""
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    return first if len(first) <= limit and len(lines) == 1 else first[:limit] + " …"


@contextmanager
def _connect_errors(target: SSHTarget, resolved: _Resolved) -> Iterator[None]:
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


class SSHPool:
    """Connections shared by key (host, port, user); `close()` closes them all."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, int | None, str | None], SSHConnection] = {}
        self._lock = threading.Lock()

    def get(self, target: SSHTarget) -> SSHConnection:
        key = (target.host, target.port, target.user)
        with self._lock:
            conn = self._connections.get(key)
            if conn is None or conn.target != target:
                if conn is not None:
                    conn.close()
                conn = self._connections[key] = SSHConnection(target)
            return conn

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
