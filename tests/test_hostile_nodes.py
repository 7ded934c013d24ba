"""Hostile node content (issue 11 §2): each is refused before anything changes, with a message naming
the node and the file. Nodes are the embedded SSH server (tests/fixtures/ssh.py)."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path, PurePosixPath

import paramiko
import pytest

from esremote.cluster.restart import RestartError, RestartTimeouts, _restart_or_stop
from esremote.errors import HostKeyError, KeystoreError, RemoteCommandError
from esremote.esyml import EsYml
from esremote.inventory import Auth, Cluster, Inventory, Node, SecretRef, SSHSettings
from esremote.keystore import CODEC_MAGIC, FOOTER_MAGIC, Keystore
from esremote.node_keystore import NodeKeystore
from esremote.preflight import NodeCheck, PreflightReport
from esremote.preflight.node_checks import _read_yml
from esremote.ssh import CommandTimeoutError, SSHPool

RUN = "20260101T000000Z"


def _inventory(server, home: Path, known_hosts: Path | None = None) -> Inventory:
    clusters = {}
    for k, (name, role) in enumerate([("local", "local"), ("remote", "remote")], 1):
        node_home = home / name
        (node_home / "config").mkdir(parents=True, exist_ok=True)
        (node_home / "logs").mkdir(exist_ok=True)
        clusters[name] = Cluster(
            role=role, urls=[f"https://127.0.0.{k}:9200"],
            auth=Auth(username="elastic", password=SecretRef(env="NO_SUCH_PASSWORD_VAR")),
            es_home=PurePosixPath(str(node_home)), restart_command="sleep 300",
            nodes=[Node(name=f"es-{name}-1", address=server.host, es_home=PurePosixPath(str(node_home)),
                        config_dir=PurePosixPath(str(node_home / "config")))])
    ssh = SSHSettings(user=server.user, port=server.port, key_file=server.key_file,
                      known_hosts=known_hosts or server.known_hosts, trust_on_first_use=False, sudo=False)
    return Inventory(ssh=ssh, clusters=clusters, aliases={"my_remote": {"local": "local", "remote": "remote"}})


@pytest.fixture
def node(embedded_ssh_server):
    """(resolved local node, its SSH connection, its config dir)."""
    home = embedded_ssh_server.fresh_dir("hostile-node")
    inv = _inventory(embedded_ssh_server, home)
    resolved = inv.nodes("local")[0]
    pool = SSHPool()
    try:
        yield resolved, pool.get(resolved.ssh_target()), Path(str(resolved.config_dir)), pool
    finally:
        pool.close()


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


# ---------------------------------------------------------------- elasticsearch.yml

HOSTILE_YML = {
    "not YAML": (b"cluster.name: [unclosed\nnode.name: a\n", "invalid YAML", 2),
    "duplicate keys": (b"cluster.name: a\nnode.name: b\ncluster.name: c\n", "defined twice", 3),
    "duplicate through nesting": (b"cluster:\n  name: a\ncluster.name: b\n", "defined twice", 3),
    "tab indentation": (b"cluster:\n\tname: a\n", "invalid YAML", 2),
    "BOM inside the file": ("cluster.name: a\n\ufeffnode.name: b\n".encode(), "invalid YAML", 2),
    "not UTF-8": ("cluster.name: a\nnode.name: caf\xe9\n".encode("latin-1"), "not UTF-8", 2),
}


@pytest.mark.parametrize("case", list(HOSTILE_YML))
def test_a_hostile_elasticsearch_yml_blocks_preflight_naming_node_file_and_line(node, case):
    """Preflight's read of a node's yml (the read every migration starts with) blocks the run with
    one finding naming the node, the file and the line; the file is left as it was."""
    resolved, conn, config, _ = node
    data, words, line = HOSTILE_YML[case]
    (config / "elasticsearch.yml").write_bytes(data)
    before = _listing(config)
    report = PreflightReport(alias="my_remote")
    result = NodeCheck(node=resolved)
    _read_yml(report, conn, resolved, result, sudo=False)
    [finding] = report.blocking
    assert finding.where == "local/es-local-1" and result.yml is None
    assert f"{resolved}:{resolved.yml_path}:{line}:" in finding.detail and words in finding.detail, finding
    assert "\n" not in finding.detail
    assert _listing(config) == before


def test_a_leading_bom_is_accepted_and_kept_by_an_edit(node):
    """A BOM at the start is what Elasticsearch's YAML reader (SnakeYAML) skips: not hostile. esremote
    reads through it and keeps it when it edits the file; only a BOM elsewhere is refused (above)."""
    resolved, conn, config, _ = node
    (config / "elasticsearch.yml").write_bytes("\ufeffcluster.name: a\n".encode())
    report, result = PreflightReport(alias="my_remote"), NodeCheck(node=resolved)
    _read_yml(report, conn, resolved, result, sudo=False)
    assert report.blocking == [] and result.yml == {"cluster.name": "a"}
    yml = EsYml.parse(conn.read_file(str(resolved.yml_path)).decode("utf-8"))
    yml.update({"node.name": "n1"})
    assert yml.text().startswith("\ufeffcluster.name: a\n") and EsYml.parse(yml.text()).flat() == {
        "cluster.name": "a", "node.name": "n1"}


# ---------------------------------------------------------------- keystore of an unknown format version

def _keystore_of_version(version: int) -> bytes:
    name = b"elasticsearch.keystore"
    body = struct.pack(">I", CODEC_MAGIC) + bytes([len(name)]) + name + struct.pack(">i", version) + b"\x00" * 48
    return body + struct.pack(">Ii", FOOTER_MAGIC, 0)


@pytest.mark.parametrize("version", [7, 99, 2])
def test_a_keystore_of_an_unknown_format_version_is_refused_before_any_change(node, version):
    """The version is read from the file itself before the node's keystore CLI runs: too new (7, 99)
    or too old (2) is refused naming the node and the keystore, and nothing is written."""
    resolved, conn, config, _ = node
    (config / "elasticsearch.keystore").write_bytes(_keystore_of_version(version))
    before = _listing(config)
    keystore = NodeKeystore(conn, es_home=str(resolved.es_home), config_dir=str(resolved.config_dir))
    for action in (keystore.list, lambda: keystore.add("cluster.remote.my_remote.credentials", "x"),
                   lambda: keystore.remove("cluster.remote.my_remote.credentials")):
        with pytest.raises(KeystoreError) as info:
            action()
        message = str(info.value)
        assert conn.host in message and str(resolved.keystore_path) in message, message
        assert ("too new" in message or "too old" in message) and "elasticsearch-keystore" not in message, message
    assert _listing(config) == before


def test_the_node_name_is_the_host_a_keystore_error_names(node):
    resolved, conn, _, _ = node
    assert conn.host == "local/es-local-1" == str(resolved)


# ---------------------------------------------------------------- a restart command that hangs

def test_a_hanging_restart_command_ends_at_its_deadline_and_stops_the_restart(node):
    """`sleep 300` as the restart command with a 1 s deadline: the restart stops at this node, before
    any node was restarted, naming the node, the deadline and the log file it tried to read."""
    resolved, _, config, pool = node
    (config / "elasticsearch.yml").write_text("cluster.name: hostile\n")
    with pytest.raises(RestartError) as info:
        _restart_or_stop(pool, None, "local", resolved, RestartTimeouts(command=1.0), None, [])
    message = str(info.value)
    assert info.value.node == "local/es-local-1" and "before any node was restarted" in message
    assert isinstance(info.value.__cause__, CommandTimeoutError), info.value.__cause__  # ended by its deadline
    assert "its restart command failed" in message, message
    assert "hostile.log" in message  # the log tail was looked for where the node writes it
    assert not info.value.transient


# ---------------------------------------------------------------- a changed SSH host key

def test_a_node_whose_host_key_changed_is_refused_naming_it_and_nothing_runs(embedded_ssh_server, tmp_path):
    server = embedded_ssh_server
    other = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if other is None:
        other = paramiko.Ed25519Key.from_private_key_file(str(server.key_file))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{server.host}]:{server.port} ssh-ed25519 {other.get_base64()}\n")
    home = server.fresh_dir("hostkey-node")
    inv = _inventory(server, home, known_hosts=known_hosts)
    resolved = inv.nodes("local")[0]
    (home / "local" / "config" / "elasticsearch.yml").write_text("cluster.name: a\n")
    before = _listing(home / "local" / "config")
    pool = SSHPool()
    try:
        with pytest.raises(HostKeyError) as info:
            pool.get(resolved.ssh_target()).run("touch should-not-exist")
    finally:
        pool.close()
    message = str(info.value)
    assert "local/es-local-1" in message and "CHANGED" in message and str(known_hosts) in message, message
    assert "\n" not in message
    assert known_hosts.read_text().count("\n") == 1  # the known key is not replaced
    assert _listing(home / "local" / "config") == before


# ---------------------------------------------------------------- a full disk on the node

@pytest.fixture
def full_disk(node):
    """The node's config dir on a 64 KiB tmpfs (root only), holding the original elasticsearch.yml
    and a filler that leaves less free space than the new content needs."""
    resolved, conn, config, pool = node
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(config)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (config / "elasticsearch.yml").write_bytes(b"cluster.name: original\n")
        fd = os.open(config / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield resolved, conn, config
    finally:
        subprocess.run(["umount", str(config)], check=False)


FULL_DISK = {  # original size, bytes freed after filling the disk, new content's size
    "nothing free": (24, 0, 40_000),
    "room for the backup, not for the new content": (24, 8192, 40_000),
    "no room for the backup, room for the new content": (24_000, 8192, 20),
}


@pytest.mark.parametrize("case", list(FULL_DISK))
def test_a_full_disk_keeps_the_original_and_leaves_no_temp_file(full_disk, case):
    """The write is refused naming the node, the file and the reason; the original is intact, no
    temporary file is left, and nothing is written without its backup."""
    resolved, conn, config = full_disk
    size, freed, new_size = FULL_DISK[case]
    filler = config / "filler"
    filler.unlink()
    (config / "elasticsearch.yml").write_bytes(b"cluster.name: original\n" + b"#" * size + b"\n")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - freed))
    original = (config / "elasticsearch.yml").read_bytes()
    new = (b"cluster.name: new\n" + b"#" * new_size + b"\n")
    with pytest.raises(RemoteCommandError) as info:
        conn.write_file(str(resolved.yml_path), new, run_id=RUN)
    message = str(info.value)
    assert "local/es-local-1" in message and str(resolved.yml_path) in message, message
    assert "No space left on device" in message, message
    assert (config / "elasticsearch.yml").read_bytes() == original
    leftovers = sorted(p.name for p in config.iterdir() if p.name not in ("elasticsearch.yml", "filler"))
    assert all(name.endswith(f".esremote-{RUN}.bak") for name in leftovers), leftovers
    for name in leftovers:  # a backup, when there was room for one, is the original
        assert (config / name).read_bytes() == original
