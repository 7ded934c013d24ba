"""What a built lab tells its users: `DIR/lab.json` (for tests and scripts) and `DIR/inventory.yml`
(an esremote inventory usable as is). Secrets in the inventory are `{file: ...}` references to the
0600 files in `DIR/secrets/`; lab.json holds the passwords themselves and is 0600 too.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict
from pathlib import Path, PurePosixPath

from esremote.errors import ConfigError
from esremote.files import atomic_write
from esremote.inventory import AliasLink, Auth, Cluster, Inventory, Node, SSHSettings, dump_inventory
from esremote.lab.ops import package_layout, sshlab
from esremote.lab.ops.builder import (ELASTIC_USER, LAB_USERS, REMOTE_CLUSTER_PORT, SSH_PORTS, LabOptions, Layout, plan,
                                  read_secret)
from esremote.secrets import SecretRef

LAB_JSON_VERSION = 1


def lab_json(layout: Layout) -> dict:
    clusters = {}
    for cluster in layout.clusters:
        password_file = layout.elastic_password_file(cluster.name)
        clusters[cluster.name] = {
            "role": cluster.role,
            "url": cluster.url,
            "urls": [f"https://{n.ip}:{n.http_port}" for n in cluster.nodes],
            "ca_cert": str(layout.http_ca),
            "username": ELASTIC_USER,
            "password": read_secret(password_file),
            "password_file": str(password_file),
            "version": cluster.version,
            "license": cluster.license,
            "keystore_password_file": _str(layout.keystore_password_file(cluster.name)),
            "nodes": [{"name": n.name, "ip": n.ip, "http_port": n.http_port, "transport_port": n.transport_port,
                       "ssh_port": n.ssh_port, "home": str(n.home)} for n in cluster.nodes],
        }
    mode, sudo = layout.options.ssh, layout.options.sudo
    sudo_password = sshlab.sudo_password_file(layout)
    return {
        "lab_json_version": LAB_JSON_VERSION,
        "dir": str(layout.dir),
        "options": asdict(layout.options),
        "clusters": clusters,
        "ssh": {"mode": mode, "user": sshlab.login_user(mode, sudo), "key_file": str(sshlab.key_file(layout)),
                "known_hosts": str(sshlab.known_hosts(layout)), "sudo": sshlab.uses_sudo(mode),
                "sudo_password_file": _str(sudo_password)},
        "alias": next(iter(layout.aliases())),
        "aliases": layout.aliases(),
        "inventory": str(layout.inventory),
        "transport_ca": str(layout.transport_ca),
        "users": {user: {"cluster": layout.local.name, "password_file": str(layout.user_password_file(user))}
                  for user in LAB_USERS},
    }


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def write_lab_json(layout: Layout, extra: dict | None = None) -> None:
    data = lab_json(layout) | (extra or {})
    atomic_write(layout.lab_json, (json.dumps(data, indent=2) + "\n").encode(), mode=0o600)


def read_lab_json(lab_dir: str | os.PathLike) -> dict:
    path = Path(lab_dir) / "lab.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--dir: {lab_dir} holds no lab (no lab.json); run `esremote lab up --dir "
                          f"{lab_dir}` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); rebuild the lab in a new directory") from None


def load_layout(lab_dir: str | os.PathLike) -> Layout:
    """The layout of a built lab, from its lab.json."""
    data = read_lab_json(lab_dir)
    return plan(Path(lab_dir).absolute(), LabOptions.from_dict(data.get("options", {})))


def inventory(layout: Layout) -> Inventory:
    mode = layout.options.ssh
    sudo_password = sshlab.sudo_password_file(layout)  # --sudo password: a reference, never the value
    ssh = SSHSettings(user=sshlab.login_user(mode, layout.options.sudo), port=SSH_PORTS[mode],
                      key_file=sshlab.key_file(layout), known_hosts=sshlab.known_hosts(layout),
                      trust_on_first_use=False, sudo=sshlab.uses_sudo(mode),
                      sudo_password=SecretRef(file=sudo_password) if sudo_password else None)
    clusters = {}
    for cluster in layout.clusters:
        password_file = layout.keystore_password_file(cluster.name)
        nodes = [Node(name=n.name, address=n.ip, es_home=PurePosixPath(n.home),
                      config_dir=PurePosixPath(n.home / "config"),
                      restart_command=f"{n.service} restart") for n in cluster.nodes]
        fields = dict(role=cluster.role, urls=[f"https://{n.ip}:{n.http_port}" for n in cluster.nodes],
                      ca_cert=layout.http_ca,
                      auth=Auth(username=ELASTIC_USER,
                                password=SecretRef(file=layout.elastic_password_file(cluster.name))),
                      service_user=package_layout.SERVICE_USER if package_layout.active() else getpass.getuser(),
                      nodes=nodes)
        if password_file is not None:
            fields["keystore_password"] = SecretRef(file=password_file)
        if cluster.role == "remote":
            fields["remote_cluster_port"] = REMOTE_CLUSTER_PORT
        clusters[cluster.name] = Cluster(**fields)
    aliases = {alias: AliasLink(local=layout.local.name, remote=remote)
               for alias, remote in layout.aliases().items()}
    return Inventory(ssh=ssh, clusters=clusters, aliases=aliases)


def write_inventory(layout: Layout) -> Path:
    atomic_write(layout.inventory, dump_inventory(inventory(layout)).encode(), mode=0o644)
    return layout.inventory
