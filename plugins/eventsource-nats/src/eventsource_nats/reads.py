"""Reads: one stream in version order (or reversed), the whole store in JetStream sequence order.

Messages are fetched a page at a time through an ephemeral pull consumer that starts at the first
message wanted (found by a binary search over next-by-subject gets, never a scan) and is deleted when
the iteration ends or is abandoned. A page is bounded both in events (an envelope holds many) and in
payload bytes. Events deleted out of an envelope that still holds live events are listed in the
hidden bucket and left out here; :meth:`Reader.decode_msg` is the one place that applies that list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from eventsource.errors import EventSourceError, ProviderTimeoutError

from eventsource_nats import records
from eventsource_nats.connection import cancellable, quiet
from eventsource_nats.errors import map_error
from eventsource_nats.naming import Names, position, split_position, stream_id_of, stream_token
from eventsource_nats.records import HDR_COUNT

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from eventsource.model import RecordedEvent

    from eventsource_nats.connection import Connection

PAGE_BYTES = 1024 * 1024
"""Payload bytes one read page may fetch at once (reads hold O(page) memory)."""
CONSUMER_NOT_FOUND = 10014
"""JetStream's err_code for a consumer that does not exist (any more)."""
FETCH_STEP = 1.0
"""Seconds one fetch waits before the read asks the stream's leader whether anything is left to fetch."""


def stream_id_from(subject_or_token: str, msg_body: bytes | None = None) -> str | None:
    """The stream id of a subject or token; for a hashed token, read from the first head of ``msg_body``."""
    token = subject_or_token.rsplit(".", 1)[-1]
    sid = stream_id_of(token)
    if sid is None and msg_body:
        head, _, _ = next(records.frames(msg_body))
        return str(head["s"])
    return sid


