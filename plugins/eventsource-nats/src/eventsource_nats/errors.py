"""The one place where nats-py errors become eventsource's typed errors, and the errors worth a retry.

:func:`map_error` turns a nats-py (or OS) error into the typed error callers catch; :func:`retriable`
lists the errors a publish or consumer call may retry (timeouts, missing responders during a leader
election, a reconnecting client). The expected-sequence check and atomic batches report failure as
JetStream error codes; the writers turn those into the internal signals :class:`WrongSequence` and
:class:`DuplicateInBatch`, which never leave the provider.
"""

from __future__ import annotations

import asyncio
import functools
import re
from typing import Any

from eventsource.errors import (
    EventSourceError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ValidationError,
)

WRONG_SEQUENCE_CODES = frozenset({10071, 10164})
"""JetStream err_codes of a failed expected-sequence check (10164: concurrent rejection, >= 2.10)."""
DUPLICATE_IN_BATCH_CODE = 10201
"""Atomic batch rejected because one of its message ids is already stored."""
_WRONG_SEQ_TEXT = re.compile(r"wrong last sequence", re.IGNORECASE)


class WrongSequence(Exception):  # noqa: N818 - internal signal, never escapes
    """The server refused the expected sequence."""


class DuplicateInBatch(Exception):  # noqa: N818 - internal signal, never escapes
    """An atomic batch holds an already stored message id."""


def is_wrong_sequence(err_code: int | None, description: str) -> bool:
    """Whether a JetStream error is a failed expected-sequence check (by code, or by text on old servers)."""
    return err_code in WRONG_SEQUENCE_CODES or bool(_WRONG_SEQ_TEXT.search(description))


@functools.cache
def js_errors() -> Any:
    """The ``nats.js.errors`` module (imported on first use: the plugin host never imports nats-py)."""
    import nats.js.errors

    return nats.js.errors


@functools.cache
def retriable() -> tuple[type[BaseException], ...]:
    """Errors a publish or a consumer call retries until its horizon: the server may answer later."""
    import nats.errors
    import nats.js.errors

    return (
        nats.js.errors.NoStreamResponseError,
        nats.errors.NoRespondersError,
        nats.errors.TimeoutError,
        asyncio.TimeoutError,
        nats.js.errors.ServiceUnavailableError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.StaleConnectionError,
        # publishes buffered while reconnecting filled the buffer: the ones in it are sent once connected
        nats.errors.OutboundBufferLimitError,
    )


def map_error(e: BaseException, what: str = "NATS operation") -> EventSourceError:
    """The typed error for a nats-py (or OS) error: the provider's ONE mapping function."""
    import nats.errors
    import nats.js.errors

    if isinstance(e, EventSourceError):
        return e
    unavailable = (
        nats.js.errors.NoStreamResponseError,
        nats.errors.NoRespondersError,
        nats.errors.NoServersError,
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.StaleConnectionError,
        nats.errors.ConnectionDrainingError,
        nats.errors.OutboundBufferLimitError,
        nats.js.errors.ServiceUnavailableError,
        ConnectionError,
        OSError,
    )
    if isinstance(e, (nats.errors.TimeoutError, asyncio.TimeoutError)):  # before OSError: TimeoutError is one
        return ProviderTimeoutError(f"{what}: NATS did not answer in time")
    if isinstance(e, unavailable):
        return ProviderUnavailableError(f"{what}: NATS is unavailable ({type(e).__name__}: {e})")
    if isinstance(e, nats.errors.MaxPayloadError):
        return ValidationError(f"{what}: the message exceeds the server's max_payload", field="data")
    if isinstance(e, nats.js.errors.APIError):
        # the KV errors are APIErrors whose __init__ never sets these fields
        code, err_code = getattr(e, "code", None), getattr(e, "err_code", None)
        return ProviderError(
            f"{what}: JetStream error {code} (err_code {err_code}): {getattr(e, 'description', None) or e}",
            code=code,
            err_code=err_code,
        )
    return ProviderError(f"{what}: {type(e).__name__}: {e}")
