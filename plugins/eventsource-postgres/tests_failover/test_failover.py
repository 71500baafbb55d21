"""Acknowledged appends across a PostgreSQL failover: SIGKILL of the primary, promotion of the standby.

A writer appends single events and batches with client event ids through a libpq multi-host URL. On a
connection error it repeats the same append (same ids, same expected version) until it is acknowledged:
the ids make the repeat idempotent, so an append that committed before the crash is reported as a
duplicate rather than written twice. Synchronous replication must lose nothing; asynchronous replication
may lose a window of acknowledged events, which is measured (with the standby cut off) and reported.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.subscriptions import CheckpointAheadError
from eventsource.sync import SyncEventSourcingManager
from pair import Pair

if TYPE_CHECKING:
    from eventsource.model import Event

STREAMS = 4
RETRYABLE = (ProviderUnavailableError, ProviderTimeoutError)


class Writer:
    """Appends in a loop, remembering every acknowledged event id and every id it sent but saw no answer for."""

    def __init__(self, es: EventSourcingManager, *, pad: int = 0) -> None:
        self.es = es
        self.pad = pad
        self.streams = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(STREAMS)]
        self.versions = dict.fromkeys(self.streams, 0)
        self.acked: list[str] = []
        self.acked_in: dict[str, list[str]] = {s: [] for s in self.streams}
        """Each stream's acknowledged ids in the order they were acknowledged."""
        self.sent: set[str] = set()
        self.duplicates = 0
        self.rewinds: list[tuple[str, int, int]] = []
        self.stop = asyncio.Event()
        self.longest_gap = 0.0

    async def run(self) -> None:
        i = 0
        last_ack = time.monotonic()
        while not self.stop.is_set():
            stream = self.streams[i % STREAMS]
            n = 1 if i % 3 else 5  # single events and batches of five
            ids = [str(uuid.uuid4()) for _ in range(n)]
            self.sent.update(ids)
            result = await self._append_until_acked(stream, ids)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last_ack)
            last_ack = now
            self.duplicates += bool(result)
            self.acked.extend(ids)
            self.acked_in[stream].extend(ids)
            self.versions[stream] += n
            i += 1

    async def _append_until_acked(self, stream: str, ids: list[str]) -> bool:
        """Append ``ids`` at the stream's next version; on connection errors repeat the same append."""
        pad = os.urandom(self.pad).hex() if self.pad else ""  # incompressible: replication cannot keep up
        events = [EventData(event_type="OrderLine", data={"n": k, "pad": pad}, event_id=e) for k, e in enumerate(ids)]
        deadline = time.monotonic() + 60
        while True:
            try:
                res = await self.es.append_events_batch(
                    stream_id=stream, events=events, expected_version=self.versions[stream]
                )
            except RETRYABLE:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            except ConcurrencyError as exc:
                # the promoted server is behind what this writer was told: acknowledged events were lost
                # (asynchronous replication). Go on from the version the server has.
                self.rewinds.append((stream, self.versions[stream], int(exc.actual)))
                self.versions[stream] = int(exc.actual)
                continue
            return bool(res.duplicate)


class Follower:
    """A live subscription to every stream, subscribed again after its last event on an outage (as a service does)."""

    def __init__(self, es: EventSourcingManager) -> None:
        self.es = es
        self.delivered: list[tuple[int, str]] = []
        self.refused: CheckpointAheadError | None = None
        """The store went back below what was delivered (events lost by an asynchronous failover): said, not passed."""

    async def run(self) -> None:
        while True:
            start = self.delivered[-1][0] + 1 if self.delivered else 0
            try:
                async with self.es.subscribe(from_position=start, poll_interval=0.2) as sub:
                    async for e in sub:
                        self.delivered.append((e.position, e.event_id))
            except RETRYABLE:
                await asyncio.sleep(0.05)
            except CheckpointAheadError as e:
                self.refused = e
                return

    async def caught_up(self, ids: set[str]) -> None:
        for _ in range(600):  # bounded: until every stored event came, or the follower stopped
            if self.refused is not None or ids <= {i for _, i in self.delivered}:
                return
            await asyncio.sleep(0.05)


async def _found(url: str, streams: list[str]) -> tuple[Counter[str], dict[str, list[str]]]:
    """Every event id stored on the server now answering ``url``, counted, and each stream's ids in order."""
    async with EventSourcingManager({"providers": {"pg": url}}) as es:
        found: Counter[str] = Counter()
        order: dict[str, list[str]] = {}
        for s in streams:
            versions = []
            order[s] = []
            async for e in es.read_stream(s):
                found[e.event_id] += 1
                order[s].append(e.event_id)
                versions.append(e.version)
            assert versions == list(range(1, len(versions) + 1)), f"{s}: versions not gap-free: {versions}"
        return found, order


