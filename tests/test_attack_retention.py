"""Attacks on retention through the manager, on the SQLite and in-memory stores.

A stream's newest event can go by ``max_age`` (timestamps are the caller's: an import, a backfill, a skewed
clock); the per-stream policies must still apply to what the stream keeps, on this run and every later one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource.memory import MemoryProvider
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.retention import BeforeSnapshotPolicy, MaxAgePolicy, MaxCountPolicy, RetentionContext

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.provider import Provider
    from eventsource.sqlite import SqliteProvider

T0 = datetime(2020, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=100)


@pytest.fixture(params=["sqlite", "memory"])
async def manager(
    request: pytest.FixtureRequest, sqlite_provider: SqliteProvider
) -> AsyncIterator[EventSourcingManager]:
    provider: Provider = sqlite_provider if request.param == "sqlite" else MemoryProvider()
    if request.param == "memory":
        await provider.connect()
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(provider, name="under-test", default=True)
    yield m
    await m.close()


async def _stream_whose_newest_event_is_old(m: EventSourcingManager) -> str:
    """20 events of day 90..; the newest (version 20) was imported with a timestamp of day 0; ``max_age`` ran."""
    sid = f"s-{uuid.uuid4().hex[:8]}"
    days = [90 + i for i in range(19)] + [0]
    await m.append_events_batch(
        stream_id=sid,
        events=[EventData("Tick", {"i": i}, timestamp=T0 + timedelta(days=d)) for i, d in enumerate(days)],
    )
    report = await m.apply_retention([MaxAgePolicy(timedelta(days=30))], now=NOW)
    assert report.deleted() == 1
    assert [e.version async for e in m.read_stream(sid)] == list(range(1, 20))
    return sid


async def test_max_count_still_applies_after_max_age_deleted_a_streams_newest_event(m: EventSourcingManager) -> None:
    sid = await _stream_whose_newest_event_is_old(m)
    report = await m.apply_retention([MaxCountPolicy(5)], now=NOW)
    assert [e.version async for e in m.read_stream(sid)] == [15, 16, 17, 18, 19]
    assert report.deleted() == 14
    assert (await m.apply_retention([MaxCountPolicy(5)], now=NOW)).deleted() == 0


async def test_before_snapshot_still_applies_after_max_age_deleted_a_streams_newest_event(
    m: EventSourcingManager,
) -> None:
    sid = await _stream_whose_newest_event_is_old(m)
    await m.create_snapshot(stream_id=sid, version=17, data={"n": 17})
    report = await m.apply_retention([BeforeSnapshotPolicy()], now=NOW)
    assert [e.version async for e in m.read_stream(sid)] == [18, 19]
    assert report.deleted() == 17


@pytest.mark.parametrize("at", ["truncate_stream", "get_stream_info"])
async def test_a_stream_created_again_while_max_count_looks_past_a_deleted_newest_event_is_left_whole(
    m: EventSourcingManager, at: str
) -> None:
    """Deleted and created again (as long as before) between the listing and the guard's second look: left whole."""
    sid = await _stream_whose_newest_event_is_old(m)
    p = m.get_provider("under-test")
    again = [True]

    async def call(op: str, fn: Any) -> Any:
        if op == at and again:  # another process deletes the stream and starts it again, just then
            again.clear()
            await m.delete_stream(sid)
            await m.append_events_batch(stream_id=sid, events=[EventData("Tick", {"i": i}) for i in range(20)])
        return await fn()

    assert await MaxCountPolicy(5).apply(RetentionContext(provider=p, now=NOW, call=call)) == 0
    assert not again
    assert [e.version async for e in m.read_stream(sid)] == list(range(1, 21))


@pytest.fixture
def m(manager: EventSourcingManager) -> EventSourcingManager:
    return manager


# ---------------------------------------------------------------------- bad input to a run (retention review)


@pytest.mark.parametrize(
    "policies",
    [MaxCountPolicy(2), "max_count", {"policy": "max_count", "max_events": 2}, b"max_count", 2],
    ids=["a-policy", "a-name", "a-dict", "bytes", "an-int"],
)
async def test_policies_not_given_as_a_list_are_refused_naming_the_list_and_nothing_is_deleted(
    m: EventSourcingManager, policies: object
) -> None:
    """A lone policy where a list is expected: a str was read letter by letter ("unknown policy 'm'"), a dict key
    by key ("unknown policy 'policy'"), a policy object raised a bare TypeError."""
    sid = f"s-{uuid.uuid4().hex[:8]}"
    await m.append_events_batch(stream_id=sid, events=[EventData("Tick", {"i": i}) for i in range(5)])
    with pytest.raises(ConfigurationError, match=r"a list of") as e:
        await m.apply_retention(policies)  # type: ignore[arg-type]
    assert e.value.details["field"] == "retention_policies"
    with pytest.raises(ConfigurationError, match=r"a list of"):
        await m.start_retention("1h", policies)  # type: ignore[arg-type]
    assert [e.version async for e in m.read_stream(sid)] == [1, 2, 3, 4, 5]


async def test_max_age_reaching_before_year_one_deletes_nothing_and_the_run_succeeds(m: EventSourcingManager) -> None:
    """``now`` and ``max_age`` are each valid; a cutoff before the first representable instant means no event is
    older: the run reported a failed policy (OverflowError) and raised RetentionError."""
    sid = f"s-{uuid.uuid4().hex[:8]}"
    early = datetime(5, 1, 1, tzinfo=UTC)
    await m.append_events_batch(stream_id=sid, events=[EventData("Tick", {"i": i}, timestamp=early) for i in range(3)])
    report = await m.apply_retention([MaxAgePolicy("3650d")], now=datetime(6, 1, 1, tzinfo=UTC))
    [outcome] = report.outcomes
    assert (outcome.status, outcome.deleted_events) == ("ok", 0)
    assert [e.version async for e in m.read_stream(sid)] == [1, 2, 3]
