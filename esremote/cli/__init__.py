"""The `esremote` command. Each sub-command group lives in its own module; this one only wires
them together and turns every esremote error into one line on stderr with a meaningful exit code."""

from __future__ import annotations

import os
import sys

import typer

from esremote.errors import EsRemoteError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Migrate Elasticsearch remote clusters to API-key security, in place.")


def _register() -> None:
    from esremote.cli import certs, keystore, yml  # noqa: PLC0415 (keep start-up cheap)

    app.add_typer(keystore.app, name="keystore", help="Read and edit an Elasticsearch keystore file.")
    app.add_typer(yml.app, name="yml", help="Edit elasticsearch.yml, keeping comments and layout.")
    app.add_typer(certs.app, name="certs", help="Make a CA and node certificates (PKCS#12).")
    for name in ("lab", "ops"):
        try:
            module = __import__(f"esremote.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"esremote.cli.{name}":
                raise
            continue
        module.register(app)


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit: the only way a command reports an error."""
    typer.echo(f"esremote: error: {message}", err=True)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    _register()
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="esremote", standalone_mode=False)
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
            typer.echo(f"esremote: error: {exc.format_message()}", err=True)
            return exc.exit_code if isinstance(exc.exit_code, int) and exc.exit_code else 2
        if os.environ.get("ESREMOTE_DEBUG"):  # last resort: no traceback unless asked for
            raise
        typer.echo(f"esremote: internal error: {kind}: {exc} "
                   "(set ESREMOTE_DEBUG=1 for a traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
