"""The ``create_store`` setting: off, ``connect()`` refuses a missing store and leaves it missing; reads go on.

A plugin overrides the ``absent_store`` fixture: keyword arguments (URL and settings) of a namespace on the
test server that nothing has created, how to see what of it exists (without creating anything), and, at
teardown, the removal of whatever a failing test left. The tests build providers with ``type(provider)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.errors import StoreNotFoundError
from eventsource.manager import EventSourcingManager
from eventsource.testing.absent import nothing, refused_twice
from eventsource.testing.base import ProviderSuiteBase, _host, ev, sid

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from eventsource.provider import Provider


@dataclass(frozen=True)
class AbsentStore:
    """A namespace nothing has created, on the server of the store under test."""

    args: dict[str, Any]
    """Keyword arguments of the provider class (``url`` and settings) that reach the namespace."""
    leftovers: Callable[[], Awaitable[list[str]]] = field(default=nothing)
    """What of the namespace exists now (tables, a schema, streams, buckets, topics, files), found without
    creating anything; ``[]`` when nothing does. The default sees nothing, which the kit fails: give your own."""


class StoreSetupSuite(ProviderSuiteBase):
    """``create_store=False``: nothing created where nothing is, and an existing store read as usual."""

    @pytest.fixture
    async def absent_store(self, provider: Provider) -> AsyncIterator[AbsentStore]:
        """Override: yield an :class:`AbsentStore` on the server of ``provider``; remove what is left after."""
        del provider
        msg = "override the `absent_store` fixture in your ProviderSuite subclass (see docs/writing-a-provider.md)"
        pytest.fail(msg)  # a subclass that forgot the fixture fails loudly, never skips
        yield  # pragma: no cover

    @staticmethod
    def built(provider: Provider, args: dict[str, Any], *, create_store: bool) -> Provider:
        """A provider of ``provider``'s class from ``args``, ``create_store`` set."""
        return type(provider)(**{**args, "create_store": create_store})

    async def test_create_store_off_refuses_a_missing_store_and_creates_nothing(
        self, provider: Provider, absent_store: AbsentStore
    ) -> None:
        assert await absent_store.leftovers() == [], "the absent_store fixture names a namespace that exists"
        build = functools.partial(self.built, provider, absent_store.args, create_store=False)
        await refused_twice(build, absent_store.leftovers, named=["store"])

    async def test_create_store_off_is_refused_through_the_manager_without_retries(
        self, provider: Provider, absent_store: AbsentStore
    ) -> None:
        m = EventSourcingManager({"providers": {}, "default_provider": None, "retry_attempts": 3}, host=_host())
        p = self.built(provider, absent_store.args, create_store=False)
        try:
            with pytest.raises(StoreNotFoundError):
                await m.register_provider(p, name="absent", default=True)
            assert m.list_providers() == []
        finally:
            await p.close()
            await m.close()
        assert await absent_store.leftovers() == []

    async def test_leftovers_sees_the_store_create_store_on_makes(
        self, provider: Provider, absent_store: AbsentStore
    ) -> None:
        """The fixture's ``leftovers`` can see a store: else "creates nothing" above passes whatever was created."""
        assert await absent_store.leftovers() == [], "the absent_store fixture names a namespace that exists"
        m = EventSourcingManager({"providers": {}, "default_provider": None, "retry_attempts": 3}, host=_host())
        try:  # the default, create_store on, on the namespace; an event too, for a store that makes things lazily
            await m.register_provider(self.built(provider, absent_store.args, create_store=True), name="made")
            await m.append_event(stream_id=sid(), event_type="Made", data={}, provider="made")
        finally:
            await m.close()
        made = await absent_store.leftovers()
        assert made, (
            "the absent_store fixture's leftovers() sees nothing of a store connect() created on its namespace: "
            "it must look the namespace up on the server (tables, a schema, streams, buckets, topics, files), or the "
            "create_store tests cannot see what a refused connect() leaves behind"
        )

    async def test_create_store_off_reads_an_existing_store(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        a, b = sid(), sid()
        await manager.append_events_batch(stream_id=a, events=[ev("A"), ev("B")])
        await manager.append_event(stream_id=b, event_type="C", data={"n": 1})
        await manager.create_snapshot(stream_id=a, data={"at": 2})
        reader = self.built(provider, provider.spawn_args(), create_store=False)
        await manager.register_provider(reader, name="reader")  # (the manager's codecs and keys: it reads them all)
        try:
            assert [e.event_type async for e in manager.read_stream(a, provider="reader")] == ["A", "B"]
            assert [e.data async for e in manager.read_stream(b, provider="reader")] == [{"n": 1}]
            ids = {e.event_id async for e in manager.read_all()}
            assert {e.event_id async for e in manager.read_all(provider="reader")} == ids
            assert (await manager.get_stream_info(a, provider="reader")).version == 2
            snap = await manager.get_snapshot(a, provider="reader")
            assert (snap.version, snap.data) == (2, {"at": 2})
            st = (await manager.get_stats())["reader"]
            assert (st.total_events, st.total_streams) == (3, 2)
            # it writes to the store it found too: create_store is about setting a store up, not a read-only mode
            await manager.append_event(stream_id=b, event_type="D", data={}, provider="reader")
            assert await self.versions(manager, b) == [1, 2]
        finally:
            await reader.close()
