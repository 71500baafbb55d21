"""A projection runner's PostgreSQL lease across a failover: the runner holds it again on the promoted standby."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource import EventSourcingManager
from eventsource.errors import ProviderUnavailableError
from eventsource.projections import Projection, ProjectionRunner, SqliteSink
from eventsource_postgres import PostgresAdvisoryLease

if TYPE_CHECKING:
    from pathlib import Path

    from pair import Pair


def advisory_holders(dsn: str, app: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s",
            [app],
        ).fetchone()
        return int(row[0]) if row else 0


async def test_a_runner_holds_its_lease_again_on_the_promoted_standby(standby_pair: Pair, tmp_path: Path) -> None:
    """The primary died with the lease's session, so its lock: the runner ran on without any lease (another
    process could take the projection on the new primary and both ran it), since nothing told the holder."""
    pair = standby_pair
    es = EventSourcingManager({"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}})
    await es.connect()
    app = f"es-lease-{uuid.uuid4().hex[:8]}"
    lease = PostgresAdvisoryLease(pair.url(), namespace="failover", application_name=app, connect_timeout=2)
    applied: list[str] = []

    def count(event: Any, _tx: Any) -> None:
        applied.append(event.event_id)

    runner = ProjectionRunner(es, lease=lease, lease_wait=0.2, poll_interval=0.05)
    runner.add(Projection("p", {"Deposited": count}), SqliteSink(f"sqlite:///{tmp_path}/read.db"))
    task = asyncio.ensure_future(runner.run())
    try:
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={})
        await asyncio.wait_for(runner.wait_caught_up("p"), 30)
        assert advisory_holders(pair.dsn(pair.primary_port), app) == 1
        await asyncio.to_thread(pair.kill_primary)
        await asyncio.to_thread(pair.promote)
        new_primary = pair.dsn(pair.standby_port)
        async with asyncio.timeout(60):
            while advisory_holders(new_primary, app) != 1:  # noqa: ASYNC110 - the server has no such event
                await asyncio.sleep(0.1)
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={})
        await asyncio.wait_for(runner.wait_caught_up("p"), 30)
        assert len(set(applied)) == 2
        assert runner.states["p"].holding
    finally:
        await runner.stop()
        await asyncio.wait_for(task, 30)
        await es.close()


async def test_a_lease_is_never_held_on_a_standby(standby_pair: Pair) -> None:
    # advisory locks on a hot standby are the standby's alone (never WAL-logged): a lease whose URL reached the
    # standby (a host list without target_session_attrs=read-write, a DNS name on a replica) was granted while
    # another process held the same key on the primary, so two runners ran one projection
    pair = standby_pair
    on_primary = PostgresAdvisoryLease(pair.dsn(pair.primary_port), namespace="two", connect_timeout=2)
    hosts = f"127.0.0.1:{pair.standby_port},127.0.0.1:{pair.primary_port}"
    on_standby = PostgresAdvisoryLease(f"postgresql://postgres@{hosts}/postgres", namespace="two", connect_timeout=2)
    await on_primary.connect()
    await on_standby.connect()
    try:
        async with on_primary.hold("p", timeout=5):
            with pytest.raises(ProviderUnavailableError) as err:
                async with on_standby.hold("p", timeout=5):
                    raise AssertionError("the lease was held on the standby while the primary held it")
            assert "standby" in str(err.value)
            assert "target_session_attrs=read-write" in str(err.value)
        with pytest.raises(ProviderUnavailableError):  # nobody holds it now: still refused there
            async with on_standby.hold("p", timeout=5):
                pass
    finally:
        await on_primary.close()
        await on_standby.close()
