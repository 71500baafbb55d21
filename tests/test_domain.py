"""The domain model on the built-in stores: DomainSuite on memory and SQLite, plus the sync repository."""

from __future__ import annotations

import dataclasses as _dc
import datetime as dt
import decimal as _decimal
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.domain import DomainEvent as _DomainEvent
from eventsource.domain import Repository, SyncRepository
from eventsource.errors import PluginLoadError
from eventsource.hookspecs import hookimpl
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.domain import Cart, DomainSuite, ItemAdded, Opened

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.domain import Upcasters
    from eventsource.memory import MemoryProvider
    from eventsource.sqlite import SqliteProvider


class TestMemoryDomain(DomainSuite):
    @pytest.fixture
    def provider(self, memory_provider: MemoryProvider) -> MemoryProvider:
        return memory_provider


class TestSqliteDomain(DomainSuite):
    @pytest.fixture
    def provider(self, sqlite_provider: SqliteProvider) -> SqliteProvider:
        return sqlite_provider


def test_sync_repository_mirrors_the_async_one() -> None:
    public = {n for n in dir(Repository) if not n.startswith("_")}
    assert public <= {n for n in dir(SyncRepository) if not n.startswith("_")} | {
        "manager",
        "aggregate_class",
        "provider",
    }


def test_sync_repository_saves_loads_snapshots_and_updates(tmp_path: Path) -> None:
    config = {"providers": {"db": f"sqlite:///{tmp_path}/sync.db"}, "snapshot_threshold": 3}
    with SyncEventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        repo = SyncRepository(m, Cart)
        cart = repo.new("c1")
        cart.record(Opened("ada"))
        for _ in range(3):
            cart.record(ItemAdded("pen", 1))
        repo.save(cart)
        assert m.get_snapshot(cart.stream_id).version == 4
        out = repo.update("c1", lambda c: c.record(ItemAdded("ink", 2)))
        assert out.version == 5
        loaded = repo.get("c1")
        assert (loaded.items, loaded.applied) == ({"pen": 3, "ink": 2}, 1)


class _Clashing:
    """A plugin whose migrations clash with another plugin's."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def eventsource_register_upcasters(self, registry: Upcasters) -> None:
        registry.add("Clash", 1, lambda d: d)


def test_two_plugins_upcasting_the_same_step_fail_at_start_up() -> None:
    with pytest.raises(PluginLoadError, match="eventsource_register_upcasters"):
        PluginHost(load_entrypoints=False, plugins=[("a", _Clashing("a")), ("b", _Clashing("b"))])


def test_host_upcasters_do_not_leak_between_managers() -> None:
    host = PluginHost(load_entrypoints=False)
    one = EventSourcingManager({"providers": {}}, host=host)
    two = EventSourcingManager({"providers": {}}, host=host)
    one.add_upcaster("Leak", 1, lambda d: d)
    assert "Leak" not in two.event_classes.upcasters.events.types
    assert "Leak" not in host.upcasters.events.types


def test_default_snapshot_restore_never_touches_the_envelope_or_internals() -> None:
    from eventsource.domain import Aggregate

    class Plain(Aggregate):
        pass

    agg = Plain.from_snapshot("p1", {"colour": "red", "version": 999, "_pending": None, "snapshot_at": 5, "id": "x"})
    assert (agg.id, agg.version, agg.snapshot_at, agg.pending, agg.colour) == ("p1", 0, 0, [], "red")  # type: ignore[attr-defined]
    assert agg.to_snapshot() == {"colour": "red"}


async def test_encrypted_and_compressed_events_and_snapshots_are_upcast_too() -> None:
    import base64

    from eventsource.domain import SCHEMA_KEY

    key = base64.b64encode(bytes(range(32))).decode()
    config = {"providers": {"m": "memory://"}, "encryption": True, "encryption_keys": {"k1": key}, "compression": True}
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        await m.append_event(stream_id="s", event_type="kit.ItemAdded", data={"name": "pen"})
        await m.create_snapshot(stream_id="s", data={"who": "ada"}, aggregate_type="kit.Cart")
        m.add_upcaster("kit.ItemAdded", 1, lambda d: {"item": d["name"]})
        m.add_snapshot_upcaster("kit.Cart", 1, lambda d: {"owner": d["who"]})
        [e] = [e async for e in m.read_stream("s")]
        assert (e.data, e.metadata[SCHEMA_KEY]) == ({"item": "pen"}, 2)
        assert (await m.get_event_by_id(e.event_id)).data == {"item": "pen"}
        assert (await m.get_snapshot("s")).data == {"owner": "ada"}


async def test_repository_replays_when_the_snapshot_is_from_a_newer_release(caplog: pytest.LogCaptureFixture) -> None:
    from eventsource.domain import SCHEMA_KEY

    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=PluginHost(load_entrypoints=False)) as m:
        repo = Repository(m, Cart, snapshot_threshold=2)
        cart = repo.new("c")
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 1))
        await repo.save(cart)
        await m.create_snapshot(
            stream_id=cart.stream_id, data={"shape": "unknown"}, metadata={SCHEMA_KEY: 9}, aggregate_type="kit.Cart"
        )
        loaded = await repo.get("c")
        assert (loaded.owner, loaded.items, loaded.applied) == ("ada", {"pen": 1}, 2)  # replayed in full
        assert "schema version" in caplog.text


# ---------------------------------------------------------------------- review: reserved metadata


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://rev-{uuid.uuid4().hex}"
    return f"sqlite:///{tmp_path}/rev.db"


async def test_event_data_refuses_a_caller_schema_version_in_metadata(store_url: str) -> None:
    """A v1 class must not store a caller's ``eventsource.schema``: it would be read as that version."""
    from eventsource.domain import SCHEMA_KEY
    from eventsource.errors import ValidationError

    config = {"providers": {"db": store_url}}
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(Opened)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="rev-1", events=[Opened("ada").event_data(metadata={SCHEMA_KEY: 3})])
        assert info.value.details["field"] == "metadata"
        assert not await m.stream_exists("rev-1")
        # other caller metadata still goes through
        await m.append_events_batch(stream_id="rev-1", events=[Opened("ada").event_data(metadata={"who": "x"})])
        [ev] = [e async for e in m.read_stream("rev-1", as_classes=True)]
        assert ev.data == Opened("ada")
        assert ev.metadata == {"who": "x"}


