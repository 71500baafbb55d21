"""Appends: one envelope record per append, and the log decides whether it won its version.

The expected version is checked against the tail this process knows (refreshed when it disagrees, so
a stale tail never reports a false conflict), the events are produced as ONE record, and
:meth:`Tails.settle <eventsource_kafka.tails.Tails.settle>` learns from its offset whether it was the
first record carrying the next version (:func:`records.accepts <eventsource_kafka.records.accepts>`).
A record that lost is never visible; the append reports :class:`ConcurrencyError` (``ANY`` and
``STREAM_EXISTS`` try again at the new tail). Event ids in the tail's window make retries idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from eventsource.errors import ConcurrencyError, ValidationError
from eventsource.model import AppendResult, ExpectedVersion, NewStream, RecordedEvent
from eventsource.provider import check_duplicate, check_expected
from eventsource.timestamps import from_us, in_utc, now_us, to_us

from eventsource_kafka import records
from eventsource_kafka.client import record_size
from eventsource_kafka.connection import ENVELOPE_SLACK

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import Expected, NewEvent

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.streams import Streams
    from eventsource_kafka.tails import Slot, Tails


def stored(stream_id: str, slot: Slot, events: Sequence[NewEvent]) -> list[RecordedEvent | None]:
    """What the dedup window holds under each event id (accepted records only)."""
    out: list[RecordedEvent | None] = []
    for e in events:
        s = slot.window.get(e.event_id)
        out.append(
            None
            if s is None
            else RecordedEvent(
                event_id=e.event_id,
                stream_id=stream_id,
                event_type=e.event_type,
                version=s.version,
                position=s.position,
                data=b"",
                metadata=b"",
                encoding="",
                timestamp=from_us(s.ts_us),
            )
        )
    return out


def _gone(view: dict[str, dict[str, Any]], stream_id: str, topic: str) -> bool:
    """Whether the metadata ``view`` no longer shows ``topic`` as the stream's incarnation (deleted or re-created)."""
    current = view.get(stream_id)
    return current is None or current["topic"] != topic


