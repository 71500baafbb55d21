"""Attack review of the PostgreSQL sink: handler errors inside its transaction, and a reset racing a batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.checkpoints import Checkpoint
from eventsource.errors import ValidationError
from eventsource.projections import ErrorPolicy, Projection, ProjectionRunner
from eventsource.projections.postgres import PostgresSink
from eventsource_postgres.checkpoints import PostgresCheckpointStore

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event


@pytest.fixture
def schema(url: str) -> Iterator[str]:
    name = f"sink_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute(f'CREATE TABLE "{name}".seen (event_id text PRIMARY KEY, amount int)')
    yield name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def seen(url: str, schema: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return conn.execute(f'SELECT amount FROM "{schema}".seen ORDER BY amount').fetchall()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_swallows_a_sql_error_is_a_handler_error_not_a_rogue_commit(
    es: EventSourcingManager, url: str, schema: str, kind: str
) -> None:
    """A handler catching a failed statement leaves the transaction aborted: the error policy decides.

    The sink blamed it on a handler that "committed or rolled back the sink's transaction itself" and stopped
    the runner past the policy (no retry, no park, no event named), though the handler did neither.
    """
    for n in (1, 2, 3):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    insert = f'INSERT INTO "{schema}".seen VALUES (%s, %s)'
    bad = f'INSERT INTO "{schema}".seen VALUES (%s, %s, 0)'  # one column too many: fails on the server
    p: Projection[Any] = Projection("swallow", errors=ErrorPolicy(retries=0, then="park"))
    if kind == "sync":

        def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
            tx.execute(insert, (event.event_id, event.data["amount"]))
            if event.data["amount"] == 2:
                with contextlib.suppress(psycopg.Error):
                    tx.execute(bad, (event.event_id, 0))

        p.on("Deposited")(deposited)
    else:

        async def adeposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(insert, (event.event_id, event.data["amount"]))
            if event.data["amount"] == 2:
                with contextlib.suppress(psycopg.Error):
                    await tx.execute(bad, (event.event_id, 0))

        p.on("Deposited")(adeposited)
    runner = ProjectionRunner(es).add(p, PostgresSink(url, schema=schema))
    await runner.catch_up(timeout=60)
    assert runner.states["swallow"].parked == 1
    assert seen(url, schema) == [(1,), (3,)]
    parked = [e async for e in es.read_stream("dead-letter-swallow")]
    assert [e.data["data"]["amount"] for e in parked] == [2]


async def test_a_reset_racing_a_batch_in_flight_leaves_no_write_of_it_behind(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """A reset that commits after a batch in flight must also empty what that batch wrote.

    The reset hook's ``DELETE`` ran on a snapshot taken before the batch committed, then the checkpoint's
    deletion waited on the batch's row lock: the batch's rows outlived the reset, and the replay after it
    applied those events a second time.
    """
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})
    inside = asyncio.Event()
    go_on = asyncio.Event()

    def projection() -> Projection[Any]:
        p: Projection[Any] = Projection("resettable", errors=ErrorPolicy(retries=0))

        @p.on("Deposited")
        async def deposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(f'INSERT INTO "{schema}".seen VALUES (%s, %s)', (event.event_id, event.data["amount"]))
            if event.data["amount"] == 2:
                inside.set()
                await go_on.wait()

        @p.on_reset
        async def reset(tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(f'DELETE FROM "{schema}".seen')

        return p

    runner = ProjectionRunner(es, batch_size=1).add(projection(), PostgresSink(url, schema=schema))
    task = asyncio.ensure_future(runner.run())
    await asyncio.wait_for(inside.wait(), 30)  # the second batch has written its row and holds its lock
    other = ProjectionRunner(es).add(projection(), PostgresSink(url, schema=schema))  # another process's reset
    resetting = asyncio.ensure_future(other.reset("resettable"))
    await asyncio.sleep(0.5)  # the reset runs its hook and waits for the batch's lock (or for the batch)
    go_on.set()
    await asyncio.wait_for(resetting, 30)
    await runner.stop()
    await asyncio.wait_for(task, 30)
    with psycopg.connect(url) as conn:
        rows = conn.execute(f'SELECT position FROM "{schema}".checkpoints').fetchall()
    assert rows == []  # reset after the batch: no checkpoint
    assert seen(url, schema) == []  # and nothing it wrote


async def test_catch_up_beside_the_lease_holder_returns_though_the_head_lies_above_the_last_event(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """PostgreSQL's head lies above its last event, so the holder's checkpoint never reaches it: the job's
    ``catch_up()`` reads past the checkpoint instead, and returns once nothing stored before the call is left."""
    applied: list[str] = []

    def projection(who: str) -> Projection[Any]:
        p: Projection[Any] = Projection("shared")

        @p.on("Deposited")
        def deposited(_event: Event, _tx: psycopg.Connection[Any]) -> None:
            applied.append(who)

        return p

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    service = ProjectionRunner(es, lease=url, poll_interval=0.1, lease_wait=0.1)
    service.add(projection("service"), PostgresSink(url, schema=schema))
    task = asyncio.ensure_future(service.run())
    try:
        await asyncio.wait_for(service.wait_caught_up("shared"), 30)
        await es.append_event(stream_id="acc-2", event_type="Deposited", data={"amount": 2})
        job = ProjectionRunner(es, lease=url, poll_interval=0.1, lease_wait=0.1)
        await job.add(projection("job"), PostgresSink(url, schema=schema)).catch_up(timeout=30)
        assert applied == ["service", "service"]
    finally:
        await service.stop()
        await task


class Warnings(logging.Handler):
    """Counts the runner's warnings; ``enough`` is set at the second (emitted on the runner's loop)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count >= 2:
            self.enough.set()