async def test_a_spoofed_shredded_key_does_not_skip_upcasting(store_url: str) -> None:
    """``eventsource.shredded`` in a caller's metadata must not turn off the chain on the decode_event path."""
    config = {"providers": {"db": store_url}}
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        m.add_upcaster("rev.T", 1, lambda d: {**d, "v2": True})
        m.register_upcaster("rev.Other", lambda e: e)  # any legacy upcaster sends reads through decode_event
        await m.append_event(stream_id="rev-2", event_type="rev.T", data={"a": 1})
        await m.append_event(
            stream_id="rev-2", event_type="rev.T", data={"a": 2}, metadata={"eventsource.shredded": "spoof"}
        )
        events = [e async for e in m.read_stream("rev-2")]
        assert [e.data for e in events] == [{"a": 1, "v2": True}, {"a": 2, "v2": True}]
        assert [e.metadata["eventsource.schema"] for e in events] == [2, 2]


async def test_as_classes_refusal_of_stored_data_names_the_stored_event(store_url: str) -> None:
    """A class whose schema now refuses old stored data: the error says which event, not only its type."""
    from eventsource.domain import SCHEMA_KEY
    from eventsource.errors import ValidationError

    config = {"providers": {"db": store_url}}
    async with EventSourcingManager(config, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(ItemAdded, Opened)
        ok = await m.append_event(stream_id="rev-3", event_type="kit.Opened", data={"owner": "ada"})
        bad = await m.append_event(
            stream_id="rev-3", event_type="kit.ItemAdded", data={"item": "pen", "qty": "many"}, metadata={SCHEMA_KEY: 3}
        )
        assert ok.event_id != bad.event_id
        with pytest.raises(ValidationError) as info:
            [e async for e in m.read_stream("rev-3", as_classes=True)]
        err = info.value
        where = (err.details["field"], err.details["event_id"], err.details["stream_id"])
        assert where == ("qty", bad.event_id, "rev-3")
        assert bad.event_id in err.message
        assert err.details["event_type"] == "kit.ItemAdded"


# ---------------------------------------------------------------------- review: values that would not read back


async def test_a_nested_dataclass_without_a_schema_is_refused_not_read_back_as_a_dict(tmp_path: Path) -> None:
    """``dataclasses.asdict`` flattens a nested dataclass; ``from_data`` would hand the event a dict in its place."""
    from dataclasses import dataclass

    from eventsource.domain import DomainEvent
    from eventsource.errors import ValidationError

    @dataclass(frozen=True)
    class Address:
        street: str

    @dataclass(frozen=True)
    class Moved(DomainEvent, type_name="rev.Moved"):
        to: Any
        via: list[Any]

    url = f"sqlite:///{tmp_path}/nested.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(Moved)
        with pytest.raises(ValidationError, match="Address") as info:
            await m.append_events_batch(stream_id="s", events=[Moved(Address("x"), [])])
        assert (info.value.details["field"], info.value.details["event_type"]) == ("to", "rev.Moved")
        with pytest.raises(ValidationError) as info:
            Moved({"street": "x"}, [{"a": Address("y")}]).event_data()  # nowhere in the value either
        assert info.value.details["field"] == "via[0]['a']"
        assert not await m.stream_exists("s")


async def test_an_aggregate_whose_handler_raised_while_recording_is_not_saved(tmp_path: Path) -> None:
    """The handler may have changed the state before it raised: saving (and snapshotting) that state would keep it."""
    from eventsource.domain import applies
    from eventsource.errors import ValidationError

    class Fragile(Cart):
        aggregate_type = "rev.Fragile"

        @applies(ItemAdded)
        def _added(self, e: ItemAdded) -> None:
            self.items[e.item] = self.items.get(e.item, 0) + e.qty
            if e.qty > 5:
                raise ValueError("too many")

    url = f"sqlite:///{tmp_path}/fragile.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        repo = Repository(m, Fragile, snapshot_threshold=1)
        cart = repo.new("f")
        cart.record(Opened("ada"))
        with pytest.raises(ValueError, match="too many"):
            cart.record(ItemAdded("pen", 9))  # the state now counts 9 pens that no event records
        cart.record(ItemAdded("ink", 1))
        with pytest.raises(ValidationError, match="raised") as info:
            await repo.save(cart)
        assert info.value.details["field"] == "aggregate"
        assert not await m.stream_exists(cart.stream_id)


# ---------------------------------------------------------------------- review: field types without a schema


@_dc.dataclass(frozen=True)
class _Priced(_DomainEvent, type_name="rev.Priced"):
    qty: int
    price: _decimal.Decimal
    at: dt.datetime | None = None
    tags: list[str] = _dc.field(default_factory=list)


async def test_field_values_of_another_type_are_refused_on_append_and_on_read(tmp_path: Path) -> None:
    """Without a schema nothing checked the annotations: a str in an int field was stored and read back as one."""
    from eventsource.errors import ValidationError

    url = f"sqlite:///{tmp_path}/types.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(_Priced)
        with pytest.raises(ValidationError) as info:
            await m.append_events_batch(stream_id="s", events=[_Priced("3", _decimal.Decimal(1))])  # type: ignore[arg-type]
        assert (info.value.details["field"], info.value.details["event_type"]) == ("qty", "rev.Priced")
        assert not await m.stream_exists("s")
        ok = _Priced(3, _decimal.Decimal("1.50"), dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ["a"])
        await m.append_events_batch(stream_id="s", events=[ok, _Priced(1, _decimal.Decimal(2))])
        assert [e.data async for e in m.read_stream("s", as_classes=True)] == [ok, _Priced(1, _decimal.Decimal(2))]
        older = [  # what other writers stored: each read must name the field, never hand it over
            ({"qty": "3", "price": _decimal.Decimal(1)}, "qty"),
            ({"qty": True, "price": _decimal.Decimal(1)}, "qty"),
            ({"qty": 1, "price": 1.5}, "price"),
            ({"qty": 1, "price": _decimal.Decimal(1), "at": "2026-01-01"}, "at"),
            ({"qty": 1, "price": _decimal.Decimal(1), "tags": "a"}, "tags"),
        ]
        for data, field in older:
            res = await m.append_event(stream_id="t", event_type="rev.Priced", data=data)
            with pytest.raises(ValidationError) as info:
                await m.get_event_by_id(res.event_id, as_classes=True)
            assert (info.value.details["field"], info.value.details["event_id"]) == (field, res.event_id)


@_dc.dataclass(frozen=True)
class _Noted(_DomainEvent, type_name="rev.Noted"):
    qty: int
    note: str = None  # type: ignore[assignment] - the pre-PEP 484 habit: None as "not given"
    ratio: float = None  # type: ignore[assignment]


async def test_a_field_whose_default_is_none_takes_none(tmp_path: Path) -> None:
    """The annotation check refused the class's own default: ``note: str = None`` (implicit Optional) could no
    longer be appended without a note, and every such event stored before the check stopped reading."""
    from eventsource.errors import ValidationError

    url = f"sqlite:///{tmp_path}/noted.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(_Noted)
        stored = await m.append_event(stream_id="s", event_type="rev.Noted", data={"qty": 1, "note": None})
        assert (await m.get_event_by_id(stored.event_id, as_classes=True)).data == _Noted(1)
        await m.append_events_batch(stream_id="s", events=[_Noted(2), _Noted(3, "x", 0.5)])
        want = [_Noted(1), _Noted(2), _Noted(3, "x", 0.5)]
        assert [e.data async for e in m.read_stream("s", as_classes=True)] == want
        with pytest.raises(ValidationError) as info:  # another type than the annotation or the default: refused
            await m.append_events_batch(stream_id="s", events=[_Noted(4, 5)])  # type: ignore[arg-type]
        assert info.value.details["field"] == "note"


@_dc.dataclass(frozen=True)
class _Totalled(_DomainEvent, type_name="rev.Totalled"):
    qty: int
    price: int
    total: int = _dc.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.qty * self.price)


