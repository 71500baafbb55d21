"""The sync facade forwards every manager method, blocking, from plain (non-async) code."""

from __future__ import annotations

import inspect
import threading

import pytest
from eventsource import ConcurrencyError, EventData, StreamNotFoundError
from eventsource.errors import EventSourceError, ProviderUnavailableError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

CONFIG = {"providers": {"mem": "memory://"}, "default_provider": "mem"}


def make() -> SyncEventSourcingManager:
    return SyncEventSourcingManager(CONFIG, host=PluginHost(load_entrypoints=False))


def test_every_public_coroutine_and_iterator_is_forwarded() -> None:
    with make() as m:
        for name, member in inspect.getmembers(EventSourcingManager):
            if name.startswith("_"):
                continue
            forwarded = getattr(m, name)
            if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
                assert not inspect.iscoroutinefunction(forwarded), name
                assert not inspect.isasyncgenfunction(forwarded), name


def test_round_trip_through_the_facade() -> None:
    with make() as m:
        m.create_stream(stream_id="orders-1", name="Order 1")
        r = m.append_event(stream_id="orders-1", event_type="Created", data={"total": 3}, expected_version=0)
        assert r.version == 1
        b = m.append_events_batch(stream_id="orders-1", events=[EventData("Paid", {"n": i}) for i in range(3)])
        assert (b.first_version, b.last_version) == (2, 4)
        with pytest.raises(ConcurrencyError):
            m.append_event(stream_id="orders-1", event_type="X", data={}, expected_version=1)
        events = list(m.read_stream("orders-1"))
        assert [e.version for e in events] == [1, 2, 3, 4]
        assert [e.event_type for e in m.read_all()] == ["Created", "Paid", "Paid", "Paid"]
        assert m.get_events(stream_id="orders-1", limit=2).has_more
        m.create_snapshot(stream_id="orders-1", data={"total": 3})
        assert m.get_snapshot("orders-1").version == 4
        assert m.get_stats()["mem"].total_events == 4
        assert m.health_check()["mem"].healthy
        with pytest.raises(StreamNotFoundError):
            m.get_stream_info("missing")


def test_breaking_out_of_a_sync_iteration_closes_it() -> None:
    with make() as m:
        m.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(20)])
        it = m.read_stream("s", page_size=3)
        first = [next(it).version for _ in range(4)]
        it.close()
        assert first == [1, 2, 3, 4]
        assert m.append_event(stream_id="s", event_type="E", data=0).version == 21


def test_close_stops_the_private_loop_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    m = make()
    m.connect()
    m.close()
    after = [t for t in threading.enumerate() if t.name == "eventsource-sync" and t.name not in before]
    assert not any(t.is_alive() for t in after)


def test_a_closed_facade_raises_a_typed_error_and_leaves_no_unawaited_coroutine() -> None:
    import warnings

    es = SyncEventSourcingManager({"providers": {"m": "memory://"}, "default_provider": "m"})
    es.connect()
    es.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "coroutine was never awaited" RuntimeWarning would fail here
        with pytest.raises(ProviderUnavailableError, match="closed"):
            es.append_event(stream_id="s", event_type="E", data={})
        with pytest.raises(EventSourceError):  # checked eagerly, like the async manager after close
            list(es.read_stream("s"))
        import gc

        gc.collect()


def test_a_sync_snapshot_handler_that_calls_the_facade_fails_fast_instead_of_hanging() -> None:
    import threading

    es = SyncEventSourcingManager({"providers": {"m": "memory://"}, "default_provider": "m", "snapshot_threshold": 2})
    es.connect()
    seen: list[BaseException] = []

    def handler(stream_id: str, version: int) -> dict[str, int]:
        try:
            return {"n": len(list(es.read_stream(stream_id)))}  # would wait for the loop it runs on
        except EventSourceError as e:
            seen.append(e)
            raise

    es.set_snapshot_handler(handler)
    done: list[object] = []

    def work() -> None:
        done.extend(es.append_event(stream_id="s", event_type="E", data={"i": i}) for i in range(3))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(20)
    assert len(done) == 3, "the append deadlocked (the facade's loop is stuck: not closing it)"
    try:
        assert seen
        assert "own event loop" in str(seen[0])
        assert [e.version for e in es.read_stream("s")] == [1, 2, 3]  # the appends themselves landed
    finally:
        es.close()


async def test_a_sync_read_takes_a_chunk_of_a_page_in_one_step() -> None:
    from eventsource.manager.policy import PAGED
    from eventsource.syncloop import _take

    async with EventSourcingManager(CONFIG, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_events_batch(stream_id="s", events=[EventData("E", i) for i in range(25)])
        it = m.read_stream("s", page_size=10)
        assert it.ag_code in PAGED  # type: ignore[attr-defined]  # what _take recognises
        assert await it.__anext__() is not None
        rest = await it.asend(4)  # type: ignore[attr-defined]
        assert [e.version for e in rest] == [2, 3, 4, 5]  # one step, a list: the chunk pull
        items, done, error = await _take(it, 8)  # within the page (6..10), then on into the next one
        assert ([e.version for e in items], done, error) == (list(range(6, 14)), False, None)
        items, done, error = await _take(it, 20)
        assert ([e.version for e in items], done, error) == (list(range(14, 26)), True, None)
