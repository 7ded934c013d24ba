"""esremote.esyml on real elasticsearch.yml files: flat view, in-place edits, byte preservation."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esremote.errors import YmlError
from esremote.esyml import BEGIN_MARK, END_MARK, EsYml, render, unified_diff

FIXTURE_DIR = "elasticsearch-yml"
# Files Elasticsearch itself refuses, with the line our error must name.
REFUSED = {
    "016": 5,   # `network.host:` has no value (and xpack.security.enabled is set twice, lines 35-36)
    "019": 4,   # `[${NODE_ROLES}]`: a flow list cannot hold a bare `{`
    "020": 77,  # same mistake
    "022": 6,   # `*node-ks-psw*` reads as a YAML alias
}
FLOW_MAP = "038"  # the whole file is one JSON object

MIGRATION = {
    "remote_cluster_server.enabled": True,
    "remote_cluster.host": "0.0.0.0",
    "remote_cluster.port": 9443,
    "xpack.security.remote_cluster_server.ssl.keystore.path": "certs/remote-cluster.p12",
    "xpack.security.remote_cluster_client.ssl.enabled": True,
    "xpack.security.remote_cluster_client.ssl.certificate_authorities": ["remote-cluster-ca.crt"],
}


def _fixture_names() -> list[str]:
    # Parametrising needs the names at collection time, before fixtures exist: read the directory
    # the `testdata` fixture points at (test_fixture_list_is_complete checks they agree).
    from tests.conftest import SHARED

    return sorted(p.name for p in (SHARED / "testdata" / FIXTURE_DIR).glob("*.y*ml"))


ALL_FILES = _fixture_names()
VALID_FILES = [n for n in ALL_FILES if n[:3] not in REFUSED]


def _read(testdata, name: str) -> str:
    return (testdata / FIXTURE_DIR / name).read_bytes().decode("utf-8")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _managed_lines(text: str) -> set[int]:
    """1-based numbers of the lines of the managed block, markers included."""
    lines = [line.strip() for line in _lines(text)]
    if BEGIN_MARK not in lines:
        return set()
    begin, end = lines.index(BEGIN_MARK), lines.index(END_MARK)
    return set(range(begin + 1, end + 2))


def _removal_lines(doc: EsYml, key: str) -> set[int]:
    """Lines an unset of `key` may take: its own, and those of parent maps holding only it."""
    lines = set(doc.lines(key))
    parts = key.split(".")
    for size in range(1, len(parts)):
        prefix = ".".join(parts[:size])
        under = [k for k in doc.flat() if k.startswith(prefix + ".")]
        if under == [key]:
            try:
                lines |= set(doc.lines(prefix))
            except KeyError:
                pass  # no map of that name in the file (the name is written dotted)
    return lines


def _without_final_break(line: str) -> str:
    return re.sub(r"(\r\n|\n|\r)\Z", "", line)


def assert_untouched_lines_kept(old: str, new: str, old_allowed: set[int], new_allowed: set[int]):
    """Every line outside the allowed ones is byte-identical and in the same order."""
    kept_old = [line for number, line in enumerate(_lines(old), 1) if number not in old_allowed]
    kept_new = [line for number, line in enumerate(_lines(new), 1) if number not in new_allowed]
    if not re.search(r"(\r\n|\n|\r)\Z", old) and kept_old and kept_new:
        # the last line may gain a line break (we appended) or lose one (its successor was removed)
        assert _without_final_break(kept_old[-1]) == _without_final_break(kept_new[-1])
        kept_old, kept_new = kept_old[:-1] + [""], kept_new[:-1] + [""]
    assert kept_old == kept_new


# --- every real file ----------------------------------------------------------------------------

def test_fixture_list_is_complete(testdata):
    listed = [line.split("\t", 1)[0] for line in _read(testdata, "SOURCES.tsv").splitlines()[1:]]
    assert ALL_FILES == sorted(listed) and len(ALL_FILES) >= 40


@pytest.mark.parametrize("name", [n for n in ALL_FILES if n[:3] in REFUSED])
def test_files_elasticsearch_refuses_are_refused_with_their_line(testdata, name):
    with pytest.raises(YmlError) as caught:
        EsYml.load(testdata / FIXTURE_DIR / name)
    assert caught.value.line == REFUSED[name[:3]]
    assert f"{name}:{REFUSED[name[:3]]}: " in str(caught.value)


def test_duplicate_in_real_file_is_refused_once_nulls_are_fixed(testdata):
    name = next(n for n in ALL_FILES if n.startswith("016"))
    text = _read(testdata, name).replace("network.host:     #", "network.host: 0.0.0.0 #")
    text = re.sub(r"(?m)^node\.name:[ \t]*$", "node.name: n1", text)
    twice = r"xpack.security.enabled is defined twice \(also on line 35\)"
    with pytest.raises(YmlError, match=twice) as caught:
        EsYml.parse(text, source=name)
    assert caught.value.line == 36


@pytest.mark.parametrize("name", [n for n in VALID_FILES if not n.startswith(FLOW_MAP)])
def test_migration_edit_on_real_file(testdata, name):
    old = _read(testdata, name)
    doc = EsYml.parse(old, source=name)
    before = doc.flat()
    keys = [k for k in before if k not in MIGRATION]
    changed, removed = (keys[0], keys[-1]) if len(keys) >= 2 else (None, None)
    rewritten = [k for k, v in MIGRATION.items() if k in before and before[k] != v]
    allowed = {n for k in rewritten for n in doc.lines(k)}
    if changed:
        allowed |= set(doc.lines(changed))
        allowed |= _removal_lines(doc, removed)

    for key, value in MIGRATION.items():
        doc.set(key, value)
    if changed:
        assert doc.set(changed, "esremote-changed")
        assert doc.unset(removed)
    new = doc.text()

    expected = {**before, **MIGRATION}
    if changed:
        expected[changed] = "esremote-changed"
        del expected[removed]
    reread = EsYml.parse(new, source=name)
    assert reread.flat() == expected
    assert [k for k in reread.flat() if k in keys] == [k for k in keys if k != removed]  # order kept
    new_allowed = _managed_lines(new) | (set(reread.lines(changed)) if changed else set())
    new_allowed |= {n for k in rewritten for n in reread.lines(k)}
    assert_untouched_lines_kept(old, new, allowed, new_allowed)
    if "\r\n" in old:
        assert new.count("\r\n") == new.count("\n"), "a CRLF file stays CRLF"
    assert unified_diff(old, new, name).startswith(f"--- {name}\n+++ {name}\n")


def _flatten(data: dict, prefix: str = "") -> dict:
    """PyYAML's reading of a settings file, flattened to dotted names as Elasticsearch does."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


