"""The migration plan: every change, node by node and call by call, worked out from facts before
anything changes (pyinfra style: facts in, changes out; no I/O here).

    facts = MigrationFacts(...)             # what the clusters and nodes say now (tasks gather it)
    plan = build_plan(params, facts)
    plan.to_markdown()                      # the Prefect artifact and `esremote plan`
    plan.rows()                             # the table artifact: one row per change

The same desired-state functions serve the plan and the apply steps (`esremote.node_settings`:
`remote_server_settings`, `local_client_settings`, `credentials_setting`; `esremote.alias_target`),
so what is shown is what is done. A change that the facts show as already made is left out: a plan
after a finished migration is empty of changes. Secrets never appear: keystore entries are names,
API keys are "created at run time".

Around it: the facts model (`esremote.plan_facts`), the consented split (`esremote.split_plan`) and
the Markdown (`esremote.plan_report`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from esremote.alias_target import target_alias_settings, target_saved
from esremote.cluster.api_key import certificate_identity
from esremote.cluster.remote_settings import (
    ApiCall,
    SavedRemote,
    plan_readd,
    plan_removal,
    plan_restore,
)
from esremote.durations import DAY_MS, duration_ms
from esremote.esyml import EsYml, unified_diff
from esremote.node_settings import (
    CA_MODE,
    CLIENT_CA,
    P12_MODE,
    SERVER_CA,
    SERVER_P12,
    SERVER_P12_PASSWORD,
    credentials_setting,
    local_client_settings,
    local_signing_settings,
    remote_settings_for,
    signing_files,
)
from esremote.params import MigrationParams
from esremote.pki import signing_dn
from esremote.plan_facts import AliasState, MigrationFacts, NodeState, WorkItem
from esremote.split_plan import split_alias_settings, split_summary, work_moves

RELOADABLE = (8, 13, 0)

Phase = Literal["prepare_remote", "stage_local", "stage_credentials", "stop_cross_cluster_ops", "reconnect",
                "verify", "resume_cross_cluster_ops"]
PHASES: tuple[str, ...] = ("prepare_remote", "stage_local", "stage_credentials", "stop_cross_cluster_ops",
                           "reconnect", "verify", "resume_cross_cluster_ops")
# The outage: from the first work stopped to the last resumed. Everything before it keeps the
# certificate-model link and the work running.
OUTAGE_PHASES: tuple[str, ...] = PHASES[3:]
Kind = Literal["yml", "keystore", "file", "api", "restart", "reload", "probe", "secret"]


# ------------------------------------------------------------------------------------------ changes


@dataclass(frozen=True)
class Change:
    """One thing the run will do. `detail` is a diff, a request body or a list: never a secret."""

    phase: str
    kind: str
    target: str                      # "remote/remote-0" (a node) or "local" (a cluster)
    summary: str
    detail: str = ""
    alias: str = ""
    disruptive: bool = False


@dataclass
class Outage:
    """When cross-cluster work pauses and what happens meanwhile."""

    work_stopped: list[str]
    credentials: Literal["reload", "restart"]
    restarts_in_window: list[str]
    estimate: str


@dataclass
class Plan:
    params: dict[str, Any]
    aliases: list[str]
    changes: list[Change]
    outage: Outage
    notes: list[str]
    access: dict[str, dict[str, Any]] = field(default_factory=dict)  # alias -> from-usage review
    split: dict[str, dict[str, Any]] = field(default_factory=dict)   # alias -> the consented split

    def for_phase(self, phase: str) -> list[Change]:
        return [c for c in self.changes if c.phase == phase]

    def rows(self) -> list[dict[str, str]]:
        return [{"phase": c.phase, "target": c.target, "kind": c.kind, "change": c.summary,
                 "disruptive": "yes" if c.disruptive else ""} for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "aliases": self.aliases, "changes": [asdict(c) for c in self.changes],
                "outage": asdict(self.outage), "notes": self.notes, "access": self.access, "split": self.split}

    def to_markdown(self) -> str:
        from esremote.plan_report import plan_markdown  # noqa: PLC0415 - it reads PHASES from here

        return plan_markdown(self)


# ------------------------------------------------------------------------------------------ planning


def credentials_by(params: MigrationParams, facts: MigrationFacts, local: str) -> Literal["reload", "restart"]:
    """How the local nodes load credentials: reload from 8.13 (es-facts §1, §11.5), else restart."""
    if params.restart_strategy == "restart":
        return "restart"
    if params.restart_strategy == "reload":
        return "reload"
    return "reload" if facts.min_version(local) >= RELOADABLE else "restart"


def build_plan(params: MigrationParams, facts: MigrationFacts) -> Plan:
    changes: list[Change] = []
    remotes = list(dict.fromkeys(a.remote for a in facts.aliases))
    locals_ = list(dict.fromkeys(a.local for a in facts.aliases))
    for remote in remotes:
        changes += _prepare_remote(params, facts, remote)
    for alias in facts.aliases:
        changes += _api_key(params, alias, facts)
    for local in locals_:
        changes += _stage_local(facts, local, params.strong_identity)
    for local in locals_:
        changes += _stage_credentials(facts, local, [a for a in facts.aliases if a.local == local])
    for alias in facts.aliases:
        if not alias.migrated:
            changes += _stop_work(alias)
    restarts: list[str] = []
    loaders: set[str] = set()
    for local in locals_:
        mine = [a for a in facts.aliases if a.local == local]
        how = credentials_by(params, facts, local)
        loaders.add(how)
        changes += _reconnect(params, facts, local, mine, how)
        if how == "restart" or any(a.defined_in == "yml" for a in mine):
            restarts += [n.key for n in facts.nodes_of(local)]
    for alias in facts.aliases:
        changes += _verify(alias, facts)
        if not alias.migrated:
            changes += _resume_work(alias)
    work = [f"{w.kind} {w.id}" for a in facts.aliases if not a.migrated for w in a.work if w.running]
    how = "restart" if "restart" in loaders else "reload"
    estimate = (f"about a minute: {len(restarts)} local node restart(s) one by one inside the outage "
                "(credentials are reloadable only from 8.13, or the alias is defined in elasticsearch.yml)"
                if restarts else "seconds: settings calls and a secure-settings reload, no restart")
    outage = Outage(work_stopped=work, credentials=how, restarts_in_window=restarts, estimate=estimate)
    access = {a.alias: a.key_access_review for a in facts.aliases
              if a.key_access_review and not (a.key_exists or a.migrated)}
    split = {a.alias: split_summary(params, facts, a) for a in facts.aliases if a.split and not a.migrated}
    return Plan(params=params.public(), aliases=[a.alias for a in facts.aliases], changes=changes,
                outage=outage, notes=_notes(params, facts), access=access, split=split)


def _notes(params: MigrationParams, facts: MigrationFacts) -> list[str]:
    notes = []
    if params.dry_run:
        notes.append("Dry run: nothing below is done.")
    where = ("a Prefect Secret block (the configured Prefect API keeps it)" if facts.secret_store == "prefect"
             else "a 0600 file in the run's journal directory (no Prefect API server is configured)")
    notes.append(f"The cross-cluster API key is stored in {where}; logs and artifacts never show it.")
    notes.append(f"Key expiry: a key created by this run {_expiry(params)}"
                 + ("" if not params.key_expiration else "; rotate it before then (esremote rotate), "
                    "check-key-expiry warns ahead")
                 + "; a key an earlier run made keeps its own expiry (esremote keys shows the days left).")
    for alias in facts.aliases:
        where = "elasticsearch.yml (static)" if alias.defined_in == "yml" else "cluster settings (dynamic)"
        notes.append(f"Alias `{alias.alias}`: {alias.local} -> {alias.remote}, defined in {where}"
                     + ("; already on the API-key model" if alias.migrated else ""))
    notes += _certificate_model_notes(facts)
    for alias in (a for a in facts.aliases if a.split and not a.migrated):
        notes.append(f"Split (consented with --split-search-alias {alias.alias}={alias.split_alias}): `{alias.alias}` "
                     f"keeps the replication; searches go through the new alias `{alias.split_alias}` from now on. "
                     f"Users' own searches `{alias.alias}:<index>` must become `{alias.split_alias}:<index>`.")
    if params.strong_identity:
        notes.append("Strong identity verification (technical preview, Elasticsearch 9.3+): each local cluster "
                     "signs its requests with a certificate per alias, signed by the remote cluster's CA; the "
                     "remote trusts its CA for signing (cluster.remote.signing.certificate_authorities) and the "
                     "API key takes only requests signed by that DN (certificate_identity). Rollback removes the "
                     "files and settings with the rest of the preparation.")
    notes.append("Rollback (automatic if reconnect, verify or resume fails) restores the certificate-model "
                 "link: alias settings, roles, keystores (credentials removed) and yml as they were, then "
                 "resumes the stopped work; then it undoes the preparation with one more rolling restart "
                 "of each cluster (local nodes' yml and CA file, remote nodes' yml, keystore entries and "
                 "certificate files as before the run).")
    return notes


def _certificate_model_notes(facts: MigrationFacts) -> list[str]:
    """On 9.x: every alias of the local cluster still on the certificate model, and which of them
    this plan leaves there (from the nodes' deprecation logs, esremote.cluster.deprecations)."""
    notes = []
    planned = {a.alias for a in facts.aliases if not a.migrated}
    for cluster, found in sorted(facts.certificate_model.items()):
        logged, unlogged = found.get("logged") or {}, found.get("unlogged") or []
        if not logged and not unlogged:
            notes.append(f"{cluster} (9.x): no alias left on the certificate model.")
            continue
        listed = [f"`{a}` (deprecation log of {', '.join(nodes)})" for a, nodes in sorted(logged.items())]
        listed += [f"`{a}` (no certificate-model connection logged)" for a in unlogged]
        left = sorted((set(logged) | set(unlogged)) - planned)
        notes.append(f"{cluster} (9.x): aliases still on the certificate model, deprecated since 9.0: "
                     f"{', '.join(listed)}; after this plan: {', '.join(f'`{a}`' for a in left) or 'none'}.")
    return notes


def _yml_change(phase: str, node: NodeState, desired: dict[str, Any], unset: tuple[str, ...] = (),
                alias: str = "", why: str = "", disruptive: bool = False) -> list[Change]:
    if not node.yml:
        return [Change(phase, "yml", node.key, f"set {', '.join(desired)} ({why})", alias=alias,
                       disruptive=disruptive)]
    yml = EsYml(node.yml, source=f"{node.key}: elasticsearch.yml")
    if not yml.update(desired, unset):
        return []
    path = f"{node.config_dir}/elasticsearch.yml" if node.config_dir else "elasticsearch.yml"
    return [Change(phase, "yml", node.key, f"edit elasticsearch.yml ({why})",
                   detail=unified_diff(node.yml, yml.text(), path), alias=alias, disruptive=disruptive)]


def _prepare_remote(params: MigrationParams, facts: MigrationFacts, remote: str) -> list[Change]:
    phase = "prepare_remote"
    port = facts.remote_cluster_port.get(remote, 9443)
    nodes = facts.nodes_of(remote)
    out: list[Change] = []
    needs_cert = [n for n in nodes if not n.files.get(SERVER_P12)]
    if needs_cert:
        how = ("a new CA (cryptography; its key kept encrypted with ca_passphrase, else deleted once the "
               "certificates are signed)"
               if params.certificate_strategy == "generate" else f"the provided CA {params.ca_cert_file}")
        out.append(Change(phase, "secret", remote, f"node certificates for {len(needs_cert)} node(s) signed by {how}; "
                                                    "a random PKCS#12 password"))
    restart = []
    for node in nodes:
        if not node.files.get(SERVER_P12):
            reader = node.service_user or "the service user"
            out.append(Change(phase, "file", node.key, f"write {SERVER_P12} ({P12_MODE:04o}) and {SERVER_CA} "
                                                       f"({CA_MODE:04o}), owner and group those of the config "
                                                       f"directory, readable by {reader}"))
        if node.keystore is None or SERVER_P12_PASSWORD not in node.keystore:
            out.append(Change(phase, "keystore", node.key, f"add {SERVER_P12_PASSWORD} (value on stdin)"))
        edits = _yml_change(phase, node, remote_settings_for(params, node.address, port, node.yml),
                            why="remote cluster server" + (", trust signing certificates of its CA"
                                                           if params.strong_identity else ""))
        out += edits
        if edits or not node.files.get(SERVER_P12):
            restart.append(node)
    if params.strong_identity:
        for alias in (a for a in facts.aliases if a.remote == remote and not a.migrated):
            out.append(Change(phase, "secret", remote, f"signing certificate {signing_dn(alias.local, alias.alias)} "
                                                       f"for {alias.local}, signed by the CA of {remote}",
                              alias=alias.alias))
    for node in restart:
        out.append(Change(phase, "restart", node.key, "restart, wait until it rejoins and the cluster is green"))
    if nodes:
        out.append(Change(phase, "probe", remote, f"TLS handshake with every node's :{port} against the CA"))
    return out


def _api_key(params: MigrationParams, alias: AliasState, facts: MigrationFacts) -> list[Change]:
    if alias.key_exists or alias.migrated:
        return []
    store = "Prefect Secret block" if facts.secret_store == "prefect" else "0600 file in the run directory"
    body: dict[str, Any] = {"name": f"esremote-{alias.local}-{alias.alias}",
                            "access": alias.key_access or "<from remote roles>",
                            "metadata": {"managed_by": "esremote",
                                         "esremote": {"run_id": "<this run>", "alias": alias.alias,
                                                      "local_cluster": alias.local,
                                                      "access_sha256": "<hash of access>"}}}
    if params.key_expiration:
        body["expiration"] = params.key_expiration
    if params.strong_identity:
        body["certificate_identity"] = certificate_identity(signing_dn(alias.local, alias.alias))
    how = ""
    if alias.key_access_review:
        how = ("access from usage, narrower than the role copy" if alias.key_access_review.get("narrower")
               else "access from usage, the same as the role copy") + "; "
    if alias.split:
        body["access"] = alias.key_access
        how += "replication only (split); "
    out = [Change("prepare_remote", "api", alias.remote,
                  f"POST /_security/cross_cluster/api_key ({how}{_expiry(params)}); key kept in a {store}",
                  detail=json.dumps(body, indent=2, sort_keys=True), alias=alias.alias)]
    if alias.split:
        name = alias.split_alias
        second = {**body, "name": f"esremote-{alias.local}-{name}", "access": alias.split["access"],
                  "metadata": {"managed_by": "esremote",
                               "esremote": {"run_id": "<this run>", "alias": name, "local_cluster": alias.local,
                                            "split_from": alias.alias, "access_sha256": "<hash of access>"}}}
        second.pop("certificate_identity", None)  # params refuse strong identity with a split
        out.append(Change("prepare_remote", "api", alias.remote,
                          f"POST /_security/cross_cluster/api_key (the search key of the new alias {name}, with "
                          f"its DLS/FLS; {_expiry(params)}); key kept in a {store}",
                          detail=json.dumps(second, indent=2, sort_keys=True), alias=alias.alias))
    return out


def _expiry(params: MigrationParams) -> str:
    """The new key's expiry as the plan states it: the duration and the day it runs out."""
    if not params.key_expiration:
        return "never expires"
    ends = datetime.now(timezone.utc) + timedelta(milliseconds=duration_ms(params.key_expiration))
    days = duration_ms(params.key_expiration) / DAY_MS
    return f"expires after {params.key_expiration}: {days:g} days left, about {ends:%Y-%m-%d}"


def _stage_local(facts: MigrationFacts, local: str, strong_identity: bool = False) -> list[Change]:
    phase = "stage_local"
    out: list[Change] = []
    restart = []
    signing = [a.alias for a in facts.aliases if a.local == local] if strong_identity else []
    for node in facts.nodes_of(local):
        wanted = {**local_client_settings(), **local_signing_settings(signing)}
        edits = _yml_change(phase, node, wanted, why="trust the remote cluster server CA"
                            + (", sign with a certificate per alias" if signing else ""))
        if not node.files.get(CLIENT_CA) or any(not a.migrated for a in facts.aliases if a.local == local):
            out.append(Change(phase, "file", node.key, f"write {CLIENT_CA} with the remote clusters' CAs (0644)"))
        for alias in signing:
            cert, key = signing_files(alias)
            out.append(Change(phase, "file", node.key, f"write {cert} ({CA_MODE:04o}) and {key} ({P12_MODE:04o}, "
                                                       "owner and group those of the config directory)", alias=alias))
        out += edits
        if edits:
            restart.append(node)
    for node in restart:
        out.append(Change(phase, "restart", node.key, "restart while the certificate-model link still works"))
    return out


def _stop_work(alias: AliasState) -> list[Change]:
    return [Change("stop_cross_cluster_ops", "api", alias.local, str(step), alias=alias.alias, disruptive=True)
            for step in work_steps(alias.work, "stop")]


def _resume_work(alias: AliasState) -> list[Change]:
    return [Change("resume_cross_cluster_ops", "api", alias.local, str(step), alias=alias.alias)
            for step in work_steps(alias.work, "resume")]


_STOPPED = {"transform": "stopped", "datafeed": "stopped", "follower": "paused", "auto_follow_pattern": "paused"}


def work_steps(work: list[WorkItem], direction: str) -> list:
    """The calls `esremote.cluster.xcluster_work` makes for this work (the same planner the run
    uses): stop what runs now; resume it once everything is stopped."""
    from esremote.cluster import usage as u  # noqa: PLC0415
    from esremote.cluster import xcluster_work  # noqa: PLC0415

    def report(stopped: bool):
        return u.UsageReport("alias", tuple(
            u.Usage(w.kind, w.id, _STOPPED[w.kind] if stopped else w.state, u.RemotePatterns(tuple(w.remote_patterns)),
                    job_id=w.job_id, job_state=("closed" if stopped else w.job_state) if w.job_id else None)
            for w in work))
    records = xcluster_work.record_work(report(stopped=False))
    if direction == "stop":
        return xcluster_work.plan_stop(records, report(stopped=False))
    return xcluster_work.plan_resume(records, report(stopped=True))


def _stage_credentials(facts: MigrationFacts, local: str, aliases: list[AliasState]) -> list[Change]:
    """Before the outage: roles get `remote_indices` (ignored by the certificate model) and the
    credentials go into every keystore (read only at start or reload: flows/stage_credentials.py)."""
    phase = "stage_credentials"
    out: list[Change] = []
    pending = [a for a in aliases if not a.migrated]
    for alias in pending:
        for role in alias.roles:
            if not role.already:
                out.append(Change(phase, "api", local, f"PUT _security/role/{role.role}: add remote_indices",
                                  detail=json.dumps(role.remote_indices, indent=2), alias=alias.alias))
        if alias.split:
            out.append(Change(phase, "api", local, f"PUT _security/role/<role>: every remote_indices entry for "
                              f"{alias.alias} that grants search also lists {alias.split_alias} in its clusters "
                              "(originals in the journal)", alias=alias.alias))
    for node in facts.nodes_of(local):
        wanted = [a.alias for a in pending] + [a.split_alias for a in pending if a.split]
        names = [credentials_setting(a) for a in wanted
                 if node.keystore is None or credentials_setting(a) not in node.keystore]
        if names:
            out.append(Change(phase, "keystore", node.key, f"add {', '.join(names)} (value on stdin; loaded at "
                              "the outage's reload)"))
    return out


def _reconnect(params: MigrationParams, facts: MigrationFacts, local: str, aliases: list[AliasState],
               how: str) -> list[Change]:
    phase = "reconnect"
    out: list[Change] = []
    pending = [a for a in aliases if not a.migrated]
    for alias in pending:
        if alias.defined_in == "settings" and alias.saved:
            saved = SavedRemote.from_dict(alias.saved)
            for call in plan_removal(saved):
                out.append(_api_change(phase, local, call, alias.alias, "remove the alias (saved in the journal)"))
    yml_aliases = [a for a in pending if a.defined_in == "yml"]
    for node in facts.nodes_of(local):
        for alias in yml_aliases:
            current = alias.yml_settings.get(node.name)
            if current:
                target = target_alias_settings(params, facts, alias, current)
                desired = {f"cluster.remote.{alias.alias}.{k}": v for k, v in target.items()}
                stale = tuple(f"cluster.remote.{alias.alias}.{k}" for k in current if k not in target)
                out += _yml_change(phase, node, desired, stale, alias.alias, "alias on the remote cluster port",
                                   disruptive=True)
    if how == "reload" and not yml_aliases and pending:
        out.append(Change(phase, "reload", local, "POST _nodes/reload_secure_settings (credentials, 8.13+)",
                          disruptive=True))
    elif pending:
        for node in facts.nodes_of(local):
            out.append(Change(phase, "restart", node.key, "restart to load the credentials", disruptive=True))
    for alias in pending:
        if alias.defined_in == "settings" and alias.saved:
            saved = SavedRemote.from_dict(alias.saved)
            target = target_saved(params, facts, alias, saved)
            for call in plan_readd(None, target, facts.remote_cluster_port.get(alias.remote, 9443)):
                out.append(_api_change(phase, local, call, alias.alias, "re-add on the remote cluster port"))
    for alias in (a for a in pending if a.split):
        for call in plan_restore(None, SavedRemote(alias.split_alias, split_alias_settings(params, facts, alias))):
            out.append(_api_change(phase, local, call, alias.alias,
                                   f"add the search alias {alias.split_alias} (API-key model, its own key)"))
        for move in work_moves(alias):
            out.append(Change(phase, "api", local, move, alias=alias.alias, disruptive=True))
    return out


def _api_change(phase: str, cluster: str, call: ApiCall, alias: str, why: str) -> Change:
    body = json.dumps({"params": dict(call.params), "body": call.body}, indent=2, sort_keys=True)
    return Change(phase, "api", cluster, f"{call.method} {call.path}: {why}", detail=body, alias=alias,
                  disruptive=True)


def _verify(alias: AliasState, facts: MigrationFacts) -> list[Change]:
    checks = ["GET _remote/info: connected, cluster_credentials redacted"]
    if facts.min_version(alias.local) >= (8, 13, 0):
        checks.append(f"GET _resolve/cluster/{alias.alias}:*")
    checks.append("a cross-cluster search per remote index pattern in use")
    if any(w.kind == "follower" for w in alias.work):
        checks.append("followers catching up without read exceptions (after resume)")
    if alias.split:
        name = alias.split_alias
        checks += [f"{name}: GET _remote/info on every local node: connected, cluster_credentials redacted",
                   f"{name}: a cross-cluster request on every local node and a search per pattern the moved work reads"]
    return [Change("verify", "probe", alias.local, check, alias=alias.alias) for check in checks]
