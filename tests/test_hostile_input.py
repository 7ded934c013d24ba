"""Hostile input (issue 11 §2): property tests for the inventory, the flow parameters and the CLI.

The property is strong: one line on stderr, `esremote: error: ...`, naming the field, option, file or
line; exit 2; no traceback; and not one SSH connection or REST request attempted. Connections are
counted by wrapping the real functions (paramiko's `SSHClient.connect`, elastic_transport's node
`perform_request`, `socket.create_connection` and `socket.socket.connect`): the code under test runs
unchanged. Everything runs in-process, 500 examples each.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import struct
import sys
from pathlib import Path

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML

from esremote import cli
from esremote.params import MigrationParams, RetireOptions
from tests.test_inventory import _paths, _yaml_text, documents, make_site

# Derandomized: the same 500 examples every run, so CI cannot fail by drawing a new one; explore
# further by hand with `--hypothesis-seed=N` and a `derandomize=False` profile.
HOSTILE = settings(max_examples=500, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.filter_too_much, HealthCheck.data_too_large])
RUNS: dict[str, int] = {}  # examples run per property, printed at the end of the module


# ---------------------------------------------------------------- counting connections

class Connections:
    """Counters around the real connection functions; any call is a failure of the property."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def wrap(self, owner, name: str, label: str, mp: pytest.MonkeyPatch) -> None:
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            self.calls.append(f"{label} {args[1:3]!r}")
            return real(*args, **kwargs)

        mp.setattr(owner, name, counted)


@pytest.fixture(scope="module")
def connections():
    from elastic_transport import Urllib3HttpNode  # noqa: PLC0415

    counter = Connections()
    mp = pytest.MonkeyPatch()
    counter.wrap(paramiko.SSHClient, "connect", "ssh", mp)
    counter.wrap(Urllib3HttpNode, "perform_request", "rest", mp)
    try:
        from elastic_transport import RequestsHttpNode  # noqa: PLC0415
        counter.wrap(RequestsHttpNode, "perform_request", "rest", mp)
    except ImportError:
        pass
    counter.wrap(socket, "create_connection", "socket.create_connection", mp)
    counter.wrap(socket.socket, "connect", "socket.connect", mp)
    counter.wrap(socket.socket, "connect_ex", "socket.connect_ex", mp)
    yield counter
    mp.undo()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(root))
    mp.delenv("ESREMOTE_DEBUG", raising=False)
    text = make_site(root)
    yield root, text
    mp.undo()


def run_cli(argv: list[str], connections: Connections) -> tuple[int, str, str]:
    """`esremote ARGV` in-process: exit code, stdout, stderr. stdin is empty (not a terminal)."""
    before = len(connections.calls)
    commands, groups = len(cli.app.registered_commands), len(cli.app.registered_groups)
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    old_stdin, sys.stdin = sys.stdin, stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        sys.stdin = old_stdin
        # main() registers the command modules on the shared app at every call (once per process in
        # real use); forget them so 500 calls do not make a group of 500 copies.
        del cli.app.registered_commands[commands:]
        del cli.app.registered_groups[groups:]
    assert connections.calls[before:] == [], f"{argv}: connection attempted: {connections.calls[before:]}"
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(argv: list[str], code: int, err: str, *, names: list[str]) -> None:
    """Exit 2, exactly one line on stderr, `esremote: error: `, no traceback, and it names at least
    one of `names` (the file, the option, the field) or a line."""
    assert code == 2, f"{argv}: exit {code}, stderr {err!r}"
    assert "Traceback" not in err, err
    assert err.endswith("\n") and err.count("\n") == 1, f"{argv}: not one line: {err!r}"
    assert err.startswith("esremote: error: "), err
    message = err.removeprefix("esremote: error: ").strip()
    assert len(message) > 15, err
    named = [n for n in names if n and n in message] or re.findall(r"\bline \d+", message)
    assert named, f"{argv}: the message names none of {names} nor a line: {err!r}"


# ---------------------------------------------------------------- the inventory, through the CLI

def _mutated_example(draw, text: str) -> str:
    data = YAML(typ="safe", pure=True).load(text)
    paths = [p for p in _paths(data) if p]
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        loc = draw(st.sampled_from(paths), label="where")
        try:
            parent = data
            for part in loc[:-1]:
                parent = parent[part]
            if draw(st.booleans(), label="delete"):
                del parent[loc[-1]]
            else:
                parent[loc[-1]] = draw(documents, label="value")
        except (KeyError, IndexError, TypeError):
            continue
    mutated = _yaml_text(data)
    garble = draw(st.sampled_from(["none", "line", "tab", "bom", "duplicate", "truncate"]), label="garble")
    lines = mutated.splitlines()
    if garble == "line":
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=30), label="text"))
    elif garble == "tab" and lines:
        at = draw(st.integers(0, len(lines) - 1))
        lines[at] = "\t" + lines[at]
    elif garble == "duplicate" and lines:
        at = draw(st.integers(0, len(lines) - 1))
        lines.insert(at, lines[at])
    elif garble == "truncate":
        lines = lines[:draw(st.integers(0, len(lines)))]
    return ("\ufeff" if garble == "bom" else "") + "\n".join(lines)


