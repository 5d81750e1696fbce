"""How a `genexfer train` command is declared and run: the command protocol, adding its parser,
the error guard (bad input a one-line message) and progress bars (only on a terminal).

Standard library only: torch loads when a command runs, so `genexfer --help` works where only
the service is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeAlias, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
# a string: argparse's class is not subscriptable at run time, only for type checkers
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Command(Protocol):
    """A command module: its name, one-line help, description, options and what it runs."""

    NAME: str
    HELP: str
    DESCRIPTION: str

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's options to its parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the command's work; the exit status."""


def add_command(commands: Subparsers, command: Command) -> None:
    """Add a command module's parser to `commands`; parsing it selects the module's `run`."""
    parser = commands.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
    command.arguments(parser)
    parser.set_defaults(func=command.run)


def guard(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """Run `func`; bad input (files, ids, names) is the user's to fix: a message, no traceback."""
    try:
        return func(*args, **kwargs)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def progress(args: argparse.Namespace) -> bool | None:
    """Progress bars: off with --quiet, else only on a terminal."""
    return False if args.quiet else None
