"""What preflight found: one `Finding` per check (a blocking one says what to do), what SSH showed
of each node (`NodeCheck`), where and how the alias is defined (`AliasDefinition`), and the
`PreflightReport` that holds them, shows them as a table and stops the run on a blocking one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from esremote.cluster.facts import ClusterFacts
from esremote.errors import PreconditionError
from esremote.inventory import ResolvedNode

Status = Literal["ok", "warn", "block"]


@dataclass(frozen=True)
class Finding:
    check: str
    where: str
    status: Status
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.check}: {self.detail}" + (f"; {self.fix}" if self.fix else "")


@dataclass
class NodeCheck:
    """What SSH showed of one node; None where the check could not run."""

    node: ResolvedNode
    reachable: bool = False
    sudo: bool | None = None
    es_home: bool | None = None
    config: bool | None = None
    keystore: bool | None = None
    keystore_protected: bool | None = None
    yml: dict[str, Any] | None = None       # the node's elasticsearch.yml, flat
    port_free: bool | None = None            # remote nodes: remote_cluster_port


@dataclass(frozen=True)
class AliasDefinition:
    """Where and how the alias is defined on the local cluster."""

    alias: str
    local: str
    remote: str
    persistent: Mapping[str, Any] = field(default_factory=dict)   # keyed by the part after the alias
    transient: Mapping[str, Any] = field(default_factory=dict)
    yml: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # node name -> its yml settings
    remote_info: Mapping[str, Any] | None = None                   # the alias's `_remote/info` entry

    @property
    def sources(self) -> list[str]:
        found = [name for name in ("persistent", "transient") if getattr(self, name)]
        return found + (["elasticsearch.yml"] if any(self.yml.values()) else [])

    @property
    def yml_agree(self) -> bool:
        """Every local node's file says the same about the alias (all of them, or none)."""
        return len({_frozen(v) for v in self.yml.values()}) <= 1

    @property
    def effective(self) -> dict[str, Any]:
        """What Elasticsearch applies: yml < persistent < transient."""
        first_yml = next((dict(v) for v in self.yml.values() if v), {})
        return {**first_yml, **self.persistent, **self.transient}

    @property
    def mode(self) -> str:
        return str(self.effective.get("mode", "sniff")).lower()

    @property
    def seeds(self) -> list[str]:
        value = self.effective.get("seeds") or []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    @property
    def proxy_address(self) -> str | None:
        return self.effective.get("proxy_address") or None

    @property
    def skip_unavailable(self) -> Any:
        return self.effective.get("skip_unavailable")

    @property
    def other_options(self) -> dict[str, Any]:
        known = {"mode", "seeds", "proxy_address", "skip_unavailable"}
        return {k: v for k, v in self.effective.items() if k not in known}

    @property
    def uses_api_key(self) -> bool:
        return bool(self.remote_info) and "cluster_credentials" in self.remote_info

    @property
    def connected(self) -> bool:
        return bool(self.remote_info) and bool(self.remote_info.get("connected"))


@dataclass
class PreflightReport:
    alias: str
    findings: list[Finding] = field(default_factory=list)
    clusters: dict[str, ClusterFacts] = field(default_factory=dict)
    nodes: dict[str, NodeCheck] = field(default_factory=dict)   # "cluster/node" -> check
    definition: AliasDefinition | None = None
    usage: Any = None
    certificate_model: Any = None   # 9.x local cluster: deprecations.CertificateModelAliases
    # Checks that failed on a transient error (a 429/503 burst, a node restarting): the report is
    # not to be trusted, and asking again may give a true one (`raise_if_blocked` says so).
    retryable: list[str] = field(default_factory=list)

    def add(self, check: str, where: str, status: Status, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, where, status, detail, fix))

    def failed_check(self, exc: BaseException, check: str, where: str) -> None:
        if getattr(exc, "transient", False):
            self.retryable.append(f"{where}: {check}: {exc}")

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "block"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "warn"]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def find(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def raise_if_blocked(self) -> PreflightReport:
        """PreconditionError listing the blocking findings; a transient one (retrying may help) when a
        check failed on a transient error, so that the preflight task is retried (429/503 bursts)."""
        if self.retryable:
            lines = "\n".join(f"- {f}" for f in self.blocking) or "\n".join(f"- {r}" for r in self.retryable)
            raise PreconditionError(f"preflight for alias {self.alias}: {len(self.retryable)} check(s) failed on a "
                                    f"transient error (retrying may help):\n{lines}", transient=True)
        if self.blocking:
            lines = "\n".join(f"- {f}" for f in self.blocking)
            raise PreconditionError(f"preflight for alias {self.alias} found {len(self.blocking)} blocking "
                                    f"problem(s):\n{lines}")
        return self

    def table(self):
        """A rich Table: one row per finding, blocking ones first."""
        from rich.table import Table  # noqa: PLC0415 - only for display
        from rich.text import Text  # noqa: PLC0415

        table = Table(title=f"preflight: alias {self.alias}", show_lines=False)
        for column in ("status", "check", "where", "detail", "what to do"):
            table.add_column(column, overflow="fold")
        style = {"block": "bold red", "warn": "yellow", "ok": "green"}
        order = {"block": 0, "warn": 1, "ok": 2}
        for f in sorted(self.findings, key=lambda f: order[f.status]):
            # Text, not markup: details quote Elasticsearch messages full of [brackets].
            table.add_row(Text(f.status, style=style[f.status]), Text(f.check), Text(f.where), Text(f.detail),
                          Text(f.fix))
        return table

    def to_dict(self) -> dict[str, Any]:
        d = self.definition
        return {
            "alias": self.alias, "ok": self.ok,
            "findings": [f.__dict__ for f in self.findings],
            "versions": {c: {n.name: n.version_text for n in f.nodes} for c, f in self.clusters.items()},
            "definition": None if d is None else {
                "sources": d.sources, "mode": d.mode, "seeds": d.seeds, "proxy_address": d.proxy_address,
                "skip_unavailable": d.skip_unavailable, "other_options": d.other_options,
                "yml_agree": d.yml_agree, "uses_api_key": d.uses_api_key, "connected": d.connected},
            "certificate_model": None if self.certificate_model is None else self.certificate_model.to_dict(),
        }


def _frozen(settings: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in settings.items()))
