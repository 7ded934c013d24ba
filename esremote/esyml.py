"""Read and edit elasticsearch.yml the way Elasticsearch reads it, keeping every other byte.

Elasticsearch flattens the YAML document into dotted setting names: `a.b.c: x`, `a:\\n  b:\\n    c: x`
and `a.b:\\n  c: x` all define the setting `a.b.c`. `EsYml` parses a file into that flat view and
edits it line by line:

* an existing setting is changed where it is (only its value is rewritten);
* a new setting is appended, as a flat key, to a marked block at the end of the file, unless
  the file (or the map of its nearest existing parent) is a flow map `{...}`: then it becomes an
  entry of that map, laid out and quoted like its neighbours (esremote.esyml_flow);
* a removed setting takes its lines (or its flow map entry and a comma) with it, and so do parent
  maps it leaves empty (an empty parent would read as a null setting, which Elasticsearch refuses).

Everything else (comments, order, quoting, CRLF line ends, a missing final newline, `${VAR}`
placeholders) is kept byte for byte, because the text is never re-dumped. Parsing uses libyaml
through PyYAML when available (fast enough for a node reading its config at start) with YAML 1.2
core scalars, so `on`/`yes` stay strings as Elasticsearch sees them.

A file Elasticsearch would refuse (a setting defined twice, a null value, invalid YAML, several
documents) raises `YmlError` naming the line.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from esremote import esyml_flow
from esremote.errors import YmlError

BEGIN_MARK = "# BEGIN esremote managed settings"
END_MARK = "# END esremote managed settings"

_BOM = "\ufeff"
# The characters libyaml counts as line breaks; line numbers in its marks depend on them.
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_STR, _NULL, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_DOC_END = re.compile(r"^\.\.\.(\s|$)", re.MULTILINE)


# --- YAML 1.2 core schema on top of PyYAML (which resolves plain scalars the YAML 1.1 way) ---------

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """Composes nodes only; plain scalars resolve by the YAML 1.2 core schema."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in [
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (_FLOAT, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
             r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.tag == _NULL:
        return None
    if node.tag == _BOOL:
        return text.lower() == "true"
    if node.tag == _INT:
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)
    if node.tag == _FLOAT:
        lowered = text.lower()
        if lowered.endswith((".inf", ".nan")):
            return float(lowered.replace(".", ""))
        return float(text)
    return text


def _value(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_value(item) for item in node.value]
    return {_value(k): _value(v) for k, v in node.value}


