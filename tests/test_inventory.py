"""Inventory: the example file, merged node views, precise errors, round trips, and fuzzing."""

import io
import os
import re
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from esremote.errors import InventoryError
from esremote.inventory import (
    Auth, Cluster, Inventory, Node, SecretRef, SSHSettings, dump_inventory, load_inventory,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "deployments" / "inventory.example.yml"


def make_site(root: Path) -> str:
    """The example inventory, with its SSH key and CA files present under `root` (which is also HOME)."""
    (root / ".ssh").mkdir(exist_ok=True)
    (root / ".ssh" / "id_ed25519").write_text("not a real key\n")
    (root / "certs").mkdir(exist_ok=True)
    for name in ("local-http-ca.crt", "remote-http-ca.crt"):
        (root / "certs" / name).write_text("not a real certificate\n")
    return site_text()


def site_text() -> str:
    # ca_cert relative to the inventory's directory; key_file stays `~/...`
    return EXAMPLE.read_text().replace("/etc/esremote/", "certs/")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    text = make_site(tmp_path)
    return tmp_path, text


def write(site, text: str) -> Path:
    root, _ = site
    path = root / "inv.yml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def load_error(site, text: str) -> str:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(site, text))
    return str(info.value)


# ---------------------------------------------------------------- the example

def test_example_loads_without_resolving_any_secret(site, monkeypatch):
    monkeypatch.delenv("LOCAL_ES_PASSWORD", raising=False)
    monkeypatch.delenv("REMOTE_ES_PASSWORD", raising=False)
    root, text = site
    monkeypatch.chdir("/")  # relative paths follow the inventory file, not the working directory
    inv = load_inventory(write(site, text))
    local = inv.clusters["local"]
    assert local.name == "local" and local.role == "local"
    assert local.ca_cert == root / "certs" / "local-http-ca.crt"
    assert local.auth.password == SecretRef(env="LOCAL_ES_PASSWORD")
    assert inv.clusters["remote"].remote_cluster_port == 9443
    assert inv.aliases["my_remote"].local == "local"


def test_resolved_nodes_merge_ssh_and_cluster_defaults(site):
    root, text = site
    text = text.replace("    service_user: elasticsearch   # owner",
                        "    ssh: {user: clusteruser, connect_timeout: 3}\n"
                        "    service_user: elasticsearch   # owner")
    text = text.replace("        ssh: {port: 2222}         # per-node override",
                        "        ssh: {port: 2222, user: nodeuser, sudo: false}\n"
                        "        es_home: /opt/es\n        config_dir: /opt/es/config\n"
                        "        restart_command: /opt/es/bin/elasticsearch-service restart")
    inv = load_inventory(write(site, text))
    one, two = inv.nodes("local")
    assert str(one) == "local/es-local-1"
    assert (one.ssh.host, one.ssh.port, one.ssh.user, one.ssh.connect_timeout) == \
        ("es-local-1.example.com", 22, "clusteruser", 3)
    assert one.ssh.key_file == root / ".ssh" / "id_ed25519"          # `~` is HOME
    assert one.ssh.known_hosts == root / ".ssh" / "known_hosts"
    assert one.ssh.sudo is True and one.ssh.trust_on_first_use is False and one.ssh.sudo_password is None
    assert one.es_home == PurePosixPath("/usr/share/elasticsearch")
    assert one.keystore_path == PurePosixPath("/etc/elasticsearch/elasticsearch.keystore")
    assert one.restart_command == "systemctl restart elasticsearch"
    assert (two.ssh.port, two.ssh.user, two.ssh.sudo, two.ssh.connect_timeout) == (2222, "nodeuser", False, 3)
    assert two.es_home == PurePosixPath("/opt/es")
    assert two.keystore_path == PurePosixPath("/opt/es/config/elasticsearch.keystore")
    assert two.yml_path == PurePosixPath("/opt/es/config/elasticsearch.yml")
    assert two.restart_command == "/opt/es/bin/elasticsearch-service restart"
    (remote,) = inv.nodes("remote")
    assert (remote.cluster, remote.role, remote.ssh.user, remote.ssh.port) == ("remote", "remote", "esadmin", 22)
    assert [str(n) for n in inv.nodes()] == ["local/es-local-1", "local/es-local-2", "remote/es-remote-1"]


def test_unset_port_and_user_are_left_to_ssh_config(site):
    _, text = site
    text = text.replace("  user: esadmin\n", "").replace("  port: 22\n", "")
    one, two = load_inventory(write(site, text)).nodes("local")
    assert (one.ssh.port, one.ssh.user) == (None, None)
    assert (two.ssh.port, two.ssh.user) == (2222, None)


def test_ssh_target_resolves_the_sudo_password_only_when_asked(site, monkeypatch):
    from esremote.ssh import SSHTarget

    _, text = site
    text = text.replace("  sudo_password: null ", "  sudo_password: {env: ESR_SUDO}")
    monkeypatch.delenv("ESR_SUDO", raising=False)
    node = load_inventory(write(site, text)).nodes("local")[1]   # loads without the secret
    monkeypatch.setenv("ESR_SUDO", "sudo-S3cret")
    target = node.ssh_target()
    assert isinstance(target, SSHTarget)
    assert (target.host, target.port, target.user, target.name) == \
        ("es-local-2.example.com", 2222, "esadmin", "local/es-local-2")
    assert target.key_file == site[0] / ".ssh" / "id_ed25519"
    assert target.sudo_password.get_secret_value() == "sudo-S3cret"
    assert "sudo-S3cret" not in repr(target) + str(target) + repr(node)


def test_unknown_cluster_name_is_an_inventory_error(site):
    inv = load_inventory(write(site, site[1]))
    with pytest.raises(InventoryError, match="no cluster named 'nope'; the inventory has: local, remote"):
        inv.nodes("nope")


def test_api_key_auth_and_secret_refs_of_every_kind(site):
    _, text = site
    text = text.replace("      username: elastic\n      password: {env: LOCAL_ES_PASSWORD}\n",
                        "      api_key: {prefect: local-es-api-key}\n", 1)
    text = text.replace("  sudo_password: null ", "  sudo_password: {file: secrets/sudo}")
    inv = load_inventory(write(site, text))
    assert inv.clusters["local"].auth == Auth(api_key=SecretRef(prefect="local-es-api-key"))
    assert inv.nodes("local")[0].ssh.sudo_password.file == site[0] / "secrets" / "sudo"


# ---------------------------------------------------------------- errors: one message, file:line: field

ADDRESS = "        address: es-remote-1.example.com\n"


def mutations(text: str):
    """(id, broken text, line finder, field, words the message must hold)."""
    second_node = text.replace(ADDRESS, ADDRESS + "      - name: es-remote-2\n")
    yield ("missing field", second_node, line_of(second_node, "- name: es-remote-2"),
           "clusters.remote.nodes[1].address", "field required; add it")
    bad_port = text.replace("  port: 22", "  port: twenty-two")
    yield ("wrong type", bad_port, line_of(bad_port, "port: twenty-two"), "ssh.port", "valid integer")
    typo = text.replace("        address: es-local-2", "        adress: es-local-2")
    yield ("unknown key", typo, line_of(typo, "adress:"), "clusters.local.nodes[1].adress",
           "unknown key; remove it or fix its spelling; did you mean address? (allowed here: name, address, ssh,")
    dup_key = text.replace("    role: remote\n", "    role: remote\n    role: local\n")
    yield ("duplicate YAML key", dup_key, line_of(dup_key, "role: local", 2), None, "duplicate key 'role'")
    dup_name = text.replace("        address: es-local-2.example.com",
                            "        address: es-local-2.example.com\n      - name: es-local-1\n"
                            "        address: es-local-3.example.com")
    yield ("duplicate node name", dup_name, line_of(dup_name, "- name: es-local-1", 2),
           "clusters.local.nodes[2].name", "duplicate node name 'es-local-1' (also nodes[0])")
    dup_addr = text.replace("        address: es-local-2.example.com", "        address: es-local-1.example.com")
    yield ("duplicate node address", dup_addr, line_of(dup_addr, "address: es-local-1", 2),
           "clusters.local.nodes[1].address", "duplicate node address")
    unknown = text.replace("{local: local, remote: remote}", "{local: local, remote: remot}")
    yield ("alias to unknown cluster", unknown, line_of(unknown, "my_remote:"), "aliases.my_remote.remote",
           "no cluster named 'remot'; use one of: local, remote")
    swapped = text.replace("{local: local, remote: remote}", "{local: remote, remote: local}")
    yield ("alias to cluster of wrong role", swapped, line_of(swapped, "my_remote:"), "aliases.my_remote.local",
           "cluster 'remote' has role remote; the local side of an alias must be a cluster with role: local")
    no_key = text.replace("~/.ssh/id_ed25519", "~/.ssh/id_missing")
    yield ("unreadable SSH key", no_key, line_of(no_key, "key_file:"), "ssh.key_file",
           "SSH private key")
    node_key = text.replace("ssh: {port: 2222}", "ssh: {port: 2222, key_file: certs}")
    yield ("SSH key is a directory", node_key, line_of(node_key, "key_file: certs"),
           "clusters.local.nodes[1].ssh.key_file", "is not a readable file")
    no_ca = text.replace("certs/remote-http-ca.crt", "certs/nope.crt")
    yield ("unreadable CA file", no_ca, line_of(no_ca, "certs/nope.crt"), "clusters.remote.ca_cert",
           "CA certificate")
    syntax = text.replace("    role: remote\n", "    role: [remote\n")
    yield ("YAML syntax error", syntax, None, None, "invalid YAML")
    both = text.replace("      username: elastic\n", "      username: elastic\n      api_key: {env: K}\n", 1)
    yield ("both auth methods", both, line_of(both, "auth:"), "clusters.local.auth", "not both")
    relative = text.replace("    es_home: /usr/share/elasticsearch", "    es_home: usr/share/elasticsearch", 1)
    yield ("relative node path", relative, line_of(relative, "es_home: usr"), "clusters.local.es_home",
           "must be an absolute path on the node")
    bad_role = text.replace("    role: remote", "    role: fulfilling")
    yield ("bad role", bad_role, line_of(bad_role, "role: fulfilling"), "clusters.remote.role", "'local' or 'remote'")
    bad_url = text.replace("[https://es-remote-1.example.com:9200]", "[es-remote-1:9200]")
    yield ("bad url", bad_url, line_of(bad_url, "urls:", 2), "clusters.remote.urls", "https://host:9200")
    int_key = text.replace("  remote:  ", "  2024:  ")
    yield ("non-text key", int_key, line_of(int_key, "2024:"), "clusters", "keys must be text")


CASES = list(mutations(site_text()))


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_bad_inventory_gives_one_precise_message(site, case):
    _, text = site
    name, broken, line, field, words = list(mutations(text))[case]
    assert broken != text, f"the mutation for {name} did not apply"
    message = load_error(site, broken)
    prefix = f"{site[0] / 'inv.yml'}:"
    assert message.startswith(prefix), message
    if line is not None:
        assert message.startswith(f"{prefix}{line}: "), message
    else:
        assert re.match(re.escape(prefix) + r"\d+: ", message), message
    if field is not None:
        assert f": {field}: " in message, message
    assert words in message, message
    assert "\n" not in message


def test_a_literal_password_is_refused_and_not_echoed(site):
    _, text = site
    message = load_error(site, text.replace("password: {env: LOCAL_ES_PASSWORD}", "password: hunter2-secret"))
    assert "clusters.local.auth.password: a secret must be a reference" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("content, words", [
    ("", "the inventory is empty"),
    ("- just\n- a list\n", "must be a mapping"),
    ("clusters: &x {c: *x}\n", "clusters.c: "),  # a self-referring alias
    ("l0: &l0 [x, x, x, x, x, x, x, x, x]\n"  # "billion laughs": aliases that expand to 9**9 items
     + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)),
     "too large or too deeply nested"),
    ("ssh: {}\n", "clusters: field required"),
    ("clusters: {c: {restart_command: \"restart\\nrm -rf /\"}}\n", "clusters.c.restart_command: must be one line of text"),
])
def test_degenerate_documents(site, content, words):
    assert words in load_error(site, content)


