"""A local node that restarts between the staging of its credentials and the outage's reload is
named at the start of the outage (flows/stage_credentials.py says why it is otherwise safe)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from esremote.flows.stage_credentials import KEYSTORE_STEP, check_no_node_restarted
from esremote.journal import Journal


def _run(scripted, tmp_path):
    journal = Journal.create("20261206-000000-abcdef", state_dir=tmp_path)
    link = SimpleNamespace(local="local", remote="remote")
    return SimpleNamespace(aliases=["my_remote"], link=lambda alias: link, journal=journal,
                           es=lambda cluster: scripted.client())


def _nodes(**started_ms):
    return {"nodes": {f"id-{name}": {"name": name, "jvm": {"start_time_in_millis": ms}}
                      for name, ms in started_ms.items()}}


def test_a_node_started_after_its_keystore_was_written_is_named(scripted, tmp_path):
    run = _run(scripted, tmp_path)
    for node in ("local-0", "local-1"):
        run.journal.done(KEYSTORE_STEP.format(node=f"local/{node}"), changed=["cluster.remote.my_remote.credentials"])
    staged = datetime.fromisoformat(run.journal.entries("done")[-1].time).timestamp() * 1000
    scripted.on("GET", "/_nodes/jvm", _nodes(**{"local-0": staged - 60_000, "local-1": staged + 5_000}))
    assert check_no_node_restarted(run) == ["local/local-1"]
    [request] = scripted.requests("GET")
    assert request.path == "/_nodes/jvm"


def test_nodes_running_since_before_the_staging_are_fine(scripted, tmp_path):
    run = _run(scripted, tmp_path)
    run.journal.done(KEYSTORE_STEP.format(node="local/local-0"), changed=[])
    scripted.on("GET", "/_nodes/jvm", _nodes(**{"local-0": 1_000}))
    assert check_no_node_restarted(run) == []
