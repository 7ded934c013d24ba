"""Preflight of every node over SSH: reachable, sudo when the inventory asks for it, ES home, config
and keystore found, elasticsearch.yml readable, the keystore password known and right, and on the
remote nodes `remote_cluster_port` free (or already Elasticsearch's own remote cluster server).
"""

from __future__ import annotations

import shlex
import socket

from esremote.cluster.facts import NodeFacts
from esremote.errors import ConfigError, EsRemoteError, KeystoreError
from esremote.esyml import EsYml
from esremote.esyml import _decode as decode_yml
from esremote.fanout import fan_out
from esremote.inventory import Inventory, ResolvedNode
from esremote.node_keystore import NodeKeystore
from esremote.preflight.report import NodeCheck, PreflightReport
from esremote.ssh import SSHConnection, SSHPool

_WILDCARD_HOSTS = {"0.0.0.0", "*", "::", "[::]", "[::ffff:0.0.0.0]"}


def _node_checks(report: PreflightReport, inventory: Inventory, pool: SSHPool, nodes: list[ResolvedNode],
                 max_workers: int = 8) -> None:
    def check(node: ResolvedNode) -> NodeCheck:
        return _check_node(report, inventory, pool, node)

    results = fan_out(nodes, check, max_workers=max_workers)
    for node, outcome in results.items():
        if isinstance(outcome, BaseException):  # a bug or an unexpected error: still a finding
            report.add("ssh", str(node), "block", f"node check failed: {outcome}", "see the error and retry")
            continue
        report.nodes[str(node)] = outcome


def _check_node(report: PreflightReport, inventory: Inventory, pool: SSHPool, node: ResolvedNode) -> NodeCheck:
    result = NodeCheck(node)
    where = str(node)
    try:
        conn = pool.get(node.ssh_target())
        conn.connect()
        result.reachable = True
        report.add("ssh", where, "ok", f"reachable as {conn.identity()[1]}")
        if node.ssh.sudo:
            conn.run("true", sudo=True)
            result.sudo = True
            report.add("sudo", where, "ok", "sudo works")
    except EsRemoteError as exc:
        step = "sudo" if result.reachable else "ssh"
        report.add(step, where, "block", str(exc), "fix SSH access (address, key, known_hosts, sudoers) for "
                   "this node")
        return result
    sudo = bool(node.ssh.sudo)
    try:
        _paths(report, conn, node, result, sudo)
        if result.config:
            _read_yml(report, conn, node, result, sudo)
        if result.keystore and result.es_home:  # the password check runs es_home's keystore CLI
            _keystore(report, conn, node, result)
        if node.role == "remote":
            _port(report, inventory, conn, node, result)
    except EsRemoteError as exc:
        report.add("node", where, "block", str(exc), "fix the node access and retry")
    return result


def _paths(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck, sudo: bool) -> None:
    paths = {"es_home": f"{node.es_home}/bin/elasticsearch-keystore", "config": str(node.yml_path),
             "keystore": str(node.keystore_path)}
    script = "; ".join(f"if [ -e {shlex.quote(p)} ]; then echo y; else echo n; fi" for p in paths.values())
    answers = conn.run(script, sudo=sudo).stdout.split()
    where = str(node)
    for (name, path), answer in zip(paths.items(), answers):
        found = answer == "y"
        setattr(result, name, found)
        if found:
            report.add(name, where, "ok", f"{path} found")
        elif name == "keystore":
            report.add(name, where, "warn", f"no keystore at {path}",
                       "Elasticsearch creates one on first start; esremote will create it when it adds credentials")
        else:
            what = "es_home" if name == "es_home" else "config_dir"
            report.add(name, where, "block", f"{path} not found", f"set {what} for this node in the inventory")


def _read_yml(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck,
              sudo: bool) -> None:
    data = conn.read_file(str(node.yml_path), sudo=sudo)
    source = f"{node}:{node.yml_path}"
    try:  # not UTF-8 is refused here: Elasticsearch would not read it, and no edit could keep it
        result.yml = EsYml.parse(decode_yml(data, source), source=source).flat()
    except ConfigError as exc:
        report.add("config", str(node), "block", str(exc), "fix elasticsearch.yml on this node")


def _keystore(report: PreflightReport, conn: SSHConnection, node: ResolvedNode, result: NodeCheck) -> None:
    where = str(node)
    password = node.keystore_password.resolve() if node.keystore_password is not None else None
    # As the keystore file's owner (root in a package install), like every keystore CLI run.
    keystore = NodeKeystore(conn, es_home=str(node.es_home), config_dir=str(node.config_dir),
                            password=password, sudo=bool(node.ssh.sudo))
    result.keystore_protected = keystore.has_password()
    if not result.keystore_protected:
        report.add("keystore password", where, "ok", "keystore has no password")
        return
    if password is None:
        report.add("keystore password", where, "block", "the keystore is password-protected and no "
                   "password is configured", "set keystore_password (a secret reference) for this cluster")
        return
    try:
        keystore.list()
    except KeystoreError as exc:
        report.add("keystore password", where, "block", str(exc),
                   f"set keystore_password of cluster {node.cluster} to this keystore's password "
                   f"({node.keystore_password.describe()})")
        return
    report.add("keystore password", where, "ok", "password-protected; the configured password opens it")


def _port(report: PreflightReport, inventory: Inventory, conn: SSHConnection, node: ResolvedNode,
          result: NodeCheck) -> None:
    port = inventory.cluster(node.cluster).remote_cluster_port
    where = str(node)
    facts = report.clusters.get(node.cluster)
    own = facts.node(node.name) if facts else None
    in_use, how = _listening(conn, node, own, port)
    result.port_free = not in_use
    if not in_use:
        report.add("port", where, "ok", f"port {port} is free ({how})")
    elif own is not None and (own.remote_cluster_address or "").endswith(f":{port}"):
        report.add("port", where, "ok", f"port {port} is already Elasticsearch's remote cluster server "
                   f"({own.remote_cluster_address})")
    else:
        report.add("port", where, "block", f"port {port} is already in use ({how})",
                   f"stop what listens on {port}, or set remote_cluster_port for this cluster to a free port")


def _listening(conn: SSHConnection, node: ResolvedNode, own: NodeFacts | None, port: int) -> tuple[bool, str]:
    """Whether something listens on `port` on the node's addresses: `ss -ltn` on the node, else a
    TCP connect from here."""
    result = conn.run("ss -ltnH", check=False)
    addresses = {node.address, *_resolved(node.address), *([own.ip] if own and own.ip else [])}
    if result.exit_code == 0:
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            host, _, listen_port = fields[3].rpartition(":")
            host = host.split("%", 1)[0]
            if listen_port == str(port) and (host in _WILDCARD_HOSTS or host.strip("[]") in addresses):
                return True, f"ss: {fields[3]} is listening"
        return False, "ss -ltn"
    try:
        with socket.create_connection((node.address, port), timeout=3):
            return True, f"a TCP connect to {node.address}:{port} succeeded"
    except OSError:
        return False, f"a TCP connect to {node.address}:{port} was refused"


def _resolved(address: str) -> set[str]:
    try:
        return {info[4][0] for info in socket.getaddrinfo(address, None)}
    except OSError:
        return set()