def test_missing_and_non_utf8_inventory_files(site, tmp_path):
    with pytest.raises(InventoryError, match=r"nope\.yml: cannot read the inventory"):
        load_inventory(tmp_path / "nope.yml")
    path = tmp_path / "latin1.yml"
    path.write_bytes(b"ssh: {user: \xe9}\n")
    with pytest.raises(InventoryError, match="not UTF-8"):
        load_inventory(path)


def test_merge_keys_and_anchors_are_followed(site):
    _, text = site
    text = text.replace("      - name: es-remote-1\n" + ADDRESS,
                        "      - &n1 {name: es-remote-1, address: es-remote-1.example.com}\n"
                        "      - {<<: *n1, name: es-remote-2, address: es-remote-2.example.com}\n")
    inv = load_inventory(write(site, text))
    assert [n.address for n in inv.nodes("remote")] == ["es-remote-1.example.com", "es-remote-2.example.com"]


# ---------------------------------------------------------------- programmatic use and dumping

def test_models_check_consistency_when_built_in_code():
    node = Node(name="n1", address="127.0.0.1")
    with pytest.raises(ValueError, match="duplicate node name"):
        Inventory(clusters={"c": Cluster(role="local", urls=["https://127.0.0.1:9200"],
                                         auth=Auth(username="elastic", password=SecretRef(env="P")),
                                         nodes=[node, node])})


