"""Where the cross-cluster API key is kept between phases (and after the orchestrator restarts):
a Prefect Secret block when a Prefect API server is configured, else a 0600 file in the run's
directory. The journal records which, never the value.

Block names: `esremote-<local cluster>-<alias>-cross-cluster-key` (lowercase, dashes).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from esremote.files import atomic_write
from esremote.redact import default_redactor
from esremote.secrets import SecretRef, SecretError
from esremote.tasks.runtime import Run, prefect_api_configured


def block_name(local: str, alias: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"esremote-{local}-{alias}-cross-cluster-key".lower()).strip("-")


def key_file(run: Run, alias: str) -> Path:
    return run.secrets_dir() / f"{alias}.cross-cluster-key"


def store_key(run: Run, alias: str, key_id: str, encoded: SecretStr) -> dict[str, str]:
    """Keep the encoded key; returns the journal's record of where (no value)."""
    value = encoded.get_secret_value()
    default_redactor.add(value, with_encodings=False)
    local = run.link(alias).local
    # The file is always written: the keystore step reads the value from it (stdin, never argv).
    atomic_write(key_file(run, alias), value.encode(), mode=0o600)
    if prefect_api_configured():
        from prefect.blocks.system import Secret  # noqa: PLC0415

        name = block_name(local, alias)
        Secret(value=value).save(name, overwrite=True)
        return {"kind": "prefect", "block": name, "key_id": key_id}
    return {"kind": "file", "path": str(key_file(run, alias)), "key_id": key_id}


def load_key(run: Run, alias: str, record: dict[str, str] | None) -> SecretStr | None:
    """The stored encoded key, or None when it is not (or no longer) where the record says."""
    if record is None:
        return None
    try:
        if record.get("kind") == "prefect":
            value = SecretRef(prefect=record["block"]).resolve()
        else:
            path = Path(record.get("path") or key_file(run, alias))
            value = SecretStr(path.read_text().strip()) if path.exists() else None
    except SecretError:
        return None
    if value is not None:
        default_redactor.add(value.get_secret_value(), with_encodings=False)
        if not key_file(run, alias).exists():
            atomic_write(key_file(run, alias), value.get_secret_value().encode(), mode=0o600)
    return value
