"""The conformance kit on the in-memory provider."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError
from eventsource.memory import MemoryProvider
from eventsource.provider import Capabilities
from eventsource.testing import AbsentStore, ProviderSuite

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime


class TestMemoryProvider(ProviderSuite):
    @pytest.fixture
    def absent_store(self, absent_memory: AbsentStore) -> AbsentStore:
        return absent_memory

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = MemoryProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


class NoRetentionPrimitivesProvider(MemoryProvider):
    """A store that declares it cannot delete events (and raises if asked anyway)."""

    kind = "memory-noretention"
    capabilities = Capabilities(
        global_order="total",
        concurrency="in_process",
        unsupported=frozenset({"truncate_stream", "delete_events_before"}),
    )

    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: object = None) -> int:
        raise self.unsupported("truncate_stream")

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        raise self.unsupported("delete_events_before")


class TestMemoryProviderDeclaringUnsupportedOperations(ProviderSuite):
    """The kit's refusal tests run too (they assert the error); the tests of the missing operations skip."""

    @pytest.fixture
    def absent_store(self, absent_memory: AbsentStore) -> AbsentStore:
        return absent_memory

    @pytest.fixture
    async def provider(self) -> AsyncIterator[MemoryProvider]:
        p = NoRetentionPrimitivesProvider(f"memory://kit-{uuid.uuid4().hex}")
        await p.connect()
        yield p
        await p.close()


async def test_a_closed_instance_refuses_until_reconnected_and_a_named_stores_data_stays() -> None:
    """close() refuses on this instance only (as a closed connection would); the data stays for the others."""
    from eventsource.errors import ProviderUnavailableError
    from eventsource.model import ANY, NewEvent, utcnow

    url = f"memory://closed-{uuid.uuid4().hex}"
    first, second = MemoryProvider(url), MemoryProvider(url)
    await first.connect()
    await second.connect()
    ev = NewEvent(uuid.uuid4().hex, "Counted", b"{}", b"{}", "json", utcnow())
    await first.append("s", [ev], ANY)
    await first.close()
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await first.get_stream_info("s")
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await first.append("s", [ev], ANY)
    with pytest.raises(ProviderUnavailableError, match="closed"):
        [rec async for rec in first.read_all()]
    assert not (await first.health()).healthy
    info = await second.get_stream_info("s")
    assert info is not None and info.version == 1
    await first.connect()
    assert [rec.event_id async for rec in first.read_all()] == [ev.event_id]
    assert (await first.health()).healthy
    await first.close()
    await first.close()  # idempotent


async def test_a_read_begun_before_close_is_refused_at_its_next_page() -> None:
    """A read under way when the instance closes stops at its next page, as on a store whose connection closed."""
    from eventsource.errors import ProviderUnavailableError
    from eventsource.model import ANY, NewEvent, utcnow

    p = MemoryProvider(f"memory://closed-{uuid.uuid4().hex}")
    await p.connect()
    evs = [NewEvent(uuid.uuid4().hex, "Counted", b"{}", b"{}", "json", utcnow()) for _ in range(3)]
    await p.append("s", evs, ANY)
    by_stream, by_position = p.read_stream_pages("s", page_size=1), p.read_all_pages(page_size=1)
    assert [e.version for e in await anext(by_stream)] == [1]
    assert [e.position for e in await anext(by_position)] == [1]
    await p.close()
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await anext(by_stream)
    with pytest.raises(ProviderUnavailableError, match="closed"):
        await anext(by_position)


