"""OpenTelemetry: spans and metrics per provider call, trace context in event metadata, asserted through the SDK.

In-memory exporters of ``opentelemetry-sdk`` (the testing extra) receive what the manager emits; one test
module sets the global providers once, for the ``telemetry`` setting.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData, EventSourcingManager, SyncEventSourcingManager
from eventsource.errors import ConcurrencyError, ConfigurationError
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.telemetry import extract_context, instrument, uninstrument
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from eventsource.model import StreamInfo
    from opentelemetry.sdk.trace import ReadableSpan

HOST = PluginHost(load_entrypoints=False)


class Sdk:
    """A tracer provider and a meter provider whose output the test reads back."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self, op: str | None = None) -> list[ReadableSpan]:
        got = list(self.spans.get_finished_spans())
        return [s for s in got if op is None or (s.attributes or {}).get("db.operation.name") == op]

    def metric(self, name: str) -> list[Any]:
        """The data points of metric ``name``."""
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        points.extend(m.data.data_points)
        return points

    def total(self, name: str) -> int:
        return sum(int(p.value) for p in self.metric(name))


@pytest.fixture
def sdk() -> Sdk:
    return Sdk()


@pytest.fixture
async def manager(sdk: Sdk, tmp_path: Path) -> AsyncIterator[EventSourcingManager]:
    m = EventSourcingManager({"providers": {"main": {"url": f"sqlite:///{tmp_path}/t.db"}}}, host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    yield m
    await m.close()


async def test_append_and_read_make_database_client_spans(manager: EventSourcingManager, sdk: Sdk) -> None:
    sid = f"order-{uuid.uuid4().hex[:8]}"
    two = [EventData("A", {}), EventData("B", {})]
    await manager.append_events_batch(stream_id=sid, events=two, expected_version=0)
    assert [e.event_type async for e in manager.read_stream(sid)] == ["A", "B"]
    (append,) = sdk.finished("append")
    attrs = dict(append.attributes or {})
    assert append.kind is trace.SpanKind.CLIENT
    assert append.name == "append main"
    assert attrs["db.system.name"] == attrs["db.system"] == "sqlite"
    assert attrs["db.namespace"] == "main"
    assert attrs["eventsource.stream.id"] == sid
    assert attrs["eventsource.expected_version"] == "0"
    assert (attrs["eventsource.outcome"], attrs["eventsource.events"]) == ("ok", 2)
    assert "error.type" not in attrs
    (read,) = sdk.finished("read_stream")
    assert (read.attributes or {})["eventsource.events"] == 2
    assert (read.attributes or {})["eventsource.stream.id"] == sid
    assert sdk.total("eventsource.events.appended") == 2
    assert sdk.total("eventsource.events.read") == 2
    ops = {p.attributes["db.operation.name"]: p.count for p in sdk.metric("db.client.operation.duration")}
    assert ops["append"] == 1
    assert ops["read_stream"] == 1


async def test_the_expected_version_attribute_names_the_special_values(manager: EventSourcingManager, sdk: Sdk) -> None:
    """docs/observability.md: the attribute is ``ANY``, ``NO_STREAM``, ``STREAM_EXISTS`` or a number (it was ``-1``)."""
    from eventsource import ANY, NO_STREAM, STREAM_EXISTS

    sid = f"s-{uuid.uuid4().hex[:8]}"
    await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=NO_STREAM)
    await manager.append_event(stream_id=sid, event_type="A", data={})  # the default: ANY
    await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=ANY)
    await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=STREAM_EXISTS)
    await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=-1)
    await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=5)
    got = [(s.attributes or {})["eventsource.expected_version"] for s in sdk.finished("append")]
    assert got == ["NO_STREAM", "ANY", "ANY", "STREAM_EXISTS", "ANY", "5"]


