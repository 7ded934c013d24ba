"""The lab's SSH endpoints: one per node, embedded (asyncssh, port 2222) or real OpenSSH (port 2223).

`prepare(layout)` writes the client key (`DIR/ssh/id_ed25519`), every endpoint's host key and
`DIR/ssh/known_hosts`; `start(layout)` starts the endpoints (one embedded server process for all
nodes, or one `sshd` per node) and returns their pids; `login_user(mode, sudo)` says who logs in.

OpenSSH as root: a non-root user logs in (like an operator's account) and reaches root through
sudo: `esremote` with password-less sudo (`--sudo nopasswd`, `sudo -n`), or `esremote-pw`, whose
sudo asks for its password (`--sudo password`): that password is made once per machine (root-only,
`/var/lib/esremote-lab/sudo-password`, since the account is shared by every lab on it) and copied
to `DIR/secrets/sudo-password.secret` (0600), which the inventory references. The authorized keys
come from `DIR/ssh/authorized_keys` through `AuthorizedKeysCommand`, so the lab directory need not
be readable by the login user. Not root: sshd runs as the current user, who is then the only one
it lets in (and `--sudo password` is refused).
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from esremote.errors import ConfigError, EsRemoteError
from esremote.files import atomic_write
from esremote.lab.ops.builder import Layout, NodeSpec

LAB_USER = "esremote"  # --sudo nopasswd
LAB_PASSWORD_USER = "esremote-pw"  # --sudo password
SUDOERS_FILE = Path("/etc/sudoers.d/esremote-lab")
PASSWORD_SUDOERS_FILE = Path("/etc/sudoers.d/esremote-lab-password")
PASSWORD_STORE = Path("/var/lib/esremote-lab/sudo-password")
START_TIMEOUT = 20.0


def is_root() -> bool:
    return os.geteuid() == 0


def login_user(mode: str, sudo: str = "nopasswd") -> str:
    """Who logs in: with OpenSSH as root, the lab user of the `--sudo` variant; else the current user."""
    if mode == "openssh" and is_root():
        return LAB_PASSWORD_USER if sudo == "password" else LAB_USER
    return getpass.getuser()


def sudo_password_file(layout: Layout) -> Path | None:
    """`DIR/secrets/sudo-password.secret` (0600) with `--sudo password`, else None."""
    return layout.secret_file("sudo-password") if layout.options.sudo == "password" else None


def uses_sudo(mode: str) -> bool:
    """Whether commands on the nodes need sudo: the OpenSSH lab user is not the nodes' owner."""
    return mode == "openssh" and is_root()


# ------------------------------------------------------------------------------------ keys


def key_file(layout: Layout) -> Path:
    return layout.ssh_dir / "id_ed25519"


def known_hosts(layout: Layout) -> Path:
    return layout.ssh_dir / "known_hosts"


def host_key(layout: Layout, node: NodeSpec) -> Path:
    return layout.ssh_dir / "hostkeys" / f"{node.name}_ed25519"


def prepare(layout: Layout) -> None:
    """Client key, authorized_keys, host keys and known_hosts (existing keys are kept)."""
    from esremote.lab.net.asyncssh_lib import asyncssh  # noqa: PLC0415 (only the control side needs it)

    from esremote.lab.net.sshserver import ensure_host_key  # noqa: PLC0415

    if layout.options.sudo == "password":
        if layout.options.ssh != "openssh":
            raise ConfigError("--sudo password: needs --ssh openssh (the embedded SSH server runs commands as "
                              "the lab's own user, without sudo)")
        if not is_root():
            raise ConfigError("--sudo password: the lab makes a login user whose sudo asks for a password, "
                              "which needs root; run `lab up` as root, or leave --sudo out")
    layout.ssh_dir.mkdir(exist_ok=True)
    client = key_file(layout)
    if not client.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="esremote-lab")
        atomic_write(client, key.export_private_key(), mode=0o600)
        atomic_write(client.with_suffix(".pub"), key.export_public_key(), mode=0o644)
    public = client.with_suffix(".pub").read_bytes()
    atomic_write(layout.ssh_dir / "authorized_keys", public, mode=0o644)
    lines = []
    for node in layout.nodes():
        line = ensure_host_key(host_key(layout, node))
        lines.append(f"[{node.ip}]:{node.ssh_port} {line}\n")
    atomic_write(known_hosts(layout), "".join(lines).encode(), mode=0o644)


# -------------------------------------------------------------------------------- endpoints


def start(layout: Layout) -> dict[str, int]:
    """Start every endpoint; return name -> pid of each process started (to stop them by pid)."""
    if layout.options.ssh == "embedded":
        return {"sshserver": _start_embedded(layout)}
    return _start_openssh(layout)


def _start_embedded(layout: Layout) -> int:
    config = layout.ssh_dir / "embedded.json"
    endpoints = [{"name": n.name, "host": n.ip, "port": n.ssh_port, "home": str(n.home),
                  "authorized_keys": str(layout.ssh_dir / "authorized_keys"),
                  "host_key": str(host_key(layout, n)), "env": {"ES_HOME": str(n.home)}}
                 for n in layout.nodes()]
    atomic_write(config, json.dumps({"control_file": str(layout.control_dir / "faults.json"),
                                     "endpoints": endpoints}, indent=2).encode(), mode=0o644)
    log = (layout.run_dir / "sshserver.log").open("ab")
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "esremote.lab.net.sshserver", "--config", str(config)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.dir)
    _wait_listening(layout, lambda: proc.poll() is None, f"the embedded SSH server (see {log.name})")
    return proc.pid


