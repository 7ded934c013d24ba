"""Which aliases of a 9.x cluster are still on the certificate model, so an operator sees what is
left to migrate.

From 9.0 each certificate-model connection writes a deprecation warning with the key
`remote_cluster_certificate_access-<alias>` (category SECURITY) to the node's deprecation log,
`<path.logs>/<cluster.name>_deprecation.json`, one JSON object a line (es-facts §12, "9.0"). Each
local node's log is read over SSH (only the lines with that key); an alias it names counts while
`_remote/info` still shows it without `cluster_credentials` (a migrated alias keeps its old lines).
Aliases on the certificate model that no log names yet (no connection opened since the log rolled
over, or none at all) are listed apart, from `_remote/info`. Below 9.0 there is no such log line:
the result says it does not apply.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from esremote.cluster import facts as cluster_facts
from esremote.cluster.client import mapped_errors
from esremote.cluster.restart import _cluster_name, _node_yml, node_log_path
from esremote.errors import EsRemoteError
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.ssh import SSHPool

__all__ = ["CERTIFICATE_MODEL_KEY", "CertificateModelAliases", "DEPRECATED_FROM", "certificate_model_aliases"]

CERTIFICATE_MODEL_KEY = "remote_cluster_certificate_access-"   # + alias: the deprecation's event.code
DEPRECATED_FROM: cluster_facts.Version = (9, 0, 0)


@dataclass
class CertificateModelAliases:
    cluster: str
    applies: bool = True                                       # the cluster is 9.x
    logged: dict[str, list[str]] = field(default_factory=dict)  # alias -> nodes whose deprecation log names it
    unlogged: list[str] = field(default_factory=list)          # certificate model, no connection logged
    unread: dict[str, str] = field(default_factory=dict)       # node -> why its log could not be read

    @property
    def aliases(self) -> list[str]:
        return sorted({*self.logged, *self.unlogged})

    def describe(self) -> str:
        parts = [f"{alias} (deprecation log of {', '.join(nodes)})" for alias, nodes in sorted(self.logged.items())]
        parts += [f"{alias} (in _remote/info, no certificate-model connection logged)" for alias in self.unlogged]
        text = "; ".join(parts) or "none"
        if self.unread:
            text += "; unread logs: " + "; ".join(f"{n}: {why}" for n, why in sorted(self.unread.items()))
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def certificate_model_aliases(inventory: Inventory, cluster: str, pool: SSHPool, *, es: Any,
                              facts: cluster_facts.ClusterFacts | None = None,
                              max_workers: int = 8) -> CertificateModelAliases:
    """The aliases of `cluster` still on the certificate model (see the module docstring)."""
    facts = facts if facts is not None else cluster_facts.gather(es, cluster)
    result = CertificateModelAliases(cluster)
    if not facts.nodes or facts.min_version < DEPRECATED_FROM:
        result.applies = False
        return result
    with mapped_errors(cluster, "GET /_remote/info"):
        info = dict(es.cluster.remote_info().body)
    on_certificates = {alias for alias, entry in info.items() if "cluster_credentials" not in (entry or {})}
    outcomes = fan_out(inventory.nodes(cluster), lambda node: logged_aliases(pool, node, es),
                       max_workers=max_workers)
    for node, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            result.unread[node.name] = str(outcome).splitlines()[0] if str(outcome) else type(outcome).__name__
            continue
        for alias in outcome:
            if alias in on_certificates:
                result.logged.setdefault(alias, []).append(node.name)
    result.logged = {alias: sorted(nodes) for alias, nodes in sorted(result.logged.items())}
    result.unlogged = sorted(on_certificates - set(result.logged))
    return result


def deprecation_log_path(node: ResolvedNode, yml: dict[str, Any], cluster_name: str) -> PurePosixPath:
    """Beside the node's main log: `<path.logs>/<cluster.name>_deprecation.json`."""
    return node_log_path(node, yml, None, cluster_name).with_name(f"{cluster_name}_deprecation.json")


def logged_aliases(pool: SSHPool, node: ResolvedNode, es: Any = None) -> set[str]:
    """Aliases the node's deprecation log names under the certificate-model key; only those lines
    are read (grep on the node: the log can be large). No log yet is no alias."""
    conn = pool.get(node.ssh_target())
    sudo = node.ssh.sudo
    yml = _node_yml(conn, node, sudo)
    path = shlex.quote(str(deprecation_log_path(node, yml, _cluster_name(es, node.cluster, yml))))
    key = shlex.quote(CERTIFICATE_MODEL_KEY)
    result = conn.run(f"if [ -e {path} ]; then grep -F -e {key} -- {path}; s=$?; [ $s -le 1 ] && exit 0; exit $s; "
                      "fi; exit 0", sudo=sudo, check=False, timeout=60)
    if result.exit_code != 0:
        raise EsRemoteError(f"cannot read {path}: {result.stderr.strip() or 'exit ' + str(result.exit_code)}")
    return {alias for alias in (_alias_of(line) for line in result.stdout.splitlines()) if alias}


def _alias_of(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    code = entry.get("event.code") if isinstance(entry, dict) else None
    if isinstance(code, str) and code.startswith(CERTIFICATE_MODEL_KEY):
        return code[len(CERTIFICATE_MODEL_KEY):] or None
    return None
