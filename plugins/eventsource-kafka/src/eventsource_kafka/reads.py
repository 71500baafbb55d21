"""Reads: one stream forward or backwards, every stream merged by position, and an event by id.

A stream is read from its topic a fetch at a time, applying the one rule of
:func:`records.accepts <eventsource_kafka.records.accepts>` (records that lost their version, and
repeats, are dropped) and the retention markers (:mod:`~eventsource_kafka.markers`), so memory stays
O(page) whatever the stream's size; a read from a version starts at the furthest resume point an earlier
read of the topic left below it (:meth:`Reader.begin`). ``read_all`` is ``per_stream``: each stream in version order,
streams merged by position (append time). The provider's page views are built on these record
iterators; nothing else reads event records.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import collections
import contextlib
import heapq
from typing import TYPE_CHECKING, Any

from eventsource_kafka import records
from eventsource_kafka.markers import Visibility, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource.model import RecordedEvent
    from eventsource.provider import Provider

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.views import Views

_PREFETCH_PAGE_BYTES = 320 * 1024
"""Fetch the next page of a scan ahead only after pages up to this size (bounded memory for big records)."""
RESUME_TOPICS = 1024
"""Topics whose resume points a reader keeps (the most recently read)."""
RESUME_POINTS = 64
"""Resume points kept per topic (the furthest into it)."""


def _continues(rec: Any, offset: int, last: int) -> bool:
    """Whether ``rec``, the first record read from a resume point ``(offset, last)``, is the record that follows it.

    Any other (records deleted there, a topic made again by a broker that lost its data, a record that lost its
    version) sends the scan back to the stream's start, which is always right.
    """
    if rec.offset != offset:
        return False
    rows = records.peek_rows(rec.value)
    return bool(rows) and rows[0][2] == last + 1


class Reader:
    """Record iterators over stream topics, and the lookup of an event by id."""

    def __init__(self, conn: Connection, views: Views, store: Provider) -> None:
        self.conn = conn
        self.views = views
        self.store = store  # the provider: a lookup by id reads a version range through its contract
        # topic -> resume points (offset, version accepted before it), by offset: where a scan may start
        self._resume: collections.OrderedDict[str, list[tuple[int, int]]] = collections.OrderedDict()

    def begin(self, meta: dict[str, Any], from_version: int) -> tuple[int, int]:
        """Where a scan of the stream for ``from_version`` on may start: (offset, version accepted before it).

        The furthest of the stream's start (:func:`~eventsource_kafka.markers.start`) and the resume points
        earlier scans of its topic left (after each fetch) with every record before them below ``from_version``.
        The rule of :func:`records.accepts` only looks back at that version, so a scan started there reads the
        same events as one from the first record; without this a one-stream subscription, which reads each page
        from its last version, read its whole stream for every page.
        """
        first = start(meta)
        points = self._resume.get(meta["topic"])
        if not points:
            return first
        i = bisect.bisect_right(points, from_version - 1, key=lambda pt: pt[1]) - 1  # the last one below it
        return points[i] if i >= 0 and points[i][0] > first[0] else first

    def _remember(self, topic: str, offset: int, last: int) -> None:
        """A scan decoded every record of ``topic`` before ``offset``; ``last`` is the version accepted last."""
        points = self._resume.get(topic)
        if points is None:
            points = self._resume[topic] = []
            while len(self._resume) > RESUME_TOPICS:
                self._resume.popitem(last=False)
        else:
            self._resume.move_to_end(topic)
        i = bisect.bisect_left(points, offset, key=lambda pt: pt[0])
        if i < len(points) and points[i][0] == offset:
            return
        points.insert(i, (offset, last))
        if len(points) > RESUME_POINTS:
            del points[0]

    async def stream_meta(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's metadata record, the view brought up to date first."""
        return (await self.views.meta()).get(stream_id)

    async def scan(  # noqa: C901, PLR0912 - one forward scan with its stop rules
        self,
        stream_id: str,
        meta: dict[str, Any],
        *,
        from_version: int = 1,
        first: tuple[asyncio.Future[Any], tuple[int, int]] | None = None,
    ) -> AsyncIterator[RecordedEvent]:
        """Visible events of a stream in version order (repeated records dropped), a fetch at a time.

        Each read returns what one fetch response delivered (at most ~256 KiB, or one record however
        large), so memory stays O(page) whatever the events per record; its records are decoded one at a
        time as their events are handed out. While a page of small records is being consumed, the next
        one is already being fetched (at most two pages held). It starts at :meth:`begin` (a resume point
        an earlier scan left, or the stream's start). ``first``: an already started read of the first page, with
        where it starts (offset, version before it).
        """
        topic = meta["topic"]
        vis = Visibility(meta)
        pending: asyncio.Future[Any] | None
        if first is not None:
            pending, (offset, last) = first
        else:
            offset, last = self.begin(meta, from_version)
            pending = asyncio.ensure_future(self.conn.io.read_page(topic, offset, one_fetch=True))
        resume: tuple[int, int] | None = None  # the record of the last event handed out, and the version before it
        check = (offset, last) != start(meta)  # from a resume point: the record there must be the one it named
        try:
            while pending is not None:
                # ``end``: where the log ended when the first page was fetched; later pages stop there
                recs, pos, at_end, end = await pending
                pending = None
                if check:
                    check = False
                    if recs and not _continues(recs[0], offset, last):  # a log that is not the one it was taken on
                        self._resume.pop(topic, None)
                        offset, last = start(meta)
                        pending = asyncio.ensure_future(self.conn.io.read_page(topic, offset, one_fetch=True))
                        continue
                if recs and not at_end:
                    size = sum(len(r.value or b"") for r in recs)
                    if size <= _PREFETCH_PAGE_BYTES:
                        pending = asyncio.ensure_future(self.conn.io.read_page(topic, pos, stop=end, one_fetch=True))
                recs.reverse()
                while recs:  # decoded as they are handed out: a scan left early decodes no more than it used
                    rec = recs.pop()
                    evs = records.decode_events(stream_id, rec.value)
                    if evs and records.accepts(last, evs[0].version):  # the one rule: see records.accepts
                        at = (rec.offset, last)
                        last = evs[-1].version
                        for e in evs:
                            if e.version >= from_version and (vis.trivial or vis.visible(e)):
                                resume = at
                                yield e
                    del evs, rec
                resume = None
                self._remember(topic, pos, last)  # every record before ``pos`` was decoded
                if at_end:
                    return
                if pending is None:
                    pending = asyncio.ensure_future(self.conn.io.read_page(topic, pos, stop=end, one_fetch=True))
        finally:
            if resume is not None:  # left mid-page: the next read of the stream may start at that record
                self._remember(topic, *resume)
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def stream_records(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Events of one stream from its topic, paged; backwards reads pages from the end."""
        cached = self.conn.ns.meta.get(stream_id)
        first = None
        at = None if cached is None or backwards else self.begin(cached, from_version)
        if cached is not None and at is not None:  # fetch the first page while the metadata catches up
            first = asyncio.ensure_future(self.conn.io.read_page(cached["topic"], at[0], one_fetch=True))
        try:
            meta = await self.stream_meta(stream_id)
        except BaseException:
            if first is not None:
                first.cancel()
            raise
        if first is not None and (
            meta is None or cached is None or meta["topic"] != cached["topic"] or start(meta) != start(cached)
        ):
            first.cancel()  # the stream was deleted or re-created elsewhere
            with contextlib.suppress(BaseException):
                await first
            first = None
        if meta is None:
            return
        if not backwards:
            started = None if first is None or at is None else (first, at)
            async for e in self.scan(stream_id, meta, from_version=from_version, first=started):
                if to_version is not None and e.version > to_version:
                    return
                yield e
            return
        async for e in self._scan_backwards(stream_id, meta, from_version, to_version, page_size):
            yield e

    async def _scan_backwards(  # noqa: C901 - one backward scan with its stop rules
        self, stream_id: str, meta: dict[str, Any], from_version: int, to_version: int | None, page_size: int
    ) -> AsyncIterator[RecordedEvent]:
        """Visible events from the end, a page of records at a time.

        Which records make up the stream is only known reading forward (:func:`records.accepts`), so a
        first pass reads the envelopes' rows forward and keeps the offsets of the records in range
        (eight bytes each); the second reads those records back, last page first.
        """
        topic = meta["topic"]
        vis = Visibility(meta)
        wanted = array.array("q")
        begin, last = start(meta)
        end: int | None = None
        while True:
            recs, pos, at_end, end = await self.conn.io.read_page(topic, begin, stop=end, one_fetch=True)
            for r in recs:
                rows = records.peek_rows(r.value)
                if rows and records.accepts(last, rows[0][2]):
                    last = rows[-1][2]
                    if last >= from_version and (to_version is None or rows[0][2] <= to_version):
                        wanted.append(r.offset)
            begin = pos
            if at_end:
                break
        hi = len(wanted)
        while hi > 0:
            lo = max(0, hi - page_size)
            keep = set(wanted[lo:hi])
            recs, _, _ = await self.conn.io.read(topic, wanted[lo], stop=wanted[hi - 1] + 1)
            page = [e for r in recs if r.offset in keep for e in records.decode_events(stream_id, r.value)]
            for e in reversed(page):
                if to_version is not None and e.version > to_version:
                    continue
                if e.version < from_version:
                    return
                if vis.visible(e):
                    yield e
            hi = lo

    async def all_records(self, *, from_position: int = 0) -> AsyncIterator[RecordedEvent]:
        """Every stream in version order, merged by position (append time); ``per_stream`` guarantee.

        Each stream is read a fetch at a time (~256 KiB, see :meth:`scan`), whatever the page size.
        """
        metas = dict(await self.views.meta())
        ids = sorted(metas)
        if not ids:
            return
        iters = [self.scan(sid, metas[sid]).__aiter__() for sid in ids]
        heap: list[tuple[int, int, RecordedEvent]] = []
        try:

            async def advance(i: int) -> None:
                async for e in iters[i]:
                    if e.position >= from_position:
                        heapq.heappush(heap, (e.position, i, e))
                        return

            for i in range(len(iters)):
                await advance(i)
            while heap:
                _, i, e = heapq.heappop(heap)
                yield e
                await advance(i)
        finally:
            for it in iters:
                await it.aclose()  # type: ignore[attr-defined]

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look in the stream (or every stream: a scan of the store) for the event id.

        Ids appended through this process are found from the per-stream window first.
        """
        metas = await self.views.meta()
        if stream_id is not None:
            candidates = [stream_id] if stream_id in metas else []
        else:
            known = [sid for sid, slot in list(self.conn.ns.slots.items()) if event_id in slot.window and sid in metas]
            candidates = known + [sid for sid in sorted(metas) if sid not in known]
        for sid in candidates:
            meta = metas.get(sid)
            if meta is None:
                continue
            seen = self.conn.ns.slot(sid).window.get(event_id)
            if seen is not None and self.conn.ns.slot(sid).topic == meta["topic"]:
                async for e in self.store.read_stream(sid, from_version=seen.version, to_version=seen.version):
                    if e.event_id == event_id:
                        return e
            async for e in self.scan(sid, meta):
                if e.event_id == event_id:
                    return e
        return None
