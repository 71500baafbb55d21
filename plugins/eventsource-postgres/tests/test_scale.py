"""PostgreSQL at scale (issue #17): a cursor page never passes an event that may still commit at a lower position,
bounded stats read the streams rows, and retention in batches keeps the streams rows exact."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import types
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from conftest import manager_on
from eventsource.model import EventData
from eventsource.testing.retention import record_pauses

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import AgedStore
    from eventsource.manager import EventSourcingManager


async def page_through(m: EventSourcingManager, limit: int, order: str, kw: dict[str, Any]) -> list[int]:
    """The positions of every page from a cursor before the store's first event (or after its last, descending)."""
    got: list[int] = []
    cursor = 0 if order == "asc" else 10**6
    for _ in range(1000):  # bounded: a page that returns events of other values can move the cursor back
        page = await m.get_events(limit=limit, after_position=cursor, sort_order=order, count="none", **kw)
        got.extend(e.position for e in page.events)
        if not page.has_more:
            return got
        cursor = page.next_cursor
    raise AssertionError(got[:20])


async def test_a_cursor_page_holds_back_events_above_a_running_transaction(aged: AgedStore, url: str) -> None:
    m = aged.manager
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
    for _ in range(1200):  # bounded: on a shared server another session's older transaction may still run
        if await aged.provider.end_position() > later.position:
            break
        await asyncio.sleep(0.05)
    page = await m.get_events(event_types=["T"], after_position=first.position, count="none")
    assert [e.event_id for e in page.events] == [later.event_id]
    assert not page.has_more


async def test_bounded_stats_and_batched_retention_stay_exact(aged: AgedStore) -> None:
    p, m = aged.provider, aged.manager
    for i in range(3):
        await aged.fill(f"s{i}", 0, 6000 * (i + 1))
    assert await p.delete_events_before(aged.at(5500)) == 3 * 5500  # many short batches
    st = await p.stats(top_streams=2)
    assert st.events_by_stream == {"s2": 18000 - 5500, "s1": 12000 - 5500}
    assert (st.total_events, st.total_streams, st.estimated) == (500 + 6500 + 12500, 3, ())
    assert st.events_by_type == {"T": 19500}
    info = await m.get_stream_info("s0")
    assert (info.version, info.event_count, info.first_version) == (6000, 500, 5501)


async def test_truncate_in_batches_keeps_the_stream_exact(aged: AgedStore) -> None:
    p, m = aged.provider, aged.manager
    await aged.fill("long", 0, 12_000)
    assert await p.truncate_stream("long", 11_001) == 11_000  # many short transactions
    info = await m.get_stream_info("long")
    assert (info.version, info.event_count, info.first_version) == (12_000, 1000, 11_001)
    assert await p.truncate_stream("long", 11_001) == 0
    assert await p.truncate_stream("long", 5) == 0


def tiny_batches(p: Any, monkeypatch: pytest.MonkeyPatch, between: Callable[[], Any]) -> None:
    """Every retention transaction of ``p`` deletes at most 8 events; ``between()`` runs after each one."""
    from eventsource_postgres import retention

    monkeypatch.setattr(retention, "BATCH", 8)
    ret = p._retention
    ret.batches.size = 8
    batch = ret._batch

    async def then(operation: str, fn: Any) -> tuple[int, bool]:
        result = await batch(operation, fn)
        await between()
        return result

    monkeypatch.setattr(ret, "_batch", then)


