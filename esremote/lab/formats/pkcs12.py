"""PKCS#12 files as Elasticsearch's Java KeyStore sees them: read with `cryptography`, written by hand.

Java lists two kinds of entries: a *key entry* (private key + certificate chain, under an alias) and
a *trusted certificate entry* (a certificate alone). A certificate bag becomes a trusted entry only
when it carries Oracle's attribute 2.16.840.1.113894.746875.1.1 (trusted for anyExtendedKeyUsage).
`cryptography` cannot write that attribute (`serialize_key_and_certificates(cas=...)` gives bags that
`keytool -list` does not show at all) and cannot combine a key with a Java truststore, so `dump` builds
the file the way JDK 17's PKCS12KeyStore stores it (RFC 7292):

    PFX { version 3, authSafe = data(AuthenticatedSafe), macData (HMAC-SHA-256, PKCS#12 KDF) }
    AuthenticatedSafe = [ data([shrouded key bag]), encryptedData([certificate bags]) ]
    key bag and certificate bags: PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC), 10000 rounds

Reading (`load`) keeps what the lab's TLS set-up needs: the key entry (key, certificate, alias) and
the other certificates split into trusted entries and chain certificates. `cryptography` does not
show the Oracle attribute, so names decide: Java names a trusted entry by its alias and a chain
certificate by its subject DN; `openssl pkcs12 -certfile` leaves chain certificates unnamed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12

from esremote.lab.formats import der

ROUNDS, SALT_BYTES = 10000, 20
ID_DATA, ID_ENCRYPTED_DATA = "1.2.840.113549.1.7.1", "1.2.840.113549.1.7.6"
SHROUDED_KEY_BAG, CERT_BAG = "1.2.840.113549.1.12.10.1.2", "1.2.840.113549.1.12.10.1.3"
X509_CERT = "1.2.840.113549.1.9.22.1"
FRIENDLY_NAME, LOCAL_KEY_ID = "1.2.840.113549.1.9.20", "1.2.840.113549.1.9.21"
ORACLE_TRUSTED_KEY_USAGE, ANY_EXTENDED_KEY_USAGE = "2.16.840.1.113894.746875.1.1", "2.5.29.37.0"
PBES2, PBKDF2, HMAC_SHA256, AES_256_CBC = ("1.2.840.113549.1.5.13", "1.2.840.113549.1.5.12",
                                           "1.2.840.113549.2.9", "2.16.840.1.101.3.4.1.42")
SHA256 = "2.16.840.1.101.3.4.2.1"


# ------------------------------------------------------------------------------------- errors


class Pkcs12Error(Exception):
    """A PKCS#12 file the lab cannot use; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Pkcs12PasswordError(Pkcs12Error):
    """Wrong password (or a damaged file: PKCS#12 cannot tell them apart)."""

    def __init__(self) -> None:
        super().__init__("keystore password was incorrect")


class Pkcs12FileError(Pkcs12Error):
    """The file cannot be read; `java_class` is how Java reports it, `path` which file."""

    java_class = "java.io.IOException"

    def __init__(self, path: Path) -> None:
        super().__init__(f"{self.java_class}: {path}")
        self.path = path


class Pkcs12FileMissing(Pkcs12FileError):
    java_class = "java.nio.file.NoSuchFileException"


class Pkcs12AccessDenied(Pkcs12FileError):
    java_class = "java.nio.file.AccessDeniedException"


def check_password(password: str) -> None:
    """certutil's rule (CertificateTool): Java's PKCS#12 KDF only handles ASCII reliably."""
    if not password.isascii():
        raise Pkcs12Error("PKCS#12 passwords must be plain ASCII")


# ------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Pkcs12Contents:
    """What Java's KeyStore lists: one key entry (maybe none) and the trusted entries."""

    key: object | None
    cert: x509.Certificate | None
    name: str | None                                  # the key entry's alias
    chain: list[x509.Certificate] = field(default_factory=list)
    trusted: dict[str, x509.Certificate] = field(default_factory=dict)


def read(path: str | os.PathLike, password: str) -> Pkcs12Contents:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Pkcs12FileMissing(path) from None
    except PermissionError:
        raise Pkcs12AccessDenied(path) from None
    except OSError:
        raise Pkcs12FileError(path) from None
    return load(data, password)


def load(data: bytes, password: str) -> Pkcs12Contents:
    try:
        parsed = pkcs12.load_pkcs12(data, password.encode("utf-8"))
    except ValueError:
        if not data.startswith(b"\x30"):
            raise Pkcs12Error("not a PKCS#12 file") from None
        raise Pkcs12PasswordError() from None
    cert = parsed.cert.certificate if parsed.cert else None
    chain = [cert] if cert is not None else []
    trusted: dict[str, x509.Certificate] = {}
    for extra in parsed.additional_certs:
        alias = extra.friendly_name.decode("utf-8", "replace") if extra.friendly_name else None
        if alias is None or alias == extra.certificate.subject.rfc4514_string():
            chain.append(extra.certificate)  # Java names a chain certificate after its subject
        else:
            trusted[alias] = extra.certificate
    name = parsed.cert.friendly_name.decode("utf-8", "replace") if parsed.cert and parsed.cert.friendly_name else None
    return Pkcs12Contents(parsed.key, cert, name, chain, trusted)


# ------------------------------------------------------------------------------------- writing


