"""Attacker's and newcomer's review of the domain layer: event classes, upcasting chains and repositories."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from dataclasses import InitVar, dataclass, field
from typing import TYPE_CHECKING, Any

import marshmallow
import pytest
from eventsource.domain import Aggregate, DomainEvent, Repository, SyncRepository, applies
from eventsource.errors import ConfigurationError, ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@dataclass(frozen=True)
class Shipped(DomainEvent, type_name="review.Shipped"):
    n: int


class Parcel(Aggregate):
    aggregate_type = "review.Parcel"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.n = 0

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> None:
        self.n += e.n


def _memory() -> EventSourcingManager:
    return EventSourcingManager({"providers": {"m": "memory://"}}, host=PluginHost(load_entrypoints=False))


def _rename(m: EventSourcingManager) -> None:
    m.rename_event_type("review.Shipped", "review.Sent")


def _step_to_type(m: EventSourcingManager) -> None:
    m.add_upcaster("review.Shipped", 1, dict, to_type="review.Sent")


@pytest.mark.parametrize("away", [_rename, _step_to_type], ids=["rename", "to_type"])
@pytest.mark.parametrize("class_first", [True, False], ids=["class-first", "away-first"])
async def test_a_class_whose_type_reads_as_another_is_refused(
    away: Callable[[EventSourcingManager], None], *, class_first: bool
) -> None:
    """Every event the class wrote read back as another type: a saved aggregate could never be loaded again."""
    async with _memory() as m:
        if class_first:
            Repository(m, Parcel)
            with pytest.raises(ConfigurationError, match=r"review\.Shipped"):
                away(m)
        else:
            away(m)
            with pytest.raises(ConfigurationError, match=r"review\.Shipped"):
                Repository(m, Parcel)


class PaidSchema(marshmallow.Schema):
    cents = marshmallow.fields.Integer(required=True, validate=marshmallow.validate.Range(min=0))


@dataclass(frozen=True)
class Paid(DomainEvent, type_name="review.Paid", schema=PaidSchema):
    cents: int


@dataclass(frozen=True)
class Noted(DomainEvent, type_name="review.Noted"):
    note: str
    tags: list[str]


class Till(Aggregate):
    aggregate_type = "review.Till"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.cents = 0
        self.tags: list[str] = []

    @applies(Paid)
    def _paid(self, e: Paid) -> None:
        self.cents += e.cents

    @applies(Noted)
    def _noted(self, e: Noted) -> None:
        self.tags = e.tags  # keeps the event's own list (a common shortcut)


@pytest.mark.parametrize("bad", [Paid(-5), Noted(5, [])], ids=["schema", "annotation"])  # type: ignore[arg-type]
async def test_recording_an_event_its_class_refuses_changes_nothing(bad: DomainEvent) -> None:
    """record() applied the refused event: the state counted it and every later save failed on it."""
    async with _memory() as m:
        repo = Repository(m, Till)
        till = repo.new("t")
        till.record(Paid(7))
        with pytest.raises(ValidationError):
            till.record(bad)
        assert (till.cents, till.tags, len(till.pending)) == (7, [], 1)
        till.record(Paid(1))
        await repo.save(till)
        assert (await repo.get("t")).cents == 8


async def test_an_event_is_stored_as_it_was_recorded() -> None:
    """Encoded at save time, an event's list that a handler kept and changed since was stored changed."""
    async with _memory() as m:
        repo = Repository(m, Till)
        till = repo.new("t")
        till.record(Noted("a", ["x"]))
        till.tags.append("changed after the event")
        await repo.save(till)
        [ev] = [e async for e in m.read_stream(Till.stream_id_of("t"))]
        assert ev.data == {"note": "a", "tags": ["x"]}


class ParcelWithWeight(Aggregate):
    """The next release of Parcel: its own snapshot methods, and snapshot_version left at 1 (an oversight)."""

    aggregate_type = "review.Parcel"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.n = 0
        self.grams = 0

    def to_snapshot(self) -> dict[str, int]:
        return {"n": self.n, "grams": self.grams}

    @classmethod
    def from_snapshot(cls, aggregate_id: str, data: dict[str, int]) -> ParcelWithWeight:
        agg = cls(aggregate_id)
        agg.n, agg.grams = data["n"], data["grams"]  # KeyError on the older snapshot
        return agg

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> None:
        self.n += e.n
        self.grams += 10


