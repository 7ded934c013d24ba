"""`rotate-cross-cluster-key`: a new cross-cluster API key for each alias, with no restart.

Per alias: find the key every local node uses (each node's keystore, over SSH) and check it can be
replaced (every local node 8.13+, a key esremote made for this alias); create a new key with the
same access and metadata (and `key_expiration`, else the old key's lifetime); write it to every
local node's keystore (value on stdin); reload secure settings (on 9.3+ every node must report the
`keystore_digest` of the file esremote wrote, read back right after the write); verify on every local node (its
keystore holds the new key; at its own address it is connected with credentials and coordinates a
cross-cluster request); then invalidate the old key. A changed credential value is used from the
next request on, without rebuilding the connection (es-facts §1), so cross-cluster search goes on
throughout (benchmarks/rotation.py measures it).

Any failure before the old key is invalidated rolls back by itself: the old key goes back into
every keystore, the nodes reload, the new key is invalidated and the old key is verified on every
node; the alias's status is then `rolled-back` (exit 3). Every step is journaled
(tasks/keys.py), so `esremote rotate --resume RUN_ID` finishes what a dead orchestrator started,
forwards or backwards.

    summary = run_rotation(RotationParams(inventory="inventory.yml", aliases=["my_remote"]))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from prefect import flow

from esremote.cluster import facts as cluster_facts
from esremote.errors import EsRemoteError, PreconditionError
from esremote.params import RotationParams
from esremote.flows.common import remove_backups, wait_all
from esremote.key_inventory import credentials_setting
from esremote.tasks import reports
from esremote.tasks.cluster import reload_credentials
from esremote.tasks.common import install_redaction, run_logger
from esremote.tasks.keys import (
    commit_rotation,
    create_rotated_key,
    done_data,
    invalidate_new_key,
    invalidate_old_key,
    key_value_file,
    rollback_verify,
    rotation_start,
    step,
    verify_key_in_use,
    verify_rotation,
)
from esremote.tasks.nodes import keystore_add, keystore_digest
from esremote.tasks.runtime import Run, close_run, open_run

Status = Literal["rotated", "rolled-back", "refused", "failed", "rollback-failed"]
EXIT_CODES = {"rotated": 0, "rolled-back": 3, "refused": 2, "failed": 1, "rollback-failed": 1}

# Test hooks, called as hook(run_id, alias, new_key_id) after the nodes reloaded and before the
# verification (e.g. to invalidate the new key and watch the rollback). Empty in production.
BEFORE_VERIFY: list[Callable[[str, str, str], None]] = []
# The same, called after the keystores are written and before the reload.
BEFORE_RELOAD: list[Callable[[str, str, str], None]] = []


class RotationError(EsRemoteError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RotationSummary:
    run_id: str
    status: Status
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)   # alias -> its outcome
    message: str = ""
    journal_dir: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RotationSummary:
        return cls(**data)

    def settle(self) -> None:
        """The run's status: the worst of its aliases'."""
        order = ["rollback-failed", "failed", "refused", "rolled-back", "rotated"]
        statuses = [a["status"] for a in self.aliases.values()] or ["failed"]
        self.status = next(s for s in order if s in statuses)
        self.message = "; ".join(f"{alias}: {a['message']}" for alias, a in self.aliases.items())

    def to_text(self) -> str:
        lines = [f"run id: {self.run_id}", f"status: {self.status}"]
        for alias, a in self.aliases.items():
            lines.append(f"{alias}: {a['status']}: {a['message']}")
            if a.get("new_key_id"):
                lines.append(f"  key {a.get('old_key_id')} -> {a['new_key_id']}; new key expires: "
                             f"{a.get('expiration') or 'never'}; took {a.get('seconds', 0):.1f}s")
        if self.journal_dir:
            lines.append(f"journal: {self.journal_dir}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [f"# Key rotation {self.status}", "", f"- run id: `{self.run_id}`", "",
                 "| alias | status | old key | new key | expires | message |", "|---|---|---|---|---|---|"]
        for alias, a in self.aliases.items():
            lines.append(f"| {alias} | {a['status']} | {a.get('old_key_id') or ''} | {a.get('new_key_id') or ''} | "
                         f"{a.get('expiration') or 'never'} | {a['message'].replace('|', '/')} |")
        return "\n".join(lines) + "\n"


def _name() -> str:
    from prefect.runtime import flow_run  # noqa: PLC0415

    params = (flow_run.parameters or {}).get("params")
    aliases = params.get("aliases") if isinstance(params, dict) else getattr(params, "aliases", None)
    return "rotate-" + ("-".join(aliases) if aliases else "all-aliases")


@flow(name="rotate-cross-cluster-key", flow_run_name=_name, log_prints=False)
def rotate_cross_cluster_key(params: RotationParams) -> dict:
    """Replace the cross-cluster API key of each alias without a restart; roll back on any failure
    before the old key is invalidated."""
    install_redaction()
    run = open_run(params.migration_params())
    if not run.journal.entries("note", "rotate/params"):
        run.journal.note("rotate/params", params=params.public())
    summary = RotationSummary(run.id, "failed", journal_dir=str(run.journal.run_dir))
    try:
        for alias in run.aliases:
            summary.aliases[alias] = _rotate(run, alias)
        summary.settle()
        if summary.status in ("rotated", "rolled-back", "refused"):  # ended verified: no backup left
            _remove_backups(run, summary)
    finally:
        reports.save(run.journal.run_dir, "rotation.json", summary.to_dict())
        reports.markdown(reports.run_key(run, "rotation"), summary.to_markdown(), description="Key rotation")
        close_run(run.id)
    if summary.status != "rotated":
        raise RotationError(f"rotation {summary.status} (run {run.id}): {summary.message}", summary.exit_code)
    return summary.to_dict()


def _rotate(run: Run, alias: str) -> dict[str, Any]:
    log = run_logger()
    ended = [e for e in run.journal.entries("note", step("end", alias)) if e.step == step("end", alias)]
    unfinished = (run.journal.first_intent(step("invalidate-old", alias)) is not None
                  and not run.journal.is_done(step("commit", alias)))
    if ended and ended[-1].data.get("status") != "rollback-failed" and not unfinished:
        log.info("alias %s: this run already ended (%s)", alias, ended[-1].data.get("status"))
        return ended[-1].data["outcome"]
    started = time.monotonic()
    if _rollback_started(run, alias):
        return _roll_back(run, alias, "resumed rollback", started)
    if run.journal.first_intent(step("invalidate-old", alias)) is None:
        try:
            rotation_start(run.id, alias)
        except Exception as exc:  # noqa: BLE001 - nothing changed yet: report and stop this alias
            status = "refused" if isinstance(exc, PreconditionError) else "failed"
            return _end(run, alias, status, f"nothing changed: {_brief(exc)}", started)
        try:
            new = create_rotated_key(run.id, alias)
            _write_keystores(run, alias, "next", "keystore")
            written = _written_digests(run, alias)
            local = run.link(alias).local
            for hook in BEFORE_RELOAD:
                hook(run.id, alias, new["key_id"])
            if not run.journal.is_done(step("reload", alias)):
                reload_credentials(run.id, local, step("reload", alias))
            check_reloaded_digests(run, alias, written)
            for hook in BEFORE_VERIFY:
                hook(run.id, alias, new["key_id"])
            verify_rotation(run.id, alias)
        except Exception as exc:  # noqa: BLE001 - the old key is still valid: put it back
            return _roll_back(run, alias, _brief(exc), started)
    try:
        invalidate_old_key(run.id, alias)
        commit = commit_rotation(run.id, alias)
    except Exception as exc:  # noqa: BLE001 - past the point of no return: only forwards
        return _end(run, alias, "failed", f"the new key is in every keystore and verified, but invalidating the old "
                                          f"key or recording the new one failed: {_brief(exc)}; resume with "
                                          f"esremote rotate --resume {run.id}", started)
    try:  # the old key is gone now: every node must still get through with the new one
        verify_key_in_use(run, alias, commit["key_id"])
    except EsRemoteError as exc:
        return _end(run, alias, "failed", f"the old key {commit['old_key_id']} is invalidated and the new key "
                                          f"{commit['key_id']} is in every keystore, but the check after it "
                                          f"failed: {_brief(exc)}", started)
    log.info("alias %s: key %s replaced by %s, no restart", alias, commit["old_key_id"], commit["key_id"])
    return _end(run, alias, "rotated", f"key {commit['old_key_id']} replaced by {commit['key_id']} and invalidated; "
                                       "every local node verified, no restart", started)


def _remove_backups(run: Run, summary: RotationSummary) -> None:
    """The keystore backups this run made (each holds the old key) leave the nodes; where that
    fails they stay, and the summary says so."""
    try:
        remove_backups(run, "rotate")
    except Exception as exc:  # noqa: BLE001 - the rotation stands; say what is left
        run_logger().warning("the run's keystore backups could not be removed: %s", _brief(exc))
        summary.message += (f"; the keystore backups (elasticsearch.keystore.esremote-{run.id}.bak) are still on "
                            f"some nodes ({_brief(exc)}): remove them by hand")


def _write_keystores(run: Run, alias: str, slot: str, kind: str) -> None:
    """The slot's value into `cluster.remote.<alias>.credentials` of every local node (stdin)."""
    source = key_value_file(run, alias, slot)
    local = run.link(alias).local
    futures = []
    for node in run.nodes(local):
        key = f"{local}/{node.name}"
        futures.append((f"keystore {key}", keystore_add.submit(run.id, key, f"rotate/{kind}/{alias}/{node.name}",
                                                               {credentials_setting(alias): source})))
    wait_all(futures)


