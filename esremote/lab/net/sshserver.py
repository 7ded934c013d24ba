"""The lab's embedded SSH endpoint (asyncssh): exec + SFTP, public-key auth, a fault switch.

Each endpoint plays one node's sshd: its own address/port and host key, the client keys of its
authorized_keys file, commands run through `/bin/sh -c` as the user that runs the server, in the
node's home, with a configured environment. The user name a client logs in with is accepted as is
(the lab runs every node as the same OS user).

    python -m esremote.lab.net.sshserver --config endpoints.json

    {"control_file": "control/faults.json",              # optional
     "endpoints": [{"name": "local-1", "host": "127.0.1.1", "port": 2222, "home": "...",
                    "authorized_keys": "ssh/authorized_keys", "host_key": "ssh/local-1_host_key",
                    "env": {"ES_HOME": "..."}}]}

Fault switch: while the control file holds `{"ssh-drop": {"nodes": [names] | null}}` (null: every
node), connections to the named endpoints are closed on accept, and commands running on them are
killed and their connection dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from esremote.lab.net.asyncssh_lib import asyncssh

FAULT = "ssh-drop"
_FAULT_POLL = 0.1


@dataclass(frozen=True)
class SSHEndpoint:
    name: str
    host: str
    port: int  # 0: any free port (the running server reports the real one)
    home: Path
    authorized_keys: Path
    host_key: Path  # created (ed25519, 0600) when missing
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, base: Path) -> SSHEndpoint:
        def path(key: str) -> Path:
            return (base / data[key]).resolve()
        try:
            return cls(name=str(data["name"]), host=str(data["host"]), port=int(data["port"]),
                       home=path("home"), authorized_keys=path("authorized_keys"),
                       host_key=path("host_key"), env={str(k): str(v) for k, v in data.get("env", {}).items()})
        except KeyError as exc:
            raise ValueError(f"endpoint {data.get('name', '?')}: missing field {exc.args[0]!r}") from None


def ensure_host_key(path: Path) -> str:
    """Create an ed25519 host key at `path` unless one exists; return its public key line."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
    key = asyncssh.read_private_key(str(path))
    return key.export_public_key().decode().strip()


def fault_active(control_file: Path | None, node: str) -> bool:
    """True while the control file switches `ssh-drop` on for `node`. A missing or torn file: off."""
    if control_file is None:
        return False
    try:
        fault = json.loads(Path(control_file).read_text()).get(FAULT)
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(fault, dict):
        return bool(fault)
    nodes = fault.get("nodes")
    return nodes is None or node in nodes


class _Endpoint(asyncssh.SSHServer):
    """asyncssh's per-connection server object for one endpoint."""

    def __init__(self, owner: _Runtime, endpoint: SSHEndpoint) -> None:
        self.owner, self.endpoint = owner, endpoint
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.owner.accepted[self.endpoint.name] += 1
        if fault_active(self.owner.control_file, self.endpoint.name):
            asyncio.get_running_loop().call_soon(conn.abort)

    def begin_auth(self, username: str) -> bool:
        # Re-read per connection, so keys added to the file take effect without a restart.
        self.conn.set_authorized_keys(str(self.endpoint.authorized_keys))
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False


class _SFTP(asyncssh.SFTPServer):
    """The filesystem as the server's user sees it; relative paths start in the node's home."""

    home: bytes = b"/"

    def map_path(self, path: bytes) -> bytes:
        return path if path.startswith(b"/") else os.path.join(self.home, path)


