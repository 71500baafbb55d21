"""Manager policies that behave the same on every provider: retries with backoff, timeouts,
idempotent appends across retries, resumable reads, the snapshot threshold, metrics, stats and health.

Faults are injected by small MemoryProvider subclasses (the store is real; only the failure is staged).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import ConcurrencyError, EventData, ValidationError
from eventsource.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError, RetentionError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.model import HealthStatus, RecordedEvent
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from eventsource.model import AppendResult, EventAt

HOST = PluginHost(load_entrypoints=False)
KEY = base64.b64encode(bytes(32)).decode()


class Faulty(MemoryProvider):
    """Raises ``fail[op]`` (a list of exceptions, consumed in order) before doing ``op``; counts calls."""

    kind = "memory-faulty"

    def __init__(self, url: str | None = "memory://", **settings: Any) -> None:
        super().__init__(url, **settings)
        self.fail: dict[str, list[BaseException]] = {}
        self.calls: dict[str, int] = {}
        self.commit_then_fail: list[BaseException] = []
        self.meanwhile: list[Callable[[], Awaitable[object]]] = []
        self.delay: dict[str, list[float]] = {}
        self.fail_read_at = 2

    async def _gate(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        delays = self.delay.get(op)
        if delays:
            await asyncio.sleep(delays.pop(0))
        errors = self.fail.get(op)
        if errors:
            raise errors.pop(0)

    async def _lose_reply(self) -> None:
        error = self.commit_then_fail.pop(0)
        if self.meanwhile:  # another process acts before the reply could have arrived
            await self.meanwhile.pop(0)()
        raise error

    async def append(self, stream_id, events, expected, stream=None) -> AppendResult:  # type: ignore[no-untyped-def]
        await self._gate("append")
        res = await super().append(stream_id, events, expected, stream)
        if self.commit_then_fail:
            raise self.commit_then_fail.pop(0)  # the write landed, the reply was lost
        return res

    async def delete_stream(self, stream_id: str) -> None:
        await self._gate("delete_stream")
        await super().delete_stream(stream_id)
        if self.commit_then_fail:
            raise self.commit_then_fail.pop(0)  # the delete landed, the reply was lost

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        await self._gate("delete_snapshots")
        n = await super().delete_snapshots(stream_id, version)
        if self.commit_then_fail:
            await self._lose_reply()  # the delete landed, the reply was lost
        return n

    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: EventAt | None = None) -> int:
        await self._gate("truncate_stream")
        n = await super().truncate_stream(stream_id, before_version, if_holds=if_holds)
        if self.commit_then_fail:
            await self._lose_reply()  # the truncation landed, the reply was lost
        return n

    async def get_stream_info(self, stream_id: str):  # type: ignore[no-untyped-def]
        await self._gate("get_stream_info")
        return await super().get_stream_info(stream_id)

    async def health(self) -> HealthStatus:
        await self._gate("health")
        return await super().health()

    async def read_stream_pages(self, stream_id: str, **kw: Any) -> AsyncIterator[Sequence[RecordedEvent]]:  # type: ignore[override]
        """The page view the manager reads through, failing after ``fail_read_at`` events of every iteration."""
        n = 0
        async for page in super().read_stream_pages(stream_id, **kw):
            recs = list(page)
            if n <= self.fail_read_at < n + len(recs):  # fail there while faults remain
                k = self.fail_read_at - n
                if k:
                    yield recs[:k]
                await self._gate("read_stream")
                recs, n = recs[k:], n + k
            n += len(recs)
            if recs:
                yield recs


def make(**config: Any) -> EventSourcingManager:
    return EventSourcingManager(
        {"providers": {}, "default_provider": None, "retry_delay": 0.001, "retry_max_delay": 0.002, **config}, host=HOST
    )


async def faulty(**config: Any) -> tuple[EventSourcingManager, Faulty]:
    m = make(**config)
    p = Faulty(f"memory://f-{uuid.uuid4().hex}")
    await m.register_provider(p, name="f")
    return m, p


def unavailable() -> ProviderUnavailableError:
    return ProviderUnavailableError("connection refused")


# ---------------------------------------------------------------------- retries


async def test_connection_errors_are_retried_up_to_the_configured_attempts() -> None:
    m, p = await faulty(retry_attempts=3)
    p.fail["append"] = [unavailable(), unavailable()]
    r = await m.append_event(stream_id="s", event_type="E", data={})
    assert r.version == 1
    assert p.calls["append"] == 3
    stats = m.metrics("f")["f"]["append"]
    assert (stats["calls"], stats["retries"], stats["errors"], stats["events"]) == (1, 2, 0, 1)
    p.fail["append"] = [unavailable() for _ in range(3)]
    with pytest.raises(ProviderUnavailableError):
        await m.append_event(stream_id="s", event_type="E", data={})
    assert p.calls["append"] == 6
    assert [e.version async for e in m.read_stream("s")] == [1]


async def test_a_retry_after_a_lost_reply_is_not_reported_as_someone_elses_duplicate() -> None:
    m, p = await faulty(retry_attempts=3)
    p.commit_then_fail = [unavailable()]
    r = await m.append_events_batch(stream_id="s", events=[EventData("E", {}), EventData("E", {})])
    assert (r.first_version, r.last_version, r.duplicate) == (1, 2, False)  # the manager made the ids: its own write
    assert p.calls["append"] == 2
    eid = str(uuid.uuid4())
    await m.append_event(stream_id="s", event_type="E", data={}, event_id=eid)
    again = await m.append_event(stream_id="s", event_type="E", data={}, event_id=eid)
    assert again.duplicate  # the caller's own id, sent twice: a duplicate it should know about


async def test_a_delete_is_never_retried_so_it_cannot_remove_a_stream_recreated_meanwhile() -> None:
    m, p = await faulty(retry_attempts=5)
    await m.append_event(stream_id="s", event_type="E", data={})
    p.commit_then_fail = [unavailable()]
    with pytest.raises(ProviderUnavailableError):  # the caller learns the outcome is unknown ...
        await m.delete_stream("s")
    assert p.calls["delete_stream"] == 1  # ... and no second delete ran after it landed
    assert not await m.stream_exists("s")
    p.fail["delete_stream"] = [unavailable()]
    with pytest.raises(ProviderUnavailableError):
        await m.delete_stream("s")
    assert p.calls["delete_stream"] == 2


async def test_a_snapshot_delete_is_never_retried_so_it_cannot_remove_a_snapshot_taken_meanwhile() -> None:
    m, p = await faulty(retry_attempts=5)
    other = make()  # another process on the same store
    await other.register_provider(p.url, name="f")
    await m.append_events_batch(stream_id="s", events=[EventData("E", {}) for _ in range(3)])
    await m.create_snapshot(stream_id="s", data={"upto": 2}, version=2)

    p.commit_then_fail = [unavailable()]
    p.meanwhile = [lambda: other.create_snapshot(stream_id="s", data={"upto": 3}, version=3)]
    with pytest.raises(ProviderUnavailableError):  # the outcome is unknown: the caller is told so ...
        await m.delete_snapshot("s")
    assert p.calls["delete_snapshots"] == 1  # ... and no second delete ran after the first landed
    assert (await m.get_snapshot("s")).version == 3  # the snapshot taken meanwhile is still there
    p.fail["delete_snapshots"] = [unavailable()]
    with pytest.raises(ProviderUnavailableError):
        await m.delete_snapshot("s", version=3)
    assert p.calls["delete_snapshots"] == 2


async def test_a_retention_truncation_is_never_retried_so_it_cannot_cut_a_stream_recreated_meanwhile() -> None:
    m, p = await faulty(retry_attempts=5)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {"old": i}) for i in range(10)])

    async def recreate() -> None:  # another process deletes the stream and starts it again
        await p.delete_stream("s")
        await m.append_events_batch(stream_id="s", events=[EventData("E", {"new": i}) for i in range(5)])

    p.commit_then_fail = [unavailable()]
    p.meanwhile = [recreate]
    with pytest.raises(RetentionError):  # the run reports the unknown outcome ...
        await m.apply_retention([{"policy": "max_count", "max_events": 3}])
    assert p.calls["truncate_stream"] == 1  # ... and no second truncation ran on the new stream
    assert [e.data async for e in m.read_stream("s")] == [{"new": i} for i in range(5)]
    report = await m.apply_retention([{"policy": "max_count", "max_events": 3}])  # the next run does its job
    assert report.deleted() == 2


async def test_conflicts_validation_and_other_store_errors_are_never_retried() -> None:
    m, p = await faulty(retry_attempts=5)
    await m.append_event(stream_id="s", event_type="E", data={})
    with pytest.raises(ConcurrencyError):
        await m.append_event(stream_id="s", event_type="E", data={}, expected_version=0)
    assert p.calls["append"] == 2
    with pytest.raises(ValidationError):
        await m.append_event(stream_id="s", event_type="", data={})
    assert p.calls["append"] == 2  # refused before the store
    p.fail["append"] = [ProviderError("disk full")]
    with pytest.raises(ProviderError):
        await m.append_event(stream_id="s", event_type="E", data={})
    assert p.calls["append"] == 3


async def test_an_append_whose_reply_was_lost_is_retried_idempotently() -> None:
    for encryption in (False, True):
        m, p = await faulty(retry_attempts=3, encryption=encryption, encryption_keys={"k1": KEY})
        p.commit_then_fail = [ProviderTimeoutError("reply lost")]
        r = await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(3)])
        # the retry found the first attempt's events by their ids; this call wrote them, so not a duplicate
        assert not r.duplicate
        assert (r.first_version, r.last_version) == (1, 3)
        assert [e.data["i"] async for e in m.read_stream("s")] == [0, 1, 2]
        assert p.calls["append"] == 2


async def test_the_timeout_bounds_every_call_and_raises_the_typed_error() -> None:
    m, p = await faulty(timeout=0.05, retry_attempts=2)
    p.delay["append"] = [5.0, 5.0]
    with pytest.raises(ProviderTimeoutError) as info:
        await m.append_event(stream_id="s", event_type="E", data={})
    assert info.value.details == {"provider": "f", "operation": "append"}
    assert isinstance(info.value, TimeoutError)
    assert "outcome is unknown" in str(info.value)  # a write that timed out may still land: the caller must know
    assert "same event ids" in str(info.value)  # and how to repeat it safely
    assert p.calls["append"] == 2
    p.delay["append"] = [5.0]  # one slow attempt, then a fast one
    assert (await m.append_event(stream_id="s", event_type="E", data={})).version == 1
    p.delay["get_stream_info"] = [5.0, 5.0]
    with pytest.raises(ProviderTimeoutError) as info:
        await m.get_stream_info("s")
    assert "outcome" not in str(info.value)  # a read changed nothing
    p.delay["delete_stream"] = [5.0]
    with pytest.raises(ProviderTimeoutError, match="outcome is unknown"):
        await m.delete_stream("s")


async def test_reads_resume_after_the_last_event_on_a_connection_error() -> None:
    m, p = await faulty(retry_attempts=3)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(7)])
    p.fail["read_stream"] = [unavailable(), unavailable()]
    assert [e.data["i"] async for e in m.read_stream("s")] == list(range(7))
    stats = m.metrics("f")["f"]["read_stream"]
    assert (stats["retries"], stats["errors"], stats["events"]) == (2, 0, 7)
    p.fail["read_stream"] = [unavailable()]
    assert [e.version async for e in m.read_stream("s", backwards=True)] == [7, 6, 5, 4, 3, 2, 1]
    p.fail["read_stream"] = [unavailable()]
    assert [e.version async for e in m.read_stream("s", from_version=2, to_version=6)] == [2, 3, 4, 5, 6]
    p.fail_read_at = 0  # no progress between failures: the attempts run out
    p.fail["read_stream"] = [unavailable() for _ in range(3)]
    with pytest.raises(ProviderUnavailableError):
        [e async for e in m.read_stream("s")]
    assert m.metrics("f")["f"]["read_stream"]["errors"] == 1


# ---------------------------------------------------------------------- snapshot threshold


async def test_append_says_when_a_snapshot_is_due() -> None:
    m, _ = await faulty(snapshot_threshold=3)
    due = [(await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due for _ in range(4)]
    assert due == [False, False, True, True]
    await m.create_snapshot(stream_id="s", data={"upto": 4})
    due = [(await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due for _ in range(3)]
    assert due == [False, False, True]
    batch = await m.append_events_batch(stream_id="b", events=[EventData("E", {}) for _ in range(5)])
    assert batch.snapshot_due
    await m.delete_snapshot("s")
    assert (await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due


async def test_a_snapshot_taken_elsewhere_is_noticed() -> None:
    store = f"memory://snap-{uuid.uuid4().hex}"
    a, b = make(snapshot_threshold=2), make(snapshot_threshold=2)
    await a.register_provider(store, name="m")
    await b.register_provider(store, name="m")
    assert [(await a.append_event(stream_id="s", event_type="E", data={})).snapshot_due for _ in range(2)] == [
        False,
        True,
    ]
    await b.create_snapshot(stream_id="s", data={})  # a does not know
    assert [(await a.append_event(stream_id="s", event_type="E", data={})).snapshot_due for _ in range(3)] == [
        False,
        True,
        True,
    ]  # v3 re-checks: 1 past v2; v4: 2 past


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_snapshot_handler_takes_the_snapshot_inside_the_append(is_async: bool) -> None:
    calls: list[tuple[str, int]] = []

    def state(stream_id: str, version: int) -> dict[str, Any]:
        calls.append((stream_id, version))
        return {"version": version}

    async def astate(stream_id: str, version: int) -> dict[str, Any]:
        return state(stream_id, version)

    m, _ = await faulty(snapshot_threshold=2)
    m.set_snapshot_handler(astate if is_async else state)
    due = [(await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due for _ in range(5)]
    assert due == [False, False, False, False, False]
    assert calls == [("s", 2), ("s", 4)]
    snap = await m.get_snapshot("s")
    assert (snap.version, snap.data) == (4, {"version": 4})


async def test_a_declining_or_failing_handler_leaves_the_snapshot_due_and_the_events_stored() -> None:
    def decline(stream_id: str, version: int) -> None:
        return None

    def boom(stream_id: str, version: int) -> Any:
        msg = "aggregate cannot be rebuilt"
        raise RuntimeError(msg)

    m, _ = await faulty(snapshot_threshold=1)
    m.set_snapshot_handler(decline)
    assert (await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due
    m.set_snapshot_handler(boom)
    r = await m.append_event(stream_id="s", event_type="E", data={})
    assert r.snapshot_due
    assert r.version == 2
    handler = m.metrics("f")["f"]["snapshot_handler"]
    assert (handler["calls"], handler["errors"]) == (2, 1)
    m.set_snapshot_handler(None)
    assert (await m.append_event(stream_id="s", event_type="E", data={})).snapshot_due


async def test_with_every_feature_off_the_append_path_makes_no_extra_calls() -> None:
    m, p = await faulty()
    for _ in range(3):
        await m.append_event(stream_id="s", event_type="E", data={})
    assert p.calls == {"append": 3}
    assert m._sealed.versions == {}
    assert m._threshold.latest == {}
    assert m._codec.cipher is None


async def test_encrypted_any_appends_pin_the_version_with_one_lookup_per_stream() -> None:
    m, p = await faulty(encryption=True, encryption_keys={"k1": KEY})
    for _ in range(4):
        await m.append_event(stream_id="s", event_type="E", data={})
    assert p.calls == {"append": 4, "get_stream_info": 1}
    await m.append_event(stream_id="t", event_type="E", data={}, expected_version=0)
    assert p.calls["get_stream_info"] == 1  # exact expected versions need no lookup


# ---------------------------------------------------------------------- metrics, stats, health


async def test_metrics_and_stats_report_counters_and_latency_percentiles() -> None:
    m, _ = await faulty()
    for i in range(20):
        await m.append_events_batch(stream_id=f"s{i % 2}", events=[EventData("A", {}), EventData("B", {})])
    await m.get_events(limit=5)
    await m.get_event_by_id((await m.get_events(limit=1)).events[0].event_id)
    assert len([e async for e in m.read_all()]) == 40
    metrics = m.metrics()["f"]
    append = metrics["append"]
    assert (append["calls"], append["events"], append["errors"], append["samples"]) == (20, 40, 0, 20)
    assert 0 <= append["p50_ms"] <= append["p90_ms"] <= append["p99_ms"] <= append["max_ms"]
    assert metrics["read_all"]["events"] == 40
    assert metrics["query"]["calls"] == 2
    assert metrics["get_event"]["calls"] == 1
    stats = (await m.get_stats())["f"]
    assert stats.total_events == 40
    assert stats.events_by_type == {"A": 20, "B": 20}
    assert stats.events_by_stream == {"s0": 20, "s1": 20}
    assert stats.extra["manager"]["append"]["calls"] == 20
    assert stats.extra["manager_uptime_seconds"] >= 0
    assert stats.provider in {"memory-faulty", "f"}


async def test_latency_window_is_bounded() -> None:
    from eventsource.manager import LATENCY_WINDOW

    m, _ = await faulty()
    for _ in range(LATENCY_WINDOW + 10):
        await m.stream_exists("s")
    info = m.metrics()["f"]["get_stream_info"]
    assert info["calls"] == LATENCY_WINDOW + 10
    assert info["samples"] == LATENCY_WINDOW


async def test_health_says_what_is_wrong_per_provider() -> None:
    m = make(timeout=0.05, retry_attempts=1)
    ok, down, slow, sick = Faulty(), Faulty(), Faulty(), Faulty()

    class Unhealthy(Faulty):
        async def health(self) -> HealthStatus:
            return HealthStatus(
                healthy=False,
                provider=self.name,
                message="schema missing: run connect()",
                details={"reason": "schema_missing"},
            )

    class Vague(Faulty):
        async def health(self) -> HealthStatus:
            return HealthStatus(healthy=False, provider=self.name, message="something is off")

    schema, vague = Unhealthy(), Vague()
    for name, p in (("ok", ok), ("down", down), ("slow", slow), ("sick", sick), ("schema", schema), ("vague", vague)):
        await m.register_provider(p, name=name)
    down.fail["health"] = [ProviderUnavailableError("connection refused to postgresql://app:***@db:5432/x")]
    slow.delay["health"] = [5.0]
    sick.fail["health"] = [ProviderError("authentication failed for user app", reason="auth")]
    h = await m.health_check()
    assert h["ok"].healthy
    assert (h["down"].healthy, h["down"].details["reason"]) == (False, "unreachable")
    assert "connection refused" in h["down"].message
    assert (h["slow"].healthy, h["slow"].details["reason"]) == (False, "timeout")
    assert (h["sick"].healthy, h["sick"].details["reason"]) == (False, "auth")
    assert (h["schema"].healthy, h["schema"].details["reason"]) == (False, "schema_missing")
    assert (h["vague"].healthy, h["vague"].details["reason"]) == (False, "error")


def test_the_sync_facade_forwards_the_new_methods() -> None:
    with SyncEventSourcingManager({"providers": {"m": "memory://"}, "snapshot_threshold": 2}, host=HOST) as m:
        assert [m.append_event(stream_id="s", event_type="E", data={}).snapshot_due for _ in range(2)] == [False, True]
        report = m.apply_retention([{"policy": "max_count", "max_events": 1}])
        assert report.deleted() == 1
        assert m.metrics()["m"]["append"]["calls"] == 2
        schedule = m.start_retention("1h", [{"policy": "max_count", "max_events": 1}], run_now=False)
        assert schedule.running
        assert m.stop_retention() == 1
        assert not schedule.running


async def test_a_stalled_read_step_times_out_and_resumes() -> None:
    m, p = await faulty(timeout=0.05, retry_attempts=3)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(6)])
    p.delay["read_stream"] = [5.0]  # the third event never comes in time; the re-opened read is fast
    assert [e.data["i"] async for e in m.read_stream("s")] == list(range(6))
    stats = m.metrics("f")["f"]["read_stream"]
    assert (stats["retries"], stats["errors"]) == (1, 0)
    p.fail_read_at = 0
    p.delay["read_stream"] = [5.0, 5.0, 5.0]
    with pytest.raises(ProviderTimeoutError) as info:
        [e async for e in m.read_stream("s")]
    assert info.value.details["operation"] == "read_stream"
    assert not isinstance(info.value, asyncio.CancelledError)


async def test_a_slow_consumer_is_not_a_store_timeout() -> None:
    m, _ = await faulty(timeout=0.02)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {"i": i}) for i in range(3)])
    seen = []
    async for e in m.read_stream("s"):
        await asyncio.sleep(0.05)  # longer than the timeout, but spent by the caller, not the store
        seen.append(e.version)
    assert seen == [1, 2, 3]


async def test_cancelling_a_reader_still_cancels() -> None:
    m, p = await faulty(timeout=30)
    await m.append_events_batch(stream_id="s", events=[EventData("E", {}) for _ in range(3)])
    p.delay["read_stream"] = [5.0]

    async def read() -> list[int]:
        return [e.version async for e in m.read_stream("s")]

    task = asyncio.create_task(read())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_only_the_call_that_overran_times_out_among_concurrent_calls() -> None:
    m, p = await faulty(timeout=0.05, retry_attempts=1)
    p.delay["get_stream_info"] = [5.0]  # the first lookup hangs; the others are instant
    results = await asyncio.gather(*(m.stream_exists(f"s{i}") for i in range(20)), return_exceptions=True)
    assert isinstance(results[0], ProviderTimeoutError)
    assert results[1:] == [False] * 19
    assert m.metrics("f")["f"]["get_stream_info"]["errors"] == 1
    assert (await m.append_event(stream_id="s", event_type="E", data={})).version == 1  # the manager is fine after


async def test_cancelling_a_call_is_a_cancellation_not_a_timeout() -> None:
    m, p = await faulty(timeout=30)
    p.delay["append"] = [5.0]
    task = asyncio.create_task(m.append_event(stream_id="s", event_type="E", data={}))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await m.append_event(stream_id="s", event_type="E", data={})).version == 1


def test_positional_record_construction_matches_the_field_order() -> None:
    """The manager builds EventData, NewEvent and Event positionally on the hot path; pin the orders."""
    import dataclasses

    from eventsource.model import Event, NewEvent

    assert [f.name for f in dataclasses.fields(EventData)] == [
        "event_type", "data", "metadata", "event_id", "correlation_id", "causation_id", "user_id",
        "tenant_id", "aggregate_id", "aggregate_type", "timestamp",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(NewEvent)] == [
        "event_id", "event_type", "data", "metadata", "encoding", "timestamp", "correlation_id",
        "causation_id", "user_id", "tenant_id", "aggregate_id", "aggregate_type",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(Event)] == [
        "event_id", "stream_id", "event_type", "data", "metadata", "version", "position", "timestamp",
        "correlation_id", "causation_id", "user_id", "tenant_id", "aggregate_id", "aggregate_type",
    ]  # fmt: skip


def test_generated_event_ids_are_distinct_time_ordered_version_7_uuids_and_fork_safe() -> None:
    """RFC 9562 version 7: the first 48 bits are the Unix time in ms when the id was made, so ids sort by it."""
    import multiprocessing
    import time
    import uuid as uuid_mod

    from eventsource.manager import _event_id

    before = time.time_ns() // 1_000_000
    ids = [_event_id() for _ in range(2000)]  # several buffer refills
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid_mod.UUID(value)
        assert (str(parsed), parsed.version, parsed.variant) == (value, 7, uuid_mod.RFC_4122)
        assert before <= parsed.int >> 80 <= after
    stamps = [uuid_mod.UUID(v).int >> 80 for v in ids]
    assert stamps == sorted(stamps)  # made one after another: never an earlier millisecond after a later one
    later = _event_id()
    while uuid_mod.UUID(later).int >> 80 == stamps[-1]:
        later = _event_id()
    assert later > max(ids)  # an id from a later millisecond sorts after every earlier one (as text too)
    _event_id()  # the parent holds a partly used buffer now
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply(_child_ids)
    assert not set(child) & {_event_id() for _ in range(5)}


def _child_ids() -> list[str]:
    from eventsource.manager import _event_id

    return [_event_id() for _ in range(5)]
