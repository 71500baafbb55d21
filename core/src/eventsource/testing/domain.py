"""``DomainSuite``: event classes, upcasting chains and repositories on one provider, as tests.

Subclass it and override the ``provider`` fixture, exactly like :class:`~eventsource.testing.ProviderSuite`.
It checks that event-class instances append and read back as instances on every read path (read_stream,
read_all, get_events, by id), that the schema version is stored with each event and never rewritten,
that upcasting chains (renames, snapshots, plugin-registered ones) apply on every read path and fail
with a typed error when a step is missing, raises, or meets a version from the future, and that a
:class:`~eventsource.domain.Repository` saves with the loaded version as the expected version, loads
from the latest snapshot plus the tail, snapshots every ``snapshot_threshold`` events, ignores a
snapshot of a recreated stream, and retries an update on a conflict. Requires ``asyncio_mode = auto``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import marshmallow
import pytest

from eventsource.domain import SCHEMA_KEY, Aggregate, DomainEvent, Repository, applies
from eventsource.domain.repository import EVENT_KEY
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    EventNotFoundError,
    StreamNotFoundError,
    UpcastError,
    ValidationError,
)
from eventsource.hookspecs import hookimpl
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.testing.base import ProviderSuiteBase, sid

if TYPE_CHECKING:
    from eventsource.domain import Upcasters
    from eventsource.model import Event
    from eventsource.provider import Provider


class _AmountSchema(marshmallow.Schema):
    item = marshmallow.fields.String(required=True)
    qty = marshmallow.fields.Integer(required=True, validate=marshmallow.validate.Range(min=1))


@dataclass(frozen=True)
class ItemAdded(DomainEvent, type_name="kit.ItemAdded", version=3, schema=_AmountSchema):
    """v1 ``{"name"}``; v2 ``{"item"}``; v3 ``{"item", "qty"}``."""

    item: str
    qty: int


@dataclass(frozen=True)
class Opened(DomainEvent, type_name="kit.Opened"):
    """A cart was opened by its owner."""

    owner: str


@dataclass(frozen=True)
class Renamed(DomainEvent, type_name="kit.Renamed"):
    """Stored under its old name ``kit.Titled`` by earlier code."""

    title: str


class Cart(Aggregate):
    """The suite's aggregate: an owner and item counts; ``applied`` counts events applied since load."""

    aggregate_type = "kit.Cart"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.owner = ""
        self.items: dict[str, int] = {}
        self.applied = 0

    @applies(Opened)
    def _opened(self, e: Opened) -> None:
        self.owner = e.owner
        self.applied += 1

    @applies(ItemAdded)
    def _added(self, e: ItemAdded) -> None:
        self.items[e.item] = self.items.get(e.item, 0) + e.qty
        self.applied += 1

    def to_snapshot(self) -> Any:
        return {"owner": self.owner, "items": self.items}

    @classmethod
    def from_snapshot(cls, aggregate_id: str, data: Any) -> Cart:
        cart = cls(aggregate_id)
        cart.owner, cart.items = data["owner"], dict(data["items"])
        return cart


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"item": data["name"]}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "qty": 1}


def _chain(m: EventSourcingManager) -> None:
    m.add_upcaster("kit.ItemAdded", 1, _v1_to_v2)
    m.add_upcaster("kit.ItemAdded", 2, _v2_to_v3)
    m.register_event_class(ItemAdded, Opened, Renamed)


class _Migrations:
    """A plugin shipping the chain through the ``eventsource_register_upcasters`` hook."""

    @hookimpl
    def eventsource_register_upcasters(self, registry: Upcasters) -> None:
        registry.add("kit.ItemAdded", 1, _v1_to_v2)
        registry.add("kit.ItemAdded", 2, _v2_to_v3)
        registry.rename("kit.Titled", "kit.Renamed")