def _compose(text: str, source: str) -> yaml.Node | None:
    try:
        documents = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YmlError(f"invalid YAML: {exc.problem or exc.context}; fix the file and retry",
                       file=source, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise YmlError(f"invalid YAML: {exc}", file=source) from None
    if len(documents) > 1:
        raise YmlError("holds several YAML documents; Elasticsearch reads exactly one: merge them",
                       file=source, line=documents[1].start_mark.line + 1)
    return documents[0] if documents else None


# --- the parsed file ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    """One `key: value` pair of the file (a setting or a map of settings)."""

    path: str                    # full dotted name
    key: yaml.Node
    value: yaml.Node
    mapping: yaml.MappingNode    # the map holding this pair
    parent: "_Entry | None"      # the pair whose value is `mapping` (None at top level)


class EsYml:
    """An elasticsearch.yml: its flat settings, and edits that keep every other byte."""

    def __init__(self, text: str, source: str = "elasticsearch.yml") -> None:
        self.source = source
        self._bom = _BOM if text.startswith(_BOM) else ""
        self._text = text[len(self._bom):]
        self._starts = [0] + [m.end() for m in _LINE_BREAK.finditer(self._text)]
        self._root = _compose(self._text, source)
        self._leaves: dict[str, _Entry] = {}
        self._maps: dict[str, _Entry] = {}
        self._seen: dict[int, int] = {}
        if self._root is None:
            return
        if not isinstance(self._root, yaml.MappingNode):
            raise YmlError("the top level is not a map of settings (`name: value` lines)",
                           file=source, line=self._root.start_mark.line + 1)
        self._walk(self._root, "", None)

    # construction --------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, source: str = "elasticsearch.yml") -> "EsYml":
        return cls(text, source)

    @classmethod
    def load(cls, path: str | Path) -> "EsYml":
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise YmlError(f"cannot read: {exc.strerror}", file=str(path)) from None
        return cls(_decode(data, str(path)), str(path))

    def _walk(self, mapping: yaml.MappingNode, prefix: str, parent: _Entry | None) -> None:
        names: dict[str, int] = {}
        for key, value in mapping.value:
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode) or key.value == "":
                raise YmlError("a setting name must be a non-empty plain name", file=self.source, line=line)
            path = f"{prefix}.{key.value}" if prefix else key.value
            if key.value in names:
                raise YmlError(f"key {path} is defined twice (also on line {names[key.value]}); "
                               "Elasticsearch refuses duplicate keys: keep one", file=self.source, line=line)
            names[key.value] = line
            entry = _Entry(path, key, value, mapping, parent)
            self._seen[id(value)] = self._seen.get(id(value), 0) + 1
            if isinstance(value, yaml.MappingNode):
                self._maps.setdefault(path, entry)
                self._walk(value, path, entry)
            else:
                self._add_leaf(entry)

    def _add_leaf(self, entry: _Entry) -> None:
        line = entry.key.start_mark.line + 1
        if isinstance(entry.value, yaml.ScalarNode) and entry.value.tag == _NULL:
            raise YmlError(f"setting {entry.path} has no value (Elasticsearch refuses null-valued "
                           "settings): give it a value or delete the line", file=self.source, line=line)
        other = self._leaves.get(entry.path)
        if other is not None:
            raise YmlError(f"setting {entry.path} is defined twice (also on line "
                           f"{other.key.start_mark.line + 1}); Elasticsearch refuses duplicate "
                           "settings: keep one", file=self.source, line=line)
        self._leaves[entry.path] = entry

    # reading -------------------------------------------------------------------------------------

    def flat(self) -> dict[str, Any]:
        """Full dotted names -> values (scalars as YAML 1.2 reads them, lists as lists), in file order."""
        return {path: _value(entry.value) for path, entry in self._leaves.items()}

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._leaves.get(key)
        return default if entry is None else _value(entry.value)

    def __contains__(self, key: object) -> bool:
        return key in self._leaves

    def lines(self, key: str) -> range:
        """1-based line numbers a setting (or a map of settings, by its dotted path) occupies."""
        entry = self._leaves.get(key) or self._maps.get(key)
        if entry is None:
            raise KeyError(key)
        return range(entry.key.start_mark.line + 1, self._line_of(self._content_end(entry.value)) + 2)

    def text(self) -> str:
        return self._bom + self._text

    # editing -------------------------------------------------------------------------------------

    def set(self, key: str, value: Any) -> bool:
        """Give `key` this value: in place if the file has it, else in the managed block (or the
        flow map `{...}` of its parent, see _flow_target).

        Returns False when the file already says exactly that (nothing is rewritten then)."""
        entry = self._leaves.get(key)
        if entry is not None:
            if _same(_value(entry.value), value):
                return False
            rendered = render(value, context="flow" if entry.mapping.flow_style else "block")
            start, end, lead = self._value_span(entry)
            new = self._text[:start] + lead + rendered + self._text[end:]
        else:
            _check_name(key)
            new, rendered = self._add(key, value)
        self._replace(new, expect={**self.flat(), key: _value(self._probe(rendered))})
        return True

    def unset(self, key: str) -> bool:
        """Remove `key` and any parent map it leaves empty. False when the file does not set it."""
        entry = self._leaves.get(key)
        if entry is None:
            return False
        self._check_editable(entry)
        while entry.parent is not None and len(entry.mapping.value) == 1:
            entry = entry.parent
        expect = {k: v for k, v in self.flat().items() if k != key}
        if entry.mapping.flow_style:
            self._check_flow_map(entry.mapping, entry.parent.path if entry.parent else "")
            index = next(i for i, (k, _) in enumerate(entry.mapping.value) if k is entry.key)
            self._replace(esyml_flow.remove(self._text, entry.mapping, index, self._offset), expect=expect)
            return True
        first = entry.key.start_mark.line
        if self._text[self._starts[first]:self._offset(entry.key.start_mark)].strip():
            raise self._refuse(entry, "its key does not start its line")
        last = self._line_of(self._content_end(entry.value))
        start = self._starts[first]
        end = self._starts[last + 1] if last + 1 < len(self._starts) else len(self._text)
        new = self._text[:start] + self._text[end:]
        if end == len(self._text) and not _ends_with_break(self._text) and start > 0:
            new = new[:len(new) - len(_trailing_break(new))]  # the file had no final newline: keep it so
        self._replace(new, expect=expect)
        return True

    def update(self, changes: dict[str, Any], unset: list[str] | tuple[str, ...] = ()) -> bool:
        """Apply several sets, then unsets, all or none; True if anything changed."""
        before = dict(self.__dict__)
        changed = False
        try:
            for key, value in changes.items():
                changed = self.set(key, value) or changed
            for key in unset:
                changed = self.unset(key) or changed
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return changed

    # editing internals ---------------------------------------------------------------------------

    def _value_span(self, entry: _Entry) -> tuple[int, int, str]:
        """Where the text of a setting's value is, and what must precede a new value there: the
        value itself for one-line (plain, quoted, flow) values, else everything after the colon
        (block lists and block scalars become flow values)."""
        self._check_editable(entry)
        node = entry.value
        one_line = node.style not in ("|", ">") if isinstance(node, yaml.ScalarNode) else node.flow_style
        if one_line:
            return self._offset(node.start_mark), self._offset(node.end_mark), ""
        colon = self._offset(entry.key.end_mark)
        while colon < len(self._text) and self._text[colon] in " \t":
            colon += 1
        if self._text[colon:colon + 1] != ":":
            raise self._refuse(entry, "its key is not followed by a colon")
        return colon + 1, self._content_end(node), " "

    def _add(self, key: str, value: Any) -> tuple[str, str]:
        """The text with a new setting added, and its value as written."""
        mapping, name = self._flow_target(key)
        if mapping is None:
            return self._append(key, render(value)), render(value)
        self._check_flow_map(mapping, key[:len(key) - len(name)].rstrip("."))
        rendered, nl = render(value, context=esyml_flow.context(mapping)), _newline(self._text)
        return esyml_flow.insert(self._text, mapping, name, rendered, self._offset, nl), rendered

    def _flow_target(self, key: str) -> tuple[yaml.MappingNode | None, str]:
        """The flow map a new setting joins, and its name there: the map of its nearest existing
        parent if written `{...}` (and not shared through an alias), else the root if it is."""
        parts = key.split(".")
        for size in range(len(parts) - 1, 0, -1):
            parent = self._maps.get(".".join(parts[:size]))
            if parent is not None:
                if parent.value.flow_style and self._seen.get(id(parent.value)) == 1:
                    return parent.value, ".".join(parts[size:])
                break
        if self._root is not None and self._root.flow_style:
            return self._root, key
        return None, key

    def _check_flow_map(self, mapping: yaml.MappingNode, path: str) -> None:
        if esyml_flow.has_alias(mapping, self._offset):
            raise YmlError(f"cannot edit the flow map {path or '{...}'} safely: it holds a YAML alias; "
                           "edit it by hand", file=self.source, line=mapping.start_mark.line + 1)

    def _append(self, key: str, rendered: str) -> str:
        if _DOC_END.search(self._text):
            raise YmlError("the file has a document end marker `...`; remove it so settings can be "
                           "appended", file=self.source)
        indent = " " * (self._root.start_mark.column if self._root is not None else 0)
        nl = _newline(self._text)
        line = f"{indent}{key}: {rendered}{nl}"
        end_at = self._managed_end()
        if end_at is not None:
            return self._text[:end_at] + line + self._text[end_at:]
        text = self._text
        if text and not _ends_with_break(text):
            text += nl
        return f"{text}{indent}{BEGIN_MARK}{nl}{line}{indent}{END_MARK}{nl}"

    def _managed_end(self) -> int | None:
        """Offset of the start of the managed block's END line, if the block is there."""
        begun = False
        for number, start in enumerate(self._starts):
            end = self._starts[number + 1] if number + 1 < len(self._starts) else len(self._text)
            line = self._text[start:end].strip()
            if line == BEGIN_MARK:
                begun = True
            elif line == END_MARK and begun:
                return start
        return None

    def _replace(self, new: str, *, expect: dict[str, Any]) -> None:
        """Adopt the edited text, after checking it reads back as exactly the intended settings."""
        try:
            edited = EsYml(self._bom + new, self.source)
        except YmlError as exc:
            raise YmlError(f"esremote could not edit this file safely ({exc.message}); nothing was "
                           "changed: edit it by hand", file=self.source) from None
        if not _same(edited.flat(), expect):
            raise YmlError("esremote could not edit this file safely (the result would read differently "
                           "than intended); nothing was changed: edit it by hand", file=self.source)
        self.__dict__.update(edited.__dict__)

    def _check_editable(self, entry: _Entry) -> None:
        if self._seen.get(id(entry.value), 0) > 1 or (
                self._offset(entry.value.start_mark) < self._offset(entry.key.end_mark)):
            raise self._refuse(entry, "its value is a YAML anchor or alias")

    def _refuse(self, entry: _Entry, why: str) -> YmlError:
        return YmlError(f"cannot edit {entry.path} safely: {why}; edit it by hand",
                        file=self.source, line=entry.key.start_mark.line + 1)

    def _probe(self, rendered: str) -> yaml.Node:
        return _compose(f"v: {rendered}", "value").value[0][1]

    # positions -----------------------------------------------------------------------------------

    def _offset(self, mark: yaml.Mark) -> int:
        # libyaml's `index` counts bytes; line and column count characters, as str offsets do.
        return self._starts[mark.line] + mark.column if mark.line < len(self._starts) else len(self._text)

    def _line_of(self, offset: int) -> int:
        low, high = 0, len(self._starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self._starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        return low

    def _content_end(self, node: yaml.Node) -> int:
        """Offset just past the last character of a value (block collections end where the next
        token starts, often after trailing comments, so look at their last item instead)."""
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) and not node.flow_style and node.value:
            last = node.value[-1]
            return self._content_end(last[1] if isinstance(node, yaml.MappingNode) else last)
        end = self._offset(node.end_mark)
        while end > 0 and self._text[end - 1] in " \t\r\n\x85\u2028\u2029":
            end -= 1
        return end


