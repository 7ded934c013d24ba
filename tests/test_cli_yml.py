"""`esremote yml set`, run as the installed console script on copies of real files."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esremote.esyml import BEGIN_MARK, EsYml

ESREMOTE = Path(sys.executable).parent / "esremote"
YML_DIR = "elasticsearch-yml"


def esremote(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ESREMOTE_DEBUG"}
    return subprocess.run([str(ESREMOTE), "yml", "set", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=env)


def copy_fixture(testdata, tmp_path, prefix: str) -> Path:
    source = next((testdata / YML_DIR).glob(f"{prefix}-*.yml"))
    target = tmp_path / "elasticsearch.yml"
    shutil.copyfile(source, target)
    return target


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.esremote-*.bak"))


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("esremote: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_set_edits_in_place_after_a_backup_keeping_mode_and_owner(testdata, tmp_path):
    path = copy_fixture(testdata, tmp_path, "006")
    original = path.read_bytes()
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    before = path.stat()

    result = esremote(path, "remote_cluster_server.enabled=true", "remote_cluster.port=9443",
                      "xpack.security.remote_cluster_client.ssl.certificate_authorities=[ca.crt, b:9443]",
                      "cluster.name=lab one", "--unset", "http.host")
    assert result.returncode == 0, result.stderr
    assert "updated" in result.stdout

    [saved] = backups(path)
    assert saved.read_bytes() == original
    after = path.stat()
    assert (after.st_mode & 0o7777, after.st_uid, after.st_gid) == (0o640, before.st_uid, before.st_gid)
    flat = EsYml.load(path).flat()
    assert flat["remote_cluster_server.enabled"] is True and flat["remote_cluster.port"] == 9443
    assert flat["xpack.security.remote_cluster_client.ssl.certificate_authorities"] == ["ca.crt", "b:9443"]
    assert flat["cluster.name"] == "lab one" and "http.host" not in flat
    text = path.read_text()
    assert "cluster.name: lab one\n" in text and BEGIN_MARK in text


def test_dry_run_prints_the_diff_and_writes_nothing(testdata, tmp_path):
    path = copy_fixture(testdata, tmp_path, "003")
    original = path.read_bytes()
    result = esremote(path, "search.remote.London.seeds=[lon-1:9443]", "--unset", "network.host", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"--- {path}\n+++ {path}\n")
    assert "-network.host: 0.0.0.0\n" in result.stdout
    assert "+      seeds: [lon-1:9443]\n" in result.stdout
    assert path.read_bytes() == original and backups(path) == []


def test_no_change_needed_writes_nothing(testdata, tmp_path):
    path = copy_fixture(testdata, tmp_path, "002")  # already has remote_cluster_server.enabled: true
    original = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    result = esremote(path, "remote_cluster_server.enabled=true", "--unset", "not.there")
    assert result.returncode == 0, result.stderr
    assert "no change needed" in result.stdout
    assert path.read_bytes() == original and path.stat().st_mtime_ns == mtime and backups(path) == []


def test_values_are_yaml_flow_values(tmp_path):
    path = tmp_path / "elasticsearch.yml"
    path.write_text("a: 1\n")
    result = esremote(path, "b=true", "c=9443", "d=[a:9443, b:9443]", "e=hello world", "f='9443'",
                      "g=${NODE}", "h=a: b")
    assert result.returncode == 0, result.stderr
    assert EsYml.load(path).flat() == {"a": 1, "b": True, "c": 9443, "d": ["a:9443", "b:9443"],
                                       "e": "hello world", "f": "9443", "g": "${NODE}", "h": "a: b"}


def test_crlf_file_stays_crlf_through_the_cli(testdata, tmp_path):
    path = copy_fixture(testdata, tmp_path, "021")  # CRLF, no final newline
    result = esremote(path, "http.port=9201")
    assert result.returncode == 0, result.stderr
    data = path.read_bytes()
    assert b"\r\nhttp.port: 9201\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
    assert not data.endswith(b"\n")


@pytest.mark.parametrize("prefix, line", [("019", 4), ("022", 6), ("016", 5)])
def test_files_elasticsearch_refuses_are_left_alone(testdata, tmp_path, prefix, line):
    path = copy_fixture(testdata, tmp_path, prefix)
    original = path.read_bytes()
    result = esremote(path, "remote_cluster.port=9443")
    assert_one_line_error(result, f"{path}:{line}: ")
    assert path.read_bytes() == original and backups(path) == []


def test_flow_map_file_gains_and_loses_settings_in_its_json_layout(testdata, tmp_path):
    path = copy_fixture(testdata, tmp_path, "038")  # the whole file is one JSON object
    original = path.read_text()
    result = esremote(path, "remote_cluster.port=9443", "cluster.remote.lab.seeds=[a:9300, b:9300]",
                      "--unset", "path.logs")
    assert result.returncode == 0, result.stderr
    [saved] = backups(path)
    assert saved.read_text() == original
    text = path.read_text()
    assert text == original.replace('  "path.logs":"/tmp/logs",\n', "").replace(
        '"transport.type.default":"netty4"\n',
        '"transport.type.default":"netty4",\n  "remote_cluster.port":9443,\n'
        '  "cluster.remote.lab.seeds":["a:9300", "b:9300"]\n')
    expected = {k: v for k, v in json.loads(original).items() if k != "path.logs"}
    expected.update({"remote_cluster.port": 9443, "cluster.remote.lab.seeds": ["a:9300", "b:9300"]})
    assert yaml.safe_load(text) == json.loads(text) == EsYml.load(path).flat() == expected


@pytest.mark.parametrize("args, needle", [
    (["oops"], "expected KEY=VALUE"),
    (["a="], "use --unset a"),
    (["bad key=1"], "not a setting name"),
    ([], "nothing to do"),
])
def test_bad_arguments(tmp_path, args, needle):
    path = tmp_path / "elasticsearch.yml"
    path.write_text("a: 1\n")
    assert_one_line_error(esremote(path, *args), needle)
    assert path.read_text() == "a: 1\n"


def test_missing_file(tmp_path):
    assert_one_line_error(esremote(tmp_path / "nope.yml", "a=1"), "nope.yml: cannot read")


@pytest.mark.parametrize("limit, needle", [
    (4, "cannot back it up before editing (File too large); nothing was changed"),  # the copy fails
    (64, "cannot write it (File too large); it is unchanged"),  # the backup fits, the new file not
])
def test_a_failed_write_is_one_line_and_leaves_the_file(tmp_path, limit, needle):
    """A real I/O failure (a file size limit, which also binds root) says what failed, no traceback."""
    path = tmp_path / "elasticsearch.yml"
    path.write_text("a: 1\n")
    env = {k: v for k, v in os.environ.items() if k != "ESREMOTE_DEBUG"}
    result = subprocess.run([str(ESREMOTE), "yml", "set", str(path), f"b={'x' * 80}"], capture_output=True,
                            text=True, timeout=60, env=env,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_one_line_error(result, f"{path}: {needle}")
    assert path.read_text() == "a: 1\n"
