"""Writing a source's items into a store as they were stored: ids, versions, timestamps, envelopes, payload bytes.

Built on the provider contract only (``create_stream``, ``append`` at an exact expected version,
``truncate_stream``, ``save_snapshot``), so every store, a third-party one included, can be a target. Payloads
are never decoded: data, metadata and the encoding descriptor travel as bytes, and the associated data of an
encrypted payload (stream, event id, version) is kept, so it still decrypts at the target. A stream the source
truncated starts at its first stored version: placeholder events fill the versions below it and are truncated
away at once. A re-run skips what the target already holds (per stream, by version) and fills the map from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsource.errors import ConcurrencyError, EventSourceError, StreamExistsError, ValidationError
from eventsource.model import NO_STREAM, NewEvent, NewStream, RecordedEvent, RecordedSnapshot
from eventsource.transfer.source import page_records
from eventsource.transfer.verify import event_difference, json_value, snapshot_field_difference

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import StreamInfo
    from eventsource.provider import Provider
    from eventsource.transfer.posmap import Entry, PositionMap

    _Top = tuple[str, datetime]  # the event id and time of the placeholder at a stream's floor

PLACEHOLDER_TYPE = "$eventsource.transfer.placeholder"
"""Event type of the placeholders that hold a truncated stream's missing versions until they are truncated."""

_PLACEHOLDER_IDS = uuid.UUID("6f1d0c3e-8a53-4a8e-9a57-0d7c1f3b2e41")
"""Namespace of the placeholders' event ids (one per stream and version, so a re-run appends the same ids)."""

MAX_BATCH_EVENTS = 500
"""Events per append at most."""


def _attribute_difference(a: StreamInfo, b: StreamInfo) -> str | None:
    """The first attribute (name, aggregate id or type, metadata) in which two copies of a stream differ."""
    pairs = (
        ("name", a.name, b.name),
        ("aggregate id", a.aggregate_id, b.aggregate_id),
        ("aggregate type", a.aggregate_type, b.aggregate_type),
        ("metadata", json_value(a.metadata), json_value(b.metadata)),
    )
    return next((name for name, x, y in pairs if x != y), None)


def _placeholder_id(stream_id: str, version: int) -> str:
    """The event id of the placeholder at ``version`` of ``stream_id``."""
    return str(uuid.uuid5(_PLACEHOLDER_IDS, f"{stream_id}/{version}"))


def _name_writing(e: Exception, stream_id: str, batch: Sequence[RecordedEvent]) -> None:
    """Make the target's error ``e`` say which stream and versions (one event: which event) were being written.

    The error keeps its class, so a caller catches it as before and the command line exits as before.
    """
    first, last = batch[0], batch[-1]
    what = (
        f"version {first.version} (event {first.event_id!r})"
        if len(batch) == 1
        else (f"versions {first.version}..{last.version} ({len(batch)} events)")
    )
    _name_stream(e, f"writing stream {stream_id!r} {what} to the target", stream_id)
    if isinstance(e, EventSourceError):
        e.details.setdefault("versions", [first.version, last.version])


def _name_stream(e: Exception, where: str, stream_id: str) -> None:
    """Put ``where`` (what the copy was doing to which stream) before the target's error ``e``, keeping its class."""
    if isinstance(e, EventSourceError):
        e.message = f"{where}: {e.message}"
        e.args = (e.message,)
        e.details.setdefault("stream_id", stream_id)
    else:
        e.add_note(where)


@dataclass(slots=True)
class _Stream:
    version: int  # the target's version of the stream
    pending: NewStream | None = None  # attributes of a stream the target lacks: created by its first append


def new_event(rec: RecordedEvent) -> NewEvent:
    """The append form of a stored event: every field but stream, version and position, bytes as they are."""
    return NewEvent(
        rec.event_id,
        rec.event_type,
        rec.data,
        rec.metadata,
        rec.encoding,
        rec.timestamp,
        rec.correlation_id,
        rec.causation_id,
        rec.user_id,
        rec.tenant_id,
        rec.aggregate_id,
        rec.aggregate_type,
    )


