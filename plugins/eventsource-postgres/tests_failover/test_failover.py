"""Acknowledged appends across a PostgreSQL failover: SIGKILL of the primary, promotion of the standby.

A writer appends single events and batches with client event ids through a libpq multi-host URL. On a
connection error it repeats the same append (same ids, same expected version) until it is acknowledged:
the ids make the repeat idempotent, so an append that committed before the crash is reported as a
duplicate rather than written twice. Synchronous replication must lose nothing; asynchronous replication
may lose a window of acknowledged events, which is measured (with the standby held back) and reported.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError

if TYPE_CHECKING:
    from pair import Pair

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


async def _found(url: str, streams: list[str]) -> Counter[str]:
    """Every event id stored on the server now answering ``url``, counted."""
    async with EventSourcingManager({"providers": {"pg": url}}) as es:
        found: Counter[str] = Counter()
        for s in streams:
            versions = []
            async for e in es.read_stream(s):
                found[e.event_id] += 1
                versions.append(e.version)
            assert versions == list(range(1, len(versions) + 1)), f"{s}: versions not gap-free: {versions}"
        return found


async def _failover_run(pair: Pair, *, hold_standby: float) -> dict[str, Any]:
    config = {"providers": {"pg": pair.url()}, "timeout": 5, "retry_attempts": 2, "retry_delay": 0.05}
    async with EventSourcingManager(config) as es:
        w = Writer(es, pad=16384 if hold_standby else 0)
        task = asyncio.create_task(w.run())
        await asyncio.sleep(1.5)
        assert w.acked, "the writer acknowledged nothing before the failover"
        held = []
        if hold_standby:  # the standby falls behind: what asynchronous replication can lose
            held = _standby_walreceivers(pair)
            for p in held:
                os.kill(p, signal.SIGSTOP)
            await asyncio.sleep(hold_standby)
        acked_before_kill = len(w.acked)
        await asyncio.to_thread(pair.kill_primary)
        for p in held:
            os.kill(p, signal.SIGCONT)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(pair.promote)
        # the writer must go on by itself on the promoted server
        target = len(w.acked) + 20
        deadline = time.monotonic() + 60
        while len(w.acked) < target and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        w.stop.set()
        await task
        assert len(w.acked) >= target, "the writer did not resume on the promoted standby"
    found = await _found(pair.url(), w.streams)
    lost = [e for e in w.acked if e not in found]
    doubled = [e for e, n in found.items() if n > 1]
    unacked_found = [e for e in found if e not in set(w.acked)]
    assert not [e for e in found if e not in w.sent], "events nobody sent are in the store"
    return {
        "acked": len(w.acked),
        "acked_before_kill": acked_before_kill,
        "lost": len(lost),
        "doubled": len(doubled),
        "unacked_found": len(unacked_found),
        "outage": w.longest_gap,
        "duplicates_reported": w.duplicates,
        "rewinds": len(w.rewinds),
    }


def _standby_walreceivers(pair: Pair) -> list[int]:
    """The standby's walreceiver process (a child of the standby's postmaster)."""
    pid = int((pair.standby_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True).stdout
    return [int(c) for c in children.split() if "walreceiver" in Path(f"/proc/{c}/cmdline").read_text()]


@pytest.mark.parametrize("hold_standby", [0.0, 2.0], ids=["standby-current", "standby-held-2s"])
async def test_acknowledged_events_survive_failover(
    pair: Pair, hold_standby: float, results: list[dict[str, Any]]
) -> None:
    r = await _failover_run(pair, hold_standby=hold_standby)
    mode = "sync" if pair.synchronous else "async"
    results.append({"run": f"{mode} replication, {'standby held 2 s' if hold_standby else 'standby current'}", **r})
    assert r["doubled"] == 0, r
    if pair.synchronous:
        assert r["lost"] == 0, r
        assert r["rewinds"] == 0, r
