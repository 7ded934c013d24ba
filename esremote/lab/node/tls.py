"""The node's TLS contexts, built from its SSL settings the way Elasticsearch's SslConfiguration
loads them: PKCS#12 or PEM material read at start (a bad file refuses the start with Elasticsearch's
message), trust as Elasticsearch describes it, protocols, client authentication."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esremote.lab.node.errors import StartupError

if TYPE_CHECKING:
    from esremote.lab.node.config import NodeConfig


class _Material:
    """A TLS identity and trust read from the files one `*.ssl` prefix names (PEM strings)."""

    def __init__(self) -> None:
        self.chain_pem: str | None = None
        self.key_pem: str | None = None
        self.ca_pems: list[str] = []
        self.trust_description = "JDK-trusted-certs"


def _ssl_error(prefix: str, message: str, cause: str | None = None) -> StartupError:
    return StartupError(f"failed to load SSL configuration [{prefix}] - {message}",
                        "org.elasticsearch.ElasticsearchSecurityException", cause)


def _resolve(config: NodeConfig, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else config.config_dir / path


def _read_file(prefix: str, what: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] because the file does not exist") from None
    except PermissionError:
        raise _ssl_error(prefix, f"not permitted to read the {what} file [{path}]",
                         f"java.nio.file.AccessDeniedException: {path}") from None
    except OSError as exc:
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] - {exc.strerror}") from None


def _store_type(config: NodeConfig, prefix: str, store: str, path: Path) -> str:
    kind = str(config.settings.get(f"{prefix}.{store}.type") or "").upper()
    if not kind:
        kind = "PKCS12" if path.suffix.lower() in (".p12", ".pfx", ".pkcs12") else "jks"
    if kind not in ("PKCS12",):
        raise _ssl_error(prefix, f"cannot read configured [{kind}] keystore [{path}] - the lab reads PKCS#12 only")
    return kind


_P12_CACHE: dict[tuple[bytes, str], Any] = {}


def _open_p12(prefix: str, what: str, path: Path, password: str):
    """Open a PKCS#12 file (decryption is slow: the same file and password are opened once)."""
    from esremote.lab.formats import pkcs12

    data = _read_file(prefix, what, path)
    cached = _P12_CACHE.get((data, password))
    if cached is not None:
        return cached
    try:
        _P12_CACHE[(data, password)] = contents = pkcs12.load(data, password)
        return contents
    except pkcs12.Pkcs12Error:
        given = "a keystore password was provided" if password else "no password was provided"
        raise _ssl_error(prefix, f"cannot read configured {what} [{path}] - this is usually caused by "
                                 f"an incorrect password; ({given})") from None


def _pem(cert) -> str:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _read_material(config: NodeConfig, prefix: str) -> _Material:
    s, secure, m = config.settings, config.secure, _Material()
    keystore_path = s.get(f"{prefix}.keystore.path")
    if keystore_path and s.get(f"{prefix}.key"):
        raise StartupError(f"[{prefix}.keystore.path] and [{prefix}.key] may not be used at the same time")
    if keystore_path:
        path = _resolve(config, keystore_path)
        kind = _store_type(config, prefix, "keystore", path)
        contents = _open_p12(prefix, f"[{kind}] keystore", path,
                             secure.get(f"{prefix}.keystore.secure_password", ""))
        if contents.key is not None and contents.cert is not None:
            m.key_pem, m.chain_pem = _key_pem(contents.key), "".join(_pem(c) for c in contents.chain)
        m.ca_pems = [_pem(c) for c in contents.trusted.values()]
        m.trust_description = f"StoreTrustConfig{{path={keystore_path}, password=<non-empty>, type={kind}, algorithm=PKIX}}"
    elif s.get(f"{prefix}.key") or s.get(f"{prefix}.certificate"):
        from esremote.lab.formats import pem
        key_path = _resolve(config, s.get(f"{prefix}.key", ""))
        cert_path = _resolve(config, s.get(f"{prefix}.certificate", ""))
        key_data = _read_file(prefix, "PEM private key", key_path)
        cert_data = _read_file(prefix, "PEM certificate", cert_path)
        try:
            key = pem.load_private_key(key_data, secure.get(f"{prefix}.secure_key_passphrase") or None)
        except pem.PemError:
            raise _ssl_error(prefix, f"cannot load PEM private key from [{key_path}] due to "
                                     "UnrecoverableKeyException; this is usually caused by an incorrect password") from None
        m.key_pem, m.chain_pem = _key_pem(key), cert_data.decode("ascii", "replace")
    truststore = s.get(f"{prefix}.truststore.path")
    authorities = s.get(f"{prefix}.certificate_authorities")
    if truststore and authorities:
        raise StartupError(f"[{prefix}.truststore.path] and [{prefix}.certificate_authorities] may not be used at the same time")
    if truststore:
        path = _resolve(config, truststore)
        kind = _store_type(config, prefix, "truststore", path)
        contents = _open_p12(prefix, f"[{kind}] keystore (as a truststore)", path,
                             secure.get(f"{prefix}.truststore.secure_password", ""))
        m.ca_pems = [_pem(c) for c in contents.trusted.values()] + [_pem(c) for c in contents.chain]
        m.trust_description = f"StoreTrustConfig{{path={truststore}, password=<non-empty>, type={kind}, algorithm=PKIX}}"
    elif authorities:
        paths = [_resolve(config, a) for a in authorities]
        m.ca_pems = [_read_file(prefix, "PEM certificate_authorities", p).decode("ascii", "replace") for p in paths]
        m.trust_description = f"PEM-trust{{{','.join(str(p) for p in paths)}}}"
    return m


