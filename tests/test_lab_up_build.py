"""What `lab up` builds, checked on the files themselves (no node runs here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from esremote import pki
from esremote.errors import ConfigError
from esremote.esyml import EsYml
from esremote.inventory import load_inventory
from esremote.keystore import Keystore, format_version, has_password
from esremote.lab.ops import builder, labfiles, sshlab
from esremote.lab.ops.builder import LabOptions


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    layout = builder.build(tmp_path_factory.mktemp("built") / "lab",
                           LabOptions(local_nodes=2, remote_nodes=1, remotes=2, net=42))
    sshlab.prepare(layout)
    labfiles.write_lab_json(layout)
    labfiles.write_inventory(layout)
    return layout


def secret(path: Path) -> str:
    return path.read_text().splitlines()[0]


def test_names_and_addresses_follow_the_architecture(built):
    assert [(n.name, n.ip) for n in built.nodes()] == [
        ("local-0", "127.42.1.1"), ("local-1", "127.42.1.2"), ("remote-0", "127.42.2.1"),
        ("remote2-0", "127.42.3.1")]
    assert built.aliases() == {"my_remote": "remote", "my_remote2": "remote2"}
    home = built.node("local-1").home
    assert home == built.dir / "clusters" / "local" / "nodes" / "local-1"
    for sub in ("bin", "lib", "config/certs", "data", "logs"):
        assert (home / sub).is_dir()


def test_yml_is_the_certificate_model(built):
    node = built.node("local-1")
    yml = EsYml.load(node.home / "config" / "elasticsearch.yml").flat()
    assert yml["cluster.name"] == "local" and yml["node.name"] == "local-1"
    assert yml["network.host"] == "127.42.1.2" and yml["http.port"] == 9200 and yml["transport.port"] == 9300
    assert yml["discovery.seed_hosts"] == ["127.42.1.1:9300", "127.42.1.2:9300"]
    assert yml["xpack.security.enabled"] is True
    assert yml["xpack.security.transport.ssl.keystore.path"] == "certs/transport.p12"
    assert yml["xpack.security.http.ssl.keystore.path"] == "certs/http.p12"
    assert yml["xpack.license.self_generated.type"] == "trial"
    assert not any(k.startswith(("cluster.remote.", "remote_cluster")) for k in yml)
    assert not any("secure" in k for k in yml)


def test_keystore_opens_the_p12_files_with_the_node_names_as_sans(built):
    node = built.node("remote-0")
    keystore = Keystore.load(node.home / "config" / "elasticsearch.keystore")
    assert keystore.names() == sorted(["keystore.seed", "bootstrap.password", *builder.P12_SETTINGS])
    assert keystore.get_string("bootstrap.password") == secret(built.elastic_password_file("remote"))
    assert format_version(node.home / "config" / "elasticsearch.keystore") == 6  # 8.17 writes format 6
    for name, setting in (("http", builder.P12_SETTINGS[0]), ("transport", builder.P12_SETTINGS[1])):
        contents = pki.load_pkcs12((node.home / "config" / "certs" / f"{name}.p12").read_bytes(),
                                   keystore.get_string(setting))
        assert contents.name == "remote-0" and set(contents.trusted) == {"ca"}
        san = contents.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.42.2.1"]
        assert "remote-0" in san.get_values_for_type(x509.DNSName)


def test_one_transport_ca_for_every_cluster(built):
    def transport_ca(node):
        password = secret(built.secret_file(f"{node.cluster}-p12-password"))
        return pki.load_pkcs12((node.home / "config/certs/transport.p12").read_bytes(), password).trusted["ca"]

    cas = {pki.cert_fingerprint(transport_ca(n)) for n in built.nodes()}
    assert len(cas) == 1
    assert transport_ca(built.node("local-0")) == x509.load_pem_x509_certificate(built.transport_ca.read_bytes())


def test_openssl_reads_the_p12_with_the_password_from_a_file(built):
    node = built.node("local-0")
    password_file = built.secret_file("local-p12-password")
    result = subprocess.run(["openssl", "pkcs12", "-in", str(node.home / "config/certs/http.p12"),
                             "-passin", f"file:{password_file}", "-nokeys", "-clcerts"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "subject=CN = local-0" in result.stdout


def test_secrets_are_0600_files(built):
    files = list(built.secrets_dir.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(built.secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((built.pki_dir / "http-ca.key").stat().st_mode) == 0o600


def test_bin_scripts_run_this_python_on_the_lab_modules(built):
    home = built.node("local-0").home
    for name, module in (("elasticsearch", "esremote.lab.node"), ("elasticsearch-service", "esremote.lab.node.service"),
                         ("elasticsearch-keystore", "esremote.lab.tools.keystore_cli"),
                         ("elasticsearch-certutil", "esremote.lab.tools.certutil_cli")):
        script = home / "bin" / name
        assert os.access(script, os.X_OK)
        assert sys.executable in script.read_text() and module in script.read_text()
    listed = subprocess.run([str(home / "bin" / "elasticsearch-keystore"), "list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "bootstrap.password" in listed.stdout.split()
    info = json.loads((home / "lib" / "lab-node.json").read_text())
    assert info == {"version": "8.17.0", "cluster": "local", "license": "trial",
                    "state_dir": str(built.dir / "clusters/local/state"), "control_dir": str(built.control_dir),
                    "start_delay": 0.0, "keystore_passphrase_file": None,
                    "user": "elasticsearch" if os.geteuid() == 0 else None}


def test_known_hosts_holds_every_endpoint(built):
    lines = sshlab.known_hosts(built).read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"[{n.ip}]:2222" for n in built.nodes()]
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(sshlab.key_file(built))], capture_output=True, text=True)
    assert keygen.returncode == 0 and "ED25519" in keygen.stdout


def test_inventory_loads_and_points_at_the_lab(built):
    inventory = load_inventory(built.inventory)
    assert list(inventory.clusters) == ["local", "remote", "remote2"]
    assert {a: (l.local, l.remote) for a, l in inventory.aliases.items()} == \
        {"my_remote": ("local", "remote"), "my_remote2": ("local", "remote2")}
    node = inventory.nodes("remote2")[0]
    assert node.address == "127.42.3.1" and node.ssh.port == 2222
    assert str(node.config_dir) == str(built.node("remote2-0").home / "config")
    assert inventory.clusters["local"].ca_cert == built.http_ca
    assert inventory.clusters["local"].keystore_password is None


@pytest.mark.parametrize("options, check", [
    (dict(alias_in_yml=True), lambda y: y["cluster.remote.my_remote.proxy_address"] == "127.43.2.1:9300"),
    (dict(alias_in_yml=True, mode="sniff", remote_nodes=2),
     lambda y: y["cluster.remote.my_remote.seeds"] == ["127.43.2.1:9300", "127.43.2.2:9300"]
     and y["cluster.remote.my_remote.mode"] == "sniff"),
    (dict(license="basic"), lambda y: y["xpack.license.self_generated.type"] == "basic"),
    (dict(license="enterprise"), lambda y: y["xpack.license.self_generated.type"] == "basic"),
])
def test_options_shape_the_local_yml(tmp_path, options, check):
    """The yml the builder writes for each "before" state (built by `build`, checked above)."""
    layout = builder.plan(tmp_path / "lab", LabOptions(local_nodes=1, remote_nodes=options.pop("remote_nodes", 1),
                                                       net=43, **options))
    assert check(EsYml.parse(builder.node_yml(layout, layout.local, layout.node("local-0"))).flat())


def test_keystore_password_option_and_old_versions(tmp_path):
    layout = builder.build(tmp_path / "lab", LabOptions(local_nodes=1, remote_nodes=1, keystore_password=True,
                                                        version="8.13.4", net=44))
    path = layout.node("local-0").home / "config" / "elasticsearch.keystore"
    assert has_password(path) and format_version(path) == 5  # 8.13 writes format 5
    password_file = layout.keystore_password_file("local")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert "bootstrap.password" in Keystore.load(path, secret(password_file))
    info = json.loads((layout.node("local-0").home / "lib" / "lab-node.json").read_text())
    assert info["keystore_passphrase_file"] == str(password_file) and info["version"] == "8.13.4"


@pytest.mark.parametrize("options, message", [
    (dict(local_nodes=0), "--local-nodes: 0 is out of range"),
    (dict(version="8.9.0"), "the lab plays 8.10.0 to 9.x"),
    (dict(version="eight"), "is not a version"),
    (dict(license="gold"), "is not a licence"),
    (dict(mode="ring"), "--mode: 'ring' is not valid"),
    (dict(net=300), "--net: 300 is out of range"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        builder.build(tmp_path / "lab", LabOptions(**options))
    assert not (tmp_path / "lab").exists()
