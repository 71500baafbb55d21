"""Exit codes of the ``eventsource`` command and the error type each one stands for.

A script tests the code, a person reads the one-line message; :data:`EXIT_CODES` is printed at the end of
``eventsource --help``, and :data:`ERROR_EXIT` maps each :class:`~eventsource.errors.ErrorType` to its code.
"""

from __future__ import annotations

from eventsource.errors import ErrorType

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5
EXIT_UNSUPPORTED = 6
EXIT_DEGRADED = 7
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "unexpected error (a store or plugin failure; run with -v for details)",
    EXIT_USAGE: "bad usage, input or configuration (also an unknown store URL scheme)",
    EXIT_NOT_FOUND: "the stream, event or snapshot does not exist (or the store a read-only command names)",
    EXIT_CONFLICT: "conflict: wrong expected version, stream already exists, duplicate event id; copy --verify: "
    "a stream differs",
    EXIT_UNAVAILABLE: "the store cannot be reached, timed out, or is unhealthy",
    EXIT_UNSUPPORTED: "the store does not support this operation",
    EXIT_DEGRADED: "health --strict: a store answers, but a setting read from it can lose acknowledged writes, "
    "or a part of it fails",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
}

ERROR_EXIT = {
    ErrorType.VALIDATION: EXIT_USAGE,
    ErrorType.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorType.CONFLICT: EXIT_CONFLICT,
    ErrorType.CONNECTION: EXIT_UNAVAILABLE,
    ErrorType.TIMEOUT: EXIT_UNAVAILABLE,
    ErrorType.UNSUPPORTED: EXIT_UNSUPPORTED,
    ErrorType.INTERNAL: EXIT_ERROR,
}
