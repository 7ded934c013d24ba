"""`esremote keystore`, run as the installed console script on copies of real keystores."""

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from esremote.keystore import SEED_SETTING, Keystore, format_version, has_password

ESREMOTE = Path(sys.executable).parent / "esremote"


def esremote(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(ESREMOTE), "keystore", *map(str, args)], input=stdin.encode(),
                          capture_output=True, timeout=60)


def _error_line(result) -> str:
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def v5(tmp_path, testdata) -> Path:
    path = tmp_path / "elasticsearch.keystore"
    shutil.copy(testdata / "keystore" / "es-8.13-v5-nopass.keystore", path)
    path.chmod(0o640)
    return path


@pytest.fixture
def protected(tmp_path) -> Path:
    path = tmp_path / "protected.keystore"
    keystore = Keystore.create(version=5)
    keystore.set_string("existing", "old")
    keystore.save(path, "s3cret pw")
    return path


def test_list_prints_sorted_names(v5):
    result = esremote("list", v5)
    assert (result.returncode, result.stdout.decode()) == (0, f"bootstrap.password\n{SEED_SETTING}\n")


def test_add_reads_the_value_from_stdin_and_keeps_format_and_mode(v5):
    original = v5.read_bytes()
    result = esremote("add", v5, "cluster.remote.r1.credentials", stdin="multi\nline value\n")
    assert result.returncode == 0, result.stderr
    keystore = Keystore.load(v5)
    assert keystore.get_string("cluster.remote.r1.credentials") == "multi\nline value"
    assert keystore.get_string("bootstrap.password") == "changeme"
    assert format_version(v5) == 5 and stat.S_IMODE(v5.stat().st_mode) == 0o640
    backups = list(v5.parent.glob("elasticsearch.keystore.esremote-*.bak"))
    assert [b.read_bytes() for b in backups] == [original]


def test_a_password_line_for_a_keystore_without_password_is_ignored(v5):
    result = esremote("add", "--password-stdin", v5, "x.y", stdin="unused\nvalue\n")
    assert result.returncode == 0, result.stderr
    assert not has_password(v5) and Keystore.load(v5).get_string("x.y") == "value"


def test_add_refuses_an_existing_name_unless_forced(v5):
    before = v5.read_bytes()
    result = esremote("add", v5, "bootstrap.password", stdin="new-value")
    assert result.returncode == 2
    assert _error_line(result) == (f"esremote: error: {v5}: Setting [bootstrap.password] already exists "
                                   "in the keystore; pass --force to replace it")
    assert v5.read_bytes() == before

    assert esremote("add", "--force", v5, "bootstrap.password", stdin="new-value").returncode == 0
    assert Keystore.load(v5).get_string("bootstrap.password") == "new-value"


def test_bad_setting_name_changes_nothing(v5):
    before = v5.read_bytes()
    result = esremote("add", v5, "bad/name", stdin="value-xyz")
    assert result.returncode == 2
    assert "does not match the allowed setting name pattern" in _error_line(result)
    assert "value-xyz" not in result.stderr.decode() and v5.read_bytes() == before


def test_password_protected_keystore(protected):
    result = esremote("list", protected)
    assert result.returncode == 2 and "--password-stdin" in _error_line(result)

    result = esremote("list", "--password-stdin", protected, stdin="wrong pw\n")
    assert result.returncode == 2
    assert _error_line(result) == f"esremote: error: {protected}: Provided keystore password was incorrect"
    assert "wrong pw" not in result.stderr.decode()

    result = esremote("add", "--password-stdin", protected, "new.one", stdin="s3cret pw\nthe value\n")
    assert result.returncode == 0, result.stderr
    keystore = Keystore.load(protected, "s3cret pw")
    assert keystore.get_string("new.one") == "the value" and has_password(protected)

    result = esremote("remove", "--password-stdin", protected, "existing", stdin="s3cret pw\n")
    assert result.returncode == 0, result.stderr
    assert Keystore.load(protected, "s3cret pw").names() == ["keystore.seed", "new.one"]


def test_remove(v5):
    assert esremote("remove", v5, "bootstrap.password").returncode == 0
    assert Keystore.load(v5).names() == [SEED_SETTING]
    result = esremote("remove", v5, "bootstrap.password")
    assert result.returncode == 2
    assert _error_line(result).endswith("Setting [bootstrap.password] does not exist in the keystore.")


def test_create(tmp_path):
    path = tmp_path / "elasticsearch.keystore"
    result = esremote("create", path)
    assert result.returncode == 0, result.stderr
    assert Keystore.load(path).names() == [SEED_SETTING]
    assert format_version(path) == 6 and stat.S_IMODE(path.stat().st_mode) == 0o660

    before = path.read_bytes()
    result = esremote("create", path)
    assert result.returncode == 2 and "already exists" in _error_line(result)
    assert path.read_bytes() == before

    old = tmp_path / "for-8.13.keystore"
    assert esremote("create", "--format-version", "5", old).returncode == 0
    assert format_version(old) == 5


def test_unreadable_files_are_one_line_errors(tmp_path, v5):
    data = bytearray(v5.read_bytes())
    data[100] ^= 0xFF
    v5.write_bytes(bytes(data))
    for path, words in ((v5, "Keystore has been corrupted or tampered with"),
                        (tmp_path / "missing.keystore", "Elasticsearch keystore not found at")):
        result = esremote("list", path)
        assert result.returncode == 2 and words in _error_line(result)
