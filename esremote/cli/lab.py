"""`esremote lab up|status|down|fault`: the lab, a twin of two clusters on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from esremote.errors import ConfigError, EsRemoteError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Build, start, inspect and stop the lab (local + remote clusters on loopback).")

FAULT_HELP = ("node-fails-to-start, slow-start, remote-port-blocked, ssh-drop, api-key-invalidated, "
              "http-overload, wrong-credentials")


class NodesDown(EsRemoteError):
    """`lab status` when a node is down: systemctl's "inactive" code."""

    exit_code = 3


def register(app_root: typer.Typer) -> None:
    app_root.add_typer(app, name="lab", help="The lab: build, start, inspect and stop twin clusters.")


@app.command()
def up(
    dir: Path = typer.Option(..., "--dir", help="Lab directory (new, empty, or a lab built before)."),
    local_nodes: Optional[int] = typer.Option(None, help="Nodes of the local cluster (default 2)."),
    remote_nodes: Optional[int] = typer.Option(None, help="Nodes of each remote cluster (default 2)."),
    version: Optional[str] = typer.Option(None, help="Elasticsearch version the clusters play (default 8.17.0)."),
    remote_version: Optional[str] = typer.Option(None, help="Version of the remote clusters (default: --version)."),
    license: Optional[str] = typer.Option(None, help="Licence: basic, trial or enterprise (default trial)."),
    remote_license: Optional[str] = typer.Option(None, help="Licence of the remote clusters (default: --license)."),
    ssh: Optional[str] = typer.Option(None, help="SSH endpoints: embedded (port 2222) or openssh (2223)."),
    sudo: Optional[str] = typer.Option(None, help="With --ssh openssh as root, the login user's sudo: nopasswd "
                                                  "(user esremote, sudo -n; default) or password (user "
                                                  "esremote-pw, password in DIR/secrets)."),
    start_delay: Optional[float] = typer.Option(None, help="Seconds each node's service waits before starting."),
    mode: Optional[str] = typer.Option(None, help="Connection mode of the alias: proxy or sniff."),
    alias_in_yml: Optional[bool] = typer.Option(None, "--alias-in-yml/--alias-dynamic",
                                                help="Define the alias in the local elasticsearch.yml."),
    keystore_password: Optional[bool] = typer.Option(None, "--keystore-password/--no-keystore-password",
                                                     help="Password-protect the keystores."),
    remotes: Optional[int] = typer.Option(None, help="Remote clusters (remote, remote2, ...), one alias each."),
    net: Optional[int] = typer.Option(None, help="Addresses 127.NET.x.y (default 0), to run labs side by side."),
    seed: bool = typer.Option(True, "--seed/--no-seed", help="Seed users, the alias and cross-cluster work."),
    files_only: Optional[bool] = typer.Option(
        None, "--files-only/--with-nodes",
        help="Homes and SSH endpoints only, no Elasticsearch process (nothing on 9200): for the per-node "
             "steps on many nodes (up to 64 per cluster)."),
) -> None:
    """Build (or reuse) and start the lab; print the inventory's path."""
    from esremote.lab.ops import control  # noqa: PLC0415

    given = {k: v for k, v in dict(local_nodes=local_nodes, remote_nodes=remote_nodes, version=version,
                                   remote_version=remote_version, license=license,
                                   remote_license=remote_license, ssh=ssh, sudo=sudo, start_delay=start_delay,
                                   mode=mode, alias_in_yml=alias_in_yml, keystore_password=keystore_password,
                                   remotes=remotes, net=net, files_only=files_only).items() if v is not None}
    layout = control.up(dir, given, seed=seed)
    say_which_checks_are_off()
    clusters = ", ".join(f"{c.name} ({len(c.nodes)} node{'s' if len(c.nodes) != 1 else ''}, {c.version})"
                         for c in layout.clusters)
    only = ", files only (no Elasticsearch process)" if layout.options.files_only else ""
    typer.echo(f"lab up: {clusters}{only}; SSH {layout.options.ssh} on port {layout.nodes()[0].ssh_port}; "
               f"details in {layout.lab_json}", err=True)
    typer.echo(str(layout.inventory))


def say_which_checks_are_off() -> None:
    from esremote.lab.ops import package_layout  # noqa: PLC0415

    if not package_layout.active():
        typer.echo(package_layout.off_note(), err=True)


def _lab_dir(dir_arg: Optional[Path], dir_opt: Optional[Path]) -> Path:
    chosen = dir_opt or dir_arg
    if chosen is None:
        raise ConfigError("which lab? give its directory: DIR or --dir DIR")
    return chosen


@app.command()
def status(dir_arg: Optional[Path] = typer.Argument(None, metavar="[DIR]"),
           dir: Optional[Path] = typer.Option(None, "--dir", help="Lab directory.")) -> None:
    """Each node up or down, each cluster's health. Exit 0 when every node is up, 3 otherwise."""
    from esremote.lab.ops import control  # noqa: PLC0415

    nodes, health = control.status(_lab_dir(dir_arg, dir))
    for cluster, state in health.items():
        typer.echo(f"cluster {cluster}: {state}")
        for node in (n for n in nodes if n.cluster == cluster):
            if node.ssh is not None:
                state = f"SSH {'up' if node.ssh else 'down'}"
            else:
                state = f"up (pid {node.pid})" if node.up else "down"
            typer.echo(f"  {node.name:<12} {node.ip:<12} {state}")
    if down_nodes := [n.name for n in nodes if not n.up]:
        raise NodesDown(f"{len(down_nodes)} of {len(nodes)} nodes are down: {', '.join(down_nodes)}")


@app.command()
def down(dir_arg: Optional[Path] = typer.Argument(None, metavar="[DIR]"),
         dir: Optional[Path] = typer.Option(None, "--dir", help="Lab directory.")) -> None:
    """Stop every process of the lab (nodes, SSH endpoints, writer), by pid."""
    from esremote.lab.ops import control  # noqa: PLC0415

    stopped = control.down(_lab_dir(dir_arg, dir))
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def fault(dir: Path = typer.Argument(..., metavar="DIR", help="Lab directory."),
          name: str = typer.Argument(..., metavar="NAME", help=FAULT_HELP),
          node: Optional[str] = typer.Option(None, help="Only this node (default: every node)."),
          off: bool = typer.Option(False, "--off", help="Switch the fault off."),
          set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                         help="A fault option (value read as JSON when it parses).")) -> None:
    """Switch a fault on (or --off) for the lab's nodes and SSH endpoints."""
    from esremote.lab.ops import control  # noqa: PLC0415

    typer.echo(control.fault(dir, name, node=node, off=off, options=_fault_options(set_)))


def _fault_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == "nodes":
            raise ConfigError(f"--set {pair!r}: write KEY=VALUE (and use --node for nodes)")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options
