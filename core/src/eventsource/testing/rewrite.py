"""``RewriteSuite``: the offline upcast rewrite (:func:`eventsource.domain.rewrite.rewrite_stream`) on one provider.

Subclass it and override the ``provider`` fixture, exactly like :class:`~eventsource.testing.ProviderSuite`.
On a store that can rewrite it checks that a dry run writes nothing, that a run brings every event to the
newest schema version (renamed types included, with the counts by type following) while ids, versions,
positions, timestamps and envelope fields stay, that an encrypted payload is encrypted again and still
decrypts at its place, that an event changed since it was read is left alone, and that a second run finds
nothing to do. A store that declares ``rewrite_events`` unsupported must refuse, dry run or not, unchanged.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from eventsource.domain.rewrite import EventRewrite, rewrite_stream
from eventsource.domain.upcasting import SCHEMA_KEY
from eventsource.errors import CodecError, ConfigurationError, StreamNotFoundError, UnsupportedOperationError
from eventsource.manager import EventSourcingManager
from eventsource.model import EventData
from eventsource.plugins import PluginHost
from eventsource.testing.base import ProviderSuiteBase, sid

if TYPE_CHECKING:
    from eventsource.model import RecordedEvent
    from eventsource.provider import Provider

KEY = base64.b64encode(bytes(range(32))).decode()
OP = "rewrite_events"


def _envelope(rec: RecordedEvent) -> tuple[Any, ...]:
    """Everything a rewrite must keep: ids, place, time and the plain envelope fields."""
    return (
        rec.event_id, rec.stream_id, rec.version, rec.position, rec.timestamp, rec.correlation_id,
        rec.causation_id, rec.user_id, rec.tenant_id, rec.aggregate_id, rec.aggregate_type,
    )  # fmt: skip


def _chain(m: EventSourcingManager) -> None:
    m.add_upcaster("rw.Added", 1, lambda d: {"item": d["name"]})
    m.add_upcaster("rw.Added", 2, lambda d: {**d, "qty": 1})
    m.rename_event_type("rw.Titled", "rw.Renamed")


async def _seed(m: EventSourcingManager, stream: str) -> None:
    """Version-1 events of a chained type, a renamed type and a type with no chain (before the chain exists)."""
    await m.append_events_batch(
        stream_id=stream,
        events=[
            EventData("rw.Added", {"name": "pen"}, correlation_id="c1", tenant_id="t1", aggregate_id="a1"),
            EventData("rw.Plain", {"x": 1}),
            EventData("rw.Titled", {"title": "hello"}, user_id="u1"),
            EventData("rw.Added", {"name": "ink"}),
        ],
    )


class RewriteSuite(ProviderSuiteBase):
    """The offline upcast rewrite, as tests. Subclass and override :meth:`provider`."""

    def _require(self, provider: Provider) -> None:
        if not self.supports(provider, OP):
            pytest.skip(f"capability: the store declares {OP!r} unsupported (checked by the refusal test)")

    @staticmethod
    async def _stored(provider: Provider, stream: str) -> list[RecordedEvent]:
        return [r async for r in provider.read_stream(stream)]

    async def _manager(self, provider: Provider, **config: Any) -> EventSourcingManager:
        m = EventSourcingManager(
            {"providers": {}, "default_provider": None, **config}, host=PluginHost(load_entrypoints=False)
        )
        await m.register_provider(type(provider)(**provider.spawn_args()), name="rw", default=True)
        return m

    async def test_store_that_cannot_rewrite_refuses_unchanged(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        if self.supports(provider, OP):
            pytest.skip(f"capability: the store supports {OP!r} (the other tests run it)")
        stream = sid("rw")
        await _seed(manager, stream)
        _chain(manager)
        before = await self._stored(provider, stream)
        for dry_run in (True, False):
            with pytest.raises(UnsupportedOperationError) as info:
                await rewrite_stream(manager, stream, dry_run=dry_run)
            assert info.value.details.get("operation") == OP
        assert await self._stored(provider, stream) == before

    async def test_dry_run_reports_and_writes_nothing(self, manager: EventSourcingManager, provider: Provider) -> None:
        self._require(provider)
        stream = sid("rw")
        await _seed(manager, stream)
        before = await self._stored(provider, stream)
        _chain(manager)
        seen: list[tuple[int, int]] = []
        report = await rewrite_stream(manager, stream, dry_run=True, progress=lambda d, t: seen.append((d, t)))
        assert (report.read, report.rewritten, report.current, report.dry_run) == (4, 3, 1, True)
        assert report.changes == {"rw.Added v1 -> rw.Added v3": 2, "rw.Titled v1 -> rw.Renamed v1": 1}
        assert seen == [(4, 4)]
        assert await self._stored(provider, stream) == before

    async def test_rewrite_stores_the_newest_version_and_keeps_ids_places_and_times(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self._require(provider)
        stream = sid("rw")
        await _seed(manager, stream)
        before = await self._stored(provider, stream)
        _chain(manager)
        read_before = [(e.event_type, e.data) async for e in manager.read_stream(stream)]
        types_before = (await provider.stats()).events_by_type
        report = await rewrite_stream(manager, stream, batch_size=3)  # two batches
        assert (report.read, report.rewritten, report.current, report.changed_meanwhile) == (4, 3, 1, 0)
        after = await self._stored(provider, stream)
        assert [_envelope(r) for r in after] == [_envelope(r) for r in before]
        assert [r.event_type for r in after] == ["rw.Added", "rw.Plain", "rw.Renamed", "rw.Added"]
        assert after[1] == before[1]  # an event already current is not touched
        fresh = await self._manager(provider)  # no chain at all: the stored events read as they now are
        try:
            events = [e async for e in fresh.read_stream(stream)]
            assert [(e.event_type, e.data) for e in events] == read_before
            assert [e.metadata.get(SCHEMA_KEY, 1) for e in events] == [3, 1, 1, 3]
        finally:
            await fresh.close()
        types = (await provider.stats()).events_by_type
        assert types.get("rw.Titled", 0) == types_before.get("rw.Titled", 0) - 1
        assert types.get("rw.Renamed", 0) == types_before.get("rw.Renamed", 0) + 1
        retry = await manager.append_events_batch(  # a late retry of the first append: still recognised by id
            stream_id=stream, events=[EventData("rw.Added", {"name": "pen"}, event_id=before[0].event_id)]
        )
        assert (retry.duplicate, retry.first_version, retry.positions) == (True, 1, [before[0].position])
        again = await rewrite_stream(manager, stream)
        assert (again.rewritten, again.current) == (0, 4)
        assert await self._stored(provider, stream) == after

    async def test_encrypted_payloads_are_encrypted_again_at_the_same_place(self, provider: Provider) -> None:
        self._require(provider)
        m = await self._manager(provider, encryption=True, encryption_keys={"k1": KEY})
        plain = await self._manager(provider, encryption=False, encryption_keys={"k1": KEY})  # reads, never seals
        try:
            stream = sid("rw")
            await _seed(m, stream)
            _chain(m)
            _chain(plain)
            before = await self._stored(provider, stream)
            with pytest.raises(ConfigurationError):  # it would store the upcast data in the clear
                await rewrite_stream(plain, stream)
            assert await self._stored(provider, stream) == before
            await rewrite_stream(m, stream)
            after = await self._stored(provider, stream)
            assert all(r.encoding == b.encoding for r, b in zip(after, before, strict=True))
            assert all("aes256gcm" in r.encoding for r in after)
            assert after[0].data != before[0].data
            assert b"pen" not in after[0].data
            read = [e async for e in m.read_stream(stream)]
            assert read[0].data == {"item": "pen", "qty": 1}
            # the renamed event is sealed for its new type, which the store now holds: it reads
            assert (read[2].event_type, read[2].data) == ("rw.Renamed", {"title": "hello"})
            # the new ciphertext is bound to its own event: moved onto another one it does not decrypt
            moved = dataclasses.replace(after[3], data=after[0].data)
            with pytest.raises(CodecError):
                m._codec.decode_stored(moved)  # noqa: SLF001
        finally:
            await m.close()
            await plain.close()

    async def test_event_changed_since_it_was_read_is_left_alone(
        self, manager: EventSourcingManager, provider: Provider
    ) -> None:
        self._require(provider)
        stream = sid("rw")
        await _seed(manager, stream)
        [first, *_] = await self._stored(provider, stream)
        stale = dataclasses.replace(first, data=b'{"name": "not what is stored"}')
        rw = EventRewrite(stale, "rw.Added", b'{"item": "x", "qty": 1}', b"{}", first.encoding)
        assert await provider.rewrite_events(stream, [rw]) == 0
        assert (await self._stored(provider, stream))[0] == first
        ok = EventRewrite(first, "rw.Added", b'{"item": "x", "qty": 1}', first.metadata, first.encoding)
        assert await provider.rewrite_events(stream, [ok]) == 1
        assert await provider.rewrite_events(stream, [ok]) == 0  # the stored event is no longer the one read

    async def test_missing_stream_and_bad_batch_size_are_typed_errors(self, manager: EventSourcingManager) -> None:
        with pytest.raises(ConfigurationError):
            await rewrite_stream(manager, sid("rw"), batch_size=0)
        if self.supports(manager.get_provider(), OP):
            with pytest.raises(StreamNotFoundError):
                await rewrite_stream(manager, sid("rw"))


__all__ = ["RewriteSuite"]
