"""Artifacts (Markdown and tables in the Prefect UI), always scrubbed by the redactor first, and the
copies a run keeps in its journal directory (plan.md, summary.json) for the CLI and for resume."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from esremote.files import atomic_write
from esremote.redact import default_redactor


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def run_key(run, what: str) -> str:
    """A stable artifact key per kind of report and set of aliases (`plan-my-remote`), so the
    Prefect UI shows one version history per migration, run after run."""
    return artifact_key(what, *run.aliases)


def markdown(key: str, text: str, description: str | None = None) -> None:
    from prefect.artifacts import create_markdown_artifact  # noqa: PLC0415

    create_markdown_artifact(markdown=default_redactor.redact(text), key=artifact_key(key),
                             description=description)


def table(key: str, rows: list[dict[str, Any]], description: str | None = None) -> None:
    from prefect.artifacts import create_table_artifact  # noqa: PLC0415

    clean = [{k: default_redactor.redact(str(v)) for k, v in row.items()} for row in rows]
    create_table_artifact(table=clean, key=artifact_key(key), description=description)


def save(run_dir: Path, name: str, content: str | dict | list) -> Path:
    """Keep a report in the run's directory (0600), scrubbed like the artifacts."""
    text = content if isinstance(content, str) else json.dumps(content, indent=2, sort_keys=True, default=str)
    path = run_dir / name
    atomic_write(path, default_redactor.redact(text).encode(), mode=0o600)
    return path


def load(run_dir: Path, name: str) -> Any:
    path = run_dir / name
    return json.loads(path.read_text()) if path.exists() else None


def phase_report(phase: str, lines: list[str], outcomes: list[dict[str, Any]] | None = None) -> str:
    out = [f"# {phase}", ""] + [f"- {line}" for line in lines]
    if outcomes:
        out += ["", "| target | step | result |", "|---|---|---|"]
        out += [f"| {o.get('target', '')} | {o.get('step', '')} | {o.get('result', '')} |" for o in outcomes]
    return "\n".join(out) + "\n"
