"""Fixtures: the real server from EVENTSOURCE_TEST_POSTGRES_URL, one fresh schema per test.

``make_provider`` builds connected providers on fresh schemas; ``aged`` is one of them with a manager and
:meth:`AgedStore.fill`, which appends events one second apart from a fixed past moment (retention's input).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource_postgres import PostgresProvider

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"  # as eventsource.testing.pytest_plugin.DEFAULTS


def pg_url() -> str:
    return os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL") or DEFAULT_URL


@pytest.fixture
def url() -> str:
    return pg_url()


@pytest.fixture
async def admin(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A raw autocommit connection for set-up, inspection and fault injection."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    yield conn
    await conn.close()


@pytest.fixture
async def make_provider(url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build connected providers on fresh schemas; every schema is dropped afterwards."""
    made: list[PostgresProvider] = []

    async def make(**settings: Any) -> PostgresProvider:
        settings.setdefault("schema", f"es_{uuid.uuid4().hex[:16]}")
        settings.setdefault("pool_max_size", 4)
        # a suite running at the same time on the same server may hold a transaction open for a few
        # seconds (the fault and ordering tests do): wait it out rather than end a read_all early
        settings.setdefault("visibility_wait", 30)
        settings.setdefault("application_name", f"es-test-{uuid.uuid4().hex[:12]}")
        p = PostgresProvider(url, **settings)
        await p.connect()
        made.append(p)
        return p

    yield make
    schemas = {p.names.schema for p in made}
    for p in made:
        await p.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


T0 = datetime(2020, 1, 1, tzinfo=UTC)


async def manager_on(p: PostgresProvider) -> EventSourcingManager:
    """A manager whose only (default) provider is ``p`` (named ``pg``); closing ``p`` is the caller's."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="pg", default=True)
    return m


@dataclass
class AgedStore:
    """A provider on a fresh schema, a manager on it, and events dated ``t0`` plus their index in seconds."""

    provider: PostgresProvider
    manager: EventSourcingManager
    t0: datetime = T0

    def at(self, seconds: int) -> datetime:
        return self.t0 + timedelta(seconds=seconds)

    async def fill(self, stream_id: str, start: int, stop: int) -> None:
        """Append events ``start`` to ``stop - 1`` (each at ``at(j)``) to ``stream_id``, in batches of 1,000."""
        for lo in range(start, stop, 1000):
            batch = [EventData("T", {}, timestamp=self.at(j)) for j in range(lo, min(lo + 1000, stop))]
            await self.manager.append_events_batch(stream_id=stream_id, events=batch)


@pytest.fixture
async def aged(make_provider: Callable[..., Any]) -> AgedStore:
    """An :class:`AgedStore` on a fresh schema (dropped after the test, as ``make_provider``'s are)."""
    p = await make_provider()
    return AgedStore(p, await manager_on(p))
