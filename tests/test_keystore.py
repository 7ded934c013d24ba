"""The keystore file format against real Elasticsearch files and an independent reading of the spec."""

import os
import shutil
import stat
import struct
import zlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esremote.errors import KeystoreError
from esremote.keystore import (CORRUPTED, SEED_SETTING, WRONG_PASSWORD, Keystore, format_version,
                               has_password)

PASSWORD = "pässwörd-ü"
VERSION_AT = 4 + 1 + 22  # after the codec magic and the VInt-prefixed codec name
FLAG_AT = VERSION_AT + 4  # the hasPassword byte


@pytest.fixture(scope="module")
def v4_file(testdata):
    return testdata / "keystore" / "es-7x-v4-nopass.keystore"


@pytest.fixture(scope="module")
def v5_file(testdata):
    return testdata / "keystore" / "es-8.13-v5-nopass.keystore"


@pytest.fixture(scope="module")
def protected_v6() -> bytes:
    """One password-protected v6 file for the tests that only need one (210000 PBKDF2 rounds)."""
    keystore = Keystore.create()
    keystore.set_string("cluster.remote.r1.credentials", "encoded-api-key")
    return keystore.to_bytes(PASSWORD, version=6)


# --- an independent reading of es-facts §7, to check our files against the spec, not against us ---

def _spec_decode(data: bytes, password: str) -> tuple[int, bool, dict[str, bytes]]:
    magic, name_len = struct.unpack(">IB", data[:5])
    assert magic == 0x3FD76C17 and data[5:5 + name_len] == b"elasticsearch.keystore"
    pos = 5 + name_len
    (version,) = struct.unpack(">i", data[pos:pos + 4])
    flag = data[pos + 4]
    end = "<" if version >= 5 else ">"
    (data_len,) = struct.unpack(end + "i", data[pos + 5:pos + 9])
    body = data[pos + 9:pos + 9 + data_len]
    footer = data[pos + 9 + data_len:]
    assert footer[:8] == bytes.fromhex("c02893e800000000")
    assert struct.unpack(">Q", footer[8:])[0] == zlib.crc32(data[:-8]) and len(footer) == 16
    salt_len = struct.unpack(end + "i", body[:4])[0]
    salt = body[4:4 + salt_len]
    iv_len = struct.unpack(end + "i", body[4 + salt_len:8 + salt_len])[0]
    iv = body[8 + salt_len:8 + salt_len + iv_len]
    ct = body[12 + salt_len + iv_len:]
    assert (salt_len, iv_len) == (64, 12)
    iterations = 210_000 if version >= 6 else 10_000
    key = PBKDF2HMAC(hashes.SHA512(), 16, salt, iterations).derive(password.encode())
    plain = AESGCM(key).decrypt(iv, ct, salt)
    count, entries, p = struct.unpack(">i", plain[:4])[0], {}, 4
    for _ in range(count):
        (n,) = struct.unpack(">H", plain[p:p + 2])
        name = plain[p + 2:p + 2 + n].decode()
        p += 2 + n
        (size,) = struct.unpack(">i", plain[p:p + 4])
        entries[name] = plain[p + 4:p + 4 + size]
        p += 4 + size
    assert p == len(plain)
    return version, flag == 1, entries


def _spec_encode_v3(entries: dict[str, tuple[str, bytes]], password: str) -> bytes:
    """A format-3 file (Elasticsearch 6.3 to 6.7): big-endian ints, a type string after each name."""
    def utf(text: str) -> bytes:
        return struct.pack(">H", len(text.encode())) + text.encode()

    plain = struct.pack(">i", len(entries)) + b"".join(
        utf(name) + utf(kind) + struct.pack(">i", len(value)) + value
        for name, (kind, value) in entries.items())
    salt, iv = os.urandom(64), os.urandom(12)
    key = PBKDF2HMAC(hashes.SHA512(), 16, salt, 10_000).derive(password.encode())
    ct = AESGCM(key).encrypt(iv, plain, salt)
    body = struct.pack(">i", 64) + salt + struct.pack(">i", 12) + iv + struct.pack(">i", len(ct)) + ct
    out = (struct.pack(">I", 0x3FD76C17) + b"\x16elasticsearch.keystore" + struct.pack(">i", 3)
           + bytes([1 if password else 0]) + struct.pack(">i", len(body)) + body
           + struct.pack(">Ii", 0xC02893E8, 0))
    return out + struct.pack(">Q", zlib.crc32(out))


