"""Undo a run's edits of an elasticsearch.yml without discarding what someone else wrote since.

A rollback edits the file as it is now, not as the run left it: an operator may have added lines,
comments or settings after the run. Given the run's edits of one file (each with the text it found,
the settings it set and unset, and the text it wrote), `undo` decides:

* the file is what one of those edits wrote (and nobody changed it in between): the text from
  before the first edit comes back byte for byte;
* else, setting by setting: a setting that reads as before the run is left alone; one that reads as
  the run wrote it gets its old value back (or goes, or comes back) through `EsYml`, every other
  line kept; one that reads as neither was changed by someone else, and the whole file is left as it
  is (`Conflict`s, reported as `before run / run wrote / now`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from esremote.errors import EsRemoteError, YmlError
from esremote.esyml import BEGIN_MARK, END_MARK, EsYml, _same, render


class _Absent:
    """A setting the file does not define."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Edit:
    """One edit the run made: the text it found, what it set and unset, the text it wrote (None
    when the journal does not have it: it is computed again from the rest)."""

    original: str
    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    written: str | None = None

    def result(self) -> str | None:
        """The text this edit wrote; None when it cannot be computed (the text it found is not one
        EsYml can edit any more)."""
        if self.written is not None:
            return self.written
        try:
            yml = EsYml.parse(self.original)
            yml.update(self.set, self.unset)
        except (YmlError, ValueError, TypeError):
            return None
        return yml.text()

    def left(self) -> dict[str, Any]:
        """Setting -> the value this edit left it with (ABSENT for an unset)."""
        return {**self.set, **{key: ABSENT for key in self.unset}}


@dataclass(frozen=True)
class Conflict:
    """A setting the run touched that someone changed since."""

    setting: str
    before: Any
    wrote: Any
    now: Any

    def describe(self) -> str:
        return (f"{self.setting}: before run {_show(self.before)} / run wrote {_show(self.wrote)} / "
                f"now {_show(self.now)}")


@dataclass(frozen=True)
class Undo:
    """What the rollback writes (`text`), the settings it puts back (value, or ABSENT: removed),
    and the conflicts that forbid writing anything."""

    text: str
    restored: dict[str, Any]
    conflicts: list[Conflict]
    whole_file: bool  # the text from before the run, byte for byte


class YmlConflict(EsRemoteError):
    """Someone changed settings the run also touched: the rollback leaves that file alone."""

    def __init__(self, node: str, path: str, conflicts: list[Conflict]) -> None:
        super().__init__(
            f"{path} on {node} was changed since the run edited it, in settings the run also wrote; "
            f"nothing was changed on {node}: " + "; ".join(c.describe() for c in conflicts)
            + ". Give each setting the value the run wrote or the one from before the run (or "
              "restore the file by hand), then run the rollback again")
        self.node, self.path, self.conflicts = node, path, conflicts


def undo(current: str, edits: list[Edit], source: str = "elasticsearch.yml") -> Undo:
    """Undo `edits` (the run's edits of one file, in the order made) on the file's `current` text."""
    if not edits:
        return Undo(current, {}, [], whole_file=False)
    first = edits[0].original
    if _untouched_since_run(current, edits):
        return Undo(first, _values(first, _touched(edits)), [], whole_file=True)
    before = _before(edits)
    now = EsYml.parse(current, source)
    restore, conflicts = {}, []
    for key, old in before.items():
        value = now.get(key, ABSENT)
        if _same_value(value, old):
            continue
        written = [edit.left()[key] for edit in edits if key in edit.left()]
        if any(_same_value(value, w) for w in written):
            restore[key] = old
        else:
            conflicts.append(Conflict(key, old, written[-1], value))
    if conflicts:
        return Undo(current, {}, conflicts, whole_file=False)
    now.update({k: v for k, v in restore.items() if v is not ABSENT},
               [k for k, v in restore.items() if v is ABSENT])
    text = now.text()
    if restore and BEGIN_MARK not in first:
        text = _drop_empty_managed_block(text)
    return Undo(text, restore, [], whole_file=False)


def _untouched_since_run(current: str, edits: list[Edit]) -> bool:
    """The file reads as before the run, or as one of its edits wrote it, and no one changed it
    between the edits up to that one (else the text from before the run would drop that change)."""
    if current == edits[0].original:
        return True
    for index, edit in enumerate(edits):
        if index and edit.original != edits[index - 1].result():
            return False
        if current == edit.result():
            return True
    return False


def _touched(edits: list[Edit]) -> list[str]:
    return list(dict.fromkeys(key for edit in edits for key in edit.left()))


def _before(edits: list[Edit]) -> dict[str, Any]:
    """Setting -> its value in the text the first edit that touched it found."""
    out: dict[str, Any] = {}
    for edit in edits:
        missing = [key for key in edit.left() if key not in out]
        if missing:
            out.update(_values(edit.original, missing))
    return out


def _values(text: str, keys: list[str]) -> dict[str, Any]:
    yml = EsYml.parse(text)
    return {key: yml.get(key, ABSENT) for key in keys}


def _same_value(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return _same(a, b)


def _show(value: Any) -> str:
    return "(not set)" if value is ABSENT else render(value)


def _drop_empty_managed_block(text: str) -> str:
    """Remove the run's managed-settings block once the rollback emptied it (a block with an
    operator's line in it stays)."""
    block = re.compile(rf"^[ \t]*{re.escape(BEGIN_MARK)}[ \t]*(\r\n|\n)[ \t]*{re.escape(END_MARK)}[ \t]*(\r\n|\n|\Z)",
                       re.MULTILINE)
    return block.sub("", text, count=1)
