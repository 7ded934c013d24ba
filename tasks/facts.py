"""Tasks that read facts (never change anything): the preflight report of an alias, and what SSH
shows of each node (elasticsearch.yml text, keystore entry names, files the migration writes)."""

from __future__ import annotations

import shlex
from typing import Any

from prefect import task

from esremote.cluster.remote_settings import SavedRemote
from esremote.node_keystore import NodeKeystore
from esremote.node_settings import CLIENT_CA, SERVER_CA, SERVER_P12
from esremote.plan_facts import AliasState, MigrationFacts, NodeState, RoleChange, WorkItem
from esremote.preflight import PreflightReport, preflight
from esremote.tasks.common import RETRYING, run_logger
from esremote.tasks.privileges import alias_access
from esremote.tasks.runtime import Run, get_run, prefect_api_configured
from esremote.tasks.work import usage_of

WATCHED_FILES = (SERVER_P12, SERVER_CA, CLIENT_CA)


@task(name="preflight", task_run_name="preflight-{alias}", **RETRYING)
def preflight_alias(run_id: str, alias: str) -> PreflightReport:
    """Every check of `esremote.preflight` for one alias; blocking findings stop the run."""
    run = get_run(run_id)
    link = run.link(alias)
    clients = {name: run.es(name) for name in (link.local, link.remote)}
    report = preflight(run.inventory, alias, pool=run.pool, clients=clients, max_workers=run.params.max_parallel,
                       strong_identity=run.params.strong_identity)
    log = run_logger()
    for finding in report.warnings:
        log.warning("%s", finding)
    return preflight_allowing_resume(run, report)


@task(name="read-node", task_run_name="read-node-{node}", **RETRYING)
def read_node(run_id: str, node: str) -> NodeState:
    """elasticsearch.yml (text), keystore entry names and the migration's files on one node."""
    run = get_run(run_id)
    resolved = run.node(node)
    conn = run.conn(resolved)
    sudo = resolved.ssh.sudo
    yml = conn.read_file(str(resolved.yml_path), sudo=sudo).decode("utf-8")
    checks = "; ".join(f"if [ -e {shlex.quote(str(resolved.config_dir / rel))} ]; then echo y; else echo n; fi"
                       for rel in WATCHED_FILES)
    answers = conn.run(checks, sudo=sudo).stdout.split()
    keystore = node_keystore(run, node)
    names = keystore.list() if keystore.exists() else []
    return NodeState(cluster=resolved.cluster, name=resolved.name, address=resolved.address, yml=yml,
                     keystore=names, files={rel: a == "y" for rel, a in zip(WATCHED_FILES, answers, strict=True)},
                     config_dir=str(resolved.config_dir), service_user=resolved.service_user)


def node_keystore(run: Run, node: str) -> NodeKeystore:
    """The node's keystore CLI, run as the keystore file's owner (root in a deb/rpm install, where
    the service user cannot write the config directory), not as `service_user`."""
    resolved = run.node(node)
    password = resolved.keystore_password.resolve() if resolved.keystore_password is not None else None
    return NodeKeystore(run.conn(resolved), es_home=str(resolved.es_home), config_dir=str(resolved.config_dir),
                        password=password, sudo=resolved.ssh.sudo)


@task(name="read-access", task_run_name="read-access-{alias}", **RETRYING)
def read_access(run_id: str, alias: str, owner_roles: list[str]) -> dict[str, Any]:
    """The local roles that need `remote_indices` and the cross-cluster API key's `access`."""
    run = get_run(run_id)
    link = run.link(alias)
    split = run.params.split_search_alias.get(alias)
    if run.params.access != "from-usage":
        return alias_access(run.es(link.local), link.local, run.es(link.remote), link.remote, alias, owner_roles,
                            split=split)
    es_local = run.es(link.local)
    return alias_access(es_local, link.local, run.es(link.remote), link.remote, alias, owner_roles,
                        mode="from-usage", usage=usage_of(run, es_local, link.local, alias),
                        roles_before=roles_before_run(run, alias), split=split)


def roles_before_run(run: Run, alias: str) -> dict[str, dict | None]:
    """The local roles this run changed, as they were before (the journal's originals): the role
    updates copy the remote roles into remote_indices, which says nothing about what users read."""
    first = run.journal.first_intent(f"reconnect/roles/{alias}")
    return dict(first.data.get("originals") or {}) if first is not None else {}


def owner_roles(report: PreflightReport) -> list[str]:
    usage = report.usage
    return list(usage.role_names()) if usage is not None and hasattr(usage, "role_names") else []


def saved_settings(run: Run, alias: str, report: PreflightReport) -> dict[str, Any] | None:
    """The alias's settings before the migration: the journal's copy once reconnect saved them
    (the cluster may have them nulled by now), else what the cluster says."""
    first = run.journal.first_intent(f"reconnect/save-settings/{alias}")
    if first is not None:
        return first.data.get("saved")
    d = report.definition
    if d is None or not (d.persistent or d.transient):
        return None
    return SavedRemote(alias, dict(d.persistent), dict(d.transient)).to_dict()


