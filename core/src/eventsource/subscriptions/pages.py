"""How a subscription hands out the page it holds: decoded lazily, in order, a decode failure raised or skipped.

:class:`PageDelivery` is the part of :class:`~eventsource.subscriptions.subscription.Subscription` that moves
events from its one buffered page (stored rows or records) to the consumer: one lazy ``decode_page``
iterator per page, a fast path for unfiltered pages of rows, and ``on_decode_error`` applied to an event
the codec cannot decode. :func:`first_rows` and :func:`first_page` take the first page of a page iterator.
"""

from __future__ import annotations

import collections
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    CodecError,
    ConfigurationError,
    KeyProviderError,
    KeysNotConfiguredError,
    PayloadTooLargeError,
    ProviderError,
    SchemaVersionError,
    UnknownKeyError,
)
from eventsource.model import RowPage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from eventsource.manager.codec import EventCodec
    from eventsource.model import Event, RecordedEvent
    from eventsource.subscriptions.subscription import Target

VERSION_FIELD, POSITION_FIELD = 3, 4
"""Indexes of the version and the position in a stored row (what a subscription's mark is taken from)."""

SKIPPED_KEPT = 100
"""How many skipped events a subscription remembers in ``skipped_events`` (the count is exact)."""

log = logging.getLogger("eventsource.subscriptions")


class EventDecodeError(CodecError):
    """A subscription met an event it cannot decode (unknown codec, missing key, failing upcaster...).

    The message and ``details`` name the event's position, id, stream and version; ``__cause__`` is the
    codec's error. The event stays next in line: iterating again raises again, and ``commit()`` stores
    nothing past it. ``subscribe(on_decode_error="skip")`` passes over such events and reports them instead.
    """


@dataclass(frozen=True, slots=True)
class SkippedEvent:
    """An event a subscription with ``on_decode_error="skip"`` passed over, and why."""

    position: int
    event_id: str
    stream_id: str
    version: int
    event_type: str
    error: str


def _fields(item: Any) -> tuple[str, str, str, int, int]:
    """(event id, stream id, type, version, position) of a buffered :class:`RecordedEvent` or stored row."""
    if isinstance(item, tuple):
        return item[0], item[1], item[2], item[3], item[4]
    return item.event_id, item.stream_id, item.event_type, item.version, item.position


