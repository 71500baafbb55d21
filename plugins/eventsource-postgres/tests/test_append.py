"""Append details the kit reaches only through the manager."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eventsource.errors import ConcurrencyError, ValidationError
from eventsource.model import ANY, NO_STREAM, STREAM_EXISTS, NewEvent, NewStream, utcnow


def new_event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


async def test_provider_refuses_a_batch_repeating_an_event_id(make_provider: Callable[..., Any]) -> None:
    p = await make_provider()
    e = new_event()
    with pytest.raises(ValidationError):
        await p.append("dup-in-batch", [e, e], ANY)
    assert [x async for x in p.read_stream("dup-in-batch")] == []


@pytest.mark.parametrize("size", [1, 3])
async def test_every_expected_form_single_and_batch(make_provider: Callable[..., Any], size: int) -> None:
    p = await make_provider()
    batch = lambda: [new_event() for _ in range(size)]  # noqa: E731
    with pytest.raises(ConcurrencyError) as info:
        await p.append("s", batch(), STREAM_EXISTS)
    assert (info.value.actual, info.value.expected) == (0, "STREAM_EXISTS")
    with pytest.raises(ConcurrencyError):
        await p.append("s", batch(), 2)
    r = await p.append("s", batch(), NO_STREAM, NewStream("s", name="S", metadata={"k": 1}))
    assert (r.first_version, r.last_version) == (1, size)
    with pytest.raises(ConcurrencyError) as info:
        await p.append("s", batch(), NO_STREAM)
    assert info.value.actual == size
    with pytest.raises(ConcurrencyError):
        await p.append("s", batch(), 0)
    r = await p.append("s", batch(), size)
    assert r.first_version == size + 1
    r = await p.append("s", batch(), STREAM_EXISTS)
    r = await p.append("s", batch(), ANY)
    assert r.last_version == 4 * size
    info_ = await p.get_stream_info("s")
    assert (info_.version, info_.event_count, info_.name, info_.metadata) == (4 * size, 4 * size, "S", {"k": 1})
    assert [e.version async for e in p.read_stream("s")] == list(range(1, 4 * size + 1))
    positions = [e.position async for e in p.read_stream("s")]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)


async def test_append_takes_the_lock_key_every_process_computes(
    make_provider: Callable[..., Any], admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remembered stream lock keys are the formula's (another process, or another version, computes them
    afresh), also once the store has forgotten them past its bound: an append waits for a lock taken that way."""
    import asyncio

    from eventsource_postgres import connection
    from eventsource_postgres.settings import lock_key

    monkeypatch.setattr(connection, "LOCK_KEYS_KEPT", 2)
    name = f"es-lock-{uuid.uuid4().hex[:12]}"
    p = await make_provider(table_prefix="lk_", application_name=name)
    for sid in ("a", "b", "c", "a"):  # "c" fills the bound: "a" is computed again
        await p.append(sid, [new_event()], ANY)
        assert p._conn.lock(sid) == lock_key("stream", p.names.schema, "lk_", sid)
    assert len(p._conn._lock_keys) <= 2
    await admin.execute("SELECT pg_advisory_lock(%s)", [lock_key("stream", p.names.schema, "lk_", "a")])
    try:
        append = asyncio.ensure_future(p.append("a", [new_event()], 2))
        waited = False
        for _ in range(400):  # until the append waits for the lock on the server
            cur = await admin.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
                [name],
            )
            waited = bool((await cur.fetchone())[0])
            if waited:
                break
            await asyncio.sleep(0.05)
        assert waited
        assert not append.done()
    finally:
        await admin.execute("SELECT pg_advisory_unlock_all()")
    assert (await append).first_version == 3
