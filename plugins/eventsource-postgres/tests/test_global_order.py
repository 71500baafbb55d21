"""The global order: a reader following read_all never skips a transaction that commits late.

A position is (transaction id << 20) + index; read_all yields only rows whose transaction id is below
pg_snapshot_xmin, the oldest transaction still running. These tests hold transactions open on raw
connections, exactly where the provider's own append would be between its writes and its commit.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
from conftest import manager_on
from eventsource.model import ANY, NewEvent, utcnow

if TYPE_CHECKING:
    from eventsource_postgres import PostgresProvider


def new_event(tag: str = "E") -> NewEvent:
    return NewEvent(str(uuid.uuid4()), tag, b'{"k": 1}', b"", "json", utcnow())


async def open_append(
    url: str, p: PostgresProvider, stream_id: str, n: int = 1
) -> tuple[psycopg.AsyncConnection[Any], list[int], list[str]]:
    """Run the provider's append statement inside a transaction that is left open (not committed)."""
    conn = await psycopg.AsyncConnection.connect(url)  # autocommit off: the transaction stays open
    events = [new_event(stream_id) for _ in range(n)]
    cur = await conn.execute(*p._appender.statement(stream_id, events, ANY, None))
    row = await cur.fetchone()
    assert row is not None
    return conn, [row[1] + i for i in range(n)], [e.event_id for e in events]


async def follow(p: PostgresProvider, nxt: int, out: list[Any]) -> int:
    async for e in p.read_all(from_position=nxt, page_size=7):
        out.append(e)
        nxt = e.position + 1
    return nxt


async def catch_up(p: PostgresProvider, nxt: int, out: list[Any], count: int) -> int:
    """Follow until ``out`` holds ``count`` events (at most 30 s).

    These tests give read_all a short ``visibility_wait`` to see it hold back; but xmin is
    server-wide, so any other session's open transaction (autovacuum, another suite) can hold the
    tail back longer than that. The final reads poll the way a follower does, instead of trusting
    one pass to see everything.
    """
    deadline = time.monotonic() + 30
    while True:
        nxt = await follow(p, nxt, out)
        if len(out) >= count or time.monotonic() > deadline:
            return nxt
        await asyncio.sleep(0.05)


