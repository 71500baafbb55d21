"""The kit's ProjectionSuite with PostgreSQL as the source (into SQLite and into PostgreSQL, handed over by the
advisory-lock lease), and the PostgreSQL sink's sync and async handlers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections import ErrorPolicy, Projection, ProjectionRunner, ProjectionStoppedError
from eventsource.projections.postgres import PostgresSink
from eventsource.testing.projections import ProjectionSuite
from eventsource_postgres.checkpoints import PostgresCheckpointStore

if TYPE_CHECKING:
    from eventsource.model import Event
    from eventsource_postgres import PostgresProvider


class TestPostgresProjections(ProjectionSuite):
    @pytest.fixture
    async def provider(self, make_provider: Callable[..., Any]) -> AsyncIterator[PostgresProvider]:
        yield await make_provider()

    @pytest.fixture
    def lease_url(self, url: str) -> str:
        return url


class TestPostgresProjectionsIntoPostgres(TestPostgresProjections):
    @pytest.fixture
    def sink_spec(self, url: str) -> Iterator[dict[str, Any]]:
        schema = f"sink_{uuid.uuid4().hex[:12]}"
        yield {"kind": "postgres", "url": url, "schema": schema}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def create_table(self, sink: dict[str, Any], table: str) -> None:
        with psycopg.connect(sink["url"], autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{sink["schema"]}"')
            conn.execute(
                f'CREATE TABLE "{sink["schema"]}".{table} '
                "(event_id text PRIMARY KEY, position bigint, runner int, applied int)"
            )

    def applied(self, sink: dict[str, Any], table: str) -> dict[str, tuple[int, int, int]]:
        with psycopg.connect(sink["url"], autocommit=True) as conn:
            rows = conn.execute(f'SELECT event_id, applied, runner, position FROM "{sink["schema"]}".{table}')
            return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows.fetchall()}

    def _spec(self, provider: Any, sink: dict[str, Any], table: str, lease: str | None) -> dict[str, Any]:
        spec = super()._spec(provider, sink, table, lease)
        spec["table"] = f'"{sink["schema"]}".{table}'  # the worker writes the schema-qualified table
        return spec


@pytest.fixture
def sink_schema(url: str) -> Iterator[str]:
    schema = f"sink_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def totals(url: str, schema: str) -> list[Any]:
    with psycopg.connect(url) as conn, contextlib.suppress(psycopg.errors.UndefinedTable):
        return conn.execute(f'SELECT account, total FROM "{schema}".totals ORDER BY account').fetchall()
    return []


def ddl(schema: str) -> str:
    return f'CREATE TABLE IF NOT EXISTS "{schema}".totals (account text PRIMARY KEY, total int)'


def upsert(schema: str) -> str:
    return (
        f'INSERT INTO "{schema}".totals VALUES (%s, %s) '
        "ON CONFLICT (account) DO UPDATE SET total = totals.total + excluded.total"
    )


def _summing(name: str, sink_schema: str) -> Projection[psycopg.AsyncConnection[Any]]:
    """Projection ``name``, async: each ``Deposited`` event's amount added to its account's row of ``totals``."""
    p: Projection[psycopg.AsyncConnection[Any]] = Projection(name)

    @p.on("Deposited")
    async def deposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
        await tx.execute(ddl(sink_schema))
        await tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))

    return p


async def test_sync_handlers_get_a_psycopg_connection_inside_the_checkpoint_transaction(
    es: EventSourcingManager, url: str, sink_schema: str
) -> None:
    for n in (1, 2, 3):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    p: Projection[psycopg.Connection[Any]] = Projection("totals", errors=ErrorPolicy(retries=0))

    @p.on("Deposited")
    def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
        assert tx.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        tx.execute(ddl(sink_schema))
        tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))

    await ProjectionRunner(es).add(p, PostgresSink(url, schema=sink_schema)).catch_up(timeout=60)
    assert totals(url, sink_schema) == [("acc-1", 6)]
    store = PostgresCheckpointStore(url, schema=sink_schema)  # the tracking table is the checkpoint store's
    try:
        cp = await store.get("totals", es.get_provider().checkpoint_source)
        assert cp is not None and cp.position == [e.position async for e in es.read_all()][-1]
    finally:
        await store.close()


async def test_async_handler_failure_rolls_back_its_writes_and_the_checkpoint(
    es: EventSourcingManager, url: str, sink_schema: str
) -> None:
    for n in (1, 2, 3):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    p: Projection[psycopg.AsyncConnection[Any]] = Projection("totals", errors=ErrorPolicy(retries=1, backoff=0))

    @p.on("Deposited")
    async def deposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
        await tx.execute(ddl(sink_schema))
        await tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))
        if event.data["amount"] == 3:
            raise RuntimeError("boom")

    with pytest.raises(ProjectionStoppedError):
        await ProjectionRunner(es).add(p, PostgresSink(url, schema=sink_schema)).catch_up(timeout=60)
    assert totals(url, sink_schema) == [("acc-1", 3)]  # 1 + 2; the writes of 3 rolled back every time
    with psycopg.connect(url) as conn:
        [(position,)] = conn.execute(f'SELECT position FROM "{sink_schema}".checkpoints').fetchall()
    assert position == [e.position async for e in es.read_all()][1]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_lost_sink_connection_is_an_outage_never_a_parked_event(
    es: EventSourcingManager, url: str, sink_schema: str, kind: str
) -> None:
    for n in (1, 2, 3):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    killed: list[int] = []

    def kill_once(pid: int, amount: int) -> None:  # the sink's session dies under the handler, once
        if amount == 2 and not killed:
            killed.append(pid)
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    p: Projection[Any] = Projection("totals", errors=ErrorPolicy(retries=0, then="park"))
    if kind == "sync":

        def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
            kill_once(tx.info.backend_pid, event.data["amount"])
            tx.execute(ddl(sink_schema))
            tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))

        p.on("Deposited")(deposited)
    else:

        async def adeposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            kill_once(tx.info.backend_pid, event.data["amount"])
            await tx.execute(ddl(sink_schema))
            await tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))

        p.on("Deposited")(adeposited)
    runner = ProjectionRunner(es, lease_wait=0.05, batch_size=1).add(p, PostgresSink(url, schema=sink_schema))
    await runner.catch_up(timeout=60)
    assert killed
    assert [e async for e in es.read_stream("dead-letter-totals")] == []
    assert runner.states["totals"].parked == 0
    assert totals(url, sink_schema) == [("acc-1", 6)]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_runs_commit_itself_stops_the_runner(
    es: EventSourcingManager, url: str, sink_schema: str, kind: str
) -> None:
    """psycopg refuses ``conn.commit()`` inside the sink's transaction, but not the SQL ``COMMIT``.

    It ended the transaction (and the checkpoint row's lock), so the checkpoint was written outside it.
    """
    from eventsource.projections import ProjectionError

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    p: Projection[Any] = Projection("rogue", errors=ErrorPolicy(retries=0))
    if kind == "sync":
        p.on("Deposited")(lambda _e, tx: tx.execute("COMMIT"))
    else:

        async def rogue(_e: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute("COMMIT")

        p.on("Deposited")(rogue)
    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, PostgresSink(url, schema=sink_schema)).catch_up(timeout=60)
    # the COMMIT also committed the first batch's placeholder row (position -1): a fixed handler still resumes
    fixed: Projection[Any] = Projection("rogue")

    @fixed.on("Deposited")
    def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
        tx.execute(ddl(sink_schema))
        tx.execute(upsert(sink_schema), (event.stream_id, event.data["amount"]))

    await ProjectionRunner(es).add(fixed, PostgresSink(url, schema=sink_schema)).catch_up(timeout=30)
    assert totals(url, sink_schema) == [("acc-1", 1)]


async def test_one_projection_name_on_two_schemas_of_one_database_keeps_two_checkpoints(
    make_provider: Callable[..., Any], url: str, sink_schema: str
) -> None:
    """Review: the runner keyed a projection's checkpoint by the masked URL, which two stores in two schemas of
    one database share. Positions are cluster-wide transaction ids, so the projection on the store written
    first resumed the other's checkpoint and silently skipped every event of its own below it."""
    managers = []
    for name in ("first", "second"):
        p = await make_provider()
        m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost())
        await m.register_provider(p, name="pg", default=True)
        managers.append((name, m))
    for name, m in managers:  # the first store's events are older (lower transaction ids)
        for n in (1, 2):
            await m.append_event(stream_id=f"{name}-acc", event_type="Deposited", data={"amount": n})
    for _, m in reversed(managers):  # the second store's projection runs first and stores a higher position
        runner = ProjectionRunner(m).add(_summing("totals", sink_schema), PostgresSink(url, schema=sink_schema))
        await runner.catch_up(timeout=60)
    assert totals(url, sink_schema) == [("first-acc", 3), ("second-acc", 3)]


