"""Typed errors.

Every error carries the seed's four fields (``type``, ``code``, ``message``, ``details``) and also
inherits the builtin exception a caller would naturally catch (``ValueError`` for bad input,
``LookupError`` for something missing, ``ConnectionError`` / ``TimeoutError`` for the store).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    """The seed's error taxonomy, plus ``UNSUPPORTED``."""

    CONNECTION = "connection"
    VALIDATION = "validation"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    INTERNAL = "internal"
    UNSUPPORTED = "unsupported"


class EventSourceError(Exception):
    """Base of every error the library raises on purpose."""

    type: ErrorType = ErrorType.INTERNAL
    code: int = 500

    def __init__(self, message: str, /, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (for ``--json`` output and logs)."""
        return {
            "type": str(self.type),
            "code": self.code,
            "message": self.message,
            "details": {k: _plain(v) for k, v in self.details.items()},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class ValidationError(EventSourceError, ValueError):
    """Input that can never succeed: empty or oversized ids, oversized events or batches, bad data."""

    type = ErrorType.VALIDATION
    code = 400


class ConfigurationError(ValidationError):
    """A configuration value is missing or wrong; ``details['field']`` names it."""


class PluginLoadError(EventSourceError, ImportError):
    """A plugin distribution could not be imported or registered; the message names it."""


class ProviderError(EventSourceError):
    """The store failed in a way that is neither a connection nor a timeout problem."""


class ProviderUnavailableError(ProviderError, ConnectionError):
    """The store cannot be reached (refused, reset, DNS, pool exhausted while connecting)."""

    type = ErrorType.CONNECTION
    code = 503


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The operation did not finish within the configured timeout."""

    type = ErrorType.TIMEOUT
    code = 504


class NotFoundError(EventSourceError, LookupError):
    """Something that was asked for by id does not exist."""

    type = ErrorType.NOT_FOUND
    code = 404


class StreamNotFoundError(NotFoundError):
    """The stream does not exist (never created, or deleted)."""


class EventNotFoundError(NotFoundError):
    """No event has that id."""


class SnapshotNotFoundError(NotFoundError):
    """The stream has no snapshot (at or below the asked version)."""


class StoreNotFoundError(NotFoundError):
    """The store is not there (or not at its current schema) and the provider's ``create_store`` setting is off.

    Raised by ``connect()``, which then has created and changed nothing. The message names what is missing and
    how to create it; ``details['store']`` names the store (masked URL and namespace), ``details['missing']``
    what is missing (tables, a schema, streams, buckets, topics), ``details['outdated']`` whether the store is
    there but needs a migration. Never retried: the store will not appear by waiting.
    """


class ProviderNotFoundError(NotFoundError, KeyError):
    """No provider is registered under that name or URL scheme."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ConflictError(EventSourceError):
    """The write conflicts with what the store holds; nothing was written."""

    type = ErrorType.CONFLICT
    code = 409


class ConcurrencyError(ConflictError):
    """The stream is not at the expected version. ``expected`` and ``actual`` say both sides."""

    def __init__(self, message: str, /, *, stream_id: str, expected: object, actual: int, **details: Any) -> None:
        super().__init__(message, stream_id=stream_id, expected=expected, actual=actual, **details)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StreamExistsError(ConflictError):
    """``create_stream`` was asked for a stream id that already exists."""


class StreamDeletedError(ConflictError):
    """The stream id was deleted and this store refuses to reuse it."""


class DuplicateEventError(ConflictError):
    """An event id is already stored, but not as an identical retry of this append."""


class UnsupportedOperationError(EventSourceError):
    """The store cannot do this operation; its provider declares it in ``capabilities.unsupported``."""

    type = ErrorType.UNSUPPORTED
    code = 501


class CodecError(EventSourceError):
    """A payload could not be encoded or decoded (unknown codec, corrupt bytes)."""


class DecryptionError(CodecError):
    """A payload failed authentication: tampered with, moved to another event, or wrong key."""


class UnknownKeyError(DecryptionError, LookupError):
    """The payload names a key id the key provider does not hold.

    It never had it, or it was removed from a static ring. ``details['key_id']`` names the id; the key
    itself never appears.
    """

    type = ErrorType.NOT_FOUND
    code = 404


class KeyShreddedError(CodecError, LookupError):
    """The key for this payload's scope was removed (crypto-shredding); ``details['scope']`` names it.

    Raised when reading an event or snapshot written under a shredded scope; the rest of the store
    reads normally.
    """

    type = ErrorType.NOT_FOUND
    code = 410

    def __init__(self, message: str, /, *, scope: str, **details: Any) -> None:
        super().__init__(message, scope=scope, **details)
        self.scope = scope


class KeyProviderError(CodecError):
    """The key provider failed to give a key: it raised, or returned something other than a 32-byte key.

    Not the payload's fault: it reads once the provider answers again, so a subscription never skips it.
    ``details`` names the provider and the key id (when known); ``__cause__`` is what the provider raised.
    """

    type = ErrorType.CONNECTION
    code = 503


class KeysNotConfiguredError(CodecError):
    """The payload is encrypted, but this configuration holds no keys for its cipher.

    Not the payload's fault: it reads once ``encryption_keys`` (or a key provider) is set, so a subscription
    never skips it.
    """


class PayloadTooLargeError(CodecError):
    """A stored payload decompresses to more than this configuration reads (raise the limits to read it).

    The bound is the larger of ``max_event_size`` and ``max_snapshot_size``: a payload over it was written under
    larger limits, or is a hostile store's bomb. It reads once the limits are raised: a subscription never skips it.
    """


class UpcastError(CodecError):
    """A stored event or snapshot cannot be brought to the schema version the code expects.

    An upcaster raised, a step of a chain is missing, or the stored schema version is newer than the
    code knows (written by a newer release). ``details`` names the event (or snapshot), its type and the
    schema version it stopped at; the payload never appears.
    """


class SchemaVersionError(UpcastError):
    """No upcasting chain of this code reaches the stored schema version from, or it is newer than the code knows.

    A step is missing (not registered here: a plugin or ``--upcasters`` module not loaded), or a newer release
    wrote the event. Not the event's fault: it reads once the code has the step or the release, so a
    subscription never skips it.
    """


class RetentionError(EventSourceError):
    """At least one retention policy failed; :attr:`report` holds what every policy did."""

    def __init__(self, message: str, /, *, report: Any = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.report = report


RETRYABLE: tuple[type[BaseException], ...] = (ProviderUnavailableError, ProviderTimeoutError)
"""Only these are ever retried; conflicts and validation errors never are."""


class TransferFormatError(ValidationError):
    """An export file that cannot be imported: not an export, a corrupted or truncated line, an unknown record.

    ``details`` names the file and the line number; the line's payload never appears.
    """


class VerificationError(ConflictError):
    """A verified copy found the target different from the source; :attr:`report` lists every difference."""

    def __init__(self, message: str, /, *, report: Any = None, **details: Any) -> None:
        super().__init__(message, **details)
        self.report = report
