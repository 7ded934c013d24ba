"""One SSH connection to one node: opened on first use, reopened if it dropped; commands with sudo
(no password, or one sent on stdin), deadlines, and errors mapped to esremote's; and the pool that
shares connections."""

from __future__ import annotations

import re
import select
import shlex
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import paramiko

from esremote.errors import ConnectError, RemoteCommandError, SudoError
from esremote.ssh.files import RemoteFiles
from esremote.ssh.results import CommandResult, CommandTimeoutError
from esremote.ssh.target import SSHTarget, HostKeyPolicy, connect_errors, resolve_target


_SUDO_PROBE_TIMEOUT = 30.0


class SSHConnection(RemoteFiles):
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
        resolved = resolve_target(self.target)
        client = paramiko.SSHClient()
        if resolved.known_hosts.is_file():
            client.load_host_keys(str(resolved.known_hosts))
        client.set_missing_host_key_policy(HostKeyPolicy(self.target, resolved))
        timeout = self.target.connect_timeout
        try:
            with connect_errors(self.target, resolved):
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
        with self._session_errors(shown):
            transport, chan = self._open_session()
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

    def _open_session(self, attempts: int = 3) -> tuple[paramiko.Transport, paramiko.Channel]:
        """A new channel for one command. A refused or timed-out open is tried again (a busy or
        restarting SSH server refuses channels for a moment): the command has not started, so
        trying again cannot run it twice. The connection is reopened when it went down."""
        for attempt in range(1, attempts + 1):
            transport = self._transport()
            try:
                return transport, transport.open_session(timeout=self.target.connect_timeout)
            except paramiko.SSHException:
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

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

def _connection_lost(transport: paramiko.Transport, grace: float = 2.0) -> bool:
    """Whether a channel that closed without exit status went down with its connection.

    Servers end a channel with EOF, then exit status (or the signal that killed the command, which
    paramiko does not record), then close; a channel cut with its connection has neither EOF nor
    status. paramiko closes the channels just before marking the transport inactive, so give
    its thread a moment to finish.
    """
    transport.join(grace)
    return not transport.is_active()


def _tail(data: bytes, lines: int = 3) -> str:
    return " / ".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


def _short(command: str, limit: int = 160) -> str:
    """A command as results and errors show it: its first line, cut to `limit` characters."""
    lines = command.strip().splitlines() or [""]
    first = lines[0]
    return first if len(first) <= limit and len(lines) == 1 else first[:limit] + " …"


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
