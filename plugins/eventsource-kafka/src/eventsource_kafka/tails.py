"""The tail of a stream as this process knows it, and the two ways it is brought up to date.

A :class:`Slot` holds a stream's version, last position, next offset to read and the window of recent
event ids (idempotent retries); :meth:`Slot.see` applies one record by the one rule of
:func:`records.accepts <eventsource_kafka.records.accepts>`. :meth:`Tails.refresh` reads the stream's
topic from where this process stopped to the high watermark; :meth:`Tails.settle` reads up to a record
just produced and says whether it won its version. Both run with the slot's lock held.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsource_kafka import records
from eventsource_kafka.markers import start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.views import Views


class SlotLock:
    """A per-stream lock usable from any event loop or thread (a thread lock acquired without blocking)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold the lock, polling with a growing back-off (never blocking the event loop)."""
        delay = 0.0002
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
        try:
            yield
        finally:
            self._lock.release()


@dataclass(slots=True)
class Seen:
    """Where an event id of the dedup window was stored."""

    version: int
    position: int
    ts_us: int
    offset: int  # of the record holding the event
    before: int  # the stream's version before that record (what a reader starting there must know)


@dataclass(slots=True)
class Slot:
    """What this process knows about one stream's tail (shared by every provider instance)."""

    lock: SlotLock = field(default_factory=SlotLock)
    marker_lock: SlotLock = field(default_factory=SlotLock)  # retention markers: one change at a time
    loaded: bool = False
    topic: str | None = None
    version: int = 0
    last_position: int = 0
    next_offset: int = 0
    last_event_id: str | None = None
    last_ts_us: int | None = None
    window: collections.OrderedDict[str, Seen] = field(default_factory=collections.OrderedDict)
    appends: collections.deque[list[str]] = field(default_factory=collections.deque)  # the window's ids, by append
    types: dict[str, int] = field(default_factory=dict)  # accepted events applied here, by type (stats)
    types_from: int = -1  # the offset this tail's type counts start at (0: every record of the topic)
    made: str | None = None  # a topic this process created for the stream, before its create record was seen

    def reset(self, topic: str | None) -> None:
        """Forget the tail: the stream now lives in ``topic`` (``None``: it does not exist)."""
        self.topic = topic
        self.version = 0
        self.last_position = 0
        self.next_offset = 0
        self.last_event_id = None
        self.last_ts_us = None
        self.window.clear()
        self.appends.clear()
        self.types.clear()
        self.types_from = -1
        self.made = None
        self.loaded = topic is None

    def see(self, value: bytes, offset: int, window: int) -> bool:
        """Apply the record at ``offset`` (the next one after ``next_offset``); returns whether it is accepted."""
        ids: list[str] = []
        rows = records.peek_rows(value)
        accepted = bool(rows) and records.accepts(self.version, rows[0][2])
        if self.types_from < 0:
            self.types_from = offset
        for row in rows if accepted else ():  # a record that lost its version (or a repeat) is ignored whole
            self.types[row[1]] = self.types.get(row[1], 0) + 1
            version = row[2]
            self.version = version
            self.last_position = row[3]
            self.last_event_id = row[0]
            self.last_ts_us = row[4]
            self.window[row[0]] = Seen(version, row[3], row[4], offset, rows[0][2] - 1)
            ids.append(row[0])
        if ids:
            self.appends.append(ids)
        # whole appends leave the window, oldest first, and the latest always stays: an identical retry of
        # any append still in it is recognised whole, never half (which would look like a conflict)
        while len(self.window) > window and len(self.appends) > 1:
            for event_id in self.appends.popleft():
                self.window.pop(event_id, None)
        self.next_offset = max(self.next_offset, offset + 1)
        return accepted


class Tails:
    """Reads of a stream's topic that bring its :class:`Slot` up to date (call with the slot's lock held)."""

    def __init__(self, conn: Connection, views: Views) -> None:
        self.conn = conn
        self.views = views

    async def refresh(
        self, stream_id: str, slot: Slot, *, meta_too: bool = True, or_gone: bool = False
    ) -> dict[str, Any] | None:
        """Bring ``slot`` up to the stream's high watermark (call with the slot's lock held).

        ``or_gone``: a topic found deleted (the view still names it) raises
        :class:`~eventsource_kafka.fetching.TopicGoneError` instead of reading as empty.
        """
        meta = (await self.views.meta()).get(stream_id) if meta_too else self.conn.ns.meta.get(stream_id)
        topic = meta["topic"] if meta else None
        if topic != slot.topic:
            slot.reset(topic)
        if topic is None:
            slot.loaded = True
            return None
        # from where this process stopped (a new slot: from the topic's first record; the rule that
        # decides which records count needs every record before them), to the end seen now
        window = self.conn.settings["dedup_window"]
        if meta and slot.next_offset == 0 and slot.version == 0:  # new here: from the first record a reader may need
            slot.next_offset, slot.version = start(meta)
        begin = slot.next_offset
        end: int | None = None
        while True:
            recs, pos, at_end, end = await self.conn.io.read_page(
                topic, begin, stop=end, one_fetch=True, or_gone=or_gone
            )
            for r in recs:
                if r.offset >= slot.next_offset:
                    slot.see(r.value, r.offset, window)
            begin = max(begin, pos)
            if at_end:
                break
        slot.next_offset = max(slot.next_offset, begin)
        slot.loaded = True
        return meta

    async def settle(self, slot: Slot, topic: str, value: bytes, offset: int) -> bool:
        """Whether our record at ``offset`` won its version (call with the slot's lock held).

        Applies every record from where this process stopped up to ours, by the one rule
        (:func:`records.accepts`). When nothing landed in between (the usual case) no read is needed.
        """
        window = self.conn.settings["dedup_window"]
        if offset == slot.next_offset:
            return slot.see(value, offset, window)
        if offset < slot.next_offset:  # already applied (cannot happen under the slot lock; never guess)
            rows = records.peek_rows(value)
            seen = slot.window.get(rows[0][0])
            return seen is not None and seen.offset == offset
        won = False
        begin = slot.next_offset
        while begin <= offset:
            recs, pos, at_end = await self.conn.io.read(topic, begin, stop=offset + 1, one_fetch=True)
            for r in recs:
                if r.offset >= slot.next_offset:
                    accepted = slot.see(r.value, r.offset, window)
                    if r.offset == offset:
                        won = accepted
            begin = max(begin, pos)
            if at_end:
                break
        if begin <= offset:  # the topic is gone (deleted meanwhile): what we wrote went with it
            slot.loaded = False
            return False
        return won