@contextlib.asynccontextmanager
async def _held_back(
    make_provider: Callable[..., Any], url: str, sink_schema: str, name: str
) -> AsyncIterator[ProjectionRunner]:
    """A runner of ``_summing(name)`` on a store where 'acc-1' has two deposits, the second held back.

    The second is committed after an unrelated writer's transaction began, which stays open (so the second stays
    out of reads, after ``visibility_wait``) until the block ends.
    """
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost())
    await m.register_provider(await make_provider(visibility_wait=0.05), name="pg", default=True)
    await m.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    holder = await psycopg.AsyncConnection.connect(url)  # an unrelated writer's transaction, left open
    try:
        await holder.execute("SELECT pg_current_xact_id()")
        await m.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})  # committed, held back
        yield ProjectionRunner(m, poll_interval=0.05).add(
            _summing(name, sink_schema), PostgresSink(url, schema=sink_schema)
        )
    finally:
        await holder.rollback()
        await holder.close()


async def test_catch_up_waits_for_events_a_running_transaction_holds_back(
    make_provider: Callable[..., Any], url: str, sink_schema: str
) -> None:
    """Review: catch_up() (and wait_caught_up) returned once a read found nothing; on PostgreSQL a read finds
    nothing past a transaction still running anywhere in the cluster (after ``visibility_wait``), so an event
    committed before the call but held back by an older open transaction was not applied when it returned."""
    async with _held_back(make_provider, url, sink_schema, "totals") as runner:
        task = asyncio.ensure_future(runner.catch_up(timeout=60))
        for _ in range(3000):  # until the runner has read past the first event and found the tail held back
            st = runner.states["totals"]
            if task.done() or (st.position is not None and st.subscription is not None and st.subscription.reads > 6):
                break
            await asyncio.sleep(0.01)
        done_early = task.done()
    await task
    assert not done_early, "catch_up returned while a committed event was held back"
    assert totals(url, sink_schema) == [("acc-1", 3)]


