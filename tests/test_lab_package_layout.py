"""Lab nodes laid out like a deb/rpm install when the lab runs as root (es-facts §12): the system
user `elasticsearch`, config files `root:elasticsearch` and group-readable in a setgid directory,
data and logs owned by the service user, node processes running as that user, refusing root, and
refusing to start when they cannot read a file they need."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from esremote.cluster.client import poll
from esremote.errors import ConfigError
from esremote.lab.node import identity
from esremote.lab.ops import control, package_layout

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only root can play the package layout "
                                                 "(a system user, chown); CI runs as root"),
]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory("package-layout", local_nodes=1, remote_nodes=1, seed=False)


def _owner(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    import grp  # noqa: PLC0415

    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # the effective uid
    raise AssertionError(f"no Uid line for pid {pid}")


def test_config_is_root_elasticsearch_and_group_readable(lab):
    for node in lab.nodes():
        home = Path(node["home"])
        config = home / "config"
        assert _owner(config) == ("root", "elasticsearch", 0o2750)
        assert _owner(config / "certs") == ("root", "elasticsearch", 0o2750)
        for path in [config / "elasticsearch.yml", config / "elasticsearch.keystore", *config.glob("certs/*")]:
            assert _owner(path) == ("root", "elasticsearch", 0o660), path
        for name in ("data", "logs", "run"):
            assert _owner(home / name)[:2] == ("elasticsearch", "elasticsearch"), name


def test_nodes_run_as_the_service_user(lab):
    uid = pwd.getpwnam("elasticsearch").pw_uid
    for node in lab.nodes():
        pid = int((Path(node["home"]) / "run" / "elasticsearch.pid").read_text())
        assert _uid_of(pid) == uid, node["name"]


def test_a_node_started_as_root_refuses_with_elasticsearchs_message(lab):
    home = Path(lab.node("local-0")["home"])
    env = {k: v for k, v in os.environ.items() if k != identity.RUN_AS_ENV}
    result = subprocess.run([str(home / "bin" / "elasticsearch"), "-p", str(home / "root.pid")], env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1
    assert "can not run elasticsearch as root" in result.stderr
    log = (home / "logs" / "local.log").read_text()
    assert "java.lang.RuntimeException: can not run elasticsearch as root" in log
    assert not (home / "root.pid").exists()


def test_a_p12_the_service_user_cannot_read_stops_the_node_at_its_restart(lab):
    node = lab.node("remote-0")
    home = Path(node["home"])
    p12 = home / "config" / "certs" / "http.p12"
    service = str(home / "bin" / "elasticsearch-service")
    before = p12.stat()
    os.chown(p12, 0, 0)  # by hand, as a careless tool would write it: root:root 0600
    os.chmod(p12, 0o600)
    try:
        result = subprocess.run([service, "restart"], capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        log = (home / "logs" / "remote.log").read_text()
        assert f"java.nio.file.AccessDeniedException: {p12}" in log
    finally:
        os.chown(p12, before.st_uid, before.st_gid)
        os.chmod(p12, stat.S_IMODE(before.st_mode))
        subprocess.run([service, "start"], capture_output=True, timeout=120, check=True)
    poll(lambda: lab.es("remote").cluster.health()["number_of_nodes"] == 1 or None, timeout=60,
         what="remote-0 back in its cluster")


def test_a_lab_dir_the_service_user_cannot_reach_is_refused_before_anything_is_built(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=rf"{closed} is mode 0700 \(root\).*chmod o\+x {closed}"):
        control.up(closed / "lab", {"local_nodes": 1, "remote_nodes": 1}, seed=False)
    assert list(closed.iterdir()) == []


def test_without_root_lab_up_says_which_checks_are_off(monkeypatch):
    monkeypatch.setattr(package_layout.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(package_layout.pwd, "getpwuid", lambda uid: pwd.struct_passwd(
        ("dev", "x", uid, uid, "", "/home/dev", "/bin/sh")))
    assert not package_layout.active()
    assert package_layout.off_note().startswith("lab: not running as root, so the package-install checks are off")
    assert "nodes run as dev" in package_layout.off_note()
