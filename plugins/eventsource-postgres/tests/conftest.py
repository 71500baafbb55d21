"""Fixtures: the real server from EVENTSOURCE_TEST_POSTGRES_URL, one fresh schema per test.

``make_provider`` builds connected providers on fresh schemas; ``aged`` is one of them with a manager and
:meth:`AgedStore.fill`, which appends events one second apart from a fixed past moment (retention's input).
Every all-streams read waits for the oldest transaction running in the cluster (``pg_snapshot_xmin``): a
test that leaves one open fails at its end, and a failing test's report lists the transactions running.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.testing import AbsentStore
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


HOLDERS = (
    "SELECT pid, backend_xid::text, client_port, state, now() - xact_start, application_name, left(query, 120) "
    "FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY age(backend_xid) DESC"
)
"""The server's transactions that hold a transaction id, oldest first: the ones all-streams reads wait for."""


def horizon_holders(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(HOLDERS).fetchall()


def own_ports() -> set[int]:
    """The local TCP ports of the sockets this process and its child processes hold (Linux ``/proc``; else none)."""
    tables = [t for t in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")) if t.exists()]
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir() if tables else ():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree = {os.getpid()}
    while grown := {p for p, pp in parents.items() if pp in tree} - tree:
        tree |= grown
    inodes = set()
    for pid in tree:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    inodes.add(str(fd.readlink()).removeprefix("socket:[").removesuffix("]"))
    return {
        int(cols[1].rsplit(":", 1)[1], 16)
        for table in tables
        for cols in (line.split() for line in table.read_text().splitlines()[1:])
        if cols[9] in inodes
    }


@pytest.fixture(autouse=True)
def _no_transaction_left_open() -> Iterator[None]:
    """Fail a test that leaves a transaction of this process (or a child) running with a transaction id.

    It would hold back every later all-streams read in the cluster: a later test's subscription waits and
    times out, far from the cause. Runs after the test's other fixtures are torn down (it is set up first);
    a transaction already running before the test is not this test's.
    """
    before = {h[:2] for h in horizon_holders(pg_url())}
    yield
    new = [h for h in horizon_holders(pg_url()) if h[:2] not in before]
    ports = own_ports() if new else set()
    left = [h for h in new if h[2] in ports]
    assert not left, f"the test left transactions running (pid, xid, port, state, for, name, query): {left}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report lists the transactions all-streams reads were waiting for, if any still run."""
    report = yield
    if report.failed and call.when == "call":
        with contextlib.suppress(psycopg.Error):
            rows = "\n".join(map(str, horizon_holders(pg_url()))) or "none"
            title = "transactions holding pg_snapshot_xmin (pid, xid, port, state, for, name, query)"
            report.sections.append((title, rows))
    return report


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
        p = PostgresProvider(settings.pop("url_override", url), **settings)
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


@pytest.fixture
async def absent_at(url: str) -> AsyncIterator[Callable[..., AbsentStore]]:
    """``absent_at(schema=None, table_prefix="")``: an :class:`AbsentStore` nothing has created there.

    A schema of its own by default (dropped afterwards, whatever a test created in it); in a given schema, the
    tables of ``table_prefix`` (dropped afterwards, the schema left to whoever made it).
    """
    made: list[tuple[str, str, bool]] = []

    def absent(schema: str | None = None, table_prefix: str = "") -> AbsentStore:
        own = schema is None
        name = schema or f"es_{uuid.uuid4().hex[:16]}"
        made.append((name, table_prefix, own))

        async def leftovers() -> list[str]:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = %s AND %s UNION ALL "
                    "SELECT 'relation ' || relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE nspname = %s AND starts_with(relname, %s) ORDER BY 1",
                    [name, own, name, table_prefix],
                )
                return [str(r[0]) for r in await cur.fetchall()]

        args = {"url": url, "schema": name, "table_prefix": table_prefix, "pool_max_size": 2}
        return AbsentStore(args, leftovers)

    yield absent
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name, prefix, own in made:
            if own:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            else:
                for t in ("snapshots", "events", "streams", "migrations"):
                    await conn.execute(f'DROP TABLE IF EXISTS "{name}"."{prefix}{t}" CASCADE')


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


@pytest.fixture
async def checkpoint_store(url: str) -> AsyncIterator[Any]:
    """A connected PostgreSQL checkpoint store on a fresh schema, dropped afterwards."""
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    schema = f"cp_{uuid.uuid4().hex[:16]}"
    s = PostgresCheckpointStore(url, schema=schema)
    await s.connect()
    yield s
    await s.close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def es(make_provider: Callable[..., Any]) -> AsyncIterator[EventSourcingManager]:
    """A manager over a provider on a schema of its own (the projection tests' store)."""
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost())
    await m.register_provider(await make_provider(), name="pg", default=True)
    yield m