async def test_a_conflict_is_an_error_span_and_counted(manager: EventSourcingManager, sdk: Sdk) -> None:
    sid = f"s-{uuid.uuid4().hex[:8]}"
    await manager.append_event(stream_id=sid, event_type="A", data={})
    with pytest.raises(ConcurrencyError):
        await manager.append_event(stream_id=sid, event_type="A", data={}, expected_version=5)
    failed = sdk.finished("append")[-1]
    attrs = dict(failed.attributes or {})
    assert (attrs["error.type"], attrs["eventsource.outcome"]) == ("ConcurrencyError", "conflict")
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert sdk.total("eventsource.conflicts") == 1
    assert any(p.attributes.get("error.type") == "ConcurrencyError" for p in sdk.metric("db.client.operation.duration"))


async def test_the_stream_id_can_be_left_off_spans(sdk: Sdk) -> None:
    m = EventSourcingManager({"providers": {"m": {"url": "memory://"}}, "telemetry_stream_id": False}, host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        await m.append_event(stream_id="secret-customer-42", event_type="A", data={})
        _ = [e async for e in m.read_stream("secret-customer-42")]
    finally:
        await m.close()
    spans = sdk.finished()
    assert {(s.attributes or {})["db.operation.name"] for s in spans} >= {"append", "read_stream"}
    assert all("eventsource.stream.id" not in (s.attributes or {}) for s in spans)
    assert all("secret-customer-42" not in s.name for s in spans)


async def test_retries_are_counted_on_the_call_that_retried(sdk: Sdk) -> None:
    """Two appends overlap; only the one that retried says so (the other's span holds no retries)."""
    import asyncio

    from test_manager_policies import faulty, unavailable

    m, p = await faulty()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    p.delay["append"] = [0.01, 0.2]  # the first call fails fast and retries while the second still waits
    p.fail["append"] = [unavailable()]
    await asyncio.gather(
        m.append_event(stream_id="r1", event_type="A", data={}, event_id=str(uuid.uuid4())),
        m.append_event(stream_id="r2", event_type="A", data={}, event_id=str(uuid.uuid4())),
    )
    spans = {(s.attributes or {})["eventsource.stream.id"]: dict(s.attributes or {}) for s in sdk.finished("append")}
    assert spans["r1"]["eventsource.retries"] == 1
    assert "eventsource.retries" not in spans["r2"]
    assert sdk.total("eventsource.retries") == 1
    assert spans["r1"]["db.system.name"] == "eventsource.memory-faulty"


async def test_a_resumed_read_counts_its_retry(sdk: Sdk) -> None:
    from test_manager_policies import faulty, unavailable

    m, p = await faulty()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    await m.append_events_batch(stream_id="r", events=[EventData("A", {}) for _ in range(5)])
    p.fail["read_stream"] = [unavailable()]
    assert len([e async for e in m.read_stream("r")]) == 5
    (read,) = sdk.finished("read_stream")
    assert (read.attributes or {})["eventsource.retries"] == 1
    assert (read.attributes or {})["eventsource.events"] == 5


async def test_append_writes_the_current_trace_context_for_a_consumer(manager: EventSourcingManager, sdk: Sdk) -> None:
    tracer = sdk.tracer_provider.get_tracer("app")
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with tracer.start_as_current_span("checkout") as parent:
        await manager.append_event(stream_id=sid, event_type="A", data={})
        await manager.append_event(stream_id=sid, event_type="B", data={}, metadata={"trace_context": {"mine": "1"}})
    a, b = [e async for e in manager.read_stream(sid)]
    assert "traceparent" in a.metadata["trace_context"]
    assert b.metadata["trace_context"] == {"mine": "1"}  # the application's own value is kept
    with tracer.start_as_current_span("handle", context=extract_context(a)) as child:
        pass
    assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    (append, _) = sdk.finished("append")
    assert append.parent is not None
    assert append.parent.span_id == parent.get_span_context().span_id  # the append span is the caller's child


async def test_no_context_is_written_without_a_span_or_a_key(sdk: Sdk) -> None:
    m = EventSourcingManager({"providers": {"m": {"url": "memory://"}}, "telemetry_context_key": None}, host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        with sdk.tracer_provider.get_tracer("app").start_as_current_span("op"):
            await m.append_event(stream_id="a", event_type="A", data={}, metadata={"k": 1})
        uninstrument(m)
        await m.append_event(stream_id="a", event_type="A", data={})
        assert [e.metadata async for e in m.read_stream("a")] == [{"k": 1}, {}]
    finally:
        await m.close()
    assert len(sdk.finished("append")) == 1  # none after uninstrument


def test_the_sync_api_reads_through_the_span_a_page_at_a_time(sdk: Sdk, tmp_path: Path) -> None:
    with SyncEventSourcingManager({"providers": {"m": {"url": f"sqlite:///{tmp_path}/s.db"}}}, host=HOST) as sm:
        instrument(sm.manager, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
        sm.append_events_batch(stream_id="s", events=[EventData("A", {}) for _ in range(25)])
        assert len(list(sm.read_stream("s", page_size=10))) == 25
    (read,) = sdk.finished("read_stream")
    assert (read.attributes or {})["eventsource.events"] == 25


@pytest.fixture(scope="module")
def global_sdk() -> Iterator[Sdk]:
    """The process's global tracer provider (set once; the ``telemetry`` setting uses the global ones)."""
    g = Sdk()
    trace.set_tracer_provider(g.tracer_provider)
    yield g


async def test_the_setting_turns_it_on_and_off(global_sdk: Sdk) -> None:
    for on in (False, True):
        global_sdk.spans.clear()
        m = EventSourcingManager({"providers": {"m": {"url": "memory://"}}, "telemetry": on}, host=HOST)
        await m.connect()
        try:
            assert (m._policy.telemetry is not None) is on
            await m.append_event(stream_id="x", event_type="A", data={})
        finally:
            await m.close()
        assert bool(global_sdk.finished("append")) is on


def test_a_bad_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="telemetry_context_key"):
        EventSourcingManager({"providers": {}, "telemetry_context_key": ""}, host=HOST)
    with pytest.raises(ConfigurationError, match="telemetry"):
        EventSourcingManager({"providers": {}, "telemetry": "maybe"}, host=HOST)


def test_memory_provider_kind_names_its_system() -> None:
    from eventsource.telemetry.spans import _system

    assert _system(MemoryProvider()) == "eventsource.memory"


async def test_a_read_stopped_early_ends_its_span_with_what_was_read(manager: EventSourcingManager, sdk: Sdk) -> None:
    await manager.append_events_batch(stream_id="early", events=[EventData("A", {}) for _ in range(10)])
    it = manager.read_stream("early", page_size=4)
    got = [await anext(it) for _ in range(3)]
    assert not sdk.finished("read_stream")  # still reading
    await it.aclose()  # type: ignore[attr-defined]
    (read,) = sdk.finished("read_stream")
    assert len(got) == 3
    assert (read.attributes or {})["eventsource.events"] == 3
    assert (read.attributes or {})["eventsource.outcome"] == "ok"


async def test_the_stream_id_left_off_spans_stays_out_of_error_descriptions(sdk: Sdk, tmp_path: Path) -> None:
    """Review: an error's message names the stream; with ``telemetry_stream_id`` off the span must not carry it."""
    url = f"sqlite:///{tmp_path}/p.db"
    m = EventSourcingManager({"providers": {"m": {"url": url}}, "telemetry_stream_id": False}, host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        await m.append_event(stream_id="secret-customer-42", event_type="A", data={})
        with pytest.raises(ConcurrencyError) as raised:
            await m.append_event(stream_id="secret-customer-42", event_type="A", data={}, expected_version=7)
    finally:
        await m.close()
    assert "secret-customer-42" in str(raised.value)  # the error itself names it, for the caller
    (failed,) = [s for s in sdk.finished("append") if s.status.status_code is trace.StatusCode.ERROR]
    assert "secret-customer-42" not in (failed.status.description or "")
    assert "ConcurrencyError" in (failed.status.description or "")
    assert all("secret-customer-42" not in str(ev.attributes) for s in sdk.finished() for ev in s.events)


async def test_a_traced_read_still_hands_the_sync_api_a_chunk_per_pull(manager: EventSourcingManager, sdk: Sdk) -> None:
    """Review: the span wrapper passes the sync API's pull through, but the sync API never sent it to a traced
    iterator (its code was not among the paged ones)."""
    from eventsource.manager.policy import PAGED
    from eventsource.syncloop import _take

    await manager.append_events_batch(stream_id="p", events=[EventData("A", i) for i in range(25)])
    first = manager.read_stream("p", page_size=10)
    assert first.ag_code in PAGED  # type: ignore[attr-defined]
    assert (await first.__anext__()).data == 0
    assert [e.data for e in await first.asend(9)] == list(range(1, 10))  # type: ignore[attr-defined]
    await first.aclose()  # type: ignore[attr-defined]
    items, done, error = await _take(manager.read_stream("p", page_size=10), 100)
    assert ([e.data for e in items], done, error) == (list(range(25)), True, None)
    assert [(s.attributes or {})["eventsource.events"] for s in sdk.finished("read_stream")] == [10, 25]


def test_instrument_takes_the_sync_facade_too(sdk: Sdk, tmp_path: Path) -> None:
    """Review: ``instrument(es, ...)`` on a SyncEventSourcingManager raised AttributeError (``_policy``)."""
    with SyncEventSourcingManager({"providers": {"m": {"url": f"sqlite:///{tmp_path}/f.db"}}}, host=HOST) as es:
        instrument(es, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
        es.append_event(stream_id="f", event_type="A", data={})
        uninstrument(es)
        es.append_event(stream_id="f", event_type="A", data={})
    assert len(sdk.finished("append")) == 1


async def test_baggage_is_not_written_into_event_metadata(manager: EventSourcingManager, sdk: Sdk) -> None:
    """Review: the default global propagator is trace context + baggage; an application's baggage (a user's
    email, a session id) went into every event's metadata, stored for good, unencrypted without encryption."""
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    tracer = sdk.tracer_provider.get_tracer("app")
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with tracer.start_as_current_span("checkout"):
        token = otel_context.attach(baggage.set_baggage("user.email", "alice@example.com"))
        try:
            await manager.append_event(stream_id=sid, event_type="A", data={})
        finally:
            otel_context.detach(token)
    (a,) = [e async for e in manager.read_stream(sid)]
    assert "traceparent" in a.metadata["trace_context"]
    assert "alice" not in repr(a.metadata), a.metadata  # (baggage travels URL-encoded: alice%40example.com)


async def test_a_subscriptions_reads_say_what_they_read(manager: EventSourcingManager, sdk: Sdk) -> None:
    """A subscription's page reads are traced like any read: events counted, the stream named.

    They were spans without ``eventsource.events`` or ``eventsource.stream.id``, and ``eventsource.events.read``
    stayed at 0 however many events subscriptions and projections read: a consumer's throughput was invisible.
    """
    sid = f"sub-{uuid.uuid4().hex[:8]}"
    await manager.append_events_batch(stream_id=sid, events=[EventData("A", i) for i in range(3)])
    for target in ({}, {"stream_id": sid}):
        sub = manager.subscribe(**target)
        got = []
        async for event in sub:
            got.append(event.data)
            if len(got) == 3:
                break
        await sub.close()
        assert got == [0, 1, 2]
    for op in ("read_all", "read_stream"):
        spans = sdk.finished(op)
        assert sum((s.attributes or {}).get("eventsource.events", 0) for s in spans) == 3, op
    assert all((s.attributes or {}).get("eventsource.stream.id") == sid for s in sdk.finished("read_stream"))
    assert sdk.total("eventsource.events.read") == 6


async def test_a_failed_calls_span_status_has_passwords_masked(sdk: Sdk) -> None:
    """A store's error may quote its URL (a driver error naming the DSN, kept in the ``ProviderError``'s text);
    the span status carried it as it was, password included, to every tracing backend."""
    from eventsource.errors import ProviderError

    class Quoting(MemoryProvider):
        async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
            msg = f"bad reply from {self.url} about {stream_id}"
            raise ValueError(msg)

    m = EventSourcingManager({"providers": {}}, host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        await m.register_provider(Quoting("memory://bob:s3cr3t-pw@quoting"), name="q")
        with pytest.raises(ProviderError):
            await m.get_stream_info("s")
    finally:
        await m.close()
    (failed,) = sdk.finished("get_stream_info")
    assert "bad reply from" in (failed.status.description or "")
    assert "s3cr3t-pw" not in (failed.status.description or ""), failed.status.description
