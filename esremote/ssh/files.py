"""Files on a node, through the node's own shell: read, stat, back up, write atomically (0600 temp
file in the same directory, fsync, rename, mode/owner/group kept or inherited from the directory),
make directories. A mixin of SSHConnection: every operation is a command it runs."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import PurePosixPath

from esremote.errors import RemoteCommandError, SSHError, SudoError
from esremote.ssh.results import FileStat, WriteResult


_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class RemoteFiles:
    """File operations of a connection (needs `run`, `exists` is built on it)."""

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
                          + _backup_step(p, b),
                          sudo=sudo, check=False, display=f"backup {path}")
        if result.exit_code == 3:
            return None
        if result.exit_code != 0:
            raise RemoteCommandError(host=self.host, command=result.command, exit_code=result.exit_code,
                                     stderr=result.stderr, stdout=result.stdout)
        return _backup_path(path, run_id)

    def remove_backups(self, paths: list[str], *, run_id: str, sudo: bool = False) -> list[str]:
        """Remove the run's backups of `paths` (`NAME.esremote-<run id>.bak`, beside each file or
        its symlink's target, and a partial `.bak.tmp`): once the run has ended consistently they
        are stray files in the directory Elasticsearch reads. Returns the backups removed."""
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r} must match {_RUN_ID.pattern}")
        suffix = shlex.quote(f".esremote-{run_id}.bak")
        script = "set -eu\n" + "".join(
            f"r=$(readlink -f -- {shlex.quote(str(p))} || printf %s {shlex.quote(str(p))})\n"
            f'for b in "$r"{suffix} "$r"{suffix}.tmp; do\n'
            f'  if [ -e "$b" ]; then rm -f -- "$b"; printf \'%s\\n\' "$b"; fi\n'
            "done\n" for p in paths)
        result = self.run(script, sudo=sudo, display="remove the run's backups")
        return [line for line in result.stdout.splitlines() if line]

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
    backup_step = _backup_step(p, b) if before is not None else ""
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


def _backup_step(p: str, b: str) -> str:
    """Shell copying quoted `p` to quoted `b` through `b.tmp`, unless `b` exists. A failed copy (a
    full disk) removes its partial file and stops the script: no stray file, and no write without
    its backup (`cp || ...` in an `&&` list would not stop a `set -e` script)."""
    return (f"if [ ! -e {b} ]; then cp -p -- {p} {b}.tmp || {{ rm -f -- {b}.tmp; exit 1; }}; "
            f"mv -f -- {b}.tmp {b}; fi\n")


def _backup_path(path: str, run_id: str) -> str:
    return f"{path}.esremote-{run_id}.bak"


