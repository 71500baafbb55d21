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


async def _waits_for_lock(admin: Any, name: str, append: Any) -> bool:
    """Whether ``append`` (started) waits for an advisory lock on the server, or ends without waiting."""
    import asyncio

    while not append.done():
        cur = await admin.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = %s",
            [name],
        )
        if (await cur.fetchone())[0]:
            return True
        await asyncio.sleep(0.02)
    await append  # (raises what it raised)
    return False


async def test_stores_in_other_schemas_or_prefixes_never_share_a_stream_lock(
    make_provider: Callable[..., Any], admin: Any
) -> None:
    """Each store remembers its own stream lock keys: the same stream id in another schema or under another
    table prefix (or an id differing only in case) is not held up by this stream's lock, this one is."""
    import asyncio

    from eventsource_postgres.settings import lock_key

    schema = f"es_{uuid.uuid4().hex[:16]}"
    apps = [f"es-lock-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    same = await make_provider(schema=schema, application_name=apps[0])
    prefixed = await make_provider(schema=schema, table_prefix="b_", application_name=apps[1])
    other = await make_provider(application_name=apps[2])
    for p in (same, prefixed, other):
        await p.append("a", [new_event()], ANY)  # every store has remembered its key for "a"
    await admin.execute("SELECT pg_advisory_lock(%s)", [lock_key("stream", schema, "", "a")])
    try:
        for p, app, sid in ((prefixed, apps[1], "a"), (other, apps[2], "a"), (same, apps[0], "A")):
            assert not await _waits_for_lock(admin, app, asyncio.ensure_future(p.append(sid, [new_event()], ANY)))
        held = asyncio.ensure_future(same.append("a", [new_event()], 1))
        assert await _waits_for_lock(admin, apps[0], held)
    finally:
        await admin.execute("SELECT pg_advisory_unlock_all()")
    assert (await held).first_version == 2


async def test_long_stream_ids_are_not_kept_with_their_lock_keys(make_provider: Callable[..., Any], admin: Any) -> None:
    """The remembered keys stay small whatever the ids' length (up to 65,536 characters with
    ``max_stream_id_length``), and a long id's append still takes the formula's key."""
    import asyncio

    from eventsource_postgres.settings import lock_key

    name = f"es-lock-{uuid.uuid4().hex[:12]}"
    p = await make_provider(application_name=name)
    long_ids = [f"{i}-" + "\U0001d11e" * 10_000 for i in range(3)]
    for sid in [*long_ids, "short"]:
        await p.append(sid, [new_event()], ANY)
    assert "short" in p._conn._lock_keys
    assert max(len(k) for k in p._conn._lock_keys) < 1_000
    await admin.execute("SELECT pg_advisory_lock(%s)", [lock_key("stream", p.names.schema, "", long_ids[0])])
    try:
        held = asyncio.ensure_future(p.append(long_ids[0], [new_event()], 1))
        assert await _waits_for_lock(admin, name, held)
    finally:
        await admin.execute("SELECT pg_advisory_unlock_all()")
    assert (await held).first_version == 2


def test_the_stream_lock_key_formula_is_the_one_every_version_computes() -> None:
    """Writers of two library versions on one store must take the same lock for a stream: the formula's
    values are pinned (a change of separator, hash or person string would let their appends interleave)."""
    from eventsource_postgres.settings import lock_key

    assert lock_key("stream", "eventsource", "", "order-1") == -7559094392583017410
    assert lock_key("stream", "es_x", "p_", "Ünï \U0001d11e") == 3072534448523956153


@pytest.mark.parametrize("size", [1, 3])
async def test_the_append_result_holds_every_field_in_its_place(make_provider: Callable[..., Any], size: int) -> None:
    """The result (built positionally) equals the one built by field name from what the store holds, and the
    identical retry's equals it but for ``duplicate``."""
    from dataclasses import replace
    from datetime import timedelta

    from eventsource.model import AppendResult

    p = await make_provider()
    await p.append("r", [new_event()], NO_STREAM)
    t0 = utcnow() - timedelta(hours=1)
    batch = [replace(new_event(), timestamp=t0 + timedelta(seconds=i)) for i in range(size)]
    r = await p.append("r", batch, 1)
    stored = [e async for e in p.read_stream("r", from_version=2)]
    assert type(r) is AppendResult
    assert r == AppendResult(
        stream_id="r",
        first_version=2,
        last_version=1 + size,
        positions=tuple(e.position for e in stored),
        event_ids=tuple(e.event_id for e in batch),
        timestamp=t0,
        duplicate=False,
    )
    assert await p.append("r", batch, ANY) == replace(r, duplicate=True)


def test_lock_keys_stay_the_formulas_while_threads_evict_them(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads asking for keys while others clear the bounded cache (sync callers on their own threads) each
    get the formula's key, and the cache stays within its bound (plus one entry per racing thread)."""
    import threading

    from eventsource_postgres import PostgresProvider, connection
    from eventsource_postgres.settings import lock_key

    monkeypatch.setattr(connection, "LOCK_KEYS_KEPT", 8)
    p = PostgresProvider(url, schema="es_threads", table_prefix="t_")  # (keys need no connection)
    wrong: list[str] = []
    sizes: list[int] = []

    def ask(n: int) -> None:
        for i in range(5_000):
            sid = f"{(i * 7 + n) % 50}-Ü"
            if p._conn.lock(sid) != lock_key("stream", "es_threads", "t_", sid):
                wrong.append(sid)
            sizes.append(len(p._conn._lock_keys))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert max(sizes) <= 8 + len(threads)


async def test_text_that_is_not_unicode_is_a_validation_error_and_writes_nothing(
    make_provider: Callable[..., Any],
) -> None:
    """Review: a lone surrogate (no UTF-8 form) in a stream id raised a bare UnicodeEncodeError from the provider's
    append (the lock key is computed before the statement), and in an event type or any other call a
    ProviderError: bad input gets ValidationError, as NUL does."""
    p = await make_provider()
    bad = "s\ud800"
    for call in (
        lambda: p.append(bad, [new_event()], ANY),
        lambda: p.append("s", [NewEvent(str(uuid.uuid4()), "E\ud800", b"{}", b"", "json", utcnow())], ANY),
        lambda: p.get_stream_info(bad),
        lambda: p.delete_stream(bad),
        lambda: p.truncate_stream(bad, 2),
    ):
        with pytest.raises(ValidationError):
            await call()
    assert [e async for e in p.read_all()] == []
    assert await p.get_stream_info("s") is None
