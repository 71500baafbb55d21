"""How a failure becomes one line a person can act on and an exit code a script can test.

:class:`UsageError` is bad input found after argparse; :class:`StoreContextError` adds the masked store URL
and a hint to an error raised while connecting. :func:`describe_error` picks the code and message,
:func:`report` prints them (a JSON line with ``--json``, the traceback with ``-v``), scrubbed of secrets.
"""

from __future__ import annotations

import json
import traceback
from typing import TYPE_CHECKING, Any

from eventsource.cli.exitcodes import ERROR_EXIT, EXIT_ERROR, EXIT_USAGE
from eventsource.cli.output import dumps
from eventsource.errors import EventSourceError, PluginLoadError, ProviderNotFoundError, ValidationError

if TYPE_CHECKING:
    from eventsource.cli.output import Output
    from eventsource.cli.scrub import Scrubber


class UsageError(ValidationError):
    """Bad command-line input found after argparse (invalid JSON, missing argument)."""


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
        hint = f"; reinstall or uninstall it, or set EVENTSOURCE_DISABLED_PLUGINS={plugin}" if plugin else ""
        return EXIT_ERROR, f"{exc}{hint}"
    if isinstance(exc, ProviderNotFoundError) or (
        isinstance(exc, StoreContextError) and isinstance(exc.cause, ProviderNotFoundError)
    ):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, EventSourceError):
        return ERROR_EXIT.get(exc.type, EXIT_ERROR), str(exc)
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
        body: dict[str, Any] = {"message": message, "exit_code": code}
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
