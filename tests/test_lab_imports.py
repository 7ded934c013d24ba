"""The lab reads what esremote writes with readers of its own (like moto, which never imports boto):
no module under esremote.lab may reach esremote.esyml, esremote.keystore or esremote.pki, directly,
through another esremote module, or lazily inside a function."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import esremote

FORBIDDEN = ("esremote.esyml", "esremote.keystore", "esremote.pki")
ROOT = Path(esremote.__file__).parent.parent


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _lab_modules() -> list[str]:
    lab = ROOT / "esremote" / "lab"
    names = []
    for path in sorted(lab.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] != "__main__":  # runs a program when imported
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _imports(name: str) -> set[str]:
    """esremote modules `name` imports anywhere in its code (function bodies included)."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "esremote" and _module_file(m) is not None}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_no_lab_module_reaches_esremotes_writers_in_its_source():
    """The whole import graph from every lab module, lazy imports included (a breadth-first walk;
    importing a module also runs its packages' __init__)."""
    reached_from: dict[str, str] = {}
    queue = _lab_modules()
    seen = set(queue)
    for name in queue:
        for target in _imports(name) | set(_parents(name)):
            if target not in seen:
                seen.add(target)
                reached_from[target] = name
                queue.append(target)
    bad = {}
    for module in FORBIDDEN:
        if module in seen:
            chain, step = [module], module
            while step in reached_from:
                step = reached_from[step]
                chain.append(step)
            bad[module] = " <- ".join(chain)
    assert not bad, bad


def test_importing_every_lab_module_loads_none_of_them():
    """What actually happens at import time, dynamic imports included, in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"names = {_lab_modules()!r}\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m in {FORBIDDEN!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_walk_sees_imports_inside_functions():
    """process.py imports the keystore format only where it reads the keystore password."""
    assert "esremote.lab.formats.keystore" in _imports("esremote.lab.node.process")
