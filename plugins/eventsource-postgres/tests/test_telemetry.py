"""OpenTelemetry on PostgreSQL: the span names the system ``postgresql``, and the trace context survives the store.

Asserted through the SDK's in-memory exporter (the testing extra installs ``opentelemetry-sdk``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsource import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.telemetry import extract_context, instrument
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


async def test_spans_and_trace_context_on_postgres(make_provider: Callable[..., Any]) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(await make_provider(), name="pg", default=True)
    instrument(m, tracer_provider=tracer_provider)
    tracer = tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("place-order") as parent:
        await m.append_event(stream_id="order-1", event_type="Placed", data={"n": 1}, expected_version=0)
    (event,) = [e async for e in m.read_stream("order-1")]
    with tracer.start_as_current_span("ship", context=extract_context(event)) as child:
        pass
    assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    append = next(s for s in spans.get_finished_spans() if s.name == "append pg")
    attrs = dict(append.attributes or {})
    assert attrs["db.system.name"] == "postgresql"
    assert (attrs["db.operation.name"], attrs["db.namespace"]) == ("append", "pg")
    assert (attrs["eventsource.stream.id"], attrs["eventsource.expected_version"]) == ("order-1", "0")
