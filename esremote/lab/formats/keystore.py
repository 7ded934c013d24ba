"""`elasticsearch.keystore`, read and written the way Elasticsearch's KeyStoreWrapper does (es-facts §7).

Like KeyStoreWrapper, loading has two steps: `load(path)` checks the Lucene header and footer and
returns a `SealedKeystore` (format version, whether it has a password); `.decrypt(password)` gives a
`Keystore` of named byte values. Formats 3..6 are read; `save` writes format 5 (8.0..8.13) or 6
(8.14+), to `elasticsearch.keystore.tmp` first, mode rw-rw----, then an atomic rename.

File layout (big-endian unless noted):
    header   int 0x3fd76c17, VInt-prefixed "elasticsearch.keystore", int format version
    byte     has password (0 or 1)
    int      data length (little-endian from format 5 on), then the data:
             int + salt (64 bytes), int + IV (12 bytes), int + AES-128-GCM ciphertext and tag
             (the same endianness as the length; the GCM additional data is the salt)
    footer   int ~0x3fd76c17, int 0, long CRC32 of every byte before it
The key is PBKDF2-HMAC-SHA512 of the UTF-8 password (210000 rounds from format 6, 10000 before);
the plaintext is Java DataOutput: int count, then per entry writeUTF(name) [format 3: a type
name too], int length, bytes.

Failures carry Elasticsearch's message and the Java class its log names (`KeystoreFormatError`).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYSTORE_FILENAME = "elasticsearch.keystore"
SEED_SETTING = "keystore.seed"
MIN_VERSION, LE_VERSION, HIGHER_KDF_VERSION = 3, 5, 6
CURRENT_VERSION = HIGHER_KDF_VERSION
WRITABLE_VERSIONS = (5, 6)

WRONG_PASSWORD = "Provided keystore password was incorrect"
CORRUPTED = "Keystore has been corrupted or tampered with"
SECURITY_EXCEPTION = "java.lang.SecurityException"
ILLEGAL_STATE = "java.lang.IllegalStateException"
CORRUPT_INDEX = "org.apache.lucene.index.CorruptIndexException"
USER_EXCEPTION = "org.elasticsearch.cli.UserException"

CODEC_MAGIC = 0x3FD76C17
FOOTER_MAGIC = CODEC_MAGIC ^ 0xFFFFFFFF
FOOTER_LENGTH = 16
SALT_LENGTH, IV_LENGTH, KEY_BYTES = 64, 12, 16
SEED_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~!@#$%^&*-_=+?"
_SETTING_NAME = re.compile(r"[A-Za-z0-9_\-.]+")


class KeystoreFormatError(Exception):
    """The keystore is refused: `message` as Elasticsearch words it, `exception` the Java class."""

    def __init__(self, message: str, exception: str = SECURITY_EXCEPTION) -> None:
        super().__init__(message)
        self.message, self.exception = message, exception


class KeystoreWriteError(KeystoreFormatError):
    """KeyStoreWrapper.save refused to write (a UserException: the CLI exits with `exit_code`)."""

    def __init__(self, message: str, exception: str = USER_EXCEPTION, exit_code: int = 78) -> None:
        super().__init__(message, exception)
        self.exit_code = exit_code


def kdf_rounds(version: int) -> int:
    return 210000 if version >= HIGHER_KDF_VERSION else 10000


def validate_setting_name(name: str) -> None:
    if not _SETTING_NAME.fullmatch(name):
        raise KeystoreFormatError(f"Setting name [{name}] does not match the allowed setting name pattern "
                                  f"[{_SETTING_NAME.pattern}]", "java.lang.IllegalArgumentException")


# ----------------------------------------------------------------------------------- step 1: load


@dataclass(frozen=True)
class SealedKeystore:
    """A keystore file whose header and checksum are fine, not decrypted yet."""

    path: Path
    version: int
    has_password: bool
    data: bytes = field(repr=False)

    def decrypt(self, password: str) -> Keystore:
        salt, iv, ciphertext = _read_data(self.data, "<" if self.version >= LE_VERSION else ">")
        key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, kdf_rounds(self.version), KEY_BYTES)
        try:
            plain = AESGCM(key).decrypt(iv, ciphertext, salt)
        except InvalidTag:  # AEADBadTagException: a wrong password, or a changed ciphertext
            raise KeystoreFormatError(WRONG_PASSWORD) from None
        except ValueError:  # an IV GCM cannot use
            raise KeystoreFormatError(CORRUPTED) from None
        return Keystore(_read_entries(plain, self.version), self.version)


def load(path: str | os.PathLike, max_version: int = CURRENT_VERSION) -> SealedKeystore:
    """KeyStoreWrapper.load; `max_version` is the newest format the node's version knows
    (5 before 8.14). FileNotFoundError when there is no keystore."""
    path = Path(path)
    raw = _read_file(path)
    reader = _Reader(raw, path)
    version = _check_header(reader, path, max_version)
    flag = reader.take(1)[0]
    if flag not in (0, 1):
        raise KeystoreFormatError(f"hasPassword boolean is corrupt: {flag:02x}", ILLEGAL_STATE)
    length = reader.int("<" if version >= LE_VERSION else ">")
    data = reader.take(length)
    _check_footer(reader, raw)
    return SealedKeystore(path, version, flag == 1, data)


def _read_file(path: Path) -> bytes:
    """The bytes, or the failure as Java reports it (a missing file stays FileNotFoundError:
    Elasticsearch creates a keystore then)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except PermissionError:
        raise KeystoreFormatError(str(path), "java.nio.file.AccessDeniedException") from None
    except OSError as exc:  # Lucene's NIOFSIndexInput adds itself to the message
        raise KeystoreFormatError(f'{exc.strerror}: NIOFSIndexInput(path="{path}")', "java.io.IOException") from None


