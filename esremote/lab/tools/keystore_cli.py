"""`bin/elasticsearch-keystore` of a lab node: a twin of Elasticsearch's keystore CLI (es-facts §7).

Same sub-commands, flags, prompts, messages and exit codes as KeyStoreCli, on the real file format
(the lab's own formats/keystore.py). Like Elasticsearch's terminal: without a tty, prompts go to stderr and every
answer or secret is the next line of stdin (the keystore password first, when there is one).

The keystore is `$ES_PATH_CONF/elasticsearch.keystore`, else `$ES_HOME/config/elasticsearch.keystore`.
Writes use format 6 when the node's version (`$ES_HOME/lib/lab-node.json`) is 8.14 or later, else 5.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from esremote.files import atomic_write
from esremote.lab.formats.keystore import (CORRUPT_INDEX, KEYSTORE_FILENAME, SEED_SETTING, USER_EXCEPTION, Keystore,
                                           KeystoreFormatError, KeystoreWriteError, SealedKeystore, load, new_seed)
from esremote.lab.tools.terminal import (CODE_ERROR, CONFIG, DATA_ERROR, IO_ERROR, NORMAL, OK, SILENT, USAGE, VERBOSE,
                                         JavaError, OptionError, Terminal, UserError, isatty, run_command)

PASSWORD_PROMPT = "Enter password for the elasticsearch keystore : "
NEW_PASSWORD_PROMPT = "Enter new password for the elasticsearch keystore (empty for no password): "
CONFIRM_PASSWORD_PROMPT = "Enter same password again: "

USAGE_TEXT = """A tool for managing settings stored in the elasticsearch keystore

Commands
--------
create - Creates a new elasticsearch keystore
list - List entries in the keystore
show - Show a value from the keystore
add - Add a string settings to the keystore
add-file - Add a file setting to the keystore
remove - Remove settings from the keystore
upgrade - Upgrade the keystore format
passwd - Changes the password of a keystore
has-passwd - Succeeds if the keystore exists and is password-protected, fails with exit code 1 otherwise.

Non-option arguments:
command

Option         Description
------         -----------
-h, --help     Show help
-s, --silent   Show minimal output
-v, --verbose  Show verbose output
"""

GLOBAL_FLAGS = {"h": "help", "s": "silent", "v": "verbose"}
COMMAND_FLAGS = {
    "create": {"p": "password"},
    "list": {},
    "show": {"o": "output"},
    "add": {"x": "stdin", "f": "force"},
    "add-file": {"f": "force"},
    "remove": {},
    "upgrade": {},
    "passwd": {},
    "has-passwd": {},
}
OPTIONS_WITH_VALUE = {"output"}


# --- where the keystore is, and which format this "binary" writes -------------------------------

def config_dir(environ=os.environ) -> Path:
    if environ.get("ES_PATH_CONF"):
        return Path(environ["ES_PATH_CONF"])
    if environ.get("ES_HOME"):
        return Path(environ["ES_HOME"]) / "config"
    raise UserError(CONFIG, "ES_PATH_CONF or ES_HOME must be set (bin/elasticsearch-keystore sets ES_HOME)")


def write_version(environ=os.environ) -> int:
    """Format 6 from 8.14 on, 5 before; 6 when the node's version is unknown."""
    home = environ.get("ES_HOME")
    try:
        info = json.loads((Path(home) / "lib" / "lab-node.json").read_text()) if home else {}
    except (OSError, ValueError):
        info = {}
    version = info.get("version") if isinstance(info, dict) else None
    if isinstance(version, str):
        version = version.split("-")[0].split(".")
    try:
        major_minor = tuple(int(part) for part in version[:2]) if version else None
    except (TypeError, ValueError):
        major_minor = None
    return 5 if major_minor is not None and major_minor < (8, 14) else 6


# --- argument parsing (joptsimple-like: short flags combine, `--` ends options) ------------------

def parse_args(argv: list[str]) -> tuple[str | None, dict[str, object], list[str]]:
    """-> (command, options, positional arguments). Global flags may come before or after it."""
    command: str | None = None
    options: dict[str, object] = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flags = {**GLOBAL_FLAGS, **COMMAND_FLAGS.get(command or "", {})}
        if arg == "--":
            args += argv[i + 1:]
            break
        if arg.startswith("--") and len(arg) > 2:
            name, _, value = arg[2:].partition("=")
            if name not in flags.values():
                raise OptionError(f"{name} is not a recognized option")
            i = _set_option(options, name, value or None, argv, i)
        elif arg.startswith("-") and len(arg) > 1:
            for pos, letter in enumerate(arg[1:], start=1):
                if letter not in flags:
                    raise OptionError(f"{letter} is not a recognized option")
                name = flags[letter]
                if name in OPTIONS_WITH_VALUE:
                    i = _set_option(options, name, arg[pos + 1:] or None, argv, i)
                    break
                options[name] = True
        elif command is None:
            command = arg
        else:
            args.append(arg)
        i += 1
    return command, options, args


