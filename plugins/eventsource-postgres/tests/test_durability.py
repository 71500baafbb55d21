"""The durability audit on the real server: a session with ``synchronous_commit=off`` makes the store degraded.

The unsafe session is made the way an application would: libpq ``options`` in the connection URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from eventsource.testing import DurabilitySuite
from eventsource_postgres import PostgresProvider
from eventsource_postgres.monitoring import AUDIT, audit


def _with_options(url: str, options: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options={options.replace(' ', '%20').replace('=', '%3D')}"


class TestPostgresDurability(DurabilitySuite):
    """The server's defaults are safe; ``-c synchronous_commit=off`` on the provider's connections is not."""

    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()

    @pytest.fixture
    async def unsafe(self, url: str, provider: PostgresProvider) -> AsyncIterator[tuple[PostgresProvider, str]]:
        p = PostgresProvider(_with_options(url, "-c synchronous_commit=off"), schema=provider.names.schema)
        await p.connect()
        yield p, "synchronous_commit"
        await p.close()


async def test_session_and_new_session_values_are_told_apart(url: str) -> None:
    """``SET`` in the session is reported as the session's; a reset value of off as the new sessions'."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET synchronous_commit = off")
        rows = await (await conn.execute(AUDIT)).fetchall()
        (r,) = audit(rows)
        assert (r["setting"], r["value"], r["scope"]) == ("synchronous_commit", "off", "session (set by: session)")
    async with await psycopg.AsyncConnection.connect(_with_options(url, "-c synchronous_commit=off")) as conn:
        await conn.execute("SET synchronous_commit = on")
        (r,) = audit(await (await conn.execute(AUDIT)).fetchall())
        assert (r["setting"], r["scope"]) == ("synchronous_commit", "new sessions (reset value)")


def test_server_settings_are_named_with_their_scope() -> None:
    """``fsync`` and ``full_page_writes`` cannot be set per session: their scope is the server."""
    rows = [("fsync", "off", "off", "configuration file"), ("full_page_writes", "off", "off", "command line")]
    got = [(r["setting"], r["scope"]) for r in audit(rows)]
    assert got == [("fsync", "server"), ("full_page_writes", "server")]
    assert audit([("fsync", "on", "on", "default"), ("synchronous_commit", "local", "local", "default")]) == []


async def test_a_role_setting_made_after_connect_is_seen(url: str, admin: psycopg.AsyncConnection[Any]) -> None:
    """Review: ``ALTER ROLE ... SET synchronous_commit = off`` after the pool connected applies to every new
    pooled connection (max_lifetime, a reconnect, the pool growing); health read only the pooled session's
    values, fixed at its login, and said healthy."""
    import uuid

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"es_review_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')  # (owns its test schema; dropped below)
    params = conninfo_to_dict(url)
    params["user"] = role
    schema = f"es_{uuid.uuid4().hex[:16]}"
    p = PostgresProvider(make_conninfo(**params), schema=schema, pool_min_size=1, pool_max_size=1)  # one session
    try:
        await p.connect()
        assert (await p.health()).details["status"] == "healthy"
        await admin.execute(f'ALTER ROLE "{role}" SET synchronous_commit = off')
        fresh = await psycopg.AsyncConnection.connect(make_conninfo(**params), autocommit=True)
        async with fresh:  # what a new pooled connection gets from now on
            assert (await (await fresh.execute("SHOW synchronous_commit")).fetchone()) == ("off",)
        status = await p.health()
        assert status.details["status"] == "degraded", status.message
        (r,) = status.details["durability_risks"]
        assert (r["setting"], r["value"]) == ("synchronous_commit", "off")
        assert "ALTER ROLE" in r["scope"]
    finally:
        await p.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{p.names.schema}" CASCADE')
        await admin.execute(f'DROP ROLE "{role}"')


async def test_a_read_only_session_is_unhealthy(url: str, make_provider: Callable[..., Any]) -> None:
    """Review: with ``default_transaction_read_only=on`` on the provider's connections every append failed
    ("cannot execute ... in a read-only transaction"), yet health said healthy: it reads, and never writes."""
    from eventsource.model import NewEvent, utcnow

    provider = await make_provider()
    p = PostgresProvider(_with_options(url, "-c default_transaction_read_only=on"), schema=provider.names.schema)
    await p.connect()
    try:
        ev = NewEvent(event_id="ro-1", event_type="T", data=b"{}", metadata=b"{}", encoding="json", timestamp=utcnow())
        with pytest.raises(Exception, match="read-only"):
            await p.append("ro", [ev], -1)
        status = await p.health()
        assert not status.healthy
        assert status.details["reason"] == "read_only"
        assert "default_transaction_read_only" in status.message
    finally:
        await p.close()
    assert (await provider.health()).details["status"] == "healthy"
