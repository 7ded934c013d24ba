"""`esremote diagnose --inventory FILE [--alias A]`: what is wrong with an alias's link, and the fix
(es-facts §9), from every local node's `_remote/info`, the link's settings and the nodes' logs read
over SSH. Changes nothing. Exit 0 when every alias is healthy, 1 when not (the cause is printed),
2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from esremote.cli.migrate import ALIASES, INVENTORY, Outcome


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)


def diagnose(inventory: Path = INVENTORY, alias: Optional[list[str]] = ALIASES,
             wait: float = typer.Option(3.0, "--wait", min=0, help="Seconds a node's alias may take to connect."),
             output: str = typer.Option("text", "--output", "-o", metavar="FORMAT",
                                        help="The report as text, or as json (stdout holds only the JSON)."),
             ) -> None:
    """Find why an alias's link fails, and how to fix it (Elastic's troubleshooting causes). Changes nothing."""
    import logging  # noqa: PLC0415

    from esremote.cli.progress import check_output  # noqa: PLC0415
    from esremote.diagnosis import diagnose_aliases  # noqa: PLC0415
    from esremote.inventory import load_inventory  # noqa: PLC0415

    check_output(output)
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)  # its retry chatter is not for users
    report = diagnose_aliases(load_inventory(inventory), list(alias or []), wait=wait)
    if output == "json":
        from esremote.redact import default_redactor  # noqa: PLC0415

        typer.echo(default_redactor.redact(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str)))
    else:
        typer.echo(report.to_text())
    if not report.healthy:
        failing = [a.alias for a in report.aliases if not a.healthy]
        raise Outcome(f"alias {', '.join(failing)}: not healthy (the cause and its fix are above)", 1)