def test_dump_round_trips_the_example(site):
    inv = load_inventory(write(site, site[1]))
    again = site[0] / "again.yml"
    again.write_text(dump_inventory(inv))
    assert load_inventory(again) == inv


def test_dump_round_trips_an_inventory_built_in_code(tmp_path):
    """What the lab does: build the models, write inventory.yml, and esremote reads it."""
    key = tmp_path / "ssh" / "id_ed25519"
    key.parent.mkdir()
    key.write_text("k\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("c\n")
    clusters = {}
    for k, (name, role) in enumerate([("alpha", "local"), ("beta", "remote")], 1):
        clusters[name] = Cluster(
            role=role, urls=[f"https://127.0.{k}.1:9200"], ca_cert=ca,
            auth=Auth(username="elastic", password=SecretRef(file=tmp_path / f"{name}.pw")),
            es_home=PurePosixPath(f"/lab/{name}/n1"), restart_command="bin/elasticsearch-service restart",
            nodes=[Node(name=f"{name}-{i}", address=f"127.0.{k}.{i}", es_home=PurePosixPath(f"/lab/{name}/{i}"),
                        config_dir=PurePosixPath(f"/lab/{name}/{i}/config")) for i in (1, 2)])
    inv = Inventory(ssh=SSHSettings(user="lab", port=2222, key_file=key, trust_on_first_use=True),
                    clusters=clusters, aliases={"beta": {"local": "alpha", "remote": "beta"}})
    path = tmp_path / "inventory.yml"
    path.write_text(dump_inventory(inv))
    loaded = load_inventory(path)
    assert loaded == inv
    assert loaded.nodes("beta")[1].keystore_path == PurePosixPath("/lab/beta/2/config/elasticsearch.keystore")
    assert "name: alpha\n" not in path.read_text()  # a cluster's name is its key


# ---------------------------------------------------------------- fuzzing: Inventory or InventoryError, nothing else

@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(root)
    yield root, make_site(root)
    if old_home is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old_home


def _load_or_error(root: Path, text: str):
    path = root / "fuzz.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        inv = load_inventory(path)
    except InventoryError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        return None
    # whatever loads also survives a round trip through dump_inventory
    again = root / "fuzz-again.yml"
    again.write_text(dump_inventory(inv))
    assert load_inventory(again) == inv
    return inv


SCHEMA_WORDS = ["ssh", "clusters", "aliases", "local", "remote", "role", "urls", "nodes", "name", "address",
                "auth", "username", "password", "api_key", "env", "file", "prefect", "port", "user",
                "key_file", "es_home", "config_dir", "sudo", "sudo_password", "ca_cert"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(SCHEMA_WORDS))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(SCHEMA_WORDS), st.text(max_size=8)),
                                            inner, max_size=5)),
    max_leaves=30)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _yaml_text(data) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, out)
    return out.getvalue()


