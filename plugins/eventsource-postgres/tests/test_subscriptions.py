"""The kit's SubscriptionSuite on PostgreSQL, polling and with LISTEN/NOTIFY, plus a late commit held open
across the 8 writers and a LISTEN connection killed under a waiting subscription."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.checkpoints.base import CheckpointBehindError
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.testing.subscriptions import SubscriptionSuite, take
from eventsource_postgres.checkpoints import PostgresCheckpointStore

if TYPE_CHECKING:
    from eventsource.checkpoints import CheckpointStore
    from eventsource.provider import Provider
    from eventsource_postgres import PostgresProvider


class TestPostgresSubscriptions(SubscriptionSuite):
    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()

    @pytest.fixture
    async def checkpoint_store(self, url: str) -> AsyncIterator[CheckpointStore]:
        schema = f"cp_{uuid.uuid4().hex[:16]}"
        store = PostgresCheckpointStore(url, schema=schema)
        await store.connect()
        yield store
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    @contextlib.asynccontextmanager
    async def late_commit(self, provider: Provider, stream_id: str) -> AsyncIterator[Any]:
        """The provider's own append statement in a transaction held open for the block."""
        p: Any = provider
        conn = await psycopg.AsyncConnection.connect(p.url)  # autocommit off: the transaction stays open
        try:
            event = NewEvent(str(uuid.uuid4()), "Late", b'{"n": -1}', b"", "json", utcnow())
            await conn.execute(*p._appender.statement(stream_id, [event], ANY, None))
            yield
            await conn.commit()
        finally:
            await conn.close()


class TestPostgresSubscriptionsWithNotify(TestPostgresSubscriptions):
    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider(live_notify=True)


async def test_a_killed_listen_connection_is_reopened_and_wakes_the_subscription(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any]
) -> None:
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    p = await make_provider(live_notify=True)
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="pg", default=True)
    async with m.subscribe(poll_interval=600) as sub:  # no poll within the test: only a wake-up delivers
        first = asyncio.create_task(take(sub, 1))
        await asyncio.wait_for(p._live.listening.wait(), 60)
        await m.append_event(stream_id="a", event_type="T", data={"n": 1})
        assert [e.data["n"] for e in await first] == [1]
        cur = await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' AND query LIKE %s",
            (f"%{p._live.channel}%",),
        )
        assert [r[0] for r in await cur.fetchall()] == [True]
        second = asyncio.create_task(take(sub, 1))
        await m.append_event(stream_id="a", event_type="T", data={"n": 2})  # may be sent while nobody listens
        assert [e.data["n"] for e in await second] == [2]
        await asyncio.wait_for(p._live.listening.wait(), 60)  # LISTEN again on a new connection
        third = asyncio.create_task(take(sub, 1))
        await m.append_event(stream_id="a", event_type="T", data={"n": 3})
        assert [e.data["n"] for e in await third] == [3]


async def test_an_append_through_the_provider_wakes_its_own_subscriptions_without_a_probe(
    make_provider: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    p = await make_provider()
    other = await make_provider(schema=p.names.schema)  # another instance on the store: as another process

    async def deaf_probe(_after: int) -> bool:
        return False  # only the in-process wake-up can end a wait now

    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="pg", default=True)
    await m.register_provider(other, name="other")
    monkeypatch.setattr(p._live, "_has_after", deaf_probe)
    async with m.subscribe(poll_interval=600) as sub:  # no poll within the test: only a wake-up delivers
        waiting = asyncio.create_task(take(sub, 1))
        await asyncio.sleep(0.1)  # let it reach the wait
        res = await m.append_event(stream_id="a", event_type="T", data={"n": 1})
        assert [e.event_id for e in await waiting] == [res.event_id]
    monkeypatch.undo()
    async with m.subscribe(from_position=res.position + 1, poll_interval=600) as sub:  # probed, not signalled
        waiting = asyncio.create_task(take(sub, 1))
        await asyncio.sleep(0.1)
        res = await m.append_event(stream_id="a", event_type="T", data={"n": 2}, provider="other")
        assert [e.event_id for e in await waiting] == [res.event_id]


async def test_an_append_cancelled_after_its_commit_still_wakes_its_own_subscriptions(
    make_provider: Callable[..., Any], url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read-your-writes reads the primary's WAL position after the commit: the append is cancelled while
    # that read waits for the pool's one connection (held by the test), so it has committed but never
    # returned; a subscription's wait must still end now, not at the next probe or poll
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    p = await make_provider(read_url=url, read_your_writes=True, pool_max_size=1)
    pool = p._conn.pool
    assert pool is not None

    async def deaf_probe(_after: int) -> bool:
        return False  # only the in-process wake-up can end a wait now

    async def requests_waiting(n: int) -> None:
        while pool.get_stats().get("requests_waiting", 0) != n:  # noqa: ASYNC110 - the pool has no such event
            await asyncio.sleep(0.005)

    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="pg", default=True)
    monkeypatch.setattr(p._live, "_has_after", deaf_probe)
    # what a live subscription waits on between reads (waited on directly: a read the wake-up starts may
    # be held back by another suite's open transaction on the shared server, which is not this test's point)
    waiting = asyncio.create_task(p.wait_for_change(0, 600))
    while not p._live.signal._waiters:  # noqa: ASYNC110 - the signal has no event saying someone waits
        await asyncio.sleep(0.005)
    holder = await psycopg.AsyncConnection.connect(url)  # holds the stream's lock in an open transaction
    try:
        late = NewEvent(str(uuid.uuid4()), "Late", b'{"n": 0}', b"", "json", utcnow())
        await holder.execute(*p._appender.statement("a", [late], ANY, None))
        append = asyncio.create_task(m.append_event(stream_id="a", event_type="T", data={"n": 1}))
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            name = p._conn.settings["application_name"]
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
            while (await (await admin.execute(query, (name,))).fetchone()) != (1,):  # type: ignore[union-attr]  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # until the append holds the pool's connection, waiting for the lock
        taken, release = asyncio.Event(), asyncio.Event()

        async def block_the_pool() -> None:
            async with pool.connection():  # queued behind the append: gets the connection it gives back
                taken.set()
                await release.wait()

        blocker = asyncio.create_task(block_the_pool())
        await requests_waiting(1)  # queued behind the append
        await holder.commit()  # the subscription's wait goes on: the signal is this process's appends only
    finally:
        await holder.close()
    await asyncio.wait_for(taken.wait(), 60)  # the append committed and gave its connection back
    await requests_waiting(1)  # ... and now waits for one again, to read the WAL position
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    release.set()
    await blocker
    info = await p.get_stream_info("a")
    assert info is not None
    assert info.version == 2  # the cancelled append had committed
    # the probe is deaf and the wait's bound is 600 s: a wait that ended at all ended by the wake-up
    await asyncio.wait_for(waiting, 60)


