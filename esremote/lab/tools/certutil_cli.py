"""`bin/elasticsearch-certutil` of a lab node: a twin of certutil's `ca` and `cert` modes (es-facts §8).

Same flags, defaults, output names and zip layouts, prompts and messages as CertificateTool; the
certificates and PKCS#12 files come from the lab's own formats (certs, pem, pkcs12). Like Elasticsearch's terminal: without a tty,
prompts go to stderr and each answer is the next line of stdin. Relative paths resolve against
ES_HOME when it is set (bin/elasticsearch-certutil sets it), else against the working directory.

Not modelled: the `csr` and `http` modes, and the issuing-chain check that 8.13 added to `cert`.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from esremote.files import atomic_write
from esremote.lab.formats import certs, pem, pkcs12
from esremote.lab.tools.terminal import (CONFIG, DATA_ERROR, IO_ERROR, SILENT, USAGE, Terminal, UserError,
                                         run_command)

CA_P12 = "elastic-stack-ca.p12"
CA_ZIP = "elastic-stack-ca.zip"
CERT_P12 = "elastic-certificates.p12"
CERT_ZIP = "certificate-bundle.zip"
DEFAULT_INSTANCE = "instance"
PROMPT = object()  # `--pass` given without a value: ask for it
UNREADABLE_P12 = "cannot open the PKCS#12 file: wrong password or damaged file"

USAGE_TEXT = """Simplifies certificate creation for use with the Elastic Stack

Commands
--------
csr - generate certificate signing requests
cert - generate X.509 certificates and keys
ca - generate a new local certificate authority
http - generate a new certificate (or certificate request) for the Elasticsearch HTTP interface
"""

_FILENAME = re.compile(r"[a-zA-Z0-9_\-.]+")


@dataclass
class Instance:
    """One certificate to make: instances.yml's fields."""

    name: str
    filename: str
    dns: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    cn: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ arguments


