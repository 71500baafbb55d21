"""What an operator watches: the manager's metrics, OpenTelemetry counters and health, checked against the store.

Each test here failed on the code before its fix: numbers that drifted from what the store holds, and health
that said ``healthy`` while the store could not take writes.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData, EventSourcingManager, SyncEventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.telemetry import instrument
from test_manager_policies import faulty, unavailable
from test_telemetry import Sdk

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)


def _store(tmp_path: Path) -> dict[str, object]:
    return {"providers": {"db": {"url": f"sqlite:///{tmp_path}/m-{uuid.uuid4().hex}.db"}}}


async def test_a_duplicate_append_is_not_counted_as_events_appended(tmp_path: Path) -> None:
    """Re-sending a batch whose ids are stored writes nothing: ``events`` and ``eventsource.events.appended``
    counted it again (7 events appended, 6 stored)."""
    sdk = Sdk()
    m = EventSourcingManager(_store(tmp_path), host=HOST)
    await m.connect()
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        await m.append_events_batch(stream_id="a", events=[EventData("T", {"i": i}) for i in range(5)])
        once = [EventData("T", {}, event_id="fixed-1")]
        assert not (await m.append_events_batch(stream_id="b", events=once)).duplicate
        assert (await m.append_events_batch(stream_id="b", events=once)).duplicate
        stored = (await m.get_stats())["db"].total_events
        assert stored == 6
        assert m.metrics()["db"]["append"]["events"] == stored
        assert sdk.total("eventsource.events.appended") == stored
        spans = sdk.finished("append")
        assert [(s.attributes or {}).get("eventsource.events", 0) for s in spans] == [5, 1, 0]
    finally:
        await m.close()


def test_a_duplicate_append_through_the_sync_lane_is_not_counted(tmp_path: Path) -> None:
    """The sync API's in-thread append counted a duplicate's events too."""
    with SyncEventSourcingManager(_store(tmp_path), host=HOST) as es:
        es.append_event(stream_id="s", event_type="T", data={}, event_id="fixed-1")
        assert es.append_event(stream_id="s", event_type="T", data={}, event_id="fixed-1").duplicate
        es.append_events_batch(stream_id="s", events=[EventData("T", {}, event_id="fixed-1")])
        assert es.metrics()["db"]["append"]["events"] == es.get_stats()["db"].total_events == 1


async def test_an_append_whose_first_attempt_landed_counts_its_events_once() -> None:
    """The retry of an append that landed (its reply lost) answers ``duplicate``: those events were written."""
    m, p = await faulty()
    try:
        p.commit_then_fail.append(unavailable())
        await m.append_events_batch(stream_id="r", events=[EventData("T", {}, event_id="x-1")])
        assert m.metrics()["f"]["append"]["events"] == 1
        assert m.metrics()["f"]["append"]["retries"] == 1
    finally:
        await m.close()


FULL_DISK = """
import asyncio, json, os, resource, signal, sys
import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.cli import main as cli

async def run(url):
    m = EventSourcingManager({"providers": {"db": {"url": url}}})
    await m.connect()
    await m.append_event(stream_id="s", event_type="T", data={})
    out = {"before": (await m.health_check())["db"].details["status"]}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))  # the disk is full
    try:
        for i in range(100):
            await m.append_events_batch(stream_id=f"s{i}", events=[EventData("T", {"x": "y" * 20_000})] * 5)
        out["error"] = None
    except Exception as e:
        out["error"] = type(e).__name__
    h = (await m.health_check())["db"]
    out["full"] = [h.healthy, h.details.get("status"), h.details.get("reason"), h.message]
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    await m.append_event(stream_id="s", event_type="T", data={})
    h = (await m.health_check())["db"]
    out["after"] = [h.healthy, h.details.get("status")]
    await m.close()
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))
    return out

