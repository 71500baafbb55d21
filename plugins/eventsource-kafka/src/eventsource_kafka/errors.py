"""kafka-python's (and the socket's) errors as the typed eventsource errors a caller can act on."""

from __future__ import annotations

from eventsource.errors import (
    EventSourceError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ValidationError,
)

__all__ = ["StoreReplacedError", "map_error"]


class StoreReplacedError(ProviderUnavailableError):
    """A topic of the store was deleted and created again since this process read it.

    The process's view of the store was forgotten and is read anew, so the call can be retried.
    """


_BOOTSTRAP_FAILED = "Unable to bootstrap"
"""What kafka-python's ``KafkaTimeoutError`` says when no bootstrap broker answered within the timeout."""


def _kafka_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The kafka-python error classes of these names that this kafka-python version defines."""
    from kafka import errors as ke

    return tuple(c for c in (getattr(ke, n, None) for n in names) if isinstance(c, type))


def map_error(e: BaseException, what: str) -> BaseException:
    """The typed eventsource error for a kafka-python (or socket) error raised while doing ``what``."""
    if isinstance(e, EventSourceError):
        return e
    from kafka import errors as ke

    name = type(e).__name__
    # no broker of the URL answered (refused, or silent) before anything was sent: it cannot be reached
    unreached = isinstance(e, _kafka_errors("KafkaTimeoutError")) and _BOOTSTRAP_FAILED in str(e)
    if not unreached and isinstance(e, (*_kafka_errors("KafkaTimeoutError", "RequestTimedOutError"), TimeoutError)):
        return ProviderTimeoutError(f"Kafka timed out while {what}: {name}: {e}", operation=what)
    if isinstance(e, _kafka_errors("MessageSizeTooLargeError", "RecordListTooLargeError", "RecordTooLargeError")):
        return ValidationError(f"record too large while {what}: {e}", field="events")
    unavailable = _kafka_errors(
        "NoBrokersAvailable",
        "KafkaConnectionError",
        "NodeNotReadyError",
        "NotLeaderForPartitionError",
        "LeaderNotAvailableError",
        "BrokerNotAvailableError",
        "MetadataEmptyBrokerList",
        "NetworkExceptionError",
        "AuthenticationFailedError",
        "SaslAuthenticationFailedError",
    )
    if unreached or isinstance(e, (*unavailable, ConnectionError, OSError)):
        return ProviderUnavailableError(f"Kafka is unavailable while {what}: {name}: {e}", operation=what)
    if isinstance(e, ke.KafkaError) and getattr(e, "retriable", False):
        return ProviderUnavailableError(f"Kafka error while {what} (retriable): {name}: {e}", operation=what)
    return ProviderError(f"Kafka error while {what}: {name}: {e}", operation=what)
