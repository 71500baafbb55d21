"""Stream lifecycle: create, list in id order, exact stream info, and delete.

Deleting a stream removes its events, info and snapshots; its id is then reusable or refused with
:class:`StreamDeletedError`, as ``capabilities.deleted_stream_ids`` declares.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest

from eventsource.errors import (
    EventNotFoundError,
    SnapshotNotFoundError,
    StreamDeletedError,
    StreamExistsError,
    StreamNotFoundError,
)
from eventsource.model import NO_STREAM, NewEvent, NewStream, utcnow
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


class StreamSuite(ProviderSuiteBase):
    """Stream lifecycle: create, list, info and delete."""

    async def test_create_stream_round_trips_and_refuses_duplicates(self, manager: EventSourcingManager) -> None:
        s = sid()
        info = await manager.create_stream(
            stream_id=s, name="User Events", aggregate_id="user-1", aggregate_type="User", metadata={"v": "1.0", "n": 2}
        )
        got = await manager.get_stream_info(s)
        assert got.stream_id == s
        assert (got.name, got.aggregate_id, got.aggregate_type) == ("User Events", "user-1", "User")
        assert got.metadata == {"v": "1.0", "n": 2}
        assert got.version == 0
        assert info.created_at <= got.updated_at
        assert await manager.stream_exists(s)
        with pytest.raises(StreamExistsError):
            await manager.create_stream(stream_id=s)
        await manager.append_event(stream_id=s, event_type="E", data={})
        with pytest.raises(StreamExistsError):
            await manager.create_stream(stream_id=s)

    async def test_stream_metadata_round_trips_exactly(self, manager: EventSourcingManager) -> None:
        """What JSON can say comes back as given: floats stay floats (1e20, -0.0), key order stays, big ints stay."""
        s = sid()
        md = {
            "z": 1e20,
            "a": -0.0,
            "m": [0.1, 1.0, 10**30, -(2**63), 1.5e300, 5e-324],
            "n": {"y": None, "x": True, "\u00fc\u20ac\U0001f600": 'caf\u00e9 "q" \\ \n'},
            "": "",
        }
        await manager.create_stream(stream_id=s, metadata=md)
        got = await manager.get_stream_info(s)
        listed = [i for i in (await manager.list_streams(limit=100)).streams if i.stream_id == s]
        assert json.dumps(got.metadata) == json.dumps(md)  # same keys in the same order, same types, same signs
        assert [json.dumps(i.metadata) for i in listed] == [json.dumps(md)]

    @pytest.mark.parametrize("events", [1, 3])
    async def test_a_stream_created_by_its_first_append_keeps_its_attributes_exactly(
        self, manager: EventSourcingManager, provider: Provider, events: int
    ) -> None:
        """``append`` with a :class:`NewStream` (what a copy or import writes) keeps its metadata as given too.

        PostgreSQL's batch append bound the metadata once for its jsonb column and once for its text column;
        the server took the parameter as jsonb, so the text kept was jsonb's (keys sorted, -0.0 as 0.0).
        """
        s = sid()
        md = {"z": 1e20, "a": -0.0, "m": [10**30, 5e-324], "": {"\u00fc": 'caf\u00e9 "q"'}}
        attrs = NewStream(s, name="N \U0001f600", aggregate_id="agg 1", aggregate_type="T", metadata=md)
        batch = [NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow()) for _ in range(events)]
        await provider.append(s, batch, NO_STREAM, attrs)
        got = await manager.get_stream_info(s)
        listed = [i for i in (await manager.list_streams(limit=100)).streams if i.stream_id == s]
        assert (got.name, got.aggregate_id, got.aggregate_type, got.version) == ("N \U0001f600", "agg 1", "T", events)
        assert json.dumps(got.metadata) == json.dumps(md)
        assert [json.dumps(i.metadata) for i in listed] == [json.dumps(md)]

    async def test_list_streams_pages_in_id_order(self, manager: EventSourcingManager) -> None:
        ids = [f"ls-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(5)]
        for i, s in enumerate(ids):
            if i % 2:
                await manager.create_stream(stream_id=s)
            else:
                await manager.append_event(stream_id=s, event_type="E", data={})
        page1 = await manager.list_streams(limit=2, offset=0)
        page2 = await manager.list_streams(limit=2, offset=2)
        page3 = await manager.list_streams(limit=2, offset=4)
        assert page1.total_count == 5
        assert page1.has_more
        assert page2.has_more
        assert not page3.has_more
        assert [i.stream_id for p in (page1, page2, page3) for i in p.streams] == sorted(ids)

    async def test_get_stream_info_is_exact(self, manager: EventSourcingManager) -> None:
        s = sid()
        await manager.append_events_batch(stream_id=s, events=[ev(), ev(), ev()])
        last = await manager.append_event(stream_id=s, event_type="E", data={})
        info = await manager.get_stream_info(s)
        assert (info.version, info.event_count, info.last_event_id, info.first_version) == (4, 4, last.event_id, 1)
        assert info.created_at <= info.updated_at
        events = [e async for e in manager.read_stream(s)]
        assert info.updated_at == events[-1].timestamp, "updated_at: the timestamp of the stream's last event"
        with pytest.raises(StreamNotFoundError):
            await manager.get_stream_info(sid("missing"))

    async def test_delete_stream_removes_events_info_and_snapshots(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s, other = sid(), sid()
        r = await manager.append_events_batch(stream_id=s, events=[ev(), ev()])
        await manager.append_event(stream_id=other, event_type="E", data={})
        await manager.create_snapshot(stream_id=s, data={"state": 1})
        await manager.delete_stream(s)
        assert not await manager.stream_exists(s)
        assert [e async for e in manager.read_stream(s)] == []
        with pytest.raises(EventNotFoundError):
            await manager.get_event_by_id(r.event_ids[0])
        with pytest.raises(SnapshotNotFoundError):
            await manager.get_snapshot(s)
        with pytest.raises(StreamNotFoundError):
            await manager.get_events_by_stream(s)
        assert s not in [i.stream_id for i in (await manager.list_streams(limit=100)).streams]
        assert [e.stream_id async for e in manager.read_all()] == [other]
        with pytest.raises(StreamNotFoundError):
            await manager.delete_stream(s)
        assert await self.versions(manager, other) == [1]
        if provider.capabilities.deleted_stream_ids == "reusable":
            again = await manager.append_event(stream_id=s, event_type="E", data={}, expected_version=NO_STREAM)
            assert again.version == 1
        else:
            with pytest.raises(StreamDeletedError):
                await manager.append_event(stream_id=s, event_type="E", data={})
