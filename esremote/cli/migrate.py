"""`esremote plan | migrate | rollback | verify | demo`: the migration's own verbs.

`plan` works without Prefect (facts and the plan, nothing changes). `migrate` and `rollback` run
the Prefect flows: an ephemeral Prefect (a temporary local server) unless PREFECT_API_URL names a
server. Exit codes of `migrate`: 0 migrated and verified, 3 rolled back, 4 stopped before any
disruption because the rest did not fit the maintenance window, 5 another run holds the cluster pair
(--no-wait), 1 otherwise (2: bad input).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from esremote.errors import ConfigError, EsRemoteError

EXIT_ROLLED_BACK = 3


class Outcome(EsRemoteError):
    """A finished command whose result is not plain success: its exit code, and one line on stderr.
    (The CLI root turns esremote errors into their exit code; a typer.Exit code would be lost.)"""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _exit(code: int, message: str) -> None:
    if code:
        raise Outcome(message, code)

INVENTORY = typer.Option(..., "--inventory", "-i", help="Inventory file (clusters, nodes, aliases).")
ALIASES = typer.Option(None, "--alias", "-a", help="Alias to migrate (repeatable; default: every alias).")
VERBOSE = typer.Option(False, "--verbose", "-v",
                       help="Show the full log live (Prefect's own lines) besides the progress display.")
OUTPUT = typer.Option("text", "--output", "-o", metavar="FORMAT",
                      help="The summary as text, or as json (then stdout holds only the JSON).")
ACCESS = typer.Option("role-copy", "--access", metavar="MODE",
                      help="The cross-cluster API key's access: role-copy (what the remote roles grant) or "
                           "from-usage (only what the alias's work and the local roles' remote_indices read; "
                           "the plan shows the difference).")
SPLIT_SEARCH_ALIAS = typer.Option(
    None, "--split-search-alias", metavar="ALIAS=NAME",
    help="Consent to split a key Elasticsearch refuses (DLS/FLS search with replication): ALIAS keeps the "
         "replication; a new alias NAME gets a second key with the search access, and the transforms, datafeeds "
         "and local roles that search through ALIAS move to it. Users must then search NAME:index. Repeatable.")
STRONG_IDENTITY_HELP = ("Technical preview, Elasticsearch 9.3+ on both clusters: sign cross-cluster requests "
                        "with a certificate per alias and bind the API key to its DN.")


def split_pairs(values: list[str] | None) -> dict[str, str]:
    """`--split-search-alias ALIAS=NAME` values as a mapping; a bad one is one line naming the option."""
    pairs: dict[str, str] = {}
    for value in values or []:
        alias, sep, name = value.partition("=")
        if not sep or not alias.strip() or not name.strip():
            raise ConfigError(f"--split-search-alias: {value!r} is not ALIAS=NAME (e.g. my_remote=my_remote_search)")
        if alias.strip() in pairs:
            raise ConfigError(f"--split-search-alias: {alias.strip()} is given twice; give each alias once")
        pairs[alias.strip()] = name.strip()
    return pairs


def _prefect_environment() -> None:
    """Settings for the ephemeral Prefect of a terminal run: no telemetry, and patience with a
    busy machine (the temporary server's first start runs its database migrations)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
    app.command("migrate")(migrate)
    app.command("rollback")(rollback)
    app.command("verify")(verify)
    app.command("demo")(demo)


def _params(inventory: Path, aliases: list[str] | None, **extra):
    """Checked parameters: the model's rules, and the aliases against the inventory (before any
    Prefect run starts, so bad input changes nothing)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from esremote.inventory import load_inventory  # noqa: PLC0415
    from esremote.params import MigrationParams  # noqa: PLC0415

    logging.getLogger("elastic_transport").setLevel(logging.ERROR)  # its retry chatter is not for users
    try:
        params = MigrationParams(inventory=inventory, aliases=list(aliases or []), **extra)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "parameters"
        raise ConfigError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None
    params.selected_aliases(load_inventory(params.inventory))
    return params


def plan(inventory: Path = INVENTORY, alias: Optional[list[str]] = ALIASES,
         json_out: bool = typer.Option(False, "--json", help="Print the plan as JSON instead of Markdown."),
         key_expiration: Optional[str] = typer.Option(None, "--key-expiration",
                                                      help="Plan the key with this expiration (e.g. 90d)."),
         access: str = ACCESS, strong_identity: bool = typer.Option(False, "--strong-identity", help=STRONG_IDENTITY_HELP),
         split_search_alias: Optional[list[str]] = SPLIT_SEARCH_ALIAS,
         ) -> None:
    """Print every change the migration would make. Changes nothing."""
    import json  # noqa: PLC0415

    from esremote.cli.keys import check_key_expiration  # noqa: PLC0415
    from esremote.plan import build_plan  # noqa: PLC0415
    from esremote.tasks.facts import collect_facts  # noqa: PLC0415
    from esremote.tasks.runtime import close_run, open_run  # noqa: PLC0415

    key_expiration = check_key_expiration(key_expiration)
    with tempfile.TemporaryDirectory(prefix="esremote-plan-") as state:
        params = _params(inventory, alias, dry_run=True, state_dir=Path(state), key_expiration=key_expiration,
                         access=access, strong_identity=strong_identity,
                         split_search_alias=split_pairs(split_search_alias))
        run = open_run(params)
        try:
            facts, _ = collect_facts(run)
            result = build_plan(run.params, facts)
        finally:
            close_run(run.id)
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        typer.echo(result.to_markdown())


def migrate(inventory: Path = INVENTORY, alias: Optional[list[str]] = ALIASES,
            yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before the disruptive phases."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Preflight and plan only; change nothing."),
            resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_ID",
                                                 help="Resume a run: done steps are skipped."),
            connection_mode: str = typer.Option("keep", help="Mode of the re-added alias: keep, proxy, sniff."),
            restart_strategy: str = typer.Option("auto", help="Credentials: auto, reload, restart."),
            link_timeout: float = typer.Option(60.0, help="Seconds a re-added alias may take to connect."),
            no_wait: bool = typer.Option(False, "--no-wait",
                                         help="If another run is migrating the same cluster pair, stop at once "
                                              "(exit 5) naming it, instead of waiting for it."),
            retire_trust: bool = typer.Option(False, "--retire-trust",
                                              help="Afterwards, pause for approval (Prefect UI) to retire "
                                                   "certificate trust."),
            key_expiration: Optional[str] = typer.Option(
                None, "--key-expiration", help="Expiration of the cross-cluster API key this run creates, an "
                                               "Elasticsearch duration such as 90d (default: never)."),
            access: str = ACCESS,
            strong_identity: bool = typer.Option(False, "--strong-identity", help=STRONG_IDENTITY_HELP),
            split_search_alias: Optional[list[str]] = SPLIT_SEARCH_ALIAS,
            verbose: bool = VERBOSE, output: str = OUTPUT,
            ) -> None:
    """Migrate the aliases to API-key security; roll back by itself if reconnect, verify or resume fails.

    The terminal shows the progress (phase, node, what the run waits for); the full log is in the
    run's directory (run.log), live with --verbose."""
    from esremote.cli.keys import check_key_expiration  # noqa: PLC0415
    from esremote.cli.progress import check_output, run_in_terminal  # noqa: PLC0415

    check_output(output)
    params = _params(inventory, alias, dry_run=dry_run, run_id=resume, connection_mode=connection_mode,
                     restart_strategy=restart_strategy, link_timeout_s=link_timeout, no_wait=no_wait,
                     retire_trust=retire_trust, key_expiration=check_key_expiration(key_expiration),
                     access=access, strong_identity=strong_identity,
                     split_search_alias=split_pairs(split_search_alias))
    if resume:
        params = _resumed(params, resume)
    if not (yes or dry_run):
        _confirm(params)
    _prefect_environment()
    from esremote.flows.migrate import run_migration  # noqa: PLC0415

    summary, _ = run_in_terminal(run_migration, params, "migrate", verbose=verbose, output=output)
    _exit(summary.exit_code, f"migration {summary.status} (run {summary.run_id}): {summary.message}")


def _resumed(params, run_id: str):
    """The parameters the run started with (the journal has them), with this command's inventory."""
    from esremote.journal import Journal  # noqa: PLC0415

    journal = Journal.open(run_id, state_dir=params.state_dir)
    recorded = dict(journal.params)
    recorded.update(inventory=str(params.inventory), run_id=run_id, dry_run=params.dry_run)
    if params.aliases:
        recorded["aliases"] = params.aliases
    from esremote.params import MigrationParams  # noqa: PLC0415

    return MigrationParams.model_validate(recorded)


def _confirm(params) -> None:
    """Show the plan, then ask (on a terminal) before anything changes."""
    if not sys.stdin.isatty():
        raise ConfigError("migrate changes the clusters: confirm with --yes (or look first with --dry-run)")
    typer.echo("esremote migrate: preflight and plan come first; the plan is shown before any change.")
    if not typer.confirm("Migrate now (rollback is automatic if reconnect or verification fails)?"):
        raise typer.Abort()


def rollback(inventory: Path = INVENTORY,
             run_id: str = typer.Argument(..., metavar="RUN_ID", help="The run to roll back."),
             verbose: bool = VERBOSE, output: str = OUTPUT) -> None:
    """Undo a run from its journal: certificate-model link and work back, then every node's files."""
    from esremote.cli.progress import check_output, run_in_terminal  # noqa: PLC0415

    check_output(output)
    params = _resumed(_params(inventory, None, run_id=run_id), run_id)
    _prefect_environment()
    from esremote.flows.rollback import run_rollback  # noqa: PLC0415

    summary, _ = run_in_terminal(run_rollback, params, "rollback", verbose=verbose, output=output)
    _exit(0 if summary.status == "rolled-back" else 1, f"rollback of run {run_id} failed: {summary.message}")


def verify(inventory: Path = INVENTORY, alias: Optional[list[str]] = ALIASES) -> None:
    """Check each alias: connected with an API key, cross-cluster search works. Changes nothing."""
    from esremote.tasks.verification import verify_aliases  # noqa: PLC0415
    from esremote.tasks.runtime import close_run, open_run  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="esremote-verify-") as state:
        params = _params(inventory, alias, dry_run=True, state_dir=Path(state))
        run = open_run(params)
        try:
            results = verify_aliases(run)
        finally:
            close_run(run.id)
    for result in results:
        typer.echo(result.to_text())
    failed = [r.alias for r in results if not r.ok]
    _exit(1 if failed else 0, f"verification failed for {', '.join(failed)}")


