"""Subscriptions and checkpoints: the kit's SubscriptionSuite on memory and SQLite, plus core-only checks
(checkpoint stores as plugins, argument validation, the sync API, a commit seen from another process)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import eventsource
import pytest
from eventsource.checkpoints import Checkpoint, CheckpointStore, MemoryCheckpointStore, SqliteCheckpointStore
from eventsource.checkpoints.base import CheckpointBehindError
from eventsource.errors import ConfigurationError, UnsupportedOperationError, ValidationError
from eventsource.manager import EventSourcingManager, _event_id
from eventsource.memory import MemoryProvider
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.plugins import PluginHost
from eventsource.provider import Capabilities, Provider
from eventsource.sqlite import SqliteProvider
from eventsource.subscriptions import EventDecodeError
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.subscriptions import SubscriptionSuite, take

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventsource.registry import CheckpointRegistry


class TestMemorySubscriptions(SubscriptionSuite):
    @pytest.fixture
    def provider(self, memory_provider: MemoryProvider) -> MemoryProvider:
        return memory_provider


class PollingMemoryProvider(MemoryProvider):
    """A store as docs/writing-a-provider.md allows one: neither ``head_position`` nor ``wait_for_change``."""

    capabilities = Capabilities(global_order="total", concurrency="in_process", cross_process_reads=False)
    head_position = Provider.head_position
    wait_for_change = Provider.wait_for_change


class TestPollingSubscriptions(SubscriptionSuite):
    """The guide: the kit skips, naming the capability, what such a store cannot run (three tests failed)."""

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = PollingMemoryProvider(f"memory://polling-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


class TestSqliteSubscriptions(SubscriptionSuite):
    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> SqliteProvider:
        return sqlite_provider

    @pytest.fixture
    async def checkpoint_store(self, tmp_path: Path) -> AsyncIterator[CheckpointStore]:
        store = SqliteCheckpointStore(f"sqlite:///{tmp_path}/checkpoints.db")
        await store.connect()
        yield store
        await store.close()


class PerStreamMemory(MemoryProvider):
    """A memory store declaring ``per_stream`` order, as Kafka does."""

    kind = "memory-per-stream"
    capabilities = Capabilities(global_order="per_stream", concurrency="in_process")


@pytest.fixture
async def manager() -> AsyncIterator[EventSourcingManager]:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(MemoryProvider(), name="m", default=True)
    yield m
    await m.close()


async def test_all_streams_on_a_per_stream_store_is_unsupported_naming_the_capability(
    manager: EventSourcingManager,
) -> None:
    await manager.register_provider(PerStreamMemory(), name="ps")
    with pytest.raises(UnsupportedOperationError, match="global_order=per_stream"):
        manager.subscribe(provider="ps")
    sub = manager.subscribe(stream_id="s", provider="ps")  # one stream has one order everywhere
    await manager.append_event(stream_id="s", event_type="T", data={}, provider="ps")
    async with sub:
        assert [e.version for e in await take(sub, 1)] == [1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"from_position": -1}, "from_position"),
        ({"from_position": "start"}, "from_position"),
        ({"stream_id": "s", "from_version": "END"}, "from_version"),
        ({"stream_id": "s", "event_types": ["T"]}, "stream_id"),
        ({"stream_prefix": [""]}, "stream_prefix"),
        ({"commit_every": 0, "checkpoint": "memory://", "name": "n"}, "commit_every"),
    ],
)
def test_bad_arguments_fail_at_subscribe(manager: EventSourcingManager, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        manager.subscribe(**kwargs)
    assert info.value.details["field"] == field


def test_a_checkpoint_store_needs_a_name_and_commit_every_needs_a_store(manager: EventSourcingManager) -> None:
    with pytest.raises(ConfigurationError):
        manager.subscribe(checkpoint="memory://")
    with pytest.raises(ConfigurationError):
        manager.subscribe(commit_every=3)


@pytest.mark.parametrize(
    "bad",
    [{"page_size": 0}, {"poll_interval": float("nan")}, {"from_position": "soon"}, {"on_decode_error": "ignore"}],
    ids=lambda bad: next(iter(bad)),
)
async def test_a_refused_subscribe_leaves_the_manager_as_it_was(manager: EventSourcingManager, bad: Any) -> None:
    """Bad arguments are a ValidationError before anything is built; the next subscribe on the manager works."""
    await manager.append_event(stream_id="s", event_type="T", data=1)
    with pytest.raises(ValidationError):
        manager.subscribe(**bad)
    assert not manager._subscriptions._open
    async with manager.subscribe(checkpoint="memory://", name="n") as sub:
        assert [e.data for e in await take(sub, 1)] == [1]
        await manager.append_event(stream_id="s", event_type="T", data=2)
        assert [e.data for e in await take(sub, 1)] == [2]


async def test_commit_without_a_store_or_of_an_undelivered_event_is_refused(manager: EventSourcingManager) -> None:
    res = await manager.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {}}] * 2)
    async with manager.subscribe(stream_id="s") as sub:
        first = (await take(sub, 1))[0]
        with pytest.raises(ConfigurationError):
            await sub.commit()
    async with manager.subscribe(stream_id="s", checkpoint="memory://", name="n") as sub:
        await take(sub, 1)
        later = await manager.get_event_by_id(res.event_ids[1])
        with pytest.raises(ValidationError):
            await sub.commit(later)
        assert (await sub.commit(first)).position == 1


async def test_checkpoint_stores_refuse_to_move_back_or_change_scope(tmp_path: Path) -> None:
    for store in (MemoryCheckpointStore(), SqliteCheckpointStore(f"sqlite:///{tmp_path}/c.db")):
        await store.connect()
        assert await store.get("n", "src") is None
        stored = await store.put(Checkpoint("n", "src", "all", 10))
        assert stored.updated_at is not None
        with pytest.raises(CheckpointBehindError):
            await store.put(Checkpoint("n", "src", "all", 9))
        with pytest.raises(CheckpointBehindError):
            await store.put(Checkpoint("n", "src", "stream:x", 11))
        assert (await store.put(Checkpoint("n", "src", "all", 3), force=True)).position == 3
        got = await store.get("n", "src")
        assert got is not None and (got.scope, got.position) == ("all", 3)
        assert await store.get("n", "other") is None
        with pytest.raises(ValidationError):
            await store.put(Checkpoint("", "src", "all", 1))
        assert await store.delete("n", "src") is True
        assert await store.delete("n", "src") is False
        await store.close()
    with pytest.raises(ConfigurationError):
        SqliteCheckpointStore("sqlite:///:memory:")


class FileCheckpoints(MemoryCheckpointStore):
    kind = "test-file"


class CheckpointPlugin:
    @eventsource.hookimpl
    def eventsource_register_checkpoint_stores(self, registry: CheckpointRegistry) -> None:
        registry.add(FileCheckpoints, schemes=("testfile",))


def test_checkpoint_stores_are_a_plugin_kind_picked_by_url_scheme() -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("cp", CheckpointPlugin())])
    assert {"memory", "sqlite", "test-file"} <= set(host.checkpoint_stores.names())
    assert isinstance(host.create_checkpoint_store("testfile://x"), FileCheckpoints)
    assert isinstance(host.create_checkpoint_store("memory://"), MemoryCheckpointStore)
    with pytest.raises(LookupError, match="no checkpoint store handles"):
        host.create_checkpoint_store("nope://x")


def test_sync_api_subscribes_and_crosses_a_page_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sync.db"
    with SyncEventSourcingManager({"providers": {"db": {"url": url}}, "default_provider": "db"}) as es:
        es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(5)])
        with es.subscribe(stream_id="s", checkpoint=f"sqlite:///{tmp_path}/cp.db", name="sync", page_size=2) as sub:
            it = iter(sub)
            assert [next(it).data["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
            done = threading.Event()

            def writer() -> None:
                es.append_event(stream_id="s", event_type="T", data={"n": 5})
                done.set()

            t = threading.Thread(target=writer)
            t.start()
            assert next(it).data["n"] == 5  # woken by the append made from another thread
            t.join(60)
            assert done.is_set()
            assert sub.commit().position == 6


def test_sync_api_subscribes_from_the_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/end.db"
    with SyncEventSourcingManager({"providers": {"db": {"url": url}}, "default_provider": "db"}) as es:
        es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(3)])
        with es.subscribe(from_position="end") as every, es.subscribe(stream_id="s", from_version="end") as one:
            assert (every.subscription.position, one.subscription.position) == (3, 3)
            es.append_event(stream_id="s", event_type="T", data={"n": 3})
            assert next(iter(every)).data["n"] == 3
            assert (next(iter(one)).version, one.subscription.position) == (4, 4)


class NoHead(MemoryProvider):
    """A store with one global order that cannot say its head position."""

    kind = "memory-no-head"

    async def head_position(self) -> None:  # type: ignore[override]
        return None


async def test_from_end_on_a_store_without_a_head_is_unsupported_naming_it(manager: EventSourcingManager) -> None:
    await manager.register_provider(NoHead(), name="nh")
    with pytest.raises(UnsupportedOperationError, match="cannot say where its end is") as info:
        await manager.subscribe(from_position="end", provider="nh").start()
    assert info.value.details["capability"] == "end_position"


WRITER = """
import asyncio, sys
from eventsource.sqlite import SqliteProvider
from eventsource.model import NewEvent, utcnow, ANY
async def main():
    p = SqliteProvider(sys.argv[1]); await p.connect()
    ev = NewEvent(event_id=sys.argv[2], event_type="T", data=b"{}", metadata=b"", encoding="json", timestamp=utcnow())
    await p.append("other-process", [ev], ANY); await p.close()
