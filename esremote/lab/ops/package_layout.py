"""Nodes laid out like a deb/rpm install when the lab runs as root (es-facts §12, DESIGN.md).

Elasticsearch runs as the system user `elasticsearch` and refuses root; its config directory and
every file in it are `root:elasticsearch`, the directory setgid so new files inherit the group, the
files group-readable; data and logs belong to `elasticsearch`. The lab plays exactly that, so a
tool that writes a file the service user cannot read sees the node refuse to start, as in
production. Without root none of this can be played: nodes run as the invoking user, and `lab up`
says which checks are off.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from esremote.errors import ConfigError

SERVICE_USER = "elasticsearch"
CONFIG_DIR_MODE = 0o2750
CONFIG_FILE_MODE = 0o660
OWNED_DIR_MODE = 0o750
# What the node writes: its data, logs and pid file (the package's /var/lib, /var/log, /run dirs).
NODE_OWNED_DIRS = ("data", "logs", "run")
OFF_NOTE = ("lab: not running as root, so the package-install checks are off: nodes run as {user}, "
            "not as user elasticsearch, and file owners and modes are not enforced")


@dataclass(frozen=True)
class ServiceAccount:
    user: str
    uid: int
    gid: int


def active() -> bool:
    """The package layout is played only by root (it needs a system user and chown)."""
    return os.geteuid() == 0


def off_note() -> str:
    return OFF_NOTE.format(user=pwd.getpwuid(os.geteuid()).pw_name)


def service_account(create: bool = True) -> ServiceAccount:
    """The system user and group `elasticsearch`, created as the packages do when missing."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        if not create:
            raise
        _create_account()
        entry = pwd.getpwnam(SERVICE_USER)
    return ServiceAccount(SERVICE_USER, entry.pw_uid, entry.pw_gid)


def _create_account() -> None:
    try:
        grp.getgrnam(SERVICE_USER)
    except KeyError:
        _run(["groupadd", "--system", SERVICE_USER])
    _run(["useradd", "--system", "--gid", SERVICE_USER, "--no-create-home", "--home-dir", "/nonexistent",
          "--shell", "/usr/sbin/nologin", "--comment", "elasticsearch user", SERVICE_USER])


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"cannot create the system account {SERVICE_USER} ({' '.join(argv[:2])}: "
                          f"{result.stderr.strip()})")


def check_reachable(path: Path, account: ServiceAccount) -> None:
    """Refuse a lab directory the service user cannot reach: every node would fail to start."""
    for directory in [d for d in (path, *path.parents) if d.is_dir()]:  # a file in the way: mkdir says so
        info = directory.stat()
        if not _can_search(info, account):
            raise ConfigError(
                f"--dir {path}: lab nodes run as user {account.user}, like a package install, and cannot "
                f"reach it: {directory} is mode {stat.S_IMODE(info.st_mode):04o} "
                f"({pwd.getpwuid(info.st_uid).pw_name}); use a directory every user can traverse, or "
                f"`chmod o+x {directory}`")


def _can_search(info: os.stat_result, account: ServiceAccount) -> bool:
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def lay_out_node(home: Path, account: ServiceAccount) -> None:
    """config/ as root:elasticsearch (dirs 2750, files 0660); data, logs, run owned by elasticsearch."""
    config = home / "config"
    for directory, _, files in os.walk(config):
        _own(Path(directory), 0, account.gid, CONFIG_DIR_MODE)
        for name in files:
            _own(Path(directory) / name, 0, account.gid, CONFIG_FILE_MODE)
    for name in NODE_OWNED_DIRS:
        (home / name).mkdir(exist_ok=True)
        _own(home / name, account.uid, account.gid, OWNED_DIR_MODE)


def lay_out_state(state_dir: Path, account: ServiceAccount) -> None:
    """The cluster's shared state is what Elasticsearch keeps under path.data: the service user's."""
    state_dir.mkdir(parents=True, exist_ok=True)
    for directory, _, files in os.walk(state_dir):
        _own(Path(directory), account.uid, account.gid, OWNED_DIR_MODE)
        for name in files:
            os.chown(Path(directory) / name, account.uid, account.gid)


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid)
    os.chmod(path, mode)
