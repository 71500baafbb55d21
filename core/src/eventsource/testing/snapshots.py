"""Snapshots: the latest at or below a version, deleting them, and the stream backing each one.

A store refuses a snapshot its stream as it is now does not back (missing, above the stream's version,
or of a stream deleted and re-created meanwhile), so ``before_snapshot`` retention never loses events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import ConcurrencyError, SnapshotNotFoundError, StreamNotFoundError, ValidationError
from eventsource.model import NO_STREAM, NewSnapshot, utcnow
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


class SnapshotSuite(ProviderSuiteBase):
    """Snapshots: latest at or below a version, delete, and backed by the stream as it is now."""

    async def test_snapshots_latest_at_or_below_and_delete(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(10)])
        state = {"total": Decimal("12.50"), "at": datetime(2025, 1, 1, tzinfo=UTC)}
        s3 = await manager.create_snapshot(stream_id=s, data={"v": 3, **state}, version=3, metadata={"m": 1})
        s7 = await manager.create_snapshot(stream_id=s, data={"v": 7}, version=7)
        latest = await manager.get_snapshot(s)
        assert (latest.snapshot_id, latest.version, latest.data) == (s7.snapshot_id, 7, {"v": 7})
        below = await manager.get_snapshot(s, max_version=6)
        assert (below.snapshot_id, below.version, below.data, below.metadata) == (
            s3.snapshot_id,
            3,
            {"v": 3, **state},
            {"m": 1},
        )
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s, max_version=2)
        again = await manager.create_snapshot(stream_id=s, data={"v": "7 again"}, version=7)  # replaces the one at 7
        latest = await manager.get_snapshot(s)
        assert (latest.snapshot_id, latest.data) == (again.snapshot_id, {"v": "7 again"})
        assert await manager.delete_snapshot(s, version=7) == 1  # one snapshot per version
        assert (await manager.get_snapshot(s)).version == 3
        assert await manager.delete_snapshot(s) == 1
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s)
        current = await manager.create_snapshot(stream_id=s, data={"v": 10})
        assert current.version == 10
        with pytest.raises(ValidationError):
            await manager.create_snapshot(stream_id=s, data={}, version=11)
        with pytest.raises(StreamNotFoundError):
            await manager.create_snapshot(stream_id=sid("missing"), data={})

    async def test_a_snapshot_must_be_backed_by_the_stream_as_it_is_now(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        """``save_snapshot`` refuses a snapshot its stream as it is now does not back.

        That is: of a missing stream, above the stream's version, or taken at an event the stream no
        longer holds at that version (deleted and re-created meanwhile). Otherwise ``before_snapshot``
        retention would delete events no snapshot covers.
        """

        def snap(stream_id: str, version: int, position: int | None) -> NewSnapshot:
            return NewSnapshot(
                str(uuid.uuid4()), stream_id, version, b'{"v": 1}', b"", "json", utcnow(), position=position
            )

        s = sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])
        with pytest.raises(StreamNotFoundError):
            await provider.save_snapshot(snap(sid("missing"), 1, None))
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(snap(s, 4, None))
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(snap(s, 2, r.positions[0]))  # the position of version 1, not 2
        assert await provider.get_snapshot(s) is None
        await provider.save_snapshot(snap(s, 2, r.positions[1]))
        await provider.save_snapshot(snap(s, 3, None))  # no position given: the version check only
        stored = await provider.get_snapshot(s)
        assert stored is not None
        assert stored.version == 3

    async def test_a_snapshot_of_a_deleted_and_recreated_stream_is_refused(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        reuse = provider.capabilities.deleted_stream_ids
        if reuse != "reusable":
            pytest.skip(f"deleted_stream_ids={reuse}: a deleted stream id is never re-created")
        s = sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])

        def snap(version: int, position: int) -> NewSnapshot:
            return NewSnapshot(str(uuid.uuid4()), s, version, b'{"v": 1}', b"", "json", utcnow(), position=position)

        old = snap(2, r.positions[1])
        await provider.save_snapshot(snap(2, r.positions[1]))  # the same snapshot is good while the stream lives
        await manager.delete_stream(s)
        again = await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await provider.save_snapshot(old)  # taken before the stream was deleted and re-created
        assert await provider.get_snapshot(s) is None
        await provider.save_snapshot(snap(2, again.positions[1]))  # one of the stream as it is now is fine
        stored = await provider.get_snapshot(s)
        assert stored is not None
        assert stored.version == 2
