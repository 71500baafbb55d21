"""The OpenTelemetry hook of the call policy: a span and metrics per provider call, trace context on append.

Span and metric attributes follow the OpenTelemetry database semantic conventions (``db.system.name`` and
the older ``db.system``, ``db.operation.name``, ``db.namespace``: the provider's name, ``error.type``);
the stream id and expected version are ``eventsource.stream.id`` and ``eventsource.expected_version``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, TypeVar

import opentelemetry.baggage as otel_baggage
import opentelemetry.context as otel_context
import opentelemetry.metrics as otel_metrics
import opentelemetry.propagate as otel_propagate
import opentelemetry.trace as otel_trace

from eventsource.config import mask_url
from eventsource.errors import ConflictError
from eventsource.manager.policy import PAGED, written
from eventsource.model import ExpectedVersion

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from eventsource.manager.policy import CallPolicy
    from eventsource.model import Event, EventData
    from eventsource.provider import Provider

T = TypeVar("T")

log = logging.getLogger("eventsource.telemetry")

DB_SYSTEMS = {"postgres": "postgresql", "sqlite": "sqlite"}
"""``db.system.name`` of the stores the conventions name; any other is ``eventsource.<kind>``."""

APPENDS = frozenset({"append", "append_sealed"})
READS = frozenset({"read_stream", "read_all", "get_event"})


def _expected_name(expected: object) -> str:
    """``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or the exact version (``str`` of an ``IntEnum`` is its number)."""
    if isinstance(expected, int) and expected < 0:
        return ExpectedVersion(expected).name
    return str(expected)


def _system(provider: Provider) -> str:
    kind = provider.kind or type(provider).__name__.lower()
    return DB_SYSTEMS.get(kind, f"eventsource.{kind}")


class Telemetry:
    """Spans and metrics for one manager (see :func:`eventsource.telemetry.instrument`)."""

    def __init__(
        self,
        *,
        tracer_provider: otel_trace.TracerProvider | None = None,
        meter_provider: otel_metrics.MeterProvider | None = None,
        stream_id: bool = True,
        context_key: str | None = "trace_context",
    ) -> None:
        from eventsource import __version__

        self.stream_id = stream_id
        self._warned: set[str] = set()
        self.context_key = context_key
        self.tracer = otel_trace.get_tracer("eventsource", __version__, tracer_provider=tracer_provider)
        meter = otel_metrics.get_meter("eventsource", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of eventsource provider operations"
        )
        self.appended = meter.create_counter(
            "eventsource.events.appended", unit="{event}", description="Events appended"
        )
        self.read = meter.create_counter("eventsource.events.read", unit="{event}", description="Events read")
        self.conflicts = meter.create_counter(
            "eventsource.conflicts", unit="{conflict}", description="Appends refused by a version or id conflict"
        )
        self.retries = meter.create_counter("eventsource.retries", unit="{retry}", description="Provider call retries")

    # ------------------------------------------------------------------ spans

    def _attributes(self, provider: Provider, op: str, stream: str | None, expected: object) -> dict[str, Any]:
        system = _system(provider)
        attrs: dict[str, Any] = {
            "db.system.name": system,
            "db.system": system,
            "db.operation.name": op,
            "db.namespace": provider.name,
        }
        if stream is not None and self.stream_id:
            attrs["eventsource.stream.id"] = stream
        if expected is not None:
            attrs["eventsource.expected_version"] = _expected_name(expected)
        return attrs

    def _failed(self, what: str, e: Exception) -> None:
        """Telemetry's own failure (an SDK, processor or exporter that raises): logged, never the call's.

        A warning the first time for each ``what``, then at debug level.
        """
        level = logging.DEBUG if what in self._warned else logging.WARNING
        self._warned.add(what)
        log.log(level, "telemetry: %s failed (the call goes on without it): %s: %s", what, type(e).__name__, e)

    def _start(self, name: str, attrs: dict[str, Any]) -> otel_trace.Span:
        """A client span, or a non-recording one when the SDK fails to start it."""
        try:
            return self.tracer.start_span(name, kind=otel_trace.SpanKind.CLIENT, attributes=attrs)
        except Exception as e:  # noqa: BLE001 - telemetry never fails the call it watches
            self._failed("starting a span", e)
            return otel_trace.INVALID_SPAN

    def _count(self, counter: otel_metrics.Counter, n: int, attrs: dict[str, Any]) -> None:
        try:
            counter.add(n, {k: attrs[k] for k in ("db.system.name", "db.namespace")})
        except Exception as e:  # noqa: BLE001 - telemetry never fails the call it watches
            self._failed("a metric", e)

    def _finish(
        self, span: otel_trace.Span, attrs: dict[str, Any], start: float, retries: int, error: BaseException | None
    ) -> None:
        """End ``span`` and record the call's metrics; what the SDK raises is logged (:meth:`_failed`), not raised."""
        metric = {k: attrs[k] for k in ("db.system.name", "db.operation.name", "db.namespace")}
        kind = type(error).__name__ if error is not None else None
        conflict = isinstance(error, ConflictError)
        try:
            if retries:
                span.set_attribute("eventsource.retries", retries)
            if kind is None:
                span.set_attribute("eventsource.outcome", "ok")
            else:
                span.set_attributes({"error.type": kind, "eventsource.outcome": "conflict" if conflict else "error"})
                # an error's message names streams (and event ids): with the stream id off, the type alone
                # (and may quote a store's URL: its password is masked, as everywhere a URL is shown)
                said = (
                    mask_url(str(error)) if self.stream_id else f"{kind} (message left out: telemetry_stream_id is off)"
                )
                span.set_status(otel_trace.StatusCode.ERROR, said)
            span.end()
        except Exception as e:  # noqa: BLE001 - telemetry never fails the call it watches
            self._failed("ending a span", e)
        try:
            if retries:
                self.retries.add(retries, metric)
            if kind is not None:
                metric["error.type"] = kind
                if conflict:
                    self.conflicts.add(1, metric)
            self.duration.record(time.perf_counter() - start, metric)
        except Exception as e:  # noqa: BLE001 - telemetry never fails the call it watches
            self._failed("a metric", e)

    async def run(
        self,
        policy: CallPolicy,
        provider: Provider,
        op: str,
        factory: Callable[[], Awaitable[T]],
        *,
        retry: bool,
        events: int,
        stream: str | None,
        expected: object,
        counted: Callable[[T], int] | None = None,
    ) -> T:
        """``policy.run`` inside a client span; duration, events, conflicts and this call's retries recorded.

        An operation the provider declares it cannot do is refused before any call: no span, no sample.
        ``counted``: a read's events in its answer (a subscription's page), recorded as an iterated read's are.
        """
        if not provider.capabilities.supports(op):
            raise provider.unsupported(op)
        attrs = self._attributes(provider, op, stream, expected)
        retries = [0]
        start = time.perf_counter()
        span = self._start(f"{op} {provider.name}", attrs)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        error: BaseException | None = None

        def retried() -> None:
            retries[0] += 1

        try:
            result = await policy.run(
                provider, op, factory, retry=retry, events=events, stream=stream, expected=expected, on_retry=retried,
                counted=counted,
            )  # fmt: skip
        except BaseException as e:
            error = e
            raise
        else:
            if counted is not None:
                read = counted(result)
                with contextlib.suppress(Exception):  # (a span that fails here fails again, logged, at its end)
                    span.set_attribute("eventsource.events", read)
                if read:
                    self._count(self.read, read, attrs)
            elif events and written(result, retries[0] + 1):  # (a duplicate answered at once wrote nothing)
                with contextlib.suppress(Exception):  # (a span that fails here fails again, logged, at its end)
                    span.set_attribute("eventsource.events", events)
                self._count(self.appended if op in APPENDS else self.read, events, attrs)
            return result
        finally:
            otel_context.detach(token)
            self._finish(span, attrs, start, retries[0], error)

    async def iterate(
        self,
        provider: Provider,
        op: str,
        stream: str | None,
        pages: Callable[..., AsyncGenerator[Event, None]],
    ) -> AsyncGenerator[Event, None]:
        """``pages(on_retry=...)`` (the policy's page iterator) in a span from the first step to the end or close.

        Values sent in (the sync API's page pull) are passed through; a list yielded back counts its events.
        An operation the provider cannot do is refused at the first step, without a span (as :meth:`run`).
        """
        if not provider.capabilities.supports(op):
            raise provider.unsupported(op)
        attrs = self._attributes(provider, op, stream, None)
        retries = [0]

        def retried() -> None:
            retries[0] += 1

        inner = pages(on_retry=retried)
        start = time.perf_counter()
        span = self._start(f"{op} {provider.name}", attrs)
        count = 0
        error: BaseException | None = None
        sent: Any = None
        try:
            while True:
                try:
                    item = await inner.asend(sent)
                except StopAsyncIteration:
                    break
                count += len(item) if isinstance(item, list) else 1
                sent = yield item
        except GeneratorExit:
            raise
        except BaseException as e:
            error = e
            raise
        finally:
            await inner.aclose()
            with contextlib.suppress(Exception):  # (a span that fails here fails again, logged, at its end)
                span.set_attribute("eventsource.events", count)
            if count:
                self._count(self.read, count, attrs)
            self._finish(span, attrs, start, retries[0], error)

    # ------------------------------------------------------------------ trace context

    def inject(self, events: list[EventData]) -> list[EventData]:
        """``events`` with the current trace context under ``context_key`` in their metadata.

        Nothing changes without a valid current span, without a key, or where the metadata already holds it.
        Baggage is left out: it is the application's in-flight data (user ids, session ids...), not the trace's,
        and event metadata is stored for good.
        """
        key = self.context_key
        if key is None or not otel_trace.get_current_span().get_span_context().is_valid:
            return events
        carrier: dict[str, str] = {}
        try:
            otel_propagate.inject(carrier, context=otel_baggage.clear())
        except Exception as e:  # noqa: BLE001 - telemetry never fails the append it watches
            self._failed("writing the trace context", e)
            return events
        if not carrier:
            return events
        return [
            e
            if e.metadata is not None and key in e.metadata
            else dataclasses.replace(e, metadata={**(e.metadata or {}), key: dict(carrier)})
            for e in events
        ]


def extract_context(event: Event, key: str = "trace_context") -> otel_context.Context:
    """The trace context an append wrote into ``event``'s metadata, to continue the trace from a consumer.

    ``tracer.start_as_current_span("handle", context=extract_context(event))``; without one, an empty context.
    """
    carrier = (event.metadata or {}).get(key)
    return otel_propagate.extract(carrier if isinstance(carrier, dict) else {})


PAGED.add(Telemetry.iterate.__code__)  # it passes the sync API's pull through to pages() and back