async def test_catch_up_held_back_by_an_open_transaction_says_so(
    make_provider: Callable[..., Any], url: str, sink_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Review: catch_up() without a timeout waits as long as any write transaction of the cluster stays open
    (an idle-in-transaction session of another application) when it holds events back, and said nothing: a
    newcomer's ``await runner.catch_up()`` looked hung. It logs once, naming the projection and the cause."""
    async with _held_back(make_provider, url, sink_schema, "held") as runner:
        with caplog.at_level("WARNING", logger="eventsource.projections"):
            task = asyncio.ensure_future(runner.catch_up())
            said = []
            for _ in range(1000):  # until the runner says why it waits (or, before the fix, the loop runs out)
                said = [r.getMessage() for r in caplog.records if "transaction" in r.getMessage()]
                if said or task.done():
                    break
                await asyncio.sleep(0.01)
        assert not task.done()
    await asyncio.wait_for(task, 60)
    assert len(said) == 1 and "'held'" in said[0] and "still running" in said[0], said
    assert totals(url, sink_schema) == [("acc-1", 3)]


async def test_a_one_stream_projection_into_postgres_refuses_a_stream_created_again(
    es: EventSourcingManager, url: str, sink_schema: str
) -> None:
    """The sink's checkpoint names the event it counted (an older sink table gets the column): a stream deleted
    and created again beyond it is refused, not passed over; a reset reads the new stream from its start."""
    from eventsource.errors import StreamDeletedError

    with psycopg.connect(url, autocommit=True) as conn:  # the checkpoint table as an older release made it
        conn.execute(f'CREATE SCHEMA "{sink_schema}"')
        conn.execute(
            f'CREATE TABLE "{sink_schema}".checkpoints (name text NOT NULL, source text NOT NULL, scope text NOT '
            "NULL, position bigint NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (name, source))"
        )
    seen: list[int] = []

    def runner() -> ProjectionRunner:
        p: Projection[Any] = Projection("one", {"D": lambda e, _tx: seen.append(e.data["n"])}, stream_id="acc")
        return ProjectionRunner(es, batch_size=2).add(p, PostgresSink(url, schema=sink_schema))

    for n in (1, 2, 3):
        await es.append_event(stream_id="acc", event_type="D", data={"n": n})
    await runner().catch_up(timeout=60)
    await es.delete_stream("acc")
    for n in (10, 20, 30, 40):
        await es.append_event(stream_id="acc", event_type="D", data={"n": n})
    with pytest.raises(StreamDeletedError):
        await runner().catch_up(timeout=60)
    again = runner()
    await again.reset("one")
    await again.catch_up(timeout=60)
    assert seen == [1, 2, 3, 10, 20, 30, 40]
