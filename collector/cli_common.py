"""What the `egress-collector` commands share: exit codes, the two consoles and the one-line error.

collector/cli.py assembles the app from its own commands (selfcheck, validate) and those of
collector/cli_service.py (serve, check, token); both import this module and neither imports the other's.

Errors: bad input is an `InputError` (detectors/inputs.py) or one of the few other one-line errors a
command names (a records directory, the OS refusing a file); it becomes one line on stderr and exit 2.
Anything else is a bug: one line saying so, the traceback in the log with -v, and exit 3 — never passed off
as the user's bad input.
"""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

__all__ = ["EXIT_BAD_INPUT", "EXIT_FINDINGS", "EXIT_INTERNAL", "EXIT_OK", "err_console", "fail", "internal",
           "named", "one_line", "out_console"]

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3

# Piped output (CI logs, `| less`) gets a wide table instead of rich's 80-column default.
out_console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)
log = logging.getLogger("collector")


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def named(path: object, e: BaseException) -> str:
    """One line that names the file, without naming it twice."""
    msg = one_line(e)
    return msg if str(path) in msg else f"{path}: {msg}"


def fail(message: str) -> typer.Exit:
    """One line on stderr; the caller raises the returned exit (2: bad input)."""
    err_console.print(f"egress-collector: {message}", markup=False)
    return typer.Exit(EXIT_BAD_INPUT)


def internal(e: BaseException) -> typer.Exit:
    """A bug, not bad input: one line naming it as such (the traceback goes to the log) and exit 3."""
    log.debug("internal error", exc_info=e)
    err_console.print(f"egress-collector: internal error (a bug, please report it): {type(e).__name__}: "
                      f"{one_line(e)}", markup=False)
    return typer.Exit(EXIT_INTERNAL)
