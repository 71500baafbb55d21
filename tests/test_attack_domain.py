"""Attack review of the domain layer: typed events and snapshots must never change what they carry."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from eventsource.domain import Aggregate, DomainEvent, Repository, applies
from eventsource.errors import ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from pathlib import Path


class Colour(enum.IntEnum):
    RED = 1


class Mood(enum.StrEnum):
    HAPPY = "happy"


class Stamp(dt.datetime):
    """A datetime subclass (as a date library would hand one out)."""


@dataclass(frozen=True)
class Painted(DomainEvent, type_name="attack.Painted"):
    colour: Any
    mood: Any = None


@dataclass(frozen=True)
class Tagged(DomainEvent, type_name="attack.Tagged"):
    tags: dict[str, int]


@dataclass(frozen=True)
class Added(DomainEvent, type_name="attack.Added"):
    n: int


class Box(Aggregate):
    """Keeps part of its state in a private attribute, which the default snapshot does not carry."""

    aggregate_type = "attack.Box"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.total = 0
        self._seen: list[int] = []

    @applies(Added)
    def _added(self, e: Added) -> None:
        self.total += e.n
        self._seen.append(e.n)


A = TypeVar("A", bound=Aggregate)


def _manager(tmp_path: Path) -> EventSourcingManager:
    return EventSourcingManager(
        {"providers": {"db": f"sqlite:///{tmp_path}/x.db"}}, host=PluginHost(load_entrypoints=False)
    )


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (Painted(Colour.RED), "colour"),
        (Painted("x", Mood.HAPPY), "mood"),
        (Painted([Colour.RED]), "colour"),
        (Tagged(collections.OrderedDict(a=1)), "tags"),
        (Painted(bytearray(b"ab")), "colour"),
        (Painted(Stamp(2024, 1, 1)), "colour"),
    ],
)
async def test_typed_event_holding_a_json_subclass_is_refused_not_read_back_as_the_plain_type(
    tmp_path: Path, event: DomainEvent, field: str
) -> None:
    """An IntEnum, StrEnum, OrderedDict, bytearray or datetime subclass would be read back as its plain base type."""
    async with _manager(tmp_path) as m:
        m.register_event_class(Painted, Tagged)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="s", events=[event])
        assert info.value.details["field"] == field
        assert not await m.stream_exists("s")


async def test_typed_event_holding_a_defaultdict_is_a_typed_error(tmp_path: Path) -> None:
    """``dataclasses.asdict`` raises a bare TypeError on a defaultdict: it must be a ValidationError naming it."""
    async with _manager(tmp_path) as m:
        m.register_event_class(Tagged)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="s", events=[Tagged(collections.defaultdict(int, a=1))])
        assert info.value.details["field"] == "tags"
        assert not await m.stream_exists("s")


async def test_snapshot_never_drops_private_state_that_a_replay_rebuilds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default snapshot holds the public attributes only; an aggregate loaded from it lost ``_seen``."""
    async with _manager(tmp_path) as m:
        repo = Repository(m, Box, snapshot_threshold=2)
        box = repo.new("b")
        for n in (1, 2, 3):
            box.record(Added(n))
        with caplog.at_level(logging.WARNING, logger="eventsource"):
            await repo.save(box)
        loaded = await repo.get("b")
        assert (loaded.total, loaded._seen) == (6, [1, 2, 3])
        assert "_seen" in caplog.text


class Tally(Aggregate):
    """Snapshots its list of applied numbers."""

    aggregate_type = "attack.Tally"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.ns: list[int] = []

    @applies(Added)
    def _added(self, e: Added) -> None:
        self.ns.append(e.n)


def _saving(m: EventSourcingManager, cls: type[A], aggregate_id: str) -> tuple[Repository[A], A, asyncio.Task[Any]]:
    """A repository snapshotting every 2 events, a new aggregate with events 1 and 2, and its save started."""
    repo = Repository(m, cls, snapshot_threshold=2)
    agg = repo.new(aggregate_id)
    agg.record(Added(1))
    agg.record(Added(2))
    return repo, agg, asyncio.create_task(repo.save(agg))


