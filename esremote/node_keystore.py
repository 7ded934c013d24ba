"""A node's own `bin/elasticsearch-keystore`, driven over SSH (es-facts §7).

    keystore = NodeKeystore(conn, es_home="/usr/share/elasticsearch", config_dir="/etc/elasticsearch",
                            password=keystore_password, sudo=True)
    keystore.add("cluster.remote.my_remote.credentials", api_key)   # value on stdin, never in argv
    keystore.remove("cluster.remote.my_remote.credentials", missing_ok=True)

The CLI runs as the keystore file's owner (found with `stat`; the config directory's owner when
there is no keystore yet), with `ES_PATH_CONF` naming the config directory: the CLI saves through
a temp file in that directory and refuses to change the keystore's owner, so only its owner can
save it. In a deb/rpm install that is root (`/etc/elasticsearch` is `root:elasticsearch` 2750, the
group cannot write), not the `elasticsearch` user the node runs as (es-facts §12); root runs it
through sudo, another owner through `sudo -u OWNER`, the login user directly. The saved keystore
keeps its owner and group and is rw-rw---- (the CLI's own mode). Secrets (the keystore password,
then one value per setting) travel on stdin, one line each, the password first when the keystore
has one. The CLI's messages and exit codes become `KeystoreError`s that say what to do.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath

from pydantic import SecretStr

from esremote import keystore as keystore_format
from esremote.errors import KeystoreError
from esremote.ssh import CommandResult, FileStat, SSHConnection

KEYSTORE_FILE = "elasticsearch.keystore"
_SETTING_NAME = re.compile(r"^[A-Za-z0-9_\-.]+$")

# org.elasticsearch.cli.ExitCodes
USAGE, DATA_ERROR, IO_ERROR, CONFIG = 64, 65, 74, 78
_NOT_FOUND = "keystore not found"
_WRONG_PASSWORD = "Provided keystore password was incorrect"
_CORRUPTED = "corrupted or tampered with"
_MISSING_SETTING = "does not exist in the keystore"
_NOT_PROTECTED = "Keystore is not password-protected"
_NO_KEYSTORE_ADVICE = ("there is no keystore: create it as its owner with `elasticsearch-keystore create` "
                       "(Elasticsearch also creates one on first start)")


class NodeKeystore:
    """The keystore of one node, edited through that node's keystore CLI."""

    def __init__(self, conn: SSHConnection, *, es_home: str | PurePosixPath, config_dir: str | PurePosixPath,
                 owner: str | None = None, password: SecretStr | str | None = None,
                 timeout: float = 120.0, sudo: bool = False) -> None:
        """`owner`: who runs the CLI; None (the default) means the keystore file's owner. `sudo`:
        look at the keystore's owner through sudo (a login user that cannot enter the config
        directory, like a package install's `root:elasticsearch` 2750)."""
        self.conn, self.owner, self.sudo = conn, owner, sudo
        self.es_home, self.config_dir = str(es_home).rstrip("/"), str(config_dir).rstrip("/")
        self.password = SecretStr(password) if isinstance(password, str) else password
        self.timeout = timeout
        self._runner: tuple[bool, str | None, str] | None = None  # (sudo, as_user, shown), once seen

    @property
    def path(self) -> str:
        return f"{self.config_dir}/{KEYSTORE_FILE}"

    # ------------------------------------------------------------------------------------ reads
    def exists(self) -> bool:
        return self._protected() is not None

    def has_password(self) -> bool:
        result = self._cli("has-passwd", check=False)
        if result.exit_code == 0:
            return True
        if _NOT_PROTECTED in result.stderr:
            return False
        raise self._error("has-passwd", result)

    def list(self) -> list[str]:
        """Setting names, sorted as the CLI prints them (`keystore.seed` included)."""
        result = self._cli("list", stdin=self._password_line(self._existing()))
        return [line for line in result.stdout.splitlines() if line]

    def __contains__(self, name: str) -> bool:
        return name in self.list()

    def show(self, name: str) -> SecretStr | None:
        """The value of one string setting, or None when the keystore (or the setting) is absent.

        The file is read as its owner and opened here (the keystore's own format, es-facts §7),
        not with the CLI's `show`, whose password prompt a non-interactive session would mix into
        the value it prints. The value never goes further than the returned `SecretStr`."""
        _check_name(name)
        data = self._read_bytes()
        if data is None:
            return None
        password = ""
        if keystore_format.has_password(data):
            if self.password is None:
                raise KeystoreError(f"{self.conn.host}: the keystore {self.path} is password-protected and no "
                                    f"keystore password is configured: set keystore_password for this cluster")
            password = self.password.get_secret_value()
        store = keystore_format.Keystore.from_bytes(data, password, source=f"{self.conn.host}:{self.path}")
        if name not in store:
            return None
        return SecretStr(store.get_string(name))

    def digest(self) -> str | None:
        """The hex SHA-256 of the keystore file's bytes (what a 9.3 node reports as
        `keystore_digest` when it reloads, es-facts §12), or None when there is no keystore."""
        data = self._read_bytes()
        return None if data is None else hashlib.sha256(data).hexdigest()

    def _read_bytes(self) -> bytes | None:
        """The file as its owner reads it; None when it does not exist."""
        q = shlex.quote(self.path)
        result = self._run(f"if [ -e {q} ]; then exec cat -- {q}; fi; exit 3")
        if result.exit_code == 3:
            return None
        if result.exit_code != 0:
            raise KeystoreError(f"{self.conn.host}: cannot read the keystore {self.path} as "
                                f"{self.runner()}: {result.stderr.strip()}; check config_dir and ssh.sudo")
        return result.stdout_bytes

    # ----------------------------------------------------------------------------------- writes
    def add(self, name: str, value: SecretStr | str) -> None:
        """Add or overwrite one string setting (creates the keystore when there is none)."""
        self.add_all({name: value})

    def add_all(self, values: Mapping[str, SecretStr | str]) -> None:
        """Add or overwrite several string settings in one CLI run (one keystore save)."""
        if not values:
            return
        lines = []
        for name, value in values.items():
            _check_name(name)
            secret = value.get_secret_value() if isinstance(value, SecretStr) else value
            if "\n" in secret or "\r" in secret:
                raise KeystoreError(f"the value of {name} spans lines; the keystore CLI reads one line "
                                    f"per setting from stdin, so it cannot be added this way")
            lines.append(secret)
        protected = self._protected()  # None: `add --force` creates the keystore, without a password
        stdin = self._password_line(protected) + "".join(f"{line}\n" for line in lines)
        self._cli("add --stdin --force -- " + " ".join(shlex.quote(n) for n in values), stdin=stdin)

    def remove(self, name: str, *, missing_ok: bool = False) -> bool:
        """Remove one setting; returns False when it was not there (and `missing_ok`)."""
        _check_name(name)
        protected = self._protected()
        if protected is None and missing_ok:
            return False
        result = self._cli(f"remove -- {shlex.quote(name)}", stdin=self._password_line(self._existing(protected)),
                           check=False)
        if result.exit_code == 0:
            return True
        if missing_ok and result.exit_code == CONFIG and _MISSING_SETTING in result.stderr:
            return False
        raise self._error("remove", result)

    # ---------------------------------------------------------------------------------- helpers
    def _password_line(self, protected: bool | None) -> str:
        """The password line the CLI reads first, or nothing for a keystore without one.

        Checked every time: a password line sent to an unprotected keystore would be taken for the
        first value. The clear header says it, so the file is read (it holds only ciphertext)
        rather than starting the CLI once more.
        """
        if not protected:
            return ""
        if self.password is None:
            raise KeystoreError(f"{self.conn.host}: the keystore {self.path} is password-protected and no "
                                f"keystore password is configured: set keystore_password for this cluster")
        return self.password.get_secret_value() + "\n"

    def _existing(self, protected: bool | None = ...) -> bool:
        """`_protected()` for a keystore that must exist (KeystoreError when it does not)."""
        protected = self._protected() if protected is ... else protected
        if protected is None:
            raise KeystoreError(f"{self.conn.host}: keystore {self.path}: {_NO_KEYSTORE_ADVICE}")
        return protected

    def _protected(self) -> bool | None:
        """Whether the keystore has a password; None when there is no keystore."""
        data = self._read_bytes()
        if data is None:
            return None
        try:
            return keystore_format.has_password(data)
        except KeystoreError as exc:
            raise KeystoreError(f"{self.conn.host}: keystore {self.path}: {exc}: restore it from its backup "
                                f"({KEYSTORE_FILE}.esremote-<run id>.bak) or recreate it") from exc

    def runner(self) -> str:
        """Who runs the CLI: `root`, the keystore's owner, or the login user."""
        return self._run_as()[2]

    def _run_as(self) -> tuple[bool, str | None, str]:
        """(sudo, as_user, name) for running the CLI as the keystore's owner."""
        if self._runner is not None:
            return self._runner
        login_uid, login = self.conn.identity()
        if self.owner is not None:  # told whom to run it as
            runner = ((False, None, login) if self.owner in (login, str(login_uid))
                      else (True, None, "root") if self.owner in ("root", "0")
                      else (True, self.owner, self.owner))
            self._runner = runner
            return runner
        found = self.conn.stat(self.path, sudo=self.sudo)
        st = found or self._config_dir_stat()
        if st.uid == login_uid:
            runner = (False, None, login)
        elif st.uid == 0:
            runner = (True, None, "root")
        else:
            name = st.owner if st.owner and st.owner != "UNKNOWN" else f"#{st.uid}"
            runner = (True, name, name)
        if found is not None:  # a keystore made later belongs to whoever made it: look again then
            self._runner = runner
        return runner

    def _config_dir_stat(self) -> FileStat:
        st = self.conn.stat(self.config_dir, sudo=self.sudo)
        if st is None:
            raise KeystoreError(f"{self.conn.host}: the config directory {self.config_dir} does not exist or the "
                                f"login user cannot see it: check config_dir{'' if self.sudo else ' and ssh.sudo'}")
        return st

    def _run(self, command: str, stdin: str | None = None) -> CommandResult:
        sudo, as_user, _ = self._run_as()
        return self.conn.run(command, stdin=stdin, sudo=sudo, as_user=as_user, check=False, timeout=self.timeout)

    def _cli(self, args: str, *, stdin: str | None = None, check: bool = True) -> CommandResult:
        command = (f"ES_PATH_CONF={shlex.quote(self.config_dir)} "
                   f"{shlex.quote(self.es_home + '/bin/elasticsearch-keystore')} {args}")
        result = self._run(command, stdin=stdin)
        if check and result.exit_code != 0:
            raise self._error(args.split()[0], result)
        return result

    def _error(self, what: str, result: CommandResult) -> KeystoreError:
        message = _cli_message(result.stderr)
        where = f"{self.conn.host}: keystore {self.path}"
        code = result.exit_code
        if code in (126, 127):
            advice = f"no runnable {self.es_home}/bin/elasticsearch-keystore: check es_home"
        elif _NOT_FOUND in message:
            advice = _NO_KEYSTORE_ADVICE
        elif _WRONG_PASSWORD in message:
            advice = f"{_WRONG_PASSWORD}: check keystore_password for this cluster"
        elif _CORRUPTED in message:
            advice = (f"{message}: restore it from its backup ({KEYSTORE_FILE}.esremote-<run id>.bak) "
                      "or recreate it")
        elif "format is too" in message:
            advice = f"{message}: use the keystore CLI of the Elasticsearch version that runs on this node"
        elif _MISSING_SETTING in message:
            advice = message
        elif (code == IO_ERROR or "AccessDenied" in message or "Permission denied" in message
              or "write permissions required" in message or "changing the file owner" in message):
            advice = (f"{message or 'I/O error'}: the CLI ran as {self.runner()}; it must run as the keystore's "
                      f"owner, who can write to {self.config_dir}")
        else:
            advice = message or f"exit code {code}"
        return KeystoreError(f"{where}: elasticsearch-keystore {what} failed (exit {code}): {advice}")


def _check_name(name: str) -> None:
    if not _SETTING_NAME.match(name):
        raise KeystoreError(f"Setting name [{name}] does not match the allowed setting name pattern "
                            r"[[A-Za-z0-9_\-.]+]")


def _cli_message(stderr: str) -> str:
    """The CLI's one-line reason: `ERROR: <msg>, with exit code N`, or `java.x.Exception: <msg>`."""
    for line in reversed(stderr.strip().splitlines()):
        line = line.strip()
        if line.startswith("ERROR: "):
            return re.sub(r", with exit code \d+$", "", line[len("ERROR: "):])
        if re.match(r"^[a-z]+(\.[a-z]+)*\.[A-Za-z]*(Exception|Error): ", line):
            return line.split(": ", 1)[1]
        if line.startswith("sudo: "):
            return line
    lines = stderr.strip().splitlines()
    return lines[-1].strip() if lines else ""