def test_two_threads_racing_on_a_named_store_never_both_win() -> None:
    """Two sync managers on one named store, in two threads, append to a new stream with ``expected_version=0``.

    The store claims an in-process version check: exactly one wins and its event is the stream's. Without a lock,
    a thread switch between the check and the write told both "ok", and the stream kept one of the two events
    (the other was in ``read_all`` under the same version 1: an acknowledged event no stream read returns).
    The switch interval is cut so that the threads interleave often, as a loaded machine makes them.
    """
    import sys
    import threading

    from eventsource import SyncEventSourcingManager
    from eventsource.errors import ConcurrencyError
    from eventsource.plugins import PluginHost

    host = PluginHost(load_entrypoints=False)
    url = f"memory://threads-{uuid.uuid4().hex}"
    managers = [SyncEventSourcingManager({"providers": {"m": {"url": url}}}, host=host) for _ in range(2)]
    for m in managers:
        m.connect()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for trial in range(300):
            sid = f"race-{trial}"
            won: list[int] = []
            gate = threading.Barrier(2)

            def append(i: int, sid: str = sid, won: list[int] = won, gate: threading.Barrier = gate) -> None:
                gate.wait()
                try:
                    managers[i].append_event(stream_id=sid, event_type="A", data={"by": i}, expected_version=0)
                except ConcurrencyError:
                    return
                won.append(i)

            threads = [threading.Thread(target=append, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stored = [e.data["by"] for e in managers[0].read_stream(sid)]
            assert (len(won), stored) == (1, won), f"trial {trial}: acknowledged {won}, the stream holds {stored}"
        in_log = [e.stream_id for e in managers[0].read_all()]
        assert len(in_log) == len(set(in_log)) == 300
    finally:
        sys.setswitchinterval(interval)
        for m in managers:
            m.close()


async def test_deleting_snapshots_of_streams_that_have_none_keeps_nothing() -> None:
    """``delete_snapshot`` on a stream without snapshots (any id a caller sends) left an empty entry behind for
    good: the store's memory grew with every such call, whatever it held."""
    from eventsource import EventSourcingManager
    from eventsource.plugins import PluginHost

    m = EventSourcingManager({"providers": {"m": {"url": "memory://"}}}, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        await m.append_event(stream_id="kept", event_type="A", data={})
        await m.create_snapshot(stream_id="kept", data={"n": 1})
        for i in range(100):
            assert await m.delete_snapshot(stream_id=f"never-{i}") == 0
        assert await m.delete_snapshot(stream_id="kept") == 1
        p = m.get_provider("m")
        assert isinstance(p, MemoryProvider)
        assert p._data.snapshots == {}  # (the store's own table: nothing else shows the entries)
    finally:
        await m.close()


def test_stats_and_listing_answer_while_another_thread_adds_streams() -> None:
    """``get_stats`` on a named store another thread's manager writes to failed with ``ProviderError`` ("RuntimeError:
    dictionary changed size during iteration"): its per-stream and per-type counts were taken while streams were
    being added. They are now taken under the store's lock."""
    import sys
    import threading

    from eventsource import SyncEventSourcingManager
    from eventsource.plugins import PluginHost

    host = PluginHost(load_entrypoints=False)
    url = f"memory://listing-{uuid.uuid4().hex}"
    writer, reader = (SyncEventSourcingManager({"providers": {"m": {"url": url}}}, host=host) for _ in range(2))
    writer.connect()
    reader.connect()
    for i in range(2000):
        writer.append_event(stream_id=f"old-{i}", event_type=f"T{i}", data={})
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            writer.append_event(stream_id=f"new-{i}", event_type=f"N{i}", data={})
            i += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(40):
            stats = reader.get_stats()["m"]
            assert stats.total_streams >= 2000
            assert reader.list_streams(limit=5).total_count >= 2000
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        writer.close()
        reader.close()


@pytest.mark.parametrize("url", ["memory://shared?create_store=false", "memory://shared#x", "memory://?create_store=0"])
def test_a_query_string_or_fragment_in_a_memory_url_is_refused_not_taken_as_the_name(url: str) -> None:
    """``memory://shared?create_store=false`` named a store "shared?create_store=false": another store than
    ``memory://shared``, created (the setting never read), so a process meant to find the shared store worked on
    an empty one of its own. The memory store reads no settings from its URL: such a URL is refused, saying so."""
    with pytest.raises(ConfigurationError, match="settings"):
        MemoryProvider(url)
