"""Faults: a backend killed mid-batch, an exhausted pool, a server "restart", an unreachable server.

Only this test's own backends are terminated (found by the provider's unique application_name);
the shared server is never restarted: terminating every backend of the pool is what a restart does
to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from eventsource.errors import (
    ConcurrencyError,
    ConflictError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ValidationError,
)
from eventsource.manager import EventSourcingManager
from eventsource.model import ANY, NewEvent, NewSnapshot, NewStream, utcnow
from eventsource.plugins import PluginHost
from eventsource_postgres import PostgresProvider


def batch(n: int) -> list[NewEvent]:
    return [NewEvent(str(uuid.uuid4()), "E", b'{"i": %d}' % i, b"", "json", utcnow()) for i in range(n)]


async def own_pids(admin: psycopg.AsyncConnection[Any], p: PostgresProvider, *, waiting: bool = False) -> list[int]:
    q = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()"
    if waiting:
        q += " AND wait_event_type = 'Lock'"
    cur = await admin.execute(q, [p.settings["application_name"]])
    return [r[0] for r in await cur.fetchall()]


async def wait_for_pids(
    admin: psycopg.AsyncConnection[Any], p: PostgresProvider, *, waiting: bool, exclude: set[int] = frozenset()
) -> list[int]:  # type: ignore[assignment]
    for _ in range(3000):
        pids = [x for x in await own_pids(admin, p, waiting=waiting) if x not in exclude]
        if pids:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError("the backend never showed up")


async def count_events(admin: psycopg.AsyncConnection[Any], p: PostgresProvider, stream_id: str) -> int:
    cur = await admin.execute(f"SELECT count(*) FROM {p.names.events} WHERE stream_id = %s", [stream_id])
    row = await cur.fetchone()
    return int(row[0])  # type: ignore[index]


@contextlib.asynccontextmanager
async def _blocking(url: str, statement: str, params: list[Any]) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Another connection's transaction, which ran ``statement`` and is rolled back when the block ends."""
    blocker = await psycopg.AsyncConnection.connect(url)
    try:
        await blocker.execute(statement, params)
        yield blocker
    finally:
        await blocker.rollback()
        await blocker.close()


def hold_event_id(
    url: str, p: PostgresProvider, event_id: str
) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
    """Insert, and leave uncommitted until the block ends, another row with ``event_id``.

    An append whose batch contains that id inserts the rows before it, then waits on the unique
    index for this transaction: it is stopped in the middle of its batch.
    """
    insert = (
        f"INSERT INTO {p.names.events} "
        "(event_id, stream_id, event_type, version, position, data, metadata, encoding, ts) "
        "VALUES (%s, 'blocker', 'E', 1, 1, '', '', 'json', now())"
    )
    return _blocking(url, insert, [event_id])


async def xid_of(conn: psycopg.AsyncConnection[Any]) -> str:
    cur = await conn.execute("SELECT pg_current_xact_id()::text")
    return str((await cur.fetchone())[0])  # type: ignore[index]


async def waits_on(admin: psycopg.AsyncConnection[Any], pid: int) -> str | None:
    """The transaction a backend waits for (it waits on a row another transaction wrote), if any."""
    cur = await admin.execute(
        "SELECT transactionid::text FROM pg_locks WHERE pid = %s AND NOT granted AND locktype = 'transactionid'", [pid]
    )
    row = await cur.fetchone()
    return row[0] if row else None


def hold_stream_row(
    url: str, p: PostgresProvider, stream_id: str
) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
    """Lock the streams row until the block ends: an append then inserts its whole batch and waits to commit."""
    return _blocking(url, f"SELECT 1 FROM {p.names.streams} WHERE stream_id = %s FOR UPDATE", [stream_id])