@pytest.mark.parametrize("held", ["row", "table"])
@pytest.mark.parametrize("setting", ["lock_timeout", "statement_timeout"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_timeout_on_the_sinks_own_checkpoint_lock_is_an_outage_never_charged_to_the_event(  # noqa: PLR0917
    es: EventSourcingManager, url: str, schema: str, kind: str, setting: str, held: str
) -> None:
    """The sink's ``SELECT ... FOR UPDATE`` of its checkpoint row timing out (another session holds the row, a
    ``lock_timeout`` or ``statement_timeout`` on the sink's connection) was taken for the handler's error: the
    policy retried, then parked a good event, and the checkpoint moved past it unapplied. It is the sink's
    outage: nothing is parked, and the event is applied once the row is free. The whole table held: reading
    the checkpoint before subscribing timed out too, and ``run()`` raised psycopg's error instead of waiting."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    insert = f'INSERT INTO "{schema}".seen VALUES (%s, %s)'
    p: Projection[Any] = Projection("locked", errors=ErrorPolicy(retries=1, backoff=0.01, then="park"))
    if kind == "sync":
        p.on("Deposited")(lambda e, tx: tx.execute(insert, (e.event_id, e.data["amount"])) and None)
    else:

        async def adeposited(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(insert, (event.event_id, event.data["amount"]))

        p.on("Deposited")(adeposited)
    sink_url = f"{url}?options=-c%20{setting}%3D100ms"
    await ProjectionRunner(es).add(p, PostgresSink(sink_url, schema=schema)).catch_up(timeout=60)
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})
    runner = ProjectionRunner(es, poll_interval=0.05, lease_wait=0.05).add(p, PostgresSink(sink_url, schema=schema))
    blocker = await psycopg.AsyncConnection.connect(url)  # another session holds the checkpoint row
    if held == "row":
        await blocker.execute(f'SELECT 1 FROM "{schema}".checkpoints WHERE name = %s FOR UPDATE', ("locked",))
    else:
        await blocker.execute(f'LOCK TABLE "{schema}".checkpoints IN ACCESS EXCLUSIVE MODE')
    warnings, log = Warnings(), logging.getLogger("eventsource.projections")
    log.addHandler(warnings)
    task = asyncio.ensure_future(runner.run())
    enough = asyncio.ensure_future(warnings.enough.wait())
    try:  # the sink's lock wait timed out twice (or the runner ended)
        await asyncio.wait([task, enough], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    finally:
        enough.cancel()
        log.removeHandler(warnings)
        await blocker.rollback()
        await blocker.close()
    waiter = asyncio.ensure_future(runner.wait_caught_up("locked"))
    await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    await runner.stop()
    waiter.cancel()
    await task  # no error: the runner waited for the row
    assert runner.states["locked"].parked == 0
    assert [e async for e in es.read_stream("dead-letter-locked")] == []
    assert seen(url, schema) == [(1,), (2,)]


async def test_two_overlapping_runners_that_both_park_an_event_park_it_once_in_postgresql(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """Two runners of one projection without a lease both fail on an event and both park it: the dead-letter
    append is an identical retry the second time (the parked event's id derives from the projection, source and
    event id), so the PostgreSQL store holds it once."""
    from eventsource.projections import CheckpointStoreSink
    from eventsource_postgres.checkpoints import PostgresCheckpointStore

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    both_in = asyncio.Barrier(2)

    def projection(who: str) -> Projection[None]:
        async def deposited(_event: Event, _tx: None) -> None:
            await both_in.wait()  # both runners are inside the handler before either fails
            msg = f"runner {who} cannot take it"
            raise RuntimeError(msg)

        return Projection("shared", {"Deposited": deposited}, errors=ErrorPolicy(retries=0, then="park"))

    runners = [
        ProjectionRunner(es, lease_wait=0.05).add(
            projection(w), CheckpointStoreSink(PostgresCheckpointStore(url, schema=schema))
        )
        for w in "ab"
    ]
    async with asyncio.timeout(60):
        await asyncio.gather(*(r.catch_up() for r in runners))
    assert [r.states["shared"].parked for r in runners] == [1, 1]  # both parked it
    parked = [e async for e in es.read_stream("dead-letter-shared")]
    assert len(parked) == 1


@pytest.mark.parametrize(
    "checkpoint",
    [Checkpoint("n", "s", "all", 2**63), Checkpoint("n\ud800", "s", "all", 1)],
    ids=["position past bigint", "lone surrogate"],
)
async def test_a_checkpoint_no_store_can_hold_is_a_validation_error_and_writes_nothing(
    url: str, schema: str, checkpoint: Checkpoint
) -> None:
    """A position of 2**63 was a ``ProviderError`` ("bigint out of range"), as if the database had failed.

    Every checkpoint store now refuses it (and text with no UTF-8 form) as a ``ValidationError`` before writing.
    """
    store = PostgresCheckpointStore(url, schema=schema)
    await store.connect()
    try:
        await store.put(Checkpoint("n", "s", "all", 5))
        with pytest.raises(ValidationError):
            await store.put(checkpoint, force=True)
        assert [(c.name, c.position) for c in await store.list()] == [("n", 5)]
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_reset_whose_sink_session_dies_is_the_sink_s_outage(
    es: EventSourcingManager, url: str, schema: str, admin: psycopg.AsyncConnection[Any], kind: str
) -> None:
    """A batch whose sink connection is lost raises ``SinkUnavailableError``; a reset raised the driver's bare
    ``psycopg.OperationalError`` instead (a caller handling the sink's outage never saw it as one)."""
    import threading

    from eventsource.projections import SinkUnavailableError

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    pids: list[int] = []
    reached = threading.Event()
    go_on = threading.Event()
    p: Projection[Any] = Projection("dying")
    if kind == "sync":
        p.on("Deposited")(lambda _e, _tx: None)

        @p.on_reset
        def reset(tx: psycopg.Connection[Any]) -> None:
            pids.append(tx.info.backend_pid)
            reached.set()
            go_on.wait(30)
            tx.execute(f'DELETE FROM "{schema}".seen')
    else:

        @p.on("Deposited")
        async def deposited(_e: Event, _tx: psycopg.AsyncConnection[Any]) -> None:
            pass

        @p.on_reset
        async def reset_async(tx: psycopg.AsyncConnection[Any]) -> None:
            pids.append(tx.info.backend_pid)
            reached.set()
            await asyncio.to_thread(go_on.wait, 30)
            await tx.execute(f'DELETE FROM "{schema}".seen')

    await ProjectionRunner(es).add(p, PostgresSink(url, schema=schema)).catch_up(timeout=30)
    resetting = asyncio.ensure_future(ProjectionRunner(es).add(p, PostgresSink(url, schema=schema)).reset("dying"))
    try:
        assert await asyncio.to_thread(reached.wait, 30)
        await admin.execute("SELECT pg_terminate_backend(%s)", [pids[0]])
    finally:
        go_on.set()
    with pytest.raises(SinkUnavailableError):
        await asyncio.wait_for(resetting, 30)
    with psycopg.connect(url) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".checkpoints').fetchone() == (1,)  # still there


@pytest.mark.parametrize("ending", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_ends_the_sink_transaction_and_begins_another_is_caught(
    es: EventSourcingManager, url: str, schema: str, kind: str, ending: str
) -> None:
    """``COMMIT; BEGIN`` (or ``ROLLBACK; BEGIN``) in a handler went unnoticed: a transaction was open again when
    the handlers returned, so the checkpoint was written in the handler's new one. The earlier writes were
    committed without it (not exactly once), or rolled back while the checkpoint moved past their events."""
    from eventsource.projections import ProjectionError

    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    insert = f'INSERT INTO "{schema}".seen VALUES (%s, %s)'
    p: Projection[Any] = Projection("rogue", errors=ErrorPolicy(retries=0, then="park"))
    if kind == "sync":

        def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
            tx.execute(insert, (event.event_id, event.data["amount"]))
            if event.data["amount"] == 2:
                tx.execute(ending)
                tx.execute("BEGIN")

        p.on("Deposited")(deposited)
    else:

        @p.on("Deposited")
        async def deposited_async(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(insert, (event.event_id, event.data["amount"]))
            if event.data["amount"] == 2:
                await tx.execute(ending)
                await tx.execute("BEGIN")

    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, PostgresSink(url, schema=schema)).catch_up(timeout=30)
    with psycopg.connect(url) as conn:
        assert conn.execute(f'SELECT max(position) FROM "{schema}".checkpoints').fetchone() in [(None,), (-1,)]


async def test_a_reset_under_the_postgres_lease_is_refused_while_the_service_holds_it_then_runs(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """``reset()`` with ``lease=`` holds the projection's advisory lock: refused (``ConflictError``) while the
    service holds it, done once the service stopped, and the lease's pool is closed after it either way."""
    from eventsource.errors import ConflictError

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    insert = f'INSERT INTO "{schema}".seen VALUES (%s, %s)'

    def projection() -> Projection[Any]:
        p: Projection[Any] = Projection("leased")
        p.on("Deposited")(lambda e, tx: tx.execute(insert, (e.event_id, e.data["amount"])))
        p.on_reset(lambda tx: tx.execute(f'DELETE FROM "{schema}".seen'))
        return p

    service = ProjectionRunner(es, lease=url, poll_interval=0.1, lease_wait=0.1)
    service.add(projection(), PostgresSink(url, schema=schema))
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(30):
            await service.wait_caught_up("leased")
        job = ProjectionRunner(es, lease=url, lease_wait=0.2).add(projection(), PostgresSink(url, schema=schema))
        with pytest.raises(ConflictError, match="leased"):
            await job.reset("leased")
        assert seen(url, schema) == [(1,)]
    finally:
        await service.stop()
        await asyncio.wait_for(task, 30)
    await job.reset("leased")
    assert seen(url, schema) == []
    assert job.lease is not None
    assert job.lease._pool is None  # type: ignore[attr-defined]  # closed: no session left holding anything


async def test_a_reset_without_a_lease_beside_the_leased_service_is_fenced_by_the_checkpoint(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """A runner built without ``lease=`` cannot see the service's advisory lock; on a PostgreSQL sink it need
    not: the reset locks and deletes the checkpoint row in its transaction, the service's next batch finds it gone
    (``CheckpointMovedError``) and replays from the start into the emptied table: every event once."""
    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    insert = f'INSERT INTO "{schema}".seen VALUES (%s, %s)'  # (a primary key: an event applied twice fails)

    def projection() -> Projection[Any]:
        p: Projection[Any] = Projection("fenced")
        p.on("Deposited")(lambda e, tx: tx.execute(insert, (e.event_id, e.data["amount"])))
        p.on_reset(lambda tx: tx.execute(f'DELETE FROM "{schema}".seen'))
        return p

    service = ProjectionRunner(es, lease=url, poll_interval=0.1, lease_wait=0.1)
    service.add(projection(), PostgresSink(url, schema=schema))
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(30):
            await service.wait_caught_up("fenced")
        await ProjectionRunner(es).add(projection(), PostgresSink(url, schema=schema)).reset("fenced")
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 3})
        async with asyncio.timeout(30):
            await service.wait_caught_up("fenced")
    finally:
        await service.stop()
        await asyncio.wait_for(task, 30)
    assert seen(url, schema) == [(1,), (2,), (3,)]


async def test_a_reset_without_a_lease_on_a_postgres_checkpoint_store_sink_is_refused_unless_forced(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """An at-least-once sink cannot fence a runner still running (it checks, runs handlers and stores the
    checkpoint in separate steps): a reset without a lease ran beside the leased service unnoticed, and emptied
    what the service applied meanwhile behind its checkpoint. Refused now, changing nothing, unless forced."""
    from eventsource.errors import ConfigurationError
    from eventsource.projections import CheckpointStoreSink

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    applied: list[int] = []
    p: Projection[None] = Projection("ledger", {"Deposited": lambda e, _tx: applied.append(e.data["amount"])})
    p.on_reset(lambda _tx: applied.clear())
    store = PostgresCheckpointStore(url, schema=schema)
    await ProjectionRunner(es, lease=url).add(p, CheckpointStoreSink(store)).catch_up(timeout=60)
    assert applied == [1]
    job = ProjectionRunner(es).add(p, CheckpointStoreSink(PostgresCheckpointStore(url, schema=schema)))
    with pytest.raises(ConfigurationError, match="force=True"):
        await job.reset("ledger")
    assert applied == [1]
    await store.connect()
    try:
        [cp] = await store.list()
        await job.reset("ledger", force=True)
        assert applied == []
        assert await store.get("ledger", cp.source) is None
    finally:
        await store.close()


@pytest.mark.parametrize("target", [None, "", "garbage://x", "host=127.0.0.1 nonsense_option=1"])
async def test_a_postgres_sink_url_that_is_no_connection_string_is_a_configuration_error(target: Any) -> None:
    """``PostgresSink(None)`` crashed with an ``AttributeError`` when opened, and a malformed URL with psycopg's
    bare ``ProgrammingError`` out of ``run()``; neither is an outage to wait out."""
    from eventsource.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="url"):
        await PostgresSink(target).open()


async def test_a_sink_url_psycopg_refuses_when_connecting_names_the_reason(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libpq's environment is read when the sink connects (``PGCONNECT_TIMEOUT=soon``): the refusal said only that
    libpq could not read the url, which it could; it names psycopg's reason now."""
    from eventsource.errors import ConfigurationError

    sink = PostgresSink(url)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="connect_timeout") as caught:
        await sink.open()
    assert caught.value.details["field"] == "url"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_commits_begins_again_and_raises_is_not_retried(
    es: EventSourcingManager, url: str, schema: str, kind: str
) -> None:
    """``COMMIT; BEGIN`` then an error: the transaction was open again, so the error went to the policy, and each
    retry committed the handler's write once more (three attempts: three rows). It stops the runner now."""
    from eventsource.projections import ProjectionError

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{schema}".log (event_id text)')
    insert = f'INSERT INTO "{schema}".log VALUES (%s)'
    p: Projection[Any] = Projection("rogue", errors=ErrorPolicy(retries=2, backoff=0.01, then="park"))
    if kind == "sync":

        def deposited(event: Event, tx: psycopg.Connection[Any]) -> None:
            tx.execute(insert, (event.event_id,))
            tx.execute("COMMIT")
            tx.execute("BEGIN")
            raise RuntimeError("after committing")

        p.on("Deposited")(deposited)
    else:

        @p.on("Deposited")
        async def deposited_async(event: Event, tx: psycopg.AsyncConnection[Any]) -> None:
            await tx.execute(insert, (event.event_id,))
            await tx.execute("COMMIT")
            await tx.execute("BEGIN")
            raise RuntimeError("after committing")

    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, PostgresSink(url, schema=schema)).catch_up(timeout=30)
    with psycopg.connect(url) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{schema}".log').fetchone() == (1,)


async def test_a_sink_role_without_create_rights_uses_tables_a_dba_made(
    es: EventSourcingManager, url: str, schema: str
) -> None:
    """A least-privilege role (no CREATE on the database or the schema) could not open the sink at all, though a
    DBA had made its schema and checkpoint table: ``CREATE SCHEMA IF NOT EXISTS`` and ``CREATE TABLE IF NOT EXISTS``
    check the right to create before they look, and the bare ``InsufficientPrivilege`` came out of ``run()``."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    role = f"sink_{uuid.uuid4().hex[:10]}"
    await PostgresSink(url, schema=schema).open()  # the DBA's run: the checkpoint table exists now
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
    try:
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
        limited = make_conninfo(**{**conninfo_to_dict(url), "user": role})
        p: Projection[Any] = Projection("limited")
        p.on("Deposited")(
            lambda e, tx: tx.execute(f'INSERT INTO "{schema}".seen VALUES (%s, %s)', (e.event_id, e.data["amount"]))
        )
        await ProjectionRunner(es).add(p, PostgresSink(limited, schema=schema)).catch_up(timeout=30)
        assert seen(url, schema) == [(1,)]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}')
            conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}')
            conn.execute(f"DROP ROLE {role}")
