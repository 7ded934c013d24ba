"""The Elasticsearch keystore file (`elasticsearch.keystore`), read and written in pure Python.

Layout (Elasticsearch's KeyStoreWrapper inside a Lucene CodecUtil envelope):

    header   BE int32 0x3fd76c17, VInt-prefixed codec name "elasticsearch.keystore", BE int32 version
    byte     hasPassword (0 or 1)
    int32    dataLen, then data = int32 saltLen, salt, int32 ivLen, iv, int32 ctLen, ciphertext
             (these ints are little-endian from version 5 on, big-endian before)
    footer   BE int32 ~magic, BE int32 algorithm 0, BE int64 CRC32 of every byte before it

The ciphertext is AES-128-GCM (tag appended, AAD = salt) under a PBKDF2-HMAC-SHA512 key; the
plaintext is a Java DataOutputStream: int32 count, then per entry writeUTF(name) [+ writeUTF(type)
in version 3], int32 length, value bytes. Versions 3 to 6 are read; 5 (8.0 to 8.13) and 6 (8.14+)
are written. Error texts are Elasticsearch's, so an operator can search for them; they never
contain a value or a password.
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from esremote.errors import KeystoreError
from esremote.files import atomic_write

KEYSTORE_FILENAME = "elasticsearch.keystore"
SEED_SETTING = "keystore.seed"
MIN_FORMAT_VERSION = 3
CURRENT_VERSION = 6
WRITABLE_VERSIONS = (5, 6)
MAX_PASSPHRASE_LENGTH = 128

CODEC_MAGIC = 0x3FD76C17
FOOTER_MAGIC = ~CODEC_MAGIC & 0xFFFFFFFF
_FOOTER_LEN = 16
_SALT_LEN = 64
_IV_LEN = 12
_KEY_BYTES = 16  # AES-128, as Elasticsearch uses
_SEED_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~!@#$%^&*-_=+?"
_SETTING_NAME = re.compile(r"[A-Za-z0-9_\-.]+")
_SETTING_NAME_PATTERN = r"[A-Za-z0-9_\-.]+"

# Elasticsearch's own messages (KeyStoreWrapper), reused verbatim.
WRONG_PASSWORD = "Provided keystore password was incorrect"
CORRUPTED = "Keystore has been corrupted or tampered with"


def kdf_iterations(version: int) -> int:
    """PBKDF2 rounds: 8.14 (format 6) raised them from 10000 to 210000."""
    return 210_000 if version >= 6 else 10_000


def keystore_error(reason: str, source: str = "") -> KeystoreError:
    """A KeystoreError whose `reason` is Elasticsearch's bare message and whose text says where."""
    exc = KeystoreError(f"{source}: {reason}" if source else reason)
    exc.reason = reason
    return exc


def validate_setting_name(name: str) -> None:
    if not _SETTING_NAME.fullmatch(name):
        raise keystore_error(f"Setting name [{name}] does not match the allowed setting name pattern "
                             f"[{_SETTING_NAME_PATTERN}]")


# --- the envelope ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Envelope:
    """The clear part of a keystore file: what can be known without the password."""

    version: int
    has_password: bool
    salt: bytes
    iv: bytes
    ciphertext: bytes