async def test_backend_killed_mid_batch_leaves_nothing_and_the_retry_writes_once(
    make_provider: Callable[..., Any], url: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    p = await make_provider(reconnect_retries=1)
    s = "mid-batch"
    await p.append(s, batch(1), ANY)
    events = batch(100)
    async with hold_event_id(url, p, events[49].event_id) as blocker:
        task = asyncio.create_task(p.append(s, events, 1))
        [pid] = await wait_for_pids(admin, p, waiting=True)
        # the backend has written the streams row and 49 events, and waits at the 50th: kill it there
        assert await waits_on(admin, pid) == await xid_of(blocker)
        cur = await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert (await cur.fetchone())[0]  # type: ignore[index]
        # the provider reconnects and retries the same batch, which waits on the same row again
        await wait_for_pids(admin, p, waiting=True, exclude={pid})
        assert await count_events(admin, p, s) == 1, "no event of the killed batch may be visible"
    res = await asyncio.wait_for(task, timeout=60)
    assert not res.duplicate
    assert (res.first_version, res.last_version) == (2, 101)
    stored = [e async for e in p.read_stream(s)]
    assert [e.version for e in stored] == list(range(1, 102))
    assert [e.event_id for e in stored[1:]] == [e.event_id for e in events]


async def test_backend_killed_mid_batch_raises_unavailable_and_a_manual_retry_writes_once(
    make_provider: Callable[..., Any], url: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    p = await make_provider(reconnect_retries=0)
    s = "mid-batch-no-retry"
    await p.append(s, batch(1), ANY)
    events = batch(100)
    async with hold_event_id(url, p, events[49].event_id):
        task = asyncio.create_task(p.append(s, events, 1))
        [pid] = await wait_for_pids(admin, p, waiting=True)
        await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(ProviderUnavailableError) as info:
            await asyncio.wait_for(task, timeout=60)
        assert info.value.details["operation"] == "append"
        assert await count_events(admin, p, s) == 1
    again = await p.append(s, events, 1)  # what the manager's retry does: same ids, same expectation
    assert not again.duplicate
    assert (again.first_version, again.last_version) == (2, 101)
    twice = await p.append(s, events, 1)  # and a retry after success returns the original result
    assert twice.duplicate
    assert twice.positions == again.positions
    assert await count_events(admin, p, s) == 101


async def test_pool_exhausted_raises_the_typed_timeout(make_provider: Callable[..., Any]) -> None:
    p = await make_provider(pool_min_size=1, pool_max_size=1, pool_timeout=0.2)
    assert p._conn.pool is not None
    async with p._conn.pool.connection():  # the only connection is busy
        with pytest.raises(ProviderTimeoutError) as info:
            await p.get_stream_info("x")
        assert info.value.type == "timeout"
        with pytest.raises(ProviderTimeoutError):
            await p.append("x", batch(1), ANY)
        m = EventSourcingManager(
            {"providers": {}, "default_provider": None, "retry_attempts": 2, "retry_delay": 0.01},
            host=PluginHost(load_entrypoints=False),
        )
        await m.register_provider(p, name="pg", default=True)
        with pytest.raises(ProviderTimeoutError):
            await m.append_event(stream_id="x", event_type="E", data={})
        health = await p.health()
        assert not health.healthy
        assert "postgres" in health.message
    assert (await p.append("x", batch(1), ANY)).first_version == 1


async def test_statement_timeout_raises_the_typed_timeout(make_provider: Callable[..., Any], url: str) -> None:
    p = await make_provider(statement_timeout=0.2, reconnect_retries=0)
    await p.append("slow", batch(1), ANY)
    async with hold_stream_row(url, p, "slow"):
        with pytest.raises(ProviderTimeoutError):
            await p.append("slow", batch(1), 1)
    assert [e.version async for e in p.read_stream("slow")] == [1]


async def test_a_restart_is_survived_by_reconnecting(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any]
) -> None:
    p = await make_provider(pool_min_size=3, pool_max_size=3)
    await asyncio.gather(*(p.append(f"r{i}", batch(2), ANY) for i in range(6)))
    pids = await own_pids(admin, p)
    for _ in range(300):  # connect()'s one-off probe connection may still be listed for a moment
        if len(pids) == 3:
            break
        await asyncio.sleep(0.01)
        pids = await own_pids(admin, p)
    assert len(pids) == 3
    for pid in pids:  # what a server restart does to every pooled connection
        await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    for _ in range(3000):
        if not set(pids) & set(await own_pids(admin, p)):
            break
        await asyncio.sleep(0.01)
    # every idle connection in the pool is now dead; each kind of call must still work
    assert (await p.get_stream_info("r0")).version == 2  # type: ignore[union-attr]
    assert (await p.append("r0", batch(1), 2)).first_version == 3
    assert len([e async for e in p.read_all()]) == 13
    info = await p.create_stream(NewStream("fresh"))
    assert info.version == 0
    assert (await p.health()).healthy
    assert not set(pids) & set(await own_pids(admin, p))


async def test_unreachable_server_is_unavailable_and_the_password_never_shows() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:s3cr3t-pw@127.0.0.1:{port}/test"
    p = PostgresProvider(url, connect_timeout=1, schema="never")
    with pytest.raises(ProviderUnavailableError) as info:
        await p.connect()
    text = str(info.value) + repr(info.value.details) + repr(p) + str(p.display_url)
    assert "s3cr3t-pw" not in text
    assert "***" in str(p.display_url)
    health = await p.health()
    assert not health.healthy
    await p.close()


async def test_tls_settings_reach_libpq(url: str, admin: psycopg.AsyncConnection[Any]) -> None:
    """sslmode is passed through to libpq: required TLS either is used or fails the connection."""
    cur = await admin.execute("SHOW ssl")
    server_tls = (await cur.fetchone())[0] == "on"  # type: ignore[index]
    app = f"es-tls-{uuid.uuid4().hex[:8]}"
    p = PostgresProvider(
        url, sslmode="require", connect_timeout=2, schema=f"es_{uuid.uuid4().hex[:12]}", application_name=app
    )
    if not server_tls:
        with pytest.raises(ProviderUnavailableError) as info:
            await p.connect()
        assert "SSL" in str(info.value)
        return
    await p.connect()
    try:
        cur = await admin.execute(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = %s",
            [app],
        )
        assert (await cur.fetchone())[0] is True  # type: ignore[index]
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{p.names.schema}" CASCADE')
        await p.close()


async def test_the_idle_check_tells_live_from_dropped_connections(
    url: str, admin: psycopg.AsyncConnection[Any]
) -> None:
    """The zero-round-trip check works above select()'s FD_SETSIZE too (poll, not select)."""
    import os
    import resource

    from eventsource_postgres.connection import _stale

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if soft < want <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    fillers = []
    try:
        while len(fillers) < 1100:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        app = f"es-idle-{uuid.uuid4().hex[:8]}"
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name=app)
        try:
            assert not _stale(conn)
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [app]
            )
            for _ in range(3000):
                if _stale(conn):
                    break
                await asyncio.sleep(0.01)
            assert _stale(conn)
        finally:
            await conn.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_dsn_connects_and_an_unreachable_one_never_shows_its_password(url: str) -> None:
    from eventsource_postgres.settings import target_secrets

    parts = urlsplit(url)
    dsn = f"host={parts.hostname} port={parts.port or 5432} dbname={parts.path.lstrip('/')} user={parts.username}"
    if parts.password:
        dsn += f" password={parts.password}"
    schema = f"es_{uuid.uuid4().hex[:12]}"
    p = PostgresProvider(dsn, schema=schema, pool_max_size=1)
    await p.connect()
    try:
        assert (await p.append("dsn", batch(1), ANY)).first_version == 1
    finally:
        assert p._conn.pool is not None
        async with p._conn.pool.connection() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await p.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = PostgresProvider(
        f"host=127.0.0.1 port={port} dbname=test user=postgres password=s3cr3t-pw", connect_timeout=1
    )
    assert "s3cr3t-pw" in target_secrets(bad.url or "")
    with pytest.raises(ProviderUnavailableError) as info:
        await bad.connect()
    assert "s3cr3t-pw" not in str(info.value) + repr(bad)


