import os
import resource
import stat

import pytest

from esremote.files import atomic_write, backup, backup_path


def test_backup_keeps_the_first_original_of_a_run(tmp_path):
    f = tmp_path / "elasticsearch.yml"
    f.write_text("original\n")
    os.chmod(f, 0o640)
    first = backup(f, "run-1")
    f.write_text("edited\n")
    assert backup(f, "run-1") == first == backup_path(f, "run-1")
    assert first.read_text() == "original\n"
    assert stat.S_IMODE(first.stat().st_mode) == 0o640


def test_atomic_write_keeps_mode_and_leaves_no_temp_file(tmp_path):
    f = tmp_path / "elasticsearch.yml"
    f.write_text("a: 1\n")
    os.chmod(f, 0o600)
    atomic_write(f, b"a: 2\n")
    assert f.read_bytes() == b"a: 2\n" and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["elasticsearch.yml"]


def test_a_failed_backup_leaves_nothing_that_looks_like_a_backup(tmp_path):
    f = tmp_path / "big.yml"
    f.write_bytes(b"x" * 200_000)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))
    try:
        with pytest.raises(OSError):
            backup(f, "run-2")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert [p.name for p in tmp_path.iterdir()] == ["big.yml"]
