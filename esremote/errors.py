"""esremote's exceptions: one root, branches that match what the operator or the retry logic does.

    EsRemoteError                 every error esremote raises on purpose; `transient` says "retry me"
    ├── ConfigError               bad input (inventory, parameters, a node's file): fix it, nothing changed
    │   ├── InventoryError        the inventory file (carries file, line, field)
    │   └── YmlError              an elasticsearch.yml that cannot be read or edited safely
    ├── KeystoreError             an Elasticsearch keystore that cannot be read, opened or written
    ├── CertificateError          CA / node certificate / PKCS#12 problems
    ├── PreconditionError         versions, licence, security, health: preflight stops the run
    ├── SSHError                  node access failed
    │   ├── ConnectError          could not connect (transient: timeout, refused, reset)
    │   ├── HostKeyError          unknown or changed host key (never retried)
    │   ├── AuthenticationError   key/agent/password refused (never retried)
    │   ├── SudoError             sudo refused or needs a password we do not have
    │   └── RemoteCommandError    a command ran and failed (host, redacted command, exit code, stderr tail)
    ├── ClusterError              the REST side
    │   └── ClusterHTTPError      Elasticsearch answered 4xx/5xx (status, error type, reason)
    └── RollbackError             a rollback could not restore everything (lists the steps that failed)

Misuse of the library stays a builtin (TypeError, ValueError, RuntimeError). Messages say what
happened, where, and what to do; they never contain a secret.
"""

from __future__ import annotations


class EsRemoteError(Exception):
    """Root of esremote's errors. `transient` errors are worth retrying; others fail fast."""

    transient: bool = False
    exit_code: int = 1

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return self.message


class ConfigError(EsRemoteError):
    """Input that esremote refuses: it names the file/field/line and what to do."""

    exit_code = 2


class InventoryError(ConfigError):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if field:
            where += f"{field}: "
        super().__init__(where + message)
        self.file, self.line, self.field = file, line, field


class YmlError(ConfigError):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = f"{file or 'elasticsearch.yml'}" + (f":{line}" if line else "")
        super().__init__(f"{where}: {message}")
        self.file, self.line = file, line


class KeystoreError(EsRemoteError):
    exit_code = 2


class CertificateError(EsRemoteError):
    exit_code = 2


class PreconditionError(EsRemoteError):
    exit_code = 2


class SSHError(EsRemoteError):
    def __init__(self, message: str, *, host: str | None = None, transient: bool | None = None) -> None:
        super().__init__(f"{host}: {message}" if host else message, transient=transient)
        self.host = host


class ConnectError(SSHError):
    transient = True


class HostKeyError(SSHError):
    transient = False


class AuthenticationError(SSHError):
    transient = False


class SudoError(SSHError):
    transient = False


class RemoteCommandError(SSHError):
    def __init__(self, *, host: str, command: str, exit_code: int, stderr: str = "",
                 stdout: str = "") -> None:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        msg = f"command `{command}` exited {exit_code}"
        if tail:
            msg += f": {tail}"
        super().__init__(msg, host=host)
        self.command, self.exit_status, self.stderr, self.stdout = command, exit_code, stderr, stdout


class ClusterError(EsRemoteError):
    def __init__(self, message: str, *, cluster: str | None = None, transient: bool | None = None) -> None:
        super().__init__(f"cluster {cluster}: {message}" if cluster else message, transient=transient)
        self.cluster = cluster


TRANSIENT_HTTP_STATUS = frozenset({429, 502, 503, 504})


class ClusterHTTPError(ClusterError):
    def __init__(self, *, status: int, error_type: str | None, reason: str, cluster: str | None = None,
                 method: str = "", path: str = "") -> None:
        what = f"{method} {path} -> " if method else ""
        super().__init__(f"{what}HTTP {status} {error_type or ''}: {reason}".replace("  ", " "),
                         cluster=cluster, transient=status in TRANSIENT_HTTP_STATUS)
        self.status, self.error_type, self.reason = status, error_type, reason


class RollbackError(EsRemoteError):
    def __init__(self, failed_steps: list[str]) -> None:
        super().__init__("rollback could not restore: " + "; ".join(failed_steps))
        self.failed_steps = failed_steps


def is_transient(exc: BaseException) -> bool:
    """True when retrying may help: our transient errors, plus socket-level timeouts and resets."""
    if isinstance(exc, EsRemoteError):
        return exc.transient
    return isinstance(exc, (TimeoutError, ConnectionResetError, ConnectionRefusedError, BrokenPipeError))


class GroupError(EsRemoteError):
    """Some hosts of a fan-out failed. Carries every host's result, successes included."""

    def __init__(self, results) -> None:  # results: a GroupResult (see fanout.py)
        failed = results.failed
        names = ", ".join(sorted(str(h) for h in failed))
        first = next(iter(failed.values()), None)
        super().__init__(f"{len(failed)} of {len(results)} hosts failed ({names})"
                         + (f"; first: {first}" if first is not None else ""),
                         transient=all(is_transient(e) for e in failed.values()) if failed else False)
        self.results = results
