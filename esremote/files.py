"""Local file safety: back up before editing, write atomically, keep mode and owner.

The same rules apply on nodes (see ssh.py); this module is for files on the machine esremote runs
on (offline commands, the lab, the journal).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def run_stamp() -> str:
    """A sortable id for backups made outside a migration run (offline commands)."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def backup_path(path: str | os.PathLike, run_id: str) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.esremote-{run_id}.bak")


def backup(path: str | os.PathLike, run_id: str) -> Path | None:
    """Copy `path` to `NAME.esremote-<run id>.bak` beside it (mode and owner kept).

    An existing backup of the same run is kept as it is: it holds the original from before the run,
    and re-running a step must not overwrite it with an already edited file.
    """
    path = Path(path)
    if not path.exists():
        return None
    target = backup_path(path, run_id)
    if not target.exists():
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            shutil.copy2(path, tmp)
            _copy_owner(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written copy must not look like a backup later
            raise
    return target


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int | None = None,
                 default_mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file in the same directory, fsync, rename.

    An existing file keeps its mode and owner unless `mode` is given; a new file gets
    `default_mode`. The directory is fsynced so the rename survives a crash.
    """
    path = Path(path)
    existing = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif existing is not None:
            os.chmod(tmp, existing.st_mode & 0o7777)
        else:
            os.chmod(tmp, default_mode)
        if existing is not None:
            _chown(tmp, existing.st_uid, existing.st_gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _copy_owner(src: Path, dst: Path) -> None:
    st = src.stat()
    _chown(dst, st.st_uid, st.st_gid)


def _chown(path: str | os.PathLike, uid: int, gid: int) -> None:
    try:
        os.chown(path, uid, gid)
    except PermissionError:
        # Only root can give a file away; a non-root user editing its own file keeps ownership anyway.
        if os.stat(path).st_uid != uid:
            raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