def test_flow_map_file_reads_and_edits_values_in_place(testdata):
    name = next(n for n in ALL_FILES if n.startswith(FLOW_MAP))
    old = _read(testdata, name)
    doc = EsYml.parse(old, source=name)
    flat = doc.flat()
    # a key that is both a setting and a prefix of another one: both are settings
    assert flat["http.type"] == "ssl_netty4" and flat["http.type.default"] == "netty4"
    assert flat["action.destructive_requires_name"] is False

    assert doc.set("cluster.name", "lab one")
    assert doc.text() == old.replace('"cluster.name":"elasticsearch"', '"cluster.name":lab one')
    assert doc.set("path.home", "/es,home")  # a comma would end a plain scalar in a flow map
    assert doc.text() == old.replace('"cluster.name":"elasticsearch"', '"cluster.name":lab one').replace(
        '"path.home":"integration-tests/src/test/eshome/"', '"path.home":"/es,home"')
    assert yaml.safe_load(doc.text()) == {**flat, "cluster.name": "lab one", "path.home": "/es,home"}


def test_flow_map_file_gains_and_loses_settings_in_place_as_json(testdata):
    name = next(n for n in ALL_FILES if n.startswith(FLOW_MAP))
    old = _read(testdata, name)
    doc = EsYml.parse(old, source=name)
    added = {"cluster.remote.my_remote.mode": "proxy", "cluster.remote.my_remote.proxy_address": "r1:9443",
             "remote_cluster.port": 9443, "cluster.remote.my_remote.seeds": ["a:9300", "b"]}
    assert doc.unset("transport.type.default")  # the last entry: the comma before it goes too
    assert doc.text() == old.replace(',\n  "transport.type.default":"netty4"\n', "\n")
    for key, value in added.items():
        assert doc.set(key, value)
    assert doc.unset("path.logs")  # an entry in the middle
    new = doc.text()

    # one entry a line and JSON-quoted, as the file has them; nothing else changes
    assert new == old.replace('  "path.logs":"/tmp/logs",\n', "").replace(
        '  "transport.type.default":"netty4"\n',
        '  "cluster.remote.my_remote.mode":"proxy",\n'
        '  "cluster.remote.my_remote.proxy_address":"r1:9443",\n'
        '  "remote_cluster.port":9443,\n'
        '  "cluster.remote.my_remote.seeds":["a:9300", "b"]\n')
    expected = {k: v for k, v in yaml.safe_load(old).items() if k not in ("path.logs", "transport.type.default")}
    assert yaml.safe_load(new) == json.loads(new) == {**expected, **added}  # still JSON
    assert EsYml.parse(new).flat() == {**expected, **added}


