"""Elasticsearch's REST errors as classes that render the exact wire body.

Every error a lab handler raises is an `ESError`; the HTTP layer turns it into

    {"error": {"root_cause": [{"type": ..., "reason": ..., **extra}], "type": ..., "reason": ...,
               **extra}, "status": N}

which is what Elasticsearch 8.x sends (`ElasticsearchException.generateFailureXContent`). Extra
metadata (e.g. `index`, `resource.type`, `license.expired.feature`) is rendered at both levels,
as Elasticsearch does. Errors without the nested object (unknown URI, wrong method) are
`PlainError`s: Elasticsearch answers those with `{"error": "<text>", "status": N}`.
"""

from __future__ import annotations

from typing import Any


class ESError(Exception):
    """An Elasticsearch exception: HTTP status, `error.type`, `error.reason` and extra metadata."""

    status = 500
    type = "exception"

    def __init__(self, reason: str, *, status: int | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None, caused_by: ESError | None = None,
                 **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers = headers or {}
        self.caused_by = caused_by
        self.extra = extra

    def cause_body(self) -> dict:
        body = {"type": self.type, "reason": self.reason, **self.extra}
        if self.caused_by is not None:
            body["caused_by"] = self.caused_by.cause_body()
        return body

    def body(self) -> dict:
        root_cause = {"type": self.type, "reason": self.reason, **self.extra}
        return {"error": {"root_cause": [root_cause], **self.cause_body()}, "status": self.status}

    def __str__(self) -> str:
        return f"[{self.type}] {self.reason}"


class PlainError(ESError):
    """Errors Elasticsearch renders as a bare string (routing failures)."""

    def body(self) -> dict:
        return {"error": self.reason, "status": self.status}


class IllegalArgument(ESError):
    status, type = 400, "illegal_argument_exception"


class ParseError(ESError):
    status, type = 400, "parse_exception"


class XContentParseError(ESError):
    status, type = 400, "x_content_parse_exception"


class ValidationError(ESError):
    """`ActionRequestValidationException`: "Validation Failed: 1: a;2: b;"."""

    status, type = 400, "action_request_validation_exception"

    def __init__(self, *problems: str) -> None:
        text = "".join(f"{i}: {p};" for i, p in enumerate(problems, 1))
        super().__init__(f"Validation Failed: {text}")


class ResourceNotFound(ESError):
    status, type = 404, "resource_not_found_exception"


class ResourceAlreadyExists(ESError):
    status, type = 400, "resource_already_exists_exception"


class IndexNotFound(ESError):
    status, type = 404, "index_not_found_exception"

    def __init__(self, index: str) -> None:
        super().__init__(f"no such index [{index}]", **{
            "resource.type": "index_or_alias", "resource.id": index,
            "index_uuid": "_na_", "index": index})


class StatusConflict(ESError):
    """`ElasticsearchStatusException` with CONFLICT: the task APIs' "already started" answers."""

    status, type = 409, "status_exception"


class VersionConflict(ESError):
    status, type = 409, "version_conflict_engine_exception"


class SecurityError(ESError):
    """`ElasticsearchSecurityException`: 403 unless said otherwise."""

    status, type = 403, "security_exception"


_CHALLENGES = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]


class Unauthenticated(SecurityError):
    """401: the challenges go in the `WWW-Authenticate` header and, as Elasticsearch renders its
    security exceptions' headers, in the body's `header` too."""

    status = 401

    def __init__(self, reason: str, **extra: Any) -> None:
        super().__init__(reason, headers={"WWW-Authenticate": ", ".join(_CHALLENGES)},
                         **extra, header={"WWW-Authenticate": list(_CHALLENGES)})


class LicenseNonCompliant(SecurityError):
    def __init__(self, feature: str) -> None:
        super().__init__(f"current license is non-compliant for [{feature}]",
                         **{"license.expired.feature": feature})


class MediaTypeError(ESError):
    status, type = 400, "media_type_header_exception"


class TooManyRequests(ESError):
    status, type = 429, "es_rejected_execution_exception"


class Unavailable(ESError):
    status, type = 503, "cluster_block_exception"


class NotImplementedInLab(ESError):
    """A route Elasticsearch has but the lab does not simulate: loud, never a plausible answer."""

    status, type = 501, "lab_not_implemented_exception"


class NoSuchRemoteCluster(ESError):
    status, type = 404, "no_such_remote_cluster_exception"

    def __init__(self, alias: str) -> None:
        super().__init__(f"no such remote cluster: [{alias}]")


def no_handler(path: str, method: str) -> PlainError:
    return PlainError(f"no handler found for uri [{path}] and method [{method}]", status=400)


def wrong_method(path: str, method: str, allowed: list[str]) -> PlainError:
    allowed_text = ", ".join(sorted(allowed))
    return PlainError(f"Incorrect HTTP method for uri [{path}] and method [{method}], "
                      f"allowed: [{allowed_text}]", status=405)
