"""Phase `stage_local`: every local node trusts the remote cluster servers' CAs
(`remote-cluster-ca.crt` in its config directory, `xpack.security.remote_cluster_client.ssl.*` in
its elasticsearch.yml), then a rolling restart while the certificate-model link still works; the
link is checked after it."""

from __future__ import annotations

from prefect import flow, task

from esremote.esyml import EsYml
from esremote.files import atomic_write
from esremote.node_settings import (
    CA_MODE,
    CLIENT_CA,
    P12_MODE,
    local_client_settings,
    local_signing_settings,
    signing_files,
)
from esremote.params import MigrationParams
from esremote.flows.common import locals_of, pending_aliases, phase_done, wait_all
from esremote.tasks.certs import ensure_ca_known, pki_dir, signing_paths
from esremote.tasks.cluster import verify_certificate
from esremote.tasks.common import RETRYING
from esremote.tasks.nodes import edit_yml, node_changed, put_file, read_text, restart_node
from esremote.tasks.runtime import Run, ensure_run, get_run

PHASE = "stage_local"
CA_SETTING = "xpack.security.remote_cluster_client.ssl.certificate_authorities"


def pem_blocks(data: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each with its BEGIN/END lines."""
    blocks, current = [], []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END"):
                blocks.append(b"".join(current).strip() + b"\n")
                current = []
    return blocks


@task(name="ca-bundle", task_run_name="ca-bundle-{node}", **RETRYING)
def ca_bundle(run_id: str, node: str, remotes: list[str]) -> str:
    """The node's `remote-cluster-ca.crt` to be: what it holds now plus each remote's CA (once)."""
    run = get_run(run_id)
    resolved = run.node(node)
    current = read_text(run, node, str(resolved.config_dir / CLIENT_CA)) or b""
    blocks = pem_blocks(current)
    for remote in remotes:
        for block in pem_blocks(ensure_ca_known(run, remote).read_bytes()):
            if block not in blocks:
                blocks.append(block)
    path = pki_dir(run, "local-bundles") / f"{resolved.cluster}-{resolved.name}.crt"
    atomic_write(path, b"".join(blocks), mode=0o600)
    return str(path)


def signing_aliases(run: Run, local: str) -> list[str]:
    """The aliases of `local` that sign their requests (strong identity), none without it."""
    return [a for a in run.aliases if run.link(a).local == local] if run.params.strong_identity else []


def signing_puts(run: Run, node: str, local: str) -> list[tuple[str, object]]:
    """The signing certificate (CA_MODE) and key (P12_MODE: group-readable for Elasticsearch, never
    world-readable) of every signing alias, put on the node; journaled as `signing` steps, which
    the rollback removes."""
    puts = []
    for alias in signing_aliases(run, local):
        made_cert, made_key = signing_paths(run, run.link(alias).remote, alias)
        cert, key = signing_files(alias)
        for what, target, source, mode in (("crt", cert, made_cert, CA_MODE), ("key", key, made_key, P12_MODE)):
            puts.append((f"put signing {what} {alias} {node}",
                         put_file.submit(run.id, node, f"{PHASE}/signing/{alias}-{what}/{node}", target,
                                         str(source), mode)))
    return puts


def client_settings(run: Run, node) -> dict:
    """The client TLS settings, keeping any CA file the node already trusts for other remotes; with
    strong identity, each alias's signing certificate and key."""
    wanted = {**local_client_settings(), **local_signing_settings(signing_aliases(run, node.cluster))}
    yml = EsYml.parse(node.yml) if node.yml else None
    existing = yml.get(CA_SETTING) if yml else None
    if existing:
        files = [existing] if isinstance(existing, str) else list(existing)
        wanted[CA_SETTING] = files + [f for f in wanted[CA_SETTING] if f not in files]
    return wanted


@flow(name="stage-local", flow_run_name="stage-local-{run_id}")
def stage_local_flow(params: MigrationParams, run_id: str | None = None) -> list[str]:
    """Trust the remote cluster servers' CAs on every local node; rolling restart; link still up."""
    from esremote.tasks.cluster import facts_of  # noqa: PLC0415

    run = ensure_run(params, run_id)
    facts = facts_of(run)
    for local in locals_of(run):
        remotes = list(dict.fromkeys(run.link(a).remote for a in run.aliases if run.link(a).local == local))
        nodes = facts.nodes_of(local)
        bundles = [(node.key, ca_bundle.submit(run.id, node.key, remotes)) for node in nodes]
        futures = []
        for (key, bundle), node in zip(bundles, nodes, strict=True):
            futures.append((f"put CA {key}", put_file.submit(run.id, key, f"{PHASE}/ca/{key}", CLIENT_CA,
                                                             bundle, CA_MODE)))
            futures.append((f"yml {key}", edit_yml.submit(run.id, key, f"{PHASE}/yml/{key}",
                                                          client_settings(run, node))))
            futures += signing_puts(run, key, local)
        wait_all(futures)
        for node in nodes:
            if node_changed(run, PHASE, node.key):
                restart_node(run.id, node.key, f"{PHASE}/restart/{node.key}")
    for alias in pending_aliases(run):
        reconnecting = any(run.journal.first_intent(f"reconnect/{what}/{alias}")
                           for what in ("save-settings", "save-yml"))
        if not reconnecting:  # a resumed run past this point checks the API-key link instead
            verify_certificate(run.id, alias)
    phase_done(run, PHASE, [f"local nodes of {', '.join(locals_of(run))} trust the remote cluster CAs",
                            "certificate-model links still connected"])
    return locals_of(run)