@pytest.mark.parametrize("old, new", [
    ("{a: 1, b: x}\n", "{a: 1, b: x, c.d: \"p:q,r\"}\n"),                 # one line: `, key: value` at the end
    ('{"a":1,"b":2}', '{"a":1,"b":2,"c.d":"p:q,r"}'),                       # compact JSON, no final newline
    ("{a: 1, b: 2,}\n", "{a: 1, b: 2, c.d: \"p:q,r\",}\n"),                # a trailing comma stays
    ("{\n  a: 1,\n  b: 2 # two\n}\n", "{\n  a: 1,\n  b: 2, # two\n  c.d: \"p:q,r\"\n}\n"),
    ("{\n    a: 1,\n    b: 2,\n}\n", "{\n    a: 1,\n    b: 2,\n    c.d: \"p:q,r\",\n}\n"),
    ("{\n  a: 1,\n  b: 2}\n", "{\n  a: 1,\n  b: 2,\n  c.d: \"p:q,r\"}\n"),
    ("{'a': 1}\n", "{'a': 1, 'c.d': \"p:q,r\"}\n"),
    ('{\r\n  "a": 1\r\n}\r\n', '{\r\n  "a": 1,\r\n  "c.d": "p:q,r"\r\n}\r\n'),
    ("{}\n", "{c.d: \"p:q,r\"}\n"),                                         # an empty map
    ("{ }", "{c.d: \"p:q,r\"}"),
    ("{\n}\n", "{\n  c.d: \"p:q,r\"\n}\n"),
], ids=["one-line", "compact-json", "trailing-comma", "lines-comment", "lines-trailing-comma",
        "brace-on-last-line", "single-quoted", "crlf", "empty", "empty-spaced", "empty-lines"])
def test_new_setting_joins_a_flow_map_file_in_its_layout(old, new):
    doc = EsYml.parse(old)
    assert doc.set("c.d", "p:q,r")
    assert doc.text() == new
    assert _flatten(yaml.safe_load(new)) == {**_flatten(yaml.safe_load(old) or {}), "c.d": "p:q,r"}


@pytest.mark.parametrize("old, key, new", [
    ("{a: 1, b: 2, c: 3}\n", "a", "{b: 2, c: 3}\n"),
    ("{a: 1, b: 2, c: 3}\n", "b", "{a: 1, c: 3}\n"),
    ("{a: 1, b: 2, c: 3}\n", "c", "{a: 1, b: 2}\n"),                   # the comma before the last goes
    ("{a: 1, b: 2, c: 3,}\n", "c", "{a: 1, b: 2,}\n"),                 # a trailing comma stays
    ("{a: 1}\n", "a", "{}\n"),
    ("{a: 1,}\n", "a", "{}\n"),
    ('{\n  "a":1,\n  "b":2\n}\n', "a", '{\n  "b":2\n}\n'),
    ('{\n  "a":1, # one\n  "b":2 # two\n}\n', "b", '{\n  "a":1 # one\n}\n'),
    ('{\n  "a":1,\n  "b":2,\n}\n', "b", '{\n  "a":1,\n}\n'),
    ('{\n  "a":1\n}', "a", "{\n}"),
    ("m: {x: 1, y: 2}\nz: 3\n", "m.y", "m: {x: 1}\nz: 3\n"),
], ids=["first", "middle", "last", "last-trailing-comma", "only", "only-trailing-comma", "lines-first",
        "lines-last-comments", "lines-trailing-comma", "lines-only", "nested"])
