"""Fault test: a 3-node cluster of a current server, an R3 stream, one node SIGKILLed while 2,000 events
are appended. Afterwards every acknowledged event is readable exactly once, with gap-free versions."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import NewEvent, utcnow
from servers import start_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsource_nats.provider import NatsProvider
    from servers import Servers

STREAMS = 20
PER_STREAM = 100
KILL_AFTER = 600


@pytest.fixture(scope="module")
def cluster() -> Iterator[Servers]:
    """Three current servers in one cluster, on free loopback ports, stopped at the end."""
    servers = start_cluster(3)
    yield servers
    servers.stop()


async def _connect_when_ready(url: str) -> NatsProvider:
    """The cluster needs a moment to elect a meta leader before a replicated stream can be created."""
    last: Exception | None = None
    for _ in range(60):
        try:
            return await open_provider(url, replicas=3, publish_retry_seconds=60.0, request_timeout=10.0)
        except (ProviderUnavailableError, ProviderTimeoutError) as e:
            last = e
        except Exception as e:  # noqa: BLE001 - "no suitable peers" while the meta group forms
            last = e
        await asyncio.sleep(0.5)
    msg = f"the cluster never accepted an R3 stream: {last}"
    raise AssertionError(msg)


async def test_sigkill_of_the_leader_while_appending_loses_and_duplicates_nothing(cluster: Servers) -> None:
    provider = await _connect_when_ready(cluster.url)
    try:
        assert provider.occ_mode == "subject"
        info = await provider._conn.api(f"STREAM.INFO.{provider.names.stream}")
        assert info["config"]["num_replicas"] == 3
        leader = info["cluster"]["leader"]
        victim = next(n for n in cluster.nodes if n.name == leader)
        streams = [f"fault-{i}-{uuid.uuid4().hex[:6]}" for i in range(STREAMS)]
        acked: dict[str, list[tuple[int, str]]] = {s: [] for s in streams}
        counter = {"acked": 0, "retries": 0, "killed": False}

        async def writer(stream_id: str) -> None:
            for version in range(PER_STREAM):
                ev = NewEvent(
                    event_id=str(uuid.uuid4()),
                    event_type="Faulted",
                    data=json.dumps({"s": stream_id, "v": version + 1}).encode(),
                    metadata=b"",
                    encoding="json",
                    timestamp=utcnow(),
                )
                while True:  # the caller's retry: the same event, the same expected version
                    try:
                        res = await provider.append(stream_id, [ev], version)
                        break
                    except (ProviderUnavailableError, ProviderTimeoutError):
                        counter["retries"] += 1
                        await asyncio.sleep(0.2)
                acked[stream_id].append((res.first_version, ev.event_id))
                counter["acked"] += 1
                if counter["acked"] >= KILL_AFTER and not counter["killed"]:
                    counter["killed"] = True
                    victim.kill()

        await asyncio.wait_for(asyncio.gather(*(writer(s) for s in streams)), timeout=150)
        print(f"fault test: {counter}")
        assert counter["killed"]

        async def read(s: str) -> list[tuple[int, str]]:
            for _ in range(30):  # a caller retries a read that failed while the cluster recovers
                try:
                    return [(e.version, e.event_id) async for e in provider.read_stream(s)]
                except (ProviderUnavailableError, ProviderTimeoutError):
                    counter["retries"] += 1
                    await asyncio.sleep(1.0)
            msg = f"stream {s} stayed unreadable"
            raise AssertionError(msg)

        total = 0
        for s in streams:
            got = await read(s)
            assert got == acked[s], f"stream {s}: stored events differ from the acknowledged ones"
            assert [v for v, _ in got] == list(range(1, PER_STREAM + 1))
            total += len(got)
        assert total == STREAMS * PER_STREAM
        everything = [e.event_id async for e in provider.read_all()]  # the cluster has recovered by now
        assert len(everything) == len(set(everything)) == STREAMS * PER_STREAM
        assert set(everything) == {eid for s in streams for _, eid in acked[s]}
        for _ in range(30):  # health answers unhealthy (it never raises) while the cluster recovers
            health = await provider.health()
            if health.healthy:
                break
            await asyncio.sleep(1.0)
        assert health.healthy, health.message
        assert any("offline or behind" in w for w in health.details["durability_warnings"]), health.details
    finally:
        await dispose(provider)