def alias_state(run: Run, report: PreflightReport, access: dict[str, Any]) -> AliasState:
    d = report.definition
    link = run.link(report.alias)
    saved = saved_settings(run, report.alias, report)
    yml_settings = {n: dict(s) for n, s in (d.yml if d else {}).items() if s}
    first_yml = run.journal.first_intent(f"reconnect/save-yml/{report.alias}")
    if first_yml is not None:
        yml_settings = first_yml.data.get("saved", yml_settings)
    work = saved_work(run, report)
    roles = [RoleChange(r["role"], r["remote_indices"], r.get("already", False)) for r in access["roles"]]
    return AliasState(
        alias=report.alias, local=link.local, remote=link.remote,
        defined_in="settings" if saved else ("yml" if yml_settings else "settings"),
        saved=saved, yml_settings=yml_settings, remote_info=dict(d.remote_info or {}) if d else {},
        work=work, roles=roles, key_access=access["access"], key_access_review=access.get("access_review"),
        key_exists=run.journal.is_done(f"prepare_remote/api-key/{report.alias}"), split=access.get("split"))


def saved_work(run: Run, report: PreflightReport) -> list[WorkItem]:
    """The work using the alias; once stop_cross_cluster_ops ran, the journal's record of it (what
    was running before), since the cluster now shows it stopped."""
    first = run.journal.first_intent(f"stop_cross_cluster_ops/list/{report.alias}")
    if first is not None:
        return [WorkItem(**w) for w in first.data["work"]]
    items = getattr(report.usage, "items", ()) or ()
    return [WorkItem(kind=u.kind, id=u.id, state=u.state, owner=u.owner.describe() if u.owner else None,
                     job_id=u.job_id, job_state=u.job_state, remote_patterns=list(u.remote.patterns))
            for u in items]


def migration_facts(run: Run, reports: dict[str, PreflightReport], nodes: list[NodeState],
                    access: dict[str, dict[str, Any]]) -> MigrationFacts:
    """Everything the plan needs, from the preflight reports, node reads and role analysis."""
    clusters: dict[str, dict[str, Any]] = {}
    for report in reports.values():
        for name, found in report.clusters.items():
            clusters[name] = {"role": run.inventory.cluster(name).role,
                              "versions": {n.name: n.version_text for n in found.nodes}}
    versions = {f"{c}/{n}": v for c, info in clusters.items() for n, v in info["versions"].items()}
    for node in nodes:
        node.version = versions.get(node.key, "")
    remotes = {run.link(a).remote for a in reports}
    return MigrationFacts(
        clusters=clusters, nodes=nodes,
        aliases=[alias_state(run, reports[a], access[a]) for a in reports],
        remote_cluster_port={r: run.inventory.cluster(r).remote_cluster_port for r in remotes},
        secret_store="prefect" if prefect_api_configured() else "file",
        certificate_model={r.certificate_model.cluster: r.certificate_model.to_dict() for r in reports.values()
                           if r.certificate_model is not None and r.certificate_model.applies})


def involved_nodes(run: Run) -> list[str]:
    """`cluster/node` of every node of every cluster the run's aliases link, inventory order."""
    clusters: list[str] = []
    for alias in run.aliases:
        link = run.link(alias)
        clusters += [c for c in (link.local, link.remote) if c not in clusters]
    return [str(n) for c in clusters for n in run.nodes(c)]


def preflight_allowing_resume(run: Run, report: PreflightReport) -> PreflightReport:
    """A resumed run may find the alias removed (reconnect nulled it): the journal holds it."""
    saved = run.journal.first_intent(f"reconnect/save-settings/{report.alias}")
    if saved is not None:
        report.findings = [f for f in report.findings if not (f.check == "alias" and f.status == "block")]
    return report.raise_if_blocked()


def collect_facts(run: Run) -> tuple[MigrationFacts, dict[str, PreflightReport]]:
    """Facts without Prefect (the `esremote plan` command): the same task bodies, called directly.
    The aliases' preflights run side by side, then every node is read, then each alias's roles are
    analysed side by side; nodes at most `max_parallel` at a time. A blocked preflight stops it
    before any node is read (its node checks have already said what is wrong with the nodes)."""
    from esremote.fanout import fan_out  # noqa: PLC0415

    workers = run.params.max_parallel

    def report_of(alias: str) -> PreflightReport:
        link = run.link(alias)
        clients = {name: run.es(name) for name in (link.local, link.remote)}
        return preflight_allowing_resume(
            run, preflight(run.inventory, alias, pool=run.pool, clients=clients, max_workers=workers,
                           strong_identity=run.params.strong_identity))

    reports = _each(run.aliases, report_of, workers)
    keys = involved_nodes(run)
    nodes = fan_out(keys, lambda n: read_node.fn(run.id, n), max_workers=workers).raise_if_failed()
    access = _each(run.aliases, lambda a: read_access.fn(run.id, a, owner_roles(reports[a])), workers)
    facts = migration_facts(run, reports, [nodes[n] for n in keys], access)
    return facts, reports


def _each(aliases: list[str], fn, workers: int) -> dict[str, Any]:
    """`fn` for every alias at once; the first alias's failure raised as it is (a PreconditionError
    lists what to fix), as when they ran one after the other."""
    from esremote.fanout import fan_out  # noqa: PLC0415

    results = fan_out(aliases, fn, max_workers=workers)
    for error in (results[a] for a in aliases if isinstance(results[a], BaseException)):
        raise error
    return dict(results.succeeded)
