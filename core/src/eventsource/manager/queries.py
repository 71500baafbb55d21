"""Reads: event queries (filters, count modes, paging), stream listings, one event by id, and stream iteration.

:class:`Queries` validates a read's arguments, asks the provider chosen by the manager's ``get_provider``
(only after every argument is checked, as before) under the call policy, and decodes what comes back through
the event codec; with ``classes`` it puts instances of the registered event classes in ``data``. The
manager's read methods keep their signatures and docstrings and only call these.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import TYPE_CHECKING, Any

from eventsource.errors import EventNotFoundError, ProviderError
from eventsource.manager.policy import all_pages, stream_pages
from eventsource.manager.validation import (
    MAX_EVENT_ID_LENGTH,
    check_count_mode,
    check_cursor,
    check_flag,
    check_number,
    check_optional_number,
    check_paging,
    check_sort_order,
    check_text,
    event_filter,
)
from eventsource.model import GetEventsResponse, ListStreamsResponse, SortOrder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventsource.config import ManagerConfig
    from eventsource.domain.events import EventClasses
    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.model import CountMode, Event, EventFilter, GetEventsRequest, QueryPage, RecordedEvent
    from eventsource.provider import Provider

    GetProvider = Callable[[str | None], Provider]


def _before_tie(rows: list[RecordedEvent], following: int) -> list[RecordedEvent]:
    """``rows`` without the trailing ones at position ``following`` (the next row's); empty if that is all of them."""
    cut = len(rows)
    while cut > 0 and rows[cut - 1].position == following:
        cut -= 1
    return rows[:cut]


def _at(position: int | None, row: RecordedEvent) -> bool:
    return row.position == position


class Queries:
    """Read calls of one manager, through its codec and call policy."""

    __slots__ = ("codec", "config", "policy")

    def __init__(self, config: ManagerConfig, codec: EventCodec, policy: CallPolicy) -> None:
        self.config = config
        self.codec = codec
        self.policy = policy

    def stream_id(self, stream_id: object) -> str:
        """A checked stream id."""
        return check_text("stream id", stream_id, self.config.max_stream_id_length, field_name="stream_id")

    async def events(
        self, req: GetEventsRequest, get_provider: GetProvider, classes: EventClasses | None
    ) -> GetEventsResponse:
        """One page of the events matching ``req`` (see :meth:`EventSourcingManager.get_events`)."""
        check_paging(req.limit, req.offset)
        descending = check_sort_order(req.sort_order) is SortOrder.DESC
        flt = event_filter(req, self.config.max_stream_id_length)
        if flt.event_types is not None and self.codec.chain.events.types:  # names as read: old names too
            flt = dataclasses.replace(flt, event_types=self.codec.chain.stored_types(flt.event_types))
        count = check_count_mode(req.count)
        cursor = check_optional_number("after_position", req.after_position)
        check_cursor("after_position", cursor, req.offset)
        if cursor is not None and descending:  # "after" in the page's own order
            flt = dataclasses.replace(flt, before_position=cursor)
        elif cursor is not None:
            flt = dataclasses.replace(flt, after_position=cursor)
        p = get_provider(req.provider)
        # positions of different streams may be equal on a store without one total order (Kafka): a page never
        # ends inside such a tie, or the next page (positions after its last) would pass over the rest of it
        ties = flt.stream_id is None and p.capabilities.global_order != "total"
        if count == "exact":
            n = req.limit + 1 if ties else req.limit
            page = await self.policy.run(
                p, "query", lambda: p.query(flt, limit=n, offset=req.offset, descending=descending)
            )
            rows = page.events[: req.limit]
            more = page.held_back or (page.total_count is not None and req.offset + len(rows) < page.total_count)
        else:  # no exact total to compare with: one more than the page says whether another follows
            page = await self.policy.run(
                p,
                "query",
                lambda: p.query(flt, limit=req.limit + 1, offset=req.offset, descending=descending, count=count),
            )
            rows = page.events[: req.limit]
            more = page.held_back or len(page.events) > req.limit
        if ties and len(page.events) > req.limit:
            rows = _before_tie(rows, page.events[req.limit].position)
            if not rows:  # the page lies inside one tie: it holds the whole tie (no cursor could end inside it)
                rows, page = await self._whole_tie(
                    p, flt, offset=req.offset, descending=descending, count=count, n=len(page.events)
                )
                more = (
                    page.held_back or len(page.events) > len(rows) or req.offset + len(rows) < (page.total_count or 0)
                )
        events = list(map(self.codec.decoder(), rows))
        if classes is not None:
            events = [classes.typed(e) for e in events]
        return GetEventsResponse(
            events=events,
            total_count=page.total_count,
            has_more=more,
            limit=req.limit,
            offset=req.offset,
            next_cursor=(rows[-1].position if rows else cursor) if more else None,
            total_exact=page.total_exact and page.total_count is not None,
        )

    async def _whole_tie(
        self, p: Provider, flt: EventFilter, *, offset: int, descending: bool, count: CountMode, n: int
    ) -> tuple[list[RecordedEvent], QueryPage]:
        """The rows at the first row's position from ``offset`` (read with a doubling limit), and the page read."""
        kw: dict[str, Any] = {} if count == "exact" else {"count": count}
        while True:
            n *= 2
            query = functools.partial(p.query, flt, limit=n, offset=offset, descending=descending, **kw)
            page = await self.policy.run(p, "query", query)
            at = page.events[0].position if page.events else None
            tie = list(itertools.takewhile(functools.partial(_at, at), page.events))
            if len(tie) < len(page.events) or len(page.events) < n:
                return tie, page

    async def streams(
        self, limit: int, offset: int, after: str | None, provider: str | None, get_provider: GetProvider
    ) -> ListStreamsResponse:
        """A page of streams (see :meth:`EventSourcingManager.list_streams`)."""
        check_paging(limit, offset)
        cursor = (
            None if after is None else check_text("after", after, self.config.max_stream_id_length, field_name="after")
        )
        check_cursor("after", cursor, offset)
        p = get_provider(provider)
        if cursor is None:
            streams, total = await self.policy.run(
                p, "list_streams", lambda: p.list_streams(limit=limit, offset=offset)
            )
            more = offset + len(streams) < total
        else:  # one more than the page says whether another follows (the total counts every stream)
            streams, total = await self.policy.run(
                p, "list_streams", lambda: p.list_streams(limit=limit + 1, offset=0, after=cursor)
            )
            more = len(streams) > limit
            del streams[limit:]
        nxt = streams[-1].stream_id if more and streams else None
        return ListStreamsResponse(streams=streams, total_count=total, has_more=more, next_cursor=nxt)

    async def event(
        self,
        event_id: str,
        stream_id: str | None,
        provider: str | None,
        get_provider: GetProvider,
        classes: EventClasses | None,
    ) -> Event:
        """One event by id (see :meth:`EventSourcingManager.get_event_by_id`)."""
        eid = check_text("event id", event_id, MAX_EVENT_ID_LENGTH, field_name="event_id")
        sid = self.stream_id(stream_id) if stream_id is not None else None
        p = get_provider(provider)
        rec = await self.policy.run(p, "get_event", lambda: p.get_event(eid, sid), stream=sid)
        if rec is None:
            msg = f"no event has id {eid!r}" + (f" in stream {sid!r}" if sid else "")
            raise EventNotFoundError(msg, event_id=eid)
        if rec.event_id != eid or (sid is not None and rec.stream_id != sid):  # never another event as this one
            msg = f"get_event on provider {p.name!r} ({p.kind}) was answered with another event than {eid!r}"
            raise ProviderError(msg, provider=p.name, operation="get_event")
        ev = self.codec.decode_event(rec)
        return classes.typed(ev) if classes is not None else ev

    def stream(
        self,
        stream_id: str,
        *,
        from_version: int,
        to_version: int | None,
        backwards: bool,
        page_size: int,
        provider: str | None,
        get_provider: GetProvider,
        classes: EventClasses | None,
    ) -> AsyncIterator[Event]:
        """One stream's events, a page at a time (see :meth:`EventSourcingManager.read_stream`)."""
        sid = self.stream_id(stream_id)
        from_version = check_number("from_version", from_version)
        to_version = check_optional_number("to_version", to_version)
        backwards = check_flag("backwards", backwards)
        p = get_provider(provider)
        check_paging(page_size, 0)

        source = stream_pages(p, sid, from_version, to_version, backwards=backwards, page_size=page_size)
        decode = classes.typed_pages(self.codec.decode_page) if classes is not None else self.codec.decode_page
        return self.policy.iterate(p, "read_stream", source, decode, self.codec.page_tail, stream=sid)

    def all_events(
        self,
        from_position: int,
        page_size: int,
        *,
        provider: str | None,
        get_provider: GetProvider,
        classes: EventClasses | None,
    ) -> AsyncIterator[Event]:
        """Every stream's events in global order (see :meth:`EventSourcingManager.read_all`)."""
        from_position = check_number("from_position", from_position)
        p = get_provider(provider)
        check_paging(page_size, 0)
        source = all_pages(p, from_position, page_size)
        decode = classes.typed_pages(self.codec.decode_page) if classes is not None else self.codec.decode_page
        return self.policy.iterate(p, "read_all", source, decode, self.codec.page_tail)
