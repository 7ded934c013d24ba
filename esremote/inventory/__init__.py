"""The inventory: clusters, their nodes, how to reach them, and which alias links which clusters.

`load_inventory(path)` reads the YAML file (schema: deployments/inventory.example.yml) into pydantic
models and turns any problem into one `InventoryError` naming file, line and field. `dump_inventory`
writes YAML that `load_inventory` reads back equal. `Inventory.nodes(cluster)` gives each node's
effective settings (`ResolvedNode`), merged:

    SSH:       inventory `ssh`  <  cluster `ssh`  <  node `ssh`
    the rest:  cluster defaults <  node overrides (es_home, config_dir, service_user, restart_command)

Paths on this machine (ca_cert, ssh key_file/known_hosts, secret files) get `~` expanded and are
taken relative to the inventory file's directory. Paths on the nodes (es_home, config_dir) are
POSIX paths that must be absolute; they are never touched locally.
Secrets are `SecretRef`s, resolved only when something calls `.resolve()`.
"""

from esremote.inventory.models import (AliasLink, Auth, Cluster, Inventory, Node, NodeSSH, ResolvedNode,
                                       SSHSettings)
from esremote.inventory.yaml_file import dump_inventory, load_inventory
from esremote.secrets import SecretRef

__all__ = [
    "AliasLink", "Auth", "Cluster", "Inventory", "Node", "NodeSSH", "ResolvedNode", "SSHSettings",
    "SecretRef", "dump_inventory", "load_inventory",
]