class Reader:
    """Paged reads of messages and the events they hold."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.names = conn.names

    async def consume(
        self, subject: str, start_seq: int, page_size: int, end_seq: int | None = None
    ) -> AsyncGenerator[Any, None]:
        """Messages on ``subject`` from ``start_seq`` to the end, through ephemeral pull consumers.

        ``end_seq``: the stream's last sequence when the read began (read from the leader when not given);
        every message up to it still stored is delivered. An ephemeral consumer of a replicated stream sits
        on any replica, which may not have applied the last acknowledged messages: a consumer that ends
        early while the leader still holds a message up to ``end_seq`` is replaced, and a replica that
        stays behind for ``request_timeout`` raises :class:`ProviderTimeoutError`, never a short read.
        """
        conn = self.conn
        if end_seq is None:
            end_seq = int((await conn.api(f"STREAM.INFO.{self.names.stream}"))["state"]["last_seq"])
        next_seq = max(1, start_seq)
        deadline: float | None = None
        delay = 0.02
        while True:
            async with contextlib.aclosing(self._consume_from(subject, next_seq, page_size)) as msgs:
                async for m in msgs:
                    next_seq = int(m.metadata.sequence.stream) + 1
                    deadline, delay = None, 0.02
                    yield m
            if next_seq > end_seq:
                return
            ahead = await conn.next_msg(subject, next_seq)  # leader-read on a replicated stream
            if ahead is None or int(ahead.seq) > end_seq:
                return  # the rest was removed while reading (purge, retention)
            now = time.monotonic()
            deadline = deadline or now + conn.settings["request_timeout"]
            if now >= deadline:
                msg = (
                    f"reading {subject!r}: the replica holding the read's consumer stays behind the stream's "
                    f"leader (it has not delivered sequence {int(ahead.seq)}, which the leader holds)"
                )
                raise ProviderTimeoutError(msg)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _consume_from(self, subject: str, start_seq: int, page_size: int) -> AsyncGenerator[Any, None]:
        """:meth:`consume` through ONE consumer: ends when the consumer's server has no more (it may lag)."""
        from nats.js import api

        conn = self.conn
        js = conn.require()
        cfg = api.ConsumerConfig()

        async def subscribe() -> Any:
            nonlocal cfg
            cfg = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, start_seq),
                ack_policy=api.AckPolicy.NONE,
                mem_storage=True,
                num_replicas=1,
                inactive_threshold=60.0,
            )
            return await js.pull_subscribe(subject, stream=self.names.stream, config=cfg)

        # consumer creation right after a node loss can time out while the cluster recovers: retried
        # (an ephemeral consumer created by a timed-out attempt expires after its inactive threshold)
        try:
            sub = await conn.retrying(subscribe)
        except BaseException:  # cancelled (or failed) after the server may have made the consumer: delete it
            if cfg.name:
                conn.spawn(quiet(js.delete_consumer(self.names.stream, cfg.name)))
            raise
        try:
            remaining = (await conn.retrying(sub.consumer_info)).num_pending
            per_msg_events, per_msg_bytes = 1.0, float(PAGE_BYTES)  # first fetch: one message, then adapt
            next_seq = max(1, start_seq)
            while remaining > 0:
                # a page is page_size EVENTS (an envelope holds many) and at most PAGE_BYTES of payload
                batch = int(min(remaining, max(1, page_size / per_msg_events), max(1, PAGE_BYTES / per_msg_bytes)))
                msgs = await self._fetch(sub, batch, subject, next_seq)
                if msgs is None:
                    return
                per_msg_events = max(1.0, sum(int((m.headers or {}).get(HDR_COUNT, "1")) for m in msgs) / len(msgs))
                per_msg_bytes = max(1.0, sum(len(m.data) for m in msgs) / len(msgs))
                remaining = msgs[-1].metadata.num_pending
                next_seq = int(msgs[-1].metadata.sequence.stream) + 1
                for m in msgs:
                    yield m
        finally:
            name = cfg.name
            conn.spawn(quiet(sub.unsubscribe()))
            if name:
                conn.spawn(quiet(js.delete_consumer(self.names.stream, name)))

    async def _fetch(self, sub: Any, batch: int, subject: str, next_seq: int) -> list[Any] | None:
        """A page of the consumer ``sub``; ``None`` when it has no more (purged while reading, or it is gone).

        A fetch waits a step at a time: a consumer counts messages purged since as pending (and a fetch for them
        waits its whole timeout), so between steps the leader is asked whether anything is left at ``next_seq``.
        A consumer is gone after a server restart (it lived in memory) or once idle past its inactive threshold
        (a caller slow to ask for the next page): :meth:`consume` goes on from the next sequence with a new one.
        """
        import nats.js.errors

        wait = self.conn.settings["request_timeout"]
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    return list(await cancellable(sub.fetch(batch, timeout=min(wait, FETCH_STEP))))
                except (TimeoutError, nats.js.errors.ServiceUnavailableError):  # nats-py raises both timeouts
                    # nothing came: purged while reading, or no consumer answers (its info raises not found)
                    if not (await cancellable(sub.consumer_info())).num_pending:
                        return None
                    if await self.conn.next_msg(subject, next_seq) is None:
                        return None  # the messages it still counts are gone
                    if time.monotonic() >= deadline:
                        raise
        except nats.js.errors.NotFoundError as e:
            if e.err_code != CONSUMER_NOT_FOUND:
                raise
            return None

    async def hidden_possible(self) -> bool:
        """Whether any envelope has deleted events (the hidden bucket holds a key)."""
        resp = await self.conn.api(f"STREAM.INFO.KV_{self.names.hidden_bucket}")
        return int(resp["state"]["messages"]) > 0

    async def hidden(self, token: str, seq: int) -> frozenset[int]:
        """Indexes of the deleted events of the envelope at ``seq`` (empty when none was deleted)."""
        entry = await self.conn.kv_get(self.names.hidden_bucket, Names.hidden_key(token, seq))
        if entry is None or not entry.value:
            return frozenset()
        return frozenset(json.loads(entry.value))

    async def decode_msg(
        self, subject: str, seq: int, headers: dict[str, str] | None, body: bytes, hidden_possible: bool = True
    ) -> list[RecordedEvent]:
        """The live events of one message (deleted events of an envelope left out)."""
        token = self.names.token_of_subject(subject)
        sid = stream_id_of(token)
        hidden: frozenset[int] = frozenset()
        if hidden_possible and int((headers or {}).get(HDR_COUNT, "1")) > 1:
            hidden = await self.hidden(token, seq)
        return records.decode(body, headers, seq, sid, hidden)

    async def seek(self, subject: str, from_version: int, first_seq: int, last_seq: int) -> int:
        """The sequence of the first message on ``subject`` holding a version >= ``from_version``.

        Binary search with next-by-subject gets: O(log n) requests, never a scan.
        """
        lo, hi = first_seq, last_seq  # smallest s whose next message on the subject reaches from_version
        while lo < hi:
            mid = (lo + hi) // 2
            m = await self.conn.next_msg(subject, mid)
            if m is None:
                return hi
            _, last_v = records.message_versions(m.headers)
            if last_v >= from_version:
                hi = mid
            else:
                lo = int(m.seq) + 1
        return lo

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events of one stream in version order (or reversed), a page at a time."""
        conn = self.conn
        conn.require()
        token = stream_token(stream_id)
        subject = self.names.subject(token)
        try:
            # the first and last message bound the consumer: it starts AT the stream's first message
            # (a filtered consumer from sequence 1 would make the server walk the whole store)
            last, first, hidden_possible = await asyncio.gather(
                conn.last_msg(subject), conn.next_msg(subject, 1), self.hidden_possible()
            )
            if last is None or first is None:
                return  # empty or missing: no consumer
            _, top = records.message_versions(last.headers)
            hi_v = top if to_version is None else min(to_version, top)
            bounds = (int(first.seq), records.message_versions(first.headers)[0], int(last.seq))
            if not backwards:
                async with contextlib.aclosing(
                    self._range(
                        subject, from_version, hi_v, bounds, page_size=page_size, hidden_possible=hidden_possible
                    )
                ) as recs:
                    async for rec in recs:
                        yield rec
                return
            low = max(from_version, bounds[1])
            while hi_v >= low:
                lo_v = max(low, hi_v - page_size + 1)
                chunk = [
                    r
                    async for r in self._range(
                        subject, lo_v, hi_v, bounds, page_size=page_size, hidden_possible=hidden_possible
                    )
                ]
                for rec in reversed(chunk):
                    yield rec
                hi_v = lo_v - 1
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, f"reading stream {stream_id!r}") from e

    async def _range(
        self,
        subject: str,
        lo_v: int,
        hi_v: int,
        bounds: tuple[int, int, int],
        *,
        page_size: int,
        hidden_possible: bool,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events with ``lo_v <= version <= hi_v``; ``bounds`` = (first seq, first version, last seq)."""
        first_seq, first_v, last_seq = bounds
        start = await self.seek(subject, lo_v, first_seq, last_seq) if lo_v > first_v else first_seq
        async with contextlib.aclosing(self.consume(subject, start, page_size, last_seq)) as msgs:
            async for m in msgs:
                if m.metadata.sequence.stream > last_seq:
                    return  # stored after the read began: a later version, or the id's stream started again
                first_v, last_v = records.message_versions(m.headers)
                if last_v < lo_v:
                    continue
                if first_v > hi_v:
                    return
                for rec in await self.decode_msg(
                    m.subject, m.metadata.sequence.stream, m.headers, m.data, hidden_possible
                ):
                    if lo_v <= rec.version <= hi_v:
                        yield rec

    async def read_all(self, *, from_position: int = 0, page_size: int = 500) -> AsyncGenerator[RecordedEvent, None]:
        """Every event in JetStream sequence order (a total order: the server assigns it at commit)."""
        conn = self.conn
        conn.require()
        seq, _ = split_position(from_position)
        start = max(1, seq)
        try:
            state, hidden_possible = await asyncio.gather(
                conn.api(f"STREAM.INFO.{self.names.stream}"), self.hidden_possible()
            )
            st = state["state"]
            if int(st["messages"]) == 0 or int(st["last_seq"]) < start:
                return  # nothing to read: no consumer
            wanted = self.consume(self.names.events_wildcard, start, page_size, int(st["last_seq"]))
            async with contextlib.aclosing(wanted) as msgs:
                async for m in msgs:
                    for rec in await self.decode_msg(
                        m.subject, m.metadata.sequence.stream, m.headers, m.data, hidden_possible
                    ):
                        if rec.position >= from_position:
                            yield rec
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, "reading all events") from e

    async def load_events(
        self, locs: Sequence[tuple[int, int] | None], event_ids: Sequence[str]
    ) -> list[RecordedEvent | None]:
        """:meth:`load_event` for many ids (``None`` where ``locs`` has none), each message loaded once.

        A batch's ids point into the same few messages: loaded once per id, a retried batch of a thousand
        events fetched its envelope a thousand times at once, and the server dropped the slow consumer.
        """
        wanted: dict[int, list[tuple[int, int]]] = {}  # message sequence -> (id's place, its position)
        for n, loc in enumerate(locs):
            if loc is not None:
                wanted.setdefault(loc[0], []).append((n, position(*loc)))
        out: list[RecordedEvent | None] = [None] * len(event_ids)
        msgs = await asyncio.gather(*(self.conn.msg_at(seq) for seq in wanted))
        for ns, msg in zip(wanted.values(), msgs, strict=True):
            if msg is None:
                continue
            at = {r.position: r for r in await self.decode_msg(msg.subject, int(msg.seq), msg.headers, msg.data or b"")}
            for n, pos in ns:
                rec = at.get(pos)
                if rec is not None and rec.event_id == event_ids[n]:
                    out[n] = rec
        return out

    async def load_event(self, loc: tuple[int, int], event_id: str) -> RecordedEvent | None:
        """The live event at ``loc`` = ``(seq, index)`` if it really is ``event_id`` (index entries may be stale)."""
        msg = await self.conn.msg_at(loc[0])
        if msg is None:
            return None
        for rec in await self.decode_msg(msg.subject, int(msg.seq), msg.headers, msg.data or b""):
            if rec.event_id == event_id and rec.position == position(*loc):
                return rec
        return None
