"""Attack review of the offline upcast rewrite on PostgreSQL: refused names, races with writers and other runs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from conftest import manager_on
from eventsource.domain.rewrite import rewrite_stream
from eventsource.errors import ValidationError
from eventsource.model import EventData

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.mark.parametrize("new_type", ["rw.New\n", "x" * 300])
async def test_a_rename_to_a_type_name_an_append_refuses_is_never_stored(
    make_provider: Callable[..., Any], new_type: str
) -> None:
    """A renamed type an append would refuse (a newline, over 256 characters) stops the run; nothing is stored.

    PostgreSQL used to store both as they were: events whose type no ``event_types`` filter can name.
    """
    p = await make_provider()
    m = await manager_on(p)
    await m.append_events_batch(stream_id="s", events=[EventData("rw.Old", {"n": 1})] * 3)
    before = [r async for r in p.read_stream("s")]
    m.rename_event_type("rw.Old", new_type)
    with pytest.raises(ValidationError) as info:
        await rewrite_stream(m, "s")
    assert info.value.details["field"] == "event_type"
    assert [r async for r in p.read_stream("s")] == before


async def test_two_runs_and_a_writer_at_once_upcast_each_event_once_and_lose_no_append(
    make_provider: Callable[..., Any],
) -> None:
    """Two rewrites of one stream race a writer appending to it: every event is upcast exactly once, none lost."""
    p = await make_provider()
    a = await manager_on(p)
    b = await manager_on(await make_provider(schema=p.names.schema))
    writer = await manager_on(await make_provider(schema=p.names.schema))
    await a.append_events_batch(stream_id="s", events=[EventData("T", {"n": n}) for n in range(600)])
    for m in (a, b):
        m.add_upcaster("T", 1, lambda d: {**d, "steps": d.get("steps", 0) + 1})

    async def append() -> None:
        for i in range(30):
            events = [EventData("T", {"n": 600 + i * 10 + k}) for k in range(10)]
            await writer.append_events_batch(stream_id="s", events=events)

    ra, rb, _ = await asyncio.gather(
        rewrite_stream(a, "s", batch_size=7), rewrite_stream(b, "s", batch_size=11), append()
    )
    stored = [e async for e in a.read_stream("s")]
    assert [e.data["n"] for e in stored] == list(range(900))
    raw = [r async for r in p.read_stream("s")]
    fresh = await manager_on(await make_provider(schema=p.names.schema))  # no chain: the data as stored
    assert [e.data.get("steps") async for e in fresh.read_stream("s")] == [1] * len(raw)
    assert ra.rewritten + rb.rewritten == 900  # each event stored once, by one of the runs
    assert sum(ra.changes.values()) == ra.rewritten + ra.changed_meanwhile


async def test_an_event_changed_by_a_transaction_the_rewrite_waits_for_is_left_alone(
    make_provider: Callable[..., Any], url: str
) -> None:
    """The rewrite's UPDATE waits on a row lock; once the holder commits another payload, that event is left as is."""
    p = await make_provider()
    m = await manager_on(p)
    await m.append_events_batch(stream_id="s", events=[EventData("T", {"n": n}) for n in range(3)])
    m.add_upcaster("T", 1, lambda d: {**d, "v": 2})
    target = [r async for r in p.read_stream("s")][1]
    async with await psycopg.AsyncConnection.connect(url) as holder:
        await holder.execute(
            f"UPDATE {p.names.events} SET data = %s WHERE event_id = %s",
            [b'{"n": "changed"}', target.event_id],
        )
        pid = holder.info.backend_pid
        run = asyncio.create_task(rewrite_stream(m, "s"))
        while not run.done():  # until the rewrite's UPDATE waits on the holder's row lock
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as look:
                cur = await look.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))", [pid]
                )
                row = await cur.fetchone()
                if row is not None and row[0]:
                    break
            await asyncio.sleep(0.01)
        await holder.commit()
    report = await run
    assert (report.rewritten, report.changed_meanwhile) == (2, 1)
    stored = [r async for r in p.read_stream("s")]
    assert stored[1].data == b'{"n": "changed"}'
    assert stored[1].metadata == target.metadata
    assert [e.data async for e in m.read_stream("s")] == [{"n": 0, "v": 2}, {"n": "changed", "v": 2}, {"n": 2, "v": 2}]
