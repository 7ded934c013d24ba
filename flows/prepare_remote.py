"""Phase `prepare_remote`: the remote cluster server on every remote node (certificates, keystore
password, elasticsearch.yml), a rolling restart, a TLS probe of every remote cluster port, and the
cross-cluster API key. Nothing changes for the certificate-model link."""

from __future__ import annotations

from prefect import flow

from esremote.node_settings import CA_MODE, P12_MODE, SERVER_CA, SERVER_P12, SERVER_P12_PASSWORD, remote_settings_for
from esremote.params import MigrationParams
from esremote.flows.common import pending_aliases, phase_done, remotes_of, wait_all
from esremote.tasks.certs import make_certificates, p12_path, password_path
from esremote.tasks.cluster import alias_facts, cross_cluster_key, facts_of, probe
from esremote.tasks.nodes import edit_yml, keystore_add, node_changed, put_file, restart_node
from esremote.tasks.runtime import ensure_run
from esremote.tasks.split import split_key

PHASE = "prepare_remote"


@flow(name="prepare-remote", flow_run_name="prepare-remote-{run_id}")
def prepare_remote_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    """Remote cluster server on every remote node, then the cross-cluster API key per alias."""
    run = ensure_run(params, run_id)
    facts = facts_of(run)
    done = []
    for remote in remotes_of(run):
        nodes = facts.nodes_of(remote)
        port = facts.remote_cluster_port.get(remote, 9443)
        needing = [n.key for n in nodes if not n.files.get(SERVER_P12)]
        # strong identity: the local clusters' signing certificates, signed while this CA can sign
        signing = [[a, run.link(a).local] for a in run.aliases
                   if run.link(a).remote == remote] if run.params.strong_identity else []
        ca_file = make_certificates(run.id, remote, needing, signing)
        futures = []
        for node in nodes:
            key = node.key
            if key in needing:
                futures.append((f"put p12 {key}", put_file.submit(
                    run.id, key, f"{PHASE}/p12/{key}", SERVER_P12, str(p12_path(run, remote, node.name)), P12_MODE)))
            futures.append((f"put CA {key}", put_file.submit(run.id, key, f"{PHASE}/ca/{key}", SERVER_CA, ca_file,
                                                             CA_MODE)))
            if node.keystore is None or SERVER_P12_PASSWORD not in node.keystore:
                futures.append((f"keystore {key}", keystore_add.submit(
                    run.id, key, f"{PHASE}/keystore/{key}", {SERVER_P12_PASSWORD: str(password_path(run, remote))})))
            futures.append((f"yml {key}", edit_yml.submit(run.id, key, f"{PHASE}/yml/{key}",
                                                          remote_settings_for(params, node.address, port,
                                                                              node.yml))))
        wait_all(futures)
        for node in nodes:  # one at a time: the cluster stays up
            if node_changed(run, PHASE, node.key):
                restart_node(run.id, node.key, f"{PHASE}/restart/{node.key}")
        probe(run.id, remote, ca_file)
        done.append(remote)
    for alias in pending_aliases(run):
        cross_cluster_key(run.id, alias)
        if alias_facts(run, alias).split:  # the consented split: the search alias's own key
            split_key(run.id, alias)
    phase_done(run, PHASE, [f"remote cluster server ready on {', '.join(done)}",
                            f"cross-cluster API keys for {', '.join(run.aliases)}"])
    return done