def test_unset_takes_a_flow_map_entry_and_one_comma(old, key, new):
    doc = EsYml.parse(old)
    assert doc.unset(key)
    assert doc.text() == new
    assert _flatten(yaml.safe_load(new)) == {k: v for k, v in _flatten(yaml.safe_load(old)).items() if k != key}


def test_nested_flow_maps_in_a_block_file_gain_and_lose_entries_in_place():
    old = "# remotes\ncluster: {remote: {a: {seeds: [x]}}}\nnode.name: n1\n"
    doc = EsYml.parse(old)
    doc.set("cluster.remote.a.mode", "proxy")
    assert doc.text() == "# remotes\ncluster: {remote: {a: {seeds: [x], mode: proxy}}}\nnode.name: n1\n"
    doc.set("cluster.remote.b.seeds", ["h:9300"])  # the nearest existing parent map is `remote`
    assert doc.text() == ('# remotes\ncluster: {remote: {a: {seeds: [x], mode: proxy}, b.seeds: ["h:9300"]}}\n'
                          "node.name: n1\n")
    doc.unset("cluster.remote.a.seeds")
    assert doc.text() == '# remotes\ncluster: {remote: {a: {mode: proxy}, b.seeds: ["h:9300"]}}\nnode.name: n1\n'
    expected = {"cluster.remote.a.mode": "proxy", "cluster.remote.b.seeds": ["h:9300"], "node.name": "n1"}
    assert _flatten(yaml.safe_load(doc.text())) == doc.flat() == expected
    doc.set("node.roles", ["data"])  # a block parent: the managed block, as before
    assert doc.text().endswith(f"{BEGIN_MARK}\nnode.roles: [data]\n{END_MARK}\n")


def test_flow_maps_holding_an_alias_are_not_edited():
    doc = EsYml.parse("a: &port 9300\nm: {x: *port, y: 2}\n")
    with pytest.raises(YmlError, match="cannot edit the flow map m safely: it holds a YAML alias") as caught:
        doc.unset("m.y")
    assert caught.value.line == 2
    with pytest.raises(YmlError, match="cannot edit the flow map m safely"):
        doc.set("m.z", 1)
    assert doc.text() == "a: &port 9300\nm: {x: *port, y: 2}\n"


def test_odd_indentation_keeps_the_root_column(testdata):
    name = next(n for n in ALL_FILES if n.startswith("018"))  # every key indented by one space
    doc = EsYml.parse(_read(testdata, name))
    doc.set("remote_cluster.port", 9443)
    assert f"\n {BEGIN_MARK}\n remote_cluster.port: 9443\n {END_MARK}\n" in doc.text()
    assert EsYml.parse(doc.text()).get("remote_cluster.port") == 9443


def test_values_as_yaml_reads_them(testdata):
    flat = EsYml.load(testdata / FIXTURE_DIR / next(n for n in ALL_FILES if n.startswith("014"))).flat()
    assert "on" in flat.values()  # YAML 1.2: `on` is a string, as Elasticsearch sees it
    assert [] in flat.values()
    flat10 = EsYml.load(testdata / FIXTURE_DIR / next(n for n in ALL_FILES if n.startswith("010"))).flat()
    assert "${PROCESSORS:1}" in flat10.values()


# --- focused edits ------------------------------------------------------------------------------

def test_nested_setting_changes_in_place_keeping_its_comment():
    doc = EsYml.parse("a:\n  b:\n    c: x   # keep me\n    d: 1\n")
    assert doc.flat() == {"a.b.c": "x", "a.b.d": 1}
    assert doc.set("a.b.c", "z")
    assert doc.text() == "a:\n  b:\n    c: z   # keep me\n    d: 1\n"


def test_mixed_dotted_parent_changes_in_place():
    doc = EsYml.parse("xpack.security.http.ssl:\n  enabled: true\n  keystore.path: http.p12\n")
    assert doc.get("xpack.security.http.ssl.keystore.path") == "http.p12"
    doc.set("xpack.security.http.ssl.enabled", False)
    doc.set("xpack.security.http.ssl.keystore.path", "new.p12")
    assert doc.text() == "xpack.security.http.ssl:\n  enabled: false\n  keystore.path: new.p12\n"


