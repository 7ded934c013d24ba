"""Redaction of secrets in text and log records.

Prefect masks nothing but its own API key, so esremote keeps the set of secrets a run knows
(passwords, API keys in raw and encoded form, keystore passwords) and scrubs every log record and
artifact text through it.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable

MASK = "**********"
_MIN_LEN = 4  # shorter strings would mask ordinary words; no real secret is that short


class Redactor:
    """A thread-safe set of secret strings, and the means to scrub them from text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None, *, with_encodings: bool = True) -> None:
        """Remember a secret, plus its base64 form (API keys travel as base64(id:key))."""
        if not secret or len(secret) < _MIN_LEN:
            return
        forms = {secret}
        if with_encodings:
            forms.add(base64.b64encode(secret.encode()).decode())
        with self._lock:
            self._secrets |= forms

    def add_api_key(self, key_id: str, api_key: str) -> None:
        self.add(api_key)
        self.add(base64.b64encode(f"{key_id}:{api_key}".encode()).decode(), with_encodings=False)

    def __contains__(self, text: str) -> bool:
        return text in self._secrets

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)  # longest first: no partial leftovers
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record's message and scrubs it before any handler sees it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True


# The process-wide redactor: flows add what they learn, the log filter reads it.
default_redactor = Redactor()


def install(logger: logging.Logger | None = None, redactor: Redactor = default_redactor) -> RedactingFilter:
    """Attach a redacting filter to `logger`'s handlers (root by default) and to the logger itself."""
    logger = logger or logging.getLogger()
    flt = RedactingFilter(redactor)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(flt)
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