def _with_crc(data: bytes) -> bytes:
    """The file with its CRC recomputed, so a change gets past the checksum to the next check."""
    return data[:-8] + struct.pack(">Q", zlib.crc32(data[:-8]))


# --- real files -----------------------------------------------------------------------------------

def test_reads_a_real_7x_v4_keystore(v4_file):
    keystore = Keystore.load(v4_file)
    assert (keystore.version, keystore.has_password) == (4, False)
    assert keystore.names() == ["asdf", SEED_SETTING]
    assert keystore.get_string("asdf") == "zxcv"
    assert (format_version(v4_file), has_password(v4_file)) == (4, False)


def test_reads_a_real_8_13_v5_keystore(v5_file):
    keystore = Keystore.load(v5_file)
    assert (keystore.version, keystore.has_password) == (5, False)
    assert keystore.names() == ["bootstrap.password", SEED_SETTING]
    assert keystore.get("bootstrap.password") == b"changeme"
    assert len(keystore.get_string(SEED_SETTING)) == 20


def test_reads_a_v3_keystore_with_entry_types():
    data = _spec_encode_v3({"s3.client.default.secret_key": ("STRING", "abc".encode()),
                            "gcs.credentials_file": ("FILE", b"\x00\xff{json}")}, password="pw")
    keystore = Keystore.from_bytes(data, "pw")
    assert keystore.version == 3 and keystore.has_password
    assert keystore.get_string("s3.client.default.secret_key") == "abc"
    assert keystore.get("gcs.credentials_file") == b"\x00\xff{json}"


# --- what we write ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [5, 6])
@pytest.mark.parametrize("password", ["", PASSWORD])
def test_written_files_follow_the_spec_and_read_back(version, password):
    keystore = Keystore.create()
    keystore.set_string("cluster.remote.r1.credentials", "ключ-api")
    keystore.set_file("xpack.ssl.key", bytes(range(256)))
    data = keystore.to_bytes(password, version=version)

    assert _spec_decode(data, password) == (version, bool(password), {
        SEED_SETTING: keystore.get(SEED_SETTING), "cluster.remote.r1.credentials": "ключ-api".encode(),
        "xpack.ssl.key": bytes(range(256))})
    again = Keystore.from_bytes(data, password)
    assert (again.version, again.has_password, again.names()) == (version, bool(password), keystore.names())
    assert again.get_string("cluster.remote.r1.credentials") == "ключ-api"
    assert (format_version(data), has_password(data)) == (version, bool(password))


def test_create_adds_a_random_seed():
    seeds = {Keystore.create().get_string(SEED_SETTING) for _ in range(3)}
    assert len(seeds) == 3
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~!@#$%^&*-_=+?")
    assert all(len(seed) == 20 and set(seed) <= allowed for seed in seeds)


