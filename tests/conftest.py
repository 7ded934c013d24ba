"""Shared test set-up. Fixtures of each area live in tests/fixtures/ and are loaded here."""

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

pytest_plugins = [
    "tests.fixtures.ssh",
    "tests.fixtures.lab",
    "tests.fixtures.scripted_es",
    "tests.fixtures.prefect",
]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared reference directory is missing: expected {SHARED} beside the clone")
    return SHARED


@pytest.fixture(scope="session")
def testdata(shared_dir) -> Path:
    return shared_dir / "testdata"


def pytest_sessionstart(session):
    """Run as root, lab nodes run as user elasticsearch (a package install), which must reach
    their homes under pytest's temporary directories; pytest makes every one of them 0700."""
    if os.geteuid() != 0:
        return
    factory = session.config._tmp_path_factory
    base = factory.getbasetemp()
    for directory in (base.parent, base):
        if directory.name.startswith("pytest-"):  # pytest's own dirs, never a --basetemp's parent
            directory.chmod(0o711)
    mktemp = factory.mktemp

    def searchable_mktemp(basename, numbered=True):
        path = mktemp(basename, numbered)
        path.chmod(0o711)
        return path

    factory.mktemp = searchable_mktemp


@pytest.fixture(autouse=True, scope="session")
def _isolated_prefect_home(tmp_path_factory):
    """Each test session gets its own Prefect home, without telemetry."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    yield
