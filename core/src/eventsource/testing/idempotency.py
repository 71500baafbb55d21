"""Idempotent retries: the same event ids again return the original result and write nothing.

Ids are checked before the expected version, so a retry with a stale version is still a retry; any other
overlap with stored ids, or a repeated id inside one batch, is refused.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import DuplicateEventError, ValidationError
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager


class IdempotencySuite(ProviderSuiteBase):
    """A retry with the same event ids returns the original result and writes nothing."""

    async def test_same_event_id_twice_is_an_idempotent_retry(self, manager: EventSourcingManager) -> None:
        s = sid()
        eid = str(uuid.uuid4())
        a = await manager.append_event(stream_id=s, event_type="E", data={"x": 1}, event_id=eid, expected_version=0)
        b = await manager.append_event(stream_id=s, event_type="E", data={"x": 1}, event_id=eid, expected_version=0)
        assert not a.duplicate
        assert b.duplicate
        assert (b.version, b.position, b.event_id) == (a.version, a.position, a.event_id)
        assert await self.versions(manager, s) == [1]

    async def test_batch_retry_returns_the_original_result(self, manager: EventSourcingManager) -> None:
        s = sid()
        ids = [str(uuid.uuid4()) for _ in range(3)]
        await manager.append_event(stream_id=s, event_type="E", data={})
        batch = [ev(event_id=i) for i in ids]
        a = await manager.append_events_batch(stream_id=s, events=batch, expected_version=1)
        await manager.append_event(stream_id=s, event_type="E", data={})
        # the retry carries a now-stale expected version: idempotency is checked first
        b = await manager.append_events_batch(stream_id=s, events=[ev(event_id=i) for i in ids], expected_version=1)
        assert b.duplicate
        assert (b.first_version, b.last_version, b.positions, b.event_ids) == (
            a.first_version,
            a.last_version,
            a.positions,
            a.event_ids,
        )
        assert await self.versions(manager, s) == [1, 2, 3, 4, 5]

    async def test_partial_overlap_with_stored_ids_is_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        ids = [str(uuid.uuid4()) for _ in range(2)]
        await manager.append_events_batch(stream_id=s, events=[ev(event_id=i) for i in ids])
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=ids[1]), ev(event_id=ids[0])])
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=ids[0]), ev()])
        assert await self.versions(manager, s) == [1, 2]

    async def test_duplicate_ids_inside_one_batch_are_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        eid = str(uuid.uuid4())
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(event_id=eid), ev(event_id=eid)])
        assert not await manager.stream_exists(s)