def test_sync_subscribe_from_end_delivers_an_append_whose_transaction_was_open_at_the_start(url: str) -> None:
    """Two real connections: one holds a transaction that inserted an event; the end is taken meanwhile."""
    from eventsource.sync import SyncEventSourcingManager

    schema = f"es_{uuid.uuid4().hex[:16]}"
    es = SyncEventSourcingManager({"providers": {"pg": {"url": url, "settings": {"schema": schema}}}})
    es.connect()
    try:
        p: Any = es.get_provider()
        es.append_event(stream_id="x-before", event_type="T", data={"n": 0})
        with psycopg.connect(url) as held:  # autocommit off: the transaction stays open
            event = NewEvent(str(uuid.uuid4()), "Late", b'{"n": -1}', b"", "json", utcnow())
            row = held.execute(*p._appender.statement("y-late", [event], ANY, None)).fetchone()
            late_position = row[1]
            between = es.append_event(stream_id="y-between", event_type="T", data={"n": 0})  # above it, committed
            with psycopg.connect(url, autocommit=True) as look:  # the head, as head_position() takes it
                head = look.execute("SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint << 20) - 1")
                head_position = head.fetchone()[0]  # type: ignore[index]
            sub = es.subscribe(stream_prefix="y-", from_position="end", poll_interval=0.5).start()
            # the start is the safe horizon, at or below the open transaction's position; "after the head"
            # (what follow --from end used to take) was above it, and so skipped the late commit for good
            assert sub.subscription.position < late_position < between.position <= head_position
            held.commit()
        after = es.append_event(stream_id="y-after", event_type="T", data={"n": 1})
        got: list[Any] = []
        with sub:
            reader = threading.Thread(target=lambda: got.extend(next(sub) for _ in range(3)), daemon=True)
            reader.start()
            reader.join(60)
        # "between" committed before the start, but while an older transaction ran: the horizon includes it
        assert [e.event_id for e in got] == [event.event_id, between.event_id, after.event_id]
    finally:
        es.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_position_ahead_of_the_server_is_refused(make_provider: Callable[..., Any]) -> None:
    """After an asynchronous failover the new primary's xids restart below a lost checkpoint's position."""
    p = await make_provider()
    head = await p.head_position()
    res = await p.append("s", [NewEvent(str(uuid.uuid4()), "T", b"{}", b"", "json", utcnow())], ANY)
    assert res.positions[0] <= await p.head_position()
    assert head < await p.head_position()


async def test_checkpoint_store_is_registered_and_refuses_to_move_back(url: str) -> None:
    from eventsource.checkpoints import Checkpoint
    from eventsource.plugins import PluginHost

    host = PluginHost()  # entry points: the installed plugin registers it
    schema = f"cp_{uuid.uuid4().hex[:16]}"
    assert isinstance(host.create_checkpoint_store(url), PostgresCheckpointStore)
    store = PostgresCheckpointStore(url, schema=schema)
    try:
        await store.connect()
        await store.put(Checkpoint("n", "src", "all", 10))
        results = await asyncio.gather(
            *(store.put(Checkpoint("n", "src", "all", p)) for p in (5, 20, 15)), return_exceptions=True
        )
        assert sum(isinstance(r, CheckpointBehindError) for r in results) >= 1
        got = await store.get("n", "src")
        assert got is not None and got.position == 20
        assert await store.delete("n", "src") is True
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_two_first_commits_racing_never_move_the_checkpoint_back(url: str) -> None:
    # SELECT ... FOR UPDATE locks nothing while the row does not exist yet: two first puts both saw no
    # checkpoint, and the later INSERT ... ON CONFLICT DO UPDATE overwrote the higher position with a lower.
    from eventsource.checkpoints import Checkpoint

    schema = f"cp_{uuid.uuid4().hex[:16]}"
    store = PostgresCheckpointStore(url, schema=schema)
    try:
        await store.connect()
        async with await psycopg.AsyncConnection.connect(url) as other:  # the other subscription, mid-put
            await other.execute(
                f'INSERT INTO "{schema}"."checkpoints" (name, source, scope, position, updated_at) '
                "VALUES ('n', 'src', 'all', 100, now())"
            )
            lower = asyncio.create_task(store.put(Checkpoint("n", "src", "all", 50)))
            await asyncio.sleep(0.5)  # it has looked (no row yet) and waits on the unique index
            await other.commit()
        with contextlib.suppress(CheckpointBehindError):
            await asyncio.wait_for(lower, 10)
        got = await store.get("n", "src")
        assert got is not None and got.position == 100, f"checkpoint moved back to {got}"
    finally:
        await store.close()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
