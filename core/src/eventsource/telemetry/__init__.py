"""OpenTelemetry for eventsource (the ``otel`` extra: ``pip install eventsource[otel]``).

Turn it on with the ``telemetry`` setting (global tracer and meter providers) or :func:`instrument` (given
ones). Every provider call the manager makes gets a client span and metrics; appends write the current trace
context into event metadata, which :func:`extract_context` turns back into a context for a consumer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.sync import SyncEventSourcingManager
    from eventsource.telemetry.spans import Telemetry

__all__ = ["extract_context", "instrument", "uninstrument"]

MISSING = "telemetry needs the OpenTelemetry API: pip install 'eventsource[otel]'"


def build(
    *,
    stream_id: bool = True,
    context_key: str | None = "trace_context",
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> Telemetry:
    """A :class:`~eventsource.telemetry.spans.Telemetry`; :class:`ConfigurationError` without ``opentelemetry-api``."""
    try:
        from eventsource.telemetry.spans import Telemetry
    except ImportError as e:
        raise ConfigurationError(MISSING, field="telemetry") from e
    return Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, stream_id=stream_id, context_key=context_key
    )


def _async(manager: EventSourcingManager | SyncEventSourcingManager) -> EventSourcingManager:
    """The async manager itself, or the one behind a sync facade."""
    from eventsource.sync import SyncEventSourcingManager

    return manager.manager if isinstance(manager, SyncEventSourcingManager) else manager


def instrument(
    manager: EventSourcingManager | SyncEventSourcingManager,
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    stream_id: bool | None = None,
    context_key: str | None = "",
) -> None:
    """Trace ``manager``'s provider calls (an async manager or a sync facade) with the given providers.

    ``tracer_provider`` and ``meter_provider``: ``None`` for the global ones.

    ``stream_id`` and ``context_key`` default to the manager's ``telemetry_stream_id`` and
    ``telemetry_context_key`` settings.
    """
    manager = _async(manager)
    cfg = manager.config
    manager._policy.telemetry = build(  # noqa: SLF001 - the policy's hook, set from outside on purpose
        stream_id=cfg.telemetry_stream_id if stream_id is None else stream_id,
        context_key=cfg.telemetry_context_key if context_key == "" else context_key,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )


def uninstrument(manager: EventSourcingManager | SyncEventSourcingManager) -> None:
    """Stop tracing ``manager`` (back to no telemetry cost at all)."""
    _async(manager)._policy.telemetry = None  # noqa: SLF001 - the policy's hook


def extract_context(event: Any, key: str = "trace_context") -> Any:
    """The trace context an append wrote into ``event``'s metadata (see :func:`.spans.extract_context`)."""
    try:
        from eventsource.telemetry.spans import extract_context as extract
    except ImportError as e:
        raise ConfigurationError(MISSING, field="telemetry") from e
    return extract(event, key)
