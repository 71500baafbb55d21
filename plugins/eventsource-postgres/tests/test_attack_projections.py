"""Attack review of the PostgreSQL sink: handler errors inside its transaction, and a reset racing a batch."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.projections import ErrorPolicy, Projection, ProjectionRunner
from eventsource.projections.postgres import PostgresSink

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