async def test_an_event_with_a_computed_field_reads_back(tmp_path: Path) -> None:
    """``asdict`` stores an ``init=False`` field; passing it back to the constructor made each such event fail."""
    url = f"sqlite:///{tmp_path}/computed.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.register_event_class(_Totalled)
        await m.append_events_batch(stream_id="s", events=[_Totalled(2, 3)])
        [e] = [e async for e in m.read_stream("s", as_classes=True)]
        assert (e.data, e.data.total) == (_Totalled(2, 3), 6)


def test_a_subclass_overriding_a_handler_method_runs_its_override() -> None:
    """Handlers were inherited as function objects: an override without ``@applies`` was silently never called."""

    class Special(Cart):
        aggregate_type = "rev.Special"

        def _added(self, e: ItemAdded) -> None:
            self.items[e.item] = self.items.get(e.item, 0) + 10 * e.qty

    special, plain = Special("s"), Cart("c")
    for agg in (special, plain):
        agg.record(Opened("ada"))
        agg.record(ItemAdded("pen", 1))
    assert (special.items, plain.items, special.owner) == ({"pen": 10}, {"pen": 1}, "ada")
    assert set(Special.event_classes()) == {Opened, ItemAdded}


async def test_a_repository_refuses_to_save_an_aggregate_of_another_type(tmp_path: Path) -> None:
    """The events went to the other type's stream tagged with the repository's type: no repository loaded them."""
    from eventsource.errors import ValidationError

    class Other(Cart):
        aggregate_type = "rev.Other"

    url = f"sqlite:///{tmp_path}/other.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        other = Other("o")
        other.record(Opened("ada"))
        with pytest.raises(ValidationError, match=r"rev\.Other") as info:
            await Repository(m, Cart).save(other)
        assert info.value.details["field"] == "aggregate"
        assert not await m.stream_exists(other.stream_id)
        await Repository(m, Other).save(other)
        assert (await Repository(m, Other).get("o")).owner == "ada"


