"""Elasticsearch durations (TimeValue) as an API key's `expiration` takes them: `90d`, `12h`, `30m`.

Whole numbers only, as Elasticsearch parses them ("Fractional time values are not supported"),
with its units nanos, micros, ms, s, m, h, d. esremote also refuses less than a second: a key that
expires before it reaches the nodes is a typo.
"""

from __future__ import annotations

import re

from esremote.errors import ConfigError

DAY_MS = 86_400_000
_DURATION = re.compile(r"^(\d+)(nanos|micros|ms|s|m|h|d)$")
_UNIT_MS = {"nanos": 1e-6, "micros": 1e-3, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}


def duration_ms(text: str, option: str = "key expiration") -> int:
    """Milliseconds of an Elasticsearch duration; a `ConfigError` that names `option` otherwise."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ConfigError(f"{option}: {text!r} is not an Elasticsearch duration; give a whole number and a "
                          "unit (d, h, m, s, ms), e.g. 90d")
    ms = int(int(match.group(1)) * _UNIT_MS[match.group(2)])
    if ms < 1000:
        raise ConfigError(f"{option}: {text!r} is shorter than a second; give e.g. 90d")
    return ms


def duration_text(ms: int) -> str:
    """The shortest exact duration for `ms` (`90d`, `36h`, `1500ms`)."""
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // int(_UNIT_MS[unit])}{unit}"
    return f"{ms}ms"
