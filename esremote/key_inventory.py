"""The cross-cluster API keys of every remote cluster of an inventory, which alias uses which, their
expiry, and the keys no alias uses (orphans).

Which key an alias uses: Elasticsearch does not say over REST (`_remote/info` shows
`cluster_credentials: ::es_redacted::`, and nothing on the remote records a key's last use), and
every local node loads its own keystore (es-facts §12). So esremote reads
`cluster.remote.<alias>.credentials` from each local node's keystore over SSH (the file opened with
the keystore's own format, as its owner), keeps the key id (the part of base64(id:api_key) before the
colon) and drops the secret. That is what the node loaded when esremote wrote it: every esremote
write of credentials is followed by a reload (8.13+) or a restart, and rotation checks it. A node
whose keystore cannot be read makes the alias's usage uncertain; the key id the journal of the last
run that wrote the alias's key recorded (migration, or rotation) is then shown instead, marked as
such, and no key of that remote counts as an orphan. (9.3 reports each node's keystore digest on
reload, es-facts §12: not used yet.)

    usages = {a: read_alias_usage(inventory, a, pool) for a in inventory.aliases}
    report = build_report(inventory, {r: list_cross_cluster_keys(es_r, r) for r ...}, usages)
    report.orphans(managed_only=True)      # what `esremote keys --invalidate-orphans` may invalidate
    report.findings(warn_days=14)          # what `check-key-expiry` warns about
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from esremote.cluster.api_key import KeyInfo
from esremote.errors import EsRemoteError
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.redact import default_redactor

CREDENTIALS = "cluster.remote.{alias}.credentials"
DAY_MS = 86_400_000

Source = Literal["keystore", "journal", "none"]


def credentials_setting(alias: str) -> str:
    return CREDENTIALS.format(alias=alias)


def key_id_of(encoded: str) -> str | None:
    """The key id in an encoded cross-cluster key (base64 of `id:api_key`); the secret is taught to
    the redactor and dropped. None for a value that is not one."""
    default_redactor.add(encoded, with_encodings=False)
    try:
        key_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not sep or not key_id:
        return None
    default_redactor.add(secret)
    return key_id


# ------------------------------------------------------------------------------- what aliases use


@dataclass(frozen=True)
class AliasUsage:
    """The key an alias uses on its local cluster, node by node."""

    alias: str
    local: str
    remote: str
    by_node: Mapping[str, str | None] = field(default_factory=dict)   # node -> key id (None: no credentials)
    errors: Mapping[str, str] = field(default_factory=dict)            # node -> why it could not be read
    recorded: str | None = None        # key id a run's journal recorded (shown when a node is unreadable)
    recorded_by: str = ""              # that run's id

    @property
    def certain(self) -> bool:
        """Every local node's keystore was read."""
        return not self.errors and bool(self.by_node)

    @property
    def source(self) -> Source:
        if self.by_node and not self.errors:
            return "keystore"
        return "journal" if self.recorded else ("keystore" if self.by_node else "none")

    @property
    def key_ids(self) -> list[str]:
        """Key ids in use, most nodes first; the journal's record when no node could be read."""
        ids = [k for k in self.by_node.values() if k]
        counted = sorted(set(ids), key=lambda k: (-ids.count(k), k))
        if not counted and self.errors and self.recorded:
            return [self.recorded]
        return counted

    def nodes_with(self, key_id: str) -> list[str]:
        return sorted(n for n, k in self.by_node.items() if k == key_id)

    @property
    def without_credentials(self) -> list[str]:
        return sorted(n for n, k in self.by_node.items() if k is None)

    @property
    def split(self) -> bool:
        """Nodes hold different keys (or some none): an interrupted rotation or keystore edit."""
        return len(set(self.by_node.values())) > 1

    def describe(self) -> str:
        if self.source == "none":
            return "unknown: no local node's keystore could be read and no run recorded a key"
        parts = []
        for key_id in self.key_ids:
            nodes = self.nodes_with(key_id)
            parts.append(f"key {key_id} on {', '.join(nodes)}" if nodes
                         else f"key {key_id} (recorded by run {self.recorded_by}; not read from the nodes)")
        if self.without_credentials:
            parts.append(f"no credentials on {', '.join(self.without_credentials)}")
        if self.errors:
            parts.append("unreadable keystore on " + ", ".join(f"{n} ({why})" for n, why in sorted(self.errors.items())))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "local": self.local, "remote": self.remote, "source": self.source,
                "certain": self.certain, "key_ids": self.key_ids, "by_node": dict(self.by_node),
                "errors": dict(self.errors), "recorded": self.recorded, "recorded_by": self.recorded_by}