def test_save_is_atomic_and_keeps_or_sets_the_mode(tmp_path, v5_file):
    new = tmp_path / "elasticsearch.keystore"
    keystore = Keystore.load(v5_file)
    keystore.save(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o660
    assert Keystore.load(new).get_string("bootstrap.password") == "changeme"

    os.chmod(new, 0o640)
    keystore.set_string("added", "value")
    keystore.save(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o640
    assert Keystore.load(new).names() == ["added", "bootstrap.password", SEED_SETTING]
    assert format_version(new) == 5  # a 5 stays a 5: 8.0-8.13 nodes cannot read 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elasticsearch.keystore"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_save_keeps_the_owner(tmp_path, v5_file):
    path = tmp_path / "elasticsearch.keystore"
    shutil.copy(v5_file, path)
    os.chown(path, 1000, 1000)  # the elasticsearch user of the official packages
    keystore = Keystore.load(path)
    keystore.set_string("added", "value")
    keystore.save(path)
    assert (path.stat().st_uid, path.stat().st_gid) == (1000, 1000)
    assert "added" in Keystore.load(path)


def test_saving_an_old_format_writes_5(tmp_path, v4_file):
    Keystore.load(v4_file).save(tmp_path / "ks")
    assert format_version(tmp_path / "ks") == 5
    with pytest.raises(ValueError):
        Keystore.load(v4_file).to_bytes(version=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.from_regex(r"[A-Za-z0-9_\-.]{1,40}", fullmatch=True),
                       st.text(max_size=50), max_size=5))
def test_any_names_and_values_round_trip(entries):
    keystore = Keystore()
    for name, value in entries.items():
        keystore.set_string(name, value)
    again = Keystore.from_bytes(keystore.to_bytes(version=5))
    assert {name: again.get_string(name) for name in again.names()} == entries


# --- refusals -----------------------------------------------------------------------------------------

def test_wrong_password_is_refused_without_echoing_it(protected_v6):
    with pytest.raises(KeystoreError) as caught:
        Keystore.from_bytes(protected_v6, "not-the-password", source="node1:elasticsearch.keystore")
    assert caught.value.reason == WRONG_PASSWORD
    assert str(caught.value) == f"node1:elasticsearch.keystore: {WRONG_PASSWORD}"
    assert "not-the-password" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert Keystore.from_bytes(protected_v6, PASSWORD).get_string("cluster.remote.r1.credentials")


def test_a_password_elasticsearch_cannot_read_at_start_up_is_refused(tmp_path):
    """Elasticsearch reads at most 128 chars of keystore passphrase (Bootstrap.readPassphrase)."""
    path = tmp_path / "elasticsearch.keystore"
    Keystore.create().save(path, "p" * 128)  # the longest it reads
    assert Keystore.load(path, "p" * 128).names() == [SEED_SETTING]
    too_long = "p" * 127 + "\U0001F511"  # 129 Java chars: the emoji is a surrogate pair
    with pytest.raises(KeystoreError, match="has 129 characters; Elasticsearch reads at most 128") as caught:
        Keystore.create().save(path, too_long)
    assert too_long not in str(caught.value)
    assert Keystore.load(path, "p" * 128).names() == [SEED_SETTING]  # the file is unchanged


def test_every_changed_byte_is_detected(v5_file):
    data = v5_file.read_bytes()
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        with pytest.raises(KeystoreError):
            Keystore.from_bytes(bytes(damaged))
    for damaged in (data + b"\x00", data[:-1], b""):
        with pytest.raises(KeystoreError, match=CORRUPTED):
            Keystore.from_bytes(damaged)


def test_changed_ciphertext_with_a_fixed_crc_fails_the_gcm_tag(v5_file):
    data = bytearray(v5_file.read_bytes())
    data[-30] ^= 0x80  # inside the ciphertext
    with pytest.raises(KeystoreError) as caught:
        Keystore.from_bytes(_with_crc(bytes(data)))
    assert caught.value.reason == WRONG_PASSWORD  # Elasticsearch's word for a failed tag


@pytest.mark.parametrize(("version", "words"), [(2, "format is too old"), (7, "format is too new")])
def test_unsupported_format_versions(v5_file, version, words):
    data = bytearray(v5_file.read_bytes())
    data[VERSION_AT:FLAG_AT] = struct.pack(">i", version)
    with pytest.raises(KeystoreError, match=words) as caught:
        Keystore.from_bytes(_with_crc(bytes(data)), source="config/elasticsearch.keystore")
    assert "[config/elasticsearch.keystore]" in str(caught.value)


def test_has_password_byte_must_be_0_or_1(v5_file):
    data = bytearray(v5_file.read_bytes())
    data[FLAG_AT] = 2
    with pytest.raises(KeystoreError, match="hasPassword boolean is corrupt: 02"):
        has_password(_with_crc(bytes(data)))


def test_setting_names_and_missing_settings():
    keystore = Keystore()
    with pytest.raises(KeystoreError) as caught:
        keystore.set_string("bad name", "secret-value")
    assert str(caught.value) == (r"Setting name [bad name] does not match the allowed setting name "
                                 r"pattern [[A-Za-z0-9_\-.]+]")
    assert "secret-value" not in str(caught.value)
    for action in (keystore.get, keystore.remove):
        with pytest.raises(KeystoreError, match=r"^Setting \[nope\] does not exist in the keystore\.$"):
            action("nope")


def test_missing_file(tmp_path):
    with pytest.raises(KeystoreError, match="Elasticsearch keystore not found at"):
        Keystore.load(tmp_path / "elasticsearch.keystore")
