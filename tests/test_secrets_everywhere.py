"""Every secret, everywhere (issue 11 §3): one lab of its own, every kind of run, and every place a
secret could end up, searched for every secret value of that lab and of those runs.

The runs, on a two-node local and a one-node remote cluster with password-protected keystores, all
reporting to the session's real Prefect server (tests/fixtures/prefect.py):
1. `esremote migrate` SIGKILLed once prepare_remote has ended (the cross-cluster key made), then
   `--resume`d to the end: a resume pair, the killed run's console searched too;
2. `esremote rollback` of that run: the certificate model back;
3. the deployment path: a flow run of `migrate-remote-cluster/manual` created through the API and run
   by the process worker (tests/fixtures/deployed.py), with `certificate_strategy: provided-ca`: the
   operator's own CA, its key encrypted as certutil writes it, the passphrase behind a secret
   reference (`ca_passphrase: {file: ...}`); then `esremote verify`.

The secrets: every secret reference the inventory resolves (cluster passwords, keystore passwords),
the lab users' passwords, each cross-cluster API key (its `encoded` value, the raw `id:api_key` and
the key alone), the PKCS#12 passwords, the operator CA's passphrase and its private key (every line
of its clear PEM bodies), each also in base64 and JSON-escaped; and any clear PEM private key.

The places: the console output of every run (the failed first run of the pair included), the
worker's and the server's logs, the lab's logs; what Prefect stores, read back from the server's
API (logs, artifacts, flow and task runs with their parameters and state messages, which carry
exception texts, block documents, variables, deployments) and the files of its home (database);
every file under the state directories (the journal included) except the secret stores, whose modes
are checked instead (0600, directories 0700); and the argv of every process on the machine, read
from /proc/*/cmdline by a background thread for the whole time the runs take.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from esremote.inventory import load_inventory
from esremote.keystore import Keystore
from esremote.lab.ops import control
from esremote.node_settings import CLIENT_CA, SERVER_P12, SERVER_P12_PASSWORD
from esremote.pki import CertificateAuthority, key_to_pem_aes128, load_pkcs12
from esremote.secrets import SecretRef
from tests.fixtures.deployed import logs, start, wait_final, wait_for
from tests.fixtures.lab import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(2400)]

ALIAS = "my_remote"
CREDENTIALS = f"cluster.remote.{ALIAS}.credentials"
CLEAR_KEY = re.compile(rb"-----BEGIN (RSA |EC )?PRIVATE KEY-----")
SAMPLE_EVERY_S = 0.05
API_PAGE = 200


# ------------------------------------------------------------------------------------ argv sampler


class ArgvSampler(threading.Thread):
    """Reads /proc/*/cmdline of every process, over and over, until stopped: the argv of each
    distinct command line seen (a secret on a command line shows there while the process lives)."""

    def __init__(self) -> None:
        super().__init__(name="argv-sampler", daemon=True)
        self.seen: set[bytes] = set()
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as handle:
                            argv = handle.read()
                    except OSError:  # the process ended between the listing and the read
                        continue
                    if argv:
                        self.seen.add(argv.replace(b"\0", b" "))
            self.samples += 1
            self._halt.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


# ------------------------------------------------------------------------------------ secrets


def forms(value: str) -> set[bytes]:
    """The value, its base64 and its JSON-escaped form."""
    raw = value.encode()
    return {raw, base64.b64encode(raw), json.dumps(value)[1:-1].encode()}


def api_key_forms(encoded: str) -> dict[str, set[bytes]]:
    raw = base64.b64decode(encoded).decode()
    key_id, api_key = raw.split(":", 1)
    assert len(api_key) >= 16, "not a cross-cluster key"
    return {f"cross-cluster key {key_id} (encoded)": forms(encoded), f"cross-cluster key {key_id} (id:api_key)": forms(raw),
            f"cross-cluster key {key_id} (api_key)": forms(api_key)}


def private_key_forms(ca: CertificateAuthority) -> set[bytes]:
    """Every line of the key's clear PEM bodies (traditional and PKCS#8): any one of them is a leak."""
    lines = set()
    for fmt in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8):
        pem = ca.key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        lines |= {line for line in pem.splitlines() if len(line) >= 40}
    return lines


def inventory_secrets(inventory: Path) -> dict[str, set[bytes]]:
    """Every secret reference in the inventory, resolved, by where it is used."""
    found: dict[str, set[bytes]] = {}

    def walk(value, where: str) -> None:
        if isinstance(value, SecretRef):
            found[f"inventory {where} ({value.describe()})"] = forms(value.resolve().get_secret_value())
        elif hasattr(type(value), "model_fields"):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{where}.{name}" if where else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(load_inventory(inventory), "")
    return found


# ------------------------------------------------------------------------------------ the runs


@dataclass
class Evidence:
    lab: Lab
    state_dirs: list[Path]
    consoles: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, set[bytes]] = field(default_factory=dict)
    operator_ca: CertificateAuthority | None = None
    migrate_run: str = ""
    deployment_run: str = ""  # Prefect flow run id
    deployment_state: Path | None = None
    argv: ArgvSampler | None = None
    prefect_homes: list[Path] = field(default_factory=list)  # this session's, and the server's (its logs, the worker's, the database)


def esremote(*args: str, server, state_dir: Path, kill_at: dict | None = None) -> subprocess.CompletedProcess:
    """`esremote ARGS`; with `kill_at` (a journal entry), SIGKILLed when the run writes it (the fault
    matrix's orchestrator: benchmarks/fault_orchestrator.py)."""
    env = {**os.environ, "PREFECT_API_URL": server.url, "ESREMOTE_STATE_DIR": str(state_dir),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    module = "esremote"
    if kill_at:
        module = "benchmarks.fault_orchestrator"
        env |= {"FAULT_MATRIX_HOOK": json.dumps({"at": kill_at, "action": "kill", "mark": str(state_dir / "killed-at")}),
                "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                          timeout=900, start_new_session=bool(kill_at))


def local_key(lab: Lab) -> str:
    """The cross-cluster key in the local nodes' keystores (password-protected): one for all."""
    password = load_inventory(lab.inventory).cluster("local").keystore_password.resolve().get_secret_value()
    [key] = {Keystore.load(Path(node["home"]) / "config" / "elasticsearch.keystore", password).get_string(CREDENTIALS)
             for node in lab.nodes("local")}
    return key


def console(evidence: Evidence, name: str, result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    evidence.consoles[name] = result.stdout + result.stderr
    return result


def operator_ca_files(directory: Path, passphrase: str) -> tuple[CertificateAuthority, Path, Path, Path]:
    """The operator's CA as `elasticsearch-certutil ca --pem --pass` leaves it: the key AES-128-CBC
    encrypted; the passphrase in a 0600 file the run reads through a secret reference."""
    directory.mkdir(mode=0o700)
    ca = CertificateAuthority.create("CN=Operator remote cluster CA,O=Example")
    cert, key, phrase = directory / "ca.crt", directory / "ca.key", directory / "ca.pass"
    cert.write_bytes(ca.cert_pem())
    for path, data in ((key, key_to_pem_aes128(ca.key, passphrase)), (phrase, (passphrase + "\n").encode())):
        path.write_bytes(data)
        path.chmod(0o600)
    return ca, cert, key, phrase


@pytest.fixture(scope="module")
def evidence(lab_factory, prefect_server, deployed, tmp_path_factory) -> Evidence:
    lab = lab_factory("secrets-everywhere", local_nodes=2, remote_nodes=1, keystore_password=True)
    cli_state, deploy_state = tmp_path_factory.mktemp("secrets-cli-state"), tmp_path_factory.mktemp("secrets-dep-state")
    found = Evidence(lab=lab, state_dirs=[cli_state, deploy_state], deployment_state=deploy_state,
                     prefect_homes=[Path(os.environ["PREFECT_HOME"]), prefect_server.logs])
    passphrase = secrets.token_urlsafe(18)
    found.operator_ca, ca_cert, ca_key, ca_pass = operator_ca_files(tmp_path_factory.mktemp("operator") / "ca",
                                                                    passphrase)
    found.secrets["operator CA passphrase"] = forms(passphrase)
    found.secrets["operator CA private key"] = private_key_forms(found.operator_ca)
    found.secrets.update(inventory_secrets(lab.inventory))
    for user in lab.data["users"]:
        found.secrets[f"lab user {user} password"] = forms(lab.password(user))
    inventory = str(lab.inventory)

    found.argv = ArgvSampler()
    found.argv.start()
    try:
        # 1. A resume pair: the orchestrator SIGKILLed once prepare_remote has made the key (its
        # console up to then is kept) ...
        first = console(found, "migrate (killed)", esremote(
            "migrate", "-i", inventory, "--yes", server=prefect_server, state_dir=cli_state,
            kill_at={"kind": "note", "step": "phase/prepare_remote", "nth": 1}))
        assert first.returncode == -9, first.stdout[-3000:] + first.stderr[-3000:]
        assert "prepare_remote" in first.stderr, first.stderr
        [found.migrate_run] = [p.name for p in (cli_state / "runs").iterdir()]
        # ... and the run is resumed to the end.
        second = console(found, "migrate --resume", esremote("migrate", "-i", inventory, "--yes", "--resume",
                                                             found.migrate_run, server=prefect_server,
                                                             state_dir=cli_state))
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        found.secrets.update(api_key_forms(local_key(lab)))

        # 2. The rollback of that run.
        back = console(found, "rollback", esremote("rollback", "-i", inventory, found.migrate_run,
                                                   server=prefect_server, state_dir=cli_state))
        assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
        assert "cluster_credentials" not in lab.es("local").cluster.remote_info()[ALIAS]

        # 3. The deployment path with the operator's CA.
        run = start({"inventory": inventory, "certificate_strategy": "provided-ca", "ca_cert_file": str(ca_cert),
                     "ca_key_file": str(ca_key), "ca_passphrase": {"file": str(ca_pass)},
                     "state_dir": str(deploy_state)})
        found.deployment_run = str(run.id)
        done = wait_final(run.id, deployed)
        assert done.state.is_completed(), f"{done.state.type}: {done.state.message}\n{deployed.log_tail()}"
        found.secrets.update(api_key_forms(local_key(lab)))
        check = console(found, "verify", esremote("verify", "-i", inventory, server=prefect_server,
                                                  state_dir=cli_state))
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        found.argv.stop()
    for path in [*cli_state.glob("runs/*/pki/*/p12-password"), *deploy_state.glob("runs/*/pki/*/p12-password")]:
        found.secrets[f"PKCS#12 password ({path.parent.name}, run {path.parents[2].name})"] = forms(path.read_text())
    # The worker sends a run's logs in batches: wait for its last line before reading them back.
    wait_for("the deployment run's last log line on the server",
             lambda: any("Finished in state Completed" in line for line in logs(run.id)), 120, deployed)
    return found


# ------------------------------------------------------------------------------------ the places


def is_secret_store(path: Path) -> bool:
    """Files esremote writes to keep a secret on purpose: their modes are checked, not their content."""
    return (path.name == "p12-password" or path.suffix == ".p12" or path.parent.name == "secrets"
            or (path.name == "ca.key" and path.parent.parent.name == "pki"))


def state_files(evidence: Evidence) -> tuple[dict[str, bytes], list[Path]]:
    searched, stores = {}, []
    for state in evidence.state_dirs:
        for path in sorted(state.rglob("*")):
            if path.is_file():
                if is_secret_store(path):
                    stores.append(path)
                else:
                    searched[f"state file {path.relative_to(state.parent)}"] = path.read_bytes()
    return searched, stores


def prefect_records(url: str) -> dict[str, bytes]:
    """What the server's API gives back: each record (one log line, one artifact, one flow run with
    its parameters and state message, ...) as JSON."""
    found = {}
    for kind in ("logs", "artifacts", "flow_runs", "task_runs", "block_documents", "variables", "deployments"):
        offset = 0
        while True:
            answer = httpx.post(f"{url}/{kind}/filter", json={"limit": API_PAGE, "offset": offset}, timeout=60)
            assert answer.status_code == 200, f"{kind}: {answer.status_code} {answer.text[:500]}"
            page = answer.json()
            for i, record in enumerate(page):
                found[f"prefect {kind}[{offset + i}]"] = json.dumps(record).encode()
            if len(page) < API_PAGE:
                break
            offset += API_PAGE
    return found


def files_under(root: Path, label: str, pattern: str = "*") -> dict[str, bytes]:
    return {f"{label} {p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()}


def places(evidence: Evidence, server_url: str) -> dict[str, bytes]:
    found = {f"console of {name}": text.encode() for name, text in evidence.consoles.items()}
    found.update(files_under(evidence.lab.dir, "lab log", "*.log"))
    found.update(prefect_records(server_url))
    for home in evidence.prefect_homes:
        found.update(files_under(home, f"prefect home {home.name}"))
    found.update(state_files(evidence)[0])
    found.update({f"argv {i}": argv for i, argv in enumerate(sorted(evidence.argv.seen))})
    return found


# ------------------------------------------------------------------------------------ the tests


def kind_of(place: str) -> str:
    """`prefect logs[12]` -> `prefect logs`; `prefect home X file` -> `prefect files`; `argv 3` -> `argv`."""
    if place.startswith("prefect home "):
        return "prefect files"
    return place.split("[")[0] if place.startswith("prefect ") else place.split(" ")[0]


def test_no_secret_in_any_place(evidence, prefect_server):
    searched = places(evidence, prefect_server.url)
    hits = sorted({(place, label) for place, data in searched.items()
                   for label, variants in evidence.secrets.items() if any(v in data for v in variants)})
    hits += [(place, "a private key in clear PEM") for place, data in searched.items() if CLEAR_KEY.search(data)]
    kinds = Counter(kind_of(place) for place in searched)
    print(f"\nsecrets everywhere: {len(evidence.secrets)} secrets ({sum(map(len, evidence.secrets.values()))} forms) "
          f"looked for in {len(searched)} places ({', '.join(f'{k}: {n}' for k, n in sorted(kinds.items()))}); "
          f"argv from {evidence.argv.samples} samples of /proc; {len(hits)} hits")
    assert not hits, "secrets found (place, which secret):\n" + "\n".join(f"{p}: {s}" for p, s in hits)
    # The places are real: the runs' own words are in them, and the sampler saw short-lived commands.
    text = b"\n".join(searched.values())
    assert evidence.migrate_run.encode() in b"".join(v for k, v in searched.items() if k.startswith("prefect logs"))
    assert evidence.deployment_run.encode() in b"".join(v for k, v in searched.items() if k.startswith("prefect "))
    assert b"make-certificates-remote" in searched["console of migrate (killed)"]  # the killed run's words
    assert b"status: migrated" in text
    assert any(b"elasticsearch-keystore" in argv for argv in evidence.argv.seen), "no keystore command was sampled"
    # Each key a run made or reused (its journal names it) was looked for.
    used = {json.loads(line)["data"]["key_id"] for state in evidence.state_dirs
            for line in b"\n".join(p.read_bytes() for p in state.glob("runs/*/journal.jsonl")).decode().splitlines()
            if '"prepare_remote/api-key/' in line and json.loads(line)["kind"] == "done"}
    looked_for = {label.split()[2] for label in evidence.secrets if label.startswith("cross-cluster key ")}
    assert used and used == looked_for, (used, looked_for)


