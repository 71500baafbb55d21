"""How a failure becomes one line a person can act on and an exit code a script can test.

:class:`UsageError` is bad input found after argparse; :class:`StoreContextError` adds the masked store URL
and a hint to an error raised while connecting. :func:`describe_error` picks the code and message,
:func:`report` prints them (a JSON line with ``--json``, the traceback with ``-v``), scrubbed of secrets;
:func:`report_interrupt` and :func:`usage_error` print Ctrl-C and argparse's refusals in the same JSON shape.
"""

from __future__ import annotations

import json
import traceback
from typing import TYPE_CHECKING, Any

from eventsource.cli.exitcodes import ERROR_EXIT, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE
from eventsource.cli.output import dumps
from eventsource.errors import EventSourceError, PluginLoadError, ProviderNotFoundError, ValidationError

if TYPE_CHECKING:
    from eventsource.cli.output import Output
    from eventsource.cli.scrub import Scrubber


class UsageError(ValidationError):
    """Bad command-line input found after argparse (invalid JSON, missing argument)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped a command part-way; the message says what it left behind and how to finish."""


INTERRUPTED_CODE = 499
"""The ``code`` of the ``--json`` error line of an interrupted command (a client that closed the request)."""


class StoreContextError(EventSourceError):
    """Wraps an error raised while connecting a store, adding the (masked) URL and a hint."""

    def __init__(self, message: str, cause: EventSourceError) -> None:
        super().__init__(message, **cause.details)
        self.type = cause.type
        self.code = cause.code
        self.cause = cause


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for ``exc``."""
    if isinstance(exc, PluginLoadError):
        plugin = exc.details.get("plugin")
        said = "EVENTSOURCE_DISABLED_PLUGINS" in str(exc)  # the message already says what blocking does
        hint = f"; reinstall or uninstall it, or set EVENTSOURCE_DISABLED_PLUGINS={plugin}"
        hint = "" if said or not plugin else hint
        return EXIT_ERROR, f"{exc}{hint}"
    if isinstance(exc, ProviderNotFoundError) or (
        isinstance(exc, StoreContextError) and isinstance(exc.cause, ProviderNotFoundError)
    ):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, EventSourceError):
        verbose = " (run with -v for the traceback)" if "unmapped" in exc.details else ""  # a provider's own error
        return ERROR_EXIT.get(exc.type, EXIT_ERROR), f"{exc}{verbose}"
    if isinstance(exc, OSError):
        return EXIT_ERROR, f"{type(exc).__name__}: {exc}"
    return EXIT_ERROR, f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"


def report(exc: BaseException, out: Output, scrub: Scrubber, verbose: int) -> int:
    """Print ``exc`` on stderr (one line, or one JSON line; ``-v`` adds the traceback); return its exit code."""
    code, message = describe_error(exc)
    message = scrub(" ".join(message.split()))
    if verbose:
        out.err.write(scrub("".join(traceback.format_exception(exc))))
    if out.as_json:
        notes = [scrub(" ".join(str(n).split())) for n in getattr(exc, "__notes__", ())]  # (said before it, in text)
        body: dict[str, Any] = {"message": "; ".join([message, *notes]), "exit_code": code}
        if isinstance(exc, EventSourceError):
            d = exc.to_dict()
            body.update(
                type=d["type"], code=d["code"], details=json.loads(scrub(json.dumps(d["details"], default=str)))
            )
        else:
            body.update(type="internal", code=500, details={})
        print(dumps({"error": body}), file=out.err)
    else:
        print(f"error: {message}", file=out.err)
    return code


def tell_with(error: BaseException, note: str, out: Output) -> None:
    """Say ``note`` (what a command stopped part-way by ``error`` left) with the error.

    A line before the error's own, or with ``--json`` part of the message of its JSON error line.
    """
    if not note:
        return
    if out.as_json:
        error.add_note(note)
    else:
        out.note(note)


def report_interrupt(exc: KeyboardInterrupt, out: Output, scrub: Scrubber) -> int:
    """Print that the command was interrupted (with what it left, when it says) on stderr; return 130."""
    told = scrub(" ".join(str(exc).split())) if isinstance(exc, Interrupted) else ""
    if out.as_json:
        body = {
            "message": f"interrupted: {told}" if told else "interrupted",
            "exit_code": EXIT_INTERRUPTED,
            "type": "interrupted",
            "code": INTERRUPTED_CODE,
            "details": {},
        }
        print(dumps({"error": body}), file=out.err)
        return EXIT_INTERRUPTED
    if told:
        print(told, file=out.err)
    print("interrupted", file=out.err)
    return EXIT_INTERRUPTED


def usage_error(message: str, out: Output) -> int:
    """Print an argparse refusal as the ``--json`` error line (argparse prints its own without ``--json``)."""
    body = {"message": message, "exit_code": EXIT_USAGE, "type": "validation", "code": 400, "details": {}}
    print(dumps({"error": body}), file=out.err)
    return EXIT_USAGE
