"""The route table (method + path as in Elasticsearch's REST API specs, named by spec API name),
path matching the way Elasticsearch's path trie does it (a literal segment beats a `{param}`), and
the request pipeline: fault switches, compatibility headers, authentication, the URL parameters the
API takes (params.py), the action's cluster privilege, then the handler.

A test checks the table against every `*.json` spec (same paths, same methods); `UNSPECIFIED_ROUTES`
are the few routes Elasticsearch registers beyond its spec files. Handlers live in
`esremote.lab.rest.api.*` and register with `@api("spec.name")`; a route whose handler does not exist
answers a loud 501, never a plausible 404.

The `http-overload` fault (`faults.json`: `{"http-overload": {"nodes": null, "status": 429,
"burst": 1, "every": 2}}`) makes the first `burst` of every `every` requests on the node fail with
`status` (429 `es_rejected_execution_exception` or 503 `cluster_block_exception`).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

from esremote.lab import errors
from esremote.lab.rest import params
from esremote.lab.rest.http import Request, Response, check_compatibility

# (spec API name, path, methods): exactly what the spec files say.
ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("bulk", "/_bulk", ("POST", "PUT")),
    ("bulk", "/{index}/_bulk", ("POST", "PUT")),
    ("cat.health", "/_cat/health", ("GET",)),
    ("cat.nodes", "/_cat/nodes", ("GET",)),
    ("ccr.delete_auto_follow_pattern", "/_ccr/auto_follow/{name}", ("DELETE",)),
    ("ccr.follow", "/{index}/_ccr/follow", ("PUT",)),
    ("ccr.follow_info", "/{index}/_ccr/info", ("GET",)),
    ("ccr.follow_stats", "/{index}/_ccr/stats", ("GET",)),
    ("ccr.get_auto_follow_pattern", "/_ccr/auto_follow", ("GET",)),
    ("ccr.get_auto_follow_pattern", "/_ccr/auto_follow/{name}", ("GET",)),
    ("ccr.pause_auto_follow_pattern", "/_ccr/auto_follow/{name}/pause", ("POST",)),
    ("ccr.pause_follow", "/{index}/_ccr/pause_follow", ("POST",)),
    ("ccr.put_auto_follow_pattern", "/_ccr/auto_follow/{name}", ("PUT",)),
    ("ccr.resume_auto_follow_pattern", "/_ccr/auto_follow/{name}/resume", ("POST",)),
    ("ccr.resume_follow", "/{index}/_ccr/resume_follow", ("POST",)),
    ("ccr.stats", "/_ccr/stats", ("GET",)),
    ("ccr.unfollow", "/{index}/_ccr/unfollow", ("POST",)),
    ("cluster.allocation_explain", "/_cluster/allocation/explain", ("GET", "POST")),
    ("cluster.get_settings", "/_cluster/settings", ("GET",)),
    ("cluster.health", "/_cluster/health", ("GET",)),
    ("cluster.health", "/_cluster/health/{index}", ("GET",)),
    ("cluster.put_settings", "/_cluster/settings", ("PUT",)),
    ("cluster.remote_info", "/_remote/info", ("GET",)),
    ("cluster.state", "/_cluster/state", ("GET",)),
    ("cluster.state", "/_cluster/state/{metric}", ("GET",)),
    ("cluster.state", "/_cluster/state/{metric}/{index}", ("GET",)),
    ("count", "/_count", ("POST", "GET")),
    ("count", "/{index}/_count", ("POST", "GET")),
    ("delete", "/{index}/_doc/{id}", ("DELETE",)),
    ("get", "/{index}/_doc/{id}", ("GET",)),
    ("index", "/{index}/_doc/{id}", ("PUT", "POST")),
    ("index", "/{index}/_doc", ("POST",)),
    ("indices.create", "/{index}", ("PUT", "POST")),
    ("indices.delete", "/{index}", ("DELETE",)),
    ("indices.exists", "/{index}", ("HEAD",)),
    ("indices.flush", "/_flush", ("POST", "GET")),
    ("indices.flush", "/{index}/_flush", ("POST", "GET")),
    ("indices.get", "/{index}", ("GET",)),
    ("indices.refresh", "/_refresh", ("POST", "GET")),
    ("indices.refresh", "/{index}/_refresh", ("POST", "GET")),
    ("indices.resolve_cluster", "/_resolve/cluster", ("GET",)),
    ("indices.resolve_cluster", "/_resolve/cluster/{name}", ("GET",)),
    ("info", "/", ("GET",)),
    ("license.get", "/_license", ("GET",)),
    ("license.post", "/_license", ("PUT", "POST")),
    ("license.post_start_trial", "/_license/start_trial", ("POST",)),
    ("ml.close_job", "/_ml/anomaly_detectors/{job_id}/_close", ("POST",)),
    ("ml.delete_datafeed", "/_ml/datafeeds/{datafeed_id}", ("DELETE",)),
    ("ml.delete_job", "/_ml/anomaly_detectors/{job_id}", ("DELETE",)),
    ("ml.get_datafeed_stats", "/_ml/datafeeds/{datafeed_id}/_stats", ("GET",)),
    ("ml.get_datafeed_stats", "/_ml/datafeeds/_stats", ("GET",)),
    ("ml.get_datafeeds", "/_ml/datafeeds/{datafeed_id}", ("GET",)),
    ("ml.get_datafeeds", "/_ml/datafeeds", ("GET",)),
    ("ml.get_job_stats", "/_ml/anomaly_detectors/_stats", ("GET",)),
    ("ml.get_job_stats", "/_ml/anomaly_detectors/{job_id}/_stats", ("GET",)),
    ("ml.get_jobs", "/_ml/anomaly_detectors/{job_id}", ("GET",)),
    ("ml.get_jobs", "/_ml/anomaly_detectors", ("GET",)),
    ("ml.open_job", "/_ml/anomaly_detectors/{job_id}/_open", ("POST",)),
    ("ml.put_datafeed", "/_ml/datafeeds/{datafeed_id}", ("PUT",)),
    ("ml.put_job", "/_ml/anomaly_detectors/{job_id}", ("PUT",)),
    ("ml.set_upgrade_mode", "/_ml/set_upgrade_mode", ("POST",)),
    ("ml.start_datafeed", "/_ml/datafeeds/{datafeed_id}/_start", ("POST",)),
    ("ml.stop_datafeed", "/_ml/datafeeds/{datafeed_id}/_stop", ("POST",)),
    ("nodes.info", "/_nodes", ("GET",)),
    ("nodes.info", "/_nodes/{node_id}", ("GET",)),
    ("nodes.info", "/_nodes/{metric}", ("GET",)),
    ("nodes.info", "/_nodes/{node_id}/{metric}", ("GET",)),
    ("nodes.reload_secure_settings", "/_nodes/reload_secure_settings", ("POST",)),
    ("nodes.reload_secure_settings", "/_nodes/{node_id}/reload_secure_settings", ("POST",)),
    ("nodes.stats", "/_nodes/stats", ("GET",)),
    ("nodes.stats", "/_nodes/{node_id}/stats", ("GET",)),
    ("nodes.stats", "/_nodes/stats/{metric}", ("GET",)),
    ("nodes.stats", "/_nodes/{node_id}/stats/{metric}", ("GET",)),
    ("nodes.stats", "/_nodes/stats/{metric}/{index_metric}", ("GET",)),
    ("nodes.stats", "/_nodes/{node_id}/stats/{metric}/{index_metric}", ("GET",)),
    ("search", "/_search", ("GET", "POST")),
    ("search", "/{index}/_search", ("GET", "POST")),
    ("search", "/{index}/{type}/_search", ("GET", "POST")),
    ("security.authenticate", "/_security/_authenticate", ("GET",)),
    ("security.change_password", "/_security/user/{username}/_password", ("PUT", "POST")),
    ("security.change_password", "/_security/user/_password", ("PUT", "POST")),
    ("security.create_api_key", "/_security/api_key", ("PUT", "POST")),
    ("security.create_cross_cluster_api_key", "/_security/cross_cluster/api_key", ("POST",)),
    ("security.delete_role", "/_security/role/{name}", ("DELETE",)),
    ("security.delete_user", "/_security/user/{username}", ("DELETE",)),
    ("security.enable_user", "/_security/user/{username}/_enable", ("PUT", "POST")),
    ("security.get_api_key", "/_security/api_key", ("GET",)),
    ("security.get_role", "/_security/role/{name}", ("GET",)),
    ("security.get_role", "/_security/role", ("GET",)),
    ("security.get_user", "/_security/user/{username}", ("GET",)),
    ("security.get_user", "/_security/user", ("GET",)),
    ("security.get_user_privileges", "/_security/user/_privileges", ("GET",)),
    ("security.has_privileges", "/_security/user/_has_privileges", ("GET", "POST")),
    ("security.has_privileges", "/_security/user/{user}/_has_privileges", ("GET", "POST")),
    ("security.invalidate_api_key", "/_security/api_key", ("DELETE",)),
    ("security.put_role", "/_security/role/{name}", ("PUT", "POST")),
    ("security.put_user", "/_security/user/{username}", ("PUT", "POST")),
    ("security.query_api_keys", "/_security/_query/api_key", ("GET", "POST")),
    ("security.update_cross_cluster_api_key", "/_security/cross_cluster/api_key/{id}", ("PUT",)),
    ("transform.delete_transform", "/_transform/{transform_id}", ("DELETE",)),
    ("transform.get_transform", "/_transform/{transform_id}", ("GET",)),
    ("transform.get_transform", "/_transform", ("GET",)),
    ("transform.get_transform_stats", "/_transform/{transform_id}/_stats", ("GET",)),
    ("transform.put_transform", "/_transform/{transform_id}", ("PUT",)),
    ("transform.start_transform", "/_transform/{transform_id}/_start", ("POST",)),
    ("transform.stop_transform", "/_transform/{transform_id}/_stop", ("POST",)),
    ("xpack.info", "/_xpack", ("GET",)),
]

# Routes Elasticsearch's REST handlers register (their `routes()`) that the spec files leave out.
# Without them the `{param}` route of the same shape takes the literal as an id.
UNSPECIFIED_ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    # RestGetTransformStatsAction: `_transform/_stats` and `_transform/{id}/_stats` (es-facts §5)
    ("transform.get_transform_stats", "/_transform/_stats", ("GET",)),
]

# APIs whose spec files the shared spec directory lacks: their path and methods as the spec file in
# elastic/elasticsearch's rest-api-spec says (SPECS_ELSEWHERE names the file and the commit read).
ROUTES_SPECIFIED_ELSEWHERE: list[tuple[str, str, tuple[str, ...]]] = [
    ("ml.update_datafeed", "/_ml/datafeeds/{datafeed_id}/_update", ("POST",)),
    ("transform.update_transform", "/_transform/{transform_id}/_update", ("POST",)),
]
_SPEC_DIR = "rest-api-spec/src/main/resources/rest-api-spec/api"
SPECS_ELSEWHERE = {
    "ml.update_datafeed": f"{_SPEC_DIR}/ml.update_datafeed.json@069029ec746f2690375a8f95f38b11cd8154dd2f",
    "transform.update_transform": f"{_SPEC_DIR}/transform.update_transform.json@0128e30676c6961849e4d2d0f92b6b1eb58e4433",
}

# What each API needs besides authentication: (transport action, cluster privileges granting it).
# APIs not listed either need no cluster privilege (index-level checks happen in the handler) or
# check ownership themselves (API keys, authenticate, own password).
_M, _MS = ["monitor", "manage", "all"], ["manage_security", "all"]
ACTIONS: dict[str, tuple[str, list[str]]] = {
    "info": ("cluster:monitor/main", _M),
    "cat.health": ("cluster:monitor/health", _M),
    "cat.nodes": ("cluster:monitor/nodes/info", _M),
    "cluster.health": ("cluster:monitor/health", _M),
    "cluster.get_settings": ("cluster:monitor/settings", _M),
    "cluster.put_settings": ("cluster:admin/settings/update", ["manage", "all"]),
    "cluster.remote_info": ("cluster:monitor/remote/info", _M),
    "cluster.state": ("cluster:monitor/state", _M),
    "cluster.allocation_explain": ("cluster:monitor/allocation/explain", _M),
    "nodes.info": ("cluster:monitor/nodes/info", _M),
    "nodes.stats": ("cluster:monitor/nodes/stats", _M),
    "nodes.reload_secure_settings": ("cluster:admin/nodes/reload_secure_settings", ["manage", "all"]),
    "license.get": ("cluster:monitor/xpack/license/get", _M),
    "license.post": ("cluster:admin/xpack/license/put", ["manage", "all"]),
    "license.post_start_trial": ("cluster:admin/xpack/license/start_trial", ["manage", "all"]),
    "xpack.info": ("cluster:monitor/xpack/info", _M),
    "security.put_user": ("cluster:admin/xpack/security/user/put", _MS),
    "security.get_user": ("cluster:admin/xpack/security/user/get", ["read_security"] + _MS),
    "security.delete_user": ("cluster:admin/xpack/security/user/delete", _MS),
    "security.enable_user": ("cluster:admin/xpack/security/user/set_enabled", _MS),
    "security.put_role": ("cluster:admin/xpack/security/role/put", _MS),
    "security.get_role": ("cluster:admin/xpack/security/role/get", ["read_security"] + _MS),
    "security.delete_role": ("cluster:admin/xpack/security/role/delete", _MS),
    "security.create_cross_cluster_api_key": ("cluster:admin/xpack/security/cross_cluster/api_key/create", _MS),
    "security.update_cross_cluster_api_key": ("cluster:admin/xpack/security/cross_cluster/api_key/update", _MS),
    "ccr.follow": ("indices:admin/xpack/ccr/put_follow", ["manage_ccr", "all"]),
    "ccr.follow_info": ("indices:monitor/xpack/ccr/follow_info", ["monitor", "read_ccr", "manage_ccr", "all"]),
    "ccr.follow_stats": ("indices:monitor/xpack/ccr/follow_stats", ["monitor", "read_ccr", "manage_ccr", "all"]),
    "ccr.pause_follow": ("cluster:admin/xpack/ccr/pause_follow", ["manage_ccr", "all"]),
    "ccr.resume_follow": ("cluster:admin/xpack/ccr/resume_follow", ["manage_ccr", "all"]),
    "ccr.unfollow": ("indices:admin/xpack/ccr/unfollow", ["manage_ccr", "all"]),
    "ccr.stats": ("cluster:monitor/xpack/ccr/stats", ["monitor", "read_ccr", "manage_ccr", "all"]),
    "ccr.put_auto_follow_pattern": ("cluster:admin/xpack/ccr/auto_follow_pattern/put", ["manage_ccr", "all"]),
    "ccr.get_auto_follow_pattern": ("cluster:admin/xpack/ccr/auto_follow_pattern/get", ["read_ccr", "manage_ccr", "monitor", "all"]),
    "ccr.delete_auto_follow_pattern": ("cluster:admin/xpack/ccr/auto_follow_pattern/delete", ["manage_ccr", "all"]),
    "ccr.pause_auto_follow_pattern": ("cluster:admin/xpack/ccr/auto_follow_pattern/activate", ["manage_ccr", "all"]),
    "ccr.resume_auto_follow_pattern": ("cluster:admin/xpack/ccr/auto_follow_pattern/activate", ["manage_ccr", "all"]),
    "transform.put_transform": ("cluster:admin/transform/put", ["manage_transform", "all"]),
    "transform.get_transform": ("cluster:monitor/transform/get", ["monitor_transform", "manage_transform", "all"]),
    "transform.get_transform_stats": ("cluster:monitor/transform/stats/get", ["monitor_transform", "manage_transform", "all"]),
    "transform.start_transform": ("cluster:admin/transform/start", ["manage_transform", "all"]),
    "transform.stop_transform": ("cluster:admin/transform/stop", ["manage_transform", "all"]),
    "transform.delete_transform": ("cluster:admin/transform/delete", ["manage_transform", "all"]),
    "transform.update_transform": ("cluster:admin/transform/update", ["manage_transform", "all"]),
    "ml.put_job": ("cluster:admin/xpack/ml/job/put", ["manage_ml", "all"]),
    "ml.get_jobs": ("cluster:monitor/xpack/ml/job/get", ["monitor_ml", "manage_ml", "all"]),
    "ml.get_job_stats": ("cluster:monitor/xpack/ml/job/stats/get", ["monitor_ml", "manage_ml", "all"]),
    "ml.open_job": ("cluster:admin/xpack/ml/job/open", ["manage_ml", "all"]),
    "ml.close_job": ("cluster:admin/xpack/ml/job/close", ["manage_ml", "all"]),
    "ml.delete_job": ("cluster:admin/xpack/ml/job/delete", ["manage_ml", "all"]),
    "ml.put_datafeed": ("cluster:admin/xpack/ml/datafeeds/put", ["manage_ml", "all"]),
    "ml.get_datafeeds": ("cluster:monitor/xpack/ml/datafeeds/get", ["monitor_ml", "manage_ml", "all"]),
    "ml.get_datafeed_stats": ("cluster:monitor/xpack/ml/datafeeds/stats/get", ["monitor_ml", "manage_ml", "all"]),
    "ml.start_datafeed": ("cluster:admin/xpack/ml/datafeed/start", ["manage_ml", "all"]),
    "ml.stop_datafeed": ("cluster:admin/xpack/ml/datafeed/stop", ["manage_ml", "all"]),
    "ml.delete_datafeed": ("cluster:admin/xpack/ml/datafeeds/delete", ["manage_ml", "all"]),
    "ml.update_datafeed": ("cluster:admin/xpack/ml/datafeeds/update", ["manage_ml", "all"]),
    "ml.set_upgrade_mode": ("cluster:admin/xpack/ml/upgrade_mode", ["manage_ml", "all"]),
}

Handler = Callable[[Request], Any]
_HANDLERS: dict[str, Handler] = {}


def api(name: str) -> Callable[[Handler], Handler]:
    """Register a handler under its spec API name."""
    def register(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn
    return register


def _load_handlers() -> None:
    from esremote.lab.rest.api import ccr, cluster, documents, license, ml, nodes, security_api, transform  # noqa: F401


class Router:
    """Matches (method, path) to a route: per segment a literal beats a `{param}`."""

    def __init__(self, routes: list[tuple[str, str, tuple[str, ...]]] = (
            ROUTES + UNSPECIFIED_ROUTES + ROUTES_SPECIFIED_ELSEWHERE)) -> None:
        self._routes = [(name, path, [s for s in path.strip("/").split("/") if s], methods)
                        for name, path, methods in routes]

    def parts(self, name: str) -> set[str]:
        """The path parameters of every route of API `name` (Elasticsearch counts them as consumed)."""
        return {p[1:-1] for api, _t, segments, _m in self._routes if api == name
                for p in segments if p.startswith("{")}

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        segments = [s for s in path.strip("/").split("/") if s]
        best: tuple[tuple[int, ...], str, dict[str, str]] | None = None
        allowed: set[str] = set()
        for name, _template, parts, methods in self._routes:
            if len(parts) != len(segments):
                continue
            bound, score = {}, []
            for part, segment in zip(parts, segments):
                if part.startswith("{"):
                    bound[part[1:-1]] = segment
                    score.append(0)
                elif part == segment:
                    score.append(1)
                else:
                    break
            else:
                key = tuple(score)
                if method in methods or (method == "HEAD" and "GET" in methods and name != "indices.exists"):
                    if best is None or key > best[0]:
                        best = (key, name, bound)
                else:
                    allowed.update(methods)
        if best is not None:
            return best[1], best[2]
        if allowed:
            raise errors.wrong_method(path, method, sorted(allowed))
        raise errors.no_handler(path, method)


class Pipeline:
    """What every request goes through on a node (see the module docstring)."""

    def __init__(self, ctx: Any) -> None:
        _load_handlers()
        self.ctx = ctx
        self.router = Router()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def _overload(self) -> None:
        fault = self.ctx.fault("http-overload")
        if fault is None:
            return
        with self._lock:
            n = next(self._counter)
        every, burst = int(fault.get("every", 2)), int(fault.get("burst", 1))
        if n % max(every, 1) >= burst:
            return
        if int(fault.get("status", 429)) == 503:
            raise errors.Unavailable("blocked by: [SERVICE_UNAVAILABLE/2/no master];")
        raise errors.TooManyRequests(
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
            "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]")

    def __call__(self, request: Request) -> Response:
        self._overload()
        check_compatibility(request.headers, self.ctx.config.version[0])
        name, path_params = self.router.match(request.method, request.path)
        request.api, request.path_params = name, path_params
        request.user = self.ctx.security.authenticate_http(request.headers, request.path)
        problem = params.check(name, request.path, self.router.parts(name), set(request.params))
        if problem is not None:
            raise errors.IllegalArgument(problem)
        if name in ACTIONS:
            action, privileges = ACTIONS[name]
            self.ctx.security.require_cluster(request.user, action, privileges)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise errors.NotImplementedInLab(f"the lab does not simulate [{name}] ({request.method} {request.path})")
        return _as_response(handler(request))


def _as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        return Response(result[0], result[1])
    return Response(200, result)
