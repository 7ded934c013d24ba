"""The lab's route table is Elasticsearch's: every path + method of every REST API spec file is a
route named after its spec, the table has nothing the specs lack, and each spec path resolves to
its own API (a literal segment beats a `{param}`, as in Elasticsearch's path trie)."""

import json
import re

import pytest

from esremote.lab import errors
from esremote.lab.rest import params
from esremote.lab.rest.routes import (ROUTES, ROUTES_SPECIFIED_ELSEWHERE, SPECS_ELSEWHERE, UNSPECIFIED_ROUTES,
                                      Router, _HANDLERS, _load_handlers)


def spec_routes(spec_dir) -> set[tuple[str, str, str]]:
    """(api, path, method) for every spec file, in both the old and the current spec formats."""
    found = set()
    for path in sorted(spec_dir.rglob("*.json")):
        if path.name.startswith("_"):
            continue
        for name, spec in json.loads(path.read_text()).items():
            url = spec["url"]
            for entry in url["paths"]:
                if isinstance(entry, str):  # pre-7.x format: methods beside the paths
                    methods = spec.get("methods") or url.get("methods")
                    found.update((name, entry, m) for m in methods)
                else:
                    found.update((name, entry["path"], m) for m in entry["methods"])
    return found


@pytest.fixture(scope="module")
def specs(shared_dir):
    return spec_routes(shared_dir / "es-rest-api-spec")


def table() -> set[tuple[str, str, str]]:
    return {(name, path, method) for name, path, methods in ROUTES for method in methods}


def test_every_spec_route_is_in_the_table(specs):
    assert specs - table() == set()


def test_the_table_has_no_route_the_specs_lack(specs):
    assert table() - specs == set()


def test_routes_of_spec_files_the_shared_directory_lacks_name_their_source(specs):
    _load_handlers()
    names = {name for name, _, _ in ROUTES_SPECIFIED_ELSEWHERE}
    assert names == set(SPECS_ELSEWHERE) == set(params.PARAMS_SPECIFIED_ELSEWHERE)
    assert names.isdisjoint(name for name, _, _ in specs) and names <= set(_HANDLERS)
    assert all(source.endswith(".json@" + source[-40:]) and f"/{name}.json@" in source
               for name, source in SPECS_ELSEWHERE.items())


def test_routes_beyond_the_specs_are_only_those_elasticsearch_registers(specs):
    extra = {(name, path, m) for name, path, methods in UNSPECIFIED_ROUTES for m in methods}
    assert extra == {("transform.get_transform_stats", "/_transform/_stats", "GET")}
    assert extra & specs == set()
    assert {name for name, _, _ in extra} <= {name for name, _, _ in specs}  # an API the specs have


# Paths made by leaving a `{param}` out of a route, which Elasticsearch's path trie also hands to
# another API's `{param}` route: the literal is taken as a name there too, and that API's own
# validation answers (an index name may not start with `_`; `_enable` is a valid username).
SHADOWED_IN_ELASTICSEARCH_TOO = {
    ("POST", "/_doc"): ("indices.create", {"index": "_doc"}),
    ("PUT", "/_transform"): ("indices.create", {"index": "_transform"}),
    ("DELETE", "/_transform"): ("indices.delete", {"index": "_transform"}),
    ("PUT", "/_security/user/_enable"): ("security.put_user", {"username": "_enable"}),
    ("POST", "/_security/user/_enable"): ("security.put_user", {"username": "_enable"}),
}


def test_no_literal_segment_is_taken_as_an_id_when_an_optional_id_is_left_out():
    """e.g. `GET _transform/_stats` (the id of `_transform/{id}/_stats` omitted) must reach the
    stats API, not `GET _transform/{id}` with the id `_stats` (a 404 "Transform with id [_stats]")."""
    router = Router()
    shadowed = {}
    for _name, path, methods in ROUTES + UNSPECIFIED_ROUTES:
        segments = path.strip("/").split("/")
        for i, segment in enumerate(segments):
            if not segment.startswith("{"):
                continue
            shorter = "/" + "/".join(_concrete(s) for s in segments[:i] + segments[i + 1:])
            for method in methods:
                try:
                    resolved, params = router.match(method, shorter)
                except errors.ESError:
                    continue  # no such route, or another method: Elasticsearch answers 400/405 too
                if any(v.startswith("_") for v in params.values()):
                    shadowed[(method, shorter)] = (resolved, params)
    assert shadowed == SHADOWED_IN_ELASTICSEARCH_TOO


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "my-" + m[0][1:-1].replace("_", "-"), path)


