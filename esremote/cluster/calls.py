"""Planned REST requests and what applying them did, shared by the REST-side planners
(remote_settings, privileges, api_key, xcluster_work): a plan is a list of `ApiCall`s (an empty list
is a no-op), applying it gives one `Outcome` per object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from esremote.cluster.client import mapped_errors


@dataclass(frozen=True)
class ApiCall:
    """One REST request esremote intends to make. Bodies never hold a secret, so it prints as is."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    target: str = ""  # what it acts on, for plans and outcomes: "transform my-t", "alias my_remote"

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params.items())
        line = f"{self.method} {self.path}" + (f"?{query}" if query else "")
        if self.body is not None:
            line += " " + json.dumps(self.body, sort_keys=True)
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "body": self.body,
                "params": dict(self.params), "target": self.target}


Status = Literal["changed", "unchanged", "error"]


@dataclass(frozen=True)
class Outcome:
    """What applying one call did: changed, already in the target state (unchanged), or error."""

    target: str
    status: Status
    detail: str = ""
    call: ApiCall | None = None
    transient: bool = False  # an error worth retrying (the cluster was unreachable, 429/503)

    @property
    def ok(self) -> bool:
        return self.status != "error"

    def __str__(self) -> str:
        return f"{self.target}: {self.status}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status, "detail": self.detail,
                "call": self.call.to_dict() if self.call else None, "transient": self.transient}


def segment(value: str) -> str:
    """A path segment (id, index, role name) escaped for the URL."""
    return quote(value, safe="")


def perform(es, cluster: str | None, call: ApiCall) -> Any:
    """Send one call; the response body (a dict) or `ClusterHTTPError`/`ClusterError`."""
    headers = {"accept": "application/json"}
    if call.body is not None:
        headers["content-type"] = "application/json"
    with mapped_errors(cluster, f"{call.method} {call.path}"):
        response = es.perform_request(call.method, call.path, params=dict(call.params) or None,
                                      headers=headers, body=call.body)
    return response.body


def apply_calls(es, cluster: str | None, calls: Iterable[ApiCall]) -> list[Outcome]:
    """Send calls in order and stop at the first error (later calls depend on earlier ones)."""
    outcomes = []
    for call in calls:
        perform(es, cluster, call)
        outcomes.append(Outcome(call.target, "changed", call=call))
    return outcomes