def _check_header(reader: _Reader, path: Path, max_version: int) -> int:
    magic = reader.int(">")
    if magic != CODEC_MAGIC:
        raise reader.corrupt(f"codec header mismatch: actual header={magic} vs expected header={CODEC_MAGIC}")
    codec = reader.take(reader.vint()).decode("utf-8", "replace")
    if codec != KEYSTORE_FILENAME:
        raise reader.corrupt(f"codec mismatch: actual codec={codec} vs expected codec={KEYSTORE_FILENAME}")
    version = reader.int(">")
    if version < MIN_VERSION:
        raise KeystoreFormatError(f"The Elasticsearch keystore [{path}] format is too old. "
                                  "You should delete and recreate it in order to upgrade.", ILLEGAL_STATE)
    if version > max_version:
        raise KeystoreFormatError(f"The Elasticsearch keystore [{path}] format is too new. Are you trying to "
                                  "downgrade? You should delete and recreate it in order to downgrade.",
                                  ILLEGAL_STATE)
    return version


def _check_footer(reader: _Reader, raw: bytes) -> None:
    """Lucene's CodecUtil.checkFooter: exactly 16 bytes left, magic, algorithm 0, CRC32."""
    remaining = len(raw) - reader.position
    if remaining != FOOTER_LENGTH:
        how = "truncated" if remaining < FOOTER_LENGTH else "extended"
        raise reader.corrupt(f"misplaced codec footer (file {how}?): remaining={remaining}, "
                             f"expected={FOOTER_LENGTH}, fp={reader.position}")
    magic, algorithm = reader.int(">"), reader.int(">")
    if magic != _signed(FOOTER_MAGIC):
        raise reader.corrupt(f"codec footer mismatch (file truncated?): actual footer={magic} vs expected "
                             f"footer={_signed(FOOTER_MAGIC)}")
    if algorithm != 0:
        raise reader.corrupt(f"codec footer mismatch: unknown algorithmID: {algorithm}")
    actual = zlib.crc32(raw[:reader.position])
    expected = struct.unpack(">q", reader.take(8))[0]
    if expected & ~0xFFFFFFFF:
        raise reader.corrupt(f"Illegal CRC-32 checksum: {expected}")
    if expected != actual:
        raise reader.corrupt(f"checksum failed (hardware problem?) : expected={expected:x} actual={actual:x}")


