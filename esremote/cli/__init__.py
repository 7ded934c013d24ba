"""The `esremote` command. Each sub-command group lives in its own module; this one only wires
them together and turns every esremote error into one line on stderr with a meaningful exit code."""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import typer

from esremote.errors import EsRemoteError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Migrate Elasticsearch remote clusters to API-key security, in place.")


@app.callback()
def _root() -> None:
    """Keeps `esremote` a group of commands even when a module registers a single command (typer
    would otherwise run that command for any argument list)."""


# Sub-command groups: name -> (module, help). Each module holds a typer app `app`, or a
# `register(app)` function when it adds several commands. Only the group a command line names is
# imported, so `esremote keystore list` does not pay for Prefect or the lab.
GROUPS = {
    "keystore": ("esremote.cli.keystore", "Read and edit an Elasticsearch keystore file."),
    "yml": ("esremote.cli.yml", "Edit elasticsearch.yml, keeping comments and layout."),
    "certs": ("esremote.cli.certs", "Make a CA and node certificates (PKCS#12)."),
    "lab": ("esremote.cli.lab", "Run a twin of two Elasticsearch clusters on this machine."),
}
# Top-level commands registered by one module (the migration's own verbs).
COMMANDS = {name: "esremote.cli.migrate" for name in ("plan", "migrate", "rollback", "verify", "demo")}
COMMANDS.update({name: "esremote.cli.keys" for name in ("keys", "rotate")})  # the key's life afterwards
COMMANDS["diagnose"] = "esremote.cli.diagnose"


def _register(argv: list[str]) -> None:
    wanted = next((a for a in argv if not a.startswith("-")), None)
    modules: dict[str, str | None] = {}
    if wanted in GROUPS:
        modules[GROUPS[wanted][0]] = wanted
    elif wanted in COMMANDS:
        modules[COMMANDS[wanted]] = None
    else:  # help, or an unknown command: show everything there is
        modules = {mod: name for name, (mod, _) in GROUPS.items()}
        modules.update({mod: None for mod in COMMANDS.values()})
    for module_name, group in modules.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if hasattr(module, "register"):
            module.register(app)
        else:
            app.add_typer(module.app, name=group, help=GROUPS[group][1])


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit: the only way a command reports an error."""
    typer.echo(f"esremote: error: {message}", err=True)
    raise typer.Exit(code)


def quiet_library_warnings() -> None:
    """Libraries' deprecation notices are for their users' developers, not for the operator's
    terminal, where they would also break the one-line error. `-W` / PYTHONWARNINGS still show them."""
    if not sys.warnoptions:
        warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    quiet_library_warnings()
    _register(argv)
    command = typer.main.get_command(app)
    try:
        # Without standalone mode click returns a `typer.Exit`'s code instead of exiting.
        result = command.main(args=argv, prog_name="esremote", standalone_mode=False)
    except EsRemoteError as exc:
        typer.echo(f"esremote: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("esremote: interrupted", err=True)
        return 130
    except Exception as exc:
        # typer carries its own copy of click, so its exceptions are recognised by shape.
        kind = type(exc).__name__
        if kind == "Exit":
            return exc.exit_code
        if kind == "Abort":
            typer.echo("esremote: aborted", err=True)
            return 130
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # A group called without its command (click's NoArgsIsHelpError) has shown its help and
            # carries no message of its own.
            message = exc.format_message() or "a command is missing: give one of those listed above"
            typer.echo(f"esremote: error: {message}", err=True)
            return exc.exit_code if isinstance(exc.exit_code, int) and exc.exit_code else 2
        if os.environ.get("ESREMOTE_DEBUG"):  # last resort: no traceback unless asked for
            raise
        typer.echo(f"esremote: internal error: {kind}: {exc} "
                   "(set ESREMOTE_DEBUG=1 for a traceback)", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