def _start_openssh(layout: Layout) -> dict[str, int]:
    if is_root():
        if layout.options.sudo == "password":
            ensure_password_user(layout)
        else:
            ensure_lab_user()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    pids = {f"sshd-{node.name}": start_sshd(layout, node) for node in layout.nodes()}
    _wait_listening(layout, lambda: True, "sshd")
    return pids


def start_sshd(layout: Layout, node: NodeSpec) -> int:
    """One node's sshd (it daemonizes); returns its pid."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        raise ConfigError("--ssh openssh: no sshd on this machine; install openssh-server or use --ssh embedded")
    config = write_sshd_config(layout, node)
    pid_file = layout.run_dir / f"sshd-{node.name}.pid"
    pid_file.unlink(missing_ok=True)
    result = subprocess.run([sshd, "-f", str(config), "-E", str(layout.run_dir / f"sshd-{node.name}.log")],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise EsRemoteError(f"sshd for {node.name} did not start: {result.stderr.strip()}")
    return _wait_pid_file(pid_file)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (an sshd listener's sessions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def write_sshd_config(layout: Layout, node: NodeSpec) -> Path:
    user = login_user("openssh", layout.options.sudo)
    lines = [
        f"# sshd of lab node {node.name}",
        f"ListenAddress {node.ip}:{node.ssh_port}",
        f"HostKey {host_key(layout, node)}",
        f"PidFile {layout.run_dir / f'sshd-{node.name}.pid'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        f"AllowUsers {user}",
        "AuthorizedKeysFile none",
        # Read as root: the lab directory (under a private tmp dir) need not be readable by the user.
        f"AuthorizedKeysCommand /bin/cat {layout.ssh_dir / 'authorized_keys'}",
        f"AuthorizedKeysCommandUser {'root' if is_root() else user}",
        "Subsystem sftp internal-sftp",
        "LogLevel VERBOSE",
        "PrintMotd no",
    ]
    path = layout.ssh_dir / f"sshd-{node.name}.conf"
    atomic_write(path, ("\n".join(lines) + "\n").encode(), mode=0o644)
    return path


def ensure_lab_user() -> None:
    """The OpenSSH lab's login: a non-root user with password-less sudo (idempotent)."""
    try:
        subprocess.run(["id", LAB_USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", LAB_USER], check=True,
                       capture_output=True)
    # A '!' password locks the account and sshd without PAM refuses locked accounts; '*' only
    # forbids password logins.
    subprocess.run(["usermod", "-p", "*", LAB_USER], check=True, capture_output=True)
    rule = f"{LAB_USER} ALL=(ALL) NOPASSWD: ALL\n".encode()
    if not SUDOERS_FILE.exists() or SUDOERS_FILE.read_bytes() != rule:
        atomic_write(SUDOERS_FILE, rule, mode=0o440)


def ensure_password_user(layout: Layout) -> None:
    """The `--sudo password` login: a non-root user whose sudo asks for its password (idempotent).

    The password is the machine's (one account serves every lab here): made once, kept root-only
    in PASSWORD_STORE, set with chpasswd (on stdin), and copied to the lab's secrets directory."""
    try:
        subprocess.run(["id", LAB_PASSWORD_USER], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        result = subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", LAB_PASSWORD_USER],
                                capture_output=True, text=True)
        if result.returncode not in (0, 9):  # 9: made meanwhile by another lab
            raise EsRemoteError(f"useradd {LAB_PASSWORD_USER}: {result.stderr.strip()}")
    password = _machine_sudo_password()
    result = subprocess.run(["chpasswd"], input=f"{LAB_PASSWORD_USER}:{password}\n", text=True,
                            capture_output=True)
    if result.returncode != 0:
        raise EsRemoteError(f"chpasswd for {LAB_PASSWORD_USER} failed: {result.stderr.strip()}")
    # No NOPASSWD: every sudo asks for the password (esremote sends it on stdin, `sudo -S`).
    rule = (f"{LAB_PASSWORD_USER} ALL=(ALL:ALL) ALL\n"
            f"Defaults:{LAB_PASSWORD_USER} !lecture, passwd_tries=1\n").encode()
    if not PASSWORD_SUDOERS_FILE.exists() or PASSWORD_SUDOERS_FILE.read_bytes() != rule:
        atomic_write(PASSWORD_SUDOERS_FILE, rule, mode=0o440)  # the temp name has a dot: sudo skips it
    secret = sudo_password_file(layout)
    layout.secrets_dir.mkdir(mode=0o700, exist_ok=True)
    if not secret.exists() or secret.read_text().splitlines()[:1] != [password]:
        atomic_write(secret, password.encode() + b"\n", mode=0o600)


def _machine_sudo_password() -> str:
    PASSWORD_STORE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(PASSWORD_STORE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        deadline = time.monotonic() + 5.0  # another lab up may have just made it: let it finish
        while True:
            lines = PASSWORD_STORE.read_text().splitlines()
            if lines and lines[0]:
                return lines[0]
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        fd = os.open(PASSWORD_STORE, os.O_WRONLY | os.O_TRUNC)
    password = secrets.token_urlsafe(18)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def _wait_pid_file(pid_file: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise EsRemoteError(f"sshd did not write {pid_file} within {START_TIMEOUT:g}s")


def _wait_listening(layout: Layout, alive, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(layout.nodes())
    while pending:
        if not alive():
            raise EsRemoteError(f"{what} exited before listening")
        if time.monotonic() > deadline:
            raise EsRemoteError(f"{what} is not listening on {', '.join(f'{n.ip}:{n.ssh_port}' for n in pending)}"
                                f" after {START_TIMEOUT:g}s")
        pending = [n for n in pending if not port_open(n.ip, n.ssh_port)]
        if pending:
            time.sleep(0.05)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