class PageDelivery:
    """The buffered page of a subscription and its hand-out (the fields are set by ``Subscription``)."""

    target: Target
    name: str | None
    on_decode_error: str
    skipped: int
    skipped_events: collections.deque[SkippedEvent]
    _codec: EventCodec
    _buffer: list[Any]
    _at: int
    _rows: bool
    _conv: Any
    _events: Iterator[Event] | None
    _mark: int
    _since_commit: int

    def _next_decoded(self) -> Event | None:
        """The common case, the next event of an unfiltered page of rows being decoded; else ``None``."""
        at, buffer, t, events = self._at, self._buffer, self.target, self._events
        if events is None or at >= len(buffer) or t.prefixes or t.event_types:
            return None
        try:
            event = next(events)
        except Exception:  # noqa: BLE001 - the general path decodes it again, and raises or skips it
            self._events = None
            return None
        self._at = at + 1
        self._mark = buffer[at][VERSION_FIELD if t.stream_id is not None else POSITION_FIELD]
        self._since_commit += 1
        self._drained()
        return event

    def _take_buffered(self, out: list[Event], limit: int) -> None:
        """Move wanted events of the buffer to ``out`` until it holds ``limit`` (filtered records are passed).

        A record that fails to decode raises (or is skipped) with the events taken before it already in ``out``
        and the position passed. The wanted events of the page are decoded by one lazy ``decode_page``
        iterator (the codec's fast path for stored rows); a failure ends it, so the next call builds another
        from what is left. Without a filter every record is wanted, so the events are taken a slice at a time.
        """
        t = self.target
        buffer, at = self._buffer, self._at
        room = limit - len(out)
        if at >= len(buffer) or room <= 0:
            return
        field = VERSION_FIELD if t.stream_id is not None else POSITION_FIELD  # the mark: version or position
        unfiltered = not t.prefixes and not t.event_types
        if unfiltered and room > 1:
            self._take_all(out, room, field)
            return
        rows = self._rows
        wants = t.wants_fields
        append = out.append
        end = len(buffer)
        taken = 0
        try:
            while at < end and taken < room:
                item = buffer[at]
                if rows:
                    wanted = unfiltered or wants(item[1], item[2])
                    mark = item[field]
                else:
                    wanted = unfiltered or wants(item.stream_id, item.event_type)
                    mark = item.version if field == VERSION_FIELD else item.position
                event = None
                if wanted:
                    events = self._events if self._events is not None else self._decoder()
                    try:
                        event = next(events)
                    except Exception as e:  # noqa: BLE001 - an upcaster may raise anything: named and chained
                        self._events = None
                        self._failed(item, e)  # raises, leaving the item in place, or reports it (skip)
                at += 1
                self._at, self._mark = at, mark
                if event is not None:
                    append(event)
                    taken += 1
        finally:
            self._since_commit += taken
            self._drained()

    def _take_all(self, out: list[Event], room: int, field: int) -> None:
        """:meth:`_take_buffered` without a filter: up to ``room`` events decoded in one C-level loop."""
        buffer = self._buffer
        while self._at < len(buffer) and room > 0:
            at = self._at
            events = self._events if self._events is not None else self._decoder()
            before = len(out)
            try:
                out.extend(itertools.islice(events, min(room, len(buffer) - at)))
            except Exception as e:  # noqa: BLE001 - an upcaster may raise anything: named and chained
                taken = len(out) - before  # the events decoded before the failure stay handed out
                self._advance(at + taken, field, taken)
                room -= taken
                self._events = None
                self._failed(buffer[self._at], e)  # raises, leaving the item in place, or reports it (skip)
                self._advance(self._at + 1, field, 0)
                continue
            taken = len(out) - before
            self._advance(at + taken, field, taken)
            room -= taken
        self._drained()

    def _advance(self, at: int, field: int, taken: int) -> None:
        """The buffer is handed out (or passed over) up to index ``at``, ``taken`` events of it delivered."""
        if at > self._at:
            item = self._buffer[at - 1]
            if self._rows:
                self._mark = item[field]
            else:
                self._mark = item.version if field == VERSION_FIELD else item.position
            self._at = at
        self._since_commit += taken

    def _drained(self) -> None:
        """Drop a page handed out completely (its rows need not live until the next read)."""
        if self._at >= len(self._buffer):
            self._buffer, self._at, self._events = [], 0, None

    def _decoder(self) -> Iterator[Event]:
        """A lazy decoder of the buffer's wanted events, in order (the codec's fast path for a page of rows)."""
        t = self.target
        rest = self._buffer[self._at :] if self._at else self._buffer
        page: Any
        if t.prefixes or t.event_types:
            wants = t.wants_fields
            if self._rows:
                rest = [r for r in rest if wants(r[1], r[2])]
            else:
                rest = [r for r in rest if wants(r.stream_id, r.event_type)]
        page = RowPage(rest, self._conv or None) if self._rows else rest
        self._events = iter(self._codec.decode_page(page))
        return self._events

    def _failed(self, item: Any, e: Exception) -> None:
        eid, sid, etype, version, position = _fields(item)
        reason = f"{type(e).__name__}: {e}"
        # a key service that failed for a moment, or a configuration to fix (limits too low to read a payload, no
        # keys here, a ring without the key the event names, code behind the event's schema version), is no reason
        # to pass an event
        fatal = isinstance(e, _NOT_THE_EVENTS)
        if self.on_decode_error == "raise" or fatal:
            way = (
                "A key provider's or the configuration's failure is never skipped: fix it, then resume"
                if fatal
                else 'Fix the codec, key or upcaster, or subscribe with on_decode_error="skip"'
            )
            msg = (
                f"subscription {self.name or self.target.describe()!r} cannot decode the event at position "
                f"{position} (id {eid!r}, stream {sid!r} version {version}, type {etype!r}): {reason}. {way}"
            )
            raise EventDecodeError(msg, position=position, event_id=eid, stream_id=sid, version=version) from e
        self.skipped += 1
        self.skipped_events.append(SkippedEvent(position, eid, sid, version, etype, reason))
        log.warning(
            "subscription %r skipped the event at position %s (id %r, stream %r version %s): %s",
            self.name, position, eid, sid, version, reason,
        )  # fmt: skip


def report_deleted(name: str, stream_id: str, first: int, found: int) -> None:
    """Log that a one-stream subscription found version ``found`` where ``first`` was next: the rest were deleted."""
    log.warning(
        "subscription %r: versions %s to %s of stream %r were deleted (retention, truncation) before it read them; "
        "it goes on at version %s",
        name, first, found - 1, stream_id, found,
    )  # fmt: skip


_NOT_THE_EVENTS = (
    KeyProviderError,
    ConfigurationError,
    PayloadTooLargeError,
    ProviderError,
    KeysNotConfiguredError,
    UnknownKeyError,
    SchemaVersionError,
)
"""Decode failures that are the reader's (its key service, its configuration, its code), never skipped."""


async def first_rows(pages: AsyncIterator[Sequence[RecordedEvent] | RowPage]) -> tuple[Sequence[Any], Any]:
    """The first page of a page iterator as (rows, timestamp conversion) or (records, ``None``); it is closed.

    A :class:`RowPage` without a conversion gives ``False`` (its rows hold datetimes); no page: ``([], None)``.
    """
    try:
        async for page in pages:
            if isinstance(page, RowPage):
                return page.rows, (page.timestamp or False)
            return list(page), None
        return [], None
    finally:
        aclose: Any = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


async def first_page(pages: AsyncIterator[Sequence[RecordedEvent] | RowPage]) -> list[RecordedEvent]:
    """The first page of a page iterator as records (empty when it has none); the iterator is closed."""
    try:
        async for page in pages:
            return page.records() if isinstance(page, RowPage) else list(page)
        return []
    finally:
        aclose: Any = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
