"""`esremote keys | rotate`: living with cross-cluster API keys after the migration.

`keys` lists the cross-cluster API keys of every remote cluster of the inventory, which alias uses
each one (read from every local node's keystore over SSH), their expiry and days left, and the
orphans (keys no alias uses); `--invalidate-orphans` invalidates the orphans esremote made, after
asking (`--yes` skips the question), never a key esremote did not make. `rotate` runs the Prefect
flow `rotate-cross-cluster-key`. Exit codes of `rotate`: 0 rotated, 3 rolled back, 2 refused
(nothing changed), 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from esremote.cli.migrate import INVENTORY, Outcome, _prefect_environment
from esremote.errors import ConfigError

KEY_EXPIRATION_HELP = "Expiration of the new key, an Elasticsearch duration such as 90d."


def register(app: typer.Typer) -> None:
    app.command("keys")(keys)
    app.command("rotate")(rotate)


def check_key_expiration(value: Optional[str]) -> Optional[str]:
    """`--key-expiration` checked before anything starts: one line naming the option."""
    if value is None:
        return None
    from esremote.durations import duration_ms  # noqa: PLC0415

    duration_ms(value, "--key-expiration")
    return value.strip()


def keys(inventory: Path = INVENTORY,
         invalidate_orphans: bool = typer.Option(False, "--invalidate-orphans",
                                                 help="Invalidate the orphans esremote made (asks first)."),
         yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before invalidating."),
         warn_days: int = typer.Option(14, "--warn-days", min=0, help="Flag keys in use that expire within N days."),
         check: bool = typer.Option(False, "--check", help="Exit 1 when a key in use needs attention "
                                                           "(expires within --warn-days, expired, invalid)."),
         json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
         ) -> None:
    """List the cross-cluster API keys of every remote: users, expiry, orphans."""
    import logging  # noqa: PLC0415

    from esremote.inventory import load_inventory  # noqa: PLC0415
    from esremote.key_inventory import invalidate_orphans as invalidate  # noqa: PLC0415
    from esremote.tasks.keys import key_report  # noqa: PLC0415

    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    loaded = load_inventory(inventory)
    report, es_of = key_report(loaded)
    findings = report.findings(warn_days)
    if json_out:
        data = report.to_dict()
        data["findings"] = [f.__dict__ for f in findings]
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(report.to_text())
        typer.echo(f"expiry (warning window {warn_days} days):")
        for finding in findings:
            typer.echo(f"  {finding.level}: {finding.message}")
    if invalidate_orphans:
        orphans = report.orphans(managed_only=True)
        if not orphans:
            typer.echo("no orphan key made by esremote: nothing to invalidate")
        else:
            listing = ", ".join(f"{r.key.id} ({r.remote})" for r in orphans)
            if not yes:
                if not sys.stdin.isatty():
                    raise ConfigError(f"--invalidate-orphans would invalidate {len(orphans)} key(s) ({listing}): "
                                      "confirm with --yes")
                if not typer.confirm(f"Invalidate {len(orphans)} orphan key(s) made by esremote: {listing}?"):
                    raise typer.Abort()
            for line in invalidate(report, es_of):
                typer.echo(line)
    if check and any(f.level != "ok" for f in findings):
        raise Outcome("a key in use needs attention (see expiry above)", 1)


def rotate(inventory: Path = INVENTORY,
           alias: Optional[list[str]] = typer.Option(None, "--alias", "-a",
                                                     help="Alias whose key to rotate (repeatable; default: every alias)."),
           key_expiration: Optional[str] = typer.Option(None, "--key-expiration", help=KEY_EXPIRATION_HELP
                                                        + " Default: the old key's lifetime (never, if it had none)."),
           resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_ID",
                                                help="Resume a rotation run: done steps are skipped."),
           link_timeout: float = typer.Option(60.0, help="Seconds each node's link may take to verify."),
           ) -> None:
    """Replace the cross-cluster API key of an alias without a restart (8.13+); roll back on failure."""
    from pydantic import ValidationError  # noqa: PLC0415

    from esremote.inventory import load_inventory  # noqa: PLC0415
    from esremote.params import RotationParams  # noqa: PLC0415

    key_expiration = check_key_expiration(key_expiration)
    values = dict(inventory=inventory, aliases=list(alias or []), key_expiration=key_expiration,
                  link_timeout_s=link_timeout, run_id=resume)
    if resume:
        from esremote.flows.rotate import recorded_params  # noqa: PLC0415

        recorded = recorded_params(resume)
        values = {**recorded, "inventory": inventory, "run_id": resume}
    try:
        params = RotationParams(**values)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "parameters"
        raise ConfigError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None
    params.migration_params().selected_aliases(load_inventory(params.inventory))
    _prefect_environment()
    from esremote.flows.rotate import run_rotation  # noqa: PLC0415

    summary = run_rotation(params)
    typer.echo(summary.to_text())
    if summary.exit_code:
        raise Outcome(f"rotation {summary.status} (run {summary.run_id}): {summary.message}", summary.exit_code)