class StoreSink:
    """Writes items into ``provider`` and their positions into ``positions`` (see the module docstring)."""

    def __init__(
        self, provider: Provider, positions: PositionMap, *, concurrency: int = 8, cursor: str | None = None
    ) -> None:
        self.provider = provider
        self.cursor = cursor
        """Name under which each write's last source position is recorded (a source in total order only)."""
        self.concurrency = concurrency
        """Streams of one page written at once (a store with one writer, SQLite, simply queues them)."""
        self.positions = positions
        self.state: dict[str, _Stream] = {}
        caps = provider.capabilities
        self.max_batch_bytes = caps.max_batch_bytes
        self.written = 0
        self.skipped = 0
        self.snapshots = 0
        self.streams = 0

    async def stream(self, info: StreamInfo) -> None:
        """Create the stream with its attributes if the target lacks it, and bring it to its first stored version."""
        p = self.provider
        target = await p.get_stream_info(info.stream_id)
        floor = (info.first_version - 1) if info.first_version is not None else info.version
        attrs = NewStream(info.stream_id, info.name, info.aggregate_id, info.aggregate_type, dict(info.metadata))
        if target is None and floor == 0:  # its first append creates it (an empty one: complete() does)
            self.state[info.stream_id] = _Stream(0, attrs)
            self.streams += 1
            return
        if target is None:
            await self._create(attrs)
            target = await p.get_stream_info(info.stream_id)
        elif (differs := _attribute_difference(info, target)) is not None:
            msg = (
                f"stream {info.stream_id!r} on the target has another {differs} than the source's: the target "
                "stream is not a copy of the source's"
            )
            raise ConcurrencyError(msg, stream_id=info.stream_id, expected=info.version, actual=target.version)
        version = target.version if target is not None else 0
        # a stream truncated to nothing reads back its top placeholder's time and id: the source's, not 1970's
        mark = info.last_event_id or _placeholder_id(info.stream_id, floor)  # (a store may report no last id)
        top = (mark, info.updated_at) if info.first_version is None else None
        if 0 < version <= floor and self.positions.highest_version(info.stream_id) < version:
            await self._refuse_foreign_floor(info.stream_id, version, floor, top)
        elif 0 < version < floor:
            await self._refuse_gap(info.stream_id, version, floor)
        if version < floor:
            await self._placeholders(info.stream_id, version, floor, top)
            version = floor
        if floor > 0:
            await self._drop_placeholders(info.stream_id, floor)
        self.state[info.stream_id] = _Stream(version)
        self.streams += 1

    async def _create(self, attrs: NewStream) -> None:
        try:
            await self.provider.create_stream(attrs)
        except StreamExistsError:  # created in between (a concurrent copy): fine
            pass
        except Exception as e:  # a stream the target cannot hold: say which, of thousands
            _name_stream(e, f"creating stream {attrs.stream_id!r} on the target", attrs.stream_id)
            raise

    async def complete(self) -> None:
        """Create the streams that no append created (empty ones)."""
        for state in self.state.values():
            if state.pending is not None:
                await self._create(state.pending)
                state.pending = None

    async def _placeholders(self, stream_id: str, version: int, floor: int, top: _Top | None = None) -> None:
        """Append placeholder events for versions ``version + 1 .. floor`` (truncated at once after).

        ``top``: the id and time of the one at ``floor`` (the source's last event's, when it stores none: the
        target's stream info then reads as the source's); the others are stamped with the epoch.
        """
        at = datetime.fromtimestamp(0, UTC)
        while version < floor:
            n = min(MAX_BATCH_EVENTS, floor - version)
            ids = [_placeholder_id(stream_id, version + i + 1) for i in range(n)]
            batch = [NewEvent(i, PLACEHOLDER_TYPE, b"null", b"", "json", at) for i in ids]
            if top is not None and version + n == floor:
                batch[-1] = replace(batch[-1], event_id=top[0], timestamp=top[1])
            await self.provider.append(stream_id, batch, version)
            version += n

    async def _refuse_foreign_floor(self, stream_id: str, version: int, floor: int, top: _Top | None) -> None:
        """Refuse a target stream whose events all lie below the source's first stored version, unless placeholders.

        No event of it can be compared with the source's (the source truncated those versions), so unless they
        are this copy's placeholders (a re-run after a kill) or mapped, they are another stream's events.
        """
        for at in (1, version):
            rows = self.provider.read_stream(stream_id, from_version=at, to_version=version, page_size=1)
            async with contextlib.aclosing(rows) as found:  # type: ignore[type-var]
                rec = await anext(found, None)
            if rec is None:
                continue
            mine = top[0] if top is not None and rec.version == floor else _placeholder_id(stream_id, rec.version)
            if (rec.event_type, rec.event_id) != (PLACEHOLDER_TYPE, mine):
                msg = (
                    f"stream {stream_id!r} on the target holds event {rec.event_id!r} at version {rec.version}, "
                    f"below the source's first stored version {floor + 1}, and the position map does not say it "
                    "copied it: the target stream is not a copy of the source's, or one made with another position "
                    "map (name that map: --map FILE, position_map=)"
                )
                raise ConcurrencyError(msg, stream_id=stream_id, expected=floor, actual=version)

    async def _refuse_gap(self, stream_id: str, version: int, floor: int) -> None:
        """Refuse to put placeholders after the copied events of a stream the source truncated past them since.

        They could not be truncated away without the events below them, and readers would see them.
        """
        rows = self.provider.read_stream(stream_id, from_version=version, to_version=version, page_size=1)
        async with contextlib.aclosing(rows) as found:  # type: ignore[type-var]
            rec = await anext(found, None)
        if rec is None or rec.event_type == PLACEHOLDER_TYPE:
            return
        msg = (
            f"stream {stream_id!r}: the target holds it up to version {version}, the source now starts at version "
            f"{floor + 1} (versions {version + 1}..{floor} were truncated on the source before a copy got them): "
            "a copy cannot leave a gap inside a stream; delete the stream on the target, or copy into an empty store"
        )
        raise ValidationError(msg, stream_id=stream_id, version=version + 1)

    async def _drop_placeholders(self, stream_id: str, floor: int) -> None:
        """Truncate the stream below ``floor + 1`` if what it holds there are placeholders (a re-run after a kill)."""
        first = self.provider.read_stream(stream_id, from_version=1, to_version=floor, page_size=1)
        async with contextlib.aclosing(first) as found:  # type: ignore[type-var]
            rec = await anext(found, None)
        if rec is not None and rec.event_type == PLACEHOLDER_TYPE:
            await self.provider.truncate_stream(stream_id, floor + 1)

    async def _state(self, rec: RecordedEvent) -> _Stream:
        """The target state of ``rec``'s stream (a stream the listing did not show is prepared from its event)."""
        state = self.state.get(rec.stream_id)
        if state is None:
            target = await self.provider.get_stream_info(rec.stream_id)
            state = _Stream(target.version if target else 0)
            self.state[rec.stream_id] = state
        return state

    async def events(self, page: list[RecordedEvent]) -> int:
        """Write one page grouped by stream (each group's appends atomic, up to :attr:`concurrency` streams at once).

        Returns how many events were new. The page's positions go to the map in one commit once every group
        is written; a failure leaves the map without them, and a re-run maps what was written from the target.
        """
        groups: dict[str, list[RecordedEvent]] = {}
        for rec in page:
            groups.setdefault(rec.stream_id, []).append(rec)
        entries: list[Entry] = []
        gate = asyncio.Semaphore(self.concurrency)

        async def one(stream_id: str, recs: list[RecordedEvent]) -> int:
            async with gate:
                return await self._group(stream_id, recs, entries)

        done = await asyncio.gather(*(one(sid, recs) for sid, recs in groups.items()), return_exceptions=True)
        failed = next((d for d in done if isinstance(d, BaseException)), None)
        if failed is not None:
            raise failed
        if entries or self.cursor is not None:
            self.positions.record(entries, (self.cursor, page[-1].position) if self.cursor is not None else None)
        written = sum(d for d in done if isinstance(d, int))
        self.written += written
        return written

    async def _group(self, stream_id: str, recs: list[RecordedEvent], entries: list[Entry]) -> int:
        """Write one stream's part of a page; its map entries go to ``entries``."""
        state = await self._state(recs[0])
        await self._map_existing(stream_id, state, recs, entries)
        fresh = [r for r in recs if r.version > state.version]
        self.skipped += len(recs) - len(fresh)
        for batch in self._batches(fresh):
            entries.extend(await self._append(stream_id, state, batch))
        return len(fresh)

    async def _map_existing(
        self, stream_id: str, state: _Stream, recs: list[RecordedEvent], entries: list[Entry]
    ) -> None:
        """Check the events of ``recs`` the target holds already, and map those the map lacks (a killed copy).

        One the map holds must be the event it recorded (another id: the map and the target hold another
        source's stream); one it lacks is read from the target and compared field by field.
        """
        held = [r for r in recs if r.version <= state.version]
        if not held:
            return
        known = self.positions.event_ids(stream_id, held[0].version, held[-1].version)
        todo: list[RecordedEvent] = []
        for rec in held:
            mapped = known.get(rec.version)
            if mapped is None:
                todo.append(rec)
            elif mapped != rec.event_id:
                msg = (
                    f"stream {stream_id!r}: the target holds event {mapped!r} at version {rec.version} (copied "
                    f"there by an earlier run with this position map), the source holds {rec.event_id!r}: the "
                    "target stream is not a copy of this source's"
                )
                raise ConcurrencyError(msg, stream_id=stream_id, expected=rec.version, actual=state.version)
        if not todo:
            return
        by_version = {r.version: r for r in todo}
        async for page in self.provider.read_stream_pages(
            stream_id, from_version=todo[0].version, to_version=todo[-1].version
        ):
            for got in page_records(page):
                src = by_version.get(got.version)
                if src is not None:
                    self._check_same(src, got)
                    entries.append((src.position, got.position, stream_id, got.version, got.event_id))

    @staticmethod
    def _check_same(src: RecordedEvent, got: RecordedEvent) -> None:
        """Refuse a target stream that holds another event, or the same id with other content, at a skipped version."""
        if got.event_id != src.event_id:
            msg = (
                f"stream {src.stream_id!r} on the target holds event {got.event_id!r} at version {got.version}, "
                f"the source holds {src.event_id!r}: the target stream is not a copy of the source's"
            )
            raise ConcurrencyError(msg, stream_id=src.stream_id, expected=src.version, actual=got.version)
        differs = event_difference(src, got)
        if differs is not None:
            msg = (
                f"stream {src.stream_id!r} on the target holds event {got.event_id!r} at version {got.version} with "
                f"another {differs} than the source's: the target stream is not a copy of the source's"
            )
            raise ConcurrencyError(msg, stream_id=src.stream_id, expected=src.version, actual=got.version)

    def _batches(self, recs: list[RecordedEvent]) -> list[list[RecordedEvent]]:
        """``recs`` cut into appends of at most :data:`MAX_BATCH_EVENTS` events and the store's batch bytes."""
        limit = self.max_batch_bytes
        batches: list[list[RecordedEvent]] = []
        batch: list[RecordedEvent] = []
        size = 0
        for rec in recs:
            n = len(rec.data) + len(rec.metadata) + 512
            if batch and (len(batch) >= MAX_BATCH_EVENTS or (limit is not None and size + n > limit)):
                batches.append(batch)
                batch, size = [], 0
            batch.append(rec)
            size += n
        if batch:
            batches.append(batch)
        return batches

    async def _append(self, stream_id: str, state: _Stream, batch: Sequence[RecordedEvent]) -> list[Entry]:
        """Append ``batch`` right after the target's version; the events' versions must follow it."""
        first = batch[0].version
        if first != state.version + 1:
            msg = (
                f"stream {stream_id!r}: the source holds version {first} after version {state.version} "
                "(events deleted out of order); a copy cannot leave a gap inside a stream"
            )
            raise ValidationError(msg, stream_id=stream_id, version=first)
        attrs, state.pending = state.pending, None
        # the append that creates a stream expects none: a store then records its attributes with the events
        # (at an exact version 0, NATS writes them after the events, and a kill in between lost them)
        expected = NO_STREAM if attrs is not None else state.version
        try:
            result = await self.provider.append(stream_id, [new_event(r) for r in batch], expected, attrs)
        except Exception as e:
            _name_writing(e, stream_id, batch)
            raise
        if result.first_version != first:
            msg = f"stream {stream_id!r}: the target stored version {result.first_version}, not {first}"
            raise ConcurrencyError(msg, stream_id=stream_id, expected=first, actual=result.first_version)
        state.version = result.last_version
        return [
            (r.position, pos, stream_id, r.version, r.event_id) for r, pos in zip(batch, result.positions, strict=True)
        ]

    async def snapshot(self, snap: RecordedSnapshot) -> None:
        """Save ``snap`` unless the target holds it already; its position becomes the target's."""
        state = self.state.get(snap.stream_id)
        if state is not None and state.pending is not None:
            await self._create(state.pending)
            state.pending = None
        have = await self.provider.get_snapshot(snap.stream_id, max_version=snap.version)
        if have is not None and have.version == snap.version and have.snapshot_id == snap.snapshot_id:
            differs = snapshot_field_difference(snap, have)
            if differs is not None:
                msg = (
                    f"stream {snap.stream_id!r} on the target holds snapshot {snap.snapshot_id!r} at version "
                    f"{snap.version} with another {differs} than the source's: the target stream is not a copy of "
                    "the source's"
                )
                raise ConcurrencyError(msg, stream_id=snap.stream_id, expected=snap.version, actual=have.version)
            return
        position = self.positions.target_of_version(snap.stream_id, snap.version)
        await self.provider.save_snapshot(replace(snap, position=position))
        self.snapshots += 1
