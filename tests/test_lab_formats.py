"""The lab's own file formats (esremote/lab/formats): read as Elasticsearch reads, written as it writes.

The lab must never read with the code esremote writes with, so besides unit tests these tests make
the two implementations meet: real files from Elasticsearch, files esremote writes read by the lab
and the other way round, and every shared elasticsearch.yml read by both readers (where they differ,
the expected difference is written down per file with the Elasticsearch source that decides it).
This test module may import both sides; the lab may not (test_lab_imports.py).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from esremote.lab.formats import certs, keystore, pem, pkcs12, placeholders, yml
from tests.fixtures import java

YML_DIR = "elasticsearch-yml"


# ============================================================================ elasticsearch.yml


def parse(text: str) -> dict:
    return yml.parse_settings(text)


def refusal(text: str, environ: dict | None = None) -> yml.YmlFormatError:
    with pytest.raises(yml.YmlFormatError) as caught:
        read_text(text, environ)
    return caught.value


def read_text(text: str, environ: dict | None = None) -> dict:
    """Read `text` as a node reads its config/elasticsearch.yml (no environment unless given)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "elasticsearch.yml"
        path.write_text(text)
        return yml.read_settings(path, environ or {})


def test_flat_nested_and_mixed_give_the_same_settings():
    flat = parse("xpack.security.transport.ssl.enabled: true\nxpack.security.transport.ssl.keystore.path: a.p12\n")
    nested = parse("xpack:\n  security:\n    transport:\n      ssl:\n        enabled: true\n"
                   "        keystore:\n          path: a.p12\n")
    mixed = parse("xpack.security:\n  transport.ssl:\n    enabled: true\n    keystore.path: a.p12\n")
    assert flat == nested == mixed == {"xpack.security.transport.ssl.enabled": "true",
                                       "xpack.security.transport.ssl.keystore.path": "a.p12"}


def test_a_key_given_flat_and_nested_is_not_refused_the_later_wins():
    """Settings.fromXContent (8.x) puts both into one map; only 5.x/6.x refused with 'duplicate
    settings key [a.b] found at line number ...'."""
    assert parse("a.b: 1\na:\n  b: 2\n") == {"a.b": "2"}
    assert parse("a:\n  b: 2\na.b: 1\n") == {"a.b": "1"}


def test_a_key_twice_in_one_map_is_refused_by_jackson():
    error = refusal("a: 1\nb: 2\na: 3\n")
    assert (error.exception, error.line) == (yml.SETTINGS_EXCEPTION, 3)
    assert error.message == "Failed to load settings from [elasticsearch.yml]: Duplicate field 'a'"
    assert "Duplicate field 'b'" in refusal("a:\n  b: 1\n  b: 2\n").message


def test_a_null_value_is_refused_with_elasticsearchs_position():
    """SettingsTests.testMissingValue: `foo: # missing value` -> line [1], column [5]."""
    error = refusal("foo: # missing value\n")
    assert error.exception == yml.PARSE_EXCEPTION
    assert error.message == "null-valued setting found for key [foo] found at line number [1], column number [5]"
    assert "key [a.b]" in refusal("a:\n  b: ~\n").message
    assert "key [a]" in refusal("a: null\n").message


def test_empty_files_have_no_settings_but_an_empty_document_is_refused():
    assert read_text("") == {} and read_text("# only comments\n\n") == {}
    error = refusal("---\n")
    assert error.message.endswith("expecting token of type [START_OBJECT] but found [VALUE_NULL]")
    assert refusal("- a\n").message.endswith("but found [START_ARRAY]")


def test_values_are_kept_as_text_and_yaml11_booleans_become_true_or_false():
    settings = parse("port: 9_200\nratio: 1e3\nhex: 0x1F\nday: 2001-12-14\nt: True\ny: yes\noff: Off\n"
                     "quoted: 'yes'\nlist: [yes, 'no', 9200, true]\nempty: []\n")
    assert settings == {"port": "9_200", "ratio": "1e3", "hex": "0x1F", "day": "2001-12-14", "t": "true",
                        "y": "true", "off": "false", "quoted": "yes", "list": ["yes", "no", "9200", "true"],
                        "empty": []}


def test_an_alias_reads_as_its_anchor_name_as_jackson_reads_it():
    assert parse("a: &shared value\nb: *shared\n") == {"a": "value", "b": "shared"}