def _written_digests(run: Run, alias: str) -> dict[str, str]:
    """Each local node's keystore digest right after esremote wrote the new key, when every local
    node is 9.3+ (its reload reports the digest of the keystore it read, es-facts §12); else {}."""
    local = run.link(alias).local
    facts = cluster_facts.gather(run.es(local), local)
    if not facts.nodes or any(n.version < cluster_facts.RELOAD_REPORTS_KEYSTORE for n in facts.nodes):
        return {}
    futures = [(f"keystore digest {local}/{node.name}",
                keystore_digest.submit(run.id, f"{local}/{node.name}", f"rotate/digest/{alias}/{node.name}"))
               for node in run.nodes(local)]
    digests = wait_all(futures)
    return {node.name: digest for node, digest in zip(run.nodes(local), digests) if digest}


def check_reloaded_digests(run: Run, alias: str, written: dict[str, str]) -> None:
    """On 9.3+: every local node reloaded the very keystore esremote wrote (its `keystore_digest`
    equals the digest read back after the write). A node that read another file (another config
    directory, or a keystore changed since) would keep the old key until its next restart."""
    if not written:
        return
    reload = done_data(run, step("reload", alias)) or {}
    reported, paths = reload.get("digests") or {}, reload.get("keystore_paths") or {}
    wrong = [f"{name} reloaded {paths.get(name, 'a keystore')} with digest {reported.get(name) or 'none reported'}, "
             f"esremote wrote {digest}" for name, digest in sorted(written.items()) if reported.get(name) != digest]
    if wrong:
        raise EsRemoteError(f"alias {alias}: not every local node reloaded the keystore esremote wrote: "
                            f"{'; '.join(wrong)}. Check each node's config directory (config_dir in the inventory) "
                            "and whether something else writes its keystore")
    run_logger().info("alias %s: every local node reloaded the keystore esremote wrote (digest checked on %d "
                      "node(s))", alias, len(written))


