"""Cluster under load: batches, the event-id index and KV snapshots on a 3-node cluster of a current server.

Each test kills one node while writers run (the leader of the events stream, a non-leader, or the leader
of the snapshot bucket's stream), restarts it afterwards, and checks that every acknowledged event and
snapshot is there exactly once: versions gap-free, ids unique, and an acknowledged batch sent again is
recognised as a duplicate through the event-id index (nothing written twice).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from conftest import dispose
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import NewEvent, NewSnapshot, utcnow
from servers import start_cluster
from test_cluster_fault import _connect_when_ready

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsource_nats.provider import NatsProvider
    from servers import Node, Servers

RETRYABLE = (ProviderUnavailableError, ProviderTimeoutError)
STREAMS = 10
BATCHES = 30
BATCH = 5
KILL_AFTER = 100  # acknowledged batches before the kill


@pytest.fixture(scope="module")
def cluster() -> Iterator[Servers]:
    """Three current servers in one cluster; a test that kills a node starts it again before it ends."""
    servers = start_cluster(3)
    yield servers
    servers.stop()


def _batch(stream_id: str, first: int) -> list[NewEvent]:
    return [
        NewEvent(
            event_id=str(uuid.uuid4()),
            event_type="Loaded",
            data=json.dumps({"s": stream_id, "v": first + k}).encode(),
            metadata=b"",
            encoding="json",
            timestamp=utcnow(),
        )
        for k in range(BATCH)
    ]


async def _retry(factory, counter: dict[str, int]):  # type: ignore[no-untyped-def]
    """The caller's retry: the same call again until the cluster answers (bounded)."""
    for _ in range(600):
        try:
            return await factory()
        except RETRYABLE:
            counter["retries"] += 1
            await asyncio.sleep(0.2)
    msg = "the cluster did not answer for two minutes"
    raise AssertionError(msg)


async def _dispose(provider: NatsProvider) -> None:
    """Drop the store once the cluster answers again (a restarted node may hold up API calls for a while)."""
    for _ in range(12):
        try:
            await provider.connect()  # again after a failed try (dispose closes it whatever happens)
            await dispose(provider)
        except Exception:  # noqa: BLE001 - nats' TimeoutError while the restarted node rejoins
            await asyncio.sleep(5)
            continue
        return
    await provider.connect()
    await dispose(provider)


async def _leader(provider: NatsProvider, stream: str) -> str:
    info = await provider._conn.api(f"STREAM.INFO.{stream}")
    return str(info["cluster"]["leader"])


async def _append_batches_killing(provider: NatsProvider, victim: Node) -> tuple[dict[str, list], dict[str, int]]:
    """Writers append batches of five (client ids); ``victim`` is SIGKILLed after KILL_AFTER acked batches."""
    streams = [f"load-{i}-{uuid.uuid4().hex[:6]}" for i in range(STREAMS)]
    acked: dict[str, list[list[NewEvent]]] = {s: [] for s in streams}
    counter = {"acked": 0, "retries": 0, "duplicates": 0, "killed": 0}

    async def writer(stream_id: str) -> None:
        for b in range(BATCHES):
            events = _batch(stream_id, b * BATCH + 1)
            res = await _retry(lambda: provider.append(stream_id, events, b * BATCH), counter)  # noqa: B023
            assert res.first_version == b * BATCH + 1
            counter["duplicates"] += bool(res.duplicate)
            acked[stream_id].append(events)
            counter["acked"] += 1
            if counter["acked"] >= KILL_AFTER and not counter["killed"]:
                counter["killed"] = 1
                victim.kill()

    await asyncio.wait_for(asyncio.gather(*(writer(s) for s in streams)), timeout=240)
    assert counter["killed"]
    return acked, counter


