"""esremote's own CLI, with one fault placed at a named journal entry: the fault matrix's orchestrator.

    FAULT_MATRIX_HOOK='{"at": {...}, "action": ...}' python -m benchmarks.fault_orchestrator migrate ...

The command is `esremote ARGS` run in this process (the flows run in it too), so the output, the
exit code and the journal are the tool's own. The hook watches the journal as the run writes it: when
the `nth` entry of `kind` whose step matches `step` (a glob) is on disk, the action happens before the
run goes on, so a cell's point is exact, not a race against a poller:

- `"kill"`: SIGKILL to this process group (the orchestrator and whatever it started), as a crash or
  an OOM kill would end it;
- `{"fault": NAME, "node": N | "from-step" | null, "set": {...}}`: the lab fault switched on
  (`esremote lab fault`); `"from-step"` is the node the step names (its last part). `"off_after"`
  switches it off again after that many seconds (a burst, a dropped connection that comes back);
  `"off_at"` (a trigger like `at`) switches it off when that entry is written (a node whose start
  fails with the run's setting starts again once the rollback puts its configuration back).

The moment the hook fired goes to the file `mark` (seconds since the epoch), the start of the cell's
time to consistency. `node_timeout_s` sets the run's restart deadline (a flow parameter the CLI does
not expose), so a slow node can be beyond it without waiting minutes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path

HOOK_ENV = "FAULT_MATRIX_HOOK"


class Trigger:
    """The `nth` journal entry of `kind` whose step matches the glob `step` (counted as written)."""

    def __init__(self, spec: dict) -> None:
        self.kind, self.step, self.nth = spec["kind"], spec["step"], int(spec.get("nth", 1))
        self.seen = 0
        self._lock = threading.Lock()

    def hit(self, kind: str, step: str) -> bool:
        if kind != self.kind or not fnmatch(step, self.step):
            return False
        with self._lock:
            self.seen += 1
            return self.seen == self.nth


def install(spec: dict) -> None:
    """Wrap Journal._append so that the action runs once the triggering entry is on disk."""
    from esremote.journal import Journal  # noqa: PLC0415

    at, action = Trigger(spec["at"]), spec["action"]
    off_at = Trigger(action["off_at"]) if isinstance(action, dict) and action.get("off_at") else None
    original = Journal._append
    fault_node: list[str | None] = []

    def append(self, kind, step, data):
        entry = original(self, kind, step, data)
        if at.hit(kind, step):
            _mark(spec.get("mark"))
            if action == "kill":
                os.killpg(os.getpgrp(), signal.SIGKILL)
            fault_node.append(_switch_on(action, step))
        if off_at is not None and fault_node and off_at.hit(kind, step):
            _switch_off(action, fault_node[0])
        return entry

    Journal._append = append


def _mark(path: str | None) -> None:
    if path:
        Path(path).write_text(f"{time.time():.3f}\n")


def _switch_on(action: dict, step: str) -> str | None:
    from esremote.lab.ops import control  # noqa: PLC0415

    node = step.rsplit("/", 1)[-1] if action.get("node") == "from-step" else action.get("node")
    control.fault(action["lab"], action["fault"], node=node, options=action.get("set"))
    if action.get("off_after"):
        timer = threading.Timer(float(action["off_after"]), _switch_off, (action, node))
        timer.daemon = True
        timer.start()
    return node


def _switch_off(action: dict, node: str | None) -> None:
    from esremote.lab.ops import control  # noqa: PLC0415

    if action["fault"] != "api-key-invalidated":  # an invalidated key stays invalid
        control.fault(action["lab"], action["fault"], node=node, off=True)


def restart_deadline(seconds: float) -> None:
    """The run's `node_timeout_s`: the default of the parameter the CLI builds the run from."""
    from esremote.params import MigrationParams  # noqa: PLC0415

    MigrationParams.model_fields["node_timeout_s"].default = seconds
    MigrationParams.model_rebuild(force=True)


def main() -> int:
    spec = json.loads(os.environ.get(HOOK_ENV) or "{}")
    if spec.get("node_timeout_s"):
        restart_deadline(float(spec["node_timeout_s"]))
    if spec.get("at"):
        install(spec)
    from esremote.cli import main as esremote  # noqa: PLC0415

    return esremote(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
