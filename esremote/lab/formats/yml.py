"""elasticsearch.yml -> flat settings, the way Elasticsearch 8.x builds them at boot.

Elasticsearch reads the file with Jackson's YAML parser (SnakeYAML 1.x events, YAML 1.1 scalars,
strict duplicate detection) and flattens it in Settings.fromXContent (server/.../common/settings/
Settings.java). This module walks PyYAML's *events* the same way, so it sees what Jackson sees:

* nested maps flatten to dotted keys; a key given both flat and nested (`a.b: 1` and `a: {b: 2}`)
  is NOT refused in 8.x: the later one wins (fromXContent puts both into one map; only 5.x/6.x
  refused it with "duplicate settings key [a.b] found at line number ..."). A key repeated in the
  same map is refused by Jackson: "Duplicate field 'a'".
* values are kept as text, as written (`9200`, `1e3`, `0x1F`, `1_000` stay themselves); a plain
  YAML 1.1 boolean (`yes`, `On`, `TRUE`, ...) becomes `true`/`false`, but keeps its text inside a
  list; an alias reads as its anchor's name (Jackson does not expand aliases).
* lists stay lists; `a.0`, `a.1` keys become the list `a` (Settings.Builder.processLegacyLists).
* a null value (`a:`, `a: ~`) is refused: "null-valued setting found for key [a] found at line
  number [1], column number [3]"; an empty file (or only comments) has no settings.
* `${...}` placeholders: see placeholders.py.

`read_settings(path)` returns `{name: str | list[str]}` or raises `YmlFormatError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from esremote.lab.formats import placeholders

Settings = dict[str, "str | list[str]"]

SETTINGS_EXCEPTION = "org.elasticsearch.common.settings.SettingsException"
PARSE_EXCEPTION = "org.elasticsearch.ElasticsearchParseException"
ILLEGAL_ARGUMENT = "java.lang.IllegalArgumentException"

# SnakeYAML 1.x Resolver: what an untagged plain scalar resolves to (YAML 1.1).
_NULL = re.compile(r"(?:~|null|Null|NULL| |)")
_BOOL = re.compile(r"(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)")
_YAML_TAG = "tag:yaml.org,2002:"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YmlFormatError(Exception):
    """elasticsearch.yml refused as Elasticsearch refuses it: `message` is what its log says after
    `exception` (the Java class), `line` the 1-based line when known."""

    def __init__(self, message: str, line: int | None = None, exception: str = SETTINGS_EXCEPTION) -> None:
        super().__init__(message)
        self.message, self.line, self.exception = message, line, exception


def read_settings(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings a node reads from this file (FileNotFoundError when there is none)."""
    path = Path(path)
    text = _read_text(path)
    text = placeholders.substitute_environment(text, os.environ if environ is None else environ)
    settings = parse_settings(text, path.name)
    try:
        return placeholders.resolve_settings(settings)
    except placeholders.PlaceholderError as exc:
        raise YmlFormatError(str(exc), exception=ILLEGAL_ARGUMENT) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError:
        raise YmlFormatError(f"Failed to load settings from {path}: java.nio.file.AccessDeniedException: "
                             f"{path}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # Java's UTF-8 reader: MalformedInputException
        raise YmlFormatError(f"Failed to load settings from {path}: java.nio.charset.MalformedInputException: "
                             f"Input length = {exc.end - exc.start}",
                             line=data[:exc.start].count(b"\n") + 1) from None


# --------------------------------------------------------------------------- the parse, as Jackson


def parse_settings(text: str, source: str = "elasticsearch.yml") -> Settings:
    """Flat settings of one YAML text, placeholders left as they are."""
    events = _Events(text, source)
    first = events.next()
    if first is None:
        return {}  # an empty file: no settings
    if not isinstance(first, yaml.MappingStartEvent):
        raise events.wrapped(f"Failed to parse object: expecting token of type [START_OBJECT] but found "
                             f"[{_token_name(first)}]", first)
    settings: Settings = {}
    _read_map(events, "", settings)
    _expect_end(events)
    try:
        return _legacy_lists(settings)
    except ValueError as exc:  # IllegalStateException from Settings.Builder.build
        raise events.wrapped(str(exc), None) from None


def _read_map(events: _Events, prefix: str, settings: Settings) -> None:
    seen: set[str] = set()
    while not isinstance(key := events.next(), yaml.MappingEndEvent):
        if not isinstance(key, yaml.ScalarEvent):
            raise events.wrapped("Expected a field name (Scalar value in YAML), got this instead: "
                                 f"<{type(key).__name__}>", key)
        if key.value in seen:
            raise events.wrapped(f"Duplicate field '{key.value}'", key)
        seen.add(key.value)
        _read_value(events, prefix + key.value, settings)


def _read_value(events: _Events, key: str, settings: Settings) -> None:
    event = events.next()
    if isinstance(event, yaml.MappingStartEvent):
        _read_map(events, key + ".", settings)
    elif isinstance(event, yaml.SequenceStartEvent):
        settings.pop(key, None)  # putList: the list takes the key's place in file order
        settings[key] = _read_list(events)
    elif isinstance(event, yaml.AliasEvent):
        settings[key] = event.anchor
    else:
        kind, text = _scalar(event)
        if kind == "VALUE_NULL":
            mark = event.start_mark
            raise YmlFormatError(f"null-valued setting found for key [{key}] found at line number "
                                 f"[{mark.line + 1}], column number [{mark.column + 1}]",
                                 mark.line + 1, PARSE_EXCEPTION)
        if kind == "VALUE_EMBEDDED_OBJECT":
            raise events.wrapped(f"Failed to parse object: unexpected token [{kind}] found", event)
        settings[key] = text if kind != "VALUE_BOOLEAN" else str(_yaml_bool(text)).lower()


def _read_list(events: _Events) -> list[str]:
    items = []
    while not isinstance(event := events.next(), yaml.SequenceEndEvent):
        if isinstance(event, yaml.AliasEvent):
            items.append(event.anchor)
            continue
        kind = _scalar(event)[0] if isinstance(event, yaml.ScalarEvent) else None
        if kind not in ("VALUE_STRING", "VALUE_BOOLEAN"):
            raise events.wrapped("only value lists are allowed in serialized settings", event)
        items.append(event.value)  # parser.text(): a boolean keeps its text in a list
    return items


def _scalar(event: yaml.ScalarEvent) -> tuple[str, str]:
    """Jackson's token for a scalar (YAMLParser._decodeScalar); numbers count as strings here,
    since Elasticsearch keeps the text of both."""
    value, tag = event.value, event.tag
    if tag in (None, "!"):
        if not event.implicit[0]:  # quoted, or a non-specific tag: a string
            return "VALUE_STRING", value
        if _NULL.fullmatch(value):
            return "VALUE_NULL", value
        return ("VALUE_BOOLEAN" if _BOOL.fullmatch(value) else "VALUE_STRING"), value
    name = tag[len(_YAML_TAG):].split(",")[0] if tag.startswith(_YAML_TAG) else tag
    if name == "binary":
        return "VALUE_EMBEDDED_OBJECT", value
    if name == "bool" and _yaml_bool(value) is not None:
        return "VALUE_BOOLEAN", value
    if name == "null":
        return "VALUE_NULL", value
    return "VALUE_STRING", value


def _yaml_bool(text: str) -> bool | None:
    """Jackson's _matchYAMLBoolean."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "y"):
        return True
    if lowered in ("false", "no", "off", "n"):
        return False
    return None


def _expect_end(events: _Events) -> None:
    """Settings.fromXContent(validateEndOfStream): nothing may follow the settings map."""
    try:
        extra = events.next()
    except YmlFormatError:
        extra, mark = None, events.last_mark
    else:
        mark = extra.start_mark if extra is not None else None
    if mark is not None:
        raise YmlFormatError("malformed, expected end of settings but encountered additional content starting "
                             f"at line number: [{mark.line + 1}], column number: [{mark.column + 1}]",
                             mark.line + 1, PARSE_EXCEPTION)


def _legacy_lists(settings: Settings) -> Settings:
    """`a.0: x`, `a.1: y` -> `a: [x, y]`, refused when `a` itself is set."""
    for key in sorted(settings):
        if not key.endswith(".0"):
            continue
        prefix = key[:-2]
        if prefix in settings:
            raise ValueError(f"settings builder can't contain values for [{prefix}={_text(settings[prefix])}] "
                             f"and [{key}={_text(settings.get(key))}]")
        values, index = [], 0
        while f"{prefix}.{index}" in settings:
            values.append(_text(settings.pop(f"{prefix}.{index}")))
            index += 1
        settings[prefix] = values
    return settings


def _text(value: str | list[str] | None) -> str | None:
    return value if value is None or isinstance(value, str) else "[" + ", ".join(value) + "]"


def _token_name(event: yaml.Event) -> str:
    """The token Elasticsearch names when the file is not a map of settings."""
    if isinstance(event, yaml.SequenceStartEvent):
        return "START_ARRAY"
    if isinstance(event, yaml.AliasEvent):
        return "VALUE_STRING"
    kind = _scalar(event)[0]
    if kind == "VALUE_STRING" and event.tag is None and event.implicit[0]:
        tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, event.value, (True, False))
        return "VALUE_NUMBER" if tag in (_YAML_TAG + "int", _YAML_TAG + "float") else kind
    return kind


class _Events:
    """PyYAML's parse events as Jackson's YAMLParser hands them on: document markers skipped,
    None at the end, syntax errors wrapped as Elasticsearch wraps them."""

    def __init__(self, text: str, source: str) -> None:
        self._source = source
        self._events: Iterator[yaml.Event] = yaml.parse(text, Loader=_Loader)
        self.last_mark: yaml.Mark | None = None

    def next(self) -> yaml.Event | None:
        while True:
            try:
                event = next(self._events)
            except StopIteration:
                return None
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                self.last_mark = mark
                problem = ", ".join(p for p in (exc.context, exc.problem) if p)
                raise YmlFormatError(f"Failed to load settings from [{self._source}]: {problem}",
                                     mark.line + 1 if mark else None) from None
            except yaml.YAMLError as exc:
                raise YmlFormatError(f"Failed to load settings from [{self._source}]: {exc}") from None
            if isinstance(event, yaml.StreamEndEvent):
                return None
            if not isinstance(event, (yaml.StreamStartEvent, yaml.DocumentStartEvent, yaml.DocumentEndEvent)):
                self.last_mark = event.start_mark
                return event

    def wrapped(self, cause: str, event: yaml.Event | None) -> YmlFormatError:
        """Any other failure while loading: SettingsException("Failed to load settings from [...]")."""
        line = event.start_mark.line + 1 if event is not None else None
        return YmlFormatError(f"Failed to load settings from [{self._source}]: {cause}", line)