async def test_event_recorded_while_a_save_is_in_flight_is_kept_pending_not_dropped(tmp_path: Path) -> None:
    """The save cleared every pending event, also one recorded during its append: that event was never stored,
    the aggregate said nothing was pending, and the snapshot taken held it at a version before it."""
    async with _manager(tmp_path) as m:
        repo, tally, saving = _saving(m, Tally, "t")
        await asyncio.sleep(0)  # the save has taken its pending events and waits on the store
        assert not saving.done()
        tally.record(Added(3))
        await saving
        assert (tally.version, tally.pending) == (2, [Added(3)])
        replayed = await Repository(m, Tally, snapshot_threshold=None).get("t")
        assert (await repo.get("t")).ns == replayed.ns == [1, 2]  # the snapshot holds what the stream holds
        await repo.save(tally)
        assert (await repo.get("t")).ns == [1, 2, 3]
        assert [e.data async for e in m.read_stream(tally.stream_id)] == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_event_recorded_while_the_snapshot_is_written_does_not_leak_into_it(tmp_path: Path) -> None:
    """The snapshot's data shared the aggregate's list; encoded after an await, it held a later event."""
    async with _manager(tmp_path) as m:
        _, tally, saving = _saving(m, Tally, "t")
        for _ in range(100_000):  # until the events are stored; the snapshot is then being written
            if not tally.pending:
                break
            await asyncio.sleep(0)
        assert not tally.pending
        assert not saving.done()
        tally.record(Added(3))
        await saving
        snap = await m.get_snapshot(tally.stream_id)
        assert (snap.version, snap.data) == (2, {"ns": [1, 2]})


class Buffer(Aggregate):
    """Keeps a bytearray, which the codec stores as bytes."""

    aggregate_type = "attack.Buffer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.buf = bytearray()

    @applies(Added)
    def _added(self, e: Added) -> None:
        self.buf.append(e.n)


async def test_no_default_snapshot_of_a_bytearray_that_would_come_back_as_bytes(tmp_path: Path) -> None:
    async with _manager(tmp_path) as m:
        repo = Repository(m, Buffer, snapshot_threshold=2)
        buf = repo.new("b")
        for n in (1, 2, 3):
            buf.record(Added(n))
        await repo.save(buf)
        loaded = await repo.get("b")
        assert (type(loaded.buf), loaded.buf) == (bytearray, bytearray(b"\x01\x02\x03"))
        loaded.record(Added(4))  # a bytes state would raise here


class Picky(Tally):
    """Refuses a negative number half-way through its handler."""

    aggregate_type = "attack.Picky"

    @applies(Added)
    def _added(self, e: Added) -> None:
        self.ns.append(e.n)
        if e.n < 0:
            raise ValueError(e.n)


async def test_no_snapshot_of_a_state_a_handler_broke_while_the_save_was_in_flight(tmp_path: Path) -> None:
    """A handler that raised leaves a half-changed state that is never saved: nor may the snapshot hold it."""
    async with _manager(tmp_path) as m:
        repo, picky, saving = _saving(m, Picky, "p")
        await asyncio.sleep(0)
        assert not saving.done()
        with pytest.raises(ValueError, match="-1"):
            picky.record(Added(-1))
        await saving
        assert (await repo.get("p")).ns == [1, 2]


@dataclass(frozen=True)
class Counts:
    by_name: dict[str, int]


async def test_nested_dataclass_holding_a_defaultdict_is_a_typed_error(tmp_path: Path) -> None:
    """``asdict`` raised a bare TypeError before the nested dataclass could be named."""
    async with _manager(tmp_path) as m:
        m.register_event_class(Painted)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="s", events=[Painted(Counts(collections.defaultdict(int, a=1)))])
        assert info.value.details["field"] == "colour"
        assert not await m.stream_exists("s")
