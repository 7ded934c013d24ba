"""The terminal and error handling that Elasticsearch's CLI tools share (org.elasticsearch.cli).

`run_command` is `Command.main`: it runs a tool and turns its errors into Elasticsearch's output and
exit codes. A tool raises `UserError` for what the user must fix, `OptionError` for a bad flag, and
`JavaError` for the other exceptions Elasticsearch prints as `class: message`.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable

# org.elasticsearch.cli.ExitCodes
OK, USAGE, DATA_ERROR, CODE_ERROR, IO_ERROR, CONFIG = 0, 64, 65, 70, 74, 78
SILENT, NORMAL, VERBOSE = 0, 1, 2

STDIN_CLOSED = "unable to read from standard input; is standard input open and a tty attached?"


class UserError(Exception):
    """org.elasticsearch.cli.UserException: an exit code and a message (None: already printed)."""

    def __init__(self, exit_code: int, message: str | None) -> None:
        super().__init__(message)
        self.exit_code, self.message = exit_code, message


class JavaError(Exception):
    """Any other exception: Elasticsearch prints it (class: message) and exits 74 for an IOException,
    70 for the rest."""

    def __init__(self, java_class: str, message: str, exit_code: int = CODE_ERROR) -> None:
        super().__init__(message)
        self.java_class, self.message, self.exit_code = java_class, message, exit_code


class OptionError(UserError):
    """joptsimple's OptionException: printed without the exit-code suffix, always USAGE."""

    def __init__(self, message: str) -> None:
        super().__init__(USAGE, message)


class Terminal:
    """Prompts and output; without a tty, answers are lines of stdin (prompts on stderr)."""

    def __init__(self, stdin=None, stdout=None, stderr=None) -> None:
        self.stdin = stdin or sys.stdin.buffer
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.verbosity = NORMAL
        self.tty = isatty(self.stdin)

    def println(self, text: str, level: int = NORMAL) -> None:
        if self.verbosity >= level:
            print(text, file=self.out, flush=True)

    def error_println(self, text: str, level: int = NORMAL) -> None:
        if self.verbosity >= level:
            print(text, file=self.err, flush=True)

    def read_line(self) -> str | None:
        line = self.stdin.readline()
        if not line:
            return None
        # Java's reader replaces undecodable bytes rather than failing.
        return line.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")

    def read_text(self, prompt: str, secret: bool = False) -> str:
        if self.tty:
            try:
                return getpass.getpass(prompt) if secret else input(prompt)
            except EOFError:
                raise JavaError("java.lang.IllegalStateException", STDIN_CLOSED) from None
        self.err.write(prompt)
        self.err.flush()
        line = self.read_line()
        if line is None:
            raise JavaError("java.lang.IllegalStateException", STDIN_CLOSED)
        return line

    def read_secret(self, prompt: str) -> str:
        return self.read_text(prompt, secret=True)

    def prompt_yes_no(self, question: str, default_yes: bool = False) -> bool:
        while True:
            answer = self.read_text(f"{question} {'[Y/n]' if default_yes else '[y/N]'}").lower()
            if not answer:
                return default_yes
            if answer in ("y", "n"):
                return answer == "y"
            self.error_println(f"Did not understand answer '{answer}'")


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_command(run: Callable[[list[str], Terminal], int], usage_text: str,
                argv: list[str] | None = None, terminal: Terminal | None = None) -> int:
    """Run a tool's `run(argv, terminal)` and print its errors as Elasticsearch's Command does."""
    terminal = terminal or Terminal()
    try:
        return run(sys.argv[1:] if argv is None else argv, terminal)
    except UserError as exc:
        if exc.exit_code == USAGE:
            terminal.error_println(usage_text, SILENT)
        if isinstance(exc, OptionError):
            terminal.error_println(f"ERROR: {exc.message}", SILENT)
        elif exc.message is not None:
            terminal.error_println("")
            terminal.error_println(f"ERROR: {exc.message}, with exit code {exc.exit_code}", SILENT)
        return exc.exit_code
    except JavaError as exc:
        terminal.error_println(f"{exc.java_class}: {exc.message}", SILENT)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # Elasticsearch prints IOExceptions and exits IO_ERROR
        where = f" [{exc.filename}]" if exc.filename else ""
        terminal.error_println(f"java.io.IOException: {exc.strerror or exc}{where}", SILENT)
        return IO_ERROR