def test_removing_the_last_key_of_a_nested_map_removes_its_empty_parents():
    doc = EsYml.parse("a:\n  b:\n    # about c\n    c: x\nd: 1\n")
    assert doc.unset("a.b.c")
    assert doc.text() == "d: 1\n"  # not `a:\n  b:` (a null setting, which Elasticsearch refuses)
    doc = EsYml.parse("a:\n  b:\n    c: x\n  e: 2\n")
    doc.unset("a.b.c")
    assert doc.text() == "a:\n  e: 2\n"
    assert doc.flat() == {"a.e": 2}


def test_a_flow_map_holding_only_the_removed_key_goes_with_it():
    doc = EsYml.parse("http: {port: 9200}\nb: 1\n")
    doc.unset("http.port")
    assert doc.text() == "b: 1\n"


def test_removing_a_block_list_takes_all_its_lines_and_not_the_comment_after():
    text = "seeds:\n  - a:9300\n  - b:9300\n# next\nport: 1\n"
    doc = EsYml.parse(text)
    assert doc.lines("seeds") == range(1, 4)
    doc.unset("seeds")
    assert doc.text() == "# next\nport: 1\n"
    assert doc.unset("seeds") is False


def test_block_list_value_becomes_a_flow_list_in_place():
    doc = EsYml.parse("search:\n  remote:\n    one:\n      seeds:\n        - a:9300\n    # c\n    two: x\n")
    doc.set("search.remote.one.seeds", ["b:9443", "c:9443"])
    assert doc.text() == "search:\n  remote:\n    one:\n      seeds: [b:9443, c:9443]\n    # c\n    two: x\n"


def test_crlf_file_stays_crlf():
    doc = EsYml.parse("# c\r\na: 1\r\nb:\r\n  c: 2\r\n")
    doc.set("a", 2)
    doc.set("new.key", "v")
    doc.unset("b.c")
    assert doc.text() == f"# c\r\na: 2\r\n{BEGIN_MARK}\r\nnew.key: v\r\n{END_MARK}\r\n"


def test_missing_final_newline_stays_missing_unless_we_append():
    doc = EsYml.parse("a: 1\nb: 2")
    doc.set("b", 3)
    assert doc.text() == "a: 1\nb: 3"
    doc.unset("b")
    assert doc.text() == "a: 1"
    doc.set("c", True)
    assert doc.text() == f"a: 1\n{BEGIN_MARK}\nc: true\n{END_MARK}\n"


def test_managed_block_is_reused():
    doc = EsYml.parse("a: 1\n")
    doc.set("b", 1)
    doc.set("c", 2)
    assert doc.text() == f"a: 1\n{BEGIN_MARK}\nb: 1\nc: 2\n{END_MARK}\n"
    doc.unset("b")
    assert doc.text() == f"a: 1\n{BEGIN_MARK}\nc: 2\n{END_MARK}\n"


def test_document_start_is_kept_and_end_marker_refused():
    doc = EsYml.parse("---\n# c\na: 1\n")
    doc.set("b", "x")
    assert doc.text() == f"---\n# c\na: 1\n{BEGIN_MARK}\nb: x\n{END_MARK}\n"
    doc = EsYml.parse("---\na: 1\n...\n")
    doc.set("a", 2)
    with pytest.raises(YmlError, match="document end marker"):
        doc.set("b", 1)
    assert doc.text() == "---\na: 2\n...\n"


def test_placeholders_are_kept_verbatim():
    text = "node.name: ${HOSTNAME}\nnode.processors: ${PROCESSORS:1}\nx: 1\n"
    doc = EsYml.parse(text)
    assert doc.get("node.name") == "${HOSTNAME}"
    doc.set("x", "${OTHER}")
    doc.set("roles", ["${ROLE}", "data"])
    assert doc.text().startswith("node.name: ${HOSTNAME}\nnode.processors: ${PROCESSORS:1}\nx: ${OTHER}\n")
    assert 'roles: ["${ROLE}", data]' in doc.text()  # a bare `{` is not allowed in a flow list
    assert EsYml.parse(doc.text()).get("roles") == ["${ROLE}", "data"]


def test_flat_and_nested_definition_of_one_setting_is_refused():
    with pytest.raises(YmlError, match=r"setting a.b.c is defined twice \(also on line 1\)") as caught:
        EsYml.parse("a.b.c: 1\n# c\na:\n  b.c: 2\n", source="es.yml")
    assert caught.value.line == 4 and str(caught.value).startswith("es.yml:4: ")
    with pytest.raises(YmlError, match=r"key a is defined twice \(also on line 1\)"):
        EsYml.parse("a:\n  b: 1\na:\n  c: 2\n")


