"""Races: two writers with the same expected version, and exactly one wins.

Two instances in this process always race; two OS processes (through :mod:`eventsource.testing.worker`)
race only where the provider declares ``concurrency="cross_process"``, and the test is skipped naming the
capability otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import ConcurrencyError
from eventsource.model import NewEvent, utcnow
from eventsource.testing.base import ProviderSuiteBase, sid

if TYPE_CHECKING:
    from eventsource.provider import Provider


class RaceSuite(ProviderSuiteBase):
    """Two writers with the same expected version: exactly one wins."""

    async def test_two_instances_race_exactly_one_wins(self, provider: Provider, second: Provider) -> None:
        s = sid("race")
        rounds = 15
        wins: dict[int, list[str]] = {}

        async def writer(p: Provider, name: str, r: int) -> None:
            new = NewEvent(
                event_id=str(uuid.uuid4()),
                event_type="Raced",
                data=json.dumps({"w": name}).encode(),
                metadata=b"",
                encoding="json",
                timestamp=utcnow(),
            )
            try:
                res = await p.append(s, [new], r)
            except ConcurrencyError:
                return
            wins.setdefault(res.first_version, []).append(name)

        for r in range(rounds):
            await asyncio.gather(writer(provider, "a", r), writer(second, "b", r))
        assert sorted(wins) == list(range(1, rounds + 1))
        assert all(len(w) == 1 for w in wins.values()), wins
        got = [e.version async for e in provider.read_stream(s)]
        assert got == list(range(1, rounds + 1))

    async def test_two_processes_race_exactly_one_wins(self, provider: Provider) -> None:
        concurrency = provider.capabilities.concurrency
        if concurrency != "cross_process":
            pytest.skip(f"concurrency={concurrency}: the version check does not reach across processes")
        s = sid("xrace")
        rounds = 25
        cls = type(provider)
        spec = {
            "provider_class": f"{cls.__module__}:{cls.__qualname__}",
            "spawn_args": provider.spawn_args(),
            "stream_id": s,
            "rounds": rounds,
            "start_at": time.time() + 2.0,
        }
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "eventsource.testing.worker",
                json.dumps({**spec, "worker": w}),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=os.environ.copy(),
            )
            for w in ("p1", "p2")
        ]
        results = []
        for p in procs:
            out, err = await asyncio.wait_for(p.communicate(), timeout=120)
            assert p.returncode == 0, err.decode(errors="replace")[-2000:]
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        won = [set(r["won"]) for r in results]
        assert won[0].isdisjoint(won[1]), "two processes won the same version"
        assert won[0] | won[1] == set(range(1, rounds + 1))
        stored = [e async for e in provider.read_stream(s)]
        assert [e.version for e in stored] == list(range(1, rounds + 1))
        winner_ids = {eid for r in results for eid in r["ids"]}
        assert {e.event_id for e in stored} == winner_ids
