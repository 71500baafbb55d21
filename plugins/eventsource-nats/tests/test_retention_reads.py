"""``retention_scan="leading"``: ``delete_events_before`` reads what it deletes plus a message or so per stream.

Reads are counted on the real server: a :class:`Reader` subclass counts the messages its consumers yield,
and the connection's single-message gets are counted where they are made.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conftest import dispose, new_event, open_provider
from eventsource.model import ANY, utcnow
from eventsource_nats.reads import Reader

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from eventsource_nats.provider import NatsProvider


class CountingReader(Reader):
    """A reader whose consumers count the messages they deliver."""

    messages = 0

    async def consume(self, subject: str, start_seq: int, page_size: int) -> AsyncGenerator[Any, None]:
        async for m in super().consume(subject, start_seq, page_size):
            self.messages += 1
            yield m


def _count_reads(p: NatsProvider) -> tuple[CountingReader, list[int]]:
    """Put a counting reader under the provider's retention and count its connection's message gets."""
    conn = p._conn
    reader = CountingReader(conn)
    p._retention.reader = reader
    gets = [0]
    real = conn._get_msg

    async def counted(**req: Any) -> Any:
        gets[0] += 1
        return await real(**req)

    conn._get_msg = counted  # type: ignore[method-assign]
    return reader, gets


async def test_delete_events_before_reads_the_deleted_run_and_a_message_per_stream(machine_nats_url: str) -> None:
    p = await open_provider(machine_nats_url, retention_scan="leading")
    try:
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        for i in range(40):  # past the single gets: the run continues through a consumer
            await p.append("old", [new_event(timestamp=t0 + timedelta(minutes=i))], ANY)
        for _ in range(5):
            await p.append("old", [new_event()], ANY)
        for s in ("b", "c"):
            for _ in range(100):
                await p.append(s, [new_event()], ANY)
        reader, gets = _count_reads(p)
        assert await p.delete_events_before(utcnow() - timedelta(days=1)) == 40
        reads = reader.messages + gets[0]
        # the 40 deleted, at most the 5 kept of their stream (one consumer page past the cut), a get per
        # stream to find its first message and one more for its tail: not the 245 messages of the store
        assert reads <= 40 + 5 + 2 * 3, reads
        assert [e.version async for e in p.read_stream("old")] == [41, 42, 43, 44, 45]
        assert len([e async for e in p.read_stream("b")]) == 100
        info = await p.get_stream_info("old")
        assert info is not None
        assert (info.version, info.event_count) == (45, 5)
        reader.messages, gets[0] = 0, 0
        assert await p.delete_events_before(utcnow() - timedelta(days=1)) == 0
        assert reader.messages + gets[0] <= 3, reader.messages + gets[0]  # a get per stream, nothing else
    finally:
        await dispose(p)


async def test_delete_events_before_of_one_stream_reads_only_that_stream(machine_nats_url: str) -> None:
    p = await open_provider(machine_nats_url, retention_scan="leading")
    try:
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        for i in range(3):
            await p.append("s", [new_event(timestamp=t0 + timedelta(days=i))], ANY)
        for i in range(50):
            await p.append("other", [new_event(timestamp=t0 + timedelta(days=i))], ANY)
        reader, gets = _count_reads(p)
        assert await p.delete_events_before(t0 + timedelta(days=2), "s") == 2
        assert reader.messages + gets[0] <= 2 + 1 + 1, reader.messages + gets[0]
        assert [e.version async for e in p.read_stream("s")] == [3]
        assert len([e async for e in p.read_stream("other")]) == 50
    finally:
        await dispose(p)


async def test_leading_scan_is_declared_and_leaves_an_older_event_behind_a_newer_one(machine_nats_url: str) -> None:
    """What the setting gives up, and that the capability the kit reads says so (the default is exact)."""
    p = await open_provider(machine_nats_url, retention_scan="leading")
    full = await open_provider(machine_nats_url)
    try:
        assert p.capabilities.extra["delete_events_before"] == "leading_run"
        assert full.capabilities.extra["delete_events_before"] == "exact"
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        for day in (10, 0, 12):  # an event of day 0 imported behind one of day 10
            await p.append("s", [new_event(timestamp=t0 + timedelta(days=day))], ANY)
        assert await p.delete_events_before(t0 + timedelta(days=3)) == 0
        assert [e.version async for e in p.read_stream("s")] == [1, 2, 3]
    finally:
        await dispose(p)
        await dispose(full)
