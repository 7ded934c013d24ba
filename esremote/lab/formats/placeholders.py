"""`${...}` in elasticsearch.yml, resolved in Elasticsearch 8.2+'s two passes.

1. Before YAML parsing, each line's `${NAME}` is replaced by the environment variable NAME, as text
   (InternalSettingsPreparer.loadConfigWithSubstitutions, elastic/elasticsearch PR #85186, 8.2.0).
   The name is everything up to the first `}`, default included: `${HOST:localhost}` looks up a
   variable literally named `HOST:localhost`, finds none and is left for the second pass.
2. After parsing, the remaining placeholders resolve against the other *settings* (not the
   environment) with PropertyPlaceholder: `${name:default}`, nesting, recursion; a value that
   resolves to "" removes its setting (Settings.Builder.replacePropertyPlaceholders).

So `${HOST:localhost}` always gives `localhost` unless a setting named HOST exists, even when the
environment has HOST: that is what Elasticsearch does, and the lab does the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

PREFIX, SUFFIX = "${", "}"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what Java's BufferedReader.readLine splits on


class PlaceholderError(ValueError):
    """IllegalArgumentException from PropertyPlaceholder (the message is Elasticsearch's)."""


# ----------------------------------------------------------------- pass 1: the environment, as text


def substitute_environment(text: str, environ: Mapping[str, str]) -> str:
    """The file as Elasticsearch hands it to the YAML parser: lines re-joined with "\\n"."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # readLine does not report an empty line after the final line break
    return "".join(_substitute_line(line, environ) + "\n" for line in lines)


def _substitute_line(line: str, environ: Mapping[str, str]) -> str:
    out, position = [], 0
    while (dollar := line.find(PREFIX, position)) != -1:
        close = line.find(SUFFIX, dollar + len(PREFIX))
        if close == -1:
            break  # no closing brace: the rest of the line is copied as it is
        out.append(line[position:dollar])
        name = line[dollar + len(PREFIX):close]
        out.append(environ[name] if name in environ else line[dollar:close + 1])
        position = close + 1
    out.append(line[position:])
    return "".join(out)


# ------------------------------------------------------------------- pass 2: references to settings


def resolve_settings(settings: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
    """Replace placeholders in every value, in Elasticsearch's (sorted) order, in place."""
    def lookup(name: str) -> str | None:
        return _java_text(settings[name]) if name in settings else None

    for key in sorted(settings):
        value = settings[key]
        if isinstance(value, list):
            settings[key] = [replace(item, lookup) for item in value]
            continue
        value = replace(value, lookup)
        if value:
            settings[key] = value
        else:
            del settings[key]  # Strings.hasLength(value) == false: the setting goes away
    return settings


def replace(value: str, lookup: Callable[[str], str | None]) -> str:
    """PropertyPlaceholder.replacePlaceholders with Settings' resolver (`prompt.*` may stay)."""
    return _parse(value, lookup, set())


def _parse(text: str, lookup: Callable[[str], str | None], visited: set[str]) -> str:
    buf = text
    start = buf.find(PREFIX)
    while start != -1:
        end = _placeholder_end(buf, start)
        if end == -1:
            break
        placeholder = buf[start + len(PREFIX):end]
        if placeholder in visited:
            raise PlaceholderError(f"Circular placeholder reference '{placeholder}' in property definitions")
        visited.add(placeholder)
        placeholder = _parse(placeholder, lookup, visited)
        name, colon, default = placeholder.partition(":")
        found = lookup(name)
        if found is None and colon:
            found = default
        if found is None and name.startswith("prompt."):
            return text  # shouldIgnoreMissing without removal: the original value, untouched
        if found is None:
            raise PlaceholderError(f"Could not resolve placeholder '{name}'")
        found = _parse(found, lookup, visited)
        buf = buf[:start] + found + buf[end + len(SUFFIX):]
        start = buf.find(PREFIX, start + len(found))
        # Elasticsearch forgets the name without its default, so `${a:x}` twice in one value
        # reads as circular the second time; kept, since that is how it fails.
        visited.discard(name)
    return buf


def _placeholder_end(buf: str, start: int) -> int:
    index, nested = start + len(PREFIX), 0
    while index < len(buf):
        if buf.startswith(SUFFIX, index):
            if nested == 0:
                return index
            nested -= 1
            index += len(SUFFIX)
        elif buf.startswith(PREFIX, index):
            nested += 1
            index += len(PREFIX)
        else:
            index += 1
    return -1


def _java_text(value: str | list[str]) -> str:
    """Settings.toString of a value: a list prints as Java's List.toString."""
    return value if isinstance(value, str) else "[" + ", ".join(value) + "]"