def _set_option(options: dict, name: str, value: str | None, argv: list[str], i: int) -> int:
    if name not in OPTIONS_WITH_VALUE:
        options[name] = True
        return i
    if value is None:
        if i + 1 >= len(argv):
            raise OptionError(f"Option {name} requires an argument")
        i += 1
        value = argv[i]
    options[name] = value
    return i


# --- loading and saving -------------------------------------------------------------------------

def keystore_path(environ=os.environ) -> Path:
    return config_dir(environ) / KEYSTORE_FILENAME


def not_found(path: Path) -> UserError:
    return UserError(DATA_ERROR, f"Elasticsearch keystore not found at [{path}]. "
                                 "Use 'create' command to create one.")


def load_sealed(path: Path) -> SealedKeystore:
    """KeyStoreWrapper.load: the clear header, with load's failures (they are not UserExceptions).
    A node older than 8.14 does not know format 6 and refuses it as too new."""
    try:
        return load(path, write_version())
    except KeystoreFormatError as exc:  # Lucene's CorruptIndexException is an IOException
        raise JavaError(exc.exception, exc.message, IO_ERROR if exc.exception == CORRUPT_INDEX else CODE_ERROR) from None


def is_protected(path: Path) -> bool:
    return load_sealed(path).has_password


def open_keystore(terminal: Terminal, path: Path) -> tuple[Keystore, str]:
    """BaseKeyStoreCommand: load, ask the password when there is one, decrypt."""
    if not path.exists():
        raise not_found(path)
    sealed = load_sealed(path)
    password = terminal.read_secret(PASSWORD_PROMPT) if sealed.has_password else ""
    try:
        return sealed.decrypt(password), password
    except KeystoreFormatError as exc:  # SecurityException in Elasticsearch
        raise UserError(DATA_ERROR, exc.message) from None


def save(keystore: Keystore, path: Path, password: str) -> None:
    try:
        keystore.save(path, password, version=write_version())
    except KeystoreWriteError as exc:
        if exc.exception != USER_EXCEPTION:
            raise JavaError(exc.exception, exc.message, IO_ERROR) from None
        raise UserError(exc.exit_code, exc.message) from None


def read_new_password(terminal: Terminal) -> str:
    password = terminal.read_secret(NEW_PASSWORD_PROMPT)
    if terminal.read_secret(CONFIRM_PASSWORD_PROMPT) != password:
        raise UserError(DATA_ERROR, "Passwords are not equal, exiting.")
    return password


def set_setting(keystore: Keystore, name: str, value: bytes) -> None:
    try:
        keystore.set_file(name, value)
    except KeystoreFormatError as exc:  # the setting-name pattern (IllegalArgumentException)
        raise UserError(DATA_ERROR, exc.message) from None


# --- sub-commands -------------------------------------------------------------------------------

def cmd_create(terminal: Terminal, options: dict, args: list[str]) -> int:
    path = keystore_path()
    password = read_new_password(terminal) if options.get("password") else ""  # asked first, as ES does
    if path.exists() and not terminal.prompt_yes_no("An elasticsearch keystore already exists. Overwrite?"):
        terminal.println("Exiting without creating keystore.")
        return OK
    save(Keystore.create(), path, password)
    terminal.println(f"Created elasticsearch keystore in {path}")
    return OK


def cmd_list(terminal: Terminal, options: dict, args: list[str]) -> int:
    keystore, _ = open_keystore(terminal, keystore_path())
    for name in keystore.names():
        terminal.println(name)
    return OK


def cmd_show(terminal: Terminal, options: dict, args: list[str]) -> int:
    if len(args) != 1:
        raise UserError(USAGE, "Must provide a single setting name to show")
    keystore, _ = open_keystore(terminal, keystore_path())
    name = args[0]
    if name not in keystore:
        raise UserError(CONFIG, f"Setting [{name}] does not exist in the keystore.")
    value = keystore.get(name)
    if options.get("output"):
        # 0600: the file holds a secure setting, so the umask's usual 0644 would publish it.
        atomic_write(Path(str(options["output"])), value, mode=0o600)
        return OK
    # Without a console, Elasticsearch writes to a raw output stream: no newline added, bytes as is.
    console = terminal.tty and isatty(terminal.out)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        if console:
            terminal.error_println(f"The value for the setting [{name}] is not a string and cannot be "
                                   "printed to the console")
            raise UserError(IO_ERROR, "Please redirect binary output to a file instead") from None
        terminal.out.flush()
        terminal.out.buffer.write(value)
        terminal.out.buffer.flush()
        return OK
    if console:
        terminal.println(text, SILENT)
    elif terminal.verbosity >= SILENT:
        terminal.out.write(text)
        terminal.out.flush()
    return OK


