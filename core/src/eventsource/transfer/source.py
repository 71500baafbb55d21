"""What a transfer reads: a store's streams, its events in global order a page at a time, then its snapshots.

A source is one pass over three kinds of item, in this order: every :class:`StreamInfo`, pages of
:class:`RecordedEvent` (the store's global order, payloads as stored), then every :class:`RecordedSnapshot`.
:class:`ProviderSource` reads them from a store through the provider contract; the export reader
(:mod:`eventsource.transfer.jsonl`) reads the same items from a file.
"""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING

from eventsource.errors import CodecError, ProviderTimeoutError
from eventsource.model import RecordedEvent, RecordedSnapshot, RowPage, StreamInfo
from eventsource.provider import Provider
from eventsource.rows import RECORD_FIELDS, check_snapshot, malformed, row_problem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence


def check_provider(obj: object, role: str, call: str) -> None:
    """Refuse anything but a provider (a manager, say) before any work, naming what to pass instead."""
    if not isinstance(obj, Provider):
        msg = (
            f"{call}: {role} must be a connected Provider, not {type(obj).__name__}"
            " (from a manager, pass es.get_provider() or es.get_provider(name))"
        )
        raise TypeError(msg)


@dataclass(frozen=True, slots=True)
class Step:
    """How far a source is in a phase that yields no events: ``streams`` listed, or looked at for ``snapshots``.

    Not written anywhere: the transfer reports it as progress (a store of many streams spends minutes there).
    """

    phase: str
    done: int
    total: int | None = None


Item = StreamInfo | list[RecordedEvent] | RecordedSnapshot | Step
"""One item of a source: a stream, a page of events, a snapshot, or a progress step."""

LIST_PAGE = 500
"""Streams listed per ``list_streams`` call."""
STEP_EVERY = 100
"""Streams between two :class:`Step` items (listed, or looked at for snapshots)."""


class StreamFilter:
    """Which streams a transfer takes: shell-style patterns (``order-*``); none means every stream."""

    def __init__(self, patterns: Sequence[str] | None = None) -> None:
        self.patterns = tuple(patterns or ())

    def __call__(self, stream_id: str) -> bool:
        """Whether ``stream_id`` is taken."""
        return not self.patterns or any(fnmatch.fnmatchcase(stream_id, p) for p in self.patterns)


def page_records(page: Sequence[RecordedEvent] | RowPage) -> list[RecordedEvent]:
    """A provider page as records (a :class:`RowPage`'s rows converted).

    A record holding a value of another type (another tool wrote it into the store) is a :class:`CodecError`
    naming it, before any of the page is moved: payloads travel as stored, so nothing else would look.
    """
    records = page.records() if isinstance(page, RowPage) else list(page)
    for rec in records:
        row = _as_row(rec)
        problem = row_problem(row)
        if problem is not None or not isinstance(rec.timestamp, datetime):
            raise malformed(row, problem or f"its timestamp is {type(rec.timestamp).__name__}, not a datetime")
    return records


_as_row = attrgetter(*RECORD_FIELDS)


async def list_all_streams(provider: Provider, wanted: StreamFilter) -> AsyncIterator[StreamInfo]:
    """Every stream ``wanted`` takes, in stream-id order, a page of :data:`LIST_PAGE` at a time."""
    after: str | None = None
    while True:
        page, _total = await provider.list_streams(limit=LIST_PAGE, offset=0, after=after)
        for info in page:
            if wanted(info.stream_id):
                _check_stream(info)
                yield info
        if len(page) < LIST_PAGE:
            return
        after = page[-1].stream_id


def _check_stream(info: StreamInfo) -> None:
    """Refuse a stream holding a value of another type (another tool wrote it into the store): :class:`CodecError`."""
    for name in ("version", "event_count", "first_version", "name", "aggregate_id", "aggregate_type", "last_event_id"):
        value = getattr(info, name)
        want = "an integer" if name in ("version", "event_count", "first_version") else "text"
        if value is None and name not in {"version", "event_count"}:
            continue
        if isinstance(value, bool) or not isinstance(value, int if want == "an integer" else str):
            msg = (
                f"stream {info.stream_id!r} is stored malformed: its {name} is {type(value).__name__}, not {want} "
                "(written by another tool?)"
            )
            raise CodecError(msg, stream_id=info.stream_id)


async def snapshots_of(provider: Provider, stream_id: str) -> list[RecordedSnapshot]:
    """Every snapshot of ``stream_id``, oldest version first (walked down through ``get_snapshot``)."""
    found: list[RecordedSnapshot] = []
    below: int | None = None
    while below is None or below > 0:
        snap = await provider.get_snapshot(stream_id, max_version=below)
        if snap is None:
            break
        check_snapshot(snap)
        found.append(snap)
        below = snap.version - 1
    found.reverse()
    return found


def _reached(unread: dict[str, int], records: list[RecordedEvent]) -> None:
    """Drop from ``unread`` (stream id -> listed version) the streams whose listed version ``records`` reach."""
    for rec in records:
        if unread.get(rec.stream_id, rec.version + 1) <= rec.version:
            del unread[rec.stream_id]


