"""Phase `stage_credentials` (no outage yet): what the reconnect needs that works while the
certificate-model link is up, done before any work stops, so the outage holds only what needs the
link down (stop, null or move the alias, reload, re-add, verify, resume).

* Local roles get their `remote_indices`: the certificate model ignores them.
* `cluster.remote.<alias>.credentials` goes into every local node's keystore (value on stdin): a
  node reads its keystore only at start or on a reload, so a running node keeps its certificate
  link untouched until the outage's reload.

A local node that restarts on its own between this phase and the reload starts with credentials for
an alias that still points at the remote's transport port: that node alone then talks the API-key
model to the transport port and its link fails (es-facts §9, "missing authentication credentials
for action [cluster:internal/remote_cluster/handshake]"), so work it coordinates fails a little
before the planned outage. Nothing is lost: the reconnect re-adds the alias on the remote-cluster
port and every node is verified, and any failure from here on rolls back, which removes the
credentials from every keystore. `check_no_node_restarted` names such a node at the start of the
outage. The steps keep the reconnect's journal names, so the reconnect finds them done and the
rollback undoes them as before.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from esremote.flows.common import locals_of, pending_aliases, phase_done, wait_all
from esremote.node_settings import credentials_setting
from esremote.params import MigrationParams
from esremote.tasks.cluster import credentials_file, facts_of, update_roles
from esremote.tasks.nodes import keystore_add
from esremote.tasks.common import run_logger
from esremote.tasks.runtime import Run, ensure_run
from esremote.tasks.split import credentials_file as split_credentials_file
from esremote.tasks.work import split_name

PHASE = "stage_credentials"
KEYSTORE_STEP = "reconnect/keystore/{node}"


def stage_credentials(run: Run) -> list[str]:
    """Roles and keystores of every local cluster, ready for the outage's reload."""
    facts = facts_of(run)
    lines = []
    for local in locals_of(run):
        aliases = [a for a in pending_aliases(run) if run.link(a).local == local]
        if not aliases:
            continue
        for alias in aliases:
            lines += update_roles(run.id, alias)
        files = {credentials_setting(a): credentials_file(run, a) for a in aliases}
        files.update({credentials_setting(split_name(run, a)): split_credentials_file(run, a)
                      for a in aliases if split_name(run, a)})
        nodes = facts.nodes_of(local)
        wait_all([(f"keystore {n.key}", keystore_add.submit(run.id, n.key, KEYSTORE_STEP.format(node=n.key), files))
                  for n in nodes])
        lines.append(f"{local}: credentials of {', '.join(aliases)} in the keystore of "
                     f"{len(nodes)} node(s), loaded at the outage's reload")
    return lines


def check_no_node_restarted(run: Run) -> list[str]:
    """Local nodes that started after their keystore got the credentials (named in the log): their
    link already talks the API-key model to the transport port (module docstring)."""
    restarted = []
    for local in locals_of(run):
        nodes = run.es(local).nodes.info(metric="jvm", filter_path="nodes.*.name,nodes.*.jvm.start_time_in_millis")
        for info in (nodes.body.get("nodes") or {}).values():
            written = run.journal.entries("done", KEYSTORE_STEP.format(node=f"{local}/{info['name']}"))
            if written and info["jvm"]["start_time_in_millis"] / 1000 > _epoch(written[-1].time):
                restarted.append(f"{local}/{info['name']}")
    if restarted:
        run_logger().warning("%s restarted after the credentials were staged: until the reconnect, their "
                             "certificate-model link is down", ", ".join(restarted))
    return restarted


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@flow(name="stage-credentials", flow_run_name="stage-credentials-{run_id}")
def stage_credentials_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    run = ensure_run(params, run_id)
    lines = stage_credentials(run)
    phase_done(run, PHASE, lines)
    return lines
