"""Core review of the day's changes: each test failed on the code before the fix that follows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventSourcingManager
from eventsource.subscriptions import EventDecodeError

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.model import Event


def sqlite_cfg(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {"providers": {"s": f"sqlite:///{tmp_path / 'events.db'}"}, "default_provider": "s", **extra}


async def test_a_payload_over_this_readers_size_bound_is_never_skipped(tmp_path: Path) -> None:
    """A writer configured for large events stores one of 17 MiB (compressed); a reader with the default sizes
    refuses to decompress more than 16 MiB ("raise those to read it"): a configuration to fix, not the event's
    own failure, so a skip-mode subscription stops on it (it passed over it: a later commit() moved past it)."""
    big = {"blob": "a" * (17 * 1024 * 1024)}
    writer = sqlite_cfg(tmp_path, compression="zlib", max_event_size=32 * 1024 * 1024)
    async with EventSourcingManager(writer) as es:
        await es.append_event(stream_id="s", event_type="Big", data=big)
        await es.append_event(stream_id="s", event_type="Small", data={})
    async with (
        EventSourcingManager(sqlite_cfg(tmp_path)) as es,
        es.subscribe(stream_id="s", on_decode_error="skip") as sub,
    ):
        with pytest.raises(EventDecodeError, match="max_snapshot_size"):
            got = await sub.__anext__()
            pytest.fail(f"the subscription passed over the large event and handed out {got.event_type!r}")
        assert sub.skipped == 0
    async with EventSourcingManager(sqlite_cfg(tmp_path, max_event_size=32 * 1024 * 1024)) as es:
        assert [e.event_type async for e in es.read_stream("s")] == ["Big", "Small"]  # read once configured


async def test_a_commit_after_close_names_the_event_it_counted(tmp_path: Path) -> None:
    """A subscription that handed out part of a page, closed, then committed (the documented way to stop): its
    checkpoint kept no event id (close dropped the page the id was in), so a stream deleted and created again
    since was resumed unchecked and its first versions passed over."""
    from eventsource.checkpoints.sqlite import SqliteCheckpointStore
    from eventsource.errors import StreamDeletedError

    cps = SqliteCheckpointStore(f"sqlite:///{tmp_path / 'cp.db'}")
    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        old = await es.append_events_batch(stream_id="s", events=[{"event_type": "E", "data": {}} for _ in range(10)])
        sub = es.subscribe(stream_id="s", checkpoint=cps, name="n", page_size=10)
        async with sub:
            for _ in range(3):
                await sub.__anext__()
        cp = await sub.commit()
        assert (cp.position, cp.event_id) == (3, old.event_ids[2])
        await es.delete_stream("s")
        await es.append_events_batch(stream_id="s", events=[{"event_type": "New", "data": {}} for _ in range(10)])
        async with es.subscribe(stream_id="s", checkpoint=cps, name="n", page_size=10) as again:
            with pytest.raises(StreamDeletedError, match="reset=True"):
                got = await again.__anext__()
                pytest.fail(f"resumed on the new stream at version {got.version}: versions 1-3 passed over")


async def test_before_snapshot_on_sqlite_goes_on_past_the_listed_event_it_deletes(tmp_path: Path) -> None:
    """The stream grows and is snapshotted between the policy's listing and its get_snapshot (a busy stream, a
    long paced run): the truncation deletes the listed last event itself. SQLite checked that event before every
    batch, so the run stopped after its first batch (112 of 3,100 covered events deleted); the stream is the
    same one, and memory and PostgreSQL go on."""
    from eventsource.model import utcnow
    from eventsource.retention import BeforeSnapshotPolicy, RetentionContext

    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        await es.append_events_batch(stream_id="s", events=[{"event_type": "E", "data": {}} for _ in range(100)])
        await es.create_snapshot(stream_id="s", data={})
        p = es.get_provider()
        grown = False

        async def call(op: str, fn: Any) -> Any:
            nonlocal grown
            if op == "get_snapshot" and not grown:  # another writer, after the listing
                grown = True
                for _ in range(3):
                    await es.append_events_batch(
                        stream_id="s", events=[{"event_type": "E", "data": {}} for _ in range(1000)]
                    )
                await es.create_snapshot(stream_id="s", data={})
            return await fn()

        deleted = await BeforeSnapshotPolicy().apply(RetentionContext(provider=p, now=utcnow(), call=call))
        info = await p.get_stream_info("s")
        assert info is not None and info.version == 3100
        assert (deleted, info.first_version) == (3100, None)  # keep_events=0: every event the snapshot covers


async def test_an_upcaster_whose_lookup_fails_for_a_moment_is_never_skipped(tmp_path: Path) -> None:
    """An upcaster that reads another store (a lookup) and finds it unreachable raises a ProviderError: the
    store's failure, not the event's. It was wrapped as an UpcastError, which a skip-mode subscription passes
    over for good; now it stays what it is, is never skipped, and the event is read once the store is back."""
    from eventsource.errors import ProviderUnavailableError

    down = True

    def lookup(ev: Event) -> Event:
        if down:
            raise ProviderUnavailableError("the lookup store is unreachable", operation="lookup")
        return ev

    async with EventSourcingManager(sqlite_cfg(tmp_path)) as es:
        await es.append_event(stream_id="s", event_type="Old", data={})
        await es.append_event(stream_id="s", event_type="New", data={})
        es.register_upcaster("Old", lookup)
        async with es.subscribe(stream_id="s", on_decode_error="skip") as sub:
            with pytest.raises((ProviderUnavailableError, EventDecodeError)):
                got = await sub.__anext__()
                pytest.fail(f"the subscription passed over the event and handed out {got.event_type!r}")
            assert sub.skipped == 0
        with pytest.raises(ProviderUnavailableError):
            [e async for e in es.read_stream("s")]
        down = False
        assert [e.event_type async for e in es.read_stream("s")] == ["Old", "New"]
