"""A few cells of the fault matrix (benchmarks/fault_matrix.py) on every CI run; the script runs them all
and writes docs/reliability.md.

Each cell is a real `esremote migrate` process against a new seeded lab (8.15, 2 + 2 nodes), the
fault placed at a journal entry, then the one recovery command the cell allows; the judge reads
every node of both clusters from outside the tool (`_remote/info` on each local node at its own
address, searches, the work, every config file's bytes, mode and owner, keystore entries, roles,
alias settings, the remote's cross-cluster keys, restarts by pid) and names every check that failed.

- killed inside a multi-node step (stage_local, after the first local node restarted), then
  `--resume`: migrated, one key, and every node restarted exactly once;
- one local node loads a wrong credential from the end of stage_credentials on: the verification
  fails on that node and the automatic rollback leaves everything as it was, the run's
  cross-cluster key invalidated (no valid key left that no alias uses);
- the first remote node does not start with its remote cluster server (prepare_remote, before any
  outage): the run rolls itself back, that node starts again with its old configuration.
Every cell also asserts no stray file (backup or temporary) is left in any config directory.
"""

from __future__ import annotations

import pytest

from benchmarks.fault_matrix import FAULTS, LAB_OPTIONS, POINTS, describe, run_cell
from tests.test_flows import shared_prefect_api

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CELLS = [
    ("killed+resume", "stage_local:after-first", "migrated"),
    ("wrong-credential-one-node", "stage_credentials:end", "rolled back"),
    ("node-fails-to-start", "prepare_remote:before-first-restart", "rolled back"),
]


@pytest.mark.parametrize(("fault", "point", "end_state"), CELLS, ids=[f"{f}@{p}" for f, p, _ in CELLS])
def test_a_cell_ends_consistent(lab_factory, request, tmp_path, fault, point, end_state):
    lab = lab_factory(f"matrix-{fault}", **LAB_OPTIONS)
    result = run_cell(lab, FAULTS[fault], POINTS[point], shared_prefect_api(request.config), tmp_path / "cell")
    assert result.state == end_state, describe(result)
    if FAULTS[fault].recovery == "resume":
        assert [c.code for c in result.commands] == [-9, 0], describe(result)
        assert set(result.restarts.values()) == {1}, result.restarts
    else:
        assert result.commands[-1].code == 3, describe(result)
    assert result.problems == [], describe(result)
    assert result.consistent, describe(result)
