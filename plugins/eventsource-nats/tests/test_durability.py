"""The durability audit on JetStream: memory storage is degraded anywhere, one replica only on a cluster.

One replica on a standalone server is the only choice there: a note, not a risk (see the plugin README).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.testing import DurabilitySuite
from eventsource_nats.monitoring import SINGLE_SERVER_NOTE
from servers import start_cluster

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from eventsource_nats.provider import NatsProvider
    from servers import Servers


class TestNatsDurability(DurabilitySuite):
    """On the machine's standalone server: file storage is healthy (with a note), memory storage degraded."""

    @pytest.fixture
    async def provider(self, machine_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield machine_provider

    @pytest.fixture
    async def unsafe(self, machine_nats_url: str) -> AsyncIterator[tuple[NatsProvider, str]]:
        p = await open_provider(machine_nats_url, storage="memory")
        yield p, "storage"
        await dispose(p)


async def test_one_replica_on_a_standalone_server_is_a_note(machine_provider: NatsProvider) -> None:
    h = await DurabilitySuite.health_of(machine_provider)
    assert h.details["status"] == "healthy", h.message
    assert h.details["durability_notes"] == [SINGLE_SERVER_NOTE]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Servers]:
    """Three current servers in one cluster, on free loopback ports, stopped at the end."""
    servers = start_cluster(3)
    yield servers
    servers.stop()


async def _open_when_ready(url: str, replicas: int) -> NatsProvider:
    """The cluster needs a moment to elect a meta leader before it takes a stream."""
    last: Exception | None = None
    for _ in range(60):
        try:
            return await open_provider(url, replicas=replicas, request_timeout=10.0)
        except Exception as e:  # noqa: BLE001 - "no suitable peers" while the meta group forms
            last = e
        await asyncio.sleep(0.5)
    msg = f"the cluster never accepted an R{replicas} stream: {last}"
    raise AssertionError(msg)


async def test_one_replica_on_a_cluster_is_degraded_three_are_not(cluster: Servers) -> None:
    one = await _open_when_ready(cluster.url, 1)
    try:
        h = await DurabilitySuite.health_of(one)
    finally:
        await dispose(one)
    assert h.details["status"] == "degraded", h.message
    assert {r["setting"] for r in h.details["durability_risks"]} == {"num_replicas"}
    three = await _open_when_ready(cluster.url, 3)
    try:
        h = await DurabilitySuite.health_of(three)
    finally:
        await dispose(three)
    assert h.details["status"] == "healthy", h.message
    assert "durability_notes" not in h.details