def _rollback_started(run: Run, alias: str) -> bool:
    return any(e.step == f"rotate/rollback/{alias}" for e in run.journal.entries("note", f"rotate/rollback/{alias}"))


def _roll_back(run: Run, alias: str, cause: str, started: float) -> dict[str, Any]:
    """The old key back in every keystore, reload, the new key invalidated, the old key verified."""
    log = run_logger()
    if not _rollback_started(run, alias):
        run.journal.note(f"rotate/rollback/{alias}", cause=cause)
    log.error("alias %s: rotation failed (%s); putting the old key back", alias, cause)
    old = done_data(run, step("old-key", alias)) or {}
    try:
        if old:
            _write_keystores(run, alias, "previous", "rollback/keystore")
            reload_credentials(run.id, run.link(alias).local, f"rotate/rollback/reload/{alias}")
        invalidate_new_key(run.id, alias)
        if old:
            rollback_verify(run, alias)
    except Exception as exc:  # noqa: BLE001 - both failures go to the operator
        return _end(run, alias, "rollback-failed", f"rotation failed ({cause}) and putting the old key back failed "
                                                   f"too ({_brief(exc)}); resume with esremote rotate --resume "
                                                   f"{run.id}", started)
    new = done_data(run, step("create-key", alias)) or {}
    return _end(run, alias, "rolled-back", f"rotation failed ({cause}); the old key {old.get('old_key_id')} is back "
                                           "in every keystore and verified on every node; the new key "
                                           f"{new.get('key_id', '(none)')} is invalidated", started)