@FUZZ
@given(data=documents)
def test_fuzz_random_yaml_documents(fuzz_site, data):
    _load_or_error(fuzz_site[0], _yaml_text(data))


@FUZZ
@given(text=st.text(max_size=200))
def test_fuzz_random_text(fuzz_site, text):
    _load_or_error(fuzz_site[0], text)


def _paths(data, loc=()):
    yield loc
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, loc + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, loc + (i,))


@FUZZ
@given(choice=st.data())
def test_fuzz_mutations_of_the_example(fuzz_site, choice):
    root, text = fuzz_site
    data = YAML(typ="safe", pure=True).load(text)
    paths = [p for p in _paths(data) if p]
    for _ in range(choice.draw(st.integers(1, 3), label="mutations")):
        loc = choice.draw(st.sampled_from(paths), label="where")
        parent = data
        try:
            for part in loc[:-1]:
                parent = parent[part]
            action = choice.draw(st.sampled_from(["delete", "replace"]), label="action")
            if action == "delete":
                del parent[loc[-1]]
            else:
                parent[loc[-1]] = choice.draw(documents, label="value")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    mutated = _yaml_text(data)
    if choice.draw(st.booleans(), label="garble"):
        lines = mutated.splitlines()
        at = choice.draw(st.integers(0, len(lines)), label="line")
        lines.insert(at, choice.draw(st.text(max_size=30), label="text"))
        mutated = "\n".join(lines)
    _load_or_error(root, mutated)


