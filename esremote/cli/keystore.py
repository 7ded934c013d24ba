"""`esremote keystore`: read and edit an Elasticsearch keystore file on this machine.

Secrets travel only on stdin: with `--password-stdin` the first line is the keystore password, and
`add` takes the value from the rest of stdin (one trailing newline dropped). Edits back the file up
beside itself first and write atomically, keeping its format version, mode and owner.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import typer

from esremote.errors import KeystoreError
from esremote.files import backup, run_stamp
from esremote.keystore import WRITABLE_VERSIONS, Keystore, has_password

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

PathArg = typer.Argument(..., help="The keystore file (usually config/elasticsearch.keystore).",
                         show_default=False)
PasswordStdin = typer.Option(False, "--password-stdin",
                             help="Read the keystore password from the first line of stdin.")


class _Stdin:
    """stdin as the CLI uses it: an optional password line, then the value."""

    def __init__(self) -> None:
        self._stream = sys.stdin.buffer

    def password(self) -> str:
        line = self._stream.readline()
        if not line:
            raise KeystoreError("--password-stdin was given but stdin is empty: "
                                "send the keystore password as the first line")
        return _decode(line, "the password").removesuffix("\n").removesuffix("\r")

    def value(self, name: str) -> str:
        if sys.stdin.isatty():
            return getpass.getpass(f"Enter value for {name}: ")
        text = _decode(self._stream.read(), "the value")
        return text.removesuffix("\n").removesuffix("\r")


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KeystoreError(f"{what} on stdin is not UTF-8 text") from None


def _open(path: Path, password_stdin: bool, stdin: _Stdin) -> tuple[Keystore, str]:
    """Load and decrypt. A password line given for a keystore without password is read and ignored,
    so callers can always send one; the keystore stays without password."""
    given = stdin.password() if password_stdin else None
    protected = has_password(path)
    if protected and given is None:
        raise KeystoreError(f"{path}: the keystore is password-protected: pass --password-stdin and "
                            "send the password as the first line of stdin")
    password = given if protected and given is not None else ""
    return Keystore.load(path, password), password


def _save_with_backup(keystore: Keystore, path: Path, password: str) -> None:
    try:
        saved = backup(path, run_stamp())
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot back it up before editing ({exc.strerror}); "
                            "nothing was changed") from None
    keystore.save(path, password)
    if saved is not None:
        typer.echo(f"backup: {saved}", err=True)


@app.command("list")
def list_names(path: Path = PathArg, password_stdin: bool = PasswordStdin) -> None:
    """Print the setting names, one per line, sorted."""
    keystore, _ = _open(path, password_stdin, _Stdin())
    for name in keystore.names():
        typer.echo(name)


@app.command()
def add(path: Path = PathArg,
        name: str = typer.Argument(..., help="The setting name, e.g. cluster.remote.ALIAS.credentials."),
        force: bool = typer.Option(False, "--force", help="Replace the setting when it exists."),
        password_stdin: bool = PasswordStdin) -> None:
    """Add a string setting. Its value is the rest of stdin, after the password line when there is
    one; a single trailing newline is dropped."""
    stdin = _Stdin()
    keystore, password = _open(path, password_stdin, stdin)
    if name in keystore and not force:
        raise KeystoreError(f"{path}: Setting [{name}] already exists in the keystore; "
                            "pass --force to replace it")
    keystore.set_string(name, stdin.value(name))
    _save_with_backup(keystore, path, password)


@app.command()
def remove(path: Path = PathArg, name: str = typer.Argument(..., help="The setting name."),
           password_stdin: bool = PasswordStdin) -> None:
    """Remove a setting."""
    keystore, password = _open(path, password_stdin, _Stdin())
    keystore.remove(name)
    _save_with_backup(keystore, path, password)


@app.command()
def create(path: Path = PathArg,
           format_version: int = typer.Option(6, "--format-version",
                                              help="6 for Elasticsearch 8.14+, 5 for 8.0 to 8.13."),
           password_stdin: bool = typer.Option(False, "--password-stdin",
                                               help="Protect it with the password on stdin's first line.")) -> None:
    """Create a new keystore holding only keystore.seed, like `elasticsearch-keystore create`."""
    if format_version not in WRITABLE_VERSIONS:
        raise KeystoreError(f"--format-version {format_version}: esremote writes keystore formats "
                            f"{' and '.join(map(str, WRITABLE_VERSIONS))}")
    if path.exists():
        raise KeystoreError(f"{path}: a keystore already exists; edit it with `add`/`remove`, "
                            "or move it away first")
    if not path.parent.is_dir():
        raise KeystoreError(f"{path}: the directory {path.parent} does not exist")
    password = _Stdin().password() if password_stdin else ""
    Keystore.create(version=format_version).save(path, password)
    typer.echo(f"Created elasticsearch keystore in {path}")
