"""Attacks on reads from a standby (``read_url``) across faults: a standby that goes away, a read pool that reconnects.

Each test runs on private clusters started by :class:`~pair.Pair` (no mocks); hangs are bounded and fail with their
own message, never by an elapsed time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from eventsource import EventSourcingManager
from eventsource.errors import ConfigurationError
from pair import Pair


@pytest.fixture
def standby_pair() -> Iterator[Pair]:
    p = Pair(synchronous=False).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def other_cluster() -> Iterator[Pair]:
    """A second, unrelated pair: its primary holds a store of the same schema and stream ids."""
    p = Pair(synchronous=False).start()
    try:
        yield p
    finally:
        p.stop()


def _stop_standby(pair: Pair) -> None:
    pid = int((pair.standby_dir / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown


async def _types(es: EventSourcingManager, stream: str) -> list[str]:
    return [e.event_type async for e in es.read_stream(stream)]


@pytest.mark.parametrize("ryw", [True, False], ids=["read_your_writes", "plain"])
async def test_a_read_pool_reconnecting_to_another_cluster_is_refused_not_served(
    standby_pair: Pair, other_cluster: Pair, ryw: bool
) -> None:
    # read_url lists the standby, then (a mistake, or a DNS name that moved) another cluster's primary. At connect
    # the standby answers and the identity check passes; once the standby goes away the pool reconnects down the
    # list and reached the other cluster: its rows were served as this store's (with read_your_writes too: a
    # server not in recovery "has every write"), and health said healthy.
    async with EventSourcingManager({"providers": {"pg": {"url": other_cluster.url()}}}) as other:
        await other.append_event(stream_id="order-1", event_type="Foreign", data={})
    hosts = f"127.0.0.1:{standby_pair.standby_port},127.0.0.1:{other_cluster.primary_port}"
    read_url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=prefer-standby&connect_timeout=2"
    settings: dict[str, Any] = {"read_url": read_url, "read_your_writes": ryw, "read_your_writes_timeout": 30}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 30}
    async with EventSourcingManager(config) as es:
        await es.append_event(stream_id="order-1", event_type="Mine", data={})
        for _ in range(600):  # bounded: until the standby has replayed it
            if await _types(es, "order-1") == ["Mine"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the standby never showed the append")
        await asyncio.to_thread(_stop_standby, standby_pair)
        for _ in range(3):
            with pytest.raises(ConfigurationError) as err:
                await _types(es, "order-1")
            assert err.value.details["field"] == "read_url"
            assert "another cluster" in str(err.value)
