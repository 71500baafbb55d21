"""Copies from and into NATS (attacker's review): what the progress line promises, what a copy refuses.

A NATS store writes a batch as one message, so its message count is not its event count: the progress of a
copy from NATS said ``5,000 of 40 events, ETA 0m00s``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conftest import dispose, unique_store
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import manager_on, populate
from eventsource.transfer import TransferProgress, copy_store
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from pathlib import Path


async def test_the_progress_of_a_copy_from_nats_counts_events_not_messages(
    machine_nats_url: str, tmp_path: Path
) -> None:
    source = NatsProvider(machine_nats_url, **unique_store())
    m = await manager_on(source)
    target = SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        await populate(m, streams=10, events=400)
        await target.connect()
        seen: list[TransferProgress] = []
        result = await copy_store(source, target, progress=seen.append, page_size=50, window=100)
        writes = [p for p in seen if p.phase == "write"]
        assert writes
        assert {p.total for p in writes} == {result.events}
    finally:
        await target.close()
        await m.close()
        await dispose(source)
