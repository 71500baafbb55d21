"""Fixtures: the real server from EVENTSOURCE_TEST_POSTGRES_URL, one fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
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