async def test_a_snapshot_its_from_snapshot_refuses_is_ignored_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """A snapshot is a cache: a from_snapshot that raised on it made the aggregate unloadable, where a replay worked."""
    async with _memory() as m:
        old = Repository(m, Parcel, snapshot_threshold=2)
        parcel = old.new("p")
        for n in (1, 2, 3):
            parcel.record(Shipped(n))
        await old.save(parcel)
        assert (await m.get_snapshot(Parcel.stream_id_of("p"))).data == {"n": 6}
        new = Repository(m, ParcelWithWeight, snapshot_threshold=2)  # the next release, on the same store
        with caplog.at_level("WARNING", logger="eventsource"):
            loaded = await new.get("p")
        assert (loaded.n, loaded.grams, loaded.version, loaded.snapshot_at) == (6, 30, 3, 0)
        assert "from_snapshot" in caplog.text


class Fussy(Aggregate):
    aggregate_type = "review.Fussy"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.seen: dict[int, int] = {}

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> None:
        self.seen[e.n] = self.seen[e.n - 1] + 1  # a KeyError on an event the handler did not expect


async def test_a_handler_that_raises_on_load_says_which_stored_event() -> None:
    """A bare KeyError(2) came out of Repository.get, naming neither the aggregate nor the event it choked on."""
    async with _memory() as m:
        repo = Repository(m, Fussy)
        sid = Fussy.stream_id_of("f")
        await m.append_events_batch(stream_id=sid, events=[Shipped(3)])
        [stored] = [e async for e in m.read_stream(sid)]
        with pytest.raises(KeyError) as info:
            await repo.get("f")
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert stored.event_id in notes
        assert "version 1" in notes
        assert sid in notes


def test_two_handlers_of_one_event_class_in_one_class_are_refused() -> None:
    """The later method silently won: the first never ran, and its state never changed."""
    with pytest.raises(ConfigurationError, match=r"_counted.*_logged|_logged.*_counted"):

        class Twice(Aggregate):
            @applies(Shipped)
            def _counted(self, e: Shipped) -> None: ...

            @applies(Shipped)
            def _logged(self, e: Shipped) -> None: ...


def test_an_async_handler_is_refused() -> None:
    """``@applies`` on ``async def``: apply() made a coroutine and dropped it, so no event ever changed the state."""
    with pytest.raises(ConfigurationError, match="_shipped"):

        class Eager(Aggregate):
            @applies(Shipped)
            async def _shipped(self, e: Shipped) -> None: ...


class Wrapped(Aggregate):
    """A handler whose (sync) decorator hands back a coroutine."""

    aggregate_type = "review.Wrapped"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.n = 0

    async def _later(self, e: Shipped) -> None:
        self.n += e.n

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> Any:
        return self._later(e)


def test_a_handler_returning_an_awaitable_is_an_error_not_a_silent_no_op() -> None:
    wrapped = Wrapped("w")
    with pytest.raises(ConfigurationError, match="_shipped"):
        wrapped.record(Shipped(1))
    assert wrapped.pending == []


def test_sync_update_lets_fn_use_the_sync_api() -> None:
    """fn ran on the facade's own loop, so reading another aggregate in it raised "called from its own event loop"."""
    with SyncEventSourcingManager({"providers": {"m": "memory://"}}, host=PluginHost(load_entrypoints=False)) as es:
        repo = SyncRepository(es, Parcel)
        for aggregate_id, n in (("a", 1), ("b", 5)):
            parcel = repo.new(aggregate_id)
            parcel.record(Shipped(n))
            repo.save(parcel)

        def ship_as_many_as_b(parcel: Parcel) -> None:
            parcel.record(Shipped(repo.get("b").n))

        assert repo.update("a", ship_as_many_as_b).n == 6
        assert repo.get("a").n == 6


class Colour(enum.Enum):
    RED = "red"


class Painted(Aggregate):
    """State the JSON codec refuses: no snapshot can be taken of it."""

    aggregate_type = "review.Painted"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.pair: tuple[int, int] | None = None
        self.colour: Colour | None = None

    @applies(Shipped)
    def _shipped(self, e: Shipped) -> None:
        if e.n == 1:
            self.pair = (e.n, e.n)
        else:
            self.colour = Colour.RED


