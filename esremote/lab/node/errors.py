"""Why a lab node refuses to start, and why a setting's value does not parse."""

from __future__ import annotations






class StartupError(Exception):
    """The node refuses to start; `exception` is the Java class name that prefixes the log line."""

    def __init__(self, message: str, exception: str = "java.lang.IllegalArgumentException",
                 cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exception = exception
        self.cause = cause  # the `Caused by:` line Java prints under it


class SettingValueError(ValueError):
    """A value that does not parse as its setting's type (the message is Elasticsearch's)."""

