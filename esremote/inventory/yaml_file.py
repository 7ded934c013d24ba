"""The inventory file: YAML in (every problem one `InventoryError` naming file, line and field, and
what to do), YAML out (`dump_inventory` writes what `load_inventory` reads back equal)."""

from __future__ import annotations

import difflib
import io
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarbool import ScalarBoolean

from esremote.errors import InventoryError
from esremote.inventory.models import Cluster, Inventory, SSHSettings, field_name


_MAX_NODES = 100_000   # YAML aliases can expand a small file into a huge document ("billion laughs")
_MAX_DEPTH = 64


class _Problem(Exception):
    """A problem found while reading YAML, before the models see it."""

    def __init__(self, message: str, line: int | None, loc: tuple = ()) -> None:
        super().__init__(message)
        self.message, self.line, self.loc = message, line, loc


def load_inventory(path: str | os.PathLike) -> Inventory:
    """Read and validate an inventory file. Every problem is an `InventoryError` (file:line: field: what)."""
    path = Path(path)
    where = str(path)
    try:
        data, lines = _read_yaml(path)
    except _Problem as problem:
        raise InventoryError(problem.message, file=where, line=problem.line,
                             field=field_name(problem.loc) or None) from None
    base_dir = path.parent.resolve()
    try:
        inventory = Inventory.model_validate(data, context={"base_dir": base_dir, "defer_checks": True})
    except ValidationError as exc:
        raise _validation_error(exc, where, lines) from None
    for loc, message in [*inventory.problems(), *_file_problems(inventory)]:
        raise InventoryError(message, file=where, line=_line_of(loc, lines), field=field_name(loc))
    return inventory


def _read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Problem(f"cannot read the inventory ({exc.strerror or type(exc).__name__}); check the path"
                       " and its permissions", None) from None
    except UnicodeDecodeError:
        raise _Problem("the inventory is not UTF-8 text; save it as UTF-8", None) from None
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except DuplicateKeyError as exc:
        match = re.search(r'duplicate key "(.*?)" with value', exc.problem or "")
        key = f" {match.group(1)!r}" if match else ""
        raise _Problem(f"duplicate key{key}; a key may appear only once in a mapping, remove one",
                       _mark_line(exc)) from None
    except MarkedYAMLError as exc:
        raise _Problem(f"invalid YAML: {exc.problem or exc.context}; fix the syntax", _mark_line(exc)) from None
    except (YAMLError, ValueError, TypeError, RecursionError, AttributeError) as exc:
        raise _Problem(f"invalid YAML ({type(exc).__name__}); fix the syntax", None) from None
    if doc is None:
        raise _Problem("the inventory is empty; start from deployments/inventory.example.yml", 1)
    if not isinstance(doc, dict):
        raise _Problem("the inventory must be a mapping with `clusters:` (and `ssh:`, `aliases:`)", 1)
    lines: dict[tuple, int] = {(): 1}
    data = _Walker(lines).plain(doc, ())
    return data, lines


