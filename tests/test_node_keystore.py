"""NodeKeystore: a node's `bin/elasticsearch-keystore` (the lab's twin of the CLI) driven over SSH,
as the keystore's owner, against both SSH servers."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import esremote
from esremote.errors import KeystoreError
from esremote.keystore import Keystore
from esremote.node_keystore import NodeKeystore
from esremote.ssh import SSHConnection

OWNER = "esr-elastic"  # plays the `elasticsearch` service user
CREDENTIALS = "cluster.remote.my_remote.credentials"
API_KEY = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
REPO_ROOT = Path(esremote.__file__).resolve().parents[1]


def _python_for(user: str | None) -> tuple[str, str] | None:
    """An interpreter `user` can run that imports the lab CLI: (python, PYTHONPATH), else None."""
    candidates = [(sys.executable, ""), ("/usr/bin/python3", str(REPO_ROOT))]
    for python, path in candidates:
        prefix = ["sudo", "-n", "-u", user, "--"] if user else []
        probe = subprocess.run([*prefix, "env", f"PYTHONPATH={path}", python, "-c",
                                "import esremote.lab.tools.keystore_cli"], capture_output=True, cwd="/")
        if probe.returncode == 0:
            return python, path
    return None


@pytest.fixture(scope="session")
def keystore_runtime() -> tuple[str | None, str, str]:
    """(owner, python, PYTHONPATH): a non-root owner when we may create one and it can run Python."""
    if os.geteuid() == 0:
        if subprocess.run(["id", "-u", OWNER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OWNER],
                           check=True)
        found = _python_for(OWNER)
        if found:
            return (OWNER, *found)
    return (None, sys.executable, "")


@dataclass
class EsNode:
    home: Path
    config: Path
    owner: str | None
    argv_log: Path

    @property
    def keystore_file(self) -> Path:
        return self.config / "elasticsearch.keystore"

    def local(self, password: str = "") -> Keystore:
        return Keystore.load(self.keystore_file, password)


@pytest.fixture
def es_node(ssh_server, keystore_runtime) -> EsNode:
    """An Elasticsearch home whose bin/elasticsearch-keystore runs the lab CLI; it logs its argv."""
    owner, python, pythonpath = keystore_runtime
    home = ssh_server.fresh_dir("es-home")
    (home / "bin").mkdir()
    # An 8.13 node writes format 5 (10,000 KDF rounds instead of 210,000): fast tests.
    (home / "lib").mkdir()
    (home / "lib" / "lab-node.json").write_text(json.dumps({"version": "8.13.4"}))
    config = home / "config"
    config.mkdir(mode=0o750)
    argv_log = home / "argv.log"
    for log in (argv_log, home / "user.log"):
        log.touch(mode=0o666)
        os.chmod(log, 0o666)
    wrapper = home / "bin" / "elasticsearch-keystore"
    wrapper.write_text(
        "#!/bin/sh\n"
        'ES_HOME=$(cd "$(dirname "$0")/.." && pwd)\nexport ES_HOME\n'
        f'echo "$*" >> "$ES_HOME/argv.log"\n'
        f'id -un >> "$ES_HOME/user.log"\n'
        f"PYTHONPATH={pythonpath} exec {python} -m esremote.lab.tools.keystore_cli \"$@\"\n")
    wrapper.chmod(0o755)
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(config, entry.pw_uid, entry.pw_gid)
    return EsNode(home, config, owner, argv_log)


@pytest.fixture
def conn(ssh_server):
    with SSHConnection(ssh_server.target()) as connection:
        yield connection


def _keystore(conn, node: EsNode, password: str | None = None, **kw) -> NodeKeystore:
    return NodeKeystore(conn, es_home=str(node.home), config_dir=str(node.config), owner=node.owner,
                        password=password, **kw)


def _seed_local(node: EsNode, password: str, entries: dict[str, str]) -> None:
    """A keystore made on this side (as Elasticsearch would have left it), owned by the owner."""
    keystore = Keystore.create()
    for name, value in entries.items():
        keystore.set_string(name, value)
    keystore.save(node.keystore_file, password, version=5)
    if node.owner:
        entry = pwd.getpwnam(node.owner)
        os.chown(node.keystore_file, entry.pw_uid, entry.pw_gid)


def test_add_creates_the_keystore_as_its_owner_with_the_value_only_on_stdin(conn, es_node):
    (es_node.home / "lib" / "lab-node.json").write_text(json.dumps({"version": "8.15.0"}))  # format 6
    keystore = _keystore(conn, es_node)
    assert not keystore.exists()
    keystore.add(CREDENTIALS, API_KEY)
    assert keystore.exists() and not keystore.has_password()
    assert keystore.list() == [CREDENTIALS, "keystore.seed"]
    assert es_node.local().get_string(CREDENTIALS) == API_KEY and es_node.local().version == 6
    st = es_node.keystore_file.stat()
    assert st.st_uid == pwd.getpwnam(es_node.owner or conn.identity()[1]).pw_uid
    assert API_KEY not in es_node.argv_log.read_text()
    assert "add --stdin --force -- " + CREDENTIALS in es_node.argv_log.read_text()


def test_add_all_overwrites_and_remove_is_idempotent_when_asked(conn, es_node):
    _seed_local(es_node, "", {CREDENTIALS: "old"})
    keystore = _keystore(conn, es_node)
    keystore.add_all({CREDENTIALS: "new", "xpack.security.transport.ssl.keystore.secure_password": "p12"})
    assert es_node.local().get_string(CREDENTIALS) == "new"
    assert keystore.remove(CREDENTIALS) is True
    assert CREDENTIALS not in keystore and "keystore.seed" in keystore
    assert keystore.remove(CREDENTIALS, missing_ok=True) is False
    with pytest.raises(KeystoreError, match=r"Setting \[cluster.remote.my_remote.credentials\] does not exist"):
        keystore.remove(CREDENTIALS)


def test_password_protected_keystore_gets_the_password_first(conn, es_node):
    _seed_local(es_node, "ks-password", {"bootstrap.password": "x"})
    keystore = _keystore(conn, es_node, password="ks-password")
    assert keystore.has_password()
    keystore.add(CREDENTIALS, API_KEY)
    assert es_node.local("ks-password").get_string(CREDENTIALS) == API_KEY
    assert keystore.remove(CREDENTIALS)
    assert "ks-password" not in es_node.argv_log.read_text()


def test_wrong_or_missing_keystore_password_changes_nothing(conn, es_node):
    _seed_local(es_node, "ks-password", {})
    before = es_node.keystore_file.read_bytes()
    with pytest.raises(KeystoreError, match="no keystore password is configured: set keystore_password"):
        _keystore(conn, es_node).add(CREDENTIALS, API_KEY)
    with pytest.raises(KeystoreError) as info:
        _keystore(conn, es_node, password="wrong").add(CREDENTIALS, API_KEY)
    assert "Provided keystore password was incorrect: check keystore_password" in str(info.value)
    assert "wrong" not in str(info.value).replace("incorrect", "") and API_KEY not in str(info.value)
    assert es_node.keystore_file.read_bytes() == before


def test_missing_keystore_and_bad_es_home_say_what_to_do(conn, es_node):
    with pytest.raises(KeystoreError, match="there is no keystore: create it"):
        _keystore(conn, es_node).list()
    assert _keystore(conn, es_node).remove(CREDENTIALS, missing_ok=True) is False
    _seed_local(es_node, "", {})
    wrong = NodeKeystore(conn, es_home=str(es_node.home / "nowhere"), config_dir=str(es_node.config),
                         owner=es_node.owner)
    with pytest.raises(KeystoreError, match="check es_home"):
        wrong.list()


def test_corrupted_keystore_points_to_the_backup(conn, es_node):
    _seed_local(es_node, "", {})
    data = bytearray(es_node.keystore_file.read_bytes())
    data[-20] ^= 0xFF
    es_node.keystore_file.write_bytes(bytes(data))
    with pytest.raises(KeystoreError, match="restore it from its backup"):
        _keystore(conn, es_node).list()


def test_bad_names_and_multi_line_values_are_refused_before_running_anything(conn, es_node):
    keystore = _keystore(conn, es_node)
    with pytest.raises(KeystoreError, match="does not match the allowed setting name pattern"):
        keystore.add("bad name", "v")
    with pytest.raises(KeystoreError, match="spans lines"):
        keystore.add(CREDENTIALS, "line1\nline2")
    assert es_node.argv_log.read_text() == "" and not keystore.exists()


# --------------------------------------------------- who runs the CLI: the keystore file's owner
def _users(node: EsNode) -> set[str]:
    return set((node.home / "user.log").read_text().split())


@pytest.fixture
def package_node(es_node, keystore_runtime) -> EsNode:
    """The config directory of a deb/rpm install: root:GROUP 2750 (the group of the service user,
    which has no write permission there), the keystore root:GROUP 0660."""
    owner = keystore_runtime[0]
    if owner is None:
        pytest.skip("needs root and a service user that can run the lab CLI")
    gid = pwd.getpwnam(owner).pw_gid
    os.chown(es_node.config, 0, gid)
    os.chmod(es_node.config, 0o2750)
    _seed_local(es_node, "", {"bootstrap.password": "x"})
    os.chown(es_node.keystore_file, 0, gid)
    os.chmod(es_node.keystore_file, 0o660)
    return es_node


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_a_root_owned_keystore_is_saved_by_root_and_keeps_owner_group_and_mode(conn, package_node):
    before = _stat(package_node.keystore_file)
    keystore = NodeKeystore(conn, es_home=str(package_node.home), config_dir=str(package_node.config), sudo=True)
    keystore.add(CREDENTIALS, API_KEY)
    assert keystore.runner() == "root" and _users(package_node) == {"root"}
    assert _stat(package_node.keystore_file) == before
    assert package_node.local().get_string(CREDENTIALS) == API_KEY
    assert keystore.remove(CREDENTIALS) and CREDENTIALS not in keystore
    assert _stat(package_node.keystore_file) == before
    # The service user still reads it (group rw), which Elasticsearch needs at start.
    assert conn.readable_by(package_node.keystore_file, package_node.owner) is True


def test_the_service_user_cannot_save_a_root_owned_keystore(conn, package_node):
    """Why the CLI no longer runs as service_user: the group may not write the config directory."""
    before = package_node.keystore_file.read_bytes()
    keystore = _keystore(conn, package_node)  # owner = the service user, as esremote did before
    assert keystore.list() == ["bootstrap.password", "keystore.seed"]  # reading works through the group
    with pytest.raises(KeystoreError) as info:
        keystore.add(CREDENTIALS, API_KEY)
    assert f"ran as {package_node.owner}" in str(info.value) and API_KEY not in str(info.value)
    assert package_node.keystore_file.read_bytes() == before


def test_a_missing_keystore_is_created_as_the_config_dirs_owner_with_its_group(conn, package_node):
    package_node.keystore_file.unlink()
    keystore = NodeKeystore(conn, es_home=str(package_node.home), config_dir=str(package_node.config), sudo=True)
    assert not keystore.exists()
    keystore.add(CREDENTIALS, API_KEY)
    gid = pwd.getpwnam(package_node.owner).pw_gid
    assert _stat(package_node.keystore_file) == (0, gid, 0o660) and _users(package_node) == {"root"}


def test_a_keystore_owned_by_the_service_user_is_edited_as_that_user(conn, es_node):
    if es_node.owner is None:
        pytest.skip("needs root and a service user that can run the lab CLI")
    _seed_local(es_node, "", {})  # a tar install: config dir and keystore belong to the service user
    keystore = NodeKeystore(conn, es_home=str(es_node.home), config_dir=str(es_node.config), sudo=True)
    keystore.add(CREDENTIALS, API_KEY)
    assert keystore.runner() == es_node.owner and _users(es_node) == {es_node.owner}
    assert es_node.keystore_file.stat().st_uid == pwd.getpwnam(es_node.owner).pw_uid


@pytest.mark.openssh
def test_password_sudo_edits_a_root_owned_keystore_with_values_only_on_stdin(openssh_server, package_node):
    password = openssh_server.sudo_password
    target = openssh_server.target(user=openssh_server.password_user, sudo_password=password)
    before = _stat(package_node.keystore_file)
    with SSHConnection(target) as connection:
        keystore = NodeKeystore(connection, es_home=str(package_node.home), config_dir=str(package_node.config),
                                sudo=True)
        keystore.add(CREDENTIALS, API_KEY)
        assert keystore.list() == ["bootstrap.password", CREDENTIALS, "keystore.seed"]
    assert package_node.local().get_string(CREDENTIALS) == API_KEY  # not the sudo password
    assert _stat(package_node.keystore_file) == before and _users(package_node) == {"root"}
    log = package_node.argv_log.read_text()
    assert API_KEY not in log and password not in log
