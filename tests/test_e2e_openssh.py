"""End to end over real OpenSSH, reaching the nodes the way a deb/rpm fleet is reached: a non-root
login user and sudo, each lab node laid out like a package install (config dir `root:elasticsearch`
2750, the node running as `elasticsearch`, refusing to start on a file it cannot read; es-facts §12).

1. `sudo -n` (lab `--ssh openssh`, user `esremote`): a full migration. Every file it created or
   changed under a node's config dir is readable through the group `elasticsearch` (the config
   dir's group), no secret (p12, keystore) is world-readable, and the run's backups are gone from
   every config dir once it is verified (the journal holds each elasticsearch.yml as it was).
2. On that migrated lab, the failure those rules prevent: a remote node's `remote-cluster.p12`
   made `root:root 0600` by hand stops the node at start with `java.nio.file.AccessDeniedException`
   and the path in its log.
3. Password sudo (lab `--sudo password`, user `esremote-pw`, the password a `{file: ...}` secret
   reference): the cross-cluster key is invalidated during the run, the rollback runs by itself,
   and every file under every config dir has its bytes, mode, owner and group back. The keystores
   are compared by their entries, not their bytes: the keystore CLI encrypts with a new salt and IV
   on every save, so removing the entries a run added cannot give the old bytes back. No file is
   added, the run's backups (`*.esremote-<run id>.bak`) included: a verified rollback removes them.
"""

from __future__ import annotations

import grp
import os
import stat
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from esremote.keystore import Keystore
from esremote.lab.ops import control
from esremote.ssh import SSHConnection
from tests.fixtures.lab import Lab
from tests.fixtures.ssh import _require_openssh
from tests.test_e2e_migration import esremote, journal, prefect_api, running, wait_for, work_states  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.openssh]

ALIAS = "my_remote"
SERVICE_GROUP = "elasticsearch"
STRAY = "*.esremote-*"  # the run's backups and temporary files
SECRETS = ("*.p12", "elasticsearch.keystore")


@dataclass(frozen=True)
class Entry:
    """One path under a config dir: its bytes (None for a directory), mode bits, owner and group."""

    data: bytes | None
    mode: int
    uid: int
    gid: int

    @property
    def meta(self) -> tuple[int, int, int]:
        return self.mode, self.uid, self.gid


