"""9.3 strong identity verification (technical preview, es-facts §12): a local node signs what it
sends over the remote cluster port, and the remote checks the signature against the cross-cluster
API key's `certificate_identity`.

Local side, per alias: `cluster.remote.<alias>.signing.certificate` + `.signing.key` (PEM, relative
to the config directory; secure `.signing.secure_key_passphrase` for an encrypted key). With both
set, every request on the alias's API-key connections carries the header `SIGNATURE_HEADER`: the
signing certificate (DER, base64), the algorithm and a signature over the credentials and the
subject info the request carries (the lab's `signablePayload`). Remote side:
`cluster.remote.signing.certificate_authorities` (PEM files) is what a signing certificate must
chain to. Both are dynamic (elasticsearch.yml < persistent < transient); the files are read when
used, again whenever they change (Elasticsearch's SSL file watcher reloads them).

The remote, as `CrossClusterAccessAuthenticationService` does: a signature is verified before the
key is (an untrusted certificate: `Failed to verify cross cluster api key signature certificate
from [...]`; a bad signature: `Invalid cross cluster api key signature from [...]`); then a key
with `certificate_identity` needs the certificate's DN (RFC 2253) to match the pattern as a whole
(`DN from provided certificate [...] does not match API Key certificate identity pattern [...]`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from esremote.lab.errors import ESError, SecurityError
from esremote.lab.formats import pem
from esremote.lab.node.errors import StartupError

SIGNATURE_HEADER = "_cross_cluster_access_signature"
SINCE = (9, 3, 0)
PREFIX = "cluster.remote."
CA_SETTING = "cluster.remote.signing.certificate_authorities"


def enabled(ctx) -> bool:
    return tuple(ctx.config.version) >= SINCE


def effective_settings(ctx) -> dict[str, Any]:
    """The signing settings as the node applies them: yml, then persistent, then transient."""
    layers = ctx.store.snapshot().get("settings", {})
    merged: dict[str, Any] = {}
    for layer in (ctx.config.settings, layers.get("persistent", {}), layers.get("transient", {})):
        merged.update({k: v for k, v in layer.items() if ".signing." in k and v is not None})
    return merged


def _config_path(config, value: Any) -> Path:
    """A path setting as Elasticsearch resolves it: relative to the config directory."""
    path = Path(str(value))
    return path if path.is_absolute() else config.config_dir / path


def _resolve(ctx, value: Any) -> Path:
    return _config_path(ctx.config, value)


def _paths(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [p.strip() for p in str(value or "").strip("[]").split(",") if p.strip()]


# ------------------------------------------------------------------------------ file loading

_CACHE: dict[tuple, Any] = {}
_CACHE_LOCK = threading.Lock()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _read(what: str, path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningConfigError(f"cannot read configured PEM {what} [{path}] because the file does not exist",
                                 setting) from None
    except PermissionError:
        raise SigningConfigError(f"not permitted to read the PEM {what} file [{path}]", setting,
                                 f"java.nio.file.AccessDeniedException: {path}") from None


class SigningConfigError(Exception):
    """Signing material the node cannot load; `setting` is the prefix it was configured under."""

    def __init__(self, message: str, setting: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.message, self.setting, self.cause = message, setting, cause


@dataclass(frozen=True)
class Signer:
    cert: x509.Certificate
    key: Any

    @property
    def algorithm(self) -> str:
        return "SHA256withRSA" if isinstance(self.key, rsa.RSAPrivateKey) else "SHA256withECDSA"

    def sign(self, payload: bytes) -> dict:
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        der = self.cert.public_bytes(Encoding.DER)
        return {"certificates": [base64.b64encode(der).decode()], "algorithm": self.algorithm,
                "signature": base64.b64encode(signature).decode()}


def _load_signer(cert_path: Path, key_path: Path, passphrase: str | None, setting: str) -> Signer:
    stamp = (_stamp(cert_path), _stamp(key_path), bool(passphrase))
    with _CACHE_LOCK:
        if stamp in _CACHE:
            return _CACHE[stamp]
    try:
        cert = pem.load_certificate(_read("certificate", cert_path, setting), what="signing certificate")
        key = pem.load_private_key(_read("private key", key_path, setting), passphrase, what="signing key")
    except pem.PemError as exc:
        raise SigningConfigError(exc.message, setting) from None
    signer = Signer(cert, key)
    with _CACHE_LOCK:
        _CACHE[stamp] = signer
    return signer


def signer_for(ctx, alias: str) -> Signer | None:
    """The alias's signing certificate and key, or None when the alias does not sign."""
    if not enabled(ctx):
        return None
    settings = effective_settings(ctx)
    base = f"{PREFIX}{alias}.signing"
    cert, key = settings.get(f"{base}.certificate"), settings.get(f"{base}.key")
    if not cert or not key:
        return None
    passphrase = (ctx.config.secure or {}).get(f"{base}.secure_key_passphrase")
    try:
        cert_path, key_path = _resolve(ctx, cert), _resolve(ctx, key)
        return _load_signer(cert_path, key_path, passphrase, base)
    except FileNotFoundError as exc:
        raise SigningConfigError(f"cannot read configured PEM file [{exc.filename}] because the file does not "
                                 "exist", base) from None


def trusted_cas(ctx) -> list[x509.Certificate]:
    """What a signing certificate must chain to (none configured: the JDK's trust store, which
    holds no private CA; the lab trusts nothing then)."""
    cas = []
    for value in _paths(effective_settings(ctx).get(CA_SETTING)):
        path = _resolve(ctx, value)
        try:
            stamp = _stamp(path)
        except FileNotFoundError:
            raise SigningConfigError(f"cannot read configured PEM certificate_authorities [{path}] because the "
                                     "file does not exist", "cluster.remote.signing") from None
        with _CACHE_LOCK:
            found = _CACHE.get(stamp)
        if found is None:
            data = _read("certificate_authorities", path, "cluster.remote.signing")
            found = x509.load_pem_x509_certificates(data)
            with _CACHE_LOCK:
                _CACHE[stamp] = found
        cas.extend(found)
    return cas


