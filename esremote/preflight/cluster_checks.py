"""Preflight of both clusters over REST: reachable, every node's version, the inventory names every
node and nothing else, licence, health, security, and (`--strong-identity`) 9.3 on every node.
"""

from __future__ import annotations

from esremote.cluster import facts as cluster_facts
from esremote.cluster.facts import STRONG_IDENTITY_FROM, ClusterFacts
from esremote.errors import ClusterError
from esremote.inventory import Inventory
from esremote.preflight.report import PreflightReport


def _cluster_checks(report: PreflightReport, inventory: Inventory, name: str, es) -> None:
    try:
        found = cluster_facts.gather(es, name)
    except ClusterError as exc:
        report.failed_check(exc, "reachable", name)
        report.add("reachable", name, "block", str(exc),
                   "check the cluster's urls, ca_cert and auth in the inventory, and that it is up")
        return
    report.clusters[name] = found
    _versions(report, found)
    _membership(report, inventory, found)
    _licence(report, found)
    if found.health == "green":
        report.add("health", name, "ok", "green")
    else:
        report.add("health", name, "block", f"health is {found.health} ({found.number_of_nodes} nodes)",
                   "wait for green (GET _cluster/health, _cluster/allocation/explain) before migrating")
    if found.security_enabled:
        report.add("security", name, "ok", "security enabled")
    else:
        report.add("security", name, "block", "security is disabled",
                   "set xpack.security.enabled: true with TLS on every node; remote cluster security needs it")


def _versions(report: PreflightReport, found: ClusterFacts) -> None:
    for node in found.nodes:
        where = f"{found.cluster}/{node.name}"
        if node.version < cluster_facts.MIN_VERSION:
            report.add("version", where, "block", f"Elasticsearch {node.version_text}",
                       "upgrade to 8.10 or later (8.14+ recommended): API-key remote clusters need it on "
                       "every node of both clusters")
        elif node.version < cluster_facts.GA_VERSION:
            report.add("version", where, "warn", f"Elasticsearch {node.version_text}: API-key remote "
                       "clusters are beta before 8.14", "consider upgrading to 8.14 or later first")
        else:
            report.add("version", where, "ok", f"Elasticsearch {node.version_text}")


def _strong_identity(report: PreflightReport, found: ClusterFacts | None) -> None:
    """Strong identity verification is a 9.3 technical preview: every node of both clusters needs it."""
    if found is None:
        return
    if found.min_version < STRONG_IDENTITY_FROM:
        report.add("strong_identity", found.cluster, "block",
                   f"--strong-identity needs Elasticsearch 9.3 or later, {found.cluster} runs "
                   f"{'.'.join(map(str, found.min_version))}",
                   "upgrade both clusters to 9.3+ or migrate without --strong-identity")
    else:
        report.add("strong_identity", found.cluster, "ok",
                   "strong identity verification (technical preview) available")


def _membership(report: PreflightReport, inventory: Inventory, found: ClusterFacts) -> None:
    listed = {n.name for n in inventory.cluster(found.cluster).nodes}
    running = set(found.node_names)
    for name in sorted(listed - running):
        report.add("membership", f"{found.cluster}/{name}", "block", "in the inventory but not in the cluster "
                   "(GET _nodes)", "start the node, or fix its name in the inventory (node.name)")
    for name in sorted(running - listed):
        report.add("membership", f"{found.cluster}/{name}", "block", "in the cluster but not in the inventory",
                   "add the node to the inventory: the migration edits every node")


def _licence(report: PreflightReport, found: ClusterFacts) -> None:
    if found.licence_allows_rcs:
        report.add("licence", found.cluster, "ok", f"{found.licence_type} ({found.licence_status})")
        return
    report.add("licence", found.cluster, "block",
               f"licence is {found.licence_type} ({found.licence_status or 'unknown status'}); Elasticsearch "
               "would refuse with: current license is non-compliant for [advanced-remote-cluster-security]",
               "install an enterprise licence (PUT _license) or start a trial (POST _license/start_trial) "
               "on this cluster")