def test_filters_by_type_as_read_cover_to_type_steps_and_renames_with_version_chains() -> None:
    from eventsource.domain import Upcasters
    from eventsource.errors import ValidationError

    up = Upcasters()
    up.add("Headline", 1, lambda d: d, to_type="Retitled")
    up.rename("Old", "New")
    up.add("New", 1, lambda d: d)
    up.add("New", 2, lambda d: d)
    assert set(up.stored_types(["Retitled"])) == {"Headline", "Retitled"}
    assert set(up.stored_types(["New", "Other"])) == {"Old", "New", "Other"}
    assert set(up.stored_types(["Old", "New"])) == {"Old", "New"}  # both named: every event reads as one of them
    for name in ("Old", "Headline"):
        with pytest.raises(ValidationError, match="read as"):
            up.stored_types([name])


async def test_a_field_its_schema_does_not_dump_is_refused_not_dropped(tmp_path: Path) -> None:
    """The schema's dump left the field out: it was not stored, and a read gave the field's default in its place."""
    import marshmallow
    from eventsource.errors import ValidationError

    class _Schema(marshmallow.Schema):
        order_id = marshmallow.fields.String(required=True, data_key="orderId")

    @_dc.dataclass(frozen=True)
    class Placed(_DomainEvent, type_name="rev.Placed", schema=_Schema):
        order_id: str
        priority: int = 0

    url = f"sqlite:///{tmp_path}/dump.db"
    async with EventSourcingManager({"providers": {"db": url}}, host=PluginHost(load_entrypoints=False)) as m:
        with pytest.raises(ValidationError, match="priority") as info:
            await m.append_events_batch(stream_id="s", events=[Placed("o1", priority=5)])
        assert (info.value.details["field"], info.value.details["event_type"]) == ("priority", "rev.Placed")
        assert not await m.stream_exists("s")
