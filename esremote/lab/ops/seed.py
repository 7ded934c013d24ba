"""Seed a fresh lab with the "before" state of a migration, and feed it with a writer.

Certificate model, as Elastic documents it: the remote authorizes cross-cluster requests with its
own roles of the same names as the local user's roles. So both sides get `ccs_role` and `ccr_role`;
the local side holds the users (`ccs_user`, `ccr_user`) and the local privileges, the remote side
grants read / replication on its indices. Then the alias (dynamic, unless the yml holds it), a
leader index, a manual follower, an auto-follow pattern, a transform and an ML job + datafeed on
`<alias>:` data, each created and started as the cross-cluster user that owns it (with a basic
licence only the transform: CCR and ML anomaly detection need a paid licence, as in Elasticsearch).

    python -m esremote.lab.ops.seed writer --dir DIR [--interval S]

runs the writer: it adds a document to the leader index every interval, forever, riding out the
remote's restarts (a migration restarts it); SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from esremote.errors import ClusterError, EsRemoteError

LEADER_INDEX = "leader-logs"
AUTO_LEADER_INDEX = "auto-logs-0001"
FOLLOWER_INDEX = "follower-logs"
AUTO_FOLLOW_PATTERN = "auto-logs"
TRANSFORM = "ccs-hosts"
ML_JOB = "ccs-job"
DATAFEED = f"datafeed-{ML_JOB}"
USERS = {"ccs_user": "ccs_role", "ccr_user": "ccr_role"}  # builder.LAB_USERS makes their passwords
REMOTE_INDICES = ["leader-*", "auto-*"]
CONNECT_TIMEOUT = 30.0
HOSTS = ("web-1", "web-2", "db-1")


def remote_roles() -> dict[str, dict]:
    """The remote side's roles: what cross-cluster requests of the local users may do here."""
    return {
        "ccs_role": {"indices": [{"names": REMOTE_INDICES,
                                  "privileges": ["read", "read_cross_cluster", "view_index_metadata"]}]},
        "ccr_role": {"cluster": ["read_ccr"],
                     "indices": [{"names": REMOTE_INDICES,
                                  "privileges": ["monitor", "read", "view_index_metadata",
                                                 "cross_cluster_replication"]}]},
    }


def local_roles() -> dict[str, dict]:
    """The local side's roles: the local privileges the cross-cluster work needs."""
    return {
        "ccs_role": {"cluster": ["monitor", "manage_transform", "manage_ml"],
                     "indices": [{"names": ["ccs-*"], "privileges": ["all"]}]},
        "ccr_role": {"cluster": ["monitor", "manage_ccr"],
                     "indices": [{"names": [FOLLOWER_INDEX, "*-follower"],
                                  "privileges": ["monitor", "read", "write", "manage_follow_index"]}]},
    }


def seed(lab: dict, client_for, done: set[str] | None = None, mark=lambda step: None) -> None:
    """Create the "before" state. `client_for(cluster, user=None)` gives a LabClient.

    Steps already in `done` are skipped and `mark(step)` records each finished one, so a seed that
    failed half-way (a node down, say) resumes where it stopped when `lab up` runs again."""
    done = done if done is not None else set()
    for step, action in seed_steps(lab, client_for):
        if step not in done:
            action()
            mark(step)


def seed_steps(lab: dict, client_for) -> list[tuple[str, object]]:
    local = lab_local(lab)
    aliases: dict[str, str] = lab["aliases"]
    alias = lab["alias"]
    steps: list[tuple[str, object]] = []
    for remote in aliases.values():
        replicas = min(1, len(lab["clusters"][remote]["nodes"]) - 1)  # green on a one-node cluster too
        steps.append((f"remote-data:{remote}", lambda r=remote, n=replicas: seed_remote(client_for(r), n)))
    steps.append(("local-security", lambda: seed_local_security(client_for(local), lab)))
    if not lab["options"].get("alias_in_yml"):
        for name, remote in aliases.items():
            steps.append((f"alias:{name}", lambda n=name, r=remote:
                          add_alias(client_for(local), n, alias_settings(lab, r))))
    steps.append(("connected", lambda: [wait_connected(client_for(local), name) for name in aliases]))
    # CCR and ML anomaly detection are paid features: a basic licence gets transforms and search only.
    paid_local = lab["clusters"][local]["license"] != "basic"
    if paid_local and lab["clusters"][aliases[alias]]["license"] != "basic":
        steps.append(("replication", lambda: seed_replication(client_for(local, "ccr_user"),
                                                              client_for(aliases[alias]), alias)))
    local_replicas = min(1, len(lab["clusters"][local]["nodes"]) - 1)
    steps.append(("transform", lambda: seed_transform(client_for(local, "ccs_user"), alias, local_replicas)))
    if paid_local:
        steps.append(("ml", lambda: seed_ml(client_for(local, "ccs_user"), alias)))
    return steps


def lab_local(lab: dict) -> str:
    return next(name for name, c in lab["clusters"].items() if c["role"] == "local")


def alias_settings(lab: dict, remote: str) -> dict[str, object]:
    """Certificate-model alias settings: the remote's transport port (proxy or sniff)."""
    nodes = lab["clusters"][remote]["nodes"]
    if lab["options"].get("mode", "proxy") == "proxy":
        return {"mode": "proxy", "proxy_address": f"{nodes[0]['ip']}:{nodes[0]['transport_port']}"}
    return {"mode": "sniff", "seeds": [f"{n['ip']}:{n['transport_port']}" for n in nodes[:3]]}