asyncio.run(main())
"""


async def test_sqlite_wakes_on_another_process_commit_through_data_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    p = await m.register_provider(SqliteProvider(url), name="db", default=True)
    try:
        woken = asyncio.Event()
        real = p.wait_for_change

        async def spy(after: int, max_wait: float) -> None:
            await real(after, max_wait)
            woken.set()

        p.wait_for_change = spy  # type: ignore[method-assign]
        async with m.subscribe(poll_interval=600) as sub:  # no poll within the test: only a wake-up delivers
            waiting = asyncio.create_task(take(sub, 1))
            await asyncio.sleep(0.05)
            eid = str(uuid.uuid4())
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, eid)
            assert await proc.wait() == 0
            got = await waiting
            assert woken.is_set()
        assert [e.event_id for e in got] == [eid]
    finally:
        await m.close()


async def test_closing_the_manager_ends_its_waiting_subscriptions() -> None:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(MemoryProvider(), name="m", default=True)
    sub = m.subscribe(poll_interval=600)
    waiting = asyncio.create_task(anext(sub))
    await asyncio.sleep(0.05)
    await m.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 60)
    assert sub.closed


async def test_next_batch_that_fails_to_decode_mid_batch_loses_nothing(manager: EventSourcingManager) -> None:
    # The events taken before the one that fails to decode were popped and counted as delivered; raising
    # dropped them, and commit() then stored a checkpoint past events the consumer never saw.
    store = MemoryCheckpointStore("memory://")
    p = manager.get_provider()
    await manager.append_events_batch(stream_id="dec-1", events=[eventsource.EventData("T", {"n": i}) for i in (1, 2)])
    bad = NewEvent(_event_id(), "T", b"?", b"", encoding="x-gone", timestamp=utcnow())
    await p.append("dec-1", [bad], ANY)
    await manager.append_events_batch(stream_id="dec-1", events=[eventsource.EventData("T", {"n": i}) for i in (4, 5)])
    sub = manager.subscribe(stream_id="dec-1", checkpoint=store, name="dec")
    async with sub:
        assert [e.version for e in await sub.next_batch(10)] == [1, 2]
        for _ in range(2):
            with pytest.raises(EventDecodeError, match="position 3"):
                await sub.next_batch(10)
            assert (await sub.commit()).position == 2, "checkpoint past events never handed out"
    async with manager.subscribe(stream_id="dec-1", on_decode_error="skip") as sub:
        assert [e.version for e in await sub.next_batch(10)] == [1, 2, 4, 5]
        assert [s.version for s in sub.skipped_events] == [3]


async def test_close_during_a_read_ends_the_waiting_iterator_promptly(manager: EventSourcingManager) -> None:
    # close() while the iterator was reading (not yet waiting) left it to wait a whole poll_interval.
    provider = manager.get_provider()
    real = provider.read_stream_pages

    def slow(*a: Any, **kw: Any) -> Any:
        async def pages() -> Any:
            await asyncio.sleep(0.3)
            async for page in real(*a, **kw):
                yield page

        return pages()

    provider.read_stream_pages = slow  # type: ignore[method-assign]
    sub = manager.subscribe(stream_id="slow-read", poll_interval=30)
    waiting = asyncio.create_task(anext(sub))
    await asyncio.sleep(0.1)  # inside the first read
    await sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 3)


async def test_an_idle_subscription_keeps_listening_instead_of_sleeping_blind(manager: EventSourcingManager) -> None:
    # Each wait that timed out with nothing new counted as a "spurious wake-up", so after a few idle
    # poll_intervals the back-off paused a whole poll_interval *before* each wait: an append landing in
    # that pause was seen up to poll_interval late, on every store, for every idle subscription.
    provider = manager.get_provider()
    real = provider.wait_for_change
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    last_end: list[float] = []

    async def spy(after_position: int, max_wait: float) -> None:
        if last_end:
            gaps.append(loop.time() - last_end[0])
        try:
            await real(after_position, max_wait)
        finally:
            last_end[:] = [loop.time()]

    provider.wait_for_change = spy  # type: ignore[method-assign]
    sub = manager.subscribe(stream_prefix="idle", poll_interval=0.1)
    reading = asyncio.create_task(anext(sub))
    await asyncio.sleep(2.0)  # twenty idle poll_intervals
    res = await manager.append_event(stream_id="idle-1", event_type="T", data={})
    assert (await asyncio.wait_for(reading, 3)).event_id == res.event_id
    await sub.close()
    assert len(gaps) > 10
    assert max(gaps[-5:]) < 0.05, f"not listening between waits for {max(gaps[-5:]):.3f}s"


async def test_a_stream_append_between_the_empty_read_and_the_head_wakes_the_subscription(
    manager: EventSourcingManager,
) -> None:
    # A one-stream subscription waited for a change above the head it read *after* its empty read: an
    # append landing in between was already below that head, so nothing woke it for poll_interval.
    provider = manager.get_provider()
    real = provider.head_position
    appended: list[Any] = []

    async def head() -> int | None:
        if not appended:
            appended.append(await manager.append_event(stream_id="gap-1", event_type="T", data={}))
        return await real()

    provider.head_position = head  # type: ignore[method-assign]
    async with manager.subscribe(stream_id="gap-1", poll_interval=30) as sub:
        got = await asyncio.wait_for(anext(sub), 3)
    assert got.event_id == appended[0].event_id


async def test_stats_and_health_report_each_checkpoints_lag_when_a_checkpoint_store_is_configured(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/lag.db"
    cfg = {"providers": {"s": {"url": url}}, "checkpoint_store": url, "max_subscription_lag": 60}
    m = EventSourcingManager(cfg, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        p = m.get_provider()
        old = NewEvent(event_id=_event_id(), event_type="T", data=b"{}", metadata=b"", encoding="json",
                       timestamp=utcnow() - timedelta(hours=2))  # fmt: skip
        await p.append("lag-a", [old], ANY)
        await m.append_events_batch(stream_id="lag-a", events=[eventsource.EventData("T", {"n": i}) for i in range(4)])
        async with m.subscribe(checkpoint=url, name="current") as sub:
            for _ in range(5):
                await anext(sub)
            await sub.commit()
        store = SqliteCheckpointStore(url)
        await store.put(Checkpoint("behind", sub.source, "all", 0))  # handled nothing: the two-hour-old event is next
        stats = (await m.get_stats())["s"].extra["subscriptions"]
        assert set(stats) == {"behind", "current"}
        assert stats["behind"]["positions"] == stats["behind"]["events"] == 5 and stats["behind"]["seconds"] >= 7200
        assert (stats["current"]["positions"], stats["current"]["seconds"]) == (0, 0.0)
        health = (await m.health_check())["s"]
        assert not health.healthy and health.details["reason"] == "lagging"
        assert health.details["lagging"] == ["behind"] and "behind" in health.message
        await store.delete("behind", sub.source)
        assert (await m.health_check())["s"].healthy
    finally:
        await m.close()
    broken = EventSourcingManager({**cfg, "checkpoint_store": "nosuch://x"}, host=PluginHost(load_entrypoints=False))
    await broken.connect()
    try:
        assert "nosuch" in (await broken.get_stats())["s"].extra["subscriptions_error"]
        assert "nosuch" in (await broken.health_check())["s"].details["subscriptions_error"]
    finally:
        await broken.close()


async def test_a_cancel_that_lands_with_a_wake_up_cancels_the_waiter() -> None:
    """A waiter cancelled in the same loop turn as the commit that wakes it still ends cancelled.

    ``asyncio.wait_for`` on Python 3.11 returns the result instead when the inner future is done by then, so
    a cancelled subscription (and a ProjectionRunner cancelled through it) ran on for good.
    """
    from eventsource.subscriptions.signal import ChangeSignal

    signal = ChangeSignal()
    for turns in range(4):  # the cancellation lands 0-3 loop turns after the commit's wake-up was scheduled
        waiter = asyncio.create_task(signal.wait(signal.count, 5.0))
        await asyncio.sleep(0)  # the waiter is parked on the signal
        signal.notify()
        for _ in range(turns):
            await asyncio.sleep(0)
        if not waiter.cancel():
            continue  # it had already returned: nothing to cancel
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_a_wait_on_the_change_signal_cancelled_as_it_is_woken_ends_cancelled() -> None:
    # the cancel lands at each step of the wake-up (notify, the waiter's future, the timeout's bookkeeping):
    # asyncio.wait_for on Python 3.11 returned the result there and lost the cancel
    from eventsource.subscriptions import ChangeSignal

    for ticks in range(8):
        signal = ChangeSignal()
        task = asyncio.create_task(signal.wait(signal.count, 600))
        for _ in range(3):
            await asyncio.sleep(0)
        signal.notify()
        for _ in range(ticks):
            await asyncio.sleep(0)
        if task.done():  # woken before the cancel: every step of the wake-up was covered
            assert ticks > 1
            assert task.result() is True
            return
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    pytest.fail("the wait never ended after a notify")


@pytest.mark.parametrize("upcasters", [False, True], ids=["json-rows", "upcasters"])
async def test_async_for_on_a_row_store_raises_or_skips_an_undecodable_event_at_its_position(
    tmp_path: Path, upcasters: bool
) -> None:
    # async for on SQLite takes an unfiltered page's events straight from its decoder (the memory store's
    # pages are records, so the test above never runs that path): a decode failure there must fall back to
    # the general path, which raises (again and again, the mark before it) or skips it, positions in step.
    m = EventSourcingManager()
    await m.register_provider(SqliteProvider(f"sqlite:///{tmp_path}/fast.db"), name="s", default=True)
    if upcasters:
        m.register_upcaster("T", lambda e: e)  # the codec's general row path instead of the inlined JSON loop
    p = m.get_provider()
    await m.append_events_batch(stream_id="a", events=[eventsource.EventData("T", {"n": i}) for i in (1, 2)])
    await p.append("a", [NewEvent(_event_id(), "T", b"?", b"", encoding="x-gone", timestamp=utcnow())], ANY)
    await m.append_events_batch(stream_id="a", events=[eventsource.EventData("T", {"n": i}) for i in (4, 5)])
    store = MemoryCheckpointStore("memory://")
    async with m.subscribe(checkpoint=store, name="fast") as sub:
        assert [(await anext(sub)).data["n"] for _ in range(2)] == [1, 2]
        for _ in range(2):
            with pytest.raises(EventDecodeError, match="position 3"):
                await anext(sub)
            assert sub.position == 2
            assert (await sub.commit()).position == 2, "checkpoint past an event never handed out"
    for page_size in (100, 2):
        async with m.subscribe(on_decode_error="skip", page_size=page_size) as sub:
            got = [await anext(sub) for _ in range(4)]
            assert [(e.position, e.data["n"]) for e in got] == [(1, 1), (2, 2), (4, 4), (5, 5)]
            assert (sub.position, sub.skipped, [s.position for s in sub.skipped_events]) == (5, 1, [3])
    await m.close()


async def test_a_one_stream_checkpoint_holds_any_stream_id_the_store_takes(tmp_path: Path) -> None:
    """Review: a checkpoint's scope (``stream:<id>``) was held to the 200 characters of a name, so a subscription
    on a legal stream id of 500 characters handed its events out and then failed every commit."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(SqliteProvider(f"sqlite:///{tmp_path}/e.db"), name="s", default=True)
    sid = "s" * 500 + "%_*>."
    store = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    try:
        for n in range(3):
            await m.append_event(stream_id=sid, event_type="T", data={"n": n})
        async with m.subscribe(stream_id=sid, checkpoint=store, name="long") as sub:
            first = await take(sub, 2)
            await sub.commit()
        assert [e.version for e in first] == [1, 2]
        async with m.subscribe(stream_id=sid, checkpoint=store, name="long") as sub:
            assert [e.version for e in await take(sub, 1)] == [3]
    finally:
        await m.close()