def test_secret_files_on_the_orchestrator_are_0600_and_no_ca_key_is_left_in_clear(evidence):
    _, stores = state_files(evidence)
    kinds = {p.name if p.name in ("p12-password", "ca.key") else p.suffix or p.parent.name for p in stores}
    assert {"p12-password", ".p12", ".cross-cluster-key"} <= kinds, kinds
    loose = [f"{p}: {stat.S_IMODE(p.stat().st_mode):04o}" for p in stores if stat.S_IMODE(p.stat().st_mode) != 0o600]
    loose += [f"{d}: {stat.S_IMODE(d.stat().st_mode):04o}" for p in stores for d in (p.parent,)
              if stat.S_IMODE(d.stat().st_mode) != 0o700]
    assert not loose, loose
    # No CA key in either run: the generated one was deleted once signed, the operator's never copied.
    assert not [p for p in stores if p.name == "ca.key"]


def test_provided_ca_migrates_and_verifies_with_the_operators_ca(evidence):
    lab, ca = evidence.lab, evidence.operator_ca
    [run_dir] = (evidence.deployment_state / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "migrated", summary["message"]
    assert (run_dir / "pki" / "remote" / "ca.crt").read_bytes() == ca.cert_pem()
    # The remote node serves a certificate the operator's CA signed; the local node trusts that CA.
    [remote] = lab.nodes("remote")
    config = Path(remote["home"]) / "config"
    password = load_inventory(lab.inventory).cluster("remote").keystore_password.resolve().get_secret_value()
    p12_password = Keystore.load(config / "elasticsearch.keystore", password).get_string(SERVER_P12_PASSWORD)
    served = load_pkcs12((config / SERVER_P12).read_bytes(), p12_password)
    assert served.cert.issuer == ca.cert.subject and served.trusted["ca"] == ca.cert
    # Every local node trusts that CA, and its link works with the API key, asked at its own address.
    for local in lab.nodes("local"):
        assert ca.cert_pem().decode().strip() in (Path(local["home"]) / "config" / CLIENT_CA).read_text()
        info = lab.es_at(local["name"]).cluster.remote_info().body[ALIAS]
        assert info["connected"] and info["cluster_credentials"] == "::es_redacted::", (local["name"], info)
        hits = lab.es_at(local["name"], user="ccs_user").search(index=f"{ALIAS}:leader-logs", size=0)
        assert hits["hits"]["total"]["value"] > 0, local["name"]