def _entry(path: Path) -> Entry:
    st = path.lstat()
    data = None if stat.S_ISDIR(st.st_mode) else path.read_bytes()
    return Entry(data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def config_dir(lab: Lab, node: str) -> Path:
    return Path(lab.node(node)["home"]) / "config"


def snapshot(lab: Lab) -> dict[str, dict[str, Entry]]:
    """node -> config-relative path ("." for the dir itself) -> Entry, for every node of every cluster."""
    out = {}
    for node in lab.nodes():
        config = config_dir(lab, node["name"])
        out[node["name"]] = {".": _entry(config)} | {
            str(p.relative_to(config)): _entry(p) for p in sorted(config.rglob("*"))}
    return out


def _secret(rel: str) -> bool:
    return any(fnmatch(Path(rel).name, pattern) for pattern in SECRETS)


def _keystore_entries(data: bytes) -> dict[str, bytes]:
    keystore = Keystore.from_bytes(data)
    return {name: keystore.get(name) for name in keystore.names()}


def _require_package_layout(lab: Lab) -> int:
    """The gid of `elasticsearch`, which owns every config dir as a package install has it."""
    gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    for node in lab.nodes():
        config = _entry(config_dir(lab, node["name"]))
        assert (config.uid, config.gid, config.mode) == (0, gid, 0o2750), (node["name"], config)
    return gid


def _logins(lab: Lab, user: str) -> list[str]:
    """Nodes whose sshd log shows `user` logging in with the lab's key."""
    run_dir = lab.dir / "run"
    return [n["name"] for n in lab.nodes()
            if f"Accepted publickey for {user} " in (run_dir / f"sshd-{n['name']}.log").read_text()]


def _strays(now: dict[str, Entry]) -> list[str]:
    """Files the run left in a config dir that Elasticsearch does not use: backups, temporary files."""
    return [rel for rel in now if fnmatch(Path(rel).name, STRAY) or fnmatch(Path(rel).name, "." + STRAY)]


@dataclass
class Migrated:
    lab: Lab
    before: dict[str, dict[str, Entry]]
    stdout: str
    stderr: str
    returncode: int
    state_dir: Path


class TestSudoN:
    """The `sudo -n` lab: migrated once (class fixture), then taken down before the next lab."""

    @pytest.fixture(scope="class")
    @classmethod
    def migrated(cls, lab_factory, prefect_api, tmp_path_factory):  # noqa: F811
        _require_openssh()
        lab = lab_factory("e2e-openssh", ssh="openssh")
        try:
            before = snapshot(lab)
            state_dir = tmp_path_factory.mktemp("e2e-openssh-state")
            result = esremote("migrate", "--inventory", str(lab.inventory), "--yes", prefect_api=prefect_api,
                              state_dir=state_dir)
            yield Migrated(lab, before, result.stdout, result.stderr, result.returncode, state_dir)
        finally:
            lab.down()  # two labs at once are too much for a 2-core machine

    def test_migration_with_sudo_n_keeps_group_read_and_secrets_private(self, migrated):
        lab = migrated.lab
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
        assert "status: migrated" in migrated.stdout
        # A non-root login with password-less sudo did it: the lab's `esremote` user, no sudo password.
        inventory = yaml.safe_load(lab.inventory.read_text())
        assert inventory["ssh"]["user"] == "esremote" and inventory["ssh"]["sudo"] is True
        assert inventory["ssh"].get("sudo_password") is None
        assert _logins(lab, "esremote") == [n["name"] for n in lab.nodes()]
        with SSHConnection(lab.ssh_target(lab.nodes()[0]["name"])) as conn:
            assert conn.identity() != (0, "root") and conn.run("sudo -n true", check=False).exit_code == 0
        info = lab.es("local").cluster.remote_info()[ALIAS]
        assert info["connected"] and info["cluster_credentials"] == "::es_redacted::"

        gid = _require_package_layout(lab)
        created = changed = 0
        for name, before in migrated.before.items():
            now = snapshot(lab)[name]
            assert set(before) <= set(now), f"{name}: the run removed {set(before) - set(now)}"
            for rel, entry in now.items():
                if _secret(rel):
                    assert not entry.mode & stat.S_IROTH, f"{name}: secret {rel} is world-readable"
                old = before.get(rel)
                if old == entry:
                    continue
                created, changed = created + (old is None), changed + (old is not None)
                # Made or changed by the run: Elasticsearch (group elasticsearch) reads it.
                need = stat.S_IRGRP | (stat.S_IXGRP if entry.data is None else 0)
                assert entry.gid == gid and entry.mode & need == need, f"{name}: {rel} {entry.meta}"
                if old is not None:
                    assert entry.meta == old.meta, f"{name}: {rel} was {old.meta}, now {entry.meta}"
            assert _strays(now) == [], f"{name}: left in the config dir: {_strays(now)}"
        # What the backups held on the nodes, the journal keeps: every elasticsearch.yml as it was.
        [run_dir] = (migrated.state_dir / "runs").iterdir()
        originals = {p.read_bytes() for p in (run_dir / "originals").glob("*.yml")}
        assert {b["elasticsearch.yml"].data for b in migrated.before.values()} <= originals
        remote = snapshot(lab)[lab.nodes("remote")[0]["name"]]
        p12 = remote["certs/remote-cluster.p12"]
        assert (p12.uid, p12.gid, p12.mode) == (0, gid, 0o660)
        assert created and changed

    def test_a_p12_written_root_only_stops_the_node_with_access_denied(self, migrated):
        """The acceptance test of es-facts §12: the mistake the rules above prevent, made by hand."""
        lab = migrated.lab
        node = lab.nodes("remote")[0]
        home = Path(node["home"])
        p12 = home / "config" / "certs" / "remote-cluster.p12"
        log = home / "logs" / "remote.log"
        original = _entry(p12)
        offset = log.stat().st_size
        try:
            os.chown(p12, 0, 0)
            os.chmod(p12, 0o600)
            with SSHConnection(lab.ssh_target(node["name"])) as conn:
                result = conn.run(f"{home}/bin/elasticsearch-service restart", sudo=True, check=False,
                                  timeout=180)
            assert result.exit_code != 0, result.stdout + result.stderr
            with log.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
            failure = [line for line in text.splitlines() if "java.nio.file.AccessDeniedException" in line]
            assert failure and any(str(p12) in line for line in failure), text[-3000:]
        finally:
            os.chown(p12, original.uid, original.gid)
            os.chmod(p12, original.mode)
            with SSHConnection(lab.ssh_target(node["name"])) as conn:
                conn.run(f"{home}/bin/elasticsearch-service start", sudo=True, timeout=180)


def test_rollback_with_password_sudo_restores_every_file_owner_group_and_mode(lab_factory, prefect_api, tmp_path):  # noqa: F811
    _require_openssh()
    lab = lab_factory("e2e-openssh-pw", ssh="openssh", sudo="password", version="8.15.0")
    # The login's sudo needs a password, which the inventory names as a 0600 file, never inline.
    inventory = yaml.safe_load(lab.inventory.read_text())
    assert inventory["ssh"]["user"] == "esremote-pw" and inventory["ssh"]["sudo"] is True
    secret = Path(inventory["ssh"]["sudo_password"]["file"])
    assert secret.parent == lab.dir / "secrets" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    password = secret.read_text().strip()
    assert password and password not in lab.inventory.read_text()
    with SSHConnection(lab.ssh_target(lab.nodes()[0]["name"])) as conn:
        assert conn.identity()[0] != 0 and conn.run("sudo -n true", check=False).exit_code != 0
    gid = _require_package_layout(lab)
    local = lab.es("local")
    remote_info = local.cluster.remote_info()[ALIAS]
    states = running(work_states(lab))
    before = snapshot(lab)

    process = esremote("migrate", "--inventory", str(lab.inventory), "--yes", "--link-timeout", "15",
                       prefect_api=prefect_api, state_dir=tmp_path, wait=False)
    try:
        # Right after the key was made (before the outage), it is invalidated on the remote.
        wait_for("the cross-cluster key", lambda: any(
            e["step"] == f"prepare_remote/api-key/{ALIAS}" and e["kind"] == "done" for e in journal(tmp_path)),
            timeout=300)
        control.fault(lab.dir, "api-key-invalidated")
        stdout, stderr = process.communicate(timeout=600)
    finally:
        process.kill()
    assert process.returncode == 3, stdout[-3000:] + stderr[-3000:]
    assert "status: rolled-back" in stdout
    assert _logins(lab, "esremote-pw") == [n["name"] for n in lab.nodes()]
    after = local.cluster.remote_info()[ALIAS]
    assert after["connected"] and "cluster_credentials" not in after
    assert after["proxy_address"] == remote_info["proxy_address"]
    assert running(wait_for("the work to run again", lambda: work_states(lab))) == states

    [run_id] = [p.name for p in (tmp_path / "runs").iterdir()]
    for name, was in before.items():
        now = snapshot(lab)[name]
        assert set(now) == set(was), f"{name}: added or removed {set(now) ^ set(was)}"
        for rel, entry in was.items():
            assert now[rel].meta == entry.meta, f"{name}: {rel} was {entry.meta}, now {now[rel].meta}"
            if rel == "elasticsearch.keystore":
                assert _keystore_entries(now[rel].data) == _keystore_entries(entry.data), name
            else:
                assert now[rel].data == entry.data, f"{name}: {rel} differs"
        assert now["."].gid == gid
    # The sudo password went to sudo on stdin only: not in the output, the journal or the run's files.
    run_dir = tmp_path / "runs" / run_id
    texts = [stdout, stderr] + [p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()]
    assert not [t for t in texts if password in t]