def test_numbered_keys_become_a_list_unless_the_list_key_is_set_too():
    assert parse("hosts.0: a\nhosts.1: b\n") == {"hosts": ["a", "b"]}
    assert parse("hosts:\n  '0': a\n  '1': b\n") == {"hosts": ["a", "b"]}
    error = refusal("hosts: x\nhosts.0: a\n")
    assert error.message.endswith("settings builder can't contain values for [hosts=x] and [hosts.0=a]")


def test_only_value_lists_are_allowed():
    for text in ("a: [1, null]\n", "a:\n  - b: 1\n", "a: [[1]]\n"):
        assert refusal(text).message.endswith("only value lists are allowed in serialized settings"), text


def test_anything_after_the_settings_is_malformed():
    error = refusal("a: 1\n---\nb: 2\n")
    assert error.exception == yml.PARSE_EXCEPTION and error.line == 3
    assert error.message == ("malformed, expected end of settings but encountered additional content "
                             "starting at line number: [3], column number: [1]")


def test_yaml_syntax_errors_and_bytes_that_are_not_utf8(tmp_path):
    error = refusal("a:\n\tb: 1\n")
    assert error.message.startswith("Failed to load settings from [elasticsearch.yml]: ") and error.line == 2
    path = tmp_path / "elasticsearch.yml"
    path.write_bytes(b"a: b\nc: \xff\n")
    with pytest.raises(yml.YmlFormatError) as caught:
        yml.read_settings(path, {})
    assert caught.value.message == (f"Failed to load settings from {path}: "
                                    "java.nio.charset.MalformedInputException: Input length = 1")


def test_line_breaks_are_read_like_java_reads_lines():
    assert read_text("a: 1\r\nb: 2\rc: 3") == {"a": "1", "b": "2", "c": "3"}


# ------------------------------------------------------------------------------- placeholders


def test_environment_variables_are_substituted_as_text_before_parsing():
    """InternalSettingsPreparer.loadConfigWithSubstitutions (PR #85186): a variable may even hold
    YAML, e.g. the items of a flow list."""
    env = {"HOST": "10.0.0.1", "ROLES": "master, data"}
    assert read_text("network.host: ${HOST}\nnode.roles: [${ROLES}]\n", env) == {
        "network.host": "10.0.0.1", "node.roles": ["master", "data"]}


def test_a_default_is_used_even_when_the_environment_has_the_variable():
    """The textual pass looks up a variable named `HOST:localhost`; the settings pass then finds no
    setting HOST and takes the default."""
    assert read_text("network.host: ${HOST:localhost}\n", {"HOST": "10.0.0.1"}) == {"network.host": "localhost"}


def test_placeholders_may_name_other_settings():
    assert read_text("cluster.name: lab\npath.logs: /var/log/${cluster.name}\n") == {
        "cluster.name": "lab", "path.logs": "/var/log/lab"}


def test_an_unresolvable_placeholder_stops_the_node():
    error = refusal("node.name: ${NODE_NAME}\n")
    assert (error.exception, error.message) == (yml.ILLEGAL_ARGUMENT, "Could not resolve placeholder 'NODE_NAME'")


def test_a_value_that_resolves_to_nothing_removes_its_setting():
    assert read_text("a: ${X:}\nb: ''\nc: ['${X:}']\nd: kept\n") == {"c": [""], "d": "kept"}


def test_placeholder_resolution_quirks_are_elasticsearchs():
    def lookup(name):
        return {"a": "A", "loop": "${loop}"}.get(name)
    assert placeholders.replace("${a}-${b:B}-${${a}x:nested}", lookup) == "A-B-nested"
    assert placeholders.replace("${prompt.secret} ${unknown}", lookup) == "${prompt.secret} ${unknown}"
    with pytest.raises(placeholders.PlaceholderError, match="Circular placeholder reference 'loop'"):
        placeholders.replace("${loop}", lookup)
    # PropertyPlaceholder forgets `b`, not `b:x`, after resolving it: the second one reads as circular.
    with pytest.raises(placeholders.PlaceholderError, match=r"Circular placeholder reference 'b:x'"):
        placeholders.replace("${b:x}/${b:x}", lookup)


def test_substitution_leaves_a_placeholder_without_its_closing_brace():
    assert placeholders.substitute_environment("a: ${X\nb: ${X}${Y}\n", {"X": "1"}) == "a: ${X\nb: 1${Y}\n"


# ------------------------------------------------------------- the shared yml files, both readers

SAME = ("same settings",)
BOTH_REFUSE = ("both readers refuse",)


def lab_differs(values: dict[str, tuple]) -> tuple:
    """Both read the file; these settings differ as (lab's = Elasticsearch's value, esremote's)."""
    return ("lab reads differently", values)


