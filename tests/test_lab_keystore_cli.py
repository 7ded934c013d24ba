"""The lab's `bin/elasticsearch-keystore`: Elasticsearch's prompts, messages and exit codes."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from esremote.keystore import SEED_SETTING, Keystore, format_version, has_password

WRAPPER = '#!/bin/sh\nES_HOME="$(cd "$(dirname "$0")/.." && pwd)"\nexport ES_HOME\n' \
          'exec "$PYTHON" -m esremote.lab.tools.keystore_cli "$@"\n'


class Node:
    """A minimal node home: bin/elasticsearch-keystore, config/, lib/lab-node.json."""

    def __init__(self, home: Path, version: str) -> None:
        self.home = home
        (home / "bin").mkdir(parents=True)
        (home / "config").mkdir()
        (home / "lib").mkdir()
        (home / "lib" / "lab-node.json").write_text(json.dumps({"version": version}))
        self.tool = home / "bin" / "elasticsearch-keystore"
        self.tool.write_text(WRAPPER)
        self.tool.chmod(0o755)
        self.keystore = home / "config" / "elasticsearch.keystore"

    def run(self, *args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {k: v for k, v in os.environ.items() if k not in ("ES_HOME", "ES_PATH_CONF")}
        environ.update(PYTHON=sys.executable, **(env or {}))
        return subprocess.run([str(self.tool), *args], input=stdin, capture_output=True, text=True,
                              env=environ, timeout=60)


def _error(result) -> str:
    """The ERROR line Elasticsearch's Command prints (after an empty line)."""
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path / "node", "8.14.0")


@pytest.fixture
def node_813(tmp_path, testdata) -> Node:
    node = Node(tmp_path / "node-813", "8.13.4")
    shutil.copy(testdata / "keystore" / "es-8.13-v5-nopass.keystore", node.keystore)
    return node


def test_create_list_show(node):
    result = node.run("create")
    assert result.returncode == 0
    assert result.stdout == f"Created elasticsearch keystore in {node.keystore}\n"
    assert format_version(node.keystore) == 6 and oct(node.keystore.stat().st_mode & 0o777) == "0o660"
    assert node.run("list").stdout == f"{SEED_SETTING}\n"
    assert node.run("-s", "list").stdout == ""
    seed = node.run("show", SEED_SETTING).stdout  # no console: the raw value, no newline added
    assert seed == Keystore.load(node.keystore).get_string(SEED_SETTING)

    before = node.keystore.read_bytes()
    result = node.run("create", stdin="n\n")
    assert result.returncode == 0
    assert result.stderr == "An elasticsearch keystore already exists. Overwrite? [y/N]"
    assert result.stdout == "Exiting without creating keystore.\n"
    assert node.keystore.read_bytes() == before