async def test_a_snapshot_of_a_recreated_stream_is_refused_while_an_append_is_in_flight(
    url: str, make_provider: Callable[..., Any]
) -> None:
    """The check reads the stream after taking its lock: an append of that version committing while
    the save waits must not make the old incarnation's event look merely truncated (then accepted)."""
    p = await make_provider()
    s = f"snap-{uuid.uuid4().hex[:8]}"
    r = await p.append(s, batch(3), ANY)
    old = NewSnapshot("snap-old", s, 3, b"{}", b"", "json", utcnow(), position=r.positions[2])
    await p.delete_stream(s)
    await p.append(s, batch(2), ANY)
    statement, params = p._appender.statement(s, batch(1), ANY, None)
    writer = await psycopg.AsyncConnection.connect(url)
    try:
        await writer.execute(statement, params)  # version 3 of the new stream, not committed yet
        save = asyncio.create_task(p.save_snapshot(old))
        await asyncio.sleep(0.3)
        assert not save.done()  # waits for the stream's lock, which the append holds
        await writer.commit()
    finally:
        await writer.close()
    with pytest.raises(ConcurrencyError):
        await save
    assert await p.get_snapshot(s) is None


def test_a_transaction_the_server_rolled_back_is_a_conflict_not_a_lost_connection() -> None:
    import psycopg.errors
    from eventsource_postgres.errors import connection_lost, map_error

    for exc in (
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize"),
    ):
        err = map_error(exc, operation="delete_stream", where="pg")
        assert type(err) is ConflictError, err
        assert "nothing was written" in str(err)
        assert not connection_lost(exc)
    nul = psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    assert isinstance(map_error(nul, operation="append", where="pg"), ValidationError)


