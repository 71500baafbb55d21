"""``truncate_stream(if_holds=...)`` with the stream deleted and created again at each step of the run.

JetStream has no transaction: the guard is checked after the scan and around each write of the info record,
and every deletion names sequences the scan read. Each test deletes the stream and starts it again (another
process) at one point of a run guarded by the old stream's last event: the new stream must keep every event,
and its record must not take the old stream's counts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.model import ANY, NO_STREAM
from eventsource_nats.provider import NatsProvider
from eventsource_nats.reads import Reader

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable


async def _state(p: NatsProvider, sid: str) -> tuple[list[int], tuple[int, int, int | None] | None]:
    """The versions a fresh instance reads, and its (version, event_count, first_version)."""
    fresh = NatsProvider(**p.spawn_args())
    await fresh.connect()
    try:
        info = await fresh.get_stream_info(sid)
        versions = [e.version async for e in fresh.read_stream(sid)]
        return versions, None if info is None else (info.version, info.event_count, info.first_version)
    finally:
        await fresh.close()


class _Run:
    """A provider ``p`` holding stream ``s`` (old events ``ids``) and another process ``q`` that starts it again."""

    def __init__(self, p: NatsProvider, q: NatsProvider) -> None:
        self.p, self.q = p, q
        self.ids: list[str] = []
        self.done = False
        self.new = 4  # events of the new stream

    async def write_old(self, *, batch: bool) -> None:
        events = [new_event() for _ in range(10)]
        self.ids = [e.event_id for e in events]
        if batch:  # one envelope on a server without atomic batches
            await self.p.append("s", events, NO_STREAM)
        else:
            for v, e in enumerate(events):
                await self.p.append("s", [e], v)

    async def again(self, *, keep_record: bool = True) -> None:
        """Delete the stream and write the new events (once); without ``keep_record``, as if its record was lost."""
        if self.done:
            return
        self.done = True
        await self.q.delete_stream("s")
        for _ in range(self.new):
            await self.q.append("s", [new_event()], ANY)
        if not keep_record:
            await _drop_record(self.q)

    async def check_new_stream_whole(self) -> None:
        assert await _state(self.p, "s") == (list(range(1, self.new + 1)), (self.new, self.new, 1))


async def _drop_record(p: NatsProvider) -> None:
    """Purge the stream's record, as if it was lost; an append's record is written without waiting: wait for it."""
    from eventsource_nats.naming import stream_token

    conn, token = p._conn, stream_token("s")
    for _ in range(200):
        if (await conn.info_get(token))[0] is not None:
            break
        await asyncio.sleep(0.01)
    await conn.purge(f"KV_{conn.names.info_bucket}", filter=f"$KV.{conn.names.info_bucket}.{token}")
    assert (await conn.info_get(token))[0] is None


def _wrap(obj: Any, name: str, before: Callable[[], Awaitable[None]]) -> None:
    real = getattr(obj, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        await before()
        return await real(*args, **kwargs)

    setattr(obj, name, wrapped)


@pytest.fixture
async def run(machine_nats_url: str) -> AsyncGenerator[_Run, None]:
    p = await open_provider(machine_nats_url)
    q = NatsProvider(**p.spawn_args())
    await q.connect()
    try:
        yield _Run(p, q)
    finally:
        await q.close()
        await dispose(p)


@pytest.mark.parametrize("guard", ["last", "scanned"])
async def test_a_stream_created_again_while_the_scan_reads_keeps_every_event(run: _Run, guard: str) -> None:
    """The scan's consumer delivers the new stream's messages after the old one's first: a guard checked before
    the scan passed, and the new stream's events below version 6 were purged with the old one's first."""
    await run.write_old(batch=False)

    class Reader2(Reader):
        async def consume(self, subject: str, start_seq: int, page_size: int) -> AsyncGenerator[Any, None]:
            async for m in super().consume(subject, start_seq, page_size):
                yield m
                await run.again()  # right after the scan read the old stream's first message

    run.p._retention.reader = Reader2(run.p._conn)
    run.new = 9  # the consumer's next page asks for the 9 messages pending after the first: no wait for more
    held = (10, run.ids[9]) if guard == "last" else (3, run.ids[2])
    assert await run.p.truncate_stream("s", 6, if_holds=held) == 0
    await run.check_new_stream_whole()


@pytest.mark.parametrize("where", ["carry_out", "bump", "purge", "hide", "record"])
async def test_a_stream_created_again_after_the_scan_keeps_its_events_and_counts(run: _Run, where: str) -> None:
    """Deleted and started again after the scan: before the plan is carried out (``carry_out``), as the run is
    about to read the record and count into it (``bump``: a check made before that read passes), before its
    leading purge (``purge``), its marks in an envelope (``hide``: counted after they are made), or between the
    check and the record's creation when the old stream had none (``record``). Deletions name the old messages'
    sequences, and the record of the new stream keeps its own counts."""
    retention = run.p._retention
    await run.write_old(batch=where == "hide")
    if where == "carry_out":
        _wrap(retention, "_carry_out", run.again)
    elif where == "bump":
        _wrap(retention, "_bump_info", run.again)
    elif where == "purge":
        _wrap(retention.conn, "purge", run.again)
    elif where == "hide":
        _wrap(retention, "_hide", run.again)
    else:  # the old stream has no record: the run creates one, expecting none, after its check
        await _drop_record(run.p)
        kv = retention.conn.kv[retention.conn.names.info_bucket]

        async def again() -> None:
            await run.again(keep_record=False)

        _wrap(kv, "create", again)
    # the old leading run is counted (in the old record) before its purge; the envelope's marks are not
    assert await run.p.truncate_stream("s", 6, if_holds=(10, run.ids[9])) == (5 if where == "purge" else 0)
    await run.check_new_stream_whole()
    assert not await run.p._reader.hidden_possible()  # marks made in the old envelope are purged again


async def test_the_guard_event_is_found_after_later_appends(run: _Run) -> None:
    """The guarded event is no longer the last (appends since the caller looked): found through the id index, or
    by version when the index lost it; the truncation goes ahead."""
    from test_review_attacks import _lose_the_id_index

    await run.write_old(batch=False)
    for v in range(10, 12):
        await run.p.append("s", [new_event()], v)
    assert await run.p.truncate_stream("s", 3, if_holds=(10, run.ids[9])) == 2
    await _lose_the_id_index(run.p, run.ids)
    fresh = NatsProvider(**run.p.spawn_args())  # nothing in memory either
    await fresh.connect()
    try:
        assert await fresh.truncate_stream("s", 5, if_holds=(10, run.ids[9])) == 2
        assert await fresh.truncate_stream("s", 7, if_holds=(9, "another id")) == 0
    finally:
        await fresh.close()
    assert await _state(run.p, "s") == (list(range(5, 13)), (12, 8, 5))