class Appender:
    """The append path: idempotency, the expected-version check, one produce, and its settling."""

    def __init__(self, conn: Connection, tails: Tails, streams: Streams) -> None:
        self.conn = conn
        self.tails = tails
        self.streams = streams

    async def _produce(
        self,
        topic: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        live: int | asyncio.Future[int] | None,
        stream_id: str,
    ) -> tuple[int | None, dict[str, dict[str, Any]] | None]:
        """Produce one record; returns its offset (``None``: not produced) and the metadata view ``live`` vouches for.

        When the producer lost the topic's metadata (a refresh after another process deleted it), it
        would wait for it until the request timeout: then the check ``live`` may answer first that the
        incarnation is dead, and the produce is abandoned (whatever the producer still sends goes to an
        incarnation no reader looks at, and is never acknowledged).
        """
        io, views = self.conn.io, self.tails.views
        if live is None or io.knows(topic):
            return await io.produce(topic, value, headers=headers), None
        produced = asyncio.ensure_future(io.produce(topic, value, headers=headers))
        looked = asyncio.ensure_future(views.meta_at(live))
        try:
            await asyncio.wait((produced, looked), return_when=asyncio.FIRST_COMPLETED)
            if not produced.done() and _gone(await looked, stream_id, topic):
                produced.cancel()
                with contextlib.suppress(BaseException):
                    await produced
                return None, await looked
            return await produced, await looked
        except BaseException:
            produced.cancel()
            looked.cancel()
            raise

    async def _found_dead(self, live: int | asyncio.Future[int], stream_id: str, topic: str) -> bool:
        """Whether the check ``live`` finds the incarnation ``topic`` gone (``False`` when the check fails too)."""
        try:
            return _gone(await self.tails.views.meta_at(live), stream_id, topic)
        except Exception:  # noqa: BLE001 - the caller raises the produce's own error instead
            return False

    async def append(  # noqa: C901, PLR0912, PLR0915 - every outcome of the version race in one place
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Check idempotency and the expected version, produce one envelope record, and learn whether it won.

        Without a lease, the check runs against what this process knows of the stream (refreshed when
        it disagrees), and the log decides: the first record carrying the next version wins
        (:func:`records.accepts`); a record that lost is never visible, and the append reports
        :class:`ConcurrencyError` (or, for ``ANY``, tries again at the new tail).
        """
        conn = self.conn
        slot = conn.ns.slot(stream_id)
        mark = self.tails.views.mark()  # a metadata check sent after this may answer for this append
        async with conn.exclusive(stream_id) as leased:
            # a stream this process last saw missing may have been created elsewhere since: an append
            # that would create it always looks first (creating beside a live incarnation hid its events)
            fresh = leased or not slot.loaded or slot.topic is None
            if fresh:
                meta = await self.tails.refresh(stream_id, slot)
            else:
                meta = conn.ns.meta.get(stream_id)
            while True:
                if not fresh and ((slot.topic and meta is None) or (meta is not None and meta["topic"] != slot.topic)):
                    meta, fresh = await self.tails.refresh(stream_id, slot), True  # deleted or re-created meanwhile
                found = stored(stream_id, slot, events)
                # an answer from the window acknowledges too: only from an incarnation the metadata showed live
                # after this append began (another process may have deleted it, and its event ids with it)
                if (
                    not fresh
                    and any(s is not None for s in found)
                    and _gone(await self.tails.views.meta_at(self.tails.views.check(mark)), stream_id, slot.topic or "")
                ):
                    meta, fresh = await self.tails.refresh(stream_id, slot), True
                    continue
                dup = check_duplicate(stream_id, events, found)
                if dup is not None:
                    return dup
                # a stream an earlier attempt of this very append created (its write then failed) still counts as new
                created_by_this = meta is not None and slot.version == 0 and meta.get("creator") == events[0].event_id
                try:
                    check_expected(
                        stream_id, expected, exists=meta is not None and not created_by_this, version=slot.version
                    )
                except ConcurrencyError:
                    if fresh:
                        raise
                    # what this process knows may be stale (another process wrote): look again, then decide
                    meta, fresh = await self.tails.refresh(stream_id, slot), True
                    continue
                first_version = slot.version + 1
                first_position = max(now_us(), slot.last_position + 1)
                value, headers = records.encode_events(stream_id, events, first_version, first_position)
                # checked before anything is created, headers included (one ``vx-event-id`` per event: a
                # batch of many small events can be twice its value's size, and the producer refuses it)
                size = record_size(value, headers)
                if size > conn.max_record_bytes + ENVELOPE_SLACK // 2:
                    msg = f"the append is {size} bytes as one record; the limit is {conn.max_record_bytes}"
                    raise ValidationError(msg, field="events", size=size, limit=conn.max_record_bytes)
                if meta is None:
                    attrs = stream or NewStream(stream_id=stream_id)
                    meta, created = await self.streams.create(
                        attrs, slot, to_us(events[0].timestamp), creator=events[0].event_id
                    )
                    if not created:  # joined another process's creation: learn what it wrote, check again
                        meta, fresh = await self.tails.refresh(stream_id, slot), True
                        continue
                # Without a fresh look at the metadata in this append, the incarnation this process knows
                # may have been deleted by another process long ago, and Tansu accepts a produce to a
                # deleted topic (it creates it again, where no reader looks): beside the produce, look
                # whether the metadata topic changed at some moment after this append began (one
                # ListOffsets sent after it, shared with concurrent appends; the view is read only if it
                # did), and never answer from a dead incarnation (docs/internals/kafka.md)
                live = None if fresh else self.tails.views.check(mark)
                try:
                    offset, view = await self._produce(meta["topic"], value, headers, live, stream_id)
                    won = False  # not produced: the check found the incarnation dead (handled just below)
                    if offset is not None:
                        won = await self.tails.settle(slot, meta["topic"], value, offset)
                except Exception:
                    slot.loaded = False  # the record may have been written: re-read the tail next time
                    # a produce that failed (the producer lost a deleted topic's metadata, and the record
                    # expired) into an incarnation the check finds dead is no timeout: decide as below
                    if live is None or not await self._found_dead(live, stream_id, meta["topic"]):
                        raise
                    dead = True
                except BaseException:
                    slot.loaded = False
                    raise
                else:
                    try:
                        dead = live is not None and _gone(
                            view if view is not None else await self.tails.views.meta_at(live), stream_id, meta["topic"]
                        )
                    except BaseException:
                        slot.loaded = False
                        raise
                if dead:
                    # deleted (and maybe created again) by another process before this append: what it
                    # wrote went with that incarnation, won or lost there (and what the tail learnt there
                    # is void); check again against the stream as it is now
                    meta, fresh = await self.tails.refresh(stream_id, slot), True
                    continue
                if won:
                    n = len(events)
                    return AppendResult(
                        stream_id=stream_id,
                        first_version=first_version,
                        last_version=first_version + n - 1,
                        positions=tuple(range(first_position, first_position + n)),
                        event_ids=tuple(e.event_id for e in events),
                        timestamp=in_utc(events[0].timestamp),  # as reads give it
                    )
                # another process's record took this version first: ours is ignored by every reader.
                # The winner may be this very append (a client's retry after a lost reply, reaching a
                # process whose tail predated the original): settling applied it to the window, so an
                # identical retry is answered as one, never as a conflict
                dup = check_duplicate(stream_id, events, stored(stream_id, slot, events))
                if dup is not None:
                    return dup
                if expected not in (ExpectedVersion.ANY, ExpectedVersion.STREAM_EXISTS):
                    shown = expected.name if isinstance(expected, ExpectedVersion) else int(expected)
                    msg = (
                        f"stream {stream_id!r}: another writer appended version {first_version} first "
                        f"(expected version {shown}, actual version {slot.version})"
                    )
                    raise ConcurrencyError(msg, stream_id=stream_id, expected=shown, actual=slot.version)
                meta, fresh = await self.tails.refresh(stream_id, slot), True