class DomainSuite(ProviderSuiteBase):
    """Event classes, upcasting and repositories, as tests. Subclass and override :meth:`provider`."""

    async def _other(self, provider: Provider, host: PluginHost | None = None) -> EventSourcingManager:
        """Another manager on the same store through a fresh provider instance (closed by the caller)."""
        m = EventSourcingManager(
            {"providers": {}, "default_provider": None}, host=host or PluginHost(load_entrypoints=False)
        )
        await m.register_provider(type(provider)(**provider.spawn_args()), name="other", default=True)
        return m

    @staticmethod
    async def _all_paths(m: EventSourcingManager, stream: str, *, as_classes: bool) -> list[list[Event]]:
        """The stream's events through read_stream, read_all, get_events and get_event_by_id."""
        by_stream = [e async for e in m.read_stream(stream, as_classes=as_classes)]
        by_all = [e async for e in m.read_all(as_classes=as_classes) if e.stream_id == stream]
        page = await m.get_events(stream_id=stream, as_classes=as_classes)
        by_id = [await m.get_event_by_id(e.event_id, as_classes=as_classes) for e in by_stream]
        return [by_stream, by_all, page.events, by_id]

    # ------------------------------------------------------------------ event classes

    async def test_instances_append_and_read_back_as_instances_on_every_path(
        self, manager: EventSourcingManager
    ) -> None:
        _chain(manager)
        s = sid("dom")
        await manager.append_events_batch(stream_id=s, events=[Opened("ada"), ItemAdded("pen", 2)])
        for events in await self._all_paths(manager, s, as_classes=True):
            assert [e.data for e in events] == [Opened("ada"), ItemAdded("pen", 2)]
        for events in await self._all_paths(manager, s, as_classes=False):
            assert [e.data for e in events] == [{"owner": "ada"}, {"item": "pen", "qty": 2}]

    async def test_schema_version_is_stored_in_metadata_above_version_one(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_events_batch(stream_id=s, events=[Opened("ada"), ItemAdded("pen", 2)])
        opened, added = [e async for e in manager.read_stream(s)]
        assert SCHEMA_KEY not in opened.metadata  # version 1 is the absence of a version
        assert added.metadata[SCHEMA_KEY] == 3

    async def test_schema_refuses_bad_data_on_append_naming_the_field(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        with pytest.raises(ValidationError) as info:
            await manager.append_events_batch(stream_id=s, events=[Opened("ada"), ItemAdded("pen", 0)])
        assert info.value.details["field"] == "qty"
        assert not await manager.stream_exists(s)

    async def test_schema_refuses_bad_stored_data_on_read_naming_the_field(self, manager: EventSourcingManager) -> None:
        _chain(manager)
        s = sid("dom")
        await manager.append_event(
            stream_id=s, event_type="kit.ItemAdded", data={"item": "pen", "qty": "many"}, metadata={SCHEMA_KEY: 3}
        )
        with pytest.raises(ValidationError) as info:
            [e async for e in manager.read_stream(s, as_classes=True)]
        assert info.value.details["field"] == "qty"

    async def test_two_classes_under_one_type_name_are_refused(self, manager: EventSourcingManager) -> None:
        @dataclass(frozen=True)
        class Impostor(DomainEvent, type_name="kit.Opened"):
            owner: str

        manager.register_event_class(Opened)
        manager.register_event_class(Opened)  # the same class again is harmless
        with pytest.raises(ConfigurationError):
            manager.register_event_class(Impostor)

    # ------------------------------------------------------------------ upcasting

    async def test_chain_upcasts_on_every_read_path_and_never_rewrites(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.ItemAdded", data={"name": "pen"})
        await manager.append_event(
            stream_id=s, event_type="kit.ItemAdded", data={"item": "ink"}, metadata={SCHEMA_KEY: 2}
        )
        await manager.append_events_batch(stream_id=s, events=[ItemAdded("pad", 4)])
        _chain(manager)
        want = [ItemAdded("pen", 1), ItemAdded("ink", 1), ItemAdded("pad", 4)]
        for events in await self._all_paths(manager, s, as_classes=True):
            assert [e.data for e in events] == want
            assert [e.metadata[SCHEMA_KEY] for e in events] == [3, 3, 3]
        plain = await self._other(provider)
        try:
            stored = [e.data async for e in plain.read_stream(s)]
        finally:
            await plain.close()
        assert stored == [{"name": "pen"}, {"item": "ink"}, {"item": "pad", "qty": 4}]

    async def test_plugin_upcasters_and_renames_come_through_the_hook(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.ItemAdded", data={"name": "pen"})
        await manager.append_event(stream_id=s, event_type="kit.Titled", data={"title": "t"})
        host = PluginHost(load_entrypoints=False, plugins=[("kit-migrations", _Migrations())])
        m = await self._other(provider, host)
        try:
            m.register_event_class(ItemAdded, Renamed)
            for events in await self._all_paths(m, s, as_classes=True):
                assert [e.data for e in events] == [ItemAdded("pen", 1), Renamed("t")]
                assert [e.event_type for e in events] == ["kit.ItemAdded", "kit.Renamed"]
        finally:
            await m.close()

    async def test_missing_step_is_a_typed_error(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.ItemAdded", data={"name": "pen"})
        manager.add_upcaster("kit.ItemAdded", 2, _v2_to_v3)  # no step from 1
        with pytest.raises(UpcastError) as info:
            [e async for e in manager.read_stream(s)]
        assert info.value.details["schema_version"] == 1

    async def test_version_from_the_future_is_a_typed_error(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(  # as a newer release writes it (this manager's chains would refuse it)
            stream_id=s,
            event_type="kit.ItemAdded",
            data={"item": "pen", "qty": 1, "colour": "red"},
            metadata={SCHEMA_KEY: 4},
        )
        _chain(manager)
        with pytest.raises(UpcastError, match="newer"):
            [e async for e in manager.read_stream(s)]
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.Opened", data={"owner": "x"}, metadata={SCHEMA_KEY: 2})
        with pytest.raises(UpcastError):
            await manager.get_events(stream_id=s, event_types=["kit.Opened"], as_classes=True)

    async def test_upcaster_that_raises_is_a_typed_error_naming_the_event(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.ItemAdded", data={"nom": "pen"})
        _chain(manager)
        with pytest.raises(UpcastError) as info:
            [e async for e in manager.read_stream(s)]
        assert isinstance(info.value.__cause__, KeyError)
        assert info.value.details["stream_id"] == s
        assert "pen" not in str(info.value)

    async def test_bad_registrations_are_refused(self, manager: EventSourcingManager) -> None:
        manager.add_upcaster("kit.ItemAdded", 1, _v1_to_v2)
        with pytest.raises(ConfigurationError):
            manager.add_upcaster("kit.ItemAdded", 1, _v1_to_v2)
        with pytest.raises(ConfigurationError):
            manager.add_upcaster("kit.ItemAdded", 0, _v1_to_v2)
        manager.rename_event_type("kit.A", "kit.B")
        with pytest.raises(ConfigurationError, match="cycle"):
            manager.rename_event_type("kit.B", "kit.A")
        with pytest.raises(ConfigurationError, match="cycle"):
            manager.rename_event_type("kit.C", "kit.C")

    async def test_step_may_rename_the_type(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.Headline", data={"text": "t"})
        manager.add_upcaster("kit.Headline", 1, lambda d: {"title": d["text"]}, to_type="kit.Retitled")

        @dataclass(frozen=True)
        class Retitled(DomainEvent, type_name="kit.Retitled", version=2):
            title: str

        manager.register_event_class(Retitled)
        [e] = [e async for e in manager.read_stream(s, as_classes=True)]
        assert (e.event_type, e.data, e.metadata[SCHEMA_KEY]) == ("kit.Retitled", Retitled("t"), 2)

        @dataclass(frozen=True)
        class Stale(DomainEvent, type_name="kit.Stale"):
            title: str

        manager.add_upcaster("kit.Old", 1, lambda d: d, to_type="kit.Stale")
        with pytest.raises(ConfigurationError, match="version 2"):
            manager.register_event_class(Stale)  # the chain already produces kit.Stale at version 2

    async def test_event_type_filters_name_types_as_read(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        s, old, new = sid("dom"), sid("kit.Created"), sid("kit.Placed")
        await manager.append_event(stream_id=s, event_type=old, data={"n": 1})
        await manager.append_event(stream_id=s, event_type=new, data={"n": 2})
        manager.rename_event_type(old, new)
        page = await manager.get_events(stream_id=s, event_types=[new])  # finds the event stored under the old name
        assert ([e.data["n"] for e in page.events], {e.event_type for e in page.events}) == ([1, 2], {new})
        assert page.total_count in (None, 2)
        with pytest.raises(ValidationError, match="read as"):
            await manager.get_events(stream_id=s, event_types=[old])  # would give events of another type, or none
        if provider.capabilities.global_order == "total":
            async with manager.subscribe(stream_prefix=s, event_types=[new]) as sub:
                assert [e.data["n"] for e in await sub.next_batch(10)] == [1, 2]
            with pytest.raises(ValidationError, match="read as"):
                manager.subscribe(stream_prefix=s, event_types=[old])

    async def test_legacy_register_upcaster_still_runs_after_the_chain(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.ItemAdded", data={"name": "pen"})
        _chain(manager)
        manager.register_upcaster("kit.ItemAdded", lambda e: dataclasses.replace(e, data={**e.data, "legacy": True}))
        [e] = [e async for e in manager.read_stream(s)]
        assert e.data == {"item": "pen", "qty": 1, "legacy": True}

    async def test_snapshots_are_upcast_by_their_own_schema_version(self, manager: EventSourcingManager) -> None:
        s = sid("dom")
        await manager.append_event(stream_id=s, event_type="kit.Opened", data={"owner": "ada"})
        await manager.create_snapshot(stream_id=s, data={"who": "ada"}, aggregate_type="kit.Cart")
        manager.add_snapshot_upcaster("kit.Cart", 1, lambda d: {"owner": d["who"], "items": {}})
        snap = await manager.get_snapshot(s)
        assert snap.data == {"owner": "ada", "items": {}}
        assert snap.metadata[SCHEMA_KEY] == 2

    # ------------------------------------------------------------------ repository

    async def test_repository_saves_and_loads(self, manager: EventSourcingManager) -> None:
        repo = Repository(manager, Cart)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 2))
        res = await repo.save(cart)
        assert res is not None
        assert (res.first_version, res.last_version, cart.version, cart.pending) == (1, 2, 2, [])
        assert await repo.save(cart) is None
        again = await repo.get(cart.id)
        assert (again.owner, again.items, again.version) == ("ada", {"pen": 2}, 2)
        [first, _] = [e async for e in manager.read_stream(cart.stream_id)]
        assert (first.aggregate_id, first.aggregate_type) == (cart.id, "kit.Cart")

    async def test_repository_snapshots_every_threshold_and_loads_only_the_tail(
        self, manager: EventSourcingManager
    ) -> None:
        repo = Repository(manager, Cart, snapshot_threshold=10)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        await repo.save(cart)
        for i in range(24):
            cart.record(ItemAdded(f"i{i % 3}", 1))
            await repo.save(cart)
        snap = await manager.get_snapshot(cart.stream_id)
        assert snap.version == 20
        loaded = await repo.get(cart.id)
        assert (loaded.version, loaded.items, loaded.owner) == (25, {"i0": 8, "i1": 8, "i2": 8}, "ada")
        assert loaded.applied == 5  # the events after the snapshot only

    async def test_repository_ignores_a_snapshot_of_a_recreated_stream(self, manager: EventSourcingManager) -> None:
        repo = Repository(manager, Cart, snapshot_threshold=100)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        for _ in range(3):
            cart.record(ItemAdded("pen", 1))
        await repo.save(cart)
        # a snapshot that claims version 2 but names an event the stream does not hold at version 2
        await manager.create_snapshot(
            stream_id=cart.stream_id,
            data={"owner": "mallory", "items": {"gold": 99}},
            version=2,
            metadata={SCHEMA_KEY: 1, EVENT_KEY: "not-the-event-at-version-2"},
            aggregate_type="kit.Cart",
        )
        loaded = await repo.get(cart.id)
        assert (loaded.owner, loaded.items, loaded.version) == ("ada", {"pen": 3}, 4)
        await manager.delete_stream(cart.stream_id)
        fresh = repo.new(cart.id)
        fresh.record(Opened("bob"))
        await repo.save(fresh)
        await manager.create_snapshot(
            stream_id=cart.stream_id,
            data={"owner": "mallory", "items": {}},
            version=1,
            metadata={SCHEMA_KEY: 1, EVENT_KEY: "stale"},
            aggregate_type="kit.Cart",
        )
        assert (await repo.get(cart.id)).owner == "bob"

    async def test_aggregate_loads_from_its_snapshot_after_retention_removed_the_events_it_covers(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if not self.supports(provider, "truncate_stream"):
            pytest.skip("capability: the store declares 'truncate_stream' unsupported")
        repo = Repository(manager, Cart, snapshot_threshold=2)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 1))
        await repo.save(cart)  # a snapshot at version 2, the stream's head
        assert (await manager.get_snapshot(cart.stream_id)).version == 2
        # what BeforeSnapshotPolicy() does by default: every event the snapshot covers goes, its own included
        await provider.truncate_stream(cart.stream_id, 3)
        loaded = await repo.get(cart.id)  # the stream is empty at version 2: not re-created, just truncated
        assert (loaded.owner, loaded.items, loaded.version) == ("ada", {"pen": 1}, 2)
        loaded.record(ItemAdded("ink", 1))
        await repo.save(loaded)
        assert (await repo.get(cart.id)).items == {"pen": 1, "ink": 1}

    async def test_aggregate_whose_events_retention_removed_beyond_its_snapshot_is_not_loaded_partial(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if not self.supports(provider, "truncate_stream"):
            pytest.skip("capability: the store declares 'truncate_stream' unsupported")
        for threshold, cut in ((None, 2), (2, 4)):  # no snapshot / a snapshot at 2 and events 1..3 gone
            repo = Repository(manager, Cart, snapshot_threshold=threshold)
            cart = repo.new(sid("c"))
            cart.record(Opened("ada"))
            cart.record(ItemAdded("pen", 1))
            await repo.save(cart)  # a snapshot at 2 when the threshold is 2
            cart.record(ItemAdded("ink", 1))
            cart.record(ItemAdded("pad", 1))
            await Repository(manager, Cart, snapshot_threshold=None).save(cart)  # no snapshot at 4
            await provider.truncate_stream(cart.stream_id, cut)  # a max_count / max_age policy's doing
            with pytest.raises(EventNotFoundError, match="deleted"):
                await repo.get(cart.id)  # never a state without the events it misses

    async def test_snapshot_cadence_travels_with_the_aggregate_not_the_repository(
        self, manager: EventSourcingManager
    ) -> None:
        loader = Repository(manager, Cart, snapshot_threshold=10)
        cart = loader.new(sid("c"))
        cart.record(Opened("ada"))
        for _ in range(21):
            cart.record(ItemAdded("pen", 1))
        await loader.save(cart)  # version 22: one snapshot at 22
        loaded = await loader.get(cart.id)
        loaded.record(ItemAdded("ink", 1))
        saver = Repository(manager, Cart, snapshot_threshold=10)  # another repository (another request)
        await saver.save(loaded)  # 23 is 1 past the snapshot it was loaded from: no new snapshot
        assert (await manager.get_snapshot(cart.stream_id)).version == 22

    async def test_concurrent_saves_one_wins_the_other_conflicts(self, manager: EventSourcingManager) -> None:
        repo = Repository(manager, Cart)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        await repo.save(cart)
        a, b = await repo.get(cart.id), await repo.get(cart.id)
        a.record(ItemAdded("pen", 1))
        b.record(ItemAdded("ink", 1))
        await repo.save(a)
        with pytest.raises(ConcurrencyError):
            await repo.save(b)
        assert (await repo.get(cart.id)).items == {"pen": 1}
        twin = repo.new(cart.id)
        twin.record(Opened("eve"))
        with pytest.raises(ConcurrencyError):
            await repo.save(twin)  # a new aggregate over an existing stream

    async def test_update_reloads_and_reapplies_on_conflict(self, manager: EventSourcingManager) -> None:
        repo = Repository(manager, Cart)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        await repo.save(cart)
        calls = 0

        async def add_pen(c: Cart) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # another writer gets in between this load and its save
                other = await repo.get(c.id)
                other.record(ItemAdded("ink", 1))
                await repo.save(other)
            c.record(ItemAdded("pen", 1))

        out = await repo.update(cart.id, add_pen, retries=2)
        assert calls == 2
        assert out.items == {"ink": 1, "pen": 1}
        assert (await repo.get(cart.id)).items == {"ink": 1, "pen": 1}

        async def always_conflicts(c: Cart) -> None:
            other = await repo.get(c.id)
            other.record(ItemAdded("ink", 1))
            await repo.save(other)
            c.record(ItemAdded("pen", 1))

        with pytest.raises(ConcurrencyError):
            await repo.update(cart.id, always_conflicts, retries=1)

    async def test_save_refuses_a_stream_recreated_to_the_same_length_since_the_load(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        reuse = provider.capabilities.deleted_stream_ids
        if reuse != "reusable":
            pytest.skip(f"deleted_stream_ids={reuse}: a deleted stream id is never re-created")
        repo = Repository(manager, Cart)
        cart = repo.new(sid("c"))
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 1))
        await repo.save(cart)
        loaded = await repo.get(cart.id)
        await manager.delete_stream(cart.stream_id)
        again = repo.new(cart.id)
        again.record(Opened("bob"))
        again.record(ItemAdded("ink", 1))
        await repo.save(again)  # the same id, the same length: version 2 again
        loaded.record(ItemAdded("gold", 1))
        with pytest.raises(ConcurrencyError, match="re-created"):
            await repo.save(loaded)
        assert ((await repo.get(cart.id)).owner, (await repo.get(cart.id)).items) == ("bob", {"ink": 1})
        again.record(ItemAdded("ink", 1))
        await repo.save(again)  # the aggregate that saved the new stream carries on
        assert (await repo.get(cart.id)).items == {"ink": 2}

    async def test_stream_ids_of_two_aggregates_never_collide(self, manager: EventSourcingManager) -> None:
        base = sid("o").replace("-", "")  # a type with no "-" of its own

        class Order(Cart):
            aggregate_type = f"{base}.order"

        class OrderA(Cart):
            aggregate_type = f"{base}.order-a"

        assert Order.stream_id_of("a-b") != OrderA.stream_id_of("b")
        assert OrderA.stream_id_of("b") == f"{base}.order%2Da-b"
        assert Order.legacy_stream_id_of("a-b") is None  # no "-" or "%" in the type: the scheme is unchanged
        orders, others = Repository(manager, Order), Repository(manager, OrderA)
        one, two = orders.new("a-b"), others.new("b")
        one.record(Opened("ada"))
        two.record(Opened("bob"))
        await orders.save(one)
        await others.save(two)  # refused with a conflict under the legacy scheme (the same stream)
        assert ((await orders.get("a-b")).owner, (await others.get("b")).owner) == ("ada", "bob")
        with pytest.raises(ValidationError):
            Order.stream_id_of("")

    async def test_aggregates_saved_under_the_legacy_stream_id_still_load_and_save(
        self, manager: EventSourcingManager
    ) -> None:
        base = sid("o").replace("-", "")  # a type with no "-" of its own

        class OrderA(Cart):
            aggregate_type = f"{base}.order-a"

        class Order(Cart):
            aggregate_type = f"{base}.order"

        legacy = f"{base}.order-a-b"  # what ("order-a", "b") was stored as, and ("order", "a-b") would be
        await manager.append_events_batch(
            stream_id=legacy,
            events=[Opened("old").event_data(aggregate_id="b", aggregate_type=OrderA.aggregate_type)],
        )
        repo = Repository(manager, OrderA)
        loaded = await repo.get("b")
        assert (loaded.owner, loaded.stream_id) == ("old", legacy)
        loaded.record(ItemAdded("pen", 1))
        await repo.save(loaded)  # extends the legacy stream
        assert [e.version async for e in manager.read_stream(legacy)] == [1, 2]
        twin = repo.new("b")
        twin.record(Opened("eve"))
        with pytest.raises(ConcurrencyError):
            await repo.save(twin)  # a new aggregate over the legacy stream is refused like over any stream
        with pytest.raises(StreamNotFoundError):
            await Repository(manager, Order).get("a-b")  # the legacy stream names another aggregate

    async def test_repository_upcasts_an_old_snapshot(self, manager: EventSourcingManager) -> None:
        class CartV2(Cart):
            aggregate_type = "kit.Cart"
            snapshot_version = 2

        repo1 = Repository(manager, Cart, snapshot_threshold=2)
        cart = repo1.new(sid("c"))
        cart.record(Opened("ada"))
        cart.record(ItemAdded("pen", 1))
        await repo1.save(cart)
        manager.add_snapshot_upcaster("kit.Cart", 1, lambda d: {**d, "owner": d["owner"].upper()})
        repo2 = Repository(manager, CartV2, snapshot_threshold=2)
        loaded = await repo2.get(cart.id)
        assert (loaded.owner, loaded.applied) == ("ADA", 0)  # from the upcast snapshot, nothing replayed


__all__ = ["Cart", "DomainSuite", "ItemAdded", "Opened", "Renamed"]