def node_keystore(node: ResolvedNode, pool):
    """The node's keystore over SSH, opened as the keystore file's owner (as the migration does)."""
    from esremote.node_keystore import NodeKeystore  # noqa: PLC0415

    target = node.ssh_target()
    if target.sudo_password is not None:
        default_redactor.add(target.sudo_password.get_secret_value())
    password = node.keystore_password.resolve() if node.keystore_password is not None else None
    if password is not None:
        default_redactor.add(password.get_secret_value())
    return NodeKeystore(pool.get(target), es_home=str(node.es_home), config_dir=str(node.config_dir),
                        password=password, sudo=node.ssh.sudo)


def node_key_id(node: ResolvedNode, pool, alias: str) -> str | None:
    """The key id in the node's `cluster.remote.<alias>.credentials` (None: no such entry)."""
    value = node_keystore(node, pool).show(credentials_setting(alias))
    if value is None:
        return None
    key_id = key_id_of(value.get_secret_value())
    if key_id is None:
        raise EsRemoteError(f"{node}: {credentials_setting(alias)} holds no cross-cluster API key "
                            "(not base64 of id:api_key)")
    return key_id


def read_alias_usage(inventory: Inventory, alias: str, pool, *, state_dir: Path | None = None,
                     max_workers: int = 8) -> AliasUsage:
    """Every local node's key for `alias` (in parallel); the journal's record when a node fails."""
    link = inventory.aliases[alias]
    nodes = {n.name: n for n in inventory.nodes(link.local)}
    outcomes = fan_out(list(nodes), lambda name: node_key_id(nodes[name], pool, alias), max_workers=max_workers)
    by_node = {n: k for n, k in outcomes.succeeded.items()}
    errors = {n: _brief(exc) for n, exc in outcomes.failed.items()}
    recorded, run_id = (None, "")
    if errors:
        recorded, run_id = recorded_key(link.local, alias, state_dir) or (None, "")
    return AliasUsage(alias, link.local, link.remote, by_node, errors, recorded, run_id)


def _brief(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EsRemoteError) else f"{type(exc).__name__}: {exc}"
    return default_redactor.redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


# ---------------------------------------------------------------------------------- journals


def _runs(state_dir: Path | None) -> list[Path]:
    from esremote.journal import default_state_dir  # noqa: PLC0415

    base = Path(state_dir or default_state_dir()) / "runs"
    return sorted(p for p in base.glob("*") if (p / "journal.jsonl").is_file()) if base.is_dir() else []


