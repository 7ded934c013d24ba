"""The parameters of a migration run: one pydantic model, the same for the CLI, the Prefect UI's run
form and deployments.

Secrets never travel as parameters (Prefect stores deployment and run parameters in plain text):
the inventory names where each secret lives, and the run resolves it by name.

    params = MigrationParams(inventory="inventory.yml", aliases=["my_remote"], dry_run=True)
    params.selected_aliases(inventory)   # the aliases this run migrates, checked against the inventory

`RotationParams` (flow `rotate-cross-cluster-key`) and `KeyExpiryParams` (flow `check-key-expiry`)
are the parameters of the flows that live with the keys after the migration.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from esremote.durations import duration_ms
from esremote.errors import ConfigError
from esremote.secrets import SecretRef

ConnectionMode = Literal["keep", "proxy", "sniff"]
RestartStrategy = Literal["auto", "reload", "restart"]
CertificateStrategy = Literal["generate", "provided-ca"]
KeyAccessMode = Literal["role-copy", "from-usage"]


class RetireOptions(BaseModel):
    """What `retire_certificate_trust` may do once approved (each one is irreversible)."""

    model_config = ConfigDict(extra="forbid")

    transport_ip_filter: bool = Field(
        False, description="Allow only the remote's own nodes on its transport port (9300), so the "
                           "local cluster can no longer connect with certificates.")
    ca_rotation_plan: bool = Field(
        True, description="Write a plan for rotating the remote's transport CA (no change is made).")
    delete_cross_cluster_roles: bool = Field(
        False, description="Delete remote roles that served only cross-cluster access.")


class MigrationParams(BaseModel):
    """Parameters of `migrate-remote-cluster` (and of each phase flow)."""

    model_config = ConfigDict(extra="forbid")

    inventory: Path = Field(description="Inventory file (clusters, nodes, SSH, secret references).")
    aliases: list[str] = Field(default_factory=list,
                               description="Aliases to migrate; empty means every alias of the inventory.")
    connection_mode: ConnectionMode = Field(
        "keep", description="Mode of the re-added alias: keep its current mode, or switch to proxy/sniff.")
    restart_strategy: RestartStrategy = Field(
        "auto", description="How the local nodes load the new credentials: auto (reload secure settings "
                            "when every local node runs 8.13+, else a rolling restart), reload, restart.")
    certificate_strategy: CertificateStrategy = Field(
        "generate", description="generate: a new CA per remote cluster for its remote cluster server; "
                                "provided-ca: sign node certificates with the CA in ca_cert_file/ca_key_file.")
    ca_cert_file: Path | None = Field(None, description="PEM CA certificate (provided-ca).")
    ca_key_file: Path | None = Field(None, description="PEM CA private key file (provided-ca); a path, "
                                                       "never the key itself.")
    ca_passphrase: SecretRef | None = Field(
        None, description="Where the passphrase of the CA private key lives: a secret reference {env: NAME}, "
                          "{file: PATH} or {prefect: BLOCK}, never the passphrase itself. It opens an encrypted "
                          "ca_key_file (provided-ca); with generate, the run keeps its new CA's key encrypted with it. "
                          "Without it, a generated CA's key is deleted once the node certificates are signed.")
    retire_trust: bool = Field(False, description="After a verified migration, ask for approval to "
                                                  "retire certificate trust (irreversible).")
    retire: RetireOptions = Field(
        default_factory=RetireOptions,
        description="What the retirement may do; the approval form offers the same choices again.")
    approval_timeout_s: int = Field(
        3600, ge=1, description="Seconds the approval gate waits for an answer in the Prefect UI; no answer "
                                "in time counts as a refusal (the migration stays done, nothing is retired).")
    window_end: datetime | None = Field(
        None, description="End of the maintenance window (ISO 8601 with its time zone, e.g. "
                          "2026-12-12T06:00:00+01:00; without one it is UTC). Before each disruptive phase the "
                          "run checks that the rest of the plan fits in the time left, and otherwise stops "
                          "before disrupting anything. Never checked once cross-cluster work is stopped.")
    window_minutes: int | None = Field(
        None, ge=1, le=10080, description="Length of the maintenance window in minutes, from the run's "
                                          "scheduled start (a scheduled deployment's slot, else when the run "
                                          "was created); instead of window_end.")
    no_wait: bool = Field(
        False, description="When another run is migrating the same cluster pair, end at once naming that run "
                           "instead of waiting for it to finish.")
    dry_run: bool = Field(False, description="Plan only: gather facts, publish the plan, change nothing.")
    max_parallel: int = Field(4, ge=1, le=64, description="Nodes handled at once by non-disruptive steps.")
    node_timeout_s: float = Field(180.0, gt=0, description="How long a restarted node may take: its restart command "
                                                     "(systemctl waits for the start), then rejoining the cluster, each.")
    link_timeout_s: float = Field(60.0, gt=0, description="How long a re-added alias may take to connect.")
    key_expiration: str | None = Field(
        None, description="Expiration of a cross-cluster API key created by this run, an Elasticsearch "
                          "duration such as 90d (default: never expires). Rotate before it: "
                          "rotate-cross-cluster-key; check-key-expiry warns.")
    access: KeyAccessMode = Field(
        "role-copy", description="The cross-cluster API key's access. role-copy: everything the remote roles "
                                 "of the cross-cluster users grant. from-usage: only what the alias's work "
                                 "(transforms, datafeeds, followers, auto-follow patterns) and the local roles' "
                                 "remote_indices read, cut from that copy; the plan shows the difference and "
                                 "what would stop working.")
    strong_identity: bool = Field(
        False, description="Strong identity verification (technical preview, Elasticsearch 9.3+ on both "
                           "clusters): each local cluster signs its cross-cluster requests with a signing "
                           "certificate per alias (signed by the remote cluster's CA), and the cross-cluster "
                           "API key takes only requests signed with that certificate's DN.")
    split_search_alias: dict[str, str] = Field(
        default_factory=dict,
        description="Consent, per alias, to split a key access that Elasticsearch refuses as one key (DLS/FLS "
                    "search together with replication): ALIAS -> NAME. ALIAS keeps the replication (followers "
                    "and auto-follow patterns stay on it); the new alias NAME, on the API-key model, gets a "
                    "second key with the search access, and the transforms, datafeeds and local roles that "
                    "search through ALIAS move to NAME. Users' own searches ALIAS:index must become "
                    "NAME:index.")
    run_id: str | None = Field(None, description="Resume this run (its journal decides what is done).")
    state_dir: Path | None = Field(None, description="Where journals live (default: ESREMOTE_STATE_DIR, "
                                                     "else ~/.local/state/esremote).")

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, aliases: list[str]) -> list[str]:
        return _distinct_aliases(aliases)

    @field_validator("key_expiration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _key_expiration(value)

    @field_validator("split_search_alias")
    @classmethod
    def _split_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_split_search_alias(value)

    @model_validator(mode="after")
    def _one_window(self) -> MigrationParams:
        if self.window_end is not None and self.window_minutes is not None:
            raise ValueError("give the maintenance window as window_end or as window_minutes, not both")
        return self

    @model_validator(mode="after")
    def _split_alone(self) -> MigrationParams:
        if self.split_search_alias and self.strong_identity:
            raise ValueError("split_search_alias cannot be combined with strong_identity (the new search alias "
                             "would need a signing certificate of its own)")
        return self

    @model_validator(mode="after")
    def _ca_files(self) -> MigrationParams:
        given = self.ca_cert_file is not None and self.ca_key_file is not None
        if self.certificate_strategy == "provided-ca" and not given:
            raise ValueError("certificate_strategy provided-ca needs ca_cert_file and ca_key_file")
        if self.certificate_strategy == "generate" and (self.ca_cert_file or self.ca_key_file):
            raise ValueError("ca_cert_file/ca_key_file are only used with certificate_strategy provided-ca")
        return self

    def selected_aliases(self, inventory) -> list[str]:
        """The aliases of this run, in inventory order; an alias the inventory lacks is a ConfigError."""
        known = list(inventory.aliases)
        if not known:
            raise ConfigError(f"{self.inventory}: the inventory has no `aliases:`; add the alias to migrate "
                              "(e.g. `my_remote: {local: local, remote: remote}`)")
        missing = [a for a in self.aliases if a not in known]
        if missing:
            raise ConfigError(f"alias {', '.join(missing)} is not in {self.inventory}; "
                              f"the inventory has: {', '.join(known)}")
        chosen = [a for a in known if not self.aliases or a in self.aliases]
        for alias, name in self.split_search_alias.items():
            if alias not in chosen:
                raise ConfigError(f"split_search_alias: {alias!r} is not an alias this run migrates "
                                  f"({', '.join(chosen)})")
            if name in known:
                raise ConfigError(f"split_search_alias: {name!r} is already an alias of {self.inventory}; "
                                  "name a new alias")
        return chosen

    def public(self) -> dict:
        """What the journal and artifacts record (there is no secret in the parameters)."""
        return self.model_dump(mode="json")


class FleetParams(BaseModel):
    """Parameters of `migrate-fleet`: one migration run per cluster pair of the inventories (a
    deployment run of `deployment` each), at most `max_running` at once."""

    model_config = ConfigDict(extra="forbid")

    inventories: list[Path] = Field(
        min_length=1, description="Inventory files; each pair of clusters linked by an alias (local, remote) "
                                  "is one migration, with every alias of that pair.")
    max_running: int = Field(2, ge=1, le=64, description="Migrations running at once, over the whole fleet.")
    deployment: str = Field("migrate-remote-cluster/manual",
                            description="The deployment each pair's migration runs as (flow/deployment).")
    dry_run: bool = Field(False, description="Plan only: every pair gathers facts and publishes its plan.")
    connection_mode: ConnectionMode = Field("keep", description="Mode of each re-added alias (see the migration).")
    restart_strategy: RestartStrategy = Field("auto", description="How local nodes load the new credentials: "
                                                                  "auto, reload, restart.")
    window_end: datetime | None = Field(
        None, description="End of the maintenance window for every pair (ISO 8601 with its time zone).")
    window_minutes: int | None = Field(
        None, ge=1, le=10080, description="Window length in minutes from the fleet run's scheduled start; every "
                                          "pair gets the same end (instead of window_end).")
    no_wait: bool = Field(False, description="A pair that another run is migrating ends at once instead of waiting.")
    state_dir: Path | None = Field(None, description="Where each migration keeps its journal, on the worker "
                                                     "that runs it (default: ESREMOTE_STATE_DIR there).")

    @model_validator(mode="after")
    def _one_window(self) -> FleetParams:
        if self.window_end is not None and self.window_minutes is not None:
            raise ValueError("give the maintenance window as window_end or as window_minutes, not both")
        return self


def _distinct_aliases(aliases: list[str]) -> list[str]:
    if len(set(aliases)) != len(aliases):
        raise ValueError("an alias is listed twice; list each alias once")
    return aliases


# What Elasticsearch accepts as a cluster alias in `cluster.remote.<alias>.*` and `<alias>:<index>`:
# no `:` (it separates the index), no wildcard, no setting separator, no whitespace.
_ALIAS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_split_search_alias(value: dict[str, str]) -> dict[str, str]:
    """ALIAS -> NAME pairs: NAME a plain alias name, other than ALIAS, used once."""
    for alias, name in value.items():
        if not _ALIAS_NAME.fullmatch(name or ""):
            raise ValueError(f"{alias!r}: the new alias name {name!r} may hold only letters, digits, _ and - "
                             "(not starting with -)")
        if name == alias:
            raise ValueError(f"{alias!r}: the search alias must be a new name, not the alias itself")
    names = list(value.values())
    if len(set(names)) != len(names) or set(names) & set(value):
        raise ValueError("each alias gets its own new search alias, and none is one of the split aliases")
    return value


def _key_expiration(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        duration_ms(value, "key_expiration")
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("key_expiration: ")) from None
    return value.strip()


class RotationParams(BaseModel):
    """Parameters of `rotate-cross-cluster-key`: a new key with the same access for each alias,
    loaded by every local node without a restart (8.13+), verified, then the old key invalidated."""

    model_config = ConfigDict(extra="forbid")

    inventory: Path = Field(description="Inventory file (clusters, nodes, aliases).")
    aliases: list[str] = Field(default_factory=list,
                               description="Aliases whose key to rotate; empty means every alias of the inventory.")
    key_expiration: str | None = Field(
        None, description="Expiration of the new key, an Elasticsearch duration such as 90d (default: the "
                          "lifetime the old key was created with; never when it had none).")
    max_parallel: int = Field(4, ge=1, le=64, description="Nodes whose keystore is written at once.")
    link_timeout_s: float = Field(60.0, gt=0, description="How long verification waits for each node's link.")
    run_id: str | None = Field(None, description="Resume this rotation run (its journal decides what is done).")
    state_dir: Path | None = Field(None, description="Where journals live (default: ESREMOTE_STATE_DIR, "
                                                     "else ~/.local/state/esremote).")

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, aliases: list[str]) -> list[str]:
        return _distinct_aliases(aliases)

    @field_validator("key_expiration")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        return _key_expiration(value)

    def migration_params(self) -> MigrationParams:
        """What a run's shared machinery (inventory, journal, SSH, clients) is opened with."""
        return MigrationParams(inventory=self.inventory, aliases=list(self.aliases), restart_strategy="reload",
                               key_expiration=self.key_expiration, max_parallel=self.max_parallel,
                               link_timeout_s=self.link_timeout_s, run_id=self.run_id, state_dir=self.state_dir)

    def public(self) -> dict:
        return self.model_dump(mode="json")


class KeyExpiryParams(BaseModel):
    """Parameters of `check-key-expiry`: warn before a key that an alias uses expires."""

    model_config = ConfigDict(extra="forbid")

    inventory: Path = Field(description="Inventory file (clusters, nodes, aliases).")
    aliases: list[str] = Field(default_factory=list,
                               description="Aliases to check; empty means every alias of the inventory.")
    warn_days: int = Field(14, ge=0, le=3650, description="Fail (and warn) when a key an alias uses expires "
                                                         "within this many days.")
    state_dir: Path | None = Field(None, description="Where journals of earlier runs live (used when a "
                                                     "node's keystore cannot be read).")

    @field_validator("aliases")
    @classmethod
    def _distinct(cls, aliases: list[str]) -> list[str]:
        return _distinct_aliases(aliases)
