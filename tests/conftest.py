"""Shared test set-up. Fixtures of each area live in tests/fixtures/ and are loaded here."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

pytest_plugins = [
    "tests.fixtures.ssh",
    "tests.fixtures.lab",
    "tests.fixtures.scripted_es",
    "tests.fixtures.prefect",
    "tests.fixtures.deployed",
]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared reference directory is missing: expected {SHARED} beside the clone")
    return SHARED


@pytest.fixture(scope="session")
def testdata(shared_dir) -> Path:
    return shared_dir / "testdata"


ROOT_BASETEMP = Path(tempfile.gettempdir()) / "esremote-tests"
KEEP_SESSIONS = 3


def pytest_configure(config):
    """Run as root, lab nodes run as user elasticsearch (a package install) and must reach their
    homes under the tests' temporary directories. pytest keeps its own under a 0700
    `pytest-of-root` that every new session resets, so root sessions get a base of their own."""
    if os.geteuid() != 0 or config.option.basetemp:
        return
    ROOT_BASETEMP.mkdir(mode=0o711, exist_ok=True)
    ROOT_BASETEMP.chmod(0o711)
    # Like pytest, the last few finished sessions stay for a look; a running one is never touched.
    finished = sorted((p for p in ROOT_BASETEMP.iterdir() if not _running(p)), key=lambda p: p.stat().st_mtime)
    for old in finished[:-KEEP_SESSIONS]:
        shutil.rmtree(old, ignore_errors=True)
    config.option.basetemp = tempfile.mkdtemp(prefix=f"session-{os.getpid()}-", dir=ROOT_BASETEMP)


def _running(session_dir: Path) -> bool:
    """Whether the pytest process that made `session-<pid>-...` is still alive."""
    pid = session_dir.name.split("-")[1] if session_dir.name.count("-") >= 2 else ""
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def pytest_sessionstart(session):
    """Every temporary directory of a root session is searchable (0711) by the service user."""
    if os.geteuid() != 0:
        return
    factory = session.config._tmp_path_factory
    factory.getbasetemp().chmod(0o711)
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
