"""The NATS KV lease when its holder cannot reach the server: it must give up before the entry expires."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ProviderTimeoutError
from eventsource.manager import EventSourcingManager
from eventsource.projections import Projection, ProjectionRunner, SqliteSink
from eventsource.testing.leases import StallProxy, cut_off_holder_gives_way
from eventsource_nats.lease import NatsKvLease
from eventsource_nats.settings import parse_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventsource.model import Event


@pytest.fixture
async def bucket(machine_nats_url: str) -> AsyncIterator[str]:
    name = f"leases_{uuid.uuid4().hex[:10]}"
    yield name
    admin = NatsKvLease(machine_nats_url, bucket=name, ttl=2)
    await admin.connect()
    with contextlib.suppress(Exception):
        await admin._nc.jetstream().delete_key_value(name)
    await admin.close()


async def test_a_holder_cut_off_from_the_server_gives_up_before_another_process_gets_the_lease(
    machine_nats_url: str, bucket: str
) -> None:
    """A refresh stuck on a silent connection waited for nats-py's request timeout (5 s by default).

    It counted the ttl from when the last refresh *returned*, and only once the stuck one failed: the entry
    expired on the server, another process took the lease and ran the projection while the cut-off holder's
    block still ran, believing it held the lease.
    """
    host, port = parse_url(machine_nats_url).servers[0].rsplit("//", 1)[-1].rsplit(":", 1)
    proxy = StallProxy(host, int(port))
    cut_off = NatsKvLease(f"nats://127.0.0.1:{await proxy.start()}", bucket=bucket, ttl=2)
    other = NatsKvLease(machine_nats_url, bucket=bucket, ttl=2)
    await cut_off.connect()
    await other.connect()
    await cut_off_holder_gives_way(cut_off, other, proxy, refreshed=cut_off.ttl / 2)  # a refresh went through


async def test_a_long_key_is_held_like_any_other(machine_nats_url: str, bucket: str) -> None:
    """A key is a stream id when a Kafka store appends under the lease (up to ``max_stream_id_length``).

    Encoded into the KV subject, a long one passed the server's control-line limit: the server dropped the
    connection every lease of the process shares (the other holders' refreshes failing with it) and the hold
    failed with ``ProviderUnavailableError``, every time.
    """
    lease = NatsKvLease(machine_nats_url, bucket=bucket, ttl=2)
    await lease.connect()
    try:
        long_key = "stream-" + "é" * 10_000
        async with lease.hold(long_key, timeout=5):
            with pytest.raises(ProviderTimeoutError):
                async with lease.hold(long_key, timeout=0.3):
                    pytest.fail("a second holder got in")
            async with lease.hold(long_key[:-1] + "e", timeout=5):  # another long key is another lease
                pass
        async with lease.hold(long_key, timeout=5):  # released on leaving
            pass
    finally:
        await lease.close()


async def test_a_runner_leaves_a_lease_it_was_given_open_for_the_others_that_use_it(
    machine_nats_url: str, bucket: str, tmp_path: Path
) -> None:
    """One lease object for the service's runner and a one-off ``catch_up()`` beside it, in one process.

    The job's ``run()`` closed the lease when it ended: the service's refresh then failed, its projection lost
    the lease and every later try said "not connected", so it never ran again (a warning every ``lease_wait``).
    """
    es = EventSourcingManager({"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}})
    await es.connect()
    lease = NatsKvLease(machine_nats_url, bucket=bucket, ttl=2)
    applied: dict[str, int] = {"service": 0, "job": 0}

    def counting(name: str) -> Projection[Any]:
        def count(_event: Event, _tx: Any) -> None:
            applied[name] += 1

        return Projection(name, {"Deposited": count})

    sink = f"sqlite:///{tmp_path}/read.db"
    service = ProjectionRunner(es, lease=lease, lease_wait=0.1, poll_interval=0.05).add(
        counting("service"), SqliteSink(sink)
    )
    task = asyncio.ensure_future(service.run())
    try:
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={})
        await asyncio.wait_for(service.wait_caught_up("service"), 30)
        job = ProjectionRunner(es, lease=lease, lease_wait=0.1, poll_interval=0.05).add(
            counting("job"), SqliteSink(sink)
        )
        await job.catch_up(timeout=30)
        async with lease.hold("probe", timeout=5):  # still connected: the service still runs with it
            pass
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={})
        await asyncio.wait_for(service.wait_caught_up("service"), 30)
        assert applied == {"service": 2, "job": 1}
    finally:
        await service.stop()
        await asyncio.wait_for(task, 30)
        await lease.close()
        await es.close()


async def test_a_cancel_that_lands_while_the_lease_is_released_is_not_lost(machine_nats_url: str, bucket: str) -> None:
    """Leaving the block awaits the refresher task, which ends normally when cancelled: a cancel of the holder
    landing then (a task group ending the runner's projections, ``catch_up``'s timeout) went to the refresher
    and was lost, so the holder went on (a runner's projection loop took the lease again)."""
    lease = NatsKvLease(machine_nats_url, bucket=bucket, ttl=2)
    await lease.connect()
    went_on = False

    async def holder() -> None:
        nonlocal went_on
        async with lease.hold("projection:p", timeout=5):
            asyncio.get_running_loop().call_soon(task.cancel)  # runs while the release is under way
        went_on = True

    task = asyncio.ensure_future(holder())
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert not went_on
    finally:
        await lease.close()