print(json.dumps(asyncio.run(run(sys.argv[1]))))
"""


def test_health_is_unhealthy_while_writes_fail_on_a_full_disk(tmp_path: Path) -> None:
    """Disk full (``RLIMIT_FSIZE`` in a subprocess): appends failed and ``health()`` still said ``healthy``."""
    import json
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/full.db"
    got = subprocess.run(
        [sys.executable, "-c", FULL_DISK, url], capture_output=True, text=True, check=True, timeout=120
    )
    out = json.loads(got.stdout.strip().splitlines()[-1])
    assert out["before"] in {"healthy", "degraded"}  # (degraded where /tmp is a tmpfs)
    assert out["error"] == "ProviderUnavailableError"
    healthy, status, reason, message = out["full"]
    assert (healthy, status, reason) == (False, "unhealthy", "writes_failing")
    assert "writes fail since" in message
    assert out["after"] == [True, out["before"]]  # a write that commits clears it


async def test_a_failing_telemetry_sdk_never_fails_the_call(tmp_path: Path, caplog: object) -> None:
    """A span processor or metric instrument that raises (a misconfigured SDK or exporter) made an append that
    was stored raise ``RuntimeError`` to its caller, who would send it again: a second copy under a new id."""
    import logging

    import pytest
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.metrics._internal.instrument import NoOpCounter, NoOpHistogram
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Broken(SpanProcessor):  # (the application's own span is left alone)
        def on_start(self, span: Any, parent_context: object = None) -> None:
            if span.instrumentation_scope.name == "eventsource":
                raise RuntimeError("processor misconfigured")

        def on_end(self, span: Any) -> None:
            if span.instrumentation_scope.name == "eventsource":
                raise RuntimeError("exporter misconfigured")

    class BadCounter(NoOpCounter):
        def add(self, *a: object, **k: object) -> None:
            raise ValueError("bad view")

    class BadHistogram(NoOpHistogram):
        def record(self, *a: object, **k: object) -> None:
            raise ValueError("bad view")

    class BadMeters(NoOpMeterProvider):
        def get_meter(self, *a: object, **k: object) -> object:
            meter = super().get_meter(*a, **k)
            meter.create_counter = lambda name, **_: BadCounter(name)  # type: ignore[method-assign]
            meter.create_histogram = lambda name, **_: BadHistogram(name)  # type: ignore[method-assign]
            return meter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(Broken())
    m = EventSourcingManager(_store(tmp_path), host=HOST)
    await m.connect()
    instrument(m, tracer_provider=tracer_provider, meter_provider=BadMeters())
    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.WARNING, logger="eventsource.telemetry")
    try:
        tracer = tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("request"):
            await m.append_events_batch(stream_id="s", events=[EventData("T", {}), EventData("T", {})])
        assert len([e async for e in m.read_stream("s")]) == 2
        assert (await m.get_stats())["db"].total_events == 2
        assert m.metrics()["db"]["append"]["errors"] == 0
        assert any("telemetry" in r.getMessage() for r in caplog.records)
    finally:
        await m.close()


async def test_a_call_refused_before_it_reaches_the_store_records_no_duration() -> None:
    """An operation the store declares it cannot do is refused by the call policy before any call: telemetry
    still recorded a ``db.client.operation.duration`` sample and a span for it (a call that never ran)."""
    import dataclasses

    import pytest
    from eventsource.errors import UnsupportedOperationError
    from eventsource.memory import MemoryProvider

    class NoDelete(MemoryProvider):
        capabilities = dataclasses.replace(MemoryProvider.capabilities, unsupported=frozenset({"delete_stream"}))

    sdk = Sdk()
    m = EventSourcingManager({}, host=HOST)
    await m.register_provider(NoDelete(f"memory://nd-{uuid.uuid4().hex}"), name="nd")
    instrument(m, tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        with pytest.raises(UnsupportedOperationError):
            await m.delete_stream("s")
        assert "delete_stream" not in m.metrics()["nd"]
        assert sdk.finished("delete_stream") == []
        assert not [
            p
            for p in sdk.metric("db.client.operation.duration")
            if p.attributes["db.operation.name"] == "delete_stream"
        ]
    finally:
        await m.close()


async def test_a_call_that_fails_without_retry_still_gives_its_latency_sample(tmp_path: Path) -> None:
    """``metrics()`` promises one latency sample per provider call; an append refused by a conflict (or any error
    not retried) gave none, so its percentiles left out every failed call (OpenTelemetry's duration kept them)."""
    import pytest
    from eventsource.errors import ConcurrencyError

    m = EventSourcingManager(_store(tmp_path), host=HOST)
    await m.connect()
    try:
        await m.append_event(stream_id="s", event_type="T", data={})
        with pytest.raises(ConcurrencyError):
            await m.append_event(stream_id="s", event_type="T", data={}, expected_version=7)
        got = m.metrics()["db"]["append"]
        assert (got["calls"], got["errors"], got["samples"]) == (2, 1, 2)
    finally:
        await m.close()


def test_a_sync_append_that_fails_without_retry_still_gives_its_latency_sample(tmp_path: Path) -> None:
    """The same through the sync API's in-thread append."""
    import pytest
    from eventsource.errors import ConcurrencyError

    with SyncEventSourcingManager(_store(tmp_path), host=HOST) as es:
        es.append_event(stream_id="s", event_type="T", data={})
        with pytest.raises(ConcurrencyError):
            es.append_event(stream_id="s", event_type="T", data={}, expected_version=7)
        got = es.metrics()["db"]["append"]
        assert (got["calls"], got["errors"], got["samples"]) == (2, 1, 2)


async def test_sqlite_health_answers_while_writes_queue_behind_a_held_write_lock(tmp_path: Path) -> None:
    """Another connection held the write lock: health read the writer's pragmas behind every queued append
    (each waiting out ``busy_timeout``) and answered only once all had failed, then said a plain ``healthy``."""
    import asyncio
    import sqlite3

    path = tmp_path / "busy.db"
    m = EventSourcingManager(
        {"providers": {"db": {"url": f"sqlite:///{path}", "settings": {"busy_timeout": 10}}}, "retry_attempts": 1},
        host=HOST,
    )
    await m.connect()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await m.append_event(stream_id="s", event_type="T", data={})
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        appends = [asyncio.create_task(m.append_event(stream_id="s", event_type="T", data={})) for _ in range(2)]
        await asyncio.sleep(0.05)
        status = (await m.health_check())["db"]
        assert not any(a.done() for a in appends)  # it answered while the appends still wait for the lock
        assert status.healthy
        assert status.details["status"] == "degraded"
        assert [f["component"] for f in status.details["faults"]] == ["writer"]
        other.execute("ROLLBACK")
        await asyncio.gather(*appends)  # the lock is free: they land
        assert (await m.health_check())["db"].details["status"] in {"healthy", "degraded"}
        assert "faults" not in (await m.health_check())["db"].details
    finally:
        other.close()
        await m.close()


async def test_once_health_finds_the_sqlite_file_removed_no_append_is_acknowledged_into_it(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Health looked at the files, found the database removed and said ``unhealthy``; an append right after was
    acknowledged all the same (written into the removed file: lost when the process ends), because a look that
    found the files changed did not make every later write look too. The look interval is stretched so the
    append surely falls inside it, as one within 50 ms of the last write does.
    """
    import shutil

    from eventsource.errors import ProviderUnavailableError
    from eventsource.sqlite import connection

    monkeypatch.setattr(connection, "LOOK_EVERY", 3600.0)
    folder = tmp_path / "gone"
    folder.mkdir()
    m = EventSourcingManager({"providers": {"db": {"url": f"sqlite:///{folder}/x.db"}}}, host=HOST)
    await m.connect()
    try:
        await m.append_event(stream_id="a", event_type="A", data={})
        shutil.rmtree(folder)
        health = (await m.health_check())["db"]
        assert not health.healthy
        assert "removed" in health.message
        with pytest.raises(ProviderUnavailableError, match="removed"):
            await m.append_event(stream_id="a", event_type="A", data={})
    finally:
        await m.close()