def _free_net() -> int:
    """An address range 127.NET.x.y where nothing answers yet (labs of others may run beside)."""
    import random  # noqa: PLC0415
    import socket  # noqa: PLC0415

    for net in [0] + random.sample(range(20, 250), 40):
        taken = False
        for port in (9200, 2222):
            with socket.socket() as sock:
                sock.settimeout(0.2)
                taken = taken or sock.connect_ex((f"127.{net}.1.1", port)) == 0
        if not taken:
            return net
    raise ConfigError("no free 127.NET address range for the lab; stop other labs (esremote lab down)")


def demo(keep: bool = typer.Option(False, "--keep", help="Leave the lab and a local Prefect server running "
                                                        "afterwards, and print where to look at the run."),
         lab_dir: Optional[Path] = typer.Option(None, "--dir", help="Lab directory (default: a temporary one)."),
         verbose: bool = VERBOSE, output: str = OUTPUT,
         ) -> None:
    """A full rehearsal on the lab: lab up, migrate --yes, summary, lab down (unless --keep)."""
    from esremote.cli.lab import say_which_checks_are_off  # noqa: PLC0415
    from esremote.cli.prefect_server import LocalServer  # noqa: PLC0415
    from esremote.cli.progress import check_output, run_in_terminal  # noqa: PLC0415
    from esremote.lab.ops import control  # noqa: PLC0415

    check_output(output)

    def say(text: str) -> None:
        typer.echo(f"esremote demo: {text}", err=True)

    owned = lab_dir is None
    directory = Path(tempfile.mkdtemp(prefix="esremote-demo-")) if owned else lab_dir
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    server = None
    if keep and not os.environ.get("PREFECT_API_URL"):
        # Started first: it migrates its database while the lab starts.
        server = LocalServer.start(directory / "prefect")
        say(f"starting a Prefect server on {server.url} (it stays up afterwards; log {server.log_file})")
    say(f"starting the lab in {directory}")
    code, message, out = 1, "the rehearsal did not finish", None
    try:
        layout = control.up(directory, {} if (directory / "lab.json").exists() else {"net": _free_net()})
        say(f"lab up; inventory {layout.inventory}")
        say_which_checks_are_off()
        params = _params(Path(layout.inventory), None, state_dir=directory / "state")
        if server is not None:
            server.wait_ready()
            os.environ["PREFECT_API_URL"] = server.api_url  # before Prefect is imported here
        _prefect_environment()
        from esremote.flows.migrate import run_migration  # noqa: PLC0415

        summary, out = run_in_terminal(run_migration, params, "demo", verbose=verbose, output=output)
        code, message = summary.exit_code, f"migration {summary.status}: {summary.message}"
    except EsRemoteError as exc:
        code, message = exc.exit_code, str(exc)
        if server is not None and not server.healthy():
            server.stop()
            server = None
    finally:
        if not keep:
            stopped = control.down(directory)
            say(f"lab down ({len(stopped)} process(es) stopped)")
    if keep:
        _say_kept(directory, server, out, to_stderr=output == "json")
    _exit(code, message)


def _say_kept(directory: Path, server, out, *, to_stderr: bool) -> None:
    """Where the kept rehearsal can be looked at, and how to stop it."""
    from esremote.cli.progress import prefect_run_url  # noqa: PLC0415

    url = prefect_run_url(out.flow_run_id) if out is not None else None
    lines = ["esremote demo: the lab is still running: esremote lab status " + str(directory)]
    if url:
        lines.append(f"esremote demo: look at the run in the Prefect UI: {url}")
    elif server is not None:
        lines.append(f"esremote demo: the Prefect UI: {server.url}")
    stop = f"esremote lab down {directory}"
    if server is not None:
        stop += f"; kill {server.pid}  # the Prefect server"
    lines.append(f"esremote demo: stop it all with: {stop}")
    typer.echo("\n".join(lines), err=to_stderr)