class ProviderSource:
    """The items of a store (see the module docstring), read through the provider contract.

    :param provider: a connected provider.
    :param streams: shell-style stream id patterns (none: every stream).
    :param page_size: events per page of the global read.
    :param from_position: where the global read starts (a resumed copy's cursor + 1).
    :param copied: the highest version of a stream an earlier run copied (a copy's position map), so a resumed
        copy does not look up the streams it finished before its cursor one by one.
    :param as_listed: each stream as it was when listed (an export, whose stream lines must match its events):
        events appended to it later, and streams created later, are left out. Otherwise (a copy) every event
        read is taken, and a stream created after the listing is yielded before its first events.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        streams: Sequence[str] | None = None,
        page_size: int = 500,
        from_position: int = 0,
        as_listed: bool = False,
        copied: Callable[[str], int] | None = None,
    ) -> None:
        self.provider = provider
        self.wanted = StreamFilter(streams)
        self.page_size = page_size
        self.from_position = from_position
        self.as_listed = as_listed
        self.copied = copied
        self.listed_events: int | None = None
        """The listed streams' events, once listed (:meth:`total_events`)."""

    async def total_events(self) -> int | None:
        """How many events the transfer will read, for a progress estimate (``None`` when unknown).

        The sum of the listed streams' event counts (exact on every store, unlike a store's statistics: NATS
        counts messages, several events each), so known once :meth:`items` has listed them. Unknown for a
        resumed copy (it reads only what came after its cursor).
        """
        return None if self.from_position > 0 else self.listed_events

    async def _created_since(self, records: list[RecordedEvent], top: dict[str, int]) -> list[StreamInfo]:
        """The streams of ``records`` the listing did not show (created since), now in ``top``."""
        found: list[StreamInfo] = []
        for sid in dict.fromkeys(r.stream_id for r in records if r.stream_id not in top):
            info = await self.provider.get_stream_info(sid)
            top[sid] = 0
            if info is not None:
                found.append(info)
        return found

    async def items(self) -> AsyncIterator[Item]:
        """Streams, then event pages in global order, then the snapshots of the streams taken (with :class:`Step`s).

        The global read ends at the last event the store held once its streams were listed (its head position):
        a store written to faster than it is read would never be done; a re-run of a copy takes what came since.
        A snapshot beyond the highest version taken of its stream (saved after the read passed) is left out.
        """
        provider = self.provider
        top: dict[str, int] = {}  # stream id -> the highest version taken (as listed, or as read)
        unread: dict[str, int] = {}  # stream id -> its listed version, until the read reaches it
        listed = 0
        async for info in list_all_streams(provider, self.wanted):
            top[info.stream_id] = info.version
            if info.version > 0:
                unread[info.stream_id] = info.version
            listed += info.event_count
            yield info
            if len(top) % STEP_EVERY == 0:
                yield Step("streams", len(top))
        self.listed_events = listed
        yield Step("streams", len(top))
        until = await provider.head_position()
        pages = provider.read_all_pages(from_position=self.from_position, page_size=self.page_size)
        async with contextlib.aclosing(pages):  # type: ignore[type-var]
            async for page in pages:
                got = page_records(page)
                end = until is not None and bool(got) and got[-1].position >= until
                if end:
                    got = [r for r in got if r.position <= until]  # type: ignore[operator]
                _reached(unread, got)
                async for item in self._taken(got, top):
                    yield item
                if end:
                    break
        await self._check_read(unread, until)
        async for item in self._snapshots(top):
            yield item

    async def _check_read(self, unread: dict[str, int], until: int | None) -> None:
        """Refuse to go on when the global read ended before an event the listing showed (at its listed version).

        PostgreSQL's read stops at the oldest transaction still running (after ``visibility_wait``): one that
        began before the copy and runs on, in any database of the server, holds back every event committed
        after it began. The read then ends as if the store held nothing more. An event read by an earlier run
        (before ``from_position``), deleted since, or written after the head (its stream re-created) is fine.
        """
        for stream_id, version in unread.items():
            if self.copied is not None and self.copied(stream_id) >= version:
                continue
            rows = self.provider.read_stream(stream_id, from_version=version, to_version=version, page_size=1)
            async with contextlib.aclosing(rows) as found:  # type: ignore[type-var]
                rec = await anext(found, None)
            if rec is None or rec.position < self.from_position or (until is not None and rec.position > until):
                continue
            msg = (
                f"the source's global read ended before events it listed (stream {stream_id!r} version {version}, "
                f"at position {rec.position}): a transaction running on the source's server since before the read "
                "(PostgreSQL: any one holding a transaction id, in any database) holds back what committed after it "
                "began; what was written stays: run it again once that transaction has ended"
            )
            raise ProviderTimeoutError(msg, stream_id=stream_id, version=version, position=rec.position)

    async def _snapshots(self, top: dict[str, int]) -> AsyncIterator[Item]:
        """The snapshots of the streams taken, each at most at the highest version taken of it, with steps."""
        for done, (sid, version) in enumerate(top.items(), start=1):
            for snap in await snapshots_of(self.provider, sid):
                if snap.version <= version:
                    yield snap
            if done % STEP_EVERY == 0 or done == len(top):
                yield Step("snapshots", done, len(top))

    async def _taken(self, page: list[RecordedEvent], top: dict[str, int]) -> AsyncIterator[Item]:
        """The events of ``page`` the copy or export takes, after the streams among them the listing did not show."""
        records = [r for r in page if self.wanted(r.stream_id)]
        if self.as_listed:
            records = [r for r in records if r.version <= top.get(r.stream_id, 0)]
        for info in await self._created_since(records, top):
            yield info
        for rec in records:
            top[rec.stream_id] = max(top[rec.stream_id], rec.version)
        if records:
            yield records
