"""Node-side tasks over SSH: edit elasticsearch.yml, put a file, add/remove keystore entries,
restart a node. Each one journals its intent (with the original) before it changes anything and
`done` after, and is skipped when the journal says it is done, so a resumed run never repeats it.

Secret values never pass through task parameters (Prefect may record them): a task gets the path of
a 0600 file in the run's directory and reads the value itself.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Any

from prefect import task

from esremote import yml_undo
from esremote.cluster.restart import RestartTimeouts, rolling_restart
from esremote.errors import SSHError
from esremote.esyml import EsYml
from esremote.redact import default_redactor
from esremote.tasks.common import ONCE, RETRYING, run_logger
from esremote.tasks.facts import node_keystore
from esremote.tasks.runtime import Run, get_run


def _skip(run: Run, step: str) -> bool:
    if run.journal.is_done(step):
        run_logger().info("%s: done in an earlier attempt, skipped", step)
        return True
    return False


def read_text(run: Run, node: str, path: str) -> bytes | None:
    resolved = run.node(node)
    conn = run.conn(resolved)
    if not conn.exists(path, sudo=resolved.ssh.sudo):
        return None
    return conn.read_file(path, sudo=resolved.ssh.sudo)


@task(name="edit-yml", task_run_name="edit-yml-{node}", **RETRYING)
def edit_yml(run_id: str, node: str, step: str, set_: dict[str, Any], unset: list[str] = ()) -> bool:
    """Apply setting changes to the node's elasticsearch.yml (comments and layout kept). True when
    the file changed. The original bytes go to the journal before the write, and the bytes written
    after it (a rollback tells by them whether anyone edited the file since)."""
    run = get_run(run_id)
    if _skip(run, step):
        return False
    resolved = run.node(node)
    path = str(resolved.yml_path)
    current = read_text(run, node, path) or b""
    original = run.journal.save_original(f"{step}.yml", current)
    run.journal.intent(step, node=node, path=path, original=original, set=set_, unset=list(unset))
    yml = EsYml.parse(current.decode("utf-8"), source=f"{node}:{path}")
    changed = yml.update(set_, list(unset))
    text = yml.text().encode("utf-8")
    if changed:
        run.conn(resolved).write_file(path, text, run_id=run.id, sudo=resolved.ssh.sudo)
    run.journal.done(step, changed=changed, written=run.journal.save_original(f"{step}.written.yml", text))
    return changed


def yml_edits(run: Run, steps: list[str]) -> list[yml_undo.Edit]:
    """The edits of one elasticsearch.yml that `edit_yml` journaled under `steps`, in that order."""
    out = []
    for step in steps:
        first = run.journal.first_intent(step)
        if first is None:
            continue
        done = [e for e in run.journal.entries("done", step) if e.step == step and e.data.get("written")]
        written = run.journal.original(done[-1].data["written"]).decode("utf-8") if done else None
        out.append(yml_undo.Edit(original=run.journal.original(first.data["original"]).decode("utf-8"),
                        set=first.data.get("set") or {}, unset=first.data.get("unset") or [], written=written))
    return out


@task(name="undo-yml", task_run_name="undo-yml-{node}", **RETRYING)
def undo_yml(run_id: str, node: str, step: str, path: str, edits: list[str]) -> bool:
    """Undo the run's edits of the node's elasticsearch.yml (journaled under the steps `edits`) on
    the file as it is now (esremote.yml_undo): untouched since the run, it gets its original bytes
    back; else each setting the run wrote gets its old value back and every other line stays. A
    setting someone changed since raises YmlConflict and nothing is written. The current bytes go to
    the journal, and the intent, before the write; a no-op when done or already restored."""
    run = get_run(run_id)
    if _skip(run, step):
        return False
    resolved = run.node(node)
    current = read_text(run, node, path)
    if current is None:
        raise SSHError(f"{path} is missing: the rollback edits it, it does not write a new one; put it back "
                       f"(its backup is beside it, *.esremote-{run.id}.bak), then run the rollback again",
                       host=node, transient=False)
    result = yml_undo.undo(current.decode("utf-8"), yml_edits(run, edits), source=f"{node}:{path}")
    if result.conflicts:
        raise yml_undo.YmlConflict(node, path, result.conflicts)
    data = result.text.encode("utf-8")
    if data != current:
        backup = run.journal.save_original(f"{step}.yml", current)
        run.journal.intent(step, node=node, path=path, original=backup, whole_file=result.whole_file,
                           set={k: v for k, v in result.restored.items() if v is not yml_undo.ABSENT},
                           unset=[k for k, v in result.restored.items() if v is yml_undo.ABSENT])
        run.conn(resolved).write_file(path, data, run_id=run.id, sudo=resolved.ssh.sudo)
    run.journal.done(step, changed=data != current)
    return data != current


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _changed_since_run(run: Run, node: str, path: str, wrote: str | None, current: bytes) -> None:
    """Raise, naming the node and file, when a file the run put no longer holds what it wrote
    (`wrote`: their SHA-256): someone else's bytes are not the rollback's to overwrite or remove."""
    if wrote is not None and digest(current) != wrote:
        raise SSHError(f"{path} was changed since the run wrote it; the rollback left it as it is. Put back "
                       f"what it held before the run, or remove it if it was not there, by hand (or put "
                       f"back the run's copy), then run the rollback again", host=node, transient=False)


@task(name="restore-file", task_run_name="restore-file-{node}", **RETRYING)
def restore_file(run_id: str, node: str, step: str, path: str, original: str, mode: int | None = None,
                 wrote: str | None = None) -> bool:
    """Write back a file's original bytes (and `mode`, else the current one) from the journal
    (rollback); a no-op when it has them. When the run put the file (`wrote`: the SHA-256 of what it
    wrote) and it holds other bytes now, it is left alone (raises). The file keeps its owner and
    group (a file removed meanwhile comes back with its directory's)."""
    run = get_run(run_id)
    if _skip(run, step):
        return False
    resolved = run.node(node)
    data = run.journal.original(original)
    current = read_text(run, node, path)
    if current is not None and current != data:
        _changed_since_run(run, node, path, wrote, current)
    run.journal.intent(step, node=node, path=path, original=original)
    result = run.conn(resolved).write_file(path, data, run_id=run.id, sudo=resolved.ssh.sudo, mode=mode,
                                           inherit_owner=True)
    run.journal.done(step, changed=result.changed)
    return result.changed


@task(name="put-file", task_run_name="put-file-{node}", **RETRYING)
def put_file(run_id: str, node: str, step: str, relative: str, source: str, mode: int) -> bool:
    """Copy a local file of the run's directory to `config_dir/relative` on the node.

    A new file gets `mode` and its directory's owner and group (`root:elasticsearch` in a package
    install: Elasticsearch reads it through the group); a missing directory is made with its
    parent's owner and group, mode 2750. A file that is already there keeps its owner, group and
    mode (es-facts §12)."""
    run = get_run(run_id)
    if _skip(run, step):
        return False
    resolved = run.node(node)
    target = resolved.config_dir / relative
    conn = run.conn(resolved)
    sudo = resolved.ssh.sudo
    before = conn.stat(str(target), sudo=sudo)
    # Rollback reads the first intent: it writes back the original bytes, or removes the file (and
    # the directory) when they were not there, if the file still holds what the run wrote.
    original = None
    if before is not None:
        original = run.journal.save_original(f"{step}.file", conn.read_file(str(target), sudo=sudo))
    dir_existed = before is not None or conn.exists(str(target.parent), sudo=sudo)
    data = Path(source).read_bytes()
    # `wrote`: the rollback leaves the file alone once it holds anything else.
    run.journal.intent(step, node=node, path=str(target), existed=before is not None, original=original,
                       mode=before.mode if before else None, dir_existed=dir_existed, wrote=digest(data))
    if not dir_existed:
        conn.ensure_dir(str(target.parent), sudo=sudo)
    result = conn.write_file(str(target), data, run_id=run.id, sudo=sudo,
                             mode=mode if before is None else None, inherit_owner=True)
    _check_service_user_reads(run, node, str(target))
    run.journal.done(step, changed=result.changed)
    return result.changed


def _check_service_user_reads(run: Run, node: str, path: str) -> None:
    """Elasticsearch runs as `service_user` and stops at start on a file it cannot read
    (AccessDeniedException, es-facts §12): find that now, before any restart."""
    resolved = run.node(node)
    conn = run.conn(resolved)
    user = resolved.service_user
    readable = conn.readable_by(path, user)
    if readable is None:
        run_logger().warning("%s: cannot check that %s can read %s (no such user on the node, or sudo may "
                             "not run commands as it); check service_user", node, user, path)
    elif not readable:
        st = conn.stat(path, sudo=resolved.ssh.sudo)
        how = f" (mode {st.mode:04o}, {st.owner}:{st.group})" if st else ""
        raise SSHError(f"{path}{how} is not readable by {user}, who runs Elasticsearch: the node would refuse "
                       f"to start with an AccessDeniedException. Give the config directory the service user's "
                       f"group (as a package install does: root:{user}, setgid) or correct service_user",
                       host=node, transient=False)


@task(name="remove-file", task_run_name="remove-file-{node}", **RETRYING)
def remove_file(run_id: str, node: str, step: str, path: str, directory: str | None = None,
                wrote: str | None = None) -> bool:
    """Remove a file the run added (rollback), then `directory` too when it is left empty (the run
    created it). True when something was removed; a no-op when it is already gone. A file that
    holds other bytes than the run wrote (`wrote`: their SHA-256) is left alone (raises)."""
    run = get_run(run_id)
    if _skip(run, step):
        return False
    resolved = run.node(node)
    conn = run.conn(resolved)
    sudo = resolved.ssh.sudo
    current = read_text(run, node, path)
    if current is not None:
        _changed_since_run(run, node, path, wrote, current)
        run.journal.intent(step, node=node, path=path)
        conn.run(f"rm -f -- {shlex.quote(path)}", sudo=sudo)
    if directory is not None:
        q = shlex.quote(directory)
        # Another removal may empty and remove it at the same time: gone is as good as removed.
        conn.run(f"rmdir --ignore-fail-on-non-empty -- {q} 2>/dev/null || [ ! -d {q} ]", sudo=sudo)
    run.journal.done(step, changed=current is not None)
    return current is not None


def written_paths(run: Run, node: str) -> list[str]:
    """Every file of the node the run wrote or may have backed up: its elasticsearch.yml, its
    keystore, and each path a journaled step names for it."""
    resolved = run.node(node)
    paths = {str(resolved.yml_path), str(resolved.keystore_path)}
    for step in run.journal.started_steps():
        data = run.journal.first_intent(step).data
        if data.get("node") == node and data.get("path"):
            paths.add(str(data["path"]))
    return sorted(paths)


@task(name="remove-backups", task_run_name="remove-backups-{node}", **RETRYING)
def remove_backups(run_id: str, node: str, step: str) -> list[str]:
    """Remove the run's `*.esremote-<run id>.bak` copies from the node, once the run has ended in a
    verified state (migrated, or rolled back): the journal keeps what a later rollback needs, and a
    backup left in the config directory is a stray file where Elasticsearch reads. Idempotent."""
    run = get_run(run_id)
    resolved = run.node(node)
    paths = written_paths(run, node)
    run.journal.intent(step, node=node, paths=paths)
    removed = run.conn(resolved).remove_backups(paths, run_id=run.id, sudo=resolved.ssh.sudo)
    run.journal.done(step, removed=removed)
    return removed


@task(name="keystore-add", task_run_name="keystore-add-{node}", **RETRYING)
def keystore_add(run_id: str, node: str, step: str, secret_files: dict[str, str]) -> list[str]:
    """Add settings to the node's keystore, each value read from a 0600 file and sent on stdin.
    The journal records which entries were there before (names only); the keystore is first copied
    to its run backup beside it (`elasticsearch.keystore.esremote-<run id>.bak`, owner, group and
    mode kept), which stays there until the run ends verified (`remove_backups`)."""
    run = get_run(run_id)
    if _skip(run, step):
        return []
    keystore = node_keystore(run, node)
    before = keystore.list() if keystore.exists() else []
    first = run.journal.first_intent(step)
    run.journal.intent(step, node=node, before=first.data["before"] if first else before,
                       adding=sorted(secret_files))
    resolved = run.node(node)
    run.conn(resolved).backup(keystore.path, run_id=run.id, sudo=resolved.ssh.sudo)
    values = {}
    for name, source in secret_files.items():
        value = Path(source).read_text().rstrip("\n")
        default_redactor.add(value)
        values[name] = value
    keystore.add_all(values)
    run.journal.done(step, added=sorted(values))
    return sorted(values)


@task(name="keystore-digest", task_run_name="keystore-digest-{node}", **RETRYING)
def keystore_digest(run_id: str, node: str, step: str) -> str | None:
    """The hex SHA-256 of the node's keystore file as it is now, journaled: a resumed run compares
    a node's reload report with what was written then, not with what is there later."""
    run = get_run(run_id)
    earlier = [e for e in run.journal.entries("done", step) if e.step == step]
    if earlier:
        return earlier[-1].data.get("digest")
    digest = node_keystore(run, node).digest()
    run.journal.done(step, node=node, digest=digest)
    return digest


@task(name="keystore-remove", task_run_name="keystore-remove-{node}", **RETRYING)
def keystore_remove(run_id: str, node: str, step: str, names: list[str]) -> list[str]:
    """Remove settings from the node's keystore (rollback); names already absent are fine."""
    run = get_run(run_id)
    keystore = node_keystore(run, node)
    removed = [name for name in names if keystore.remove(name, missing_ok=True)]
    run.journal.done(step, removed=removed)
    return removed


@task(name="restart", task_run_name="restart-{node}", **ONCE)
def restart_node(run_id: str, node: str, step: str, force: bool = False) -> float:
    """Rolling restart of one node (allocation primaries, flush, restart, rejoin, green). Not
    retried: a node that does not come back needs a person, and its log tail says why."""
    run = get_run(run_id)
    if not force and _skip(run, step):
        return 0.0
    resolved = run.node(node)
    run.journal.intent(step, node=node)
    # The deadline bounds the restart command too: systemctl waits for the node to start, and a
    # node slower than the run allows is a failure (rolled back), not a longer outage.
    deadline = run.params.node_timeout_s
    timeouts = RestartTimeouts(command=deadline, rejoin=deadline, green=deadline * 2)
    report = rolling_restart(run.inventory, resolved.cluster, pool=run.pool, es=run.es(resolved.cluster),
                             nodes=[resolved.name], timeouts=timeouts)
    seconds = report.nodes[0].seconds if report.nodes else 0.0
    run.journal.done(step, seconds=seconds)
    run_logger().info("%s restarted and back in %.1fs", node, seconds)
    return seconds


def node_changed(run: Run, phase: str, node: str) -> bool:
    """Whether this run changed the node's files or keystore in `phase` (so it needs a restart),
    read from the journal so that a resumed run still knows."""
    for entry in run.journal.entries("done", f"{phase}/"):
        if entry.step.endswith(f"/{node}") and (entry.data.get("changed") or entry.data.get("added")):
            return True
    return False