def _read_data(data: bytes, order: str) -> tuple[bytes, bytes, bytes]:
    """Salt, IV and ciphertext; anything malformed is 'corrupted or tampered with'."""
    position, parts = 0, []
    for _ in range(3):
        if position + 4 > len(data):
            raise KeystoreFormatError(CORRUPTED)
        length = struct.unpack(order + "i", data[position:position + 4])[0]
        if length < 0:  # Java allocates the array first
            raise KeystoreFormatError(str(length), "java.lang.NegativeArraySizeException")
        position += 4
        if position + length > len(data):
            raise KeystoreFormatError(CORRUPTED)
        parts.append(data[position:position + length])
        position += length
    if position != len(data):
        raise KeystoreFormatError(CORRUPTED)
    return parts[0], parts[1], parts[2]


def _read_entries(plain: bytes, version: int) -> dict[str, bytes]:
    reader = _Reader(plain, None)
    entries: dict[str, bytes] = {}
    try:
        for _ in range(reader.int(">")):
            name = reader.utf()
            if version == 3:
                reader.utf()  # format 3 also stored the entry's type
            entries[name] = reader.take(reader.int(">"))
    except EOFError:
        raise KeystoreFormatError(CORRUPTED) from None
    if reader.position != len(plain):
        raise KeystoreFormatError(CORRUPTED)
    return entries


class _Reader:
    """Sequential reads over bytes; past the end is Lucene's "read past EOF"."""

    def __init__(self, data: bytes, path: Path | None) -> None:
        self.data, self.path, self.position = data, path, 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.position + count > len(self.data):
            if self.path is None:
                raise EOFError
            raise KeystoreFormatError(f"read past EOF: {self.resource()}", "java.io.EOFException")
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def int(self, order: str) -> int:
        return struct.unpack(order + "i", self.take(4))[0]

    def vint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def utf(self) -> str:
        return _decode_modified_utf8(self.take(struct.unpack(">H", self.take(2))[0]))

    def resource(self) -> str:
        return f'BufferedChecksumIndexInput(NIOFSIndexInput(path="{self.path}"))'

    def corrupt(self, message: str) -> KeystoreFormatError:
        return KeystoreFormatError(f"{message} (resource={self.resource()})", CORRUPT_INDEX)


# ---------------------------------------------------------------------------- step 2: the entries


