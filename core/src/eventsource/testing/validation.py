"""Input validation: hostile but valid stream ids round-trip; invalid or oversized input is refused.

:data:`HOSTILE_VALID_STREAM_IDS` must be held exactly and kept apart (no SQL, subject or topic
injection); :data:`HOSTILE_INVALID_STREAM_IDS`, bad event fields and oversized events or batches are
refused with :class:`ValidationError` before the store sees them, and change nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import ValidationError
from eventsource.model import NO_STREAM, EventData
from eventsource.testing.base import ProviderSuiteBase, ev, sid

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider


HOSTILE_VALID_STREAM_IDS: tuple[str, ...] = (
    "a.b",
    "a.*",
    "a.>",
    "*",
    ">",
    ".",
    "..",
    "a b",
    " leading-and-trailing ",
    "it's",
    'say "hi"',
    "'; DROP TABLE events; --",
    "Robert'); DELETE FROM streams;--",
    "emoji-\U0001f389-\u2603",
    "$dollar$",
    "a/b\\c",
    "ünïcödé-名前",
    "%s %d {0}",
    "a:b#c?d&e=f",
    "_",
    "-",
    "UPPER-lower",
    "x" * 1000,
)
"""Stream ids every store must hold exactly and keep apart (no SQL, subject or topic injection)."""

HOSTILE_INVALID_STREAM_IDS: tuple[object, ...] = (
    "",
    "\x00",
    "a\x00b",
    "line\nbreak",
    "tab\tid",
    "x" * 10_000,
    None,
    123,
    b"bytes",
)
"""Stream ids the manager must refuse with :class:`ValidationError` before the store sees them."""


class InputValidationSuite(ProviderSuiteBase):
    """Hostile but valid ids round-trip; invalid or oversized input is refused and changes nothing."""

    async def test_hostile_but_valid_stream_ids_round_trip_and_stay_apart(self, manager: EventSourcingManager) -> None:
        tag = uuid.uuid4().hex[:6]
        ids = [f"{h}{tag}" if len(h) < 900 else h[:-6] + tag for h in HOSTILE_VALID_STREAM_IDS]
        ids += list(HOSTILE_VALID_STREAM_IDS[:8])  # the bare forms too: ".", "*", ">"...
        for i, s in enumerate(ids):
            await manager.append_events_batch(
                stream_id=s, events=[ev(data={"i": i}), ev(data={"i": i})], expected_version=NO_STREAM
            )
        for i, s in enumerate(ids):
            got = [e async for e in manager.read_stream(s)]
            assert [(e.stream_id, e.data["i"], e.version) for e in got] == [(s, i, 1), (s, i, 2)], s
            info = await manager.get_stream_info(s)
            assert info.stream_id == s
            assert info.version == 2
            res = await manager.get_events(stream_id=s)
            assert res.total_count == 2
            await manager.create_snapshot(stream_id=s, data={"i": i})
            assert (await manager.get_snapshot(s)).data == {"i": i}
        listed: list[str] = []
        offset = 0
        while True:
            page = await manager.list_streams(limit=100, offset=offset)
            listed.extend(x.stream_id for x in page.streams)
            offset += 100
            if not page.has_more:
                break
        assert sorted(listed) == sorted(ids)
        everything = [e async for e in manager.read_all()]
        assert len(everything) == 2 * len(ids)
        assert {e.stream_id for e in everything} == set(ids)
        await manager.delete_stream(ids[1])  # "a.*<tag>": must not delete "a.b<tag>" or "a.><tag>"
        assert not await manager.stream_exists(ids[1])
        assert await manager.stream_exists(ids[0])
        assert await manager.stream_exists(ids[2])
        assert await self.versions(manager, ids[0]) == [1, 2]

    @pytest.mark.parametrize("bad", HOSTILE_INVALID_STREAM_IDS, ids=lambda v: repr(v)[:20])
    async def test_invalid_stream_ids_are_refused_and_change_nothing(
        self, manager: EventSourcingManager, bad: object
    ) -> None:
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=bad, event_type="E", data={})  # type: ignore[call-overload]
        with pytest.raises(ValidationError):
            await manager.create_stream(stream_id=bad)  # type: ignore[call-overload]
        with pytest.raises(ValidationError):
            await manager.get_stream_info(bad)  # type: ignore[arg-type]
        if bad is not None:  # (no stream id: every stream)
            with pytest.raises(ValidationError):  # it waited for events of no stream, or failed in the store, untyped
                manager.subscribe(stream_id=bad)  # type: ignore[arg-type]
        assert (await manager.list_streams()).total_count == 0
        assert await self.total_events(manager) == 0

    @pytest.mark.parametrize(
        "field_values",
        [
            {"event_type": ""},
            {"event_type": "a\x00b"},
            {"event_type": "t" * 10_000},
            {"event_id": ""},
            {"event_id": "id\x00"},
            {"tenant_id": "x\x00"},
            {"data": object()},
            {"data": float("nan")},
            {"data": {"k": {1, object()}}},
            {"metadata": "not-a-dict"},
            {"metadata": {"k": object()}},
        ],
        # the ids repr(v)[:30] has given so far, frozen: an object()'s repr holds its address, and a set holding
        # one iterates in an order its hash (its address) decides, so computed ids moved with the memory layout
        ids=[
            "{'event_type': ''}",
            "{'event_type': 'a\\x00b'}",
            "{'event_type': 'tttttttttttttt",
            "{'event_id': ''}",
            "{'event_id': 'id\\x00'}",
            "{'tenant_id': 'x\\x00'}",
            "{'data': <object object at 0x7",
            "{'data': nan}",
            "{'data': {'k': {1, <object obj",
            "{'metadata': 'not-a-dict'}",
            "{'metadata': {'k': <object obj",
        ],
    )
    async def test_invalid_event_fields_are_refused_and_change_nothing(
        self, manager: EventSourcingManager, field_values: dict[str, Any]
    ) -> None:
        s = sid()
        fields = {"event_type": "E", "data": {"ok": True}, **field_values}
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, **fields)
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev(), EventData(**fields)])
        assert not await manager.stream_exists(s)
        assert await self.total_events(manager) == 0

    async def test_oversized_events_and_batches_are_refused(self, manager: EventSourcingManager) -> None:
        s = sid()
        big = "x" * (manager.config.max_event_size + 1)
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={"big": big})
        with pytest.raises(ValidationError):
            await manager.append_event(stream_id=s, event_type="E", data={"big": "y" * 50 * 1024 * 1024})
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(self.max_batch_size + 1)])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[ev() for _ in range(100_000)])
        with pytest.raises(ValidationError):
            await manager.append_events_batch(stream_id=s, events=[])
        assert not await manager.stream_exists(s)
        assert await self.total_events(manager) == 0

    async def test_largest_allowed_event_round_trips(self, manager: EventSourcingManager, provider: Provider) -> None:
        s = sid()
        limit = min(
            manager.config.max_event_size, provider.capabilities.max_event_size or manager.config.max_event_size
        )
        body = "z" * (limit - 64)
        r = await manager.append_event(stream_id=s, event_type="Big", data=body)
        got = await manager.get_event_by_id(r.event_id)
        assert got.data == body