async def test_a_sqlite_checkpoint_file_that_fails_raises_typed_errors(tmp_path: Path) -> None:
    """Review: only the open was mapped; a checkpoint file that is not a database (or one busy past the timeout)
    raised ``sqlite3`` errors from ``get``, ``put``, ``delete`` and a subscription's ``start``/``commit``."""
    from eventsource.errors import ProviderError, ProviderUnavailableError

    path = tmp_path / "cp.db"
    path.write_bytes(b"this is not a SQLite database, but some other file" * 100)
    store = SqliteCheckpointStore(f"sqlite:///{path}")
    for call in (store.connect(), store.get("n", "s"), store.put(Checkpoint("n", "s", "all", 1)), store.list()):
        with pytest.raises(ProviderUnavailableError, match="checkpoint"):
            await call
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(MemoryProvider(), name="m", default=True)
    try:
        with pytest.raises(ProviderError):
            await m.subscribe(checkpoint=store, name="n").start()
    finally:
        await m.close()


def test_sync_commit_after_close_stores_only_what_was_handed_out(tmp_path: Path) -> None:
    """Review: ``SyncSubscription.close()`` dropped the events it held and ``commit()`` then stored the async
    subscription's mark, which counts every event of the batch it fetched: committed after a ``with`` block
    left early, the events never handed out were skipped on resume."""
    url = f"sqlite:///{tmp_path}/sync.db"
    cp = f"sqlite:///{tmp_path}/cp.db"
    with SyncEventSourcingManager({"providers": {"db": {"url": url}}, "default_provider": "db"}) as es:
        es.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(10)])
        with es.subscribe(checkpoint=cp, name="sync", page_size=10) as sub:
            handled = []
            for e in sub:
                handled.append(e.data["n"])
                if len(handled) == 3:
                    break
        stored = sub.commit()
        assert handled == [0, 1, 2]
        with es.subscribe(checkpoint=cp, name="sync", page_size=10) as again:
            assert again.subscription.position == stored.position
            es.append_event(stream_id="s", event_type="T", data={"n": 10})  # so a wrong resume does not wait
            assert next(iter(again)).data["n"] == 3, f"resumed after {stored.position}"