@pytest.mark.parametrize("text, line, what", [
    ("a: [b\n", 2, "invalid YAML"),
    ("a: 1\n  b: 2\n", 2, "invalid YAML"),
    ("- a\n- b\n", 1, "not a map of settings"),
    ("a: 1\n---\nb: 2\n", 3, "several YAML documents"),
    ("a:\n", 1, "has no value"),
    ("? [a, b]\n: 1\n", 1, "non-empty plain name"),
])
def test_unreadable_files_name_the_line(text, line, what):
    with pytest.raises(YmlError, match=what) as caught:
        EsYml.parse(text, source="x.yml")
    assert caught.value.line == line


def test_not_utf8_is_refused(tmp_path):
    path = tmp_path / "elasticsearch.yml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(YmlError, match="not UTF-8") as caught:
        EsYml.load(path)
    assert caught.value.line == 2
    with pytest.raises(YmlError, match="cannot read"):
        EsYml.load(tmp_path / "missing.yml")


def test_aliases_are_read_but_not_edited():
    doc = EsYml.parse("a: &port 9300\nb: *port\n")
    assert doc.flat() == {"a": 9300, "b": 9300}
    for key in ("a", "b"):
        with pytest.raises(YmlError, match=f"cannot edit {key} safely: its value is a YAML anchor or alias"):
            doc.set(key, 1)


def test_non_ascii_text_keeps_columns_right():
    doc = EsYml.parse('"ключ": "значение"   # коммент\n')
    doc.set("ключ", "новое")
    assert doc.text() == '"ключ": новое   # коммент\n'
    doc = EsYml.parse('{"é.ü": "中文", "b": 2}\n')
    doc.set("b", 3)
    assert doc.text() == '{"é.ü": "中文", "b": 3}\n'


def test_byte_order_mark_is_kept():
    doc = EsYml.parse("\ufeffa: 1\n")
    doc.set("a", 2)
    assert doc.text() == "\ufeffa: 2\n"


def test_same_value_is_no_change():
    text = 'a: "x"\nb: 9443\nc: [p, q]\nd: true\n'
    doc = EsYml.parse(text)
    assert not any([doc.set("a", "x"), doc.set("b", 9443), doc.set("c", ["p", "q"]), doc.set("d", True)])
    assert doc.text() == text
    assert doc.set("b", "9443")  # the string "9443" is not the number 9443: the value is rewritten
    assert doc.text() == 'a: "x"\nb: "9443"\nc: [p, q]\nd: true\n'


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (9443, "9443"), (1.5, "1.5"), ("plain/path.p12", "plain/path.p12"),
    ("a: b", '"a: b"'), ("yes", '"yes"'), ("9443", '"9443"'), ("", '""'), (" x", '" x"'),
    ("#x", '"#x"'), ("a\u2028b", '"a\\u2028b"'), (["a:9443", "b"], "[a:9443, b]"), ([], "[]"),
    (["x, y"], '["x, y"]'),
])
def test_render(value, text):
    assert render(value) == text
    assert EsYml.parse(f"v: {text}\n").get("v") == value


@pytest.mark.parametrize("value, flow, as_json", [
    ("a:9443", '"a:9443"', '"a:9443"'), ("x, y", '"x, y"', '"x, y"'), ("{x}", '"{x}"', '"{x}"'),
    ("a#b", '"a#b"', '"a#b"'), ("[x]", '"[x]"', '"[x]"'), ("proxy", "proxy", '"proxy"'),
    (True, "true", "true"), (9443, "9443", "9443"), (["a:9443", "b"], '["a:9443", b]', '["a:9443", "b"]'),
])
def test_render_in_a_flow_map(value, flow, as_json):
    assert render(value, context="flow") == flow
    assert render(value, context="json") == as_json
    for text in (flow, as_json):
        assert EsYml.parse(f"{{v: {text}, w: 1}}\n").get("v") == value
        assert yaml.safe_load(f"{{v: {text}, w: 1}}")["v"] == value


def test_render_refuses_what_a_setting_cannot_be():
    for bad in ({"a": 1}, None, [["nested"]], float("nan")):
        with pytest.raises((TypeError, ValueError)):
            render(bad)
    with pytest.raises(ValueError, match="not a setting name"):
        EsYml.parse("").set("bad key", 1)