async def _check_events(
    provider: NatsProvider, acked: dict[str, list[list[NewEvent]]], counter: dict[str, int]
) -> None:
    for s, batches in acked.items():
        want = [e.event_id for batch in batches for e in batch]
        got = await _retry(lambda: _read(provider, s), counter)  # noqa: B023
        assert [eid for _, eid in got] == want, f"stream {s}: stored events differ from the acknowledged ones"
        assert [v for v, _ in got] == list(range(1, BATCHES * BATCH + 1))
    everything = [e.event_id async for e in provider.read_all()]
    assert len(everything) == len(set(everything)) == STREAMS * BATCHES * BATCH
    # the event-id index survived the fault: an acknowledged batch sent again is a duplicate, not a write
    s, batches = next(iter(acked.items()))
    again = await _retry(lambda: provider.append(s, batches[3], 3 * BATCH), counter)
    assert again.duplicate
    assert again.first_version == 3 * BATCH + 1
    for batch in batches[:3]:
        found = await _retry(lambda: provider.get_event(batch[0].event_id), counter)  # noqa: B023
        assert found is not None
        assert found.stream_id == s


async def _read(provider: NatsProvider, s: str) -> list[tuple[int, str]]:
    return [(e.version, e.event_id) async for e in provider.read_stream(s)]


async def _run_with_victim(cluster: Servers, pick: str) -> None:
    provider = await _connect_when_ready(cluster.url)
    victim = None
    try:
        leader = await _leader(provider, provider.names.stream)
        if pick == "leader":
            victim = next(n for n in cluster.nodes if n.name == leader)
        else:
            victim = next(n for n in cluster.nodes if n.name != leader)
        acked, counter = await _append_batches_killing(provider, victim)
        print(f"cluster load ({pick} killed): {counter}")
        await _check_events(provider, acked, counter)
    finally:
        if victim is not None:
            victim.start()
        await _dispose(provider)


async def test_batches_and_the_id_index_survive_a_leader_kill(cluster: Servers) -> None:
    await _run_with_victim(cluster, "leader")


async def test_batches_and_the_id_index_survive_the_loss_of_a_non_leader(cluster: Servers) -> None:
    await _run_with_victim(cluster, "follower")


async def test_snapshots_in_kv_survive_a_leader_change_of_their_bucket(cluster: Servers) -> None:
    provider = await _connect_when_ready(cluster.url)
    victim = None
    counter = {"retries": 0}
    try:
        leader = await _leader(provider, f"KV_{provider.names.snapshot_bucket}")
        victim = next(n for n in cluster.nodes if n.name == leader)
        streams = [f"snap-{i}-{uuid.uuid4().hex[:6]}" for i in range(STREAMS)]
        for s in streams:
            await _retry(lambda: provider.append(s, _batch(s, 1), 0), counter)  # noqa: B023
        saved: dict[str, int] = {}

        async def snapshotter(s: str) -> None:
            for version in range(1, BATCH + 1):
                snap = NewSnapshot(
                    snapshot_id=str(uuid.uuid4()),
                    stream_id=s,
                    version=version,
                    data=json.dumps({"v": version}).encode(),
                    metadata=b"",
                    encoding="json",
                    created_at=datetime.now(UTC),
                )
                await _retry(lambda: provider.save_snapshot(snap), counter)  # noqa: B023
                saved[s] = version
                if len(saved) == STREAMS // 2 and victim.proc is not None and victim.proc.poll() is None:
                    victim.kill()

        await asyncio.wait_for(asyncio.gather(*(snapshotter(s) for s in streams)), timeout=240)
        print(f"snapshots under a KV leader kill: {counter}")
        assert victim.proc is not None
        assert victim.proc.poll() is not None, "the bucket's leader was never killed"
        for s in streams:
            got = await _retry(lambda: provider.get_snapshot(s), counter)  # noqa: B023
            assert got is not None
            assert (got.version, json.loads(got.data)) == (BATCH, {"v": BATCH})
    finally:
        if victim is not None:
            victim.start()
        await _dispose(provider)