def test_each_spec_path_resolves_to_its_api(specs):
    router = Router()
    for name, path, method in sorted(specs):
        resolved, params = router.match(method, _concrete(path))
        # paths of the same shape and method (/_nodes/{node_id} vs /_nodes/{metric}) share one API
        assert resolved == name, (method, path)
        assert set(params) <= set(re.findall(r"\{([^}]+)\}", path)) | {"node_id"}


def test_every_routed_api_has_a_handler():
    _load_handlers()
    assert {name for name, _, _ in ROUTES} - set(_HANDLERS) == set()


def test_literal_segments_beat_parameters():
    router = Router()
    assert router.match("GET", "/_security/user/_privileges")[0] == "security.get_user_privileges"
    assert router.match("GET", "/_security/user/bob") == ("security.get_user", {"username": "bob"})
    assert router.match("GET", "/_ml/anomaly_detectors/_stats")[0] == "ml.get_job_stats"
    assert router.match("GET", "/_ml/datafeeds/_stats")[0] == "ml.get_datafeed_stats"
    assert router.match("GET", "/_transform/_stats") == ("transform.get_transform_stats", {})
    assert router.match("GET", "/_transform/_all/_stats") == ("transform.get_transform_stats",
                                                               {"transform_id": "_all"})
    assert router.match("GET", "/_nodes/reload_secure_settings")[0] != "nodes.reload_secure_settings"


def test_unknown_path_and_wrong_method_answer_like_elasticsearch():
    router = Router()
    with pytest.raises(errors.PlainError) as unknown:
        router.match("GET", "/_no/such/thing/here")
    assert unknown.value.body() == {"error": "no handler found for uri [/_no/such/thing/here] and method [GET]",
                                    "status": 400}
    with pytest.raises(errors.PlainError) as wrong:
        router.match("DELETE", "/_cluster/settings")
    assert wrong.value.status == 405
    assert wrong.value.reason == ("Incorrect HTTP method for uri [/_cluster/settings] and method [DELETE], "
                                  "allowed: [GET, PUT]")


def spec_params(spec_dir) -> dict[str, set[str]]:
    """Each API's URL parameters in every spec file (both formats; newer files add theirs)."""
    found: dict[str, set[str]] = {}
    for path in sorted(spec_dir.rglob("*.json")):
        if path.name.startswith("_"):
            continue
        for name, spec in json.loads(path.read_text()).items():
            found.setdefault(name, set()).update(spec.get("params") or {}, spec["url"].get("params") or {})
    return found


def test_the_parameter_table_is_the_specs(shared_dir):
    spec_dir = shared_dir / "es-rest-api-spec"
    elsewhere = {name: set(p) for name, p in params.PARAMS_SPECIFIED_ELSEWHERE.items()}
    assert {name: set(p) for name, p in params.API_PARAMS.items()} == {**spec_params(spec_dir), **elsewhere}
    assert params.COMMON_PARAMS == set(json.loads((spec_dir / "_common.json").read_text())["params"])
    assert {name for name, _, _ in ROUTES} <= set(params.API_PARAMS)


def test_unrecognized_parameters_are_named_as_elasticsearch_names_them():
    assert params.check("cluster.put_settings", "/_cluster/settings", set(), {"foo"}) == \
        "request [/_cluster/settings] contains unrecognized parameter: [foo]"
    assert params.check("cluster.get_settings", "/_cluster/settings", set(), {"flat_setting", "zz"}) == (
        "request [/_cluster/settings] contains unrecognized parameters: [flat_setting] -> did you mean "
        "[flat_settings]?, [zz]")
    assert params.check("transform.stop_transform", "/_transform/t/_stop", {"transform_id"}, {"forc"}) == \
        "request [/_transform/t/_stop] contains unrecognized parameter: [forc] -> did you mean [force]?"
    assert params.check("ml.close_job", "/_ml/anomaly_detectors/j/_close", {"job_id"}, {"forcee"}) == \
        "request [/_ml/anomaly_detectors/j/_close] contains unrecognized parameter: [forcee] -> did you mean [force]?"
    # similarity = 1 - edits / longer length, kept above 0.5: tim 0.75, timeout 0.57, type 0.5 (left out)
    assert params.unrecognized("/x", {"time"}, {"timeout", "tim", "type"}) == \
        "request [/x] contains unrecognized parameter: [time] -> did you mean any of [tim, timeout]?"
    # what a handler reads beyond its spec file: POST _ml/anomaly_detectors/<id>/_open?timeout=
    assert params.check("ml.open_job", "/_ml/anomaly_detectors/j/_open", {"job_id"}, {"timeout"}) is None
    assert set(params.UNSPECIFIED_PARAMS) <= set(params.API_PARAMS)
    # common parameters and path parts are always taken
    assert params.check("search", "/i/_search", {"index"}, {"filter_path", "pretty", "index", "size"}) is None