def test_add_from_stdin_as_the_ssh_driver_runs_it(node_813):
    """`ES_PATH_CONF=... bin/elasticsearch-keystore add --stdin --force NAME`, one line per name."""
    env = {"ES_PATH_CONF": str(node_813.keystore.parent)}
    result = node_813.run("add", "--stdin", "--force", "cluster.remote.r1.credentials", "other",
                          stdin="encoded-key\nsecond\n", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    keystore = Keystore.load(node_813.keystore)
    assert keystore.get_string("cluster.remote.r1.credentials") == "encoded-key"
    assert keystore.get_string("other") == "second"
    assert keystore.get_string("bootstrap.password") == "changeme"
    assert format_version(node_813.keystore) == 5  # an 8.13 "binary" writes what 8.13 reads


def test_existing_setting_asks_before_overwriting(node_813):
    result = node_813.run("add", "bootstrap.password", stdin="n\n")
    assert result.returncode == 0 and result.stdout == "Exiting without modifying keystore.\n"
    assert result.stderr == "Setting bootstrap.password already exists. Overwrite? [y/N]"
    result = node_813.run("add", "-x", "bootstrap.password", stdin="maybe\ny\nnew-pw\n")
    assert result.returncode == 0
    assert "Did not understand answer 'maybe'\n" in result.stderr
    assert Keystore.load(node_813.keystore).get_string("bootstrap.password") == "new-pw"


def test_add_without_a_keystore(node):
    result = node.run("add", "a.b", stdin="n\n")
    assert result.returncode == 0 and not node.keystore.exists()
    assert result.stderr == "The elasticsearch keystore does not exist. Do you want to create it? [y/N]"
    assert result.stdout == "Exiting without creating keystore.\n"
    result = node.run("add", "-xf", "a.b", stdin="value\n")
    assert result.returncode == 0
    assert Keystore.load(node.keystore).names() == ["a.b", SEED_SETTING]


def test_password_protected_keystore(node):
    result = node.run("create", "-p", stdin="pw one\npw one\n")
    assert result.returncode == 0 and has_password(node.keystore)
    assert result.stderr == ("Enter new password for the elasticsearch keystore (empty for no password): "
                             "Enter same password again: ")

    result = node.run("add", "-x", "s.one", stdin="pw one\nthe value\n")
    assert result.returncode == 0 and result.stderr == "Enter password for the elasticsearch keystore : "
    assert Keystore.load(node.keystore, "pw one").get_string("s.one") == "the value"

    result = node.run("list", stdin="wrong\n")
    assert result.returncode == 65
    assert _error(result) == "ERROR: Provided keystore password was incorrect, with exit code 65"

    result = node.run("passwd", stdin="pw one\nnew\nother\n")
    assert result.returncode == 65
    assert _error(result) == "ERROR: Passwords are not equal, exiting., with exit code 65"
    result = node.run("passwd", stdin="pw one\n\n\n")
    assert result.returncode == 0
    assert result.stdout == "Elasticsearch keystore password changed successfully.\n"
    assert not has_password(node.keystore)
    assert Keystore.load(node.keystore).get_string("s.one") == "the value"


def test_has_passwd(node):
    result = node.run("has-passwd")
    assert result.returncode == 1
    assert result.stderr == "ERROR: Elasticsearch keystore not found\n"
    node.run("create")
    result = node.run("has-passwd")
    assert result.returncode == 1
    assert result.stderr == "ERROR: Keystore is not password-protected\n"
    assert node.run("-s", "has-passwd").stderr == ""
    node.run("passwd", stdin="pw\npw\n")
    result = node.run("has-passwd")
    assert (result.returncode, result.stdout) == (0, "Keystore is password-protected\n")


@pytest.mark.parametrize(("args", "stdin", "code", "message"), [
    (["list"], "", 65, "ERROR: Elasticsearch keystore not found at [{ks}]. "
                       "Use 'create' command to create one., with exit code 65"),
    (["remove", "nope"], "", 78, "ERROR: Setting [nope] does not exist in the keystore., with exit code 78"),
    (["show", "nope"], "", 78, "ERROR: Setting [nope] does not exist in the keystore., with exit code 78"),
    (["show"], "", 64, "ERROR: Must provide a single setting name to show, with exit code 64"),
    (["add", "-x", "bad name"], "v\n", 65, "ERROR: Setting name [bad name] does not match the allowed "
                                           r"setting name pattern [[A-Za-z0-9_\-.]+], with exit code 65"),
    (["add-file", "a.b"], "", 64, "ERROR: settings and filenames must come in pairs, with exit code 64"),
    (["add-file", "a.b", "/nonexistent/f"], "", 74,
     "ERROR: File [/nonexistent/f] does not exist, with exit code 74"),
    (["list", "--bogus"], "", 64, "ERROR: bogus is not a recognized option"),
    (["frobnicate"], "", 64, "ERROR: Unknown command [frobnicate], with exit code 64"),
    (["add", "-x", "a.b"], "", 70, "java.lang.IllegalStateException: unable to read from standard input; "
                                   "is standard input open and a tty attached?"),
])
def test_errors_and_exit_codes(node_813, args, stdin, code, message):
    if args == ["list"]:
        node_813.keystore.unlink()
    before = node_813.keystore.read_bytes() if node_813.keystore.exists() else None
    result = node_813.run(*args, stdin=stdin)
    assert result.returncode == code
    assert _error(result) == message.format(ks=node_813.keystore)
    assert (node_813.keystore.read_bytes() if node_813.keystore.exists() else None) == before


def test_add_file_remove_upgrade(node_813, tmp_path):
    blob = tmp_path / "creds.json"
    blob.write_bytes(b'{"k":\x00"v"}')
    assert node_813.run("add-file", "gcs.client.default.credentials_file", str(blob)).returncode == 0
    assert node_813.run("remove", "bootstrap.password").returncode == 0
    keystore = Keystore.load(node_813.keystore)
    assert keystore.names() == ["gcs.client.default.credentials_file", SEED_SETTING]
    assert keystore.get("gcs.client.default.credentials_file") == b'{"k":\x00"v"}'

    (node_813.home / "lib" / "lab-node.json").write_text(json.dumps({"version": "8.15.1"}))
    assert node_813.run("upgrade").returncode == 0
    assert format_version(node_813.keystore) == 6


def test_show_to_a_file_keeps_the_value_private(node, tmp_path):
    """`show -o FILE` writes a secure setting: 0600 whatever the umask, an older copy replaced."""
    assert node.run("create").returncode == 0
    assert node.run("add", "--stdin", "bootstrap.password", stdin="s3cret-value\n").returncode == 0
    out = tmp_path / "shown"
    out.write_text("older copy")
    out.chmod(0o644)
    result = node.run("show", "-o", str(out), "bootstrap.password")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"s3cret-value"
    assert out.stat().st_mode & 0o777 == 0o600


def test_corrupted_keystore(node_813):
    """A changed byte fails Lucene's footer checksum (CodecUtil.checkFooter) before any decryption."""
    data = bytearray(node_813.keystore.read_bytes())
    data[120] ^= 0x01
    node_813.keystore.write_bytes(bytes(data))
    result = node_813.run("list")
    assert result.returncode == 74
    resource = f'BufferedChecksumIndexInput(NIOFSIndexInput(path="{node_813.keystore}"))'
    assert re.fullmatch(r"org\.apache\.lucene\.index\.CorruptIndexException: checksum failed \(hardware problem\?\) : "
                        rf"expected=[0-9a-f]+ actual=[0-9a-f]+ \(resource={re.escape(resource)}\)", _error(result))


def test_a_node_before_8_14_refuses_format_6(node_813):
    Keystore.create().save(node_813.keystore, version=6)
    result = node_813.run("list")
    assert result.returncode == 70
    assert _error(result) == (f"java.lang.IllegalStateException: The Elasticsearch keystore "
                              f"[{node_813.keystore}] format is too new. Are you trying to downgrade? "
                              "You should delete and recreate it in order to downgrade.")
