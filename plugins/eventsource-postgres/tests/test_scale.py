"""PostgreSQL at scale (issue #17): a cursor page never passes an event that may still commit at a lower position,
bounded stats read the streams rows, and retention in batches keeps the streams rows exact."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest


async def manager_on(p: Any) -> EventSourcingManager:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="pg", default=True)
    return m


async def test_a_cursor_page_holds_back_events_above_a_running_transaction(
    make_provider: Callable[..., Any], url: str
) -> None:
    m = await manager_on(await make_provider())
    first = await m.append_event(stream_id="a", event_type="T", data={})
    async with await psycopg.AsyncConnection.connect(url) as open_tx:  # an append that has its xid, not committed
        await open_tx.execute("SELECT pg_current_xact_id()")
        later = await m.append_event(stream_id="b", event_type="T", data={})
        page = await m.get_events(event_types=["T"], after_position=first.position, count="none")
        assert page.events == []
        assert page.has_more
        assert page.next_cursor == first.position  # "continue from here later": nothing was passed over
        exact = await m.get_events(event_types=["T"], after_position=first.position)
        assert (exact.events, exact.has_more, exact.total_count) == ([], True, 1)
        await open_tx.rollback()
    page = await m.get_events(event_types=["T"], after_position=first.position, count="none")
    assert [e.event_id for e in page.events] == [later.event_id]
    assert not page.has_more


async def test_bounded_stats_and_batched_retention_stay_exact(make_provider: Callable[..., Any]) -> None:
    p = await make_provider()
    m = await manager_on(p)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(3):
        for lo in range(0, 6000 * (i + 1), 1000):
            batch = [EventData("T", {}, timestamp=t0 + timedelta(seconds=j)) for j in range(lo, lo + 1000)]
            await m.append_events_batch(stream_id=f"s{i}", events=batch)
    assert await p.delete_events_before(t0 + timedelta(seconds=5500)) == 3 * 5500  # many short batches
    st = await p.stats(top_streams=2)
    assert st.events_by_stream == {"s2": 18000 - 5500, "s1": 12000 - 5500}
    assert (st.total_events, st.total_streams, st.estimated) == (500 + 6500 + 12500, 3, ())
    assert st.events_by_type == {"T": 19500}
    info = await m.get_stream_info("s0")
    assert (info.version, info.event_count, info.first_version) == (6000, 500, 5501)


async def test_truncate_in_batches_keeps_the_stream_exact(make_provider: Callable[..., Any]) -> None:
    p = await make_provider()
    m = await manager_on(p)
    for _ in range(12):
        await m.append_events_batch(stream_id="long", events=[EventData("T", {}) for _ in range(1000)])
    assert await p.truncate_stream("long", 11_001) == 11_000  # many short transactions
    info = await m.get_stream_info("long")
    assert (info.version, info.event_count, info.first_version) == (12_000, 1000, 11_001)
    assert await p.truncate_stream("long", 11_001) == 0
    assert await p.truncate_stream("long", 5) == 0


async def test_retention_is_many_short_transactions_that_writers_get_between(
    make_provider: Callable[..., Any],
) -> None:
    p = await make_provider()
    m = await manager_on(p)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    for lo in range(0, 20_000, 1000):
        batch = [EventData("T", {}, timestamp=t0 + timedelta(seconds=j)) for j in range(lo, lo + 1000)]
        await m.append_events_batch(stream_id="old", events=batch)
    order: list[str] = []

    class Batches(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            order.append("batch")
            sizes.append(record.args[1:3])  # type: ignore[index]

    sizes: list[tuple[int, int]] = []
    handler = Batches(logging.DEBUG)
    logger = logging.getLogger("eventsource_postgres.retention")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    done = asyncio.Event()

    async def writer() -> int:
        n = 0
        while not done.is_set():  # appends to the stream whose streams row every batch locks
            await m.append_event(stream_id="old", event_type="New", data={})
            order.append("append")
            n += 1
        return n

    task = asyncio.create_task(writer())
    try:
        deleted = await p.delete_events_before(t0 + timedelta(seconds=19_500))
    finally:
        done.set()
        appended = await task
        logger.removeHandler(handler)
        logger.setLevel(level)  # later tests do not format every batch's DEBUG record
    assert deleted == 19_500
    assert len(sizes) >= 9  # 64, 128, ... doubling at best: never one transaction for the run
    assert sum(n for n, _ in sizes) == 19_500
    assert all(n <= size for n, size in sizes)
    first, last = order.index("batch"), len(order) - 1 - order[::-1].index("batch")
    assert "append" in order[first:last]  # an append committed between two batches: not blocked for the run
    info = await m.get_stream_info("old")
    assert (info.version, info.event_count, info.first_version) == (20_000 + appended, 500 + appended, 19_501)
    assert await p.delete_events_before(t0 + timedelta(seconds=19_500)) == 0


async def test_max_count_over_many_streams_a_few_events_over_pauses_for_its_work_not_per_stream(
    make_provider: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsource_postgres import retention

    p = await make_provider()
    m = await manager_on(p)
    for i in range(100):
        await m.append_events_batch(stream_id=f"s{i:03d}", events=[EventData("T", {}) for _ in range(3)])
    pauses: list[float] = []
    real = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real(seconds)

    monkeypatch.setattr(retention, "asyncio", types.SimpleNamespace(sleep=sleep))
    report = await m.apply_retention(policies=[{"policy": "max_count", "max_events": 1}])
    assert report.deleted() == 200
    # each stream's one transaction deletes 2 events where a full batch deletes 64 or more: it owes 1/32 of
    # a full batch's pause, paid once the debt reaches a quantum (was: a pause twice its time, per stream)
    assert len(pauses) <= 25
    for i in range(100):
        assert (await m.get_stream_info(f"s{i:03d}")).event_count == 1


async def test_a_stream_run_that_loses_events_to_another_run_still_deletes_to_its_cutoff(
    make_provider: Callable[..., Any], url: str
) -> None:
    p = await make_provider()
    m = await manager_on(p)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    batch = [EventData("T", {}, timestamp=t0 + timedelta(seconds=j)) for j in range(300)]
    await m.append_events_batch(stream_id="s", events=batch)
    n = p.names
    async with await psycopg.AsyncConnection.connect(url) as other:  # another run, mid-batch: its rows locked
        await other.execute(f"DELETE FROM {n.events} WHERE stream_id = 's' AND version <= 10")
        await other.execute(
            f"UPDATE {n.streams} SET event_count = event_count - 10, first_version = 11 WHERE stream_id = 's'"
        )
        run = asyncio.create_task(p.delete_events_before(t0 + timedelta(seconds=200), stream_id="s"))
        pid = (await (await other.execute("SELECT pg_backend_pid()")).fetchone())[0]  # type: ignore[index]
        while not run.done():  # until the run's first batch waits on the rows this transaction deleted
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
                cur = await look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))", [pid]
                )
                if (await cur.fetchone())[0]:  # type: ignore[index]
                    break
            await asyncio.sleep(0.01)
        await other.commit()
    deleted = await run
    assert deleted == 190  # versions 11..200: the other run's 10 were not this run's to count
    info = await m.get_stream_info("s")
    assert (info.event_count, info.first_version) == (100, 201)


async def test_a_run_cancelled_inside_a_batch_keeps_the_store_exact_and_the_next_run_finishes(
    make_provider: Callable[..., Any], url: str
) -> None:
    p = await make_provider()
    m = await manager_on(p)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    for s in ("a", "b"):
        batch = [EventData("T", {}, timestamp=t0 + timedelta(seconds=j)) for j in range(500)]
        await m.append_events_batch(stream_id=s, events=batch)
    assert await p.truncate_stream("a", 3) == 2  # another run before: a's streams row moved on once
    n = p.names
    async with await psycopg.AsyncConnection.connect(url) as other:
        await other.execute(f"SELECT 1 FROM {n.streams} WHERE stream_id = 'a' FOR UPDATE")
        pid = (await (await other.execute("SELECT pg_backend_pid()")).fetchone())[0]  # type: ignore[index]
        run = asyncio.create_task(p.delete_events_before(t0 + timedelta(seconds=400)))
        while not run.done():  # until its recount waits on the streams row held here
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
                cur = await look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))", [pid]
                )
                if (await cur.fetchone())[0]:  # type: ignore[index]
                    break
            await asyncio.sleep(0.01)
        assert not run.done()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await other.rollback()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
        cur = await look.execute(
            f"SELECT s.stream_id, s.event_count, s.first_version, count(e.*), min(e.version) FROM {n.streams} s "
            f"LEFT JOIN {n.events} e USING (stream_id) GROUP BY 1, 2, 3 ORDER BY 1"
        )
        for sid, count, first, real_count, real_first in await cur.fetchall():
            assert (sid, count, first) == (sid, real_count, real_first)  # the cancelled batch kept nothing half-done
    assert await p.delete_events_before(t0 + timedelta(seconds=400)) == 398 + 400  # nothing of the cancelled one kept
    for s in ("a", "b"):
        info = await m.get_stream_info(s)
        assert (info.event_count, info.first_version) == (100, 401)
    assert await p.delete_events_before(t0 + timedelta(seconds=400)) == 0


async def test_retention_runs_at_once_from_two_providers_delete_each_event_once(
    make_provider: Callable[..., Any],
) -> None:
    p = await make_provider()
    q = await make_provider(schema=p.names.schema)  # another process's provider on the same store
    m = await manager_on(p)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    for s in ("a", "b", "c"):
        for lo in (0, 1000):
            batch = [EventData("T", {}, timestamp=t0 + timedelta(seconds=j)) for j in range(lo, lo + 1000)]
            await m.append_events_batch(stream_id=s, events=batch)
    cutoff = t0 + timedelta(seconds=1500)
    counts = await asyncio.gather(
        p.delete_events_before(cutoff),
        q.delete_events_before(cutoff),
        q.delete_events_before(t0 + timedelta(seconds=1800), stream_id="b"),
    )
    assert counts[0] + counts[1] + counts[2] == 3 * 1500 + 300  # each event counted by the one run that deleted it
    for s, first in (("a", 1501), ("b", 1801), ("c", 1501)):
        info = await m.get_stream_info(s)
        assert (info.event_count, info.first_version) == (2001 - first, first)


def test_a_slow_batch_of_a_few_events_does_not_shrink_the_next() -> None:
    from eventsource_postgres.retention import BATCH_SECONDS, Batches

    sizes = Batches(64)
    sizes.took(BATCH_SECONDS * 3, 2)  # one stream's 2 events: the time is its round trips
    assert sizes.size == 64
    sizes.took(BATCH_SECONDS * 3, 64)
    assert sizes.size == 32