# --- values -------------------------------------------------------------------------------------

_PLAIN_OK = re.compile(r"[^\s#'\"][^\x00-\x1f\x7f#]*(?<=\S)|[^\s#'\"]")


def render(value: Any, *, context: str = "block") -> str:
    """A Python value as YAML text for a settings file: bool -> true/false, numbers as they are,
    str plain unless YAML needs quotes, list -> flow list `[a, b]`. In a flow map (`context`
    "flow") strings with flow indicators are quoted; in one written as JSON ("json") all are."""
    if isinstance(value, (list, tuple)):
        inner = "list" if context == "block" else context
        return "[" + ", ".join(_render_scalar(item, inner) for item in value) + "]"
    return _render_scalar(value, context)


# Quoted in a flow map even where YAML 1.2 allows them plain: YAML 1.1 readers (SnakeYAML 1.x,
# old PyYAML) end or refuse a flow scalar at them.
_FLOW_INDICATOR = re.compile(r"[,\[\]{}:#]")


def _render_scalar(value: Any, context: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"setting values must be finite numbers, not {value}")
        return repr(value)
    if isinstance(value, str):
        plain = context != "json" and not (context == "flow" and _FLOW_INDICATOR.search(value))
        return value if plain and _plain_is_safe(value, context != "block") else _double_quoted(value)
    raise TypeError(f"a setting value must be a bool, number, str or a list of those, not "
                    f"{type(value).__name__}")


