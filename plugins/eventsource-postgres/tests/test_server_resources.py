"""The server out of disk (SQLSTATE 53100) or memory (53200): a typed error that says what to do, retried or not.

The real server raises each from a trigger on the provider's events table (``RAISE ... USING ERRCODE``), so the
error crosses the wire, psycopg and the provider's mapping as a full disk's would; a trigger counts the attempts.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from conftest import manager_on
from eventsource.errors import RETRYABLE, ProviderError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg
    from eventsource_postgres import PostgresProvider

DISK_FULL = (
    "RAISE EXCEPTION USING ERRCODE = 'disk_full', "
    "MESSAGE = 'could not extend file \"base/16384/16385\": No space left on device', "
    "HINT = 'Check free disk space.'"
)
OUT_OF_MEMORY = (
    "RAISE EXCEPTION USING ERRCODE = 'out_of_memory', MESSAGE = 'out of memory', "
    "DETAIL = 'Failed on request of size 8192 in memory context \"ExecutorState\".'"
)


async def _failing(admin: psycopg.AsyncConnection[Any], p: PostgresProvider, raise_sql: str, times: int) -> str:
    """A trigger on ``p``'s events table that raises ``raise_sql`` on the first ``times`` attempts; the attempts'
    counter (a sequence: its increments outlive the rolled-back attempts)."""
    schema = p.names.schema
    seq = f'"{schema}"."attempts_{uuid.uuid4().hex[:8]}"'
    await admin.execute(f"CREATE SEQUENCE {seq}")
    await admin.execute(
        f'CREATE FUNCTION "{schema}".fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
        f"IF nextval('{seq}') <= {times} THEN {raise_sql}; END IF; RETURN NEW; END $$"
    )
    await admin.execute(
        f'CREATE TRIGGER fail BEFORE INSERT ON {p.names.events} FOR EACH ROW EXECUTE FUNCTION "{schema}".fail()'
    )
    return seq


async def _attempts(admin: psycopg.AsyncConnection[Any], seq: str) -> int:
    row = await (await admin.execute(f"SELECT last_value, is_called FROM {seq}")).fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


async def test_a_full_disk_is_not_retried_and_says_to_free_space(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any]
) -> None:
    """53100 was a ProviderUnavailableError: retried as a lost connection, and reported (exit 5) as a server that
    cannot be reached, while the server answered that it had no room to write."""
    p = await make_provider()
    seq = await _failing(admin, p, DISK_FULL, times=1_000)
    es = await manager_on(p)
    with pytest.raises(ProviderError) as caught:
        await es.append_event(stream_id="s", event_type="E", data=1)
    err = caught.value
    assert not isinstance(err, RETRYABLE), type(err)
    assert await _attempts(admin, seq) == 1  # never retried
    assert err.details["sqlstate"] == "53100"
    assert "disk" in str(err) and "free space" in str(err) and "No space left on device" in str(err), err
    assert not await es.stream_exists("s")


async def test_out_of_memory_is_retried_and_names_the_reason(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any]
) -> None:
    """53200 is transient (another session's memory, a lock table full for a moment): retried with backoff; once
    the retries are spent the error says the server ran out of memory and what to change if it persists."""
    p = await make_provider()
    es = await manager_on(p)
    seq = await _failing(admin, p, OUT_OF_MEMORY, times=1)
    assert (await es.append_event(stream_id="s", event_type="E", data=1)).version == 1
    assert await _attempts(admin, seq) == 2  # the second attempt wrote it, once
    assert [e.data async for e in es.read_stream("s")] == [1]

    await admin.execute(f"ALTER SEQUENCE {seq} RESTART")
    await admin.execute(
        f'CREATE OR REPLACE FUNCTION "{p.names.schema}".fail() RETURNS trigger LANGUAGE plpgsql '
        f"AS $$ BEGIN PERFORM nextval('{seq}'); {OUT_OF_MEMORY}; END $$"
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        await es.append_event(stream_id="s", event_type="E", data=2)
    err = caught.value
    assert await _attempts(admin, seq) == es.config.retry_attempts
    assert err.details["sqlstate"] == "53200"
    assert "out of memory" in str(err) and "work_mem" in str(err), err
    assert [e.data async for e in es.read_stream("s")] == [1]


def test_a_full_disk_on_the_sync_api_inline_path_is_sent_once(url: str) -> None:
    """The sync API's inline calls have their own reconnect step: a full disk closed the connection there and
    sent the append again on a fresh one, as if the session had been lost."""
    import psycopg
    from eventsource.sync import SyncEventSourcingManager

    schema = f"es_{uuid.uuid4().hex[:16]}"
    settings = {"schema": schema, "sync_inline": True, "application_name": f"es-test-{uuid.uuid4().hex[:12]}"}
    config = {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg"}
    seq = f'"{schema}".attempts'
    try:
        with SyncEventSourcingManager(config) as es, psycopg.connect(url, autocommit=True) as admin:
            events = f'"{schema}".events'  # (the default table names: no table_prefix)
            admin.execute(f"CREATE SEQUENCE {seq}")
            admin.execute(
                f'CREATE FUNCTION "{schema}".fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                f"PERFORM nextval('{seq}'); {DISK_FULL}; END $$"
            )
            admin.execute(
                f'CREATE TRIGGER fail BEFORE INSERT ON {events} FOR EACH ROW EXECUTE FUNCTION "{schema}".fail()'
            )
            with pytest.raises(ProviderError) as caught:
                es.append_event(stream_id="s", event_type="E", data=1)
            assert not isinstance(caught.value, RETRYABLE), type(caught.value)
            row = admin.execute(f"SELECT last_value FROM {seq}").fetchone()
            assert row is not None and row[0] == 1  # sent once
            assert "free space" in str(caught.value)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
