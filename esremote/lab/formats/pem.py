"""PEM private keys and certificates, as certutil writes them and Elasticsearch reads them.

certutil (BouncyCastle's PEM writer) writes a key in its traditional form (`RSA PRIVATE KEY`,
`EC PRIVATE KEY`); with `--pass` the body is encrypted OpenSSL-style with AES-128-CBC: the key is
MD5(password + the IV's first 8 bytes) (EVP_BytesToKey, one round), headers `Proc-Type: 4,ENCRYPTED`
and `DEK-Info: AES-128-CBC,<IV in hex>`. `cryptography` only writes AES-256 there, so that
encryption is done here. Reading goes through `cryptography`, which takes every form Elasticsearch
takes (PKCS#1, SEC1, PKCS#8, encrypted or not).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import textwrap

from cryptography import x509
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class PemError(Exception):
    """A PEM file the lab cannot use; `wrong_passphrase` tells a bad passphrase from bad data."""

    def __init__(self, message: str, wrong_passphrase: bool = False) -> None:
        super().__init__(message)
        self.message, self.wrong_passphrase = message, wrong_passphrase


def is_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED" in data


def load_private_key(data: bytes, passphrase: str | None = None, what: str = "private key"):
    encrypted = is_encrypted(data)
    if encrypted and not passphrase:
        raise PemError(f"the {what} is encrypted: give its passphrase", wrong_passphrase=True)
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode("utf-8") if encrypted else None)
    except ValueError:
        if encrypted:
            raise PemError(f"cannot decrypt the {what}: wrong passphrase", wrong_passphrase=True) from None
        raise PemError(f"the {what} is not a PEM private key") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise PemError(f"the {what} is a {type(key).__name__}: only RSA and EC keys are supported")
    return key


def load_certificate(data: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PemError(f"the {what} is not a PEM X.509 certificate") from None


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key, passphrase: str | None = None) -> bytes:
    """The traditional PEM form; AES-128-CBC encrypted when a passphrase is given."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    label = "RSA PRIVATE KEY" if isinstance(key, rsa.RSAPrivateKey) else "EC PRIVATE KEY"
    headers = ""
    if passphrase:
        iv = secrets.token_bytes(16)
        der = _aes128_cbc(der, _openssl_key(passphrase.encode("utf-8"), iv[:8]), iv)
        headers = f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{iv.hex().upper()}\n\n"
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{headers}{body}\n-----END {label}-----\n".encode()


def _openssl_key(password: bytes, salt: bytes) -> bytes:
    """EVP_BytesToKey(MD5, one round) for a 16-byte key: one MD5 block is enough."""
    return hashlib.md5(password + salt).digest()


def _aes128_cbc(plain: bytes, key: bytes, iv: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
