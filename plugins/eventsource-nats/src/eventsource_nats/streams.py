"""Streams as a whole: create, delete, exact info, and the paged list.

A stream exists while its subject holds a message or its info record (KV bucket ``<stream>_info``)
exists; ``create_stream`` is a KV create of that record, so exactly one creator wins. The version comes
from the subject's last message (or, once retention emptied the subject, from the record's
``known_version``) and the event count from the record's ``removed`` counter. ``delete_stream`` purges
the subject, the record, the snapshots and the deletion marks; the id can then be reused from
version 0.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderTimeoutError, StreamExistsError, StreamNotFoundError, ValidationError
from eventsource.model import StreamInfo, utcnow
from eventsource.timestamps import from_iso

from eventsource_nats import records
from eventsource_nats.naming import stream_id_of, stream_token
from eventsource_nats.reads import stream_id_from

if TYPE_CHECKING:
    from eventsource.model import NewEvent, NewStream, RecordedEvent

    from eventsource_nats.connection import Connection
    from eventsource_nats.reads import Reader
    from eventsource_nats.writers import Tail


RECORD_ROOM = 8192
"""Bytes of ``max_payload`` a new stream's info record leaves free: KV headers and retention's counters."""


def new_info(
    stream_id: str, stream: NewStream | None, created_at: datetime, first: NewEvent | None = None
) -> dict[str, Any]:
    """The info record of a new stream, made by ``create_stream`` or by the first append (``first``).

    The one writer of the record's layout (:meth:`Streams.stream_info` reads it); an implicit creation
    takes the aggregate from its first event unless the append carried a :class:`NewStream`.
    """
    return {
        "id": stream_id,
        "name": stream.name if stream else None,
        "aggregate_id": stream.aggregate_id if stream else (first.aggregate_id if first else None),
        "aggregate_type": stream.aggregate_type if stream else (first.aggregate_type if first else None),
        "metadata": dict(stream.metadata) if stream else {},
        "created_at": created_at.isoformat(),
        "removed": 0,
        "known_version": 0,
    }


class Streams:
    """Stream-level operations; every change drops the stream's entry from the append ``tails`` cache."""

    def __init__(self, conn: Connection, reader: Reader, tails: dict[str, Tail]) -> None:
        self.conn = conn
        self.reader = reader
        self.tails = tails

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Record the stream in the info bucket (KV create: exactly one creator wins)."""
        import nats.js.errors

        conn = self.conn
        conn.require()
        token = stream_token(stream.stream_id)
        now = utcnow()
        record = json.dumps(new_info(stream.stream_id, stream, now)).encode()
        # a KV create carries a header the server counts against max_payload and nats-py does not (a record just
        # under it made the server drop the connection); room is kept for the counters retention adds later
        limit = conn.max_payload - RECORD_ROOM
        if len(record) > limit:
            msg = (
                f"stream {stream.stream_id!r}: its record (metadata, id and attributes) is {len(record)} bytes as JSON;"
                f" the NATS store holds at most {limit} (the server's max_payload less {RECORD_ROOM})"
            )
            raise ValidationError(msg, field="metadata", size=len(record), limit=limit)

        async def create() -> None:
            if await conn.last_msg(conn.names.subject(token)) is not None:
                raise StreamExistsError(f"stream {stream.stream_id!r} already exists", stream_id=stream.stream_id)
            for _ in range(10):
                try:
                    await conn.kv[conn.names.info_bucket].create(token, record)
                except nats.js.errors.KeyNotFoundError:
                    continue  # the record was there, then purged before nats-py re-read it (a racing delete_stream)
                except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError) as e:
                    msg = f"stream {stream.stream_id!r} already exists"
                    raise StreamExistsError(msg, stream_id=stream.stream_id) from e
                return
            msg = f"create stream {stream.stream_id!r}: its record kept changing under a racing delete"
            raise ProviderTimeoutError(msg, stream_id=stream.stream_id)

        await conn.call(f"create stream {stream.stream_id!r}", create())
        self.tails.pop(token, None)
        return StreamInfo.new(stream, now)

    async def delete_stream(self, stream_id: str) -> None:
        """Purge the stream's subject, info, snapshots and deletion marks; the id can be reused."""
        conn = self.conn
        conn.require()
        token = stream_token(stream_id)
        n = conn.names

        async def delete() -> None:
            (info, _), last = await asyncio.gather(conn.info_get(token), conn.last_msg(n.subject(token)))
            if info is None and last is None:
                raise StreamNotFoundError(f"stream {stream_id!r} does not exist", stream_id=stream_id)
            # an append racing this delete reads the record once the subject is empty: it must start again at
            # version 1, not after the deleted stream's remembered version; "deleting" (the subject's last
            # sequence) keeps a retention run from counting its truncation back into the record before the purges
            sid = info.get("id", stream_id) if info else stream_id
            mark = int(last.seq) if last is not None else 0
            reset: dict[str, Any] = {"id": sid, "removed": 0, "known_version": 0, "metadata": {}, "deleting": mark}
            await conn.kv[n.info_bucket].put(token, json.dumps(reset).encode())
            # the snapshots go before the events: a delete cut short after the subject's purge would otherwise
            # leave them to a stream started again under the id (and before_snapshot would truncate it by them);
            # they are purged again below, after a save that raced the delete
            await conn.purge(f"KV_{n.snapshot_bucket}", filter=f"$KV.{n.snapshot_bucket}.{token}.>")
            await conn.purge(n.stream, filter=n.subject(token))
            await asyncio.gather(
                conn.purge(f"KV_{n.info_bucket}", filter=f"$KV.{n.info_bucket}.{token}"),
                conn.purge(f"KV_{n.snapshot_bucket}", filter=f"$KV.{n.snapshot_bucket}.{token}.>"),
                conn.purge(f"KV_{n.hidden_bucket}", filter=f"$KV.{n.hidden_bucket}.{token}.>"),
            )

        try:
            await conn.call(f"delete stream {stream_id!r}", delete())
        finally:
            self.tails.pop(token, None)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: version from the last message, counts from the retention bookkeeping."""
        self.conn.require()
        return await self.conn.call(f"stream info of {stream_id!r}", self.stream_info(stream_id))

    async def stream_info(self, stream_id: str) -> StreamInfo | None:
        """:meth:`get_stream_info` without the connection check and the error mapping."""
        conn = self.conn
        token = stream_token(stream_id)
        subject = conn.names.subject(token)
        (info, _), last, first = await asyncio.gather(
            conn.info_get(token), conn.last_msg(subject), conn.next_msg(subject, 1)
        )
        if info is None and last is None:
            return None
        info = info or {}
        removed = int(info.get("removed", 0))
        first_event = last_event = None
        if last is not None:
            version = records.message_versions(last.headers)[1]
            last_event = await self._last_event(subject, last)
            first_event = await self._first_live(subject, first)
        else:
            version = int(info.get("known_version", 0))
        created = info.get("created_at")
        fallback = first_event.timestamp if first_event else None
        created_at = from_iso(created) if created else (fallback or utcnow())
        count = version - removed
        return StreamInfo(
            stream_id=stream_id,
            version=version,
            event_count=count,
            created_at=created_at,
            updated_at=last_event.timestamp if last_event else created_at,
            name=info.get("name"),
            aggregate_id=info.get("aggregate_id", first_event.aggregate_id if first_event else None),
            aggregate_type=info.get("aggregate_type", first_event.aggregate_type if first_event else None),
            metadata=dict(info.get("metadata") or {}),
            last_event_id=last_event.event_id if last_event else None,
            first_version=first_event.version if first_event and count > 0 else None,
        )

    async def _last_event(self, subject: str, last: Any) -> RecordedEvent:
        """The last live event of the subject's ``last`` message, or its last event if retention marked every one.

        A message is purged once its events are all marked deleted, but not the subject's last (the tail is
        read from it) while an earlier message keeps live events, nor one marked by a run that did not finish.
        """
        body = last.data or b""
        seq = int(last.seq)
        events = await self.reader.decode_msg(subject, seq, last.headers, body)
        return (events or records.decode(body, last.headers, seq, stream_id_from(subject, body)))[-1]

    async def _first_live(self, subject: str, m: Any) -> RecordedEvent | None:
        """The first live event from message ``m`` on (past messages whose events retention marked all deleted)."""
        while m is not None:
            events = await self.reader.decode_msg(subject, int(m.seq), m.headers, m.data or b"")
            if events:
                return events[0]
            m = await self.conn.next_msg(subject, int(m.seq) + 1)
        return None

    async def all_stream_ids(self) -> list[str]:
        """Every stream id: subjects holding events plus info records (empty or truncated streams)."""
        conn = self.conn
        n = conn.names
        subjects, infos = await asyncio.gather(
            conn.subjects(n.stream, n.events_wildcard), conn.subjects(f"KV_{n.info_bucket}", f"$KV.{n.info_bucket}.*")
        )
        with_events = {s.rsplit(".", 1)[-1] for s in subjects}
        out = []
        for token in with_events | {s.rsplit(".", 1)[-1] for s in infos}:
            sid = stream_id_of(token)
            if sid is None or token not in with_events:
                # a key whose last message is a delete marker (a claim given back) is no stream
                info, _ = await conn.info_get(token)
                if info is not None:
                    sid = info["id"]
                elif token not in with_events:
                    continue
                else:
                    first = await conn.next_msg(n.subject(token), 1)
                    sid = stream_id_from(token, first.data if first else None)
            if sid is not None:
                out.append(sid)
        return out

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams ordered by id (the ids come from metadata: subjects and info keys, sorted per call)."""
        self.conn.require()

        async def page() -> tuple[list[StreamInfo], int]:
            ids = sorted(await self.all_stream_ids())
            start = offset if after is None else bisect.bisect_right(ids, after) + offset
            infos = await asyncio.gather(*(self.stream_info(i) for i in ids[start : start + limit]))
            return [i for i in infos if i is not None], len(ids)

        return await self.conn.call("list streams", page())
