"""``ProjectionSuite``: a projection runner process SIGKILLed at random while events flow, and a lease handover.

A plugin subclasses it next to its ``ProviderSuite`` and overrides ``provider``; the sink is a SQLite file
unless it overrides :meth:`ProjectionSuite.sink_spec`, :meth:`~ProjectionSuite.create_table` and
:meth:`~ProjectionSuite.applied` (the postgres plugin runs it into PostgreSQL too), and the lease is a SQLite
file lease unless it overrides ``lease_url``. The runner runs in ``eventsource.testing.projection_worker``
processes; a store with ``global_order="per_stream"`` is followed through one stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.model import EventData
from eventsource.testing.base import ProviderSuiteBase

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider

WAIT = 120.0
"""Seconds a test waits for the runner to apply what must be applied (generous: a shared machine)."""
CANCEL_WAIT = 30.0
"""Seconds a cancelled ``run()`` may take to end (it never waits for a store: cancellation should be prompt)."""


class ProjectionSuite(ProviderSuiteBase):
    """Projection runners in other processes on the store under test. Subclass and override ``provider``."""

    kills = 20
    events = 400

    @pytest.fixture
    def sink_spec(self, tmp_path: Path) -> dict[str, Any]:
        """Override to project into another SQL database (the worker knows ``sqlite`` and ``postgres``)."""
        return {"kind": "sqlite", "url": f"sqlite:///{tmp_path}/sink-{uuid.uuid4().hex[:8]}.db"}

    @pytest.fixture
    def lease_url(self, tmp_path: Path) -> str:
        """Override to hand over through another lease plugin."""
        return f"sqlite:///{tmp_path}/lease.db"

    def create_table(self, sink: dict[str, Any], table: str) -> None:
        """Create the worker's table in the sink (override with :meth:`applied` for another database)."""
        db = sqlite3.connect(sink["url"].removeprefix("sqlite:///"))
        with contextlib.closing(db):
            db.execute(
                f"CREATE TABLE {table} (event_id TEXT PRIMARY KEY, position INTEGER, runner INTEGER, applied INTEGER)"
            )
            db.commit()

    def applied(self, sink: dict[str, Any], table: str) -> dict[str, tuple[int, int, int]]:
        """``{event_id: (applied count, runner pid, position)}`` as the sink holds it now."""
        db = sqlite3.connect(sink["url"].removeprefix("sqlite:///"), timeout=30)
        with contextlib.closing(db):
            rows = db.execute(f"SELECT event_id, applied, runner, position FROM {table}").fetchall()
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _needs_other_processes(provider: Provider) -> None:
        if not provider.capabilities.cross_process_reads:
            pytest.skip("cross_process_reads=False: no runner process can read events that live in this process")

    def _spec(self, provider: Provider, sink: dict[str, Any], table: str, lease: str | None) -> dict[str, Any]:
        cls = type(provider)
        one_stream = provider.capabilities.global_order != "total"
        return {
            "provider_class": f"{cls.__module__}:{cls.__qualname__}",
            "spawn_args": provider.spawn_args(),
            "sink": sink,
            "name": table,
            "table": table,
            "lease": lease,
            "stream_id": f"{table}-stream" if one_stream else None,
        }

    async def _start(self, spec: dict[str, Any]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eventsource.testing.projection_worker",
            json.dumps(spec),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        if line.strip() != b"started":
            await self._kill(proc)
            pytest.fail(f"the projection worker did not start (said {line!r}, exit code {proc.returncode})")
        return proc

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def _write(self, manager: EventSourcingManager, spec: dict[str, Any], n: int, ids: list[str]) -> None:
        """Append ``n`` events in small batches with pauses, recording their ids; others are noise types."""
        rnd = random.Random()
        while n > 0:
            k = min(n, rnd.randint(1, 5))
            stream = spec["stream_id"] or f"{spec['table']}-{rnd.randint(0, 4)}"
            batch = [EventData("Counted", {"i": len(ids) + j}, event_id=str(uuid.uuid4())) for j in range(k)]
            if rnd.random() < 0.2:
                batch.append(EventData("Ignored", {}))
            await manager.append_events_batch(stream_id=stream, events=batch)
            ids.extend(e.event_id for e in batch if e.event_type == "Counted" and e.event_id)
            n -= k
            await asyncio.sleep(rnd.uniform(0, 0.02))

    async def _until(self, sink: dict[str, Any], table: str, want: set[str], what: str) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while True:
                got = await asyncio.to_thread(self.applied, sink, table)
                if want <= set(got):
                    return got
                await asyncio.sleep(0.1)

        try:
            return await asyncio.wait_for(poll(), WAIT)
        except TimeoutError:
            got = await asyncio.to_thread(self.applied, sink, table)
            pytest.fail(f"{what}: {len(want - set(got))} of {len(want)} events not applied within {WAIT}s")

    async def _applying(self, sink: dict[str, Any], table: str, pid: int) -> None:
        """Return once the runner process ``pid`` has applied an event (fail after :data:`WAIT` seconds)."""

        async def poll() -> None:
            while True:
                got = await asyncio.to_thread(self.applied, sink, table)
                if any(v[1] == pid for v in got.values()):
                    return
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(poll(), WAIT)
        except TimeoutError:
            pytest.fail(f"the runner process {pid} applied no event within {WAIT}s while events were appended")

    # ------------------------------------------------------------------ tests

    async def test_a_runner_cancelled_20_times_in_process_applies_every_event_exactly_once(
        self, provider: Provider, manager: EventSourcingManager, tmp_path: Path
    ) -> None:
        """The in-process twin of the SIGKILL test (every store, memory included): cancel ``run()`` anywhere."""
        from eventsource.projections import Projection, ProjectionRunner, SqliteSink

        sink = {"kind": "sqlite", "url": f"sqlite:///{tmp_path}/sink-{uuid.uuid4().hex[:8]}.db"}
        table = f"proj_{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(ProjectionSuite.create_table, self, sink, table)  # this test's sink is SQLite
        spec = ProjectionSuite._spec(self, provider, sink, table, None)
        sql = (
            f"INSERT INTO {table} (event_id, position, runner, applied) VALUES (?, ?, 0, 1) "
            "ON CONFLICT (event_id) DO UPDATE SET applied = applied + 1"
        )

        def counted(event: Any, tx: Any) -> None:
            tx.execute(sql, (event.event_id, event.version if spec["stream_id"] else event.position))

        def runner() -> ProjectionRunner:
            projection = Projection(table, {"Counted": counted}, stream_id=spec["stream_id"])
            return ProjectionRunner(manager, batch_size=5, poll_interval=0.05).add(projection, SqliteSink(sink["url"]))

        ids: list[str] = []
        writer = asyncio.create_task(self._write(manager, spec, self.events // 2, ids))
        rnd = random.Random()
        for _ in range(self.kills):
            task = asyncio.create_task(runner().run())
            await asyncio.sleep(rnd.uniform(0.01, 0.2))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=CANCEL_WAIT)
            if not done:
                pytest.fail(f"ProjectionRunner.run() had not ended {CANCEL_WAIT}s after it was cancelled")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await writer
        await runner().catch_up(timeout=WAIT)
        got = await asyncio.to_thread(ProjectionSuite.applied, self, sink, table)
        assert set(got) == set(ids)
        twice = {k: v[0] for k, v in got.items() if v[0] != 1}
        assert not twice, f"events applied more than once: {twice}"

    async def test_a_runner_sigkilled_20_times_applies_every_event_exactly_once(
        self, provider: Provider, manager: EventSourcingManager, sink_spec: dict[str, Any]
    ) -> None:
        self._needs_other_processes(provider)
        table = f"proj_{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(self.create_table, sink_spec, table)
        spec = self._spec(provider, sink_spec, table, None)
        ids: list[str] = []
        writer = asyncio.create_task(self._write(manager, spec, self.events, ids))
        rnd = random.Random()
        pids = []
        for i in range(self.kills):
            proc = await self._start(spec)
            pids.append(proc.pid)
            if i == 0:  # a loaded machine may start runners slower than 0.6 s: the first is killed while it applies
                await self._applying(sink_spec, table, proc.pid)
            await asyncio.sleep(rnd.uniform(0.05, 0.6))
            await self._kill(proc)
        await writer
        proc = await self._start(spec)
        try:
            got = await self._until(sink_spec, table, set(ids), "after 20 kills")
            await asyncio.sleep(0.3)  # a duplicate applied late would show now
            got = await asyncio.to_thread(self.applied, sink_spec, table)
        finally:
            await self._kill(proc)
        assert set(got) == set(ids)
        twice = {k: v[0] for k, v in got.items() if v[0] != 1}
        assert not twice, f"events applied more than once: {twice}"
        runners = {v[1] for v in got.values()}
        assert len(runners) > 1, "every event was applied by the last runner: the kills never hit a running one"
        assert runners <= {*pids, proc.pid}

    async def test_the_lease_hands_the_projection_over_when_its_holder_dies(
        self, provider: Provider, manager: EventSourcingManager, sink_spec: dict[str, Any], lease_url: str
    ) -> None:
        self._needs_other_processes(provider)
        table = f"proj_{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(self.create_table, sink_spec, table)
        spec = self._spec(provider, sink_spec, table, lease_url)
        ids: list[str] = []
        first = await self._start(spec)
        second: asyncio.subprocess.Process | None = None
        try:
            await self._write(manager, spec, 20, ids)
            await self._until(sink_spec, table, set(ids), "the first runner")
            second = await self._start(spec)  # it waits for the lease
            await self._write(manager, spec, 20, ids)
            got = await self._until(sink_spec, table, set(ids), "the first runner, with a second one waiting")
            assert {v[1] for v in got.values()} == {first.pid}, "the waiting runner applied events"
            await self._kill(first)
            await self._write(manager, spec, 20, ids)
            got = await self._until(sink_spec, table, set(ids), "the second runner, after the first died")
        finally:
            await self._kill(first)
            if second is not None:
                await self._kill(second)
        assert all(v[0] == 1 for v in got.values())
        by_first = [v[2] for v in got.values() if v[1] == first.pid]
        by_second = [v[2] for v in got.values() if v[1] == second.pid]
        assert by_second, "the second runner never took over"
        assert max(by_first) < min(by_second), "the two runners interleaved"