def _mark_line(exc: MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


class _Walker:
    """Turns ruamel's round-trip nodes into plain Python values, recording each location's line."""

    def __init__(self, lines: dict[tuple, int]) -> None:
        self.lines = lines
        self.count = 0
        self.open: set[int] = set()

    def plain(self, value: Any, loc: tuple) -> Any:
        self.count += 1
        if self.count > _MAX_NODES or len(loc) > _MAX_DEPTH:
            raise _Problem("the inventory is too large or too deeply nested", self.lines.get(loc), loc)
        if isinstance(value, (dict, list)):
            if id(value) in self.open:
                raise _Problem("a YAML alias refers to the mapping or list that contains it",
                               self.lines.get(loc), loc)
            self.open.add(id(value))
            try:
                return self._mapping(value, loc) if isinstance(value, dict) else self._sequence(value, loc)
            finally:
                self.open.discard(id(value))
        return _scalar(value)

    def _mapping(self, value: dict, loc: tuple) -> dict:
        out = {}
        for key in value:
            line = _lc(value, "key", key) or self.lines.get(loc)
            if not isinstance(key, str):
                raise _Problem("keys must be text; quote this key", line, loc)
            self.lines[loc + (key,)] = line
            out[key] = self.plain(value[key], loc + (key,))
        return out

    def _sequence(self, value: list, loc: tuple) -> list:
        out = []
        for i, item in enumerate(value):
            self.lines[loc + (i,)] = _lc(value, "item", i) or self.lines.get(loc)
            out.append(self.plain(item, loc + (i,)))
        return out


def _lc(container: Any, kind: str, key: Any) -> int | None:
    if not isinstance(container, (CommentedMap, CommentedSeq)):
        return None
    try:
        return getattr(container.lc, kind)(key)[0] + 1
    except (KeyError, IndexError, TypeError, AttributeError):  # e.g. keys brought in by a `<<:` merge
        return None


def _scalar(value: Any) -> Any:
    """ruamel's scalar subclasses (which keep formatting) become plain builtins."""
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value  # None, dates, tagged scalars, binary: the models accept or reject them


def _file_problems(inventory: Inventory) -> Iterator[tuple[tuple, str]]:
    """Local files the run will need: SSH keys and CA certificates must be readable now."""
    def ssh_keys(settings: SSHSettings | None, loc: tuple):
        if settings is not None and settings.key_file is not None:
            yield loc + ("ssh", "key_file"), settings.key_file, "SSH private key"

    candidates = [*ssh_keys(inventory.ssh, ())]
    for cname, cluster in inventory.clusters.items():
        if cluster.ca_cert is not None:
            candidates.append((("clusters", cname, "ca_cert"), cluster.ca_cert, "CA certificate"))
        candidates.extend(ssh_keys(cluster.ssh, ("clusters", cname)))
        for i, node in enumerate(cluster.nodes):
            candidates.extend(ssh_keys(node.ssh, ("clusters", cname, "nodes", i)))
    for loc, file, what in candidates:
        if not file.is_file() or not os.access(file, os.R_OK):
            state = "is not a readable file" if file.exists() else "does not exist"
            yield loc, f"{what} {file} {state}; fix the path or the file's permissions"


# ---------------------------------------------------------------- errors

_HINTS = {
    "missing": "field required; add it",
    "extra_forbidden": "unknown key; remove it or fix its spelling",
}


def _validation_error(exc: ValidationError, where: str, lines: dict[tuple, int]) -> InventoryError:
    errors = exc.errors(include_url=False, include_input=False)
    # Top to bottom; a missing key last, since a misspelt key nearby usually explains it.
    errors.sort(key=lambda e: (e["type"] == "missing", _line_of(tuple(e["loc"]), lines) or 0))
    first = errors[0]
    loc = tuple(first["loc"])
    message = _HINTS.get(first["type"])
    if message is None:
        text = first["msg"].removeprefix("Value error, ")
        message = text[:1].lower() + text[1:]
        if first["type"] != "value_error":
            message += "; fix the value"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if guess:
            message += f"; did you mean {guess[0]}?"
        if allowed:
            message += f" (allowed here: {', '.join(allowed)})"
    if len(errors) > 1:
        message += f" [{len(errors) - 1} more problem(s) after this one]"
    return InventoryError(message, file=where, line=_line_of(loc, lines), field=field_name(loc) or None)


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of `loc`, or of its closest enclosing location (a missing key points at its parent)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None




def _allowed_keys(loc: tuple) -> list[str]:
    """Keys of the model found at `loc` (for "unknown key" hints), walking the type annotations."""
    kind: Any = Inventory
    for part in loc:
        kind = _unwrap(kind)
        if typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]
        elif isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return [k for k in kind.model_fields if not (kind is Cluster and k == "name")]
    return []


def _unwrap(kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin is Annotated:
        return _unwrap(typing.get_args(kind)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return _unwrap(options[0]) if len(options) == 1 else kind
    return kind


# ---------------------------------------------------------------- writing

def dump_inventory(inventory: Inventory) -> str:
    """YAML for `inventory` that `load_inventory` reads back equal (only what was set is written).

    Relative local paths are written as they are, so they are read relative to the file's directory.
    """
    data = inventory.model_dump(mode="json", exclude_unset=True,
                                exclude={"clusters": {"__all__": {"name"}}})
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.Representer = _Representer
    out = io.StringIO()
    out.write("# esremote inventory (see deployments/inventory.example.yml for every field)\n")
    yaml.dump(_flow_secret_refs(data), out)
    return out.getvalue()


class _Representer(RoundTripRepresenter):
    """`null` written out (ruamel writes an empty value); a subclass, so other YAML users are unaffected."""


_Representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))


_PLAIN_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./~-]*")


def _flow_secret_refs(value: Any) -> Any:
    """Secret references as `{env: NAME}`, the way the example writes them."""
    if isinstance(value, list):
        return [_flow_secret_refs(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in ("env", "file", "prefect"):
        # Quoted unless plainly safe: ruamel writes some plain scalars (`?0`) that are not valid
        # inside a flow mapping.
        ref = CommentedMap({k: v if _PLAIN_SAFE.fullmatch(str(v)) else DoubleQuotedScalarString(v)
                            for k, v in value.items()})
        ref.fa.set_flow_style()
        return ref
    return {k: _flow_secret_refs(v) for k, v in value.items()}
