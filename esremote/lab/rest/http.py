"""The node's HTTPS server: a stdlib threaded HTTP server whose connections are TLS-wrapped in the
worker thread (a slow handshake never blocks `accept`), speaking Elasticsearch's REST conventions:

* every response carries `X-Elastic-Product: Elasticsearch` (elasticsearch-py 8 checks it);
* a `compatible-with=9` Accept/Content-Type gets the 400 an 8.x server gives;
* `filter_path`, `pretty` and HEAD are handled here, once, for every route;
* errors are `ESError`s rendered as Elasticsearch bodies; no traceback reaches a client.

Handlers receive a `Request` and return a body (dict), `(status, body)` or a `Response`.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from esremote.lab import errors

HTTP_PROFILE = ".http"  # IPFilter's name for HTTP's rules
_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: Any  # email.message.Message: case-insensitive .get()
    raw_body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    api: str = ""
    user: Any = None
    ctx: Any = None

    def json(self, required: bool = False) -> dict | None:
        """The JSON body; a required one missing or malformed fails as Elasticsearch does."""
        if not self.raw_body.strip():
            if required:
                raise errors.ParseError("request body is required")
            return None
        try:
            data = json.loads(self.raw_body)
        except ValueError as exc:
            raise errors.XContentParseError(f"[1:{getattr(exc, 'colno', 1)}] Unexpected character: {exc.msg}")\
                from None
        if not isinstance(data, dict):
            raise errors.ParseError("request body must be an object")
        return data

    def ndjson(self) -> list[dict]:
        lines = []
        for number, line in enumerate(self.raw_body.split(b"\n"), 1):
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    raise errors.IllegalArgument(f"Malformed action/metadata line [{number}], expected "
                                                 "START_OBJECT or END_OBJECT but found [VALUE_STRING]") from None
        return lines

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def bool_param(self, name: str, default: bool = False) -> bool:
        if name not in self.params:
            return default
        value = self.params[name]
        if value in ("", "true"):
            return True
        if value == "false":
            return False
        raise errors.IllegalArgument(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")

    def list_param(self, name: str) -> list[str]:
        value = self.path_params.get(name, self.params.get(name, ""))
        return [v for v in value.split(",") if v]


def check_compatibility(headers: Any, major: int = 8) -> None:
    """A server accepts compatible-with its own major or the one before (RestCompatibleVersionHelper):
    an 8.x node refuses the `compatible-with=9` every 9.x client sends."""
    allowed = (str(major), str(major - 1))
    bad = []
    for header in ("Accept", "Content-Type"):
        value = headers.get(header) or ""
        match = _COMPAT.search(value)
        if match and match[1] not in allowed:
            bad.append((header, value, match[1]))
    if bad:
        header, value, version = bad[0]
        names = ", ".join(h for h in ("Accept", "Content-Type") if headers.get(h))
        cause = errors.ESError(f"{header} version must be either version {allowed[0]} or {allowed[1]}, but found {version}. "
                               f"{header}={value}", status=400, type="status_exception")
        raise errors.MediaTypeError(f"Invalid media-type value on headers [{names}]", caused_by=cause)


def filter_path(body: Any, expression: str) -> Any:
    """Elasticsearch's `filter_path`: comma-separated dotted paths with `*` and `**`; `{}` when
    nothing matches, `-path` excludes."""
    includes = [p.split(".") for p in expression.split(",") if p and not p.startswith("-")]
    excludes = [p[1:].split(".") for p in expression.split(",") if p.startswith("-")]
    result = _include(body, includes) if includes else body
    for path in excludes:
        result = _exclude(result, path)
    return {} if result is None else result


def _segment_matches(pattern: str, key: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), key) is not None


def _include(node: Any, paths: list[list[str]]) -> Any:
    if any(not p for p in paths):
        return node
    if isinstance(node, list):
        items = [_include(item, paths) for item in node]
        items = [i for i in items if i is not None]
        return items or None
    if not isinstance(node, dict):
        return None
    out = {}
    for key, value in node.items():
        rest: list[list[str]] = []
        for p in paths:
            if p[0] == "**":
                rest.append(p)      # ** may swallow this level ...
                rest.append(p[1:])  # ... or none
                if len(p) > 1 and _segment_matches(p[1], key):
                    rest.append(p[2:])
            elif _segment_matches(p[0], key):
                rest.append(p[1:])
        if rest:
            picked = _include(value, rest)
            if picked is not None and picked != {}:
                out[key] = picked
    return out or None


def _exclude(node: Any, path: list[str]) -> Any:
    if not isinstance(node, dict) or not path:
        return node
    out = {}
    for key, value in node.items():
        if _segment_matches(path[0], key):
            if len(path) == 1:
                continue
            value = _exclude(value, path[1:])
        out[key] = value
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LabHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # access logs stay quiet, like ES
        pass

    def _serve(self) -> None:
        request = None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raw = self._read_chunked()
            url = urlsplit(self.path)
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            request = Request(self.command, unquote(url.path) or "/", params, self.headers, raw,
                              ctx=self.server.ctx)
            response = self.server.dispatch(request)
        except errors.ESError as exc:
            response = Response(exc.status, exc.body(), dict(exc.headers))
        except Exception as exc:  # a bug in a handler: a 500 body, and the log has the details
            log = getattr(self.server.ctx, "log", None)
            if log is not None:
                log.error("unexpected error while serving [%s %s]: %r", self.command, self.path, exc,
                          exc_info=True)
            err = errors.ESError(f"lab internal error: {type(exc).__name__}: {exc}", status=500,
                                 type="exception")
            response = Response(500, err.body())
        self._send(response, request)

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, response: Response, request: Request | None) -> None:
        body = response.body
        if request is not None and isinstance(body, (dict, list)) and request.params.get("filter_path") \
                and response.status < 300:
            body = filter_path(body, request.params["filter_path"])
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, str)):
            payload = body.encode() if isinstance(body, str) else body
        else:
            pretty = request is not None and request.params.get("pretty") in ("", "true")
            payload = json.dumps(body, indent=2 if pretty else None,
                                 separators=None if pretty else (",", ":")).encode() + (b"\n" if pretty else b"")
        self.send_response(response.status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        content_type = response.content_type
        if content_type == "application/json" and request is not None:
            accept = request.headers.get("Accept") or ""
            if "vnd.elasticsearch+json" in accept:
                major = getattr(getattr(self.server.ctx, "config", None), "version", (8,))[0]
                content_type = f"application/vnd.elasticsearch+json;compatible-with={major}"
        if payload or self.command != "HEAD":
            self.send_header("content-type", f"{content_type}; charset=UTF-8"
                             if "charset" not in content_type and content_type.startswith("text") else content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve


class LabHTTPServer(ThreadingHTTPServer):
    """HTTP(S) on (ip, port); `dispatch(request) -> Response` does routing, auth and handlers."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], ctx: Any, dispatch: Callable[[Request], Response],
                 ssl_context: ssl.SSLContext | None) -> None:
        self.ctx = ctx
        self.dispatch = dispatch
        self.ssl_context = ssl_context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._ip_filter = None
        super().__init__(address, _Handler)

    def verify_request(self, request: socket.socket, client_address: Any) -> bool:
        """Elasticsearch's HTTP IP filter (`xpack.security.http.filter.*`, net/ipfilter.py): a denied
        client is closed before TLS, in the accepting thread."""
        if getattr(self.ctx, "store", None) is None:
            return True
        if self._ip_filter is None:
            from esremote.lab.net.ipfilter import IpFilter  # noqa: PLC0415 - the REST layer runs without net/
            self._ip_filter = IpFilter(self.ctx)
        return self._ip_filter.accept(HTTP_PROFILE, client_address[0])

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        if self.ssl_context is not None:
            request.settimeout(10)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return  # a client that did not finish the handshake (or does not trust us)
            request.settimeout(None)
        with self._open_lock:
            self._open.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            if self.ssl_context is not None:
                request.close()

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  name=f"http-{self.server_address[0]}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop accepting, then cut the kept-alive connections: a stopped node answers nothing."""
        self.shutdown()
        self.server_close()
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
