"""Node access over SSH (paramiko): connections, strict host keys, sudo, atomic file edits.

    target = SSHTarget(host="es-1.example.com", user="esadmin", key_file="~/.ssh/id_ed25519")
    with SSHPool() as pool:
        node = pool.get(target)                     # lazy: connects on first use, then reused
        node.run("systemctl is-active elasticsearch", sudo=True)
        node.write_file("/etc/elasticsearch/elasticsearch.yml", data, run_id=run_id, sudo=True)

Running a step on many nodes at once is `esremote.fanout`.

The package: `target` (where a node is, host keys), `connection` (commands, sudo, the pool),
`files` (backups, atomic writes, owners and modes), `results`.

Rules kept here:
- Host keys are checked strictly against known_hosts; trust-on-first-use only when asked for.
- paramiko and socket errors are mapped to esremote's errors in one place (`connect_errors`,
  `_session_errors`): `ConnectError` (transient), `AuthenticationError`, `HostKeyError`.
- Secrets never go into a command line: they travel on stdin (the sudo password too).
- Files are backed up (`NAME.esremote-<run id>.bak`, `cp -p`: the original's owner, group and
  mode), written to a 0600 temp file in the same directory, fsynced, renamed over the original
  with its mode, owner and group, and read back.
- A new file or directory can take its parent directory's owner and group (`inherit_owner`,
  `ensure_dir`): on a deb/rpm node that is `root:elasticsearch`, the group Elasticsearch reads
  through (es-facts §12).
"""

from esremote.ssh.connection import SSHConnection, SSHPool
from esremote.ssh.results import CommandResult, CommandTimeoutError, FileStat, WriteResult
from esremote.ssh.target import SSHTarget, host_key_fingerprint

__all__ = [
    "SSHTarget", "SSHConnection", "SSHPool", "CommandResult", "FileStat", "WriteResult",
    "CommandTimeoutError", "host_key_fingerprint",
]