def _load_chain(context: ssl.SSLContext, m: _Material) -> None:
    """Load key and chain from memory: a memfd, so the private key never lands on disk."""
    fd = os.memfd_create("lab-ssl-identity")
    try:
        os.write(fd, (m.chain_pem + "\n" + m.key_pem).encode())
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _trust(context: ssl.SSLContext, m: _Material, jdk_default: bool) -> None:
    if m.ca_pems:
        context.load_verify_locations(cadata="\n".join(m.ca_pems))
    if jdk_default and not m.ca_pems:
        context.load_default_certs()


_PROTOCOLS = {"TLSv1.3": ssl.TLSVersion.TLSv1_3, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
              "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1": ssl.TLSVersion.TLSv1}


def _protocols(context: ssl.SSLContext, config: NodeConfig, prefix: str) -> None:
    """`supported_protocols` as the context's minimum and maximum TLS versions."""
    wanted = config.settings.get(f"{prefix}.supported_protocols")
    if not wanted:
        return
    unknown = [p for p in wanted if p not in _PROTOCOLS]
    if unknown:
        raise StartupError(f"failed to load SSL configuration [{prefix}] - unsupported protocol [{unknown[0]}]",
                           "org.elasticsearch.ElasticsearchSecurityException")
    versions = sorted(_PROTOCOLS[p] for p in wanted)
    context.minimum_version, context.maximum_version = versions[0], versions[-1]


def _server_context(config: NodeConfig, prefix: str, m: _Material, client_auth_default: str) -> ssl.SSLContext:
    if not (m.key_pem and m.chain_pem):
        raise StartupError(
            f"invalid SSL configuration for {prefix} - server ssl configuration requires a key and certificate, "
            f"but these have not been configured; you must set either [{prefix}.keystore.path], or both "
            f"[{prefix}.key] and [{prefix}.certificate]", "org.elasticsearch.ElasticsearchSecurityException")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _protocols(context, config, prefix)
    _load_chain(context, m)
    mode = config.settings.get(f"{prefix}.client_authentication", client_auth_default)
    context.verify_mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                           "required": ssl.CERT_REQUIRED}[mode]
    if mode != "none":
        _trust(context, m, jdk_default=True)
    return context


def _client_context(config: NodeConfig, prefix: str, m: _Material) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _protocols(context, config, prefix)
    mode = config.settings.get(f"{prefix}.verification_mode", "full")
    context.check_hostname = mode == "full"
    if mode == "none":
        context.verify_mode = ssl.CERT_NONE
    else:
        _trust(context, m, jdk_default=True)
    if m.key_pem and m.chain_pem:
        _load_chain(context, m)
    return context


def build_ssl_contexts(config: NodeConfig) -> None:
    """HTTP server; transport server + client (mutual TLS); remote-cluster server and client."""
    s = config.settings
    http = "xpack.security.http.ssl"
    config.http_ssl = bool(s.get(f"{http}.enabled", False))
    if config.http_ssl:
        config.http_server = _server_context(config, http, _read_material(config, http), "none")
        config.trust_descriptions[http] = "n/a"
    transport = "xpack.security.transport.ssl"
    if s.get(f"{transport}.enabled", False):
        m = _read_material(config, transport)
        config.transport_server = _server_context(config, transport, m, "required")
        config.transport_client = _client_context(config, transport, m)
        config.trust_descriptions[transport] = m.trust_description
    server = "xpack.security.remote_cluster_server.ssl"
    if config.remote_cluster_port is not None and s.get(f"{server}.enabled", True):
        config.remote_cluster_server = _server_context(config, server, _read_material(config, server), "none")
    client = "xpack.security.remote_cluster_client.ssl"
    if s.get(f"{client}.enabled", True):
        m = _read_material(config, client)  # read now: a bad file refuses the start
        config.lazy_factories["remote_cluster_client"] = lambda: _client_context(config, client, m)
        config.trust_descriptions[client] = m.trust_description


