"""The plan as a person reads it: the Markdown of `esremote plan`, of the run's `plan.md` and of the
Prefect plan artifact (outage, from-usage key access, the consented split, then every phase's
changes with their diffs and request bodies). `Plan.to_markdown` calls `plan_markdown`; the JSON
form is `Plan.to_dict` and the table artifact `Plan.rows`.
"""

from __future__ import annotations

import json
from typing import Any

from esremote.plan import PHASES, Plan


def plan_markdown(plan: Plan) -> str:
    lines = [f"# Migration plan: {', '.join(plan.aliases)}", ""]
    lines += [f"- {note}" for note in plan.notes]
    lines += ["", "## Expected outage", "",
              f"- Cross-cluster work paused: {', '.join(plan.outage.work_stopped) or 'none'}",
              f"- Credentials loaded by: {plan.outage.credentials}",
              f"- Restarts while paused: {', '.join(plan.outage.restarts_in_window) or 'none'}",
              f"- Estimate: {plan.outage.estimate}", ""]
    for alias, review in plan.access.items():
        lines += access_markdown(alias, review)
    for alias, split in plan.split.items():
        lines += split_markdown(alias, split)
    for phase in PHASES:
        changes = plan.for_phase(phase)
        lines += [f"## {phase}", ""]
        if not changes:
            lines += ["Nothing to do.", ""]
            continue
        lines += ["| target | kind | change |", "|---|---|---|"]
        lines += [f"| {c.target} | {c.kind} | {_cell(c.summary)}{' **(disruptive)**' if c.disruptive else ''} |"
                  for c in changes]
        details = [c for c in changes if c.detail]
        for c in details:
            lang = "diff" if c.kind == "yml" else ("json" if c.kind == "api" else "")
            lines += ["", f"**{c.target}: {c.summary}**", "", f"```{lang}", c.detail.rstrip("\n"), "```"]
        lines.append("")
    return "\n".join(lines)


def access_markdown(alias: str, review: dict[str, Any]) -> list[str]:
    """The from-usage key access of one alias: its diff against the role copy, what each entry
    serves, and what the role copy allows that this key would stop."""
    lines = [f"## Key access of `{alias}`: from usage", "",
             "Narrower than the copy of the remote roles." if review.get("narrower")
             else "The same as the copy of the remote roles: everything it grants is used.", ""]
    if review.get("diff"):
        lines += ["```diff", review["diff"].rstrip("\n"), "```", ""]
    sections = (("What each entry serves", "serves"),
                ("What would stop working (the role copy allows it, this key does not)", "lost"),
                ("Used but granted by neither access", "ungranted"))
    for title, key in sections:
        if review.get(key):
            lines += [f"**{title}**", ""] + [f"- {line}" for line in review[key]] + [""]
    return lines


def split_markdown(alias: str, split: dict[str, Any]) -> list[str]:
    """The consented split of one alias: both keys, the new alias, what moves, what users change."""
    name = split["alias"]
    lines = [f"## Split of `{alias}`: searches move to the new alias `{name}`", "",
             f"Elasticsearch refuses one key with DLS/FLS search and replication (`search does not support "
             f"document or field level security if replication is assigned`); with your consent "
             f"(`--split-search-alias {alias}={name}`) the run makes two keys on two aliases to {split['remote']}.", "",
             f"- `{alias}` keeps the replication (followers and auto-follow patterns stay on it). Its key:",
             "", "```json", json.dumps(split["replication_access"], indent=2, sort_keys=True), "```", "",
             f"- `{name}` is a new alias, defined in the persistent cluster settings on the API-key model "
             f"({_settings_text(split['settings'])}). Its key (the search, with its DLS/FLS):",
             "", "```json", json.dumps(split["search_access"], indent=2, sort_keys=True), "```", ""]
    moved = split.get("moves") or []
    lines += ["**Moved to `" + name + "` during the outage**", ""]
    lines += [f"- {m}" for m in moved] or ["- no transform or datafeed searches through the alias"]
    lines += [f"- local role {r}: its remote_indices entries for `{alias}` that grant search also list `{name}`"
              for r in split.get("roles") or []]
    lines += ["", f"**What you must change yourself:** every search that names `{alias}:<index>` (users, "
              f"dashboards, scripts, saved queries) must name `{name}:<index>` from now on: through `{alias}` "
              "only replication is allowed, and such a search is refused by the remote cluster "
              "(403). Rollback puts every moved source, role and the alias back, and invalidates both keys.", ""]
    return lines


def _settings_text(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(settings.items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