def _open_or_create(terminal: Terminal, force: bool) -> tuple[Keystore | None, str]:
    path = keystore_path()
    if path.exists():
        return open_keystore(terminal, path)
    if not force and not terminal.prompt_yes_no(
            "The elasticsearch keystore does not exist. Do you want to create it?"):
        terminal.println("Exiting without creating keystore.")
        return None, ""
    keystore = Keystore.create()
    save(keystore, path, "")
    return keystore, ""


def cmd_add(terminal: Terminal, options: dict, args: list[str]) -> int:
    if not args:
        raise UserError(USAGE, "the setting names can not be empty")
    keystore, password = _open_or_create(terminal, bool(options.get("force")))
    if keystore is None:
        return OK
    for name in args:
        if name in keystore and not options.get("force") and not terminal.prompt_yes_no(
                f"Setting {name} already exists. Overwrite?"):
            terminal.println("Exiting without modifying keystore.")
            return OK
        value = terminal.read_secret("" if options.get("stdin") else f"Enter value for {name}: ")
        set_setting(keystore, name, value.encode("utf-8"))
    save(keystore, keystore_path(), password)
    return OK


def cmd_add_file(terminal: Terminal, options: dict, args: list[str]) -> int:
    if not args:
        raise UserError(USAGE, "Missing setting name")
    if len(args) % 2:
        raise UserError(USAGE, "settings and filenames must come in pairs")
    keystore, password = _open_or_create(terminal, bool(options.get("force")))
    if keystore is None:
        return OK
    for name, file in zip(args[::2], args[1::2]):
        if name in keystore and not options.get("force") and not terminal.prompt_yes_no(
                f"Setting {name} already exists. Overwrite?"):
            terminal.println("Exiting without modifying keystore.")
            return OK
        if not Path(file).is_file():
            raise UserError(IO_ERROR, f"File [{file}] does not exist")
        set_setting(keystore, name, Path(file).read_bytes())
    save(keystore, keystore_path(), password)
    return OK


def cmd_remove(terminal: Terminal, options: dict, args: list[str]) -> int:
    if not args:
        raise UserError(USAGE, "Must supply at least one setting to remove")
    keystore, password = open_keystore(terminal, keystore_path())
    for name in args:
        if name not in keystore:
            raise UserError(CONFIG, f"Setting [{name}] does not exist in the keystore.")
        keystore.remove(name)
    save(keystore, keystore_path(), password)
    return OK


def cmd_upgrade(terminal: Terminal, options: dict, args: list[str]) -> int:
    keystore, password = open_keystore(terminal, keystore_path())
    if keystore.version == write_version() and SEED_SETTING in keystore:
        return OK
    if SEED_SETTING not in keystore:
        keystore.set_string(SEED_SETTING, new_seed())
    save(keystore, keystore_path(), password)
    return OK


def cmd_passwd(terminal: Terminal, options: dict, args: list[str]) -> int:
    keystore, _ = open_keystore(terminal, keystore_path())
    save(keystore, keystore_path(), read_new_password(terminal))
    terminal.println("Elasticsearch keystore password changed successfully.")
    return OK


def cmd_has_passwd(terminal: Terminal, options: dict, args: list[str]) -> int:
    path = keystore_path()
    # Printed here at NORMAL level, so that --silent silences them too.
    if not path.exists():
        terminal.error_println("ERROR: Elasticsearch keystore not found")
        raise UserError(1, None)
    if not is_protected(path):
        terminal.error_println("ERROR: Keystore is not password-protected")
        raise UserError(1, None)
    terminal.println("Keystore is password-protected")
    return OK


COMMANDS = {
    "create": cmd_create, "list": cmd_list, "show": cmd_show, "add": cmd_add, "add-file": cmd_add_file,
    "remove": cmd_remove, "upgrade": cmd_upgrade, "passwd": cmd_passwd, "has-passwd": cmd_has_passwd,
}


def run(argv: list[str], terminal: Terminal) -> int:
    command, options, args = parse_args(argv)
    if options.get("silent") and options.get("verbose"):
        raise UserError(USAGE, "Cannot specify -s and -v together")
    terminal.verbosity = SILENT if options.get("silent") else VERBOSE if options.get("verbose") else NORMAL
    if options.get("help"):
        terminal.println(USAGE_TEXT, SILENT)
        return OK
    if command is None:
        raise UserError(USAGE, "Missing command")
    if command not in COMMANDS:
        raise UserError(USAGE, f"Unknown command [{command}]")
    return COMMANDS[command](terminal, options, args)


def main(argv: list[str] | None = None, terminal: Terminal | None = None) -> int:
    return run_command(run, USAGE_TEXT, argv, terminal)


if __name__ == "__main__":
    sys.exit(main())