def _entries(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (run_dir / "journal.jsonl").read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break  # a torn last line
    return out


def recorded_key(local: str, alias: str, state_dir: Path | None = None) -> tuple[str, str] | None:
    """(key id, run id) of the newest run on this machine that left `alias` of `local` on a key: a
    finished rotation (`rotate/commit/<alias>`), or a migration whose summary says migrated."""
    best: tuple[str, str, str] | None = None  # (time, key id, run id)
    for run_dir in _runs(state_dir):
        entries = _entries(run_dir)
        found = None
        for e in entries:
            data = e.get("data") or {}
            if e.get("kind") == "done" and e.get("step") == f"rotate/commit/{alias}" and data.get("local") == local:
                found = (e["time"], data["key_id"], run_dir.name)
        if found is None and _migrated(run_dir):
            names = {(e.get("data") or {}).get("name") for e in entries
                     if e.get("kind") == "intent" and e.get("step") == f"prepare_remote/api-key/{alias}"}
            if f"esremote-{local}-{alias}" in names:
                for e in entries:
                    if e.get("kind") == "done" and e.get("step") == f"prepare_remote/api-key/{alias}":
                        found = (e["time"], (e.get("data") or {}).get("key_id"), run_dir.name)
        if found and found[1] and (best is None or found[0] > best[0]):
            best = found
    return (best[1], best[2]) if best else None


def _migrated(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("status") == "migrated"
    except (OSError, ValueError):
        return False


def unfinished_rotations(state_dir: Path | None = None) -> dict[str, set[str]]:
    """Run id -> aliases, for rotations on this machine that created a key and have not ended (or
    whose rollback failed): their new key may be in no keystore yet, and is not an orphan."""
    out: dict[str, set[str]] = {}
    for run_dir in _runs(state_dir):
        entries = _entries(run_dir)
        started = {e["step"].rsplit("/", 1)[1] for e in entries
                   if e.get("kind") == "intent" and e.get("step", "").startswith("rotate/create-key/")}
        ended = {e["step"].rsplit("/", 1)[1] for e in entries if e.get("step", "").startswith("rotate/end/")
                 and (e.get("data") or {}).get("status") != "rollback-failed"}
        if started - ended:
            out[run_dir.name] = started - ended
    return out


# ------------------------------------------------------------------------------------ the report


@dataclass(frozen=True)
class KeyRow:
    remote: str
    key: KeyInfo
    used_by: tuple[str, ...] = ()      # "my_remote on local-0, local-1"
    orphan: bool = False               # active, and no alias uses it (as far as known)
    unknown: str = ""                  # why its use cannot be known ("" when it can)

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        k = self.key
        return {"remote": self.remote, "id": k.id, "name": k.name, "managed": k.managed, "owner": k.owner,
                "state": k.state(now_ms), "creation": k.creation, "expiration": k.expiration,
                "days_left": _round(k.days_left(now_ms)), "used_by": list(self.used_by), "orphan": self.orphan,
                "unknown": self.unknown, "metadata": dict(k.metadata)}


@dataclass(frozen=True)
class Finding:
    """One alias's key, as check-key-expiry judges it."""

    alias: str
    key_id: str | None
    level: Literal["ok", "warning", "error"]
    message: str
    days_left: float | None = None


@dataclass
class KeyReport:
    now_ms: int
    keys: dict[str, list[KeyRow]]                 # remote -> rows
    usages: dict[str, AliasUsage]                 # alias -> usage
    key_errors: dict[str, str] = field(default_factory=dict)   # remote -> why its keys could not be listed
    aliases: dict[str, tuple[str, str]] = field(default_factory=dict)  # alias -> (local, remote)

    def key(self, remote: str, key_id: str) -> KeyInfo | None:
        return next((r.key for r in self.keys.get(remote, []) if r.key.id == key_id), None)

    def orphans(self, *, managed_only: bool = False) -> list[KeyRow]:
        return [r for rows in self.keys.values() for r in rows if r.orphan and (r.key.managed or not managed_only)]

    def findings(self, warn_days: int) -> list[Finding]:
        """Per alias and key it uses: expired, invalidated, unknown to the remote, or expiring within
        `warn_days` (warning); a split between nodes or an unreadable usage (warning); else ok."""
        out = []
        for alias, usage in self.usages.items():
            remote = usage.remote
            if usage.source == "none":
                out.append(Finding(alias, None, "warning", f"alias {alias}: {usage.describe()}"))
                continue
            if not usage.key_ids:
                out.append(Finding(alias, None, "ok", f"alias {alias}: no cross-cluster API key on any local node "
                                                      "(certificate model)"))
                continue
            if usage.split:
                out.append(Finding(alias, None, "warning", f"alias {alias}: local nodes differ: {usage.describe()}; "
                                                           "an interrupted rotation? resume or rerun it"))
            for key_id in usage.key_ids:
                out.append(self._judge(alias, remote, key_id, warn_days))
        return out

    def _judge(self, alias: str, remote: str, key_id: str, warn_days: int) -> Finding:
        if remote in self.key_errors:
            return Finding(alias, key_id, "error", f"alias {alias}: key {key_id}: the keys of {remote} could not "
                                                   f"be listed: {self.key_errors[remote]}")
        key = self.key(remote, key_id)
        if key is None:
            return Finding(alias, key_id, "error", f"alias {alias}: uses key {key_id}, which {remote} does not "
                                                   "have: every cross-cluster request fails; rotate it")
        state, days = key.state(self.now_ms), key.days_left(self.now_ms)
        if state == "invalidated":
            return Finding(alias, key_id, "error", f"alias {alias}: key {key_id} is invalidated: every "
                                                   "cross-cluster request fails; rotate it", days)
        if state == "expired":
            return Finding(alias, key_id, "error", f"alias {alias}: key {key_id} expired {_when(key.expiration)} "
                                                   "and cross-cluster requests fail with an authentication error; "
                                                   "rotate it now", days)
        if days is not None and days <= warn_days:
            return Finding(alias, key_id, "warning", f"alias {alias}: key {key_id} expires {_when(key.expiration)}, "
                                                     f"{_days(days)}: rotate it before then "
                                                     f"(esremote rotate --alias {alias})", days)
        expiry = "never expires" if days is None else f"expires {_when(key.expiration)}, {_days(days)}"
        return Finding(alias, key_id, "ok", f"alias {alias}: key {key_id} {expiry}", days)

    # -- rendering ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now_ms,
                "remotes": {r: [row.to_dict(self.now_ms) for row in rows] for r, rows in self.keys.items()},
                "errors": dict(self.key_errors),
                "aliases": {a: u.to_dict() for a, u in self.usages.items()}}

    def to_text(self) -> str:
        lines = []
        for remote, rows in self.keys.items():
            if remote in self.key_errors:
                lines += [f"remote cluster {remote}: keys not listed: {self.key_errors[remote]}", ""]
                continue
            lines.append(f"remote cluster {remote}: {len(rows)} cross-cluster API key(s)")
            table = [("id", "name", "managed", "state", "expires", "days left", "used by")]
            for row in rows:
                k = row.key
                table.append((k.id, k.name, "yes" if k.managed else "no", k.state(self.now_ms),
                              _date(k.expiration), _days_cell(k.days_left(self.now_ms)), _use(row)))
            widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
            lines.append("")
        lines.append("aliases:")
        for alias, usage in self.usages.items():
            lines.append(f"  {alias} ({usage.local} -> {usage.remote}): {usage.describe() or 'no credentials'}")
        lines.append("")
        lines.append("usage: read from cluster.remote.<alias>.credentials in each local node's keystore over SSH "
                     "(the key id only); a run's journal where a keystore could not be read")
        managed = self.orphans(managed_only=True)
        other = [r for r in self.orphans() if not r.key.managed]
        lines.append(f"orphans: {len(managed)} managed by esremote"
                     + (" (esremote keys --invalidate-orphans)" if managed else "")
                     + f", {len(other)} not managed by esremote (never invalidated by esremote)")
        return "\n".join(lines)

    def to_markdown(self, findings: Sequence[Finding] | None = None) -> str:
        lines = ["# Cross-cluster API keys", ""]
        if findings is not None:
            lines += ["| alias | key | level | finding |", "|---|---|---|---|"]
            lines += [f"| {f.alias} | {f.key_id or ''} | {f.level} | {_cell(f.message)} |" for f in findings]
            lines.append("")
        for remote, rows in self.keys.items():
            lines += [f"## {remote}", ""]
            if remote in self.key_errors:
                lines += [f"Keys not listed: {self.key_errors[remote]}", ""]
                continue
            lines += ["| id | name | managed | state | expires | days left | used by |", "|---|---|---|---|---|---|---|"]
            for row in rows:
                k = row.key
                lines.append(f"| {k.id} | {k.name} | {'yes' if k.managed else 'no'} | {k.state(self.now_ms)} | "
                             f"{_date(k.expiration)} | {_days_cell(k.days_left(self.now_ms))} | {_cell(_use(row))} |")
            lines.append("")
        return "\n".join(lines)


def build_report(inventory: Inventory, keys: Mapping[str, Sequence[KeyInfo] | BaseException],
                 usages: Mapping[str, AliasUsage], now_ms: int | None = None,
                 unfinished: Mapping[str, set[str]] | None = None) -> KeyReport:
    """Rows per remote: which alias uses each key, and which active keys no alias uses (orphans).

    A key is an orphan only when its use is known: every alias of the inventory that points at its
    remote had every local node's keystore read, and (for a key esremote made) the alias and local
    cluster in its metadata are in the inventory, and it is not the new key of a rotation that has
    not ended (`unfinished`: run id -> aliases)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    unfinished = unfinished or {}
    used: dict[str, list[str]] = {}
    for alias, usage in usages.items():
        for key_id in usage.key_ids:
            nodes = usage.nodes_with(key_id)
            used.setdefault(key_id, []).append(f"{alias} on {', '.join(nodes)}" if nodes
                                               else f"{alias} (journal of run {usage.recorded_by})")
    links = {a: (link.local, link.remote) for a, link in inventory.aliases.items()}
    report = KeyReport(now_ms, {}, dict(usages), aliases=links)
    for remote, listed in keys.items():
        if isinstance(listed, BaseException):
            report.key_errors[remote] = _brief(listed)
            report.keys[remote] = []
            continue
        uncertain = [a for a, (_, r) in links.items() if r == remote and (a not in usages or not usages[a].certain)]
        rows = []
        for key in listed:
            if key.id in used:
                rows.append(KeyRow(remote, key, tuple(used[key.id])))
                continue
            if key.state(now_ms) != "active":
                rows.append(KeyRow(remote, key))
                continue
            why = ""
            owner = key.owner
            run_id = str((key.metadata.get("esremote") or {}).get("run_id") or "") if key.managed else ""
            if uncertain:
                why = f"usage of alias {', '.join(uncertain)} not read from every local node"
            elif owner is not None and links.get(owner[1], (None,))[0] != owner[0]:
                why = f"made for alias {owner[1]} of local cluster {owner[0]}, which this inventory does not list"
            elif run_id in unfinished:
                why = f"the new key of rotation run {run_id}, which has not ended"
            rows.append(KeyRow(remote, key, (), orphan=not why, unknown=why))
        report.keys[remote] = rows
    return report


def remotes_of(inventory: Inventory, aliases: Sequence[str] | None = None) -> list[str]:
    """The remote clusters of the aliases (all of the inventory's when None), in inventory order;
    with no alias given, also every cluster whose role is remote."""
    chosen = list(inventory.aliases) if aliases is None else list(aliases)
    names = [inventory.aliases[a].remote for a in chosen]
    if aliases is None:
        names += [name for name, c in inventory.clusters.items() if c.role == "remote"]
    return list(dict.fromkeys(names))


def gather_report(inventory: Inventory, pool, es_of, *, aliases: Sequence[str] | None = None,
                  state_dir: Path | None = None, now_ms: int | None = None) -> KeyReport:
    """List the keys of the remotes (of `aliases`, or of the whole inventory) and read what every
    alias pointing at them uses. `es_of(cluster)` gives a REST client."""
    from esremote.cluster.api_key import list_cross_cluster_keys  # noqa: PLC0415

    remotes = remotes_of(inventory, aliases)
    # Every alias pointing at those remotes: a key is an orphan only when no alias uses it.
    wanted = [a for a, link in inventory.aliases.items() if link.remote in remotes]
    usages = {a: read_alias_usage(inventory, a, pool, state_dir=state_dir) for a in wanted}
    keys: dict[str, Sequence[KeyInfo] | BaseException] = {}
    for remote in remotes:
        try:
            keys[remote] = list_cross_cluster_keys(es_of(remote), remote)
        except EsRemoteError as exc:
            keys[remote] = exc
    report = build_report(inventory, keys, usages, now_ms, unfinished_rotations(state_dir))
    if aliases is not None:
        report.usages = {a: u for a, u in report.usages.items() if a in aliases}
    return report


def invalidate_orphans(report: KeyReport, es_of) -> list[str]:
    """Invalidate the orphans esremote made, one request per key; never a key it did not make.
    Returns one line per key."""
    from esremote.cluster.api_key import invalidate_key  # noqa: PLC0415

    lines = []
    for row in report.orphans(managed_only=True):
        outcome = invalidate_key(es_of(row.remote), row.remote, row.key.id)
        lines.append(f"{row.remote}: key {row.key.id} ({row.key.name}): {outcome.status} ({outcome.detail})")
    return lines


# --------------------------------------------------------------------------------------- helpers


def _round(days: float | None) -> float | None:
    return None if days is None else round(days, 2)


def _date(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _when(ms: int | None) -> str:
    return "never" if ms is None else f"on {_date(ms)}"


def _days(days: float) -> str:
    if days < 0:
        return f"{-days:.1f} day(s) ago"
    return f"{days:.1f} day(s) left"


def _days_cell(days: float | None) -> str:
    if days is None:
        return "-"
    return f"{days:.1f}" if days >= 0 else f"expired {-days:.1f}d ago"


def _use(row: KeyRow) -> str:
    if row.used_by:
        return "; ".join(row.used_by)
    if row.orphan:
        return "ORPHAN (no alias uses it)" + ("" if row.key.managed else "; not managed by esremote: left alone")
    if row.unknown:
        return f"unknown: {row.unknown}"
    return "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
