"""Add and remove entries of a YAML flow map `{...}` in place, laid out like their neighbours.

esremote.esyml uses this for files written as one JSON object and for `{...}` maps inside block
files. It works on the text and the nodes libyaml composed from it; `offset` turns a node's mark
into an offset in that text. The caller re-reads the result, so a layout this does not foresee
ends in a refusal, never in a wrong file.
"""

from __future__ import annotations

import json
import re
from typing import Callable

import yaml

Offset = Callable[[yaml.Mark], int]

_BREAKS = "\r\n\x85\u2028\u2029"
# What may follow an entry's value on its own line: its comma, a comment.
_TAIL = re.compile(r"[ \t]*(,?)[ \t]*(?:#.*)?")


def context(mapping: yaml.MappingNode) -> str:
    """How values are written in the map (esyml.render): "json" if its keys are, else "flow"."""
    return "json" if _key_quote(mapping) == '"' else "flow"


def has_alias(mapping: yaml.MappingNode, offset: Offset) -> bool:
    # An alias's marks point at its anchor, not at the entry an edit needs to find.
    return any(offset(value.start_mark) < offset(key.end_mark) for key, value in mapping.value)


def insert(text: str, mapping: yaml.MappingNode, name: str, value: str, offset: Offset, nl: str) -> str:
    """`text` with `name: value` (value rendered) added after the map's last entry, the name quoted
    like the keys there: on a line of its own if entries have their own lines, else inline; a
    trailing comma stays trailing."""
    quote = _key_quote(mapping)
    key = json.dumps(name) if quote == '"' else f"{quote}{name}{quote}"  # names are plain words
    if not mapping.value:
        return _insert_into_empty(text, mapping, f"{key}: {value}", offset, nl)
    last_key, last_value = mapping.value[-1]
    entry = key + _colon(text, last_key, last_value, offset, plain=key[:1] not in "\"'") + value
    end = offset(last_value.end_mark)
    comma = _comma_after(text, end)
    at = end if comma is None else comma + 1
    trail = "" if comma is None else ","
    key_at = offset(last_key.start_mark)
    if _starts_line(text, key_at):
        line_end = _line_end(text, at)
        if _TAIL.fullmatch(text[at:line_end]):
            at = line_end  # after the comment that ends the last entry's line, which stays with it
        piece = nl + text[_line_start(text, key_at):key_at] + entry + trail
    else:
        piece = _gap(text, mapping, offset) + entry + trail
    if comma is None:
        return text[:end] + "," + text[end:at] + piece + text[at:]
    return text[:at] + piece + text[at:]


def remove(text: str, mapping: yaml.MappingNode, index: int, offset: Offset) -> str:
    """`text` without the map's entry `index` and one comma (its own, or, for the last entry, the
    one before it), so the map stays valid and a trailing comma stays trailing."""
    key, value = mapping.value[index]
    start, end = offset(key.start_mark), offset(value.end_mark)
    comma = _comma_after(text, end)
    prev_comma = _comma_after(text, offset(mapping.value[index - 1][1].end_mark)) if index else None
    line_end = _line_end(text, end)
    tail = _TAIL.fullmatch(text[end:line_end])
    if _starts_line(text, start) and tail and bool(tail.group(1)) == (comma is not None):
        # the entry has lines of its own: take them, with its comment
        cut = text[:_line_start(text, start)] + text[_past_break(text, line_end):]
        if comma is None and prev_comma is not None:
            cut = cut[:prev_comma] + cut[prev_comma + 1:]
        return cut
    stop = end if comma is None else comma + 1
    if comma is not None and index + 1 < len(mapping.value):
        return text[:start] + text[offset(mapping.value[index + 1][0].start_mark):]
    if prev_comma is not None:  # the last entry: the comma before it goes, unless it is trailing
        return text[:prev_comma + (comma is not None)] + text[stop:]
    return text[:start] + text[stop:]  # the only entry: `{}` is left


def _key_quote(mapping: yaml.MappingNode) -> str:
    """'"' (JSON style), "'" or "" (plain), as the map's last key is written."""
    style = mapping.value[-1][0].style if mapping.value else ""
    return style if style in ('"', "'") else ""


def _insert_into_empty(text: str, mapping: yaml.MappingNode, entry: str, offset: Offset, nl: str) -> str:
    close = offset(mapping.end_mark) - 1
    open_ = text.rfind("{", offset(mapping.start_mark), close)
    inside = text[open_ + 1:close]
    if not any(ch in _BREAKS for ch in inside):
        return text[:open_ + 1] + entry + text[close:]  # `{}` -> `{key: value}`
    if _starts_line(text, close):  # `{` and `}` on lines of their own: a line between them
        start = _line_start(text, close)
        return text[:start] + text[start:close] + "  " + entry + nl + text[start:]
    return text[:close] + entry + text[close:]


def _colon(text: str, key: yaml.Node, value: yaml.Node, offset: Offset, *, plain: bool) -> str:
    """The text between a key and its value, as the last entry has it (`:` alone after a quoted
    key, as JSON writes it, needs a space after a plain key)."""
    colon = text[offset(key.end_mark):offset(value.start_mark)]
    if not re.fullmatch(r"[ \t]*:[ \t]*", colon):
        return ": "
    return colon + " " if plain and not colon.endswith((" ", "\t")) else colon


def _gap(text: str, mapping: yaml.MappingNode, offset: Offset) -> str:
    """What follows a comma before the next key on one line (" " or "" in `{"a":1,"b":2}`)."""
    if len(mapping.value) < 2:
        return " "
    comma = _comma_after(text, offset(mapping.value[-2][1].end_mark))
    gap = text[comma + 1:offset(mapping.value[-1][0].start_mark)] if comma is not None else " "
    return gap if re.fullmatch(r"[ \t]*", gap) else " "


def _comma_after(text: str, at: int) -> int | None:
    """Offset of the comma after a value ending at `at` (across blanks and comments), if any."""
    while at < len(text):
        if text[at] in " \t" + _BREAKS:
            at += 1
        elif text[at] == "#":
            at = _line_end(text, at)
        else:
            return at if text[at] == "," else None
    return None


def _starts_line(text: str, at: int) -> bool:
    return not text[_line_start(text, at):at].strip(" \t")


def _line_start(text: str, at: int) -> int:
    while at > 0 and text[at - 1] not in _BREAKS:
        at -= 1
    return at


def _line_end(text: str, at: int) -> int:
    while at < len(text) and text[at] not in _BREAKS:
        at += 1
    return at


def _past_break(text: str, at: int) -> int:
    return at + 2 if text[at:at + 2] == "\r\n" else min(at + 1, len(text))