class _Parser(argparse.ArgumentParser):
    """argparse that fails like joptsimple: a usage error (exit 64), not argparse's exit 2."""

    def error(self, message: str):
        raise UserError(USAGE, message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="elasticsearch-certutil", add_help=False)
    parser.add_argument("-s", "--silent", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    modes = parser.add_subparsers(dest="mode", parser_class=_Parser)

    def common(mode: argparse.ArgumentParser) -> None:
        mode.add_argument("-s", "--silent", action="store_true", dest="silent_mode")
        mode.add_argument("-v", "--verbose", action="store_true", dest="verbose_mode")
        mode.add_argument("--out")
        mode.add_argument("--pass", dest="password", nargs="?", const=PROMPT, default=None)
        mode.add_argument("--pem", action="store_true")
        mode.add_argument("--days", type=int, default=certs.DEFAULT_DAYS)
        mode.add_argument("--keysize", type=int, default=certs.DEFAULT_KEY_SIZE)
        mode.add_argument("--ca-dn", default=None)

    common(modes.add_parser("ca", add_help=False))
    cert = modes.add_parser("cert", add_help=False)
    common(cert)
    cert.add_argument("--ca")
    cert.add_argument("--ca-cert")
    cert.add_argument("--ca-key")
    cert.add_argument("--ca-pass", nargs="?", const=PROMPT, default=None)
    cert.add_argument("--dns", action="append", default=[])
    cert.add_argument("--ip", action="append", default=[])
    cert.add_argument("--name")
    cert.add_argument("--self-signed", action="store_true")
    cert.add_argument("--multiple", action="store_true")
    cert.add_argument("--in", dest="input")
    cert.add_argument("--keep-ca-key", action="store_true")
    return parser


def resolve(path: str) -> Path:
    """Relative paths are relative to ES_HOME (the real tool runs from there), else to the cwd."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    base = os.environ.get("ES_HOME")
    return (Path(base) if base else Path.cwd()) / candidate


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


# ----------------------------------------------------------------------------------- terminal I/O


def _output_path(terminal: Terminal, out: str | None, default: str) -> Path:
    if out is None:
        out = terminal.read_text(f"Please enter the desired output file [{default}]: ").strip() or default
    path = resolve(out)
    if path.exists():
        raise UserError(IO_ERROR, f"Output file '{path}' already exists")
    return path


def _password(terminal: Terminal, given, prompt_for: str, *, required: bool) -> str | None:
    """`--pass X` -> X; `--pass` -> prompt; no `--pass` -> prompt when the output needs one."""
    if given is PROMPT or (given is None and required):
        given = terminal.read_secret(f"Enter password for {prompt_for} : ")
    if given is not None:
        pkcs12.check_password(given)
    return given


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600)


def _zip(entries: dict[str, bytes]) -> bytes:
    """A zip with a directory entry before each directory's files, as certutil writes it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        seen: set[str] = set()
        for name, data in entries.items():
            directory = name.rsplit("/", 1)[0] + "/"
            if directory not in seen:
                seen.add(directory)
                archive.writestr(directory, b"")
            archive.writestr(name, data)
    return buffer.getvalue()


# -------------------------------------------------------------------------------------- ca mode


def run_ca(args, terminal: Terminal) -> None:
    out = _output_path(terminal, args.out, CA_ZIP if args.pem else CA_P12)
    if args.pem:
        password = _password(terminal, args.password, "ca/ca.key", required=False)
    else:
        password = _password(terminal, args.password, out.name, required=True)
    ca = certs.new_ca(dn=args.ca_dn or certs.DEFAULT_CA_DN, days=args.days, key_size=_key_size(args.keysize))
    if args.pem:
        _write(out, _zip({"ca/ca.crt": ca.cert_pem(), "ca/ca.key": ca.key_pem(password or None)}))
    else:
        _write(out, _p12(ca, None, password, certs.CA_ALIAS))


def _key_size(bits: int) -> int:
    if bits < 1024:
        raise UserError(USAGE, f"keysize must be at least 1024 bits, got {bits}")
    return bits


# ------------------------------------------------------------------------------------ cert mode


def run_cert(args, terminal: Terminal) -> None:
    _check_cert_options(args)
    zipped = args.pem or args.multiple or args.input is not None or args.keep_ca_key
    ca, generated = _ca(args, terminal)  # certutil asks for the CA's password first
    instances = _instances(args, terminal)
    default = CERT_ZIP if zipped else (f"{args.name}.p12" if args.name else CERT_P12)
    out = _output_path(terminal, args.out, default)
    if not zipped:
        password = _password(terminal, args.password, out.name, required=True)
        node = _issue(ca, instances[0], args)
        _write(out, _p12(node, ca, password, instances[0].name))
        terminal.println(f"Certificates written to {out}")
        return
    entries: dict[str, bytes] = {}
    if generated and args.pem:
        entries["ca/ca.crt"] = ca.cert_pem()
        if args.keep_ca_key:
            entries["ca/ca.key"] = ca.key_pem()
    shared = _password(terminal, args.password, "the private keys", required=False) if args.pem else None
    for instance in instances:
        node = _issue(ca, instance, args)
        base = f"{instance.filename}/{instance.filename}"
        if args.pem:
            entries[f"{base}.crt"] = node.cert_pem()
            entries[f"{base}.key"] = node.key_pem(shared or None)
        else:
            password = _password(terminal, args.password, f"{instance.filename}.p12", required=True)
            entries[f"{base}.p12"] = _p12(node, ca, password, instance.name)
    if generated and args.keep_ca_key and not args.pem:
        password = _password(terminal, args.password, "ca/ca.p12", required=True)
        entries["ca/ca.p12"] = _p12(ca, None, password, certs.CA_ALIAS)
    _write(out, _zip(entries))
    terminal.println(f"Certificates written to {out}")


def _check_cert_options(args) -> None:
    if args.ca and (args.ca_cert or args.ca_key):
        raise UserError(USAGE, "--ca and --ca-cert/--ca-key cannot be used together")
    if bool(args.ca_cert) != bool(args.ca_key):
        raise UserError(USAGE, "--ca-cert and --ca-key must be used together")
    if args.self_signed and (args.ca or args.ca_cert):
        raise UserError(USAGE, "--self-signed cannot be used with --ca or --ca-cert")
    if args.input and (args.multiple or args.name or args.dns or args.ip):
        raise UserError(USAGE, "--in cannot be used with --multiple, --name, --dns or --ip")
    if args.multiple and (args.name or args.dns or args.ip):
        raise UserError(USAGE, "--multiple cannot be used with --name, --dns or --ip")
    _key_size(args.keysize)


def _issue(ca: certs.CertificateAuthority | None, instance: Instance, args) -> certs.Identity:
    return certs.issue(ca, instance.name, dns=[*instance.dns, *instance.cn], ips=instance.ips,
                       days=args.days, key_size=args.keysize)


def _p12(identity: certs.Identity, ca: certs.CertificateAuthority | None, password: str, alias: str) -> bytes:
    """certutil's PKCS#12: the key entry `alias` (a one-certificate chain), the CA as trusted `ca`."""
    trusted = {certs.CA_ALIAS: ca.cert} if ca is not None else None
    return pkcs12.dump(password, name=alias, key=identity.key, chain=[identity.cert], trusted=trusted)


def _ca(args, terminal: Terminal) -> tuple[certs.CertificateAuthority | None, bool]:
    """The signing CA, and whether it was generated here (True) or loaded."""
    if args.self_signed:
        return None, False
    if args.ca:
        data = resolve(args.ca).read_bytes()
        password = args.ca_pass
        if password is None or password is PROMPT:
            password = terminal.read_secret(f"Enter password for CA ({args.ca}) : ")
        try:
            contents = pkcs12.load(data, password)
        except pkcs12.Pkcs12Error:
            raise UserError(DATA_ERROR, UNREADABLE_P12) from None
        if contents.key is None or contents.cert is None:
            raise UserError(DATA_ERROR, f"Unable to find a private key and certificate in [{args.ca}]")
        return _checked(certs.CertificateAuthority(contents.cert, contents.key)), False
    if args.ca_cert:
        cert = resolve(args.ca_cert).read_bytes()
        key = resolve(args.ca_key).read_bytes()
        password = args.ca_pass
        if pem.is_encrypted(key) and (password is None or password is PROMPT):
            password = terminal.read_secret(f"Enter password for CA private key ({args.ca_key}) : ")
        return certs.load_ca(cert, key, password or None), False
    dn = args.ca_dn or certs.DEFAULT_CA_DN
    return certs.new_ca(dn=dn, days=args.days, key_size=args.keysize), True


def _checked(ca: certs.CertificateAuthority) -> certs.CertificateAuthority:
    ca.check()
    return ca


# ------------------------------------------------------------------------------------- instances


def _instances(args, terminal: Terminal) -> list[Instance]:
    if args.input:
        found = _read_instances_file(resolve(args.input))
    elif args.multiple:
        found = _prompt_instances(terminal)
    else:
        name = args.name or DEFAULT_INSTANCE
        found = [Instance(name, name, _split(args.dns), _split(args.ip))]
    _validate(found)
    return found


def _read_instances_file(path: Path) -> list[Instance]:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(DATA_ERROR, f"Unable to parse [{path}]: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise UserError(DATA_ERROR, f"[{path}] must hold a list named 'instances'")
    found = []
    for number, raw in enumerate(document["instances"], start=1):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise UserError(DATA_ERROR, f"instance #{number} in [{path}] has no name")
        name = str(raw["name"])
        found.append(Instance(name, str(raw.get("filename") or name), _strings(raw.get("dns")),
                              _strings(raw.get("ip")), _strings(raw.get("cn"))))
    return found


def _strings(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else _split([str(value)])


def _prompt_instances(terminal: Terminal) -> list[Instance]:
    found = []
    while True:
        name = terminal.read_text("Enter instance name: ").strip()
        filename = terminal.read_text(f"Enter name for directories and files of {name} [{name}]: ").strip()
        ips = terminal.read_text("Enter IP Addresses for instance (comma-separated if more than one) []: ")
        dns = terminal.read_text("Enter DNS names for instance (comma-separated if more than one) []: ")
        found.append(Instance(name, filename or name, _split([dns]), _split([ips])))
        more = terminal.read_text("Would you like to specify another instance? Press 'y' to continue "
                                  "entering instance information: ")
        if more.strip().lower() != "y":
            return found


def _validate(found: list[Instance]) -> None:
    filenames: set[str] = set()
    for instance in found:
        if not instance.name:
            raise UserError(CONFIG, "A name must be provided for each instance")
        if instance.name == certs.CA_ALIAS:
            raise UserError(CONFIG, "[ca] may not be used as an instance name")
        if not _FILENAME.fullmatch(instance.filename) or instance.filename in (".", ".."):
            raise UserError(CONFIG, f"[{instance.filename}] is not a valid filename for instance "
                                    f"[{instance.name}]: give a 'filename'")
        if instance.filename == certs.CA_ALIAS:
            raise UserError(CONFIG, "[ca] may not be used as a filename")
        if instance.filename in filenames:
            raise UserError(CONFIG, f"Duplicate filename [{instance.filename}]")
        filenames.add(instance.filename)


# ------------------------------------------------------------------------------------------ main


def run(argv: list[str], terminal: Terminal) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        terminal.println(USAGE_TEXT)
        return 0 if argv else USAGE
    if argv[0] in ("csr", "http"):
        raise UserError(USAGE, f"the lab's certutil does not model the [{argv[0]}] mode")
    if argv[0] not in ("ca", "cert"):
        raise UserError(USAGE, f"Unknown command [{argv[0]}]")
    args = _parser().parse_args(argv)
    if args.silent or args.silent_mode:
        terminal.verbosity = SILENT
    try:
        (run_ca if args.mode == "ca" else run_cert)(args, terminal)
    except (certs.CertError, pem.PemError, pkcs12.Pkcs12Error) as exc:
        raise UserError(DATA_ERROR, exc.message) from None
    return 0


def main(argv: list[str] | None = None, terminal: Terminal | None = None) -> int:
    return run_command(run, USAGE_TEXT, argv, terminal)


if __name__ == "__main__":
    sys.exit(main())