class _Reader:
    """Sequential reads over bytes; running past the end means the file is damaged."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise keystore_error(CORRUPTED, self.source)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int32(self, little_endian: bool = False) -> int:
        return struct.unpack("<i" if little_endian else ">i", self.take(4))[0]

    def vint(self) -> int:
        value = shift = 0
        while shift < 35:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise keystore_error(CORRUPTED, self.source)


def _display_path(source: str) -> str:
    return source or KEYSTORE_FILENAME


def _read_header(reader: _Reader) -> int:
    source = reader.source
    if reader.int32() & 0xFFFFFFFF != CODEC_MAGIC:
        raise keystore_error(CORRUPTED, source)
    name_len = reader.vint()
    if reader.take(name_len) != KEYSTORE_FILENAME.encode():
        raise keystore_error(CORRUPTED, source)
    version = reader.int32()
    if version < MIN_FORMAT_VERSION:
        raise keystore_error(f"The Elasticsearch keystore [{_display_path(source)}] format is too old. "
                             "You should delete and recreate it in order to upgrade.")
    if version > CURRENT_VERSION:
        raise format_too_new(source)
    return version


def format_too_new(source: str = "") -> KeystoreError:
    """What a node says of a keystore written by a newer Elasticsearch (also used by the lab's 8.13)."""
    return keystore_error(f"The Elasticsearch keystore [{_display_path(source)}] format is too new. "
                          "Are you trying to downgrade? You should delete and recreate it in order "
                          "to downgrade.")


def _check_footer(data: bytes, source: str) -> None:
    if len(data) < _FOOTER_LEN:
        raise keystore_error(CORRUPTED, source)
    magic, algorithm, checksum = struct.unpack(">IiQ", data[-_FOOTER_LEN:])
    if magic != FOOTER_MAGIC or algorithm != 0 or checksum != zlib.crc32(data[:-8]):
        raise keystore_error(CORRUPTED, source)


def _read_envelope(data: bytes, source: str) -> _Envelope:
    reader = _Reader(data, source)
    version = _read_header(reader)
    _check_footer(data, source)
    flag = reader.take(1)[0]
    if flag not in (0, 1):
        raise keystore_error(f"hasPassword boolean is corrupt: {flag:02x}", source)
    little = version >= 5
    data_len = reader.int32(little)
    if data_len != len(data) - reader.pos - _FOOTER_LEN:
        raise keystore_error(CORRUPTED, source)
    salt = reader.take(reader.int32(little))
    iv = reader.take(reader.int32(little))
    ciphertext = reader.take(reader.int32(little))
    if reader.pos != len(data) - _FOOTER_LEN:
        raise keystore_error(CORRUPTED, source)
    return _Envelope(version, flag == 1, salt, iv, ciphertext)


def _write_envelope(version: int, has_password: bool, salt: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    order = "<" if version >= 5 else ">"
    body = b"".join([struct.pack(f"{order}i", len(salt)), salt, struct.pack(f"{order}i", len(iv)), iv,
                     struct.pack(f"{order}i", len(ciphertext)), ciphertext])
    name = KEYSTORE_FILENAME.encode()
    out = b"".join([struct.pack(">I", CODEC_MAGIC), bytes([len(name)]), name, struct.pack(">i", version),
                    bytes([1 if has_password else 0]), struct.pack(f"{order}i", len(body)), body,
                    struct.pack(">Ii", FOOTER_MAGIC, 0)])
    return out + struct.pack(">Q", zlib.crc32(out))


# --- the encrypted part ----------------------------------------------------------------------------

def _derive_key(password: str, salt: bytes, version: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA512(), length=_KEY_BYTES, salt=salt,
                     iterations=kdf_iterations(version))
    return kdf.derive(password.encode("utf-8"))


def _java_utf(reader: _Reader) -> str:
    """DataInputStream.readUTF: u16 length, then modified UTF-8 (NUL as C0 80, CESU-8 surrogates)."""
    raw = reader.take(struct.unpack(">H", reader.take(2))[0]).replace(b"\xc0\x80", b"\x00")
    try:
        text = raw.decode("utf-8", errors="surrogatepass")
        return text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le")
    except UnicodeError:
        raise keystore_error(CORRUPTED, reader.source) from None


def _parse_entries(plaintext: bytes, version: int, source: str) -> dict[str, bytes]:
    reader = _Reader(plaintext, source)
    count = reader.int32()
    if count < 0:
        raise keystore_error(CORRUPTED, source)
    entries: dict[str, bytes] = {}
    for _ in range(count):
        name = _java_utf(reader)
        if version == 3:
            _java_utf(reader)  # the entry type (STRING/FILE): values were already raw bytes
        entries[name] = reader.take(reader.int32())
    if reader.pos != len(plaintext):
        raise keystore_error(CORRUPTED, source)
    return entries


def _serialize_entries(entries: dict[str, bytes]) -> bytes:
    parts = [struct.pack(">i", len(entries))]
    for name in sorted(entries):
        encoded = name.encode("ascii")  # validated names are ASCII, so modified UTF-8 == ASCII
        value = entries[name]
        parts += [struct.pack(">H", len(encoded)), encoded, struct.pack(">i", len(value)), value]
    return b"".join(parts)


# --- public API ------------------------------------------------------------------------------------

def _load_bytes(path_or_bytes: str | os.PathLike | bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes), ""
    path = Path(path_or_bytes)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError:
        raise keystore_error(f"Elasticsearch keystore not found at [{path}]") from None
    except OSError as exc:
        raise keystore_error(f"cannot read the keystore: {exc.strerror}", str(path)) from None


def has_password(path_or_bytes: str | os.PathLike | bytes) -> bool:
    """Whether the keystore needs a password, read from its clear header (no decryption)."""
    data, source = _load_bytes(path_or_bytes)
    return _read_envelope(data, source).has_password


def format_version(path_or_bytes: str | os.PathLike | bytes) -> int:
    data, source = _load_bytes(path_or_bytes)
    return _read_envelope(data, source).version


class Keystore:
    """The decrypted settings of one keystore. Values are bytes (UTF-8 for string settings)."""

    def __init__(self, entries: dict[str, bytes] | None = None, *, version: int = CURRENT_VERSION,
                 has_password: bool = False, source: str = "") -> None:
        self._entries: dict[str, bytes] = dict(entries or {})
        self.version = version          # the format it was read in (or will be written in)
        self.has_password = has_password  # as read; a save decides afresh from its password
        self.source = source

    def __repr__(self) -> str:  # names only: values are secrets
        return f"Keystore(version={self.version}, names={self.names()!r})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def create(cls, *, version: int = CURRENT_VERSION) -> Keystore:
        """A new keystore holding only `keystore.seed`, like `elasticsearch-keystore create`."""
        keystore = cls(version=version)
        keystore.set_string(SEED_SETTING, "".join(secrets.choice(_SEED_CHARS) for _ in range(20)))
        return keystore

    @classmethod
    def load(cls, path: str | os.PathLike, password: str = "") -> Keystore:
        data, source = _load_bytes(path)
        return cls.from_bytes(data, password, source=source)

    @classmethod
    def from_bytes(cls, data: bytes, password: str = "", source: str = "") -> Keystore:
        envelope = _read_envelope(data, source)
        key = _derive_key(password, envelope.salt, envelope.version)
        try:
            plaintext = AESGCM(key).decrypt(envelope.iv, envelope.ciphertext, envelope.salt)
        except InvalidTag:
            raise keystore_error(WRONG_PASSWORD, source) from None
        except ValueError:  # an IV or tag of impossible length
            raise keystore_error(CORRUPTED, source) from None
        entries = _parse_entries(plaintext, envelope.version, source)
        return cls(entries, version=envelope.version, has_password=envelope.has_password, source=source)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> bytes:
        try:
            return self._entries[name]
        except KeyError:
            raise keystore_error(f"Setting [{name}] does not exist in the keystore.", self.source) from None

    def get_string(self, name: str) -> str:
        try:
            return self.get(name).decode("utf-8")
        except UnicodeDecodeError:
            raise keystore_error(f"Setting [{name}] is not a UTF-8 string (a file setting?)",
                                 self.source) from None

    def set_string(self, name: str, value: str) -> None:
        self.set_file(name, value.encode("utf-8"))

    def set_file(self, name: str, data: bytes) -> None:
        validate_setting_name(name)
        self._entries[name] = bytes(data)

    def remove(self, name: str) -> None:
        self.get(name)
        del self._entries[name]

    def to_bytes(self, password: str = "", version: int = CURRENT_VERSION) -> bytes:
        if version not in WRITABLE_VERSIONS:
            raise ValueError(f"keystore format {version} cannot be written (only {WRITABLE_VERSIONS})")
        length = len(password.encode("utf-16-le")) // 2  # Java chars, as Elasticsearch counts them
        if length > MAX_PASSPHRASE_LENGTH:
            raise keystore_error(f"the keystore password has {length} characters; Elasticsearch reads at most "
                                 f"{MAX_PASSPHRASE_LENGTH} at start-up, so the node could not open the keystore: "
                                 "choose a shorter password")
        salt, iv = secrets.token_bytes(_SALT_LEN), secrets.token_bytes(_IV_LEN)
        key = _derive_key(password, salt, version)
        ciphertext = AESGCM(key).encrypt(iv, _serialize_entries(self._entries), salt)
        return _write_envelope(version, bool(password), salt, iv, ciphertext)

    def save(self, path: str | os.PathLike, password: str = "", version: int | None = None) -> None:
        """Write atomically; a new file is rw-rw---- like Elasticsearch's, an existing one keeps its
        mode and owner. Without `version`, formats 5 and 6 stay as they are and older ones become 5
        (the oldest format 8.x writes, so every 8.x node still reads it)."""
        if version is None:
            version = max(self.version, WRITABLE_VERSIONS[0])
        data = self.to_bytes(password, version)
        try:
            atomic_write(path, data, default_mode=0o660)
        except OSError as exc:
            raise keystore_error(f"cannot write the keystore: {exc.strerror}", str(path)) from None
        self.version, self.has_password, self.source = version, bool(password), str(path)
