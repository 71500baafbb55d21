"""The entry point: parse the arguments, run the chosen command's handler, turn any failure into an exit code.

:func:`main` is the only place that catches everything: Ctrl-C exits 130, a reader that leaves the pipe
(``eventsource read x | head``) ends the run quietly, and every other error becomes one scrubbed line on
stderr (see :mod:`eventsource.cli.errors`; with ``--json``, argparse's refusals and Ctrl-C too).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

from eventsource.cli.config import STORE_ENV
from eventsource.cli.errors import report, report_interrupt, usage_error
from eventsource.cli.exitcodes import EXIT_OK, EXIT_USAGE
from eventsource.cli.output import Output
from eventsource.cli.parser import JSON_ERRORS, UsageRefused, build_parser
from eventsource.cli.scrub import Scrubber, logs_to
from eventsource.cli.session import Session

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from eventsource.plugins import PluginHost


def main(argv: Sequence[str] | None = None, *, host: PluginHost | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to ``sys.exit``).

    :param argv: arguments without the program name (default: ``sys.argv[1:]``).
    :param host: a plugin host to use instead of discovering installed plugins (tests, embedding).
    """
    if sys.stdout is None:  # `>&-`: every command prints its result; refuse before anything is done
        Output(as_json=False).note(
            "error: stdout is closed: nothing was done; redirect it instead (> /dev/null drops it)"
        )
        return EXIT_USAGE
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if isinstance(args, int):
        return args
    out = Output(as_json=args.json)
    scrub = Scrubber()
    if args.store:
        scrub.add_url(args.store)
    if os.environ.get(STORE_ENV):
        scrub.add_url(os.environ[STORE_ENV])
    code = EXIT_OK
    try:
        with logs_to(args.verbose, out.err, scrub):
            handler: Callable[[Session], int] = args.handler
            code = handler(Session(args, out, host, scrub))
            out.out.flush()  # a reader that left shows up here, not as "Exception ignored" at exit
            return code
    except KeyboardInterrupt as e:  # (a command stopped part-way raises Interrupted, saying what it left)
        return _flushed(report_interrupt(e, out, scrub))
    except BrokenPipeError:  # `eventsource read x | head`: the reader left; that is fine
        _drop_stdout()
        return code  # ... but it does not turn a result the command already reached (health: 5) into success
    except Exception as e:  # noqa: BLE001 - the one place that turns any failure into one line + exit code
        return _flushed(report(e, out, scrub, args.verbose))


def _parse(words: list[str]) -> argparse.Namespace | int:
    """The parsed command line, or the exit code of ``--help`` or of a refusal (printed: JSON with ``--json``)."""
    token = JSON_ERRORS.set("--json" in words[: words.index("--") if "--" in words else len(words)])
    try:
        return build_parser().parse_args(words)
    except UsageRefused as e:  # with --json: the JSON error line, as for any other error
        return usage_error(e.message, Output(as_json=True))
    except SystemExit as e:  # --help or a usage error: argparse already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    finally:
        JSON_ERRORS.reset(token)


def _flushed(code: int) -> int:
    """``code``, after writing what stdout still holds (dropped if the reader has left)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
    return code


def _drop_stdout() -> None:
    """Point stdout at the null device, so the flush at exit cannot fail on a pipe nobody reads."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