def only_the_lab_refuses(fragment: str) -> tuple:
    return ("only the lab refuses", fragment)


# `on` is a YAML 1.1 boolean for Jackson 2.x + SnakeYAML 1.x (YAMLParser._decodeScalar), so
# Elasticsearch stores "true"; esremote reads YAML 1.2 core scalars and keeps "on".
_ON = {f"script.engine.groovy.inline.{k}": ("true", "on") for k in ("aggs", "search", "update")}

EXPECTED_YML = {
    "001-jakelandis-es-docker-cross-cluster-with-kibana.yml": SAME,
    "002-jakelandis-es-docker-cross-cluster-with-kibana.yml": SAME,
    "003-bartlabno-cross-cluster-elasticsearch.yml": SAME,
    "004-beshu-tech-ror-sandbox.yml": SAME,
    "005-beshu-tech-ror-sandbox.yml": SAME,
    "006-evermight-elasticsearch-install.yml": SAME,
    "007-ciokma-elasticsearchv8.yml": SAME,
    "008-adylimmo-Multi-Node-ELK-8-With-Ansible.yml": SAME,
    "009-chenyongze-es-search-app.yml": SAME,
    "010-pires-docker-elasticsearch.yml": SAME,
    "011-18F-docker-elasticsearch.yml": SAME,
    "012-mozilla-metrics-bagheera.yml": SAME,
    "013-fulln-docker-develop-env.yml": SAME,
    "014-Devex-elasticsearch-beanstalk.yml": lab_differs(_ON),
    "015-mar-kolya-kubernetes-elasticsearch.yml": SAME,
    "016-huazhicai-install.yml": BOTH_REFUSE,       # network.host with no value
    "017-hacwa-Centos8_ELK.yml": SAME,
    "018-a982338665-SearchEngines.yml": SAME,
    "019-ctangarife-elk-umanizales-seguridad.yml": BOTH_REFUSE,  # `[${NODE_ROLES}]` unsubstituted
    "020-lihuashiyu-bigdata-deploy.yml": BOTH_REFUSE,            # `[${elasticsearch_host_ports}]`
    "021-goldcomru-diplom-sys.yml": SAME,
    "022-AllenKings-elasticsearch-cluster.yml": BOTH_REFUSE,     # `*` starts an alias
    "023-ms-geeky-cowrie-elk-stack.yml": SAME,
    "024-limitlessv2-windows_elasticsearch.yml": SAME,
    "025-sscarduzio-elasticsearch-readonlyrest-plugin.yml": SAME,
    "026-Devex-elasticsearch-beanstalk.yml": SAME,
    "027-zywayh-docker.yml": SAME,
    "028-AlanNggg-docker-elk-tls-8.7.yml": SAME,
    "029-evaristorivi-Proyecto_final-ELK-Stack-Opendistro.yml": SAME,
    "030-tornis-elastic.yml": SAME,
    "031-djohnii-p7-office.yml": SAME,
    "032-CBNU-BigDataLab-elasticsearch-configuration.yml": SAME,
    "033-sequenceiq-docker-baywatch.yml": SAME,
    "034-saidsef-elasticsearch-containerised.yml": SAME,
    "035-chenglongcl-clDocker.yml": SAME,
    "036-117503445-elasticsearch-deploy.yml": SAME,
    "037-Alliander-docker-elasticsearch.yml": SAME,
    "038-sscarduzio-elasticsearch-readonlyrest-plugin.yml": SAME,
    # readonlyrest's access_control_rules is a list of maps: Settings.fromXContent accepts value
    # lists only (IllegalStateException), so Elasticsearch 8 does not start with this file.
    "039-sscarduzio-readonlyrest-cluster-example.yml": only_the_lab_refuses(
        "only value lists are allowed in serialized settings"),
    "040-hyunleehyun-Elastic-ELK-7.4.2.yml": SAME,
}


