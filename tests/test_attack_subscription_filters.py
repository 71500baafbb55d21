"""Attacks on subscriptions (filters, starts, odd input, retention) on SQLite: each failed before its fix."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import SqliteCheckpointStore
from eventsource.errors import ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.subscriptions import CheckpointAheadError
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.subscriptions import take

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def es(tmp_path: Path) -> AsyncIterator[EventSourcingManager]:
    async with EventSourcingManager(f"sqlite:///{tmp_path}/e.db") as m:
        yield m


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_types": []}, "event_types"),
        ({"event_types": set()}, "event_types"),
        ({"stream_prefix": []}, "stream_prefix"),
        ({"stream_prefix": ()}, "stream_prefix"),
        ({"event_types": False}, "event_types"),
        ({"event_types": b""}, "event_types"),
        ({"event_types": b"Placed"}, "event_types"),
        ({"event_types": 5}, "event_types"),
        ({"stream_prefix": 7}, "stream_prefix"),
        ({"stream_prefix": {"order-": 1}}, "stream_prefix"),
    ],
)
async def test_an_empty_or_malformed_filter_is_refused_not_read_as_no_filter(
    es: EventSourcingManager, tmp_path: Path, kwargs: dict[str, Any], field: str
) -> None:
    """A filter computed at run time that comes out empty (``event_types=[t for t in handled]`` with nothing
    handled) or is not a list at all (``False``, ``b""``) was read as no filter: the subscription delivered
    every event of every stream, and a number raised a bare ``TypeError``. Each is now a ``ValidationError``,
    on the async and the sync API, before the store is asked anything."""
    await es.append_event(stream_id="order-1", event_type="Placed", data={})
    with pytest.raises(ValidationError) as info:
        es.subscribe(**kwargs)
    assert info.value.details["field"] == field
    with SyncEventSourcingManager(f"sqlite:///{tmp_path}/e.db") as sync, pytest.raises(ValidationError):
        sync.subscribe(**kwargs)
    assert [e.event_type async for e in es.read_all()] == ["Placed"]


async def test_ten_thousand_types_and_wildcard_characters_filter_literally_and_checkpoint_past_the_rest(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """Odd filters work: 10,000 event types, and prefixes holding SQL and subject wildcards (``%``, ``_``, ``*``,
    ``>``) match literally. A restart resumes after the events the filter passed over, without reading them again."""
    types = [f"T{i}" for i in range(10_000)]
    await es.append_event(stream_id="a%_*>.1", event_type="T9999", data={"n": 1})
    await es.append_event(stream_id="ab_x1", event_type="T9999", data={"n": 2})  # '_' and '%' are no wildcards
    await es.append_event(stream_id="a%_*>.2", event_type="Other", data={"n": 3})
    cp = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    kw: dict[str, Any] = {"stream_prefix": ["a%_*>."], "event_types": types, "checkpoint": cp, "name": "odd"}
    async with es.subscribe(**kw, poll_interval=0.05) as sub:
        assert [e.data["n"] for e in await take(sub, 1)] == [1]
        await sub.commit()
        for n in range(4, 54):
            await es.append_event(stream_id=f"z-{n}", event_type="T1", data={"n": n})
        last = [e.position async for e in es.read_all()][-1]
        waiting = asyncio.ensure_future(anext(sub))  # nothing it wants comes: it commits what it passed over
        for _ in range(3000):
            stored = await cp.get("odd", sub.source)
            if stored is not None and stored.position == last:
                break
            await asyncio.sleep(0.01)
        waiting.cancel()
    stored = await cp.get("odd", sub.source)
    assert stored is not None and stored.position == last
    await es.append_event(stream_id="a%_*>.3", event_type="T0", data={"n": 99})
    async with es.subscribe(**kw, poll_interval=0.05) as again:
        assert [e.data["n"] for e in await take(again, 1)] == [99]
        assert again.reads == 1, "the restart read the passed-over events again"


async def test_a_one_stream_start_beyond_the_streams_version_is_refused(es: EventSourcingManager) -> None:
    """``subscribe(stream_id=s, from_version=100)`` on a stream at version 3 waited without a word, and once the
    stream grew it handed out version 100 on, the versions in between passed over unseen. A start from a
    position beyond the store was refused already (``CheckpointAheadError``); one beyond the stream now is too,
    while the next version to come (4, or 1 of a stream not created yet) is a start like any other."""
    await es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(3)])
    for sid, version in [("s", 100), ("s", 5), ("new", 2)]:
        with pytest.raises(CheckpointAheadError) as info:
            await es.subscribe(stream_id=sid, from_version=version).start()
        assert info.value.details["position"] == version - 1
    async with es.subscribe(stream_id="s", from_version=4, poll_interval=0.05) as sub:
        await es.append_event(stream_id="s", event_type="T", data={"i": 3})
        assert [e.version for e in await take(sub, 1)] == [4]
    async with es.subscribe(stream_id="new", from_version=1, poll_interval=0.05) as sub:
        await es.append_event(stream_id="new", event_type="T", data={})
        assert [e.version for e in await take(sub, 1)] == [1]


async def test_a_one_stream_subscription_holds_at_most_page_size_events(es: EventSourcingManager) -> None:
    """The first read of a one-stream subscription took ``page_size + 1`` events (the extra one is only needed to
    check the event it resumes after): ``sub.buffered`` showed ``page_size`` after one event was handed out,
    against the documented bound of ``page_size`` held."""
    await es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(10)])
    async with es.subscribe(stream_id="s", page_size=3) as sub:
        seen = []
        for _ in range(10):
            seen.append((await anext(sub)).version)
            assert sub.buffered <= 3 - 1, f"holds {sub.buffered + 1} events read at once, page_size is 3"
        assert seen == list(range(1, 11))


async def test_a_one_stream_subscription_says_which_versions_retention_deleted_before_it_read_them(
    es: EventSourcingManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream truncated past a one-stream subscription's place (live, or under its checkpoint) was read on
    from the next stored version without a word: versions 4 to 7 never came and nothing said so. Versions are
    gap-free, so such a jump is a deletion: it is logged (``eventsource.subscriptions``) naming the versions. A new
    subscription from version 1 of a stream retention truncated long ago starts at its first stored one quietly."""
    await es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(10)])
    cp = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    caplog.set_level("WARNING", logger="eventsource.subscriptions")
    async with es.subscribe(stream_id="s", page_size=3, checkpoint=cp, name="n", poll_interval=0.05) as sub:
        await sub.commit((await take(sub, 3))[-1])
        assert await sub.provider.truncate_stream("s", 8) == 7
        assert [e.version for e in await take(sub, 3)] == [8, 9, 10]
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 4 to 7 of stream 's'" in warned[0], warned
    caplog.clear()
    async with es.subscribe(stream_id="s", checkpoint=cp, name="n", poll_interval=0.05) as again:
        assert [e.version for e in await take(again, 1)] == [8]
    async with es.subscribe(stream_id="s", poll_interval=0.05) as fresh:
        assert [e.version for e in await take(fresh, 1)] == [8]
    warned = [r.getMessage() for r in caplog.records if r.name == "eventsource.subscriptions"]
    assert len(warned) == 1 and "versions 4 to 7 of stream 's'" in warned[0], warned


@pytest.mark.parametrize("max_events", [0, -3, "3", 2.5, None, True])
async def test_next_batch_refuses_a_batch_size_that_is_not_a_positive_int(
    es: EventSourcingManager, max_events: Any
) -> None:
    """``next_batch(0)`` (or ``-3``) handed out an event, against "up to ``max_events``"; ``next_batch("3")`` raised a
    ``TypeError`` that the batch's own error handling swallowed, and a float was used as a count. Each is a
    ``ValidationError`` now, raised before anything is read or handed out."""
    await es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"i": i}} for i in range(5)])
    async with es.subscribe(page_size=5) as sub:
        with pytest.raises(ValidationError) as info:
            await sub.next_batch(max_events)
        assert info.value.details["field"] == "max_events"
        assert [e.data["i"] for e in await sub.next_batch(5)] == [0, 1, 2, 3, 4]