async def _failover_run(pair: Pair, *, hold_standby: float) -> dict[str, Any]:
    config = {"providers": {"pg": pair.url()}, "timeout": 5, "retry_attempts": 2, "retry_delay": 0.05}
    async with EventSourcingManager(config) as es:
        w = Writer(es, pad=16384 if hold_standby else 0)
        follower = Follower(es)
        following = asyncio.create_task(follower.run())
        task = asyncio.create_task(w.run())
        await asyncio.sleep(1.5)
        assert w.acked, "the writer acknowledged nothing before the failover"
        acked_at_cut = None
        if hold_standby:  # the standby stops receiving: what asynchronous replication can lose
            await asyncio.to_thread(pair.cut_standby)
            acked_at_cut = len(w.acked)
            await asyncio.sleep(hold_standby)
        acked_before_kill = len(w.acked)
        await asyncio.to_thread(pair.kill_primary)
        await asyncio.to_thread(pair.promote)
        if pair.synchronous:  # (else its commits wait for a standby it does not have, and are never acknowledged)
            await asyncio.to_thread(pair.stop_waiting_for_a_standby)
        # the writer must go on by itself on the promoted server
        target = len(w.acked) + 20
        deadline = time.monotonic() + 60
        while len(w.acked) < target and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        w.stop.set()
        await task
        assert len(w.acked) >= target, "the writer did not resume on the promoted standby"
        found, order = await _found(pair.url(), w.streams)
        await follower.caught_up(set(found))
        following.cancel()
    # the live subscription: nothing twice, in position order, and every stored event, unless it stopped saying
    # the store went back below what it had delivered (it passed over the events written after the failover)
    positions = [p for p, _ in follower.delivered]
    assert positions == sorted(set(positions)), "the subscription repeated or reordered events"
    missed = set(found) - {i for _, i in follower.delivered}
    assert follower.refused is not None or not missed, f"the subscription silently missed {len(missed)} events"
    lost = [e for e in w.acked if e not in found]
    # the event-id index makes a doubled id impossible, so "doubled" alone cannot fail: also check that
    # each stream holds exactly what was acknowledged to it, in that order, less what was lost
    gone = set(lost)
    for s in w.streams:
        assert order[s] == [e for e in w.acked_in[s] if e not in gone], f"{s}: not the acknowledged sequence"
    doubled = [e for e, n in found.items() if n > 1]
    unacked_found = [e for e in found if e not in set(w.acked)]
    assert not [e for e in found if e not in w.sent], "events nobody sent are in the store"
    return {
        "acked": len(w.acked),
        "acked_before_kill": acked_before_kill,
        "acked_while_cut": None if acked_at_cut is None else acked_before_kill - acked_at_cut,
        "lost": len(lost),
        "doubled": len(doubled),
        "unacked_found": len(unacked_found),
        "outage": w.longest_gap,
        "duplicates_reported": w.duplicates,
        "rewinds": len(w.rewinds),
        "follower_refused": follower.refused is not None,
    }


@pytest.mark.parametrize("hold_standby", [0.0, 2.0], ids=["standby-current", "standby-cut-2s"])
async def test_acknowledged_events_survive_failover(
    pair: Pair, hold_standby: float, results: list[dict[str, Any]]
) -> None:
    r = await _failover_run(pair, hold_standby=hold_standby)
    mode = "sync" if pair.synchronous else "async"
    results.append({"run": f"{mode} replication, {'standby cut off 2 s' if hold_standby else 'standby current'}", **r})
    assert r["doubled"] == 0, r
    if pair.synchronous:
        assert r["lost"] == 0, r
        assert r["rewinds"] == 0, r
        assert not r["follower_refused"], r
    elif hold_standby:
        # everything acknowledged after the standby was cut off existed on the killed primary alone
        assert r["acked_while_cut"] > 0, r
        assert r["lost"] >= r["acked_while_cut"] - 5, r  # less the one append in flight at the cut
        assert r["rewinds"] > 0, r


def _sync_append(config: dict[str, Any], event_type: str) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="order-d", event_type=event_type, data={})


async def test_an_append_is_not_acknowledged_before_the_synchronous_standby_has_it() -> None:
    # synchronous replication, the standby gone: an append's commit waits for it until the manager's timeout
    # cancels the wait, and the commit stands on the primary alone (PostgreSQL warns, and the caller gets a
    # timeout: outcome unknown). The manager's retry, same ids, found them stored and answered duplicate=True:
    # acknowledged, and lost when the primary then died and the standby was promoted
    pair = Pair(synchronous=True).start()
    try:
        config = {"providers": {"pg": pair.url()}, "timeout": 1, "retry_attempts": 3, "retry_delay": 0.05}
        async with EventSourcingManager(config) as es:
            await es.append_event(stream_id="order-d", event_type="Placed", data={})
            await asyncio.to_thread(pair.cut_standby)
            with pytest.raises(ProviderTimeoutError):
                await es.append_event(stream_id="order-d", event_type="Paid", data={})
            # the sync API waits in the caller's thread, timed out its own way: the statement it cancelled ended in
            # success (the commit's wait was what it cut short), which it took for the append's answer
            with pytest.raises(ProviderTimeoutError):
                await asyncio.to_thread(_sync_append, config, "Shipped")
            stored = [e.event_type async for e in es.read_stream("order-d")]
            assert stored == ["Placed", "Paid", "Shipped"], "a cancelled commit did not stand: the test proves nothing"
        await asyncio.to_thread(pair.kill_primary)
        await asyncio.to_thread(pair.promote)
        async with EventSourcingManager({"providers": {"pg": pair.url()}, "timeout": 30}) as es:
            events: list[Event] = [e async for e in es.read_stream("order-d")]
        assert [e.event_type for e in events] == ["Placed"]  # what was acknowledged, and no more
    finally:
        pair.stop()