@pytest.mark.parametrize(
    ("target", "secret"),
    [
        ("postgresql://app:pa?ss@127.0.0.1:1/test", "pa?ss"),  # libpq reads the password up to the '@'
        ("postgresql://app:pa#ss@127.0.0.1:1/test", "pa#ss"),
        ("postgresql://app:p%40ss@127.0.0.1:1/test", "p@ss"),  # what the driver was given, decoded
        ("postgresql://app@127.0.0.1:1/test?password=qq-pw&sslpassword=ssl-pw", "ssl-pw"),
        ("host=127.0.0.1 port=1 dbname=test sslpassword=ssl-pw password=pw", "ssl-pw"),
        ("host=127.0.0.1 port=1 dbname=test password='a b\\'c'", "a b'c"),
    ],
)
def test_a_driver_message_that_echoes_any_secret_of_the_target_is_scrubbed(target: str, secret: str) -> None:
    import psycopg
    from eventsource_postgres.errors import map_error
    from eventsource_postgres.settings import target_secrets

    echoed = psycopg.OperationalError(f'connection failed: bad credentials "{secret}" for user app')
    err = map_error(echoed, operation="connect", where="db", secrets=target_secrets(target))
    assert secret not in str(err)
    assert "***" in str(err)


@pytest.mark.parametrize("state", ["in a statement", "in a transaction"])
async def test_a_connection_not_idle_on_the_server_is_stale(url: str, state: str) -> None:
    """A connection an interrupt left mid-statement or mid-transaction must not serve the next call as if idle."""
    from eventsource_postgres.connection import _stale

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        assert not _stale(conn)
        if state == "in a statement":
            conn.pgconn.send_query(b"SELECT pg_sleep(30)")  # sent, its answer never read: the server is busy with it
        else:
            await conn.execute("BEGIN")
        assert _stale(conn)
    finally:
        conn.pgconn.finish()


async def test_when_no_host_of_a_list_can_be_used_the_error_gives_each_hosts_reason(url: str) -> None:
    # a multi-host url (failover) whose hosts all fail: one refuses the connection, the other is read-only (here a
    # session option; in a failover, a standby not yet promoted). The message kept only the first line of the
    # driver's, the last host's reason: "session is read-only", with no word of the host that was down
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parts = urlsplit(url)
    hosts = f"{parts.username}@127.0.0.1:{port},{parts.hostname}:{parts.port or 5432}"
    options = "options=-c%20default_transaction_read_only%3Don"
    listed = f"postgresql://{hosts}{parts.path}?target_session_attrs=read-write&connect_timeout=2&{options}"
    p = PostgresProvider(listed, schema="never")
    with pytest.raises(ProviderUnavailableError) as info:
        await p.connect()
    text = str(info.value)
    assert f"127.0.0.1:{port}: Connection refused" in text, text
    assert f"{parts.hostname}:{parts.port or 5432}: session is read-only" in text, text
    assert "no host of the url could be used" in text, text
    await p.close()
