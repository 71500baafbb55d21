"""Appends: versions, the event envelope, every expected-version form, and atomic batches.

A new stream is at version 0 and its first event is version 1; versions never skip; ``expected_version``
is an exact version, ``NO_STREAM``, ``STREAM_EXISTS`` or ``ANY``, and a mismatch writes nothing. A batch
is written whole or not at all, whichever check refuses it, and reads back whole.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import ConcurrencyError, DuplicateEventError, EventNotFoundError, ValidationError
from eventsource.model import ANY, NO_STREAM, STREAM_EXISTS
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager


class VersionSuite(ProviderSuiteBase):
    """Versions, the event envelope and every expected-version form."""

    async def test_new_stream_is_at_version_0_and_first_event_is_1(self, manager: EventSourcingManager) -> None:
        s = sid()
        info = await manager.create_stream(stream_id=s)
        assert info.version == 0
        assert info.event_count == 0
        res = await manager.append_event(stream_id=s, event_type="Created", data={"a": 1})
        assert res.version == 1
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.last_event_id) == (1, 1, res.event_id)

    async def test_versions_are_gap_free(self, manager: EventSourcingManager) -> None:
        s = sid()
        for i in range(4):
            r = await manager.append_event(stream_id=s, event_type="E", data={"i": i})
            assert r.version == i + 1
        b = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(5)])
        assert (b.first_version, b.last_version) == (5, 9)
        assert await self.versions(manager, s) == list(range(1, 10))
        data = [e.data["i"] async for e in manager.read_stream(s)]
        assert data == [0, 1, 2, 3, 0, 1, 2, 3, 4]

    async def test_implicit_creation_on_first_append(self, manager: EventSourcingManager) -> None:
        s = sid()
        assert not await manager.stream_exists(s)
        await manager.append_event(stream_id=s, event_type="E", data={}, aggregate_id="agg-1", aggregate_type="Order")
        info = await manager.get_stream_info(s)
        assert info.stream_id == s
        assert info.version == 1
        assert info.aggregate_id == "agg-1"
        assert info.aggregate_type == "Order"

    async def test_event_envelope_round_trips(self, manager: EventSourcingManager) -> None:
        s = sid()
        ts = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
        data = {"when": ts, "amount": Decimal("10.25"), "id": uuid.UUID(int=7), "nested": [1, "two", None, True]}
        r = await manager.append_event(
            stream_id=s,
            event_type="Paid",
            data=data,
            metadata={"source": "kit", "n": 1},
            correlation_id="corr-1",
            causation_id="cause-1",
            user_id="user-1",
            tenant_id="tenant-1",
            aggregate_id="agg-1",
            aggregate_type="Order",
            timestamp=ts,
        )
        [e] = [e async for e in manager.read_stream(s)]
        assert e.event_id == r.event_id
        assert e.stream_id == s
        assert e.event_type == "Paid"
        assert e.data == data
        assert e.metadata == {"source": "kit", "n": 1}
        assert e.timestamp == ts
        assert e.position == r.position
        assert (e.correlation_id, e.causation_id, e.user_id, e.tenant_id) == ("corr-1", "cause-1", "user-1", "tenant-1")
        assert (e.aggregate_id, e.aggregate_type) == ("agg-1", "Order")

    # ------------------------------------------------------------------ expected versions

    async def test_expected_exact_version(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=0)
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=1)
        with pytest.raises(ConcurrencyError) as info:
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=1)
        assert info.value.expected == 1
        assert info.value.actual == 2
        assert info.value.type == "conflict"
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=5)
        assert await self.versions(manager, s) == [1, 2]

    async def test_expected_zero_on_missing_and_on_empty_stream(self, manager: EventSourcingManager) -> None:
        missing, empty = sid(), sid()
        await manager.create_stream(stream_id=empty)
        assert (await manager.append_event(stream_id=missing, event_type="E", data={}, expected_version=0)).version == 1
        assert (await manager.append_event(stream_id=empty, event_type="E", data={}, expected_version=0)).version == 1

    async def test_expected_no_stream(self, manager: EventSourcingManager) -> None:
        s, created = sid(), sid()
        await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
        await manager.create_stream(stream_id=created)
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=NO_STREAM)
        assert await self.versions(manager, s) == [1]
        assert await self.versions(manager, created) == []

    async def test_expected_stream_exists(self, manager: EventSourcingManager) -> None:
        s, created = sid(), sid()
        with pytest.raises(ConcurrencyError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert not await manager.stream_exists(s)
        await manager.create_stream(stream_id=created)
        r = await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert r.version == 1
        r = await manager.append_event(stream_id=created, event_type="E", data={}, expected_version=STREAM_EXISTS)
        assert r.version == 2

    async def test_expected_any(self, manager: EventSourcingManager) -> None:
        s = sid()
        for i in range(3):
            assert (
                await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=ANY)
            ).version == i + 1

    @pytest.mark.parametrize("bad", [-7, "1", 1.5, True, None])
    async def test_invalid_expected_version_is_a_validation_error(
        self, manager: EventSourcingManager, bad: object
    ) -> None:
        s = sid()
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=bad)  # type: ignore[call-overload]
        assert not await manager.stream_exists(s)


class BatchSuite(ProviderSuiteBase):
    """A batch is written whole or not at all, and is read back whole."""

    async def test_batch_with_wrong_expected_version_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_event(stream_id=s, event_type="E", data={})
        with pytest.raises(ConcurrencyError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()], expected_version=0)
        assert await self.versions(manager, s) == [1]

    async def test_batch_failing_in_the_store_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        first = await manager.append_event(stream_id=s, event_type="E", data={"i": 0})
        # the second event reuses a stored id: not an identical retry, so the store must refuse the
        # whole batch, including the new event before it
        fresh = str(uuid.uuid4())
        with pytest.raises(DuplicateEventError):
            await manager.append_events_batch(
                stream_id=s, events=[ev(event_id=fresh), ev(event_id=first.event_id)], expected_version=ANY
            )
        assert await self.versions(manager, s) == [1]
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(fresh)

    async def test_batch_with_an_invalid_event_writes_nothing(self, manager: EventSourcingManager) -> None:
        s = sid()
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev(data={"bad": object()})])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), ev(event_type="")])
        assert not await manager.stream_exists(s)

    async def test_batch_is_readable_whole(self, manager: EventSourcingManager) -> None:
        s = sid()
        res = await manager.append_events_batch(stream_id=s, events=[ev(data={"i": i}) for i in range(50)])
        assert (res.first_version, res.last_version) == (1, 50)
        assert len(res.event_ids) == len(res.positions) == 50
        assert res.positions == sorted(res.positions)
        got = [e async for e in manager.read_stream(s)]
        assert [e.event_id for e in got] == res.event_ids
        assert [e.position for e in got] == res.positions
