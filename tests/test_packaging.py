"""What a fresh clone installs: exact pins for every dependency, and nothing but `esremote*` on the
import path (flows/ and tasks/ live at the top of the repo but install as esremote.flows/.tasks)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure() -> dict[str, str]:
    """esremote's installed dependencies, dev extra included, transitively: name -> version."""
    seen: dict[str, str] = {}
    todo = [("esremote", {"dev"})]
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras or {""}):
                continue
            key = _canonical(req.name)
            if key not in seen:
                seen[key] = metadata.version(req.name)
                todo.append((req.name, set(req.extras)))
    return seen


def test_every_installed_dependency_is_pinned_at_its_version():
    pins, installed = _pins(), _closure()
    assert len(installed) > 50
    unpinned = sorted(set(installed) - set(pins))
    assert unpinned == [], f"installed but not in constraints.txt: {unpinned}"
    drifted = {n: (v, pins[n]) for n, v in installed.items() if pins[n] != v}
    assert drifted == {}, f"installed version differs from its pin: {drifted}"


def test_project_requirements_are_all_pinned():
    pins = _pins()
    requires = metadata.requires("esremote") or []
    names = {_canonical(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in requires}
    assert names and names <= set(pins), sorted(names - set(pins))


def test_only_esremote_is_importable_from_outside_the_repo(tmp_path):
    probe = ("import importlib.util as u, esremote.flows.migrate, esremote.tasks.nodes; "
             "print([n for n in ('flows', 'tasks') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_license_is_an_spdx_expression():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "Apache-2.0"$', text, re.M)
    assert metadata.metadata("esremote")["License-Expression"] == "Apache-2.0"