def _end(run: Run, alias: str, status: Status, message: str, started: float) -> dict[str, Any]:
    old = done_data(run, step("old-key", alias)) or {}
    new = done_data(run, step("create-key", alias)) or {}
    outcome = {"status": status, "message": message, "old_key_id": old.get("old_key_id"),
               "new_key_id": new.get("key_id") if status == "rotated" else None,
               "expiration": new.get("expiration") if status == "rotated" else None,
               "expires_at": new.get("expires_at") if status == "rotated" else None,
               "seconds": round(time.monotonic() - started, 2)}
    run.journal.note(step("end", alias), status=status, outcome=outcome)
    (run_logger().info if status == "rotated" else run_logger().error)("alias %s: %s: %s", alias, status, message)
    return outcome


def _brief(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EsRemoteError) else f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0][:600] if text else type(exc).__name__


# ------------------------------------------------------------------------------------------ entry


def run_rotation(params: RotationParams) -> RotationSummary:
    """Run the flow (ephemeral Prefect unless PREFECT_API_URL is set) and read its summary from the
    run's directory, whatever the flow's final state."""
    from esremote.journal import Journal, new_run_id  # noqa: PLC0415

    if params.run_id is None:
        params = params.model_copy(update={"run_id": new_run_id()})
    install_redaction()
    state = rotate_cross_cluster_key(params, return_state=True)
    journal_dir = Journal._run_dir(params.run_id, params.state_dir)
    saved = reports.load(journal_dir, "rotation.json")
    if saved is not None:
        return RotationSummary.from_dict(saved)
    try:
        state.result()
        message = state.message or state.name
    except Exception as exc:  # noqa: BLE001 - the flow's failure, as one line
        message = _brief(exc)
    return RotationSummary(params.run_id, "failed", message=message, journal_dir=str(journal_dir))


def recorded_params(run_id: str, state_dir=None) -> dict[str, Any]:
    """The parameters a rotation run started with (its journal's `rotate/params` note)."""
    from esremote.journal import Journal  # noqa: PLC0415

    journal = Journal.open(run_id, state_dir=state_dir)
    notes = journal.entries("note", "rotate/params")
    if not notes:
        from esremote.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(f"run {run_id} is not a key rotation (no rotate/params in its journal)")
    return json.loads(json.dumps(notes[0].data["params"]))