def check_startup(config) -> None:
    """elasticsearch.yml's signing files must load at start, as Elasticsearch's SSL loader requires."""
    if tuple(config.version) < SINCE:
        return
    settings = config.settings
    for key in sorted(settings):
        if not (key.startswith(PREFIX) and key.endswith(".signing.certificate")):
            continue
        base = key[:-len(".certificate")]
        if not settings.get(f"{base}.key"):
            continue
        passphrase = (config.secure or {}).get(f"{base}.secure_key_passphrase")
        try:
            _load_signer_checked(_config_path(config, settings[key]), _config_path(config, settings[f"{base}.key"]),
                                 passphrase, base)
        except SigningConfigError as exc:
            raise StartupError(f"failed to load SSL configuration [{exc.setting}] - {exc.message}",
                               "org.elasticsearch.ElasticsearchSecurityException", exc.cause) from None


def _load_signer_checked(cert_path: Path, key_path: Path, passphrase: str | None, setting: str) -> Signer:
    for what, path in (("certificate", cert_path), ("private key", key_path)):
        _read(what, path, setting)  # the missing / unreadable file named as Elasticsearch names it
    return _load_signer(cert_path, key_path, passphrase, setting)


# ------------------------------------------------------------------------------ the wire

def payload(credentials: str, subject: Any) -> bytes:
    """What is signed: the credentials and the subject info the request carries."""
    return json.dumps([credentials, subject], sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_headers(ctx, alias: str, headers: dict, credentials_header: str, subject_header: str) -> dict:
    """`headers` plus the signature when the alias signs; a signing file the node cannot load fails
    the request on this node."""
    try:
        signer = signer_for(ctx, alias)
    except SigningConfigError as exc:
        raise ESError(f"failed to load SSL configuration [{exc.setting}] - {exc.message}", status=500,
                      type="security_exception") from None
    if signer is None:
        return headers
    signed = dict(headers)
    signed[SIGNATURE_HEADER] = signer.sign(payload(headers[credentials_header], headers.get(subject_header)))
    return signed


def dn(cert: x509.Certificate) -> str:
    """`getSubjectX500Principal().getName(RFC2253)`: the most specific RDN first, no spaces."""
    return cert.subject.rfc4514_string()


def describe(cert: x509.Certificate) -> str:
    """`X509CertificateSignature.certificateToString`: (subject; type; SHA-1 fingerprint)."""
    principal = ", ".join(rdn.rfc4514_string() for rdn in reversed(cert.subject.rdns))
    return f"({principal};X.509;SHA1:{cert.fingerprint(hashes.SHA1()).hex()})"


def _decode(header: Any) -> tuple[list[x509.Certificate], str, bytes]:
    try:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["certificates"]]
        return certs, str(header["algorithm"]), base64.b64decode(header["signature"])
    except (KeyError, TypeError, ValueError):
        raise SecurityError("failed to extract credentials from headers", status=401) from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains(chain: list[x509.Certificate], cas: list[x509.Certificate]) -> bool:
    """PKIX in short: every certificate in its validity period, the leaf issued by a trusted CA or
    by the chain's next certificate, which is in turn issued by a trusted CA."""
    now = dt.datetime.now(dt.timezone.utc)
    if any(not (c.not_valid_before_utc <= now <= c.not_valid_after_utc) for c in chain):
        return False
    current = chain[0]
    for intermediate in [*chain[1:], None]:
        if any(_issued_by(current, ca) for ca in cas):
            return True
        if intermediate is None or not _issued_by(current, intermediate):
            return False
        current = intermediate
    return False


def _signature_ok(cert: x509.Certificate, algorithm: str, signature: bytes, data: bytes) -> bool:
    key = cert.public_key()
    try:
        if algorithm == "SHA256withRSA" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == "SHA256withECDSA" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify(ctx, header: Any, credentials: str, subject: Any) -> x509.Certificate | None:
    """The remote side: the signature's certificate chains to the configured CAs and signed this
    request; returns the leaf certificate (None on a node that does not play strong identity)."""
    if not enabled(ctx):
        return None
    chain, algorithm, signature = _decode(header)
    if not chain:
        raise SecurityError("Provided signature does not contain any certificates", status=400,
                            type="illegal_argument_exception")
    leaf = chain[0]
    try:
        cas = trusted_cas(ctx)
    except SigningConfigError:
        cas = []
    if not _chains(chain, cas):
        raise SecurityError("Failed to verify cross cluster api key signature certificate from "
                            f"[{describe(leaf)}]", status=401)
    if not _signature_ok(leaf, algorithm, signature, payload(credentials, subject)):
        raise SecurityError(f"Invalid cross cluster api key signature from [{describe(leaf)}]", status=401)
    return leaf


def check_identity(key: dict, leaf: x509.Certificate | None) -> None:
    """A key with `certificate_identity` takes only requests signed by a certificate whose DN
    matches the pattern as a whole (Java's `Matcher.matches`)."""
    pattern = key.get("certificate_identity")
    if pattern is None:
        return
    if leaf is None:  # not verified against a source: the lab's wording
        raise SecurityError(f"API key [{key['id']}] requires a certificate identity matching [{pattern}] but "
                            "the request was not signed", status=401)
    subject = dn(leaf)
    if re.fullmatch(pattern, subject) is None:
        raise SecurityError(f"DN from provided certificate [{subject}] does not match API Key certificate "
                            f"identity pattern [{pattern}]", status=401)