def _es_text(value):
    """esremote's typed value as Elasticsearch would hold it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_es_text(v) for v in value]
    return str(value)


def _esremote_flat(path: Path):
    from esremote.errors import YmlError
    from esremote.esyml import EsYml
    try:
        return {k: _es_text(v) for k, v in EsYml.load(path).flat().items()}
    except YmlError:
        return None


def test_every_shared_yml_file_has_an_expected_outcome(testdata):
    assert sorted(EXPECTED_YML) == sorted(p.name for p in (testdata / YML_DIR).glob("*.yml"))


@pytest.mark.parametrize("name", sorted(EXPECTED_YML))
def test_shared_yml_files_read_by_both_readers(testdata, name):
    path = testdata / YML_DIR / name
    try:
        lab = yml.parse_settings(path.read_text(encoding="utf-8"), name)
        lab_error = None
    except yml.YmlFormatError as exc:
        lab, lab_error = None, exc.message
    ours = _esremote_flat(path)
    outcome = EXPECTED_YML[name]
    if outcome == SAME:
        assert lab is not None and lab == ours
    elif outcome == BOTH_REFUSE:
        assert lab is None and ours is None, lab_error
    elif outcome[0] == "only the lab refuses":
        assert lab is None and outcome[1] in lab_error and ours is not None
    else:
        differences = {k: (lab.get(k), ours.get(k)) for k in set(lab) | set(ours) if lab.get(k) != ours.get(k)}
        assert differences == outcome[1]


def test_placeholder_files_read_with_their_environment(testdata):
    """With every variable set, even the files whose flow lists hold `${...}` load (019, 020):
    Elasticsearch substitutes before it parses."""
    for path in sorted((testdata / YML_DIR).glob("*.yml")):
        names = {n.split(":")[0] for n in re.findall(r"\$\{([^}]*)\}", path.read_text())} - {"..."}
        if not names:
            continue
        settings = yml.read_settings(path, {n: f"value-of-{n}" for n in names})
        assert not any("${" in str(v) for v in settings.values()), path.name
    roles = yml.read_settings(testdata / YML_DIR / "019-ctangarife-elk-umanizales-seguridad.yml",
                              {"NODE_NAME": "n1", "NODE_ROLES": "master, data"})
    assert roles["node.roles"] == ["master", "data"]
    processors = yml.read_settings(testdata / YML_DIR / "010-pires-docker-elasticsearch.yml",
                                   {n: "x" for n in ("CLUSTER_NAME", "NODE_MASTER", "NODE_NAME", "NODE_DATA",
                                                     "NODE_INGEST", "MAX_LOCAL_STORAGE_NODES", "NETWORK_HOST",
                                                     "REPO_LOCATIONS", "MEMORY_LOCK", "HTTP_ENABLE",
                                                     "HTTP_CORS_ENABLE", "HTTP_CORS_ALLOW_ORIGIN",
                                                     "NUMBER_OF_MASTERS", "PROCESSORS")})
    assert processors["processors"] == "1"  # `${PROCESSORS:1}`: the default, whatever PROCESSORS says


# ==================================================================================== keystore


def test_reads_a_real_7x_v4_keystore(testdata):
    sealed = keystore.load(testdata / "keystore" / "es-7x-v4-nopass.keystore")
    assert (sealed.version, sealed.has_password) == (4, False)
    store = sealed.decrypt("")
    assert store.names() == ["asdf", keystore.SEED_SETTING] and store.string("asdf") == "zxcv"


def test_reads_a_real_8_13_v5_keystore(testdata):
    sealed = keystore.load(testdata / "keystore" / "es-8.13-v5-nopass.keystore")
    assert (sealed.version, sealed.has_password) == (5, False)
    assert sealed.decrypt("").string("bootstrap.password") == "changeme"


def _v3_file(entries: dict[str, bytes], password: str) -> bytes:
    """Format 3 written from es-facts §7 alone: big-endian throughout, a type after each name."""
    import hashlib
    import secrets
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def utf(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()
    plain = struct.pack(">i", len(entries)) + b"".join(
        utf(name) + utf("STRING") + struct.pack(">i", len(v)) + v for name, v in entries.items())
    salt, iv = secrets.token_bytes(64), secrets.token_bytes(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 10000, 16)
    data = b"".join(struct.pack(">i", len(p)) + p for p in (salt, iv, AESGCM(key).encrypt(iv, plain, salt)))
    body = (struct.pack(">i", 0x3FD76C17) + b"\x16elasticsearch.keystore" + struct.pack(">i", 3)
            + bytes([1 if password else 0]) + struct.pack(">i", len(data)) + data + struct.pack(">Ii", 0xC02893E8, 0))
    return body + struct.pack(">q", zlib.crc32(body))


def test_reads_format_3_with_its_entry_types(tmp_path):
    path = tmp_path / "elasticsearch.keystore"
    path.write_bytes(_v3_file({"a.b": b"value", "keystore.seed": b"seed"}, "pw"))
    store = keystore.Keystore.open(path, "pw")
    assert (store.version, store.strings()) == (3, {"a.b": "value", "keystore.seed": "seed"})


@pytest.mark.parametrize("version", [5, 6])
@pytest.mark.parametrize("password", ["", "pässwörd"])
def test_round_trip(tmp_path, version, password):
    store = keystore.Keystore.create()
    store.set_string("bootstrap.password", "s3cret")
    store.set_file("xpack.some.file", bytes(range(256)))
    path = tmp_path / "elasticsearch.keystore"
    store.save(path, password, version)
    sealed = keystore.load(path)
    assert (sealed.version, sealed.has_password) == (version, bool(password))
    back = sealed.decrypt(password)
    assert back.names() == ["bootstrap.password", keystore.SEED_SETTING, "xpack.some.file"]
    assert back.get("xpack.some.file") == bytes(range(256)) and back.string("bootstrap.password") == "s3cret"
    assert re.fullmatch(r"[A-Za-z0-9~!@#$%^&*\-_=+?]{20}", back.string(keystore.SEED_SETTING))


def test_esremote_writes_and_the_lab_reads(tmp_path):
    from esremote.keystore import Keystore as EsremoteKeystore
    for version, password in ((5, ""), (6, "pw")):
        written = EsremoteKeystore.create()
        written.set_string("cluster.remote.my.credentials", "encoded==")
        path = tmp_path / f"v{version}.keystore"
        written.save(path, password=password, version=version)
        read = keystore.Keystore.open(path, password)
        assert read.version == version and read.string("cluster.remote.my.credentials") == "encoded=="


def test_the_lab_writes_and_esremote_reads(tmp_path):
    from esremote.keystore import Keystore as EsremoteKeystore
    from esremote.keystore import format_version, has_password
    for version, password in ((5, "pw"), (6, "")):
        store = keystore.Keystore.create()
        store.set_string("bootstrap.password", "changeme")
        path = tmp_path / f"v{version}.keystore"
        store.save(path, password, version)
        assert (format_version(path), has_password(path)) == (version, bool(password))
        read = EsremoteKeystore.load(path, password)
        assert read.get_string("bootstrap.password") == "changeme"
        assert read.names() == ["bootstrap.password", keystore.SEED_SETTING]


def _protected(tmp_path: Path, version: int = 6) -> Path:
    path = tmp_path / "elasticsearch.keystore"
    keystore.Keystore.create().save(path, "right", version)
    return path


def _refusal(call) -> keystore.KeystoreFormatError:
    with pytest.raises(keystore.KeystoreFormatError) as caught:
        call()
    return caught.value


def test_a_wrong_password_is_a_security_exception(tmp_path):
    path = _protected(tmp_path, 5)
    error = _refusal(lambda: keystore.Keystore.open(path, "wrong"))
    assert (error.exception, error.message) == ("java.lang.SecurityException", keystore.WRONG_PASSWORD)


def test_a_changed_byte_fails_lucenes_checksum(tmp_path):
    path = _protected(tmp_path)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    error = _refusal(lambda: keystore.load(path))
    assert error.exception == keystore.CORRUPT_INDEX
    assert error.message.startswith("checksum failed (hardware problem?) : expected=")
    assert error.message.endswith(f'(resource=BufferedChecksumIndexInput(NIOFSIndexInput(path="{path}")))')


def _rewrite(path: Path, offset: int, value: bytes) -> None:
    """Change bytes and fix the CRC, so only the changed field is wrong."""
    data = bytearray(path.read_bytes())
    data[offset:offset + len(value)] = value
    data[-8:] = struct.pack(">q", zlib.crc32(bytes(data[:-8])))
    path.write_bytes(bytes(data))


def test_header_failures(tmp_path):
    path = _protected(tmp_path)
    version_at, flag_at = 4 + 1 + 22, 4 + 1 + 22 + 4
    _rewrite(path, flag_at, b"\x02")
    error = _refusal(lambda: keystore.load(path))
    assert (error.exception, error.message) == (keystore.ILLEGAL_STATE, "hasPassword boolean is corrupt: 02")
    _rewrite(path, version_at, struct.pack(">i", 2))
    assert "format is too old. You should delete and recreate it" in _refusal(lambda: keystore.load(path)).message
    _rewrite(path, version_at, struct.pack(">i", 6))
    error = _refusal(lambda: keystore.load(path, max_version=5))  # a node before 8.14
    assert error.message == (f"The Elasticsearch keystore [{path}] format is too new. Are you trying to downgrade? "
                             "You should delete and recreate it in order to downgrade.")
    path.write_bytes(b"not a keystore at all, but long enough")
    assert _refusal(lambda: keystore.load(path)).message.startswith("codec header mismatch: actual header=")


def test_an_unreadable_keystore_is_named_as_java_names_it(tmp_path, monkeypatch):
    directory = tmp_path / "elasticsearch.keystore"
    directory.mkdir()
    error = _refusal(lambda: keystore.load(directory))
    assert (error.exception, error.message) == ("java.io.IOException",
                                                f'Is a directory: NIOFSIndexInput(path="{directory}")')
    with pytest.raises(FileNotFoundError):  # no keystore: Elasticsearch creates one, the caller decides
        keystore.load(tmp_path / "none")
    (tmp_path / "other").mkdir()
    path = _protected(tmp_path / "other")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "read_bytes", denied)
    error = _refusal(lambda: keystore.load(path))
    assert (error.exception, error.message) == ("java.nio.file.AccessDeniedException", str(path))  # es-facts §12


def test_setting_names_follow_the_pattern():
    error = _refusal(lambda: keystore.Keystore().set_string("bad name", "x"))
    assert error.message == ("Setting name [bad name] does not match the allowed setting name pattern "
                             "[[A-Za-z0-9_\\-.]+]")


def test_save_is_rw_rw_whatever_the_umask_and_takes_a_setgid_directorys_group(tmp_path):
    directory = tmp_path / "config"
    directory.mkdir()
    group = next((g for g in ([1] if os.geteuid() == 0 else os.getgroups()) if g != os.getegid()), None)
    if group is None:
        pytest.skip("no second group to give the directory")
    os.chown(directory, -1, group)
    directory.chmod(0o2750)
    old = os.umask(0o077)
    try:
        keystore.Keystore.create().save(directory / "elasticsearch.keystore")
    finally:
        os.umask(old)
    info = (directory / "elasticsearch.keystore").stat()
    assert (info.st_mode & 0o777, info.st_gid) == (0o660, group)
    assert sorted(p.name for p in directory.iterdir()) == ["elasticsearch.keystore"]


def test_a_leftover_temp_file_fails_one_save_and_is_removed(tmp_path):
    path = tmp_path / "elasticsearch.keystore"
    (tmp_path / "elasticsearch.keystore.tmp").write_bytes(b"crash leftover")
    with pytest.raises(keystore.KeystoreWriteError) as caught:
        keystore.Keystore.create().save(path)
    assert caught.value.exception == "java.nio.file.FileAlreadyExistsException"
    assert not (tmp_path / "elasticsearch.keystore.tmp").exists()
    keystore.Keystore.create().save(path)
    assert keystore.load(path).version == 6


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_save_will_not_change_the_owner(tmp_path):
    path = tmp_path / "elasticsearch.keystore"
    keystore.Keystore.create().save(path)
    os.chown(path, 1, -1)
    with pytest.raises(keystore.KeystoreWriteError) as caught:
        keystore.Keystore.create().save(path)
    assert caught.value.message == (f"will not overwrite keystore at [{path}], because this incurs changing "
                                    "the file owner")
    assert caught.value.exit_code == 78 and path.stat().st_uid == 1


# ============================================================================ certificates, PEM


@pytest.fixture(scope="module")
def ca() -> certs.CertificateAuthority:
    return certs.new_ca()


@pytest.fixture(scope="module")
def node(ca) -> certs.Identity:
    return certs.issue(ca, "node-1", dns=["node-1", "localhost"], ips=["127.0.0.1"])


def openssl(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_ca_has_certutils_defaults(ca):
    assert ca.cert.subject.rfc4514_string() == "CN=Elastic Certificate Tool Autogenerated CA"
    assert (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days == 1095
    assert ca.key.key_size == 2048
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_node_certificate(ca, node, tmp_path):
    san = node.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node-1", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert node.cert.subject.rfc4514_string() == "CN=node-1" and node.cert.issuer == ca.cert.subject
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    (tmp_path / "node.crt").write_bytes(node.cert_pem())
    verified = openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "node.crt"))
    assert verified.returncode == 0, verified.stderr
    named = certs.issue(ca, "CN=node2,OU=search", key_size=1024)
    assert named.cert.subject.rfc4514_string() == "CN=node2,OU=search"
    assert certs.issue(ca, "x", days=100000, key_size=1024).cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_a_ca_is_checked(ca, node):
    with pytest.raises(certs.CertError, match="does not match the CA certificate"):
        certs.load_ca(ca.cert_pem(), node.key_pem())
    with pytest.raises(certs.CertError, match="is not a CA certificate"):
        certs.load_ca(node.cert_pem(), node.key_pem())
    assert certs.load_ca(ca.cert_pem(), ca.key_pem("pw"), "pw").cert == ca.cert
    with pytest.raises(certs.CertError, match="wrong passphrase"):
        certs.load_ca(ca.cert_pem(), ca.key_pem("pw"), "nope")


def test_pem_key_is_encrypted_with_aes_128_cbc_as_certutil_does(tmp_path, node):
    data = node.key_pem("s3cret")
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,")
    key_file = str(tmp_path / "node.key")
    (tmp_path / "node.key").write_bytes(data)
    assert openssl("pkey", "-noout", "-in", key_file, "-passin", "stdin", stdin="s3cret\n").returncode == 0
    assert openssl("pkey", "-noout", "-in", key_file, "-passin", "stdin", stdin="nope\n").returncode != 0
    assert pem.load_private_key(data, "s3cret").private_numbers() == node.key.private_numbers()
    with pytest.raises(pem.PemError) as caught:
        pem.load_private_key(data, "nope")
    assert caught.value.wrong_passphrase
    assert b"ENCRYPTED" not in node.key_pem() and pem.load_private_key(node.key_pem()) is not None


# ===================================================================================== PKCS#12


def keytool(*args: str, password: str) -> subprocess.CompletedProcess:
    path = java.keytool()  # skips without Java, unless ESREMOTE_REQUIRE_JAVA=1 (CI): then it fails
    env = {**os.environ, "P12_PASSWORD": password, "DEST_PASSWORD": "changeit"}
    return subprocess.run([path, *args], env=env, capture_output=True, text=True, timeout=120)


def keytool_list(path: Path, password: str) -> str:
    done = keytool("-list", "-storetype", "PKCS12", "-keystore", str(path), "-storepass:env", "P12_PASSWORD",
                   password=password)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture()
def node_p12(tmp_path, ca, node) -> Path:
    path = tmp_path / "node-1.p12"
    path.write_bytes(pkcs12.dump("p12-pass", name="node-1", key=node.key, chain=[node.cert], trusted={"ca": ca.cert}))
    return path


def test_pkcs12_round_trip(node_p12, ca, node):
    contents = pkcs12.read(node_p12, "p12-pass")
    assert (contents.name, contents.cert, contents.chain, contents.trusted) == ("node-1", node.cert, [node.cert],
                                                                                {"ca": ca.cert})
    assert contents.key.private_numbers() == node.key.private_numbers()


def test_java_sees_a_key_entry_and_a_trusted_ca_entry(node_p12):
    listing = keytool_list(node_p12, "p12-pass")
    assert "contains 2 entries" in listing
    assert re.search(r"^node-1, .*PrivateKeyEntry", listing, re.M)
    assert re.search(r"^ca, .*trustedCertEntry", listing, re.M)


def test_java_decrypts_the_key_and_refuses_a_wrong_password(tmp_path, node_p12):
    copy = tmp_path / "copy.p12"
    done = keytool("-importkeystore", "-noprompt", "-srckeystore", str(node_p12), "-srcstoretype", "PKCS12",
                   "-srcstorepass:env", "P12_PASSWORD", "-destkeystore", str(copy), "-deststoretype", "PKCS12",
                   "-deststorepass:env", "DEST_PASSWORD", password="p12-pass")
    assert done.returncode == 0 and "2 entries successfully imported" in done.stdout + done.stderr
    refused = keytool("-list", "-storetype", "PKCS12", "-keystore", str(node_p12), "-storepass:env", "P12_PASSWORD",
                      password="guess")
    assert refused.returncode != 0 and "password was incorrect" in refused.stdout + refused.stderr


def test_a_blank_password_works_for_java_and_the_lab(tmp_path, node):
    path = tmp_path / "blank.p12"
    path.write_bytes(pkcs12.dump("", name="instance", key=node.key, chain=[node.cert]))
    assert "PrivateKeyEntry" in keytool_list(path, "")
    assert pkcs12.read(path, "").name == "instance"


def test_files_java_writes_are_read_as_java_lists_them(tmp_path, node_p12, ca):
    """keytool rewrites the store (JDK's PKCS12KeyStore): the key entry's chain gains the CA, named
    after its subject; the trusted entry keeps its alias."""
    java = tmp_path / "java.p12"
    done = keytool("-importkeystore", "-noprompt", "-srckeystore", str(node_p12), "-srcstoretype", "PKCS12",
                   "-srcstorepass:env", "P12_PASSWORD", "-destkeystore", str(java), "-deststoretype", "PKCS12",
                   "-deststorepass:env", "DEST_PASSWORD", password="p12-pass")
    assert done.returncode == 0, done.stdout + done.stderr
    contents = pkcs12.read(java, "changeit")
    assert contents.name == "node-1" and contents.trusted == {"ca": ca.cert}
    assert [c.subject.rfc4514_string() for c in contents.chain] == ["CN=node-1", ca.cert.subject.rfc4514_string()]
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    truststore = tmp_path / "truststore.p12"
    done = keytool("-importcert", "-noprompt", "-alias", "my-ca", "-file", str(tmp_path / "ca.crt"), "-keystore",
                   str(truststore), "-storetype", "PKCS12", "-storepass:env", "DEST_PASSWORD", password="")
    assert done.returncode == 0, done.stdout + done.stderr
    only_trust = pkcs12.read(truststore, "changeit")
    assert (only_trust.key, only_trust.trusted) == (None, {"my-ca": ca.cert})


def test_why_cryptography_cannot_write_these_files(tmp_path, ca, node):
    """serialize_key_and_certificates(cas=...) gives CA bags without Oracle's trusted attribute:
    Java lists no trusted entry, so a truststore made that way trusts nothing."""
    path = tmp_path / "cryptography.p12"
    path.write_bytes(crypto_pkcs12.serialize_key_and_certificates(
        b"node-1", node.key, node.cert, [ca.cert], serialization.BestAvailableEncryption(b"pw")))
    listing = keytool_list(path, "pw")
    assert "trustedCertEntry" not in listing and "contains 1 entry" in listing


def test_esremote_and_the_lab_read_each_others_pkcs12(node_p12, ca, node):
    from esremote import pki
    mine = pki.load_pkcs12(node_p12.read_bytes(), "p12-pass")
    assert (mine.name, mine.cert, mine.trusted) == ("node-1", node.cert, {"ca": ca.cert})
    theirs = pki.to_pkcs12(pki.issue(pki.CertificateAuthority(ca.cert, ca.key), "node-2", dns=["node-2"]),
                           pki.CertificateAuthority(ca.cert, ca.key), "their-pass", name="node-2")
    contents = pkcs12.load(theirs, "their-pass")
    assert contents.name == "node-2" and contents.trusted == {"ca": ca.cert}


def test_openssl_reads_the_layout(node_p12):
    done = openssl("pkcs12", "-info", "-nokeys", "-passin", "stdin", "-in", str(node_p12), stdin="p12-pass\n")
    info = done.stdout + done.stderr
    assert done.returncode == 0, info
    assert "MAC: sha256" in info and info.count("Shrouded Keybag") == 1
    assert "friendlyName: node-1\n    localKeyID" in info
    assert "2.16.840.1.113894.746875.1.1" in info.split("friendlyName: ca", 1)[1]


def test_pkcs12_failures(tmp_path, node_p12, monkeypatch):
    with pytest.raises(pkcs12.Pkcs12PasswordError):
        pkcs12.read(node_p12, "guess")
    with pytest.raises(pkcs12.Pkcs12Error, match="not a PKCS#12 file"):
        pkcs12.load(b"-----BEGIN CERTIFICATE-----", "x")
    with pytest.raises(pkcs12.Pkcs12FileMissing) as missing:
        pkcs12.read(tmp_path / "none.p12", "x")
    assert missing.value.message == f"java.nio.file.NoSuchFileException: {tmp_path / 'none.p12'}"

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(pkcs12.Pkcs12AccessDenied) as caught:
        pkcs12.read(node_p12, "p12-pass")
    assert caught.value.path == node_p12
    assert caught.value.message == f"java.nio.file.AccessDeniedException: {node_p12}"
    with pytest.raises(pkcs12.Pkcs12Error, match="PKCS#12 passwords must be plain ASCII"):
        pkcs12.check_password("pässword")


def test_mac_key_derivation_matches_openssl():
    salt = bytes(range(1, 9))
    done = openssl("kdf", "-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt",
                   f"hexpass:{'abc'.encode('utf-16-be').hex()}0000", "-kdfopt", f"hexsalt:{salt.hex()}",
                   "-kdfopt", "iter:2048", "-kdfopt", "id:3", "PKCS12KDF")
    if done.returncode != 0:
        pytest.skip(f"this openssl has no PKCS12KDF: {done.stderr.strip()}")
    assert pkcs12.pkcs12_kdf("abc", salt, 2048, purpose=3, length=32).hex(":").upper() == done.stdout.strip()


def test_certificates_are_valid_now(node):
    now = dt.datetime.now(dt.timezone.utc)
    assert node.cert.not_valid_before_utc <= now < node.cert.not_valid_after_utc
