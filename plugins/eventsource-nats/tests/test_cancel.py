"""Cancelling a task in the middle of a NATS read: the task ends, and the provider keeps working.

Reads on NATS are chains of JetStream API requests (message gets, consumer creation, fetches); a cancel
lands in one of them. Each test cancels a task that reads in a loop, at many points, and fails when the
task goes on running instead of ending with ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING, Any

import pytest
from conftest import new_event
from eventsource.model import ANY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource_nats.provider import NatsProvider

ROUNDS = 60
CANCEL_WAIT = 30.0
"""Seconds a cancelled task gets to end (far past request_timeout: a bound, not a measurement)."""


async def _fill(p: NatsProvider) -> None:
    for i in range(0, 40, 4):
        await p.append("s", [new_event(data=json.dumps({"n": i + k}).encode()) for k in range(4)], ANY)
        await p.append(f"other-{i}", [new_event(data=json.dumps({"n": i}).encode())], ANY)


async def _cancel_at_many_points(p: NatsProvider, body: Callable[[], Awaitable[Any]]) -> None:
    """Run ``body`` in a loop in a task, cancel it after a random delay, ROUNDS times."""

    async def forever() -> None:
        while True:
            await body()

    rnd = random.Random()
    for i in range(ROUNDS):
        task = asyncio.create_task(forever())
        await asyncio.sleep(rnd.uniform(0, 0.03) if i % 2 else 0)
        for _ in range(i % 3):  # cancel again while the task is already cancelling
            await asyncio.sleep(0)
            task.cancel()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=CANCEL_WAIT)
        if not done:
            pytest.fail(f"round {i}: the reading task had not ended {CANCEL_WAIT}s after it was cancelled")
        assert task.cancelled(), f"round {i}: the cancelled task ended with {task.exception()!r}"
    # the provider still reads, everything, in order
    assert [json.loads(e.data)["n"] for e in [e async for e in p.read_stream("s")]] == list(range(40))
    assert len([e async for e in p.read_all()]) == 50
    await p._conn.settle()
    # and no read consumer is left behind on the server (each is deleted when its read ends, however it ends)
    info = await p._conn.api(f"STREAM.INFO.{p._conn.names.stream}")
    assert info["state"]["consumer_count"] == 0


async def test_a_cancelled_read_stream_ends_and_the_provider_still_reads(machine_provider: NatsProvider) -> None:
    await _fill(machine_provider)

    async def body() -> None:
        async for _ in machine_provider.read_stream("s", page_size=3):
            pass
        async for _ in machine_provider.read_stream("s", from_version=20, backwards=True, page_size=4):
            pass

    await _cancel_at_many_points(machine_provider, body)


async def test_a_cancelled_read_all_ends_and_the_provider_still_reads(machine_provider: NatsProvider) -> None:
    await _fill(machine_provider)

    async def body() -> None:
        async for _ in machine_provider.read_all(from_position=0, page_size=3):
            pass

    await _cancel_at_many_points(machine_provider, body)


async def test_a_cancelled_subscription_ends_and_the_provider_still_reads(machine_provider: NatsProvider) -> None:
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    await _fill(machine_provider)
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(machine_provider, name="n", default=True)

    async def body() -> None:
        async with m.subscribe(poll_interval=0.02, page_size=3) as sub:
            async for _ in sub:
                pass

    await _cancel_at_many_points(machine_provider, body)