@st.composite
def inventory_texts(draw, text: str):
    kind = draw(st.sampled_from(["mutation", "document", "text"]))
    if kind == "mutation":
        return _mutated_example(draw, text)
    if kind == "document":
        return _yaml_text(draw(documents))
    return draw(st.text(max_size=300))


@HOSTILE
@given(choice=st.data())
def test_cli_refuses_any_broken_inventory_in_one_line(site, connections, choice):
    """`plan`, `verify` and `migrate` on a mutated, generated or random inventory: a load error (or,
    when it happens to load, the unknown alias asked for), before any connection."""
    root, text = site
    RUNS["inventory via the CLI"] = RUNS.get("inventory via the CLI", 0) + 1
    path = root / "hostile-inventory.yml"
    path.write_text(choice.draw(inventory_texts(text)), encoding="utf-8", errors="surrogatepass")
    verb = choice.draw(st.sampled_from(["plan", "verify", "migrate"]))
    argv = [verb, "-i", str(path), "-a", "no-such-alias"] + (["--yes"] if verb == "migrate" else [])
    code, _, err = run_cli(argv, connections)
    assert_one_line_error(argv, code, err, names=[str(path), "no-such-alias"])


# ---------------------------------------------------------------- the flow parameters, as Prefect passes them

FIELDS = list(MigrationParams.model_fields)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                         st.sampled_from(["keep", "proxy", "sniff", "auto", "reload", "restart", "generate",
                                          "provided-ca", "90d", "0d", "-1d", "1.5h", "2026-12-12T06:00:00+01:00",
                                          "2026-13-45T99:00:00", "inventory.yml", ""]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10) | st.sampled_from(
        list(RetireOptions.model_fields)), inner, max_size=3)), max_leaves=8)
param_dicts = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), json_values, max_size=8).map(
    lambda d: {"inventory": "inventory.yml", **d})


@HOSTILE
@given(raw=param_dicts)
def test_flow_parameters_either_validate_or_name_the_field(raw):
    """What the Prefect UI or a deployment sends (JSON) is a MigrationParams, or a ValidationError
    whose every error names a field of the form and fits on one line; never another exception. The
    CLI's one-line rendering of the first error names its field too."""
    RUNS["flow parameters"] = RUNS.get("flow parameters", 0) + 1
    wire = json.loads(json.dumps(raw))  # as it travels through Prefect's API
    try:
        params = MigrationParams.model_validate(wire)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        assert errors
        for error in errors:
            top = error["loc"][0] if error["loc"] else None
            assert top is None or top in FIELDS or top in wire, error
            assert "\n" not in error["msg"], error
        # the CLI's rendering (esremote.cli.migrate._params)
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"]) or "parameters"
        line = f"{field}: {first['msg'].removeprefix('Value error, ')}"
        assert "\n" not in line or first["type"] == "extra_forbidden"  # an unknown key is shown as sent
        if not first["loc"]:  # a model rule: the message names the fields it is about
            assert any(name in first["msg"] for name in FIELDS), first
        return
    # a valid one survives Prefect's round trip unchanged
    assert MigrationParams.model_validate(json.loads(json.dumps(params.public()))) == params


# ---------------------------------------------------------------- the CLI, generated argv

def _bad_keystores(root: Path) -> dict[str, Path]:
    from esremote.keystore import CODEC_MAGIC, FOOTER_MAGIC  # noqa: PLC0415

    files = {}

    def put(name: str, data: bytes) -> None:
        files[name] = root / name
        files[name].write_bytes(data)

    put("empty.keystore", b"")
    put("garbage.keystore", b"\x00\x01not a keystore at all")
    put("text.keystore", b"keystore.seed=abc\n")
    for version in (1, 2, 7, 99, -1):
        body = struct.pack(">I", CODEC_MAGIC) + bytes([19]) + b"elasticsearch.keystore" [:19] + \
            struct.pack(">i", version) + b"\x00" * 40
        put(f"v{version}.keystore", body + struct.pack(">Ii", FOOTER_MAGIC, 0))
    return files


def _bad_ymls(root: Path) -> dict[str, Path]:
    texts = {
        "notyaml.yml": "cluster.name: [unclosed\nnode.name: a\n",
        "dup.yml": "cluster.name: a\nnode.name: b\ncluster.name: c\n",
        "dupnested.yml": "cluster:\n  name: a\ncluster.name: b\n",
        "tab.yml": "cluster:\n\tname: a\n",
        "multi.yml": "a.b: 1\n---\nc.d: 2\n",
        "list.yml": "- a\n- b\n",
        "null.yml": "node.name:\n",
    }
    files = {}
    for name, text in texts.items():
        files[name] = root / name
        files[name].write_text(text)
    (root / "latin1.yml").write_bytes("node.name: caf\xe9\n".encode("latin-1"))
    files["latin1.yml"] = root / "latin1.yml"
    return files