class _Runtime:
    """The asyncio side: listeners and command handlers, running on one event loop."""

    def __init__(self, endpoints: list[SSHEndpoint], control_file: Path | None) -> None:
        self.endpoints = endpoints
        self.control_file = Path(control_file) if control_file else None
        self.accepted: Counter[str] = Counter()
        self.acceptors: list[asyncssh.SSHAcceptor] = []
        self.bound: list[SSHEndpoint] = []

    async def start(self) -> list[SSHEndpoint]:
        for endpoint in self.endpoints:
            ensure_host_key(endpoint.host_key)
            sftp = type("_SFTPFor", (_SFTP,), {"home": str(endpoint.home).encode()})
            acceptor = await asyncssh.create_server(
                lambda endpoint=endpoint: _Endpoint(self, endpoint), endpoint.host, endpoint.port,
                server_host_keys=[str(endpoint.host_key)], encoding=None, sftp_factory=sftp,
                process_factory=lambda process, endpoint=endpoint: self.handle(process, endpoint),
                allow_scp=False, agent_forwarding=False, x11_forwarding=False, keepalive_interval=0)
            self.acceptors.append(acceptor)
            self.bound.append(replace(endpoint, port=acceptor.sockets[0].getsockname()[1]))
        return self.bound

    async def stop(self) -> None:
        for acceptor in self.acceptors:
            acceptor.close()
            await acceptor.wait_closed()

    async def handle(self, process: asyncssh.SSHServerProcess, endpoint: SSHEndpoint) -> None:
        if process.command is None:
            process.stderr.write(b"this endpoint runs commands only (no interactive shell)\n")
            process.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", process.command, cwd=endpoint.home, env=self._env(process, endpoint),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        work = asyncio.ensure_future(_relay(process, proc))
        closed = asyncio.ensure_future(process.channel.wait_closed())  # the client gave up (timeout)
        fault = asyncio.ensure_future(self._wait_for_fault(endpoint))
        try:
            await asyncio.wait({work, closed, fault}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, closed, fault):
                task.cancel()
            if proc.returncode is None:  # nobody waits for it any more: end the command's process group
                _kill_group(proc.pid)
                await proc.wait()
        if fault.done() and not fault.cancelled():
            process.channel.get_connection().abort()
        elif work.done() and not work.cancelled() and work.exception() is None:
            code = work.result()
            process.channel.write_eof()  # like OpenSSH: EOF, then exit status or signal, then close
            if code < 0:
                process.exit_with_signal(signal.Signals(-code).name.removeprefix("SIG"))
            else:
                process.exit(code)

    async def _wait_for_fault(self, endpoint: SSHEndpoint) -> None:
        while not fault_active(self.control_file, endpoint.name):
            await asyncio.sleep(_FAULT_POLL)

    @staticmethod
    def _env(process: asyncssh.SSHServerProcess, endpoint: SSHEndpoint) -> dict[str, str]:
        user = getpass.getuser()
        peer = process.get_extra_info("peername") or ("", 0)
        sock = process.get_extra_info("sockname") or ("", 0)
        env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
               "HOME": str(endpoint.home), "USER": user, "LOGNAME": user, "SHELL": "/bin/sh",
               "LANG": "C.UTF-8",
               "SSH_CLIENT": f"{peer[0]} {peer[1]} {sock[1]}",
               "SSH_CONNECTION": f"{peer[0]} {peer[1]} {sock[0]} {sock[1]}"}
        env.update(endpoint.env)
        return env


async def _relay(process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process) -> int:
    """Client stdin -> command; command stdout/stderr -> client, until the command ends: its exit code."""
    feeder = asyncio.ensure_future(_feed(process.stdin, proc.stdin))
    try:
        await asyncio.gather(_pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr))
        return await proc.wait()
    finally:
        feeder.cancel()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _feed(source, sink: asyncio.StreamWriter) -> None:
    """Client stdin -> command stdin, then EOF (a command that exits early just stops reading)."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
        pass
    finally:
        try:
            sink.close()
        except (BrokenPipeError, ConnectionResetError):
            pass


async def _pump(source: asyncio.StreamReader, sink) -> None:
    while data := await source.read(65536):
        try:
            sink.write(data)
            await sink.drain()
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            return  # the client went away; the command is ended by the handler


class EmbeddedSSHServer:
    """Endpoints served from a background thread with its own event loop (for tests and `lab up`).

        with EmbeddedSSHServer([endpoint], control_file=faults) as server:
            host, port = server.endpoints[0].host, server.endpoints[0].port
    """

    def __init__(self, endpoints: list[SSHEndpoint], *, control_file: Path | None = None) -> None:
        self._runtime = _Runtime(list(endpoints), control_file)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.endpoints: list[SSHEndpoint] = list(endpoints)

    @property
    def accepted(self) -> Counter[str]:
        """Connections accepted so far, by endpoint name."""
        return self._runtime.accepted

    def start(self, timeout: float = 15.0) -> EmbeddedSSHServer:
        if self._thread is not None:
            raise RuntimeError("the embedded SSH server is already running")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="esremote-sshserver", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._runtime.start(), self._loop)
        try:
            self.endpoints = future.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None:
            return
        loop, thread = self._loop, self._thread
        try:
            asyncio.run_coroutine_threadsafe(self._runtime.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> EmbeddedSSHServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def load_config(path: Path) -> tuple[list[SSHEndpoint], Path | None]:
    """Endpoints and control file of a config file; relative paths are relative to the file."""
    base = path.resolve().parent
    data = json.loads(path.read_text())
    endpoints = [SSHEndpoint.from_dict(item, base) for item in data.get("endpoints", [])]
    if not endpoints:
        raise ValueError("no endpoints: add at least one under \"endpoints\"")
    control = data.get("control_file")
    return endpoints, (base / control).resolve() if control else None


async def _serve(endpoints: list[SSHEndpoint], control_file: Path | None) -> None:
    runtime = _Runtime(endpoints, control_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for endpoint in await runtime.start():
        print(f"esremote-sshserver: {endpoint.name} listening on {endpoint.host}:{endpoint.port}", flush=True)
    await stop.wait()
    await runtime.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esremote.lab.net.sshserver",
                                     description="Serve the lab's embedded SSH endpoints.")
    parser.add_argument("--config", required=True, type=Path, help="JSON file with the endpoints")
    args = parser.parse_args(argv)
    try:
        endpoints, control_file = load_config(args.config)
        asyncio.run(_serve(endpoints, control_file))
    except (OSError, ValueError) as exc:
        print(f"esremote-sshserver: error: {args.config}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