def test_empty_and_comment_only_files():
    doc = EsYml.parse("")
    assert doc.flat() == {}
    doc.set("a.b", 1)
    assert doc.text() == f"{BEGIN_MARK}\na.b: 1\n{END_MARK}\n"
    doc = EsYml.parse("# only\n#a: 1")
    doc.set("a", 1)
    assert doc.text() == f"# only\n#a: 1\n{BEGIN_MARK}\na: 1\n{END_MARK}\n"


def test_update_is_all_or_nothing():
    doc = EsYml.parse("a: 1\nm: {x: 1, y: 2}\np: &v 1\nq: *v\n")
    assert doc.update({"a": 2, "b": 3}, unset=["zz", "m.x"])  # an entry of a flow map can go
    assert doc.flat() == {"a": 2, "m.y": 2, "p": 1, "q": 1, "b": 3}
    text = doc.text()
    with pytest.raises(YmlError, match="cannot edit q safely"):
        doc.update({"a": 5}, unset=["b", "m.y", "q"])
    assert doc.text() == text and doc.flat() == {"a": 2, "m.y": 2, "p": 1, "q": 1, "b": 3}
    assert not doc.update({"a": 2})


def test_unified_diff_marks_a_missing_final_newline():
    diff = unified_diff("a: 1", "a: 2\n", "es.yml")
    assert diff == "--- es.yml\n+++ es.yml\n@@ -1 +1 @@\n-a: 1\n\\ No newline at end of file\n+a: 2\n"
    assert unified_diff("a\n", "a\n", "x") == ""


# --- property: random edits on real files -------------------------------------------------------

PROPERTY_FILES = ["002", "003", "006", "010", "014", "021", "030", "037"]
NEW_KEYS = ["remote_cluster.port", "a.b.c", "cluster.remote.one.seeds", "xpack.security.http.ssl.enabled"]
values = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.lists(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6), max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_keep_settings_and_untouched_lines(testdata, data):
    prefix = data.draw(st.sampled_from(PROPERTY_FILES))
    old = _read(testdata, next(n for n in ALL_FILES if n.startswith(prefix)))
    doc = EsYml.parse(old)
    original = EsYml.parse(old)
    model = doc.flat()
    touched = set()
    for _ in range(data.draw(st.integers(1, 6))):
        key = data.draw(st.sampled_from(sorted(model) + NEW_KEYS))
        if data.draw(st.booleans()):
            value = data.draw(values)
            doc.set(key, value)
            model[key] = value
        else:
            assert doc.unset(key) == (key in model)
            model.pop(key, None)
        touched.add(key)
        assert EsYml.parse(doc.text()).flat() == model
    new = doc.text()
    for key in original.flat():
        if key not in touched:  # an untouched setting keeps its exact lines
            chunk = "".join(_lines(old)[n - 1] for n in original.lines(key))
            assert _without_final_break(chunk) in new
    untouched = [k for k in original.flat() if k not in touched]
    assert [k for k in EsYml.parse(new).flat() if k in untouched] == untouched
    if "\r\n" in old:
        assert new.count("\r\n") == new.count("\n")


FLOW_LAYOUTS = ["{a: 1, b: x}\n", '{\n  "a": 1,\n  "b": "x",\n}\n', "{}\n", "n: 1\nm: {a: 1, b: {c: x}}\n"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_of_flow_maps_stay_valid_yaml(testdata, data):
    layout = data.draw(st.sampled_from(FLOW_LAYOUTS + [FLOW_MAP]))
    old = _read(testdata, next(n for n in ALL_FILES if n.startswith(FLOW_MAP))) if layout == FLOW_MAP else layout
    doc = EsYml.parse(old)
    model = doc.flat()
    for _ in range(data.draw(st.integers(1, 6))):
        key = data.draw(st.sampled_from(sorted(model) + ["m.a", "m.b.d", "x.y", "cluster.remote.r.seeds"]))
        if data.draw(st.booleans()):
            value = data.draw(values)
            doc.set(key, value)
            model[key] = value
        else:
            assert doc.unset(key) == (key in model)
            model.pop(key, None)
        assert EsYml.parse(doc.text()).flat() == model
        yaml.safe_load(doc.text())  # PyYAML (YAML 1.1) reads it too
