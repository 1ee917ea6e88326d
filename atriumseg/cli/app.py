"""``main()``, the exit codes and the registry of commands.

Every command ends the same way: 0 on success, 1 when a case or the work failed (one clear line each;
``-v`` adds the traceback), 2 on bad usage (an option, a model, a folder) found before any work, 130 when
stopped by Ctrl-C/SIGTERM (``serve``: 0 after its clean stop). A closed pipe (``atriumseg info | head``) ends
quietly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module

from atriumseg._version import __version__

log = logging.getLogger("atriumseg")

EXIT_OK, EXIT_CASE_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# One module of this package per command, in the order ``atriumseg --help`` lists them.
COMMANDS = (
    "segment", "demo", "evaluate", "train", "measure", "report", "info", "assemble", "average", "serve", "status",
    "export",
)


class UsageError(Exception):
    """A problem with what the user asked for (bad option, unreadable model); ``main`` exits with 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit 2), pointing at ``--help``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in :data:`COMMANDS`."""
    parser = Parser(prog="atriumseg", description="Left-atrium segmentation of 3D cardiac MRI.")
    parser.add_argument("--version", action="version", version=f"atriumseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log atriumseg's debug messages and the traceback of an error or a failed case")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True, parser_class=Parser)
    for name in COMMANDS:
        import_module(f"{__package__}.{name}").register(commands)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops a command as Ctrl-C does (exit 130, files written atomically), not killed outright (143);
    ``segment`` and ``serve`` put their own handlers in while they run. The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atriumseg`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if hasattr(sys.stdout, "reconfigure"):  # a file name undecodable in UTF-8 (a Latin-1 share) printed escaped
        sys.stdout.reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    level = log.level
    log.setLevel(logging.DEBUG if args.verbose else level)  # -v: our debug lines, not every library's
    chatty = logging.getLogger("highdicom")  # an INFO line per attribute group copied into every SEG
    chatty_level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        with _sigterm_interrupts():
            return args.run(args)
    except UsageError as err:
        log.error("%s", err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_CASE_FAILED
    except (OSError, ValueError, RuntimeError) as err:
        log.error("%s", err, exc_info=args.verbose)
        return EXIT_CASE_FAILED
    finally:
        log.setLevel(level)  # as before this call (a caller's own level stays theirs)
        chatty.setLevel(chatty_level)