def dump(password: str, *, name: str | None = None, key=None, chain: list[x509.Certificate] = (),
         trusted: dict[str, x509.Certificate] | None = None) -> bytes:
    """A PKCS#12 file with one key entry `name` (key + chain) and trusted entries by alias."""
    safes = []
    cert_bags = [_trusted_bag(alias, cert) for alias, cert in (trusted or {}).items()]
    if key is not None:
        key_id = hashlib.sha1(chain[0].public_bytes(serialization.Encoding.DER)).digest()
        attributes = [_attribute(FRIENDLY_NAME, der.bmp_string(name)),
                      _attribute(LOCAL_KEY_ID, der.octet_string(key_id))]
        safes.append(_data(der.sequence(_key_bag(key, password, attributes))))
        cert_bags = [_cert_bag(chain[0], attributes)] + [_cert_bag(c, []) for c in chain[1:]] + cert_bags
    if cert_bags:
        safes.append(_encrypted_data(der.sequence(*cert_bags), password))
    auth_safe = der.sequence(*safes)
    return der.sequence(der.integer(3), _data(auth_safe), _mac_data(auth_safe, password))


def _data(content: bytes) -> bytes:
    return der.sequence(der.oid(ID_DATA), der.explicit(0, der.octet_string(content)))


def _encrypted_data(content: bytes, password: str) -> bytes:
    scheme, ciphertext = _pbes2_encrypt(content, password)
    info = der.sequence(der.oid(ID_DATA), scheme, der.implicit_octets(0, ciphertext))
    return der.sequence(der.oid(ID_ENCRYPTED_DATA), der.explicit(0, der.sequence(der.integer(0), info)))


def _key_bag(key, password: str, attributes: list[bytes]) -> bytes:
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    scheme, ciphertext = _pbes2_encrypt(plain, password)
    encrypted_info = der.sequence(scheme, der.octet_string(ciphertext))
    return _bag(SHROUDED_KEY_BAG, encrypted_info, attributes)


def _cert_bag(cert: x509.Certificate, attributes: list[bytes]) -> bytes:
    encoded = der.octet_string(cert.public_bytes(serialization.Encoding.DER))
    value = der.sequence(der.oid(X509_CERT), der.explicit(0, encoded))
    return _bag(CERT_BAG, value, attributes)


def _trusted_bag(alias: str, cert: x509.Certificate) -> bytes:
    usage = _attribute(ORACLE_TRUSTED_KEY_USAGE, der.oid(ANY_EXTENDED_KEY_USAGE))
    return _cert_bag(cert, [_attribute(FRIENDLY_NAME, der.bmp_string(alias)), usage])


def _bag(bag_id: str, value: bytes, attributes: list[bytes]) -> bytes:
    parts = [der.oid(bag_id), der.explicit(0, value)]
    if attributes:
        parts.append(der.set_of(*attributes))
    return der.sequence(*parts)


def _attribute(attribute_id: str, value: bytes) -> bytes:
    return der.sequence(der.oid(attribute_id), der.set_of(value))


def _pbes2_encrypt(plain: bytes, password: str) -> tuple[bytes, bytes]:
    """PBES2 (RFC 8018) as JDK 17's PBEWithHmacSHA256AndAES_256: AlgorithmIdentifier, ciphertext."""
    salt, iv = secrets.token_bytes(SALT_BYTES), secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, ROUNDS, 32)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    kdf = der.algorithm(PBKDF2, der.sequence(der.octet_string(salt), der.integer(ROUNDS), der.integer(32),
                                             der.algorithm(HMAC_SHA256, der.null())))
    scheme = der.algorithm(PBES2, der.sequence(kdf, der.algorithm(AES_256_CBC, der.octet_string(iv))))
    return scheme, ciphertext


def _mac_data(auth_safe: bytes, password: str) -> bytes:
    salt = secrets.token_bytes(SALT_BYTES)
    key = pkcs12_kdf(password, salt, ROUNDS, purpose=3, length=32)
    digest = hmac.new(key, auth_safe, hashlib.sha256).digest()
    digest_info = der.sequence(der.algorithm(SHA256, der.null()), der.octet_string(digest))
    return der.sequence(digest_info, der.octet_string(salt), der.integer(ROUNDS))


def pkcs12_kdf(password: str, salt: bytes, rounds: int, purpose: int, length: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64); the password is a BMPString with its
    two-byte terminator, so "" is two zero bytes (as Java and openssl encode it)."""
    u, v = 32, 64
    secret = password.encode("utf-16-be") + b"\x00\x00"
    block = bytearray(_fill(salt, v) + _fill(secret, v))
    out = b""
    while len(out) < length:
        digest = bytes([purpose]) * v + bytes(block)
        for _ in range(rounds):
            digest = hashlib.sha256(digest).digest()
        out += digest
        addend = int.from_bytes((digest * (v // u + 1))[:v], "big") + 1
        for start in range(0, len(block), v):
            chunk = (int.from_bytes(block[start:start + v], "big") + addend) % (1 << (v * 8))
            block[start:start + v] = chunk.to_bytes(v, "big")
    return out[:length]


def _fill(data: bytes, v: int) -> bytes:
    """Copies of `data` up to a multiple of v bytes (the last copy cut short); "" stays ""."""
    if not data:
        return b""
    size = v * -(-len(data) // v)
    return (data * (size // len(data) + 1))[:size]