class Keystore:
    """Decrypted settings: name -> bytes (strings are their UTF-8 bytes)."""

    def __init__(self, entries: dict[str, bytes] | None = None, version: int = CURRENT_VERSION) -> None:
        self._entries = dict(entries or {})
        self.version = version

    @classmethod
    def create(cls) -> Keystore:
        """A new keystore holding only `keystore.seed` (KeyStoreWrapper.create)."""
        keystore = cls()
        keystore.set_string(SEED_SETTING, new_seed())
        return keystore

    @classmethod
    def open(cls, path: str | os.PathLike, password: str = "", max_version: int = CURRENT_VERSION) -> Keystore:
        return load(path, max_version).decrypt(password)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> bytes:
        return self._entries[name]

    def string(self, name: str) -> str:
        """getString: the bytes as UTF-8 (malformed sequences replaced, as Java's decoder does)."""
        return self._entries[name].decode("utf-8", "replace")

    def strings(self) -> dict[str, str]:
        return {name: self.string(name) for name in self.names()}

    def set_string(self, name: str, value: str) -> None:
        self.set_file(name, value.encode("utf-8"))

    def set_file(self, name: str, value: bytes) -> None:
        validate_setting_name(name)
        self._entries[name] = bytes(value)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def save(self, path: str | os.PathLike, password: str = "", version: int = CURRENT_VERSION) -> None:
        """Write as KeyStoreWrapper.save: `<path>.tmp`, rw-rw----, owner kept, atomic rename."""
        if version not in WRITABLE_VERSIONS:
            raise ValueError(f"Elasticsearch 8.x writes keystore formats {WRITABLE_VERSIONS}, not {version}")
        write_atomically(Path(path), self.to_bytes(password, version))
        self.version = version

    def to_bytes(self, password: str = "", version: int = CURRENT_VERSION) -> bytes:
        salt, iv = secrets.token_bytes(SALT_LENGTH), secrets.token_bytes(IV_LENGTH)
        key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, kdf_rounds(version), KEY_BYTES)
        ciphertext = AESGCM(key).encrypt(iv, self._plaintext(), salt)
        order = "<" if version >= LE_VERSION else ">"
        data = b"".join(struct.pack(order + "i", len(part)) + part for part in (salt, iv, ciphertext))
        codec = KEYSTORE_FILENAME.encode()
        body = (struct.pack(">i", CODEC_MAGIC) + bytes([len(codec)]) + codec + struct.pack(">i", version)
                + bytes([1 if password else 0]) + struct.pack(order + "i", len(data)) + data
                + struct.pack(">Ii", FOOTER_MAGIC, 0))
        return body + struct.pack(">q", zlib.crc32(body))

    def _plaintext(self) -> bytes:
        out = [struct.pack(">i", len(self._entries))]
        for name in self.names():
            encoded = _encode_modified_utf8(name)
            value = self._entries[name]
            out.append(struct.pack(">H", len(encoded)) + encoded + struct.pack(">i", len(value)) + value)
        return b"".join(out)


def new_seed() -> str:
    """KeyStoreWrapper.addBootstrapSeed: 20 random characters."""
    return "".join(secrets.choice(SEED_CHARS) for _ in range(20))


# ------------------------------------------------------------------------------------ writing


def write_atomically(path: Path, data: bytes) -> None:
    """The temp file Lucene creates (CREATE_NEW), rw-rw---- whatever the umask, an owner check,
    then a rename over the keystore; the temp file never outlives a failure."""
    temp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except PermissionError:
        raise KeystoreWriteError(f"unable to create temporary keystore at [{temp}], write permissions required "
                                 f"for [{path.parent}] or run [elasticsearch-keystore upgrade]") from None
    except FileExistsError:
        temp.unlink(missing_ok=True)  # Elasticsearch deletes it on the way out, so a retry succeeds
        raise KeystoreWriteError(str(temp), "java.nio.file.FileAlreadyExistsException", 1) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
            _check_owner(path, os.fstat(out.fileno()).st_uid)
            os.fchmod(out.fileno(), 0o660)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _check_owner(path: Path, writer_uid: int) -> None:
    try:
        owner = os.lstat(path).st_uid
    except FileNotFoundError:
        return
    if owner != writer_uid:
        raise KeystoreWriteError(f"will not overwrite keystore at [{path}], because this incurs changing the "
                                 "file owner")


# ------------------------------------------------------------------------- Java's modified UTF-8


def _encode_modified_utf8(text: str) -> bytes:
    """DataOutput.writeUTF's bytes: UTF-16 units, NUL as two bytes, surrogates one by one."""
    units = struct.unpack(f">{len(text.encode('utf-16-be', 'surrogatepass')) // 2}H",
                          text.encode("utf-16-be", "surrogatepass"))
    out = bytearray()
    for unit in units:
        if 0 < unit < 0x80:
            out.append(unit)
        elif unit < 0x800:
            out += bytes([0xC0 | unit >> 6, 0x80 | unit & 0x3F])
        else:
            out += bytes([0xE0 | unit >> 12, 0x80 | unit >> 6 & 0x3F, 0x80 | unit & 0x3F])
    return bytes(out)


def _decode_modified_utf8(data: bytes) -> str:
    text = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
    return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value
