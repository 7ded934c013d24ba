"""`esremote yml`: edit a local elasticsearch.yml, keeping comments and layout (see esremote.esyml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from esremote.errors import ConfigError, YmlError

# Not `no_args_is_help`: under the root's standalone_mode=False it surfaces as an internal error.
app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def _group(ctx: typer.Context) -> None:
    """Edit elasticsearch.yml, keeping comments and layout."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command("set")
def set_settings(
    path: Path = typer.Argument(..., help="The elasticsearch.yml to edit."),
    assignments: Optional[List[str]] = typer.Argument(
        None, metavar="KEY=VALUE...", help="Settings to give; VALUE is a YAML flow value "
        "(true, 9443, [a:9443, b:9443]); anything else is a string."),
    unset: List[str] = typer.Option([], "--unset", metavar="KEY", help="A setting to remove (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and write nothing."),
) -> None:
    """Set and remove settings by their full dotted name, wherever the file keeps them."""
    from esremote.esyml import EsYml, unified_diff  # noqa: PLC0415 (keep CLI start-up cheap)

    changes = dict(_assignment(item) for item in assignments or [])
    if not changes and not unset:
        raise ConfigError("nothing to do: give KEY=VALUE arguments or --unset KEY")
    doc = EsYml.load(path)
    old = doc.text()
    try:
        doc.update(changes, unset)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    new = doc.text()
    if new == old:
        typer.echo(f"{path}: no change needed")
        return
    if dry_run:
        typer.echo(unified_diff(old, new, str(path)), nl=False)
        return
    saved = _write_with_backup(path, new)
    typer.echo(f"{path}: updated (backup: {saved.name if saved else 'none'})")


def _write_with_backup(path: Path, text: str) -> Path | None:
    """Back `path` up beside itself, then replace it atomically; the backup's path."""
    from esremote.files import atomic_write, backup, run_stamp  # noqa: PLC0415

    try:
        saved = backup(path, run_stamp())
    except OSError as exc:
        raise YmlError(f"cannot back it up before editing ({exc.strerror or exc}); nothing was changed",
                       file=str(path)) from None
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:  # the write is atomic: the file is still the original
        raise YmlError(f"cannot write it ({exc.strerror or exc}); it is unchanged", file=str(path)) from None
    return saved


def _assignment(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{item!r}: expected KEY=VALUE (use --unset KEY to remove a setting)")
    return key.strip(), parse_value(key.strip(), text)


def parse_value(key: str, text: str) -> Any:
    """VALUE as a YAML flow value: a bool, number or list of scalars; anything else is the string."""
    import yaml  # noqa: PLC0415

    from esremote.esyml import EsYml  # noqa: PLC0415

    if text.strip() in ("", "~", "null", "Null", "NULL"):
        raise ConfigError(f"{key}: empty value; use --unset {key} to remove a setting")
    try:
        value = EsYml.parse(f"v: {text}", source="value").get("v")
    except (YmlError, yaml.YAMLError):
        return text
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return value
    return value if isinstance(value, (bool, int, float, str)) else text
