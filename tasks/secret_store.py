"""Where the cross-cluster API key is kept between phases (and after the orchestrator restarts):
a Prefect Secret block when a Prefect API server is configured, else a 0600 file in the run's
directory. The journal records which, never the value.

Block names: `esremote-<local cluster>-<alias>-cross-cluster-key` (lowercase, dashes): the key the
alias uses. A rotation also keeps the key being replaced (slot `previous`, for putting it back) and
the new one until it is committed (slot `next`), as `...-cross-cluster-key-<slot>` blocks and
`<alias>.cross-cluster-key.<slot>` files.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from esremote.files import atomic_write
from esremote.redact import default_redactor
from esremote.secrets import SecretRef, SecretError
from esremote.tasks.runtime import Run, prefect_api_configured


def block_name(local: str, alias: str, slot: str = "") -> str:
    name = f"esremote-{local}-{alias}-cross-cluster-key" + (f"-{slot}" if slot else "")
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def key_file(run: Run, alias: str, slot: str = "") -> Path:
    return run.secrets_dir() / (f"{alias}.cross-cluster-key" + (f".{slot}" if slot else ""))


def store_key(run: Run, alias: str, key_id: str, encoded: SecretStr, slot: str = "",
              local: str | None = None) -> dict[str, str]:
    """Keep the encoded key; returns the journal's record of where (no value). `local`: the local
    cluster of an alias the inventory does not list (a split's search alias)."""
    value = encoded.get_secret_value()
    default_redactor.add(value, with_encodings=False)
    local = local or run.link(alias).local
    # The file is always written: the keystore step reads the value from it (stdin, never argv).
    atomic_write(key_file(run, alias, slot), value.encode(), mode=0o600)
    if prefect_api_configured():
        from prefect.blocks.system import Secret  # noqa: PLC0415

        name = block_name(local, alias, slot)
        Secret(value=value).save(name, overwrite=True)
        return {"kind": "prefect", "block": name, "key_id": key_id, "path": str(key_file(run, alias, slot))}
    return {"kind": "file", "path": str(key_file(run, alias, slot)), "key_id": key_id}


def drop_block(record: dict[str, str] | None) -> None:
    """Delete a slot's Prefect Secret block once it is no longer needed (best effort)."""
    if not record or record.get("kind") != "prefect" or not prefect_api_configured():
        return
    try:
        from prefect.blocks.system import Secret  # noqa: PLC0415

        Secret.delete(record["block"])
    except Exception:  # noqa: BLE001 - a leftover block holds an invalidated or duplicate key
        pass


def load_key(run: Run, alias: str, record: dict[str, str] | None) -> SecretStr | None:
    """The stored encoded key, or None when it is not (or no longer) where the record says."""
    if record is None:
        return None
    path = Path(record.get("path") or key_file(run, alias))
    value = None
    if record.get("kind") == "prefect":
        try:
            value = SecretRef(prefect=record["block"]).resolve()
        except SecretError:
            value = None
    if value is None and (record.get("kind") != "prefect" or record.get("path")):
        value = SecretStr(path.read_text().strip()) if path.exists() else None
    if value is not None:
        default_redactor.add(value.get_secret_value(), with_encodings=False)
        if not path.exists() and path.parent == run.secrets_dir():
            atomic_write(path, value.get_secret_value().encode(), mode=0o600)
    return value


def key_file_of(run: Run, name: str, records: list[dict[str, str]], what: str) -> str:
    """The 0600 file with `name`'s encoded key, written back from its Prefect block when the file
    is gone (`records`: the journal's records of where the key was kept, newest last)."""
    from esremote.errors import ClusterError  # noqa: PLC0415

    path = key_file(run, name)
    if not path.exists() and (not records or load_key(run, name, records[-1]) is None):
        raise ClusterError(f"the cross-cluster API key of {what} is not stored where run {run.id} put it: run "
                           "the prepare_remote phase again (it recreates the key)")
    return str(path)