async def test_truncate_if_holds_stops_at_a_stream_created_again_between_batches(
    aged: AgedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``if_holds`` is checked in every batch: the new incarnation's events (same versions) are never deleted."""
    p, m = aged.provider, aged.manager
    await aged.fill("s", 0, 40)
    ids = {e.version: e.event_id async for e in m.read_stream("s")}
    again: list[str] = []

    async def between() -> None:
        if not again:  # another process deletes the stream and starts it again, between the run's transactions
            again.append("s")
            await m.delete_stream("s")
            await aged.fill("s", 100, 140)

    tiny_batches(p, monkeypatch, between)
    assert await p.truncate_stream("s", 30, if_holds=(40, ids[40])) == 8  # the first batch only
    assert [e.version async for e in m.read_stream("s")] == list(range(1, 41))
    info = await m.get_stream_info("s")
    assert (info.version, info.event_count, info.first_version) == (40, 40, 1)


async def test_truncate_if_holds_past_its_own_event_checks_the_streams_last_event(
    aged: AgedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run deleting the event it was guarded by goes on (guarded by the last event), and still stops at a
    stream created again after that batch."""
    p, m = aged.provider, aged.manager
    await aged.fill("s", 0, 50)
    await aged.fill("t", 0, 50)
    ids = {e.version: e.event_id async for e in m.read_stream("s")}
    again: list[str] = []
    batches: list[str] = []

    async def between() -> None:
        batches.append("done")
        if again and len(batches) == 4:  # version 20 went in the third batch (17..24)
            await m.delete_stream(again[0])
            await aged.fill(again[0], 100, 150)

    tiny_batches(p, monkeypatch, between)
    assert await p.truncate_stream("s", 40, if_holds=(20, ids[20])) == 39
    assert [e.version async for e in m.read_stream("s")][:2] == [40, 41]
    ids = {e.version: e.event_id async for e in m.read_stream("t")}
    batches.clear()
    again.append("t")
    assert await p.truncate_stream("t", 40, if_holds=(20, ids[20])) == 4 * 8
    assert [e.version async for e in m.read_stream("t")] == list(range(1, 51))


async def test_retention_is_many_short_transactions_that_writers_get_between(aged: AgedStore) -> None:
    p, m = aged.provider, aged.manager
    await aged.fill("old", 0, 20_000)
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
        deleted = await p.delete_events_before(aged.at(19_500))
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
    assert await p.delete_events_before(aged.at(19_500)) == 0


async def test_max_count_over_many_streams_a_few_events_over_pauses_for_its_work_not_per_stream(
    make_provider: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsource_postgres import retention

    p = await make_provider()
    m = await manager_on(p)
    for i in range(100):
        await m.append_events_batch(stream_id=f"s{i:03d}", events=[EventData("T", {}) for _ in range(3)])
    pauses = record_pauses(monkeypatch, retention)
    report = await m.apply_retention(policies=[{"policy": "max_count", "max_events": 1}])
    assert report.deleted() == 200
    # each stream's one transaction deletes 2 events where a full batch deletes 64 or more: it owes 1/32 of
    # a full batch's pause, paid once the debt reaches a quantum (was: a pause twice its time, per stream)
    assert len(pauses) <= 25
    for i in range(100):
        assert (await m.get_stream_info(f"s{i:03d}")).event_count == 1


async def until_blocked(url: str, pid: int, run: asyncio.Task[Any]) -> None:
    """Return once a backend waits on backend ``pid`` (or ``run`` ended first)."""
    while not run.done():
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
            cur = await look.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))", [pid]
            )
            if (await cur.fetchone())[0]:  # type: ignore[index]
                return
        await asyncio.sleep(0.01)


async def test_a_stream_run_that_loses_events_to_another_run_still_deletes_to_its_cutoff(
    aged: AgedStore, url: str
) -> None:
    p, m = aged.provider, aged.manager
    await aged.fill("s", 0, 300)
    n = p.names
    async with await psycopg.AsyncConnection.connect(url) as other:  # another run, mid-batch: its rows locked
        await other.execute(f"DELETE FROM {n.events} WHERE stream_id = 's' AND version <= 10")
        await other.execute(
            f"UPDATE {n.streams} SET event_count = event_count - 10, first_version = 11 WHERE stream_id = 's'"
        )
        run = asyncio.create_task(p.delete_events_before(aged.at(200), stream_id="s"))
        pid = (await (await other.execute("SELECT pg_backend_pid()")).fetchone())[0]  # type: ignore[index]
        await until_blocked(url, pid, run)  # the run's first batch waits on the rows this transaction deleted
        await other.commit()
    deleted = await run
    assert deleted == 190  # versions 11..200: the other run's 10 were not this run's to count
    info = await m.get_stream_info("s")
    assert (info.event_count, info.first_version) == (100, 201)


async def test_a_run_cancelled_inside_a_batch_keeps_the_store_exact_and_the_next_run_finishes(
    aged: AgedStore, url: str
) -> None:
    p, m = aged.provider, aged.manager
    for s in ("a", "b"):
        await aged.fill(s, 0, 500)
    assert await p.truncate_stream("a", 3) == 2  # another run before: a's streams row moved on once
    n = p.names
    async with await psycopg.AsyncConnection.connect(url) as other:
        await other.execute(f"SELECT 1 FROM {n.streams} WHERE stream_id = 'a' FOR UPDATE")
        pid = (await (await other.execute("SELECT pg_backend_pid()")).fetchone())[0]  # type: ignore[index]
        run = asyncio.create_task(p.delete_events_before(aged.at(400)))
        await until_blocked(url, pid, run)  # its recount waits on the streams row held here
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
    assert await p.delete_events_before(aged.at(400)) == 398 + 400  # nothing of the cancelled one kept
    for s in ("a", "b"):
        info = await m.get_stream_info(s)
        assert (info.event_count, info.first_version) == (100, 401)
    assert await p.delete_events_before(aged.at(400)) == 0


async def test_retention_runs_at_once_from_two_providers_delete_each_event_once(
    aged: AgedStore, make_provider: Callable[..., Any]
) -> None:
    p, m = aged.provider, aged.manager
    q = await make_provider(schema=p.names.schema)  # another process's provider on the same store
    for s in ("a", "b", "c"):
        await aged.fill(s, 0, 2000)
    cutoff = aged.at(1500)
    counts = await asyncio.gather(
        p.delete_events_before(cutoff),
        q.delete_events_before(cutoff),
        q.delete_events_before(aged.at(1800), stream_id="b"),
    )
    assert counts[0] + counts[1] + counts[2] == 3 * 1500 + 300  # each event counted by the one run that deleted it
    for s, first in (("a", 1501), ("b", 1801), ("c", 1501)):
        info = await m.get_stream_info(s)
        assert (info.event_count, info.first_version) == (2001 - first, first)


async def test_cursor_pages_keep_one_cached_plan_on_a_big_store(make_provider: Callable[..., Any], admin: Any) -> None:
    # 300,000 events: enough that a bound LIMIT and OFFSET make the generic plan look dearer than planning each call
    # (the planner guesses 10% of the matches for each), which the server then did on every page, on this store only
    p = await make_provider(pool_min_size=1, pool_max_size=1)  # one session: its prepared statements are the ones read
    m = await manager_on(p)
    n, names = 300_000, p.names
    await admin.execute(
        f"INSERT INTO {names.events} (event_id, stream_id, event_type, version, position, data, metadata, encoding, "
        "ts, tenant_id) SELECT 'e-' || g, 's-' || lpad((g % 1000)::text, 4, '0'), 'T' || (g % 5), g / 1000 + 1, "
        "g + 1, '\\x7b7d', '\\x7b7d', 'json', now() + g * interval '1 second', 't' || (g % 100) "
        f"FROM generate_series(0, {n} - 1) AS g"
    )
    await admin.execute(
        f"INSERT INTO {names.streams} (stream_id, version, event_count, created_at, updated_at, first_version) "
        f"SELECT stream_id, max(version), count(*), now(), now(), 1 FROM {names.events} GROUP BY stream_id"
    )
    await admin.execute(f"ANALYZE {names.events}")
    await admin.execute(f"ANALYZE {names.streams}")
    deep = n * 9 // 10  # event g has position g + 1, type T{g % 5}, tenant t{g % 100}
    pages: dict[str, tuple[Any, list[int]]] = {
        "ORDER BY position ASC": (lambda: m.get_events(limit=10, after_position=deep, count="none"), [1, 2, 3]),
        "ORDER BY position DESC": (
            lambda: m.get_events(limit=10, after_position=deep, sort_order="desc", count="none"),
            [-1, -2, -3],
        ),
        "ORDER BY event_type, position": (
            lambda: m.get_events(event_types=["T3"], limit=10, after_position=deep, count="none"),
            [4, 9, 14],
        ),
        "ORDER BY tenant_id, position": (
            lambda: m.get_events(tenant_id="t7", limit=10, after_position=deep, count="none"),
            [8, 108, 208],
        ),
        "ORDER BY event_type DESC, position DESC": (
            lambda: m.get_events(event_types=["T3"], limit=10, after_position=deep, sort_order="desc", count="none"),
            [-1, -6, -11],
        ),
    }
    for tail, (call, first) in pages.items():
        # the text is prepared from its sixth run (prepare_threshold 5: a literal LIMIT makes each page size a
        # text of its own), then the server plans the first five runs for their values and may cache a plan
        for _ in range(16):
            page = await call()
        assert [e.position - deep for e in page.events[:3]] == first, tail  # as the filter and the order say
        assert page.has_more
    for _ in range(16):
        streams = await m.list_streams(limit=10, after="s-0500")
    assert [s.stream_id for s in streams.streams] == [f"s-{i:04d}" for i in range(501, 511)]

    async def plans(conn: Any) -> list[tuple[str, int, int]]:
        cur = await conn.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return await cur.fetchall()

    by_tail = {s: (g, c) for s, g, c in await p._conn.call("plans", plans, retry=False)}
    for tail in [*pages, "ORDER BY stream_id"]:
        (generic, custom) = next(v for s, v in by_tail.items() if s.split(" LIMIT ")[0].endswith(tail))
        assert generic >= 3, (tail, generic, custom)  # the cached plan served the last calls, not a plan per call


async def test_cursor_pages_on_one_field_return_what_the_filter_says(
    make_provider: Callable[..., Any], admin: Any
) -> None:
    # the one-field cursor pages walk (field, position) between row bounds: NULLs, values that sort just
    # before or after the asked one (a prefix, a longer value) and every other value stay out, both ways
    p = await make_provider()
    m = await manager_on(p)
    values = ["v", "u", "w", "v ", "vv", None]
    await admin.execute(
        f"INSERT INTO {p.names.events} (event_id, stream_id, event_type, version, position, data, metadata, encoding, "
        "ts, tenant_id, correlation_id, aggregate_id, aggregate_type) SELECT 'e-' || g, 's-' || (g %% 7), "
        "coalesce(v, 'x'), g / 7 + 1, g + 1, '\\x7b7d', '\\x7b7d', 'json', now(), v, v, v, v "
        "FROM generate_series(0, 299) AS g, LATERAL (SELECT (%s::text[])[1 + (g * 7 + g / 6) %% 6] AS v) AS pick",
        [values],
    )
    every = (await m.get_events(limit=1000)).events
    assert len(every) == 300
    fields = ("tenant_id", "correlation_id", "aggregate_id", "aggregate_type")
    for kw in [{"event_types": ["v"]}, *({f: "v"} for f in fields)]:
        field, value = next(iter(kw.items()))
        want = [e.position for e in every if getattr(e, "event_type" if field == "event_types" else field) == "v"]
        assert 40 < len(want) < 60, value
        for order in ("asc", "desc"):
            got = await page_through(m, 7, order, kw)
            assert got == (want if order == "asc" else want[::-1]), (field, order)


async def test_cursor_pages_of_many_sizes_leave_the_hot_statements_prepared(
    make_provider: Callable[..., Any], admin: Any
) -> None:
    # a cursor page's LIMIT is a literal, so each page size is a statement of its own; prepared on first use,
    # a caller that asks a new size each call would fill psycopg's 100 prepared statements of the session and
    # evict (DEALLOCATE) the ones every other call uses, with two extra round trips a page
    p = await make_provider(pool_min_size=1, pool_max_size=1)  # one session: its prepared statements are the ones read
    m = await manager_on(p)
    await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {}, "tenant_id": "t"}] * 30)
    for _ in range(8):
        await m.get_stream_info("s")

    async def prepared(conn: Any) -> list[str]:
        cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
        return [r[0] for r in await cur.fetchall()]

    hot = set(await p._conn.call("prepared", prepared, retry=False))
    for size in range(1, 151):
        # descending: no horizon, so a transaction running elsewhere on the server holds back nothing here
        page = await m.get_events(tenant_id="t", limit=size, after_position=2**62, sort_order="desc", count="none")
        assert len(page.events) == min(size, 30)
        streams = await m.list_streams(limit=size, after="r")
        assert [s.stream_id for s in streams.streams] == ["s"]
    now = set(await p._conn.call("prepared", prepared, retry=False))
    assert hot <= now, hot - now  # nothing the session used before was evicted
    assert len(now - hot) < 10, len(now)  # the one-off page sizes were not prepared


async def test_one_field_cursor_pages_return_what_equality_says_under_any_collation(
    make_provider: Callable[..., Any], admin: Any
) -> None:
    # the row bounds (f, position) > (v, cursor) and < (v, horizon) hold exactly the rows where f = v: also
    # where the column's collation sorts case and accents apart from code points (ICU), or calls texts that
    # differ equal (a nondeterministic collation, which the same `=` honours)
    values = ["v", "V", "v\u0301", "\u1e7d", "v%", "v_", "v'", "v\\", "v ", " v", "vv", "u\uffff", "w", "v\U0001f600"]
    for name in ('"C"', '"en-x-icu"', "ci"):
        p = await make_provider()
        m = await manager_on(p)
        events, collation = p.names.events, name if name != "ci" else f"{p.names.schema}.ci"
        if name == "ci":
            icu = "provider = icu, locale = 'und-u-ks-level2', deterministic = false"
            await admin.execute(f"CREATE COLLATION {collation} ({icu})")
        for col in ("event_type", "tenant_id"):
            await admin.execute(f"ALTER TABLE {events} ALTER COLUMN {col} TYPE text COLLATE {collation}")
        await admin.execute(
            f"INSERT INTO {events} (event_id, stream_id, event_type, version, position, data, metadata, encoding, "
            "ts, tenant_id) SELECT 'e-' || g, 's-' || (g %% 7), v, g / 7 + 1, g + 1, '\\x7b7d', '\\x7b7d', 'json', "
            "now(), v FROM generate_series(0, 279) AS g, "
            "LATERAL (SELECT (%s::text[])[1 + (g * 5 + g / 14) %% 14] AS v) AS pick",
            [values],
        )
        for v in values:
            cur = await admin.execute(f"SELECT position FROM {events} WHERE tenant_id = %s ORDER BY 1", [v])
            want = [r[0] for r in await cur.fetchall()]
            assert want, v
            for kw in ({"event_types": [v]}, {"tenant_id": v}):
                for order in ("asc", "desc"):
                    got = await page_through(m, 5, order, kw)
                    assert got == (want if order == "asc" else want[::-1]), (collation, v, kw, order)


def test_a_slow_batch_of_a_few_events_does_not_shrink_the_next() -> None:
    from eventsource_postgres.retention import BATCH_SECONDS, Batches

    sizes = Batches(64)
    sizes.took(BATCH_SECONDS * 3, 2)  # one stream's 2 events: the time is its round trips
    assert sizes.size == 64
    sizes.took(BATCH_SECONDS * 3, 64)
    assert sizes.size == 32


async def paced_run(monkeypatch: pytest.MonkeyPatch, batches: list[tuple[int, float]]) -> float:
    """Run a Retention's ``_batch`` on a clock of its own: each (deleted, seconds) a batch of 8; the pause owed."""
    from eventsource.pacing import Pacer
    from eventsource_postgres import retention

    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(retention, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(retention, "asyncio", types.SimpleNamespace(sleep=sleep))
    r = retention.Retention(None, None)  # type: ignore[arg-type] - _run is replaced: no connection is used
    r.pacer = Pacer(retention.PAUSE, retention.PAUSE * retention.BATCH_SECONDS / 2, clock=lambda: clock[0])
    r.batches = retention.Batches(8)
    todo = iter(batches)

    async def run(operation: str, fn: Any) -> tuple[int, bool]:
        n, seconds = next(todo)
        clock[0] += seconds
        return n, False

    monkeypatch.setattr(r, "_run", run)
    for _ in batches:
        await r._batch("delete_events_before", None)  # type: ignore[arg-type]
    return sum(slept) + r.pacer.owed


async def test_transactions_that_are_mostly_round_trips_owe_a_pause_for_their_work_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a busy machine: 8 events take as long as the fixed part of any transaction, whatever they delete
    # (was: a pause twice each one's time, so the run deleted a third as fast for nothing writers need)
    from eventsource_postgres.retention import BATCH_SECONDS, LEAST_WORK, PAUSE

    fixed = BATCH_SECONDS * 0.75
    owed = await paced_run(monkeypatch, [(8, fixed)] * 200)
    assert owed == pytest.approx(PAUSE * fixed * 200 * LEAST_WORK)  # (at least that: see LEAST_WORK)


async def test_transactions_owe_pauses_for_their_work_beyond_the_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    from eventsource_postgres.retention import BATCH_SECONDS, LEAST_WORK, PAUSE

    fixed = BATCH_SECONDS * 0.75
    learn = [(8, fixed)] * 5
    owed = await paced_run(monkeypatch, [*learn, *[(5000, fixed * 2)] * 20])  # half of each is work
    assert owed == pytest.approx(PAUSE * fixed * (5 * LEAST_WORK + 20))
    # batches all small and all slow (a lock wait, costly events): still a share of their pause each
    assert await paced_run(monkeypatch, [(8, fixed * 10)] * 50) == pytest.approx(PAUSE * fixed * 10 * 50 * LEAST_WORK)