@pytest.mark.parametrize(("n", "says"), [(1, "'pair'"), (2, "Colour")], ids=["tuple", "enum"])
async def test_a_snapshot_that_cannot_be_encoded_says_which_aggregate_and_why(
    caplog: pytest.LogCaptureFixture, n: int, says: str
) -> None:
    """The warning said only "snapshot of an aggregate failed after its save: ValidationError", on every save."""
    async with _memory() as m:
        repo = Repository(m, Painted, snapshot_threshold=1)
        painted = repo.new("p")
        painted.record(Shipped(n))
        with caplog.at_level("WARNING", logger="eventsource"):
            await repo.save(painted)
        assert "Painted" in caplog.text
        assert says in caplog.text


@dataclass(frozen=True)
class Priced(DomainEvent, type_name="review.Priced"):
    """``cents`` computed from an InitVar, which is not a field: nothing stores it, so a read computes 0."""

    cents: int = field(init=False)
    euros: InitVar[float | None] = None

    def __post_init__(self, euros: float | None) -> None:
        object.__setattr__(self, "cents", round((euros or 0) * 100))


@dataclass(frozen=True)
class Stamped(DomainEvent, type_name="review.Stamped"):
    """``seq`` set after construction (a factory): a read gives its default."""

    n: int
    seq: int = field(init=False, default=0)

    @classmethod
    def numbered(cls, n: int, seq: int) -> Stamped:
        made = cls(n)
        object.__setattr__(made, "seq", seq)
        return made


@pytest.mark.parametrize(("event", "name"), [(Priced(1.5), "cents"), (Stamped.numbered(1, 7), "seq")])
async def test_an_event_a_read_would_rebuild_otherwise_is_refused(event: DomainEvent, name: str) -> None:
    """Stored as {"cents": 150}, read back as Priced(cents=0): its data changed silently through the store."""
    async with _memory() as m:
        m.register_event_class(type(event))
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="s", events=[event])
        assert info.value.details["field"] == name
        assert not await m.stream_exists("s")


class LossySchema(marshmallow.Schema):
    when = marshmallow.fields.String(required=True)  # dumps str(datetime), loads that str
    amount = marshmallow.fields.Float(required=True)  # dumps a Decimal as a float


@dataclass(frozen=True)
class Settled(DomainEvent, type_name="review.Settled", schema=LossySchema):
    when: dt.datetime
    amount: decimal.Decimal


async def test_a_schema_that_reads_back_another_type_than_annotated_is_refused_on_append() -> None:
    """Settled(datetime, Decimal("0.10")) read back as Settled('2020-01-01 00:00:00', 0.1), silently."""
    async with _memory() as m:
        m.register_event_class(Settled)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(
                stream_id="s", events=[Settled(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), decimal.Decimal("0.10"))]
            )
        assert info.value.details["field"] == "when"
        assert not await m.stream_exists("s")


@dataclass(frozen=True)
class Renamed(DomainEvent, type_name="review.Renamed", version=2):
    name: str


async def test_plain_data_its_code_could_not_read_back_is_refused_on_append() -> None:
    """Plain data for a type whose class is version 2 was stored as version 1 with no step from it: every read
    of the stream (the aggregate's load too) then raised SchemaVersionError."""
    async with _memory() as m:
        m.register_event_class(Renamed)
        with pytest.raises(ValidationError) as info:
            await m.append_event(stream_id="s", event_type="review.Renamed", data={"name": "a"})
        assert info.value.details["field"] == "metadata"
        with pytest.raises(ValidationError):  # a version from the future: the code is behind it
            await m.append_event(
                stream_id="s", event_type="review.Renamed", data={"name": "a"}, metadata={"eventsource.schema": 3}
            )
        assert not await m.stream_exists("s")
        await m.append_event(
            stream_id="s", event_type="review.Renamed", data={"name": "a"}, metadata={"eventsource.schema": 2}
        )
        m.add_upcaster("review.Renamed", 1, lambda d: d)  # now version 1 reads back
        await m.append_event(stream_id="s", event_type="review.Renamed", data={"name": "b"})
        assert [e.data async for e in m.read_stream("s", as_classes=True)] == [Renamed("a"), Renamed("b")]


def test_the_sync_one_event_append_refuses_it_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    with SyncEventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as es:
        es.register_event_class(Renamed)
        with pytest.raises(ValidationError):
            es.append_event(stream_id="s", event_type="review.Renamed", data={"name": "a"})
        assert not es.stream_exists("s")