def seed_remote(remote, replicas: int = 1) -> None:
    for name, body in remote_roles().items():
        remote.put(f"/_security/role/{name}", body)
    mappings = {"properties": {"@timestamp": {"type": "date"}, "host": {"type": "keyword"},
                               "value": {"type": "long"}}}
    for index in (LEADER_INDEX, AUTO_LEADER_INDEX):
        remote.put(f"/{index}", {"settings": {"number_of_shards": 1, "number_of_replicas": replicas},
                                  "mappings": mappings})
    now = datetime.now(timezone.utc)
    docs = [document(now - timedelta(minutes=60 - i), i) for i in range(60)]
    bulk = []
    for doc in docs:
        bulk += [{"index": {"_index": LEADER_INDEX}}, doc]
    remote.request("POST", "/_bulk?refresh=true", ndjson=bulk)


def document(when: datetime, i: int) -> dict:
    return {"@timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "host": HOSTS[i % len(HOSTS)],
            "value": (i * 37) % 100}


def seed_local_security(local, lab: dict) -> None:
    for name, body in local_roles().items():
        local.put(f"/_security/role/{name}", body)
    for user, role in USERS.items():
        local.put(f"/_security/user/{user}", {"password": user_password(lab, user), "roles": [role],
                                              "full_name": f"Lab {user}"})


def user_password(lab: dict, user: str) -> str:
    return Path(lab["users"][user]["password_file"]).read_text().splitlines()[0]


def add_alias(local, alias: str, settings: dict) -> None:
    local.put("/_cluster/settings",
              {"persistent": {f"cluster.remote.{alias}.{key}": value for key, value in settings.items()}})


def wait_connected(local, alias: str, timeout: float = CONNECT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    info: dict = {}
    while time.monotonic() < deadline:
        info = local.get("/_remote/info").get(alias, {})
        if info.get("connected"):
            return
        time.sleep(0.1)
    raise EsRemoteError(f"alias {alias} did not connect within {timeout:g}s; _remote/info says "
                        f"{json.dumps(info)}")


def seed_replication(ccr_local, remote, alias: str) -> None:
    ccr_local.put(f"/{FOLLOWER_INDEX}/_ccr/follow?wait_for_active_shards=1",
                  {"remote_cluster": alias, "leader_index": LEADER_INDEX})
    ccr_local.put(f"/_ccr/auto_follow/{AUTO_FOLLOW_PATTERN}",
                  {"remote_cluster": alias, "leader_index_patterns": ["auto-*"],
                   "follow_index_pattern": "{{leader_index}}-follower"})
    # An index that appears after the pattern, so the pattern has something to follow.
    remote.request("POST", f"/{AUTO_LEADER_INDEX}/_doc?refresh=true",
                   document(datetime.now(timezone.utc), 0))


def seed_transform(ccs_local, alias: str, replicas: int = 1) -> None:
    # The destination made beforehand, with replicas the local cluster can hold (green at one node).
    ccs_local.put("/ccs-hosts", {"settings": {"number_of_shards": 1, "number_of_replicas": replicas}})
    ccs_local.put(f"/_transform/{TRANSFORM}", {
        "source": {"index": [f"{alias}:{LEADER_INDEX}"]},
        "dest": {"index": "ccs-hosts"},
        "pivot": {"group_by": {"host": {"terms": {"field": "host"}}},
                  "aggregations": {"value_sum": {"sum": {"field": "value"}}}},
        "frequency": "1s",
        "sync": {"time": {"field": "@timestamp", "delay": "1s"}},
    })
    ccs_local.post(f"/_transform/{TRANSFORM}/_start")


def seed_ml(ccs_local, alias: str) -> None:
    ccs_local.put(f"/_ml/anomaly_detectors/{ML_JOB}", {
        "analysis_config": {"bucket_span": "1m", "detectors": [{"function": "mean", "field_name": "value"}]},
        "data_description": {"time_field": "@timestamp"},
    })
    ccs_local.put(f"/_ml/datafeeds/{DATAFEED}", {"job_id": ML_JOB, "indices": [f"{alias}:{LEADER_INDEX}"]})
    ccs_local.post(f"/_ml/anomaly_detectors/{ML_JOB}/_open")
    ccs_local.post(f"/_ml/datafeeds/{DATAFEED}/_start")


# ---------------------------------------------------------------------------------- the writer


def run_writer(lab_dir: Path, interval: float) -> int:
    from esremote.lab.ops.client import LabClient  # noqa: PLC0415

    lab = json.loads((lab_dir / "lab.json").read_text())
    remote = lab["clusters"][lab["aliases"][lab["alias"]]]
    password = Path(remote["password_file"]).read_text().splitlines()[0]
    clients = [LabClient(url, ca_cert=remote["ca_cert"], username=remote["username"], password=password,
                         timeout=5) for url in remote["urls"]]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    seq = attempt = 0
    while not stopping:
        client = clients[attempt % len(clients)]
        try:
            client.post(f"/{LEADER_INDEX}/_doc", document(datetime.now(timezone.utc), seq))
            seq += 1
        except ClusterError as exc:  # the remote restarts during a migration: try the next node
            print(f"writer: {exc}", file=sys.stderr, flush=True)
            attempt += 1
        time.sleep(interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esremote.lab.ops.seed")
    sub = parser.add_subparsers(dest="command", required=True)
    writer = sub.add_parser("writer", help="feed the leader index until SIGTERM")
    writer.add_argument("--dir", required=True, type=Path)
    writer.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    return run_writer(args.dir.resolve(), args.interval)


if __name__ == "__main__":
    sys.exit(main())
