"""Secret references: where a secret lives, and resolving it only when it is needed.

An inventory never holds a secret, only a reference to one:

    {env: NAME}       an environment variable
    {file: PATH}      a file; its first line, without the trailing newline
    {prefect: BLOCK}  a Prefect Secret block (Prefect is imported only when such a reference resolves)

`SecretRef.resolve()` returns a `pydantic.SecretStr`, whose repr and str are masked. Error messages
name the reference (variable, file, block), never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from esremote.errors import ConfigError

__all__ = ["SecretError", "SecretRef", "resolve_secret"]


class SecretError(ConfigError):
    """A secret reference that cannot be resolved (unset variable, unreadable file, missing block)."""


class SecretRef(BaseModel):
    """Exactly one of `env`, `file`, `prefect`."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    env: str | None = None
    file: Path | None = None
    prefect: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping_only(cls, data):
        # A bare string is most likely the secret itself pasted into the inventory: refuse it
        # without echoing it back.
        if not isinstance(data, (dict, SecretRef)):
            raise ValueError("a secret must be a reference, {env: NAME}, {file: PATH} or {prefect: BLOCK};"
                             " never write the secret itself in the inventory")
        return data

    @field_validator("env", "prefect")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("file")
    @classmethod
    def _expand_file(cls, value: Path | None, info) -> Path | None:
        if value is None:
            return None
        if not str(value).strip():
            raise ValueError("must not be empty")
        return local_path(value, info.context)

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "prefect") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a secret reference needs exactly one of env, file, prefect"
                             f" (got {', '.join(given) or 'none'})")
        return self

    def describe(self) -> str:
        """Where the secret lives, for messages: `env LOCAL_ES_PASSWORD`, `file /x`, `prefect block b`."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return f"Prefect Secret block {self.prefect}"

    def resolve(self) -> SecretStr:
        return resolve_secret(self)


def local_path(value: Path | str, context: dict | None) -> Path:
    """A path on this machine: `~` expanded, relative paths taken from `context["base_dir"]` if given."""
    path = Path(value).expanduser()
    base = (context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


def resolve_secret(ref: SecretRef) -> SecretStr:
    if ref.env is not None:
        return _from_env(ref.env)
    if ref.file is not None:
        return _from_file(ref.file)
    return _from_prefect(ref.prefect)


def _from_env(name: str) -> SecretStr:
    value = os.environ.get(name)
    if value is None:
        raise SecretError(f"environment variable {name} is not set; export it before running esremote")
    return SecretStr(value)


def _from_file(path: Path) -> SecretStr:
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        # Only the kind of failure and the path: never the exception text of a decode error,
        # which quotes the bytes it choked on.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise SecretError(f"secret file {path} cannot be read ({reason}); check that it exists and"
                          " is readable by this user") from None
    return SecretStr(first.rstrip("\r\n"))


def _from_prefect(block: str) -> SecretStr:
    try:
        from prefect.blocks.system import Secret  # lazy: the core never imports Prefect at import time
    except ImportError:  # pragma: no cover - prefect is a dependency, but the core does not need it
        raise SecretError(f"Prefect is not installed, so Prefect Secret block {block} cannot be read") from None
    try:
        # `_sync=True`: inside an async flow Prefect would otherwise hand back a coroutine.
        value = Secret.load(block, _sync=True).get()
    except ValueError:  # Prefect's "Unable to find block document named ..."
        raise SecretError(f"Prefect Secret block {block} does not exist; create it (Prefect UI > Blocks,"
                          " or `Secret(value=...).save(name)`) or fix the name") from None
    except Exception as exc:  # noqa: BLE001 - httpx/Prefect errors: one message, worth a retry
        raise SecretError(f"Prefect Secret block {block} cannot be loaded ({type(exc).__name__}); check"
                          " that the Prefect API (PREFECT_API_URL) is reachable", transient=True) from None
    return SecretStr(str(value))
