"""A node's own `bin/elasticsearch-keystore`, driven over SSH (es-facts §7).

    keystore = NodeKeystore(conn, es_home="/usr/share/elasticsearch", config_dir="/etc/elasticsearch",
                            owner="elasticsearch", password=keystore_password)
    keystore.add("cluster.remote.my_remote.credentials", api_key)   # value on stdin, never in argv
    keystore.remove("cluster.remote.my_remote.credentials", missing_ok=True)

The CLI runs as the keystore's owner (`sudo -n -u OWNER`), so the file keeps its owner and mode,
with `ES_PATH_CONF` naming the config directory. Secrets (the keystore password, then one value
per setting) travel on stdin, one line each, the password first when the keystore has one. The
CLI's messages and exit codes become `KeystoreError`s that say what to do.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath

from pydantic import SecretStr

from esremote import keystore as keystore_format
from esremote.errors import KeystoreError
from esremote.ssh import CommandResult, SSHConnection

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
                 timeout: float = 120.0) -> None:
        self.conn, self.owner = conn, owner
        self.es_home, self.config_dir = str(es_home).rstrip("/"), str(config_dir).rstrip("/")
        self.password = SecretStr(password) if isinstance(password, str) else password
        self.timeout = timeout

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
        q = shlex.quote(self.path)
        result = self.conn.run(f"if [ -e {q} ]; then exec cat -- {q}; fi; exit 3", as_user=self._as_user(),
                               check=False, timeout=self.timeout)
        if result.exit_code == 3:
            return None
        if result.exit_code != 0:
            raise KeystoreError(f"{self.conn.host}: cannot read the keystore {self.path} as "
                                f"{self.owner or 'the login user'}: {result.stderr.strip()}; "
                                "check service_user and config_dir")
        try:
            return keystore_format.has_password(result.stdout_bytes)
        except KeystoreError as exc:
            raise KeystoreError(f"{self.conn.host}: keystore {self.path}: {exc}: restore it from its backup "
                                f"({KEYSTORE_FILE}.esremote-<run id>.bak) or recreate it") from exc

    def _as_user(self) -> str | None:
        if self.owner is None or self.owner == self.conn.identity()[1]:
            return None
        return self.owner

    def _cli(self, args: str, *, stdin: str | None = None, check: bool = True) -> CommandResult:
        command = (f"ES_PATH_CONF={shlex.quote(self.config_dir)} "
                   f"{shlex.quote(self.es_home + '/bin/elasticsearch-keystore')} {args}")
        result = self.conn.run(command, stdin=stdin, as_user=self._as_user(), check=False, timeout=self.timeout)
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
        elif code == IO_ERROR or "AccessDenied" in message or "Permission denied" in message:
            advice = (f"{message or 'I/O error'}: the CLI must run as the keystore's owner"
                      f"{f' ({self.owner})' if self.owner else ''}; check service_user and config_dir")
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