OPTION_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["-1", "0", "nan", "inf", "1e999", "90x", "",
                                                                 "--", "-", "proxy", "json", "yaml"]))


@st.composite
def argvs(draw, root: Path, inventories: list[Path], keystores: dict[str, Path], ymls: dict[str, Path]):
    verb = draw(st.sampled_from(["plan", "migrate", "verify", "keystore", "yml"]))
    missing = root / "nowhere" / "inventory.yml"
    if verb in ("plan", "migrate", "verify"):
        argv = [verb]
        if draw(st.booleans()):  # the inventory: broken, missing, a directory, or left out
            argv += [draw(st.sampled_from(["-i", "--inventory"])),
                     str(draw(st.sampled_from(inventories + [missing, root])))]
        options = {"plan": ["--json", "--key-expiration", "-a", "--alias", "--bogus"],
                   "verify": ["-a", "--bogus", "--json"],
                   "migrate": ["--yes", "--dry-run", "--resume", "--connection-mode", "--restart-strategy",
                               "--link-timeout", "--no-wait", "--retire-trust", "-o", "--output",
                               "--key-expiration", "-a", "--bogus", "-v"]}[verb]
        for option in draw(st.lists(st.sampled_from(options), max_size=4)):
            argv.append(option)
            if option not in ("--json", "--yes", "--dry-run", "--no-wait", "--retire-trust", "-v"):
                if draw(st.integers(0, 5)):  # sometimes the value is missing
                    argv.append(draw(OPTION_VALUES))
        if "-i" not in argv and "--inventory" not in argv and verb == "migrate" and draw(st.booleans()):
            argv += ["-i", str(missing)]
        return argv
    if verb == "keystore":
        sub = draw(st.sampled_from(["list", "add", "remove", "show", "create", ""]))
        path = draw(st.sampled_from(list(keystores.values()) + [missing]))
        argv = ["keystore"] + ([sub] if sub else [])
        if sub == "create":
            path = draw(st.sampled_from(list(keystores.values()) + [missing]))  # exists, or no directory
        argv += [str(path)] if draw(st.integers(0, 5)) else []
        if sub in ("add", "remove") and draw(st.integers(0, 5)):
            argv.append(draw(st.sampled_from(["cluster.remote.a.credentials", "bad name", "x" * 3, "é"])))
        argv += draw(st.lists(st.sampled_from(["--force", "--password-stdin", "--format-version", "7",
                                                "--bogus"]), max_size=2))
        return argv
    argv = ["yml", "set", str(draw(st.sampled_from(list(ymls.values()) + [missing])))]
    argv += draw(st.lists(st.one_of(st.sampled_from(["a.b=1", "cluster.name=x", "=1", "novalue", "a..b=1",
                                                     "--unset", "--dry-run", "x.y=[1,{a: b}]"]),
                                    st.text(max_size=10).map(lambda t: f"k.{t}={t}")), max_size=3))
    return argv


@pytest.fixture(scope="module")
def cli_inputs(site):
    root, text = site
    broken = []
    for i, content in enumerate(["", "clusters: [", "ssh: {}\n", text.replace("role: local", "role: lcl"),
                                 text.replace("port: 22", "port: 70000"), text + "\n\tbad: tab\n"]):
        path = root / f"broken-{i}.yml"
        path.write_text(content)
        broken.append(path)
    return root, broken, _bad_keystores(root), _bad_ymls(root)


@HOSTILE
@given(choice=st.data())
def test_cli_refuses_generated_command_lines_in_one_line(cli_inputs, connections, choice):
    root, inventories, keystores, ymls = cli_inputs
    RUNS["CLI argv"] = RUNS.get("CLI argv", 0) + 1
    argv = choice.draw(argvs(root, inventories, keystores, ymls), label="argv")
    before = {p: p.read_bytes() for p in [*keystores.values(), *ymls.values()]}
    code, out, err = run_cli(argv, connections)
    if code == 0 and not err:
        # only a group without its sub-command (help) may succeed; nothing is changed then
        assert argv in (["keystore"], ["yml"]) or argv[:2] == ["yml", "set"] and "--dry-run" in argv \
            or "--help" in argv, (argv, out)
    else:
        option_names = [a for a in argv if a.startswith("-")]
        # a path, or any word taken as one (`keystore add 7`: "keystore not found at [7]")
        files = [a for a in argv if "/" in a] + [f"[{a}]" for a in argv[2:] if not a.startswith("-")]
        assert_one_line_error(argv, code, err, names=files + option_names + [
            "Missing", "No such", "nothing to do", "KEY=VALUE", "argument", "option", "command", "setting", *FIELDS])
    assert {p: p.read_bytes() for p in before} == before, f"{argv} changed a file"


def test_examples_ran():
    """The properties above ran their 500 examples each (run in the same session)."""
    print(RUNS)
    assert not RUNS or all(n >= 500 for n in RUNS.values()), RUNS
