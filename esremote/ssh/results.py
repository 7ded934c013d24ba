"""What running something on a node gives back: command results, file facts, write results."""

from __future__ import annotations

import time
from dataclasses import dataclass

from esremote.errors import SSHError


class CommandTimeoutError(SSHError):
    """A remote command did not finish in time (its channel is closed; worth a retry)."""

    transient = True


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