async def test_commit_every_follows_what_the_filter_passes_over_while_waiting(tmp_path: Path) -> None:
    """Review: with ``commit_every`` a filtered subscription committed only after events it handed out, so while
    only other events came its checkpoint stayed put: its lag grew with every other event stored (a health check
    with ``max_subscription_lag`` called it lagging) and a restart read them all again."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(SqliteProvider(f"sqlite:///{tmp_path}/e.db"), name="s", default=True)
    store = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    try:
        await m.append_event(stream_id="s-1", event_type="Wanted", data={})
        sub = m.subscribe(event_types=["Wanted"], checkpoint=store, name="f", commit_every=1, poll_interval=0.05)
        async with sub:
            assert [e.event_type for e in await take(sub, 1)] == ["Wanted"]
            waiting = asyncio.ensure_future(sub.__anext__())  # handled it, asks for more: nothing wanted comes
            for n in range(20):
                await m.append_event(stream_id=f"o-{n}", event_type="Other", data={})
            last = [e.position async for e in m.read_all()][-1]
            for _ in range(2000):  # until the checkpoint follows (or the wait ends)
                cp = await store.get("f", sub.source)
                if waiting.done() or (cp is not None and cp.position == last):
                    break
                await asyncio.sleep(0.01)
            assert not waiting.done()
            waiting.cancel()
            cp = await store.get("f", sub.source)
            assert cp is not None and cp.position == last
            lag = await m.subscription_lag("f", store)
            assert (lag.events, lag.seconds) == (0, 0.0)
    finally:
        await m.close()


async def test_manual_commits_follow_what_the_filter_passes_over_while_waiting(tmp_path: Path) -> None:
    """Newcomer: the README's loop (``commit(event)`` after each handled event) on a filtered subscription left
    the checkpoint at its last own event while other streams were written, so its lag grew without end and
    ``max_subscription_lag`` called a caught-up subscription lagging. Once everything handed out is committed,
    what the filter passes over while waiting is committed too; an event handed out and not committed holds it."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(SqliteProvider(f"sqlite:///{tmp_path}/e.db"), name="s", default=True)
    store = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    try:
        await m.append_event(stream_id="order-1", event_type="Placed", data={})
        done = m.subscribe(stream_prefix="order-", checkpoint=store, name="done", poll_interval=0.05)
        held = m.subscribe(stream_prefix="order-", checkpoint=store, name="held", poll_interval=0.05)
        async with done, held:
            await done.commit((await take(done, 1))[0])
            first = (await take(held, 1))[0]  # handed out, not committed: still being handled
            waiting = [asyncio.ensure_future(done.__anext__()), asyncio.ensure_future(held.__anext__())]
            for n in range(20):
                await m.append_event(stream_id=f"other-{n}", event_type="Other", data={})
            last = [e.position async for e in m.read_all()][-1]
            for _ in range(2000):  # until the checkpoint follows (or a wait ends)
                cp = await store.get("done", done.source)
                if any(w.done() for w in waiting) or (cp is not None and cp.position == last):
                    break
                await asyncio.sleep(0.01)
            assert not any(w.done() for w in waiting)
            for w in waiting:
                w.cancel()
            cp = await store.get("done", done.source)
            assert cp is not None and cp.position == last
            lag = await m.subscription_lag("done", store)
            assert (lag.events, lag.seconds) == (0, 0.0)
            kept = await store.get("held", held.source)
            assert kept is None or kept.position < first.position
    finally:
        await m.close()


async def test_reading_sqlite_checkpoints_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Review: ``get`` and ``list`` took the file's write lock (``BEGIN IMMEDIATE``), so reading a checkpoint
    (a subscription's start, lag in stats and health, ``eventsource projections``) waited, up to 30 s, for any
    writer of the file: a SQL sink's batch, the event store's appends when the table shares their file."""
    path = tmp_path / "cp.db"
    store = SqliteCheckpointStore(f"sqlite:///{path}")
    await store.put(Checkpoint("n", "s", "all", 7))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("BEGIN IMMEDIATE")  # a sink's batch in progress
    try:
        got = await asyncio.wait_for(store.get("n", "s"), 10)
        listed = await asyncio.wait_for(store.list(), 10)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert got is not None and got.position == 7
    assert [cp.position for cp in listed] == [7]
