"""esremote.ssh against a real OpenSSH sshd and the embedded server: commands, sudo, host keys, files."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from esremote.errors import (
    AuthenticationError,
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    SudoError,
    is_transient,
)
from esremote.ssh import CommandTimeoutError, SSHConnection, SSHPool

RUN = "20260101T000000Z"


def _fingerprint(key_line: str) -> str:
    kind, blob = key_line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob)).fingerprint


@pytest.fixture
def node(ssh_server):
    with SSHConnection(ssh_server.target()) as conn:
        yield conn


# ---------------------------------------------------------------------------------------- commands
def test_run_passes_stdin_and_returns_output_and_exit_code(node):
    result = node.run("cat; echo done >&2; exit 3", stdin=b"secret-ish\x00bytes", check=False)
    assert (result.exit_code, result.stdout_bytes, result.stderr) == (3, b"secret-ish\x00bytes", "done\n")
    assert not result.ok and result.host == node.host


def test_failed_command_raises_with_exit_code_and_stderr_tail(node):
    with pytest.raises(RemoteCommandError) as info:
        node.run("echo first >&2; echo last words >&2; exit 7")
    err = info.value
    assert err.exit_status == 7 and "last words" in str(err) and node.host in str(err)
    assert not is_transient(err)


def test_large_stdin_and_stdout_do_not_deadlock(node):
    data = os.urandom(3 * 1024 * 1024)
    result = node.run("cat; cat /dev/null >&2", stdin=data, timeout=60)
    assert result.stdout_bytes == data


def test_command_timeout_is_transient_and_ends_the_wait(node, ssh_server):
    """What ends the wait is the command's timeout: the error names it, and it comes while the
    command is still sleeping (the file it writes after its sleep is not there)."""
    after = ssh_server.workdir / f"after-sleep-{os.getpid()}"
    with pytest.raises(CommandTimeoutError) as info:
        node.run(f"sleep 30; touch {after}", timeout=1)
    assert "`sleep 30; touch" in str(info.value) and "did not finish within its 1s timeout" in str(info.value)
    assert is_transient(info.value) and not after.exists()
    assert node.run("echo still usable").stdout == "still usable\n"


def test_commands_start_in_the_login_home(node, ssh_server):
    assert node.run("pwd").stdout.strip() == str(ssh_server.home)


# -------------------------------------------------------------------------------------------- sudo
def test_sudo_runs_as_root_and_as_another_user_with_stdin(node):
    assert node.run("id -u", sudo=True).stdout.strip() == "0"
    assert node.run("id -un", as_user="nobody").stdout.strip() == "nobody"
    assert node.run("cat", stdin=b"payload", sudo=True).stdout == "payload"


@pytest.mark.openssh
def test_sudo_with_password_keeps_stdin_for_the_command_and_out_of_argv(openssh_server):
    password = openssh_server.sudo_password
    target = openssh_server.target(user=openssh_server.password_user, sudo_password=password)
    with SSHConnection(target) as conn:
        result = conn.run("cat; ps -eo args", stdin=b"line one\nline two\n", sudo=True)
    assert result.stdout.startswith("line one\nline two\n")
    assert password not in result.stdout and password not in result.stderr


@pytest.mark.openssh
def test_sudo_wrong_password_fails_fast_without_showing_it(openssh_server):
    target = openssh_server.target(user=openssh_server.password_user, sudo_password="not-the-password")
    ran = openssh_server.fresh_dir("sudo-refused") / "ran"
    with SSHConnection(target) as conn, pytest.raises(SudoError) as info:
        conn.run(f"touch {ran}; cat", stdin=b"not-a-password-either\n", sudo=True)
    # sudo's refusal ended the wait (a SudoError, not a timeout), and the command never ran
    assert not ran.exists()
    message = str(info.value)
    assert "refused the configured password" in message and "sudo_password" in message
    assert "not-the-password" not in message and not is_transient(info.value)


@pytest.mark.openssh
def test_sudo_needing_a_password_without_one_says_what_to_configure(openssh_server):
    with SSHConnection(openssh_server.target(user=openssh_server.password_user)) as conn:
        with pytest.raises(SudoError, match="none is configured: set ssh.sudo_password"):
            conn.run("true", sudo=True)
        assert conn.run("id -un").stdout.strip() == openssh_server.password_user


# --------------------------------------------------------------------------------------- host keys
def test_unknown_host_key_is_refused_with_its_fingerprint(ssh_server, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(HostKeyError) as info:
        SSHConnection(ssh_server.target(known_hosts=known_hosts)).connect()
    message = str(info.value)
    assert _fingerprint(ssh_server.host_key_line) in message and "ssh-keyscan" in message
    assert not is_transient(info.value)
    assert known_hosts.read_text() == ""


def test_missing_known_hosts_file_is_an_unknown_host_key(ssh_server, tmp_path):
    with pytest.raises(HostKeyError, match="unknown host key"):
        SSHConnection(ssh_server.target(known_hosts=tmp_path / "absent")).connect()
    assert not (tmp_path / "absent").exists()


def test_changed_host_key_is_refused_with_both_fingerprints(ssh_server, tmp_path):
    other = paramiko.Ed25519Key.from_private_key_file(str(ssh_server.key_file))  # any other ed25519 key
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{ssh_server.host}]:{ssh_server.port} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(HostKeyError) as info:
        SSHConnection(ssh_server.target(known_hosts=known_hosts)).connect()
    message = str(info.value)
    assert "CHANGED" in message and other.fingerprint in message
    assert _fingerprint(ssh_server.host_key_line) in message and "ssh-keygen -R" in message


def test_trust_on_first_use_adds_the_key_then_strict_checking_accepts_it(ssh_server, tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"
    with SSHConnection(ssh_server.target(known_hosts=known_hosts, trust_on_first_use=True)) as conn:
        conn.run("true")
    assert known_hosts.read_text() == f"[{ssh_server.host}]:{ssh_server.port} {ssh_server.host_key_line}\n"
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    with SSHConnection(ssh_server.target(known_hosts=known_hosts)) as conn:
        assert conn.run("echo ok").stdout == "ok\n"


# ------------------------------------------------------------------------------ connection errors
def test_refused_key_is_an_authentication_error(ssh_server, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(AuthenticationError, match="authorized_keys") as info:
        SSHConnection(ssh_server.target(key_file=stranger)).connect()
    assert not is_transient(info.value)


def test_nothing_listening_is_a_transient_connect_error(ssh_server):
    from tests.fixtures.ssh import _free_port

    with pytest.raises(ConnectError) as info:
        SSHConnection(ssh_server.target(port=_free_port(ssh_server.host))).connect()
    assert is_transient(info.value) and "cannot connect" in str(info.value)


def test_ssh_config_supplies_hostname_port_user_and_key(ssh_server, tmp_path):
    config = tmp_path / "config"
    config.write_text(f"Host lab-alias\n  HostName {ssh_server.host}\n  Port {ssh_server.port}\n"
                      f"  User {ssh_server.user}\n  IdentityFile {ssh_server.key_file}\n")
    target = ssh_server.target(host="lab-alias", port=None, user=None, key_file=None, ssh_config=config)
    with SSHConnection(target) as conn:
        assert conn.run("id -un").stdout.strip() == ssh_server.user


# ------------------------------------------------------------------------------------------ reuse
def test_connection_is_lazy_reused_and_reopened_after_a_drop(ssh_server):
    with SSHPool() as pool:
        conn = pool.get(ssh_server.target())
        assert not conn.connected
        first = conn.run("echo $SSH_CONNECTION").stdout
        assert pool.get(ssh_server.target()) is conn
        assert conn.run("echo $SSH_CONNECTION").stdout == first  # same client port: same connection
        conn._client.get_transport().close()  # the network drops it
        assert conn.run("echo $SSH_CONNECTION").stdout != first
    assert not conn.connected


# ------------------------------------------------------------------------------------------ files
def test_stat_reports_mode_owner_size_or_none(node, ssh_server):
    directory = ssh_server.fresh_dir("stat")
    path = directory / "f"
    path.write_bytes(b"12345")
    os.chmod(path, 0o640)
    st = node.stat(str(path))
    assert (st.mode, st.uid, st.owner, st.size) == (0o640, 0, "root", 5)
    assert node.stat(str(directory / "absent")) is None


def test_read_missing_file_is_a_command_error(node, ssh_server):
    with pytest.raises(RemoteCommandError, match="No such file"):
        node.read_file(str(ssh_server.workdir / "absent"))


def test_write_new_file_then_edit_keeps_backup_mode_and_is_idempotent(node, ssh_server):
    directory = ssh_server.fresh_dir("write")
    path = str(directory / "elasticsearch.yml")
    created = node.write_file(path, b"a: 1\n", run_id=RUN, mode=0o660)
    assert created.changed and created.created and created.backup_path is None
    assert (Path(path).read_bytes(), Path(path).stat().st_mode & 0o777) == (b"a: 1\n", 0o660)

    edited = node.write_file(path, b"a: 2\n", run_id=RUN)
    assert edited.changed and edited.backup_path == f"{path}.esremote-{RUN}.bak"
    assert Path(edited.backup_path).read_bytes() == b"a: 1\n"
    assert Path(path).stat().st_mode & 0o777 == 0o660 and Path(path).stat().st_uid == ssh_server.uid

    again = node.write_file(path, b"a: 2\n", run_id=RUN)
    assert not again.changed and again.backup_path == edited.backup_path
    node.write_file(path, b"a: 3\n", run_id=RUN)  # same run, later edit: the backup stays the original
    assert Path(edited.backup_path).read_bytes() == b"a: 1\n"
    assert sorted(p.name for p in directory.iterdir()) == ["elasticsearch.yml", f"elasticsearch.yml.esremote-{RUN}.bak"]


@pytest.mark.openssh
def test_non_root_user_edits_a_root_owned_0640_file_through_sudo(openssh_server):
    directory = openssh_server.workdir / "root-owned"
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / "elasticsearch.keystore-like"
    path.write_bytes(b"original\n")
    os.chown(path, 0, 0)
    os.chmod(path, 0o640)
    with SSHConnection(openssh_server.target()) as conn:
        assert conn.identity()[0] != 0
        result = conn.write_file(str(path), b"edited\n", run_id=RUN, sudo=True)
    st = path.stat()
    assert result.changed and path.read_bytes() == b"edited\n"
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o640)
    backup = Path(result.backup_path)
    assert backup.read_bytes() == b"original\n"
    assert (backup.stat().st_uid, backup.stat().st_mode & 0o777) == (0, 0o640)


@pytest.mark.openssh
def test_without_sudo_a_file_the_user_cannot_write_is_left_untouched(openssh_server):
    directory = openssh_server.workdir / "not-mine"
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / "f"
    path.write_bytes(b"keep me\n")
    target = openssh_server.target(user=openssh_server.password_user)  # sudo needs a password we lack
    with SSHConnection(target) as conn, pytest.raises(SudoError):
        conn.write_file(str(path), b"x", run_id=RUN)
    assert path.read_bytes() == b"keep me\n" and os.listdir(directory) == ["f"]


def test_write_file_sets_owner_and_group_when_asked(node, ssh_server):
    path = str(ssh_server.fresh_dir("owner") / "f")
    node.write_file(path, b"x", run_id=RUN, sudo=True, owner="nobody", group="nogroup", mode=0o600)
    st = node.stat(path)
    assert (st.owner, st.group, st.mode) == ("nobody", "nogroup", 0o600)
    assert not node.write_file(path, b"x", run_id=RUN, sudo=True, owner="nobody", group="nogroup").changed


def test_write_file_rejects_bad_run_id_and_relative_path(node):
    with pytest.raises(ValueError, match="run_id"):
        node.write_file("/etc/elasticsearch/x", b"", run_id="a/b")
    with pytest.raises(ValueError, match="absolute"):
        node.write_file("x", b"", run_id=RUN)


def test_write_through_a_symlink_edits_its_target_and_keeps_the_link(node, ssh_server):
    directory = ssh_server.fresh_dir("link")
    (directory / "real.yml").write_bytes(b"old\n")
    (directory / "elasticsearch.yml").symlink_to("real.yml")
    result = node.write_file(directory / "elasticsearch.yml", b"new\n", run_id=RUN)
    assert (directory / "elasticsearch.yml").is_symlink() and (directory / "real.yml").read_bytes() == b"new\n"
    assert result.path == str(directory / "real.yml")
    assert Path(result.backup_path).read_bytes() == b"old\n"


def test_missing_sshd_skips_unless_openssh_is_required(monkeypatch):
    from tests.fixtures import ssh as fixtures

    monkeypatch.setattr(fixtures, "SSHD", "/nonexistent/sshd")
    monkeypatch.delenv("ESREMOTE_REQUIRE_OPENSSH", raising=False)
    with pytest.raises(pytest.skip.Exception, match="openssh-server"):
        fixtures._require_openssh()
    monkeypatch.setenv("ESREMOTE_REQUIRE_OPENSSH", "1")
    with pytest.raises(pytest.fail.Exception, match="ESREMOTE_REQUIRE_OPENSSH=1"):
        fixtures._require_openssh()


@pytest.mark.openssh
def test_a_failed_write_names_the_file_and_leaves_nothing_behind(openssh_server):
    directory = openssh_server.workdir / "root-dir"
    directory.mkdir(mode=0o755, exist_ok=True)
    with SSHConnection(openssh_server.target()) as conn, pytest.raises(RemoteCommandError) as info:
        conn.write_file(str(directory / "new.yml"), b"x", run_id=RUN)
    assert f"`write {directory / 'new.yml'}`" in str(info.value) and "Permission denied" in str(info.value)
    assert os.listdir(directory) == []


# ------------------------------------------------------------------ package-install owners (§12)
SERVICE = "esr-elastic"  # plays the `elasticsearch` service user and group


@pytest.fixture(scope="module")
def service_gid() -> int:
    """The gid of the `esr-elastic` group (made with its user when missing; needs root)."""
    if os.geteuid() != 0:
        pytest.skip("owners and groups of other users need root")
    if subprocess.run(["id", "-u", SERVICE], capture_output=True).returncode != 0:
        result = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell",
                                 "/usr/sbin/nologin", SERVICE], capture_output=True)
        assert result.returncode in (0, 9), result.stderr  # 9: made meanwhile by another session
    return int(subprocess.run(["id", "-g", SERVICE], capture_output=True, text=True, check=True).stdout)


def _package_dir(ssh_server, gid: int) -> Path:
    """A config directory as a deb/rpm install has it: root:GROUP, setgid, 2750."""
    directory = ssh_server.fresh_dir("etc-elasticsearch")
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o2750)
    return directory


def _owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def test_new_file_in_a_package_config_dir_gets_root_and_the_group_an_existing_one_keeps_its_own(
        node, ssh_server, service_gid):
    directory = _package_dir(ssh_server, service_gid)
    p12 = directory / "remote-cluster.p12"
    result = node.write_file(p12, b"secret p12", run_id=RUN, sudo=True, mode=0o660, inherit_owner=True)
    assert result.created and _owner(p12) == (0, service_gid, 0o660)
    assert node.readable_by(p12, SERVICE) is True  # Elasticsearch reads it through the group

    yml = directory / "elasticsearch.yml"
    yml.write_bytes(b"a: 1\n")
    os.chown(yml, 0, service_gid)
    os.chmod(yml, 0o640)
    result = node.write_file(yml, b"a: 2\n", run_id=RUN, sudo=True, inherit_owner=True)
    assert result.changed and _owner(yml) == (0, service_gid, 0o640)
    backup = Path(result.backup_path)
    assert backup.read_bytes() == b"a: 1\n" and _owner(backup) == (0, service_gid, 0o640)
    again = node.write_file(p12, b"secret p12", run_id=RUN, sudo=True, inherit_owner=True)
    assert not again.changed and _owner(p12) == (0, service_gid, 0o660)


def test_a_root_only_file_is_not_readable_by_the_service_user(node, ssh_server, service_gid):
    directory = _package_dir(ssh_server, service_gid)
    path = directory / "http.p12"
    node.write_file(path, b"x", run_id=RUN, sudo=True, mode=0o600, owner="root", group="root")
    assert _owner(path) == (0, 0, 0o600)
    assert node.readable_by(path, SERVICE) is False
    assert node.readable_by(path, "no-such-user-here") is None


def test_ensure_dir_makes_missing_dirs_with_the_parents_owner_group_and_2750(node, ssh_server, service_gid):
    directory = _package_dir(ssh_server, service_gid)
    made = node.ensure_dir(directory / "certs" / "remote", sudo=True)
    assert made == [str(directory / "certs"), str(directory / "certs" / "remote")]
    for path in (directory / "certs", directory / "certs" / "remote"):
        assert _owner(path) == (0, service_gid, 0o2750)
    assert node.ensure_dir(directory / "certs", sudo=True) == []
    node.write_file(directory / "certs" / "remote" / "ca.crt", b"ca", run_id=RUN, sudo=True, mode=0o644,
                    inherit_owner=True)
    assert _owner(directory / "certs" / "remote" / "ca.crt") == (0, service_gid, 0o644)
    assert node.readable_by(directory / "certs" / "remote" / "ca.crt", SERVICE) is True


@pytest.mark.openssh
def test_password_sudo_writes_a_new_file_with_the_dirs_owner_and_group(openssh_server, service_gid):
    directory = _package_dir(openssh_server, service_gid)
    target = openssh_server.target(user=openssh_server.password_user, sudo_password=openssh_server.sudo_password)
    with SSHConnection(target) as conn:
        assert conn.identity()[0] != 0
        conn.ensure_dir(directory / "certs", sudo=True)
        conn.write_file(directory / "certs" / "remote-cluster.p12", b"line one\nline two\n", run_id=RUN,
                        sudo=True, mode=0o660, inherit_owner=True)
    p12 = directory / "certs" / "remote-cluster.p12"
    assert p12.read_bytes() == b"line one\nline two\n"  # the sudo password did not end up in the file
    assert _owner(directory / "certs") == (0, service_gid, 0o2750) and _owner(p12) == (0, service_gid, 0o660)


def test_backup_of_a_file_another_program_edits_keeps_owner_group_mode_and_the_first_copy(
        node, ssh_server, service_gid):
    directory = _package_dir(ssh_server, service_gid)
    keystore = directory / "elasticsearch.keystore"
    keystore.write_bytes(b"original")
    os.chown(keystore, 0, service_gid)
    os.chmod(keystore, 0o660)
    backup = node.backup(keystore, run_id=RUN, sudo=True)
    assert backup == f"{keystore}.esremote-{RUN}.bak"
    assert Path(backup).read_bytes() == b"original" and _owner(Path(backup)) == (0, service_gid, 0o660)
    keystore.write_bytes(b"edited by the CLI")
    assert node.backup(keystore, run_id=RUN, sudo=True) == backup and Path(backup).read_bytes() == b"original"
    assert node.backup(directory / "absent", run_id=RUN, sudo=True) is None
    assert sorted(p.name for p in directory.iterdir()) == ["elasticsearch.keystore", Path(backup).name]


def test_removing_a_runs_backups_takes_only_that_runs_beside_each_file_and_a_links_target(node, ssh_server):
    directory = ssh_server.fresh_dir("backups")
    (directory / "real.yml").write_bytes(b"old\n")
    (directory / "elasticsearch.yml").symlink_to("real.yml")
    keystore = directory / "elasticsearch.keystore"
    keystore.write_bytes(b"keystore")
    node.write_file(directory / "elasticsearch.yml", b"new\n", run_id=RUN)
    node.backup(keystore, run_id=RUN)
    (directory / f"elasticsearch.keystore.esremote-{RUN}.bak.tmp").write_bytes(b"partial")  # a killed copy
    (directory / "elasticsearch.keystore.esremote-other-run.bak").write_bytes(b"another run's")
    paths = [str(directory / "elasticsearch.yml"), str(keystore), str(directory / "absent.p12")]

    removed = node.remove_backups(paths, run_id=RUN)
    assert sorted(Path(p).name for p in removed) == [f"elasticsearch.keystore.esremote-{RUN}.bak",
                                                     f"elasticsearch.keystore.esremote-{RUN}.bak.tmp",
                                                     f"real.yml.esremote-{RUN}.bak"]
    assert sorted(p.name for p in directory.iterdir()) == [
        "elasticsearch.keystore", "elasticsearch.keystore.esremote-other-run.bak", "elasticsearch.yml", "real.yml"]
    assert node.remove_backups(paths, run_id=RUN) == []  # again: nothing left to remove
    with pytest.raises(ValueError):
        node.remove_backups(paths, run_id="x; rm -rf /")


def test_a_refused_channel_is_opened_again_and_the_command_runs_once(node, ssh_server, monkeypatch):
    """A busy SSH server may refuse a channel (paramiko: ChannelException) before anything runs:
    the open is tried again, and the command runs exactly once."""
    import paramiko  # noqa: PLC0415

    marker = ssh_server.fresh_dir("channel") / "runs"
    real, refused = paramiko.Transport.open_session, []

    def open_session(transport, *args, **kwargs):
        if not refused:
            refused.append(1)
            raise paramiko.ChannelException(2, "Unable to open channel")  # what the server answered
        return real(transport, *args, **kwargs)

    monkeypatch.setattr(paramiko.Transport, "open_session", open_session)
    assert node.run(f"echo ran >> {marker}; cat {marker}").stdout == "ran\n"
    assert refused == [1]
