"""A small REST client for the lab's control side (health, seeding, the writer, faults).

Stdlib only (http.client + ssl), so the writer and `lab status` start fast. Elasticsearch's error
bodies become `ClusterHTTPError` with the error type and reason; a connection failure becomes a
transient `ClusterError`. Passwords stay in the Authorization header, never in a message.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from urllib.parse import urlsplit

from esremote.errors import ClusterError, ClusterHTTPError


class LabClient:
    def __init__(self, url: str, *, ca_cert: str, username: str, password: str, cluster: str = "",
                 timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 9200
        self.cluster = cluster or f"{self.host}:{self.port}"
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_cert)
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._auth = f"Basic {token}"

    def as_user(self, username: str, password: str) -> LabClient:
        """The same cluster, as another user (to create objects that run as that user)."""
        other = object.__new__(LabClient)
        other.__dict__.update(self.__dict__)
        other._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        return other

    def request(self, method: str, path: str, body: dict | list | None = None, *,
                ndjson: list[dict] | None = None) -> dict:
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        data = None
        if ndjson is not None:
            data = "".join(json.dumps(line) + "\n" for line in ndjson).encode()
            headers["Content-Type"] = "application/x-ndjson"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._context, timeout=self.timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ClusterError(f"{method} {path}: {type(exc).__name__}: {exc}", cluster=self.cluster,
                               transient=True) from None
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"raw": raw[:200].decode(errors="replace")}
        if response.status >= 300:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                etype, reason = error.get("type"), error.get("reason") or ""
            else:
                etype, reason = None, str(error or payload)[:300]
            raise ClusterHTTPError(status=response.status, error_type=etype, reason=reason,
                                   cluster=self.cluster, method=method, path=path)
        return payload

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def put(self, path: str, body: dict | None = None) -> dict:
        return self.request("PUT", path, body if body is not None else {})

    def post(self, path: str, body: dict | None = None) -> dict:
        return self.request("POST", path, body)