async def test_late_committing_writer_is_never_skipped(
    make_provider: Callable[..., Any], url: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    p = await make_provider(visibility_wait=0.2)
    seen: list[Any] = []
    nxt = await follow(p, 0, seen)
    assert seen == []

    late_conn, late_positions, late_ids = await open_append(url, p, "late")
    try:
        early = await p.append("early", [new_event()], ANY)
        # the hazard is real here: a committed event sorts after one that has not committed yet
        assert early.positions[0] > late_positions[0]
        cur = await admin.execute(f"SELECT position FROM {p.names.events} ORDER BY position")
        assert [r[0] for r in await cur.fetchall()] == [early.positions[0]], "a naive reader would pass the late one"

        nxt = await follow(p, nxt, seen)
        assert seen == [], "the reader must hold back until the older transaction ends"
        await late_conn.commit()
    finally:
        await late_conn.close()

    nxt = await catch_up(p, nxt, seen, len(late_ids) + 1)
    assert [e.event_id for e in seen] == [*late_ids, early.event_ids[0]]
    assert [e.position for e in seen] == sorted(e.position for e in seen)
    assert await follow(p, nxt, seen) == nxt


async def test_a_rolled_back_transaction_releases_the_reader(make_provider: Callable[..., Any], url: str) -> None:
    p = await make_provider(visibility_wait=0.2)
    conn, _, _ = await open_append(url, p, "doomed")
    try:
        kept = await p.append("kept", [new_event()], ANY)
        assert [e async for e in p.read_all()] == []
        await conn.rollback()
    finally:
        await conn.close()
    seen: list[Any] = []
    await catch_up(p, 0, seen, 1)
    assert [e.event_id for e in seen] == list(kept.event_ids)


async def test_read_all_waits_briefly_for_a_commit_in_flight(make_provider: Callable[..., Any], url: str) -> None:
    """A one-shot read_all that meets a held-back tail waits for the older transaction (bounded)."""
    p = await make_provider(visibility_wait=30)
    conn, _, late_ids = await open_append(url, p, "late")
    early = await p.append("early", [new_event()], ANY)

    async def commit_soon() -> None:
        await asyncio.sleep(0.2)
        await conn.commit()

    committer = asyncio.create_task(commit_soon())
    got = [e.event_id async for e in p.read_all()]
    await committer
    await conn.close()
    assert got == [*late_ids, early.event_ids[0]]


async def test_followers_never_skip_under_randomly_late_commits(make_provider: Callable[..., Any], url: str) -> None:
    p = await make_provider(visibility_wait=0.05, pool_max_size=6)
    writers, per_writer = 8, 12
    written: list[str] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        rng = random.Random(w)
        conn = await psycopg.AsyncConnection.connect(url)
        try:
            for i in range(per_writer):
                if i % 3 == 0:  # through the provider
                    r = await p.append(f"w{w}", [new_event(), new_event()], ANY)
                    written.extend(r.event_ids)
                    continue
                events = [new_event() for _ in range(rng.randint(1, 3))]
                cur = await conn.execute(*p._appender.statement(f"w{w}", events, ANY, None))
                assert await cur.fetchone() is not None
                await asyncio.sleep(rng.random() * 0.02)  # commit late, while others commit and readers read
                await conn.commit()
                written.extend(e.event_id for e in events)
        finally:
            await conn.close()

    seen: list[Any] = []

    async def follower() -> int:
        nxt = 0
        while True:
            finished = done.is_set()
            nxt = await follow(p, nxt, seen)
            if finished:
                return nxt
            await asyncio.sleep(0.003)

    f = asyncio.create_task(follower())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    nxt = await asyncio.wait_for(f, timeout=60)
    await catch_up(p, nxt, seen, len(written))
    ids = [e.event_id for e in seen]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert sorted(ids) == sorted(written), "the follower skipped an event"
    positions = [e.position for e in seen]
    assert positions == sorted(positions)
    for w in range(writers):  # per stream, the global order is the version order
        versions = [e.version for e in seen if e.stream_id == f"w{w}"]
        assert versions == list(range(1, len(versions) + 1))


async def test_position_order_follows_version_order_on_a_contended_stream(make_provider: Callable[..., Any]) -> None:
    p = await make_provider(pool_max_size=8)
    await asyncio.gather(*(p.append("hot", [new_event()], ANY) for _ in range(80)))
    by_position = [e.version async for e in p.read_all()]
    assert by_position == list(range(1, 81))


async def test_an_open_transaction_does_not_block_writers_on_other_streams(
    make_provider: Callable[..., Any], url: str
) -> None:
    """No table lock: while one append's transaction is open, appends to other streams commit."""
    p = await make_provider()
    conn, _, _ = await open_append(url, p, "held")
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(p.append(f"free-{i}", [new_event()], ANY) for i in range(8))), timeout=30
        )
        assert all(r.first_version == 1 for r in results)
        # the same stream is serialized by its advisory lock: it waits for the open transaction
        same = asyncio.create_task(p.append("held", [new_event()], ANY))
        await asyncio.sleep(0.2)
        assert not same.done()
        await conn.commit()
        assert (await asyncio.wait_for(same, timeout=30)).first_version == 2
    finally:
        await conn.close()


async def test_paging_get_events_from_the_first_page_never_skips_a_late_commit(
    make_provider: Callable[..., Any], url: str
) -> None:
    """Review: the first ascending page over several streams (no cursor yet) was not held below the oldest running
    transaction, as cursor pages are: it handed out events committed above a still-open append, and its
    ``next_cursor`` then passed that append's position, so paging on by ``next_cursor`` never returned its events."""
    p = await make_provider(visibility_wait=0.2)
    m = await manager_on(p)
    conn, _, late_ids = await open_append(url, p, "late")
    try:
        early = [await p.append(f"early-{i}", [new_event()], ANY) for i in range(2)]
        first = await m.get_events(limit=1)
        await conn.commit()
    finally:
        await conn.close()
    seen = [e.event_id for e in first.events]
    cursor = first.events[-1].position if first.events else None
    deadline = time.monotonic() + 30  # (another session's open transaction may hold the tail back a while)
    while len(seen) < 3 and time.monotonic() < deadline:
        page = await m.get_events(limit=1, after_position=cursor)
        seen += [e.event_id for e in page.events]
        cursor = page.events[-1].position if page.events else cursor
        if not page.events:
            await asyncio.sleep(0.05)
    assert seen == [*late_ids, *(r.event_ids[0] for r in early)]
