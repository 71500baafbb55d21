"""The event-id index: where each event is stored, for read by id and for recognising retried appends.

An entry maps an event id (hashed into a KV key) to ``"<seq> <index>"`` of the message holding it.
Entries are written after the publish ack without waiting for their own ack: the index is best effort,
so every hit is verified against the stored message, a miss with a stream id falls back to reading
that stream, and :meth:`IdIndex.rebuild` rewrites every entry after a crash lost some. Ids this process
wrote or found are also kept in a bounded in-memory map, looked up first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderUnavailableError

from eventsource_nats.connection import cancellable, quiet
from eventsource_nats.naming import event_key, split_position

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import NewEvent, RecordedEvent

    from eventsource_nats.connection import Connection
    from eventsource_nats.reads import Reader

LRU_SIZE = 50_000
"""Entries kept in memory (event locations here, stream tokens in the appender)."""
MULTI_LAST_SINCE = (2, 15, 0)
"""First server whose ``multi_last`` direct get reads every subject's last message in one pass.

2.11-2.14 answer ``multi_last`` too, but pick the sequences first and load them after: a message removed in
between (the id bucket keeps one revision, so a rewrite or delete removes it) ends the answer with a 404,
which would read as "absent" for every id not yet sent, and a retried batch would be stored twice.
"""
MULTI_LAST_CHUNK = 256
"""Subjects asked per ``multi_last`` request (far below the server's cap on results per request)."""


def _live(headers: dict[str, str], data: bytes) -> bytes | None:
    """A KV message's value; ``None`` for a delete or purge marker."""
    return None if headers.get("KV-Operation") in ("DEL", "PURGE") else data


class IdIndex:
    """``event id -> (seq, index)`` in this process and in the ``<stream>_ids`` KV bucket."""

    def __init__(self, conn: Connection, reader: Reader) -> None:
        self.conn = conn
        self.reader = reader
        self.ids: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._prefix = f"$KV.{conn.names.ids_bucket}."

    def remember(self, event_id: str, loc: tuple[int, int]) -> None:
        """Keep a location in this process (the oldest entry goes beyond :data:`LRU_SIZE`)."""
        self.ids[event_id] = loc
        self.ids.move_to_end(event_id)
        if len(self.ids) > LRU_SIZE:
            self.ids.popitem(last=False)

    async def add(self, events: Sequence[NewEvent], locs: Sequence[tuple[int, int]]) -> None:
        """Record ``event id -> (seq, index)`` in this process and (best effort, no ack) in the id index.

        An entry lost in a crash makes ``get_event`` without a stream id miss that event (with a stream
        id it falls back to reading the stream); :meth:`rebuild` rewrites every entry.
        """
        publish = self.conn.nc.publish
        bucket = self.conn.names.ids_bucket
        try:
            for ev, loc in zip(events, locs, strict=True):
                self.remember(ev.event_id, loc)
                await publish(f"$KV.{bucket}.{event_key(ev.event_id)}", f"{loc[0]} {loc[1]}".encode())
        except Exception:  # noqa: BLE001, S110 - best effort: the events themselves are stored
            pass

    async def add_one(self, event_id: str, seq: int, index: int) -> None:
        """:meth:`add` for one event (the single-append hot path)."""
        ids = self.ids
        ids[event_id] = (seq, index)
        ids.move_to_end(event_id)
        if len(ids) > LRU_SIZE:
            ids.popitem(last=False)
        try:  # noqa: SIM105 - cheaper than a suppress() object on the hot path
            await self.conn.nc.publish(f"{self._prefix}{event_key(event_id)}", f"{seq} {index}".encode())
        except Exception:  # noqa: BLE001, S110 - best effort: the event itself is stored
            pass

    async def rebuild(self) -> int:
        """Rewrite the id-index entry of every stored event (after a crash lost some); returns the count."""
        js = self.conn.require()
        bucket = self.conn.names.ids_bucket

        async def run() -> int:
            n = 0
            pending = []
            async with contextlib.aclosing(self.reader.read_all(page_size=1000)) as recs:
                async for rec in recs:
                    seq, idx = split_position(rec.position)
                    pending.append(
                        await js.publish_async(f"$KV.{bucket}.{event_key(rec.event_id)}", f"{seq} {idx}".encode())
                    )
                    n += 1
                    if len(pending) >= 1000:  # noqa: PLR2004 - acknowledgement window
                        await asyncio.gather(*pending)
                        pending.clear()
            await asyncio.gather(*pending)
            return n

        return await self.conn.call("rebuild the id index", run())

    async def locate(self, event_id: str) -> tuple[int, int] | None:
        """Where ``event_id`` is stored according to the index (``None``: no entry)."""
        loc = self.ids.get(event_id)
        if loc is not None:
            return loc
        entry = await self.conn.kv_get(self.conn.names.ids_bucket, event_key(event_id))
        if entry is None or not entry.value:
            return None
        seq, idx = entry.value.decode().split()
        return int(seq), int(idx)

    async def locate_many(self, event_ids: Sequence[str]) -> list[tuple[int, int] | None]:
        """Locations of many ids: this process first, then pipelined direct gets on the id index."""
        out: list[tuple[int, int] | None] = [self.ids.get(i) for i in event_ids]
        todo = [n for n, loc in enumerate(out) if loc is None]
        if not todo:
            return out
        bucket = self.conn.names.ids_bucket
        values = await self._direct_last_many(f"KV_{bucket}", [f"$KV.{bucket}.{event_key(event_ids[n])}" for n in todo])
        for n, value in zip(todo, values, strict=True):
            if value:
                seq, idx = value.decode().split()
                out[n] = (int(seq), int(idx))
        return out

    async def _direct_last_many(self, stream: str, subjects: Sequence[str]) -> list[bytes | None]:
        """Last message data of each subject (``None``: no message, or a delete/purge marker last).

        On 2.15+ one ``multi_last`` direct get per :data:`MULTI_LAST_CHUNK` subjects (a batch append's
        ids looked up in one request, not one each); else, or when the server cut an answer short,
        one direct get per subject, all sent at once.
        """
        if len(subjects) > 1 and self.conn.server_version >= MULTI_LAST_SINCE:
            found = await self._multi_last(stream, subjects)
            if found is not None:
                return found
        return await self._direct_each(stream, subjects)

    async def _multi_last(self, stream: str, subjects: Sequence[str]) -> list[bytes | None] | None:
        """:meth:`_direct_last_many` through ``multi_last`` batch gets; ``None`` when an answer was cut short."""
        nc = self.conn.nc
        inbox = nc.new_inbox()
        where: dict[str, list[int]] = {}
        for n, subject in enumerate(subjects):
            where.setdefault(subject, []).append(n)
        unique = list(where)
        chunks = [unique[i : i + MULTI_LAST_CHUNK] for i in range(0, len(unique), MULTI_LAST_CHUNK)]
        results: list[bytes | None] = [None] * len(subjects)
        waiting = len(chunks)
        complete = True
        done = asyncio.get_running_loop().create_future()

        answered: set[str] = set()  # the chunks (reply subjects) that sent at least one message

        async def on_reply(msg: Any) -> None:
            nonlocal waiting, complete
            headers = msg.headers or {}
            status = headers.get("Status")
            if not status:  # one subject's last message
                answered.add(msg.subject)
                for n in where.get(headers.get("Nats-Subject", ""), ()):
                    results[n] = _live(headers, msg.data)
                return
            if status == "204":  # end of this request's batch
                complete = complete and int(headers.get("Nats-Num-Pending", "0")) == 0
            elif status == "404":  # none of the chunk's subjects has a message, unless some were sent first
                complete = complete and msg.subject not in answered
            else:  # e.g. 408 from a server without multi_last (a mixed-version cluster): ask one by one
                complete = False
            waiting -= 1
            if waiting == 0 and not done.done():
                done.set_result(None)

        sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            for n, chunk in enumerate(chunks):
                body = json.dumps({"multi_last": chunk, "batch": len(chunk)}).encode()
                await nc.publish(f"$JS.API.DIRECT.GET.{stream}", body, reply=f"{inbox}.{n}")
            # no flush(): it would wait a PING round trip; the client's flusher sends the requests now
            await cancellable(asyncio.wait_for(done, timeout=self.conn.settings["request_timeout"]))
        finally:
            await quiet(sub.unsubscribe())
        return results if complete else None

    async def _direct_each(self, stream: str, subjects: Sequence[str]) -> list[bytes | None]:
        """:meth:`_direct_last_many` with one direct get per subject, all sent at once, one reply inbox."""
        nc = self.conn.nc
        inbox = nc.new_inbox()
        results: list[bytes | None] = [None] * len(subjects)
        failures: list[str] = []
        waiting = len(subjects)
        done = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Any) -> None:
            nonlocal waiting
            n = int(msg.subject.rsplit(".", 1)[-1])
            status = (msg.headers or {}).get("Status")
            op = (msg.headers or {}).get("KV-Operation")
            if not status and op not in ("DEL", "PURGE"):
                results[n] = msg.data
            elif status and status != "404":  # 404: no such key; anything else is a failed lookup
                failures.append(status)
            waiting -= 1
            if waiting == 0 and not done.done():
                done.set_result(None)

        sub = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            for n, subject in enumerate(subjects):
                await nc.publish(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", reply=f"{inbox}.{n}")
            await nc.flush()
            await cancellable(asyncio.wait_for(done, timeout=self.conn.settings["request_timeout"]))
        finally:
            await quiet(sub.unsubscribe())
        if failures:
            msg = f"{len(failures)} lookups on {stream} failed (status {failures[0]})"
            raise ProviderUnavailableError(msg)
        return results

    async def get_event(self, event_id: str, stream_id: str | None) -> RecordedEvent | None:
        """By id: the index entry (verified against the message), else a scan of the named stream."""
        loc = await self.locate(event_id)
        rec = await self.reader.load_event(loc, event_id) if loc else None
        if rec is not None:
            return rec if stream_id is None or rec.stream_id == stream_id else None
        if stream_id is None:
            return None
        async with contextlib.aclosing(self.reader.read_stream(stream_id)) as recs:
            async for r in recs:
                if r.event_id == event_id:
                    self.remember(event_id, split_position(r.position))
                    return r
        return None

    def clear(self) -> None:
        """Forget the locations kept in this process (the store was dropped)."""
        self.ids.clear()