# Characters YAML does not allow raw in a file, or that it would read as line breaks.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# Plain words that YAML 1.1 readers (older tools, SnakeYAML) would take for booleans.
_YAML11_BOOLS = {"y", "n", "yes", "no", "on", "off"}


def _double_quoted(text: str) -> str:
    """JSON string syntax, which is also a YAML double-quoted scalar."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise ValueError("a setting value cannot contain lone surrogate characters")
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _plain_is_safe(text: str, flow: bool) -> bool:
    if not _PLAIN_OK.fullmatch(text) or _UNPRINTABLE.search(text) or text.lower() in _YAML11_BOOLS:
        return False
    probe = f"v: [{text}]" if flow else f"v: {text}"
    try:
        node = yaml.compose(probe, Loader=_Loader)
    except yaml.YAMLError:
        return False
    value = node.value[0][1]
    if flow:
        if not isinstance(value, yaml.SequenceNode) or len(value.value) != 1:
            return False
        value = value.value[0]
    return isinstance(value, yaml.ScalarNode) and value.tag == _STR and value.value == text


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types (so True is not 1 and "9443" is not 9443)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _check_name(key: str) -> None:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", key):
        raise ValueError(f"not a setting name: {key!r} (expected dotted words like a.b.c)")


# --- text helpers -------------------------------------------------------------------------------

def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise YmlError("is not UTF-8 text (Elasticsearch reads elasticsearch.yml as UTF-8): "
                       "convert it", file=source, line=line) from None


def _newline(text: str) -> str:
    match = _LINE_BREAK.search(text)
    return match.group() if match and match.group() in ("\n", "\r\n") else "\n"


def _ends_with_break(text: str) -> bool:
    return bool(_trailing_break(text))


def _trailing_break(text: str) -> str:
    match = re.search(r"(\r\n|[\r\n\x85\u2028\u2029])\Z", text)
    return match.group() if match else ""


def unified_diff(old: str, new: str, path: str) -> str:
    """A unified diff of two versions of a file, as `diff -u`/git show it ("" when equal)."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=path, tofile=path)
    out = []
    for line in lines:
        if not line.endswith(("\n", "\r")):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return "".join(out)