def test_fuzz_keeps_the_unmutated_example_valid(fuzz_site):
    root, text = fuzz_site
    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(_load_or_error(root, _yaml_text(data)), Inventory)


printable = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"))
names = st.text(printable, min_size=1, max_size=12).filter(
    lambda s: re.fullmatch(r"\S+", s) is not None)
texts = st.text(printable, min_size=1, max_size=20)
abs_paths = st.lists(names.filter(lambda s: "/" not in s and s not in (".", "..")), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts))
refs = st.one_of(st.builds(SecretRef, env=names), st.builds(SecretRef, prefect=names),
                 st.builds(SecretRef, file=abs_paths.map(Path)))
ssh_settings = st.builds(
    SSHSettings, user=st.none() | names, port=st.none() | st.integers(1, 65535),
    known_hosts=st.none() | abs_paths.map(Path), trust_on_first_use=st.none() | st.booleans(),
    sudo=st.none() | st.booleans(), sudo_password=st.none() | refs,
    connect_timeout=st.none() | st.floats(min_value=1e-3, max_value=1e6))


@st.composite
def inventories(draw):
    cluster_names = draw(st.lists(names, min_size=2, max_size=3, unique=True))
    clusters = {}
    for i, cname in enumerate(cluster_names):
        node_names = draw(st.lists(names, min_size=1, max_size=3, unique=True))
        clusters[cname] = Cluster(
            role="local" if i == 0 else "remote",
            urls=[f"https://{draw(st.from_regex(r'[a-z][a-z0-9.-]{0,10}', fullmatch=True))}:9200"],
            auth=draw(st.one_of(st.builds(Auth, username=names, password=refs), st.builds(Auth, api_key=refs))),
            restart_command=draw(texts), keystore_password=draw(st.none() | refs),
            ssh=draw(st.none() | ssh_settings),
            nodes=[Node(name=n, address=f"{n}.{cname}.addr", ssh=draw(st.none() | ssh_settings),
                        service_user=draw(st.none() | names),
                        config_dir=draw(st.none() | abs_paths.map(PurePosixPath))) for n in node_names])
    aliases = {draw(names): {"local": cluster_names[0], "remote": cluster_names[1]}}
    return Inventory(ssh=draw(ssh_settings), clusters=clusters, aliases=aliases)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inv=inventories())
def test_dump_then_load_gives_back_any_inventory(fuzz_site, inv):
    path = fuzz_site[0] / "generated.yml"
    path.write_text(dump_inventory(inv), encoding="utf-8")
    assert load_inventory(path) == inv


# ---------------------------------------------------------------- a loaded inventory reaches a real node

def test_a_node_of_a_loaded_inventory_is_reachable_over_ssh(ssh_server, tmp_path):
    from esremote.ssh import SSHConnection

    ca = tmp_path / "ca.crt"
    ca.write_text("c\n")
    path = tmp_path / "inv.yml"
    path.write_text(f"""\
ssh: {{user: {ssh_server.user}, key_file: {ssh_server.key_file}, known_hosts: {ssh_server.known_hosts}}}
clusters:
  one:
    role: local
    urls: [https://{ssh_server.host}:9200]
    ca_cert: ca.crt
    auth: {{api_key: {{env: ESR_UNUSED}}}}
    nodes:
      - {{name: n1, address: {ssh_server.host}, ssh: {{port: {ssh_server.port}}}}}
""")
    (node,) = load_inventory(path).nodes("one")
    with SSHConnection(node.ssh_target()) as conn:
        result = conn.run("echo reached")
    assert result.ok and result.stdout.strip() == "reached"


def test_secret_reference_names_that_yaml_would_misread_round_trip(tmp_path):
    # Found by the round-trip property: `{env: ?0}` is not valid YAML in a flow mapping.
    inv = Inventory(
        ssh=SSHSettings(sudo_password=SecretRef(env="?0")),
        clusters={"l": Cluster(role="local", urls=["https://a:9200"],
                               auth=Auth(username="u", password=SecretRef(prefect="- x: y")),
                               nodes=[Node(name="n", address="a")]),
                  "r": Cluster(role="remote", urls=["https://b:9200"],
                               auth=Auth(api_key=SecretRef(env="{a}")), nodes=[Node(name="n", address="b")])},
        aliases={"x": {"local": "l", "remote": "r"}})
    path = tmp_path / "inv.yml"
    path.write_text(dump_inventory(inv), encoding="utf-8")
    assert load_inventory(path) == inv
