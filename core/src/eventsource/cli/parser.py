"""The command-line parser: global options, and one sub-command per module of :mod:`eventsource.cli.commands`.

Each command module has a ``register(commands)`` function that calls :meth:`Commands.add` with its name, its
help and its handler, then adds its own arguments to the sub-parser it gets back (tox does the same in
``session/cmd``). :func:`build_parser` walks :data:`eventsource.cli.commands.COMMANDS` in order; the chosen
handler ends up in ``args.handler``.
"""

from __future__ import annotations

import argparse
import contextvars
import sys
from typing import TYPE_CHECKING, NoReturn

from eventsource.cli.arguments import duration, given, store_url
from eventsource.cli.config import STORE_ENV
from eventsource.cli.exitcodes import EXIT_CODES, EXIT_USAGE

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.cli.session import Session


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before and after the command (``eventsource --json read x`` = ``read x --json``)."""

    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global options")
    g.add_argument(
        "--store",
        metavar="URL",
        type=store_url,
        default=d(None),
        help=f"store URL, e.g. sqlite:///events.db, memory://, postgresql://user@host/db "
        f"(default: ${STORE_ENV}, else the providers of --config, else sqlite:///eventsource.db)",
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        type=given("a configuration file"),
        default=d(None),
        help="ManagerConfig as a .json or .toml file",
    )
    g.add_argument(
        "--timeout", metavar="DURATION", type=duration, default=d(None), help="per-operation timeout, e.g. 5s"
    )
    g.add_argument("--json", action="store_true", default=d(value=False), help="machine-readable JSON output")
    g.add_argument(
        "-v", "--verbose", action="count", default=d(0), help="log retries and show tracebacks (-vv: debug logs)"
    )


JSON_ERRORS: contextvars.ContextVar[bool] = contextvars.ContextVar("JSON_ERRORS", default=False)
"""Set by ``main`` when ``--json`` is on the command line: a refusal is then raised, for the JSON error line."""


class UsageRefused(SystemExit):
    """argparse refused the command line (``--json``: ``main`` prints it as the JSON error line)."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse with a hint after the one-line error."""

    def error(self, message: str) -> NoReturn:
        if JSON_ERRORS.get():
            raise UsageRefused(f"{message} (run '{self.prog} --help' for help)")
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n(run '{self.prog} --help' for help)\n")


class Commands:
    """What a command module's ``register`` function gets: :meth:`add` declares one command."""

    def __init__(self, sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
        self._sub = sub
        self._common = common

    def add(self, name: str, help_text: str, handler: Callable[[Session], int]) -> argparse.ArgumentParser:
        """Add the command ``name`` run by ``handler``; returns its parser for the command's own arguments."""
        parser = self._sub.add_parser(name, help=help_text, description=help_text, parents=[self._common])
        parser.set_defaults(handler=handler)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (exposed for documentation and tests)."""
    from eventsource.cli.commands import COMMANDS

    epilog = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
    parser = _Parser(
        prog="eventsource",
        description="Append, read, snapshot and inspect event streams on any eventsource store.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    commands = Commands(sub, common)
    for module in COMMANDS:
        module.register(commands)
    return parser
