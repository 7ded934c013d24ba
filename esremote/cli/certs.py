"""`esremote certs`: make a CA and node certificates (PKCS#12) like elasticsearch-certutil does.

Passwords travel only on stdin, one per line: for `node`, the PKCS#12 password first, then the CA
key passphrase when the CA key is encrypted. Outputs are never overwritten; keys are written 0600.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from esremote import pki
from esremote.errors import CertificateError
from esremote.files import atomic_write

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

Days = typer.Option(pki.DEFAULT_DAYS, "--days", min=1, help="Validity in days.")
KeySize = typer.Option(pki.DEFAULT_KEY_SIZE, "--key-size", min=1024, help="RSA key size in bits.")


class _StdinLines:
    """Secrets from stdin, one per line, in the order the command documents."""

    def __init__(self) -> None:
        self._stream = sys.stdin.buffer

    def read(self, what: str) -> str:
        line = self._stream.readline()
        if not line:
            raise CertificateError(f"stdin ended before {what}: send one secret per line")
        try:
            return line.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise CertificateError(f"{what} on stdin is not UTF-8 text") from None


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise CertificateError(f"{path} already exists: esremote never overwrites certificates or "
                                   "keys; choose another path or move it away")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{path}: no {what} there (make one with `esremote certs ca`)") from None
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=mode)
    except OSError as exc:
        raise CertificateError(f"{path}: cannot write it ({exc.strerror})") from None


@app.command("ca")
def make_ca(
    out: Path = typer.Option(..., "--out", help="Directory for ca.crt and ca.key (created if missing).",
                             show_default=False),
    pass_stdin: bool = typer.Option(False, "--pass-stdin",
                                    help="Encrypt ca.key with a passphrase read from the first line of stdin."),
    dn: str = typer.Option(pki.DEFAULT_CA_DN, "--dn", help="Distinguished name of the CA."),
    days: int = Days,
    key_size: int = KeySize,
) -> None:
    """Make a self-signed CA: DIR/ca.crt and DIR/ca.key (mode 0600)."""
    cert_path, key_path = out / "ca.crt", out / "ca.key"
    _refuse_existing(cert_path, key_path)
    passphrase = _StdinLines().read("the CA key passphrase") if pass_stdin else None
    if pass_stdin and not passphrase:
        raise CertificateError("the CA key passphrase on stdin is empty: send a non-empty line, "
                               "or leave out --pass-stdin for an unencrypted key")
    ca = pki.CertificateAuthority.create(dn=dn, days=days, key_size=key_size)
    _write(key_path, ca.key_pem(passphrase), 0o600)
    _write(cert_path, ca.cert_pem(), 0o644)
    typer.echo(f"CA {ca.subject} written to {cert_path} and {key_path}"
               f"{' (key encrypted)' if passphrase else ''}")
    typer.echo(f"SHA-256 fingerprint: {pki.cert_fingerprint(ca.cert)}")


@app.command("node")
def make_node(
    ca_dir: Path = typer.Option(..., "--ca-dir", help="Directory holding ca.crt and ca.key.",
                                show_default=False),
    name: str = typer.Option(..., "--name", help="Instance name: the certificate's CN and the key entry's "
                             "alias in the p12.", show_default=False),
    dns: list[str] = typer.Option([], "--dns", help="DNS name for the SAN (repeatable, or comma-separated; "
                                  "a wildcard such as *.es.example.com serves every node)."),
    ip: list[str] = typer.Option([], "--ip", help="IP address for the SAN (repeatable, or comma-separated)."),
    out: Path = typer.Option(..., "--out", help="The PKCS#12 file to write (never overwritten).",
                             show_default=False),
    pass_stdin: bool = typer.Option(False, "--pass-stdin", help="Read secrets from stdin, one per line: "
                                    "1) the PKCS#12 password; 2) the CA key passphrase, only when ca.key "
                                    "is encrypted."),
    days: int = Days,
    key_size: int = KeySize,
) -> None:
    """Issue a certificate signed by the CA and write it as PKCS#12: a key entry named NAME and the
    CA as trusted entry `ca`, as elasticsearch-certutil does."""
    if not pass_stdin:
        raise CertificateError("node needs --pass-stdin: send the PKCS#12 password as the first line "
                               "of stdin (then the CA key passphrase if ca.key is encrypted)")
    _refuse_existing(out)
    cert_pem, key_pem = _read(ca_dir / "ca.crt", "CA certificate"), _read(ca_dir / "ca.key", "CA key")
    stdin = _StdinLines()
    password = stdin.read("the PKCS#12 password")
    pki.check_p12_password(password)
    passphrase = stdin.read("the CA key passphrase (ca.key is encrypted)") if b"ENCRYPTED" in key_pem else None
    ca = pki.CertificateAuthority.load(cert_pem, key_pem, passphrase)
    node = pki.issue(ca, name, dns=_split(dns), ips=_split(ip), days=days, key_size=key_size)
    _write(out, pki.to_pkcs12(node, ca, password, name=name), 0o600)
    typer.echo(f"certificate for {name} signed by {ca.subject} written to {out}")
    typer.echo(f"SHA-256 fingerprint: {pki.cert_fingerprint(node.cert)}")


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
