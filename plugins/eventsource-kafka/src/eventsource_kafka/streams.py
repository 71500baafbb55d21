"""Streams as a whole: create (a new incarnation), delete, exact info, and the paged list.

Incarnation ``n`` of a stream is one topic whose name every process derives the same way
(``naming.stream_topic``), so the broker's ``create_topics`` lets exactly one process create it and
the others join it; the first ``create`` record of an incarnation in the metadata topic wins. A delete
tombstones the snapshots, writes the ``delete`` record (the incarnation count is kept) and deletes the
topic; the id is then reusable from version 0. Info is exact: the metadata view plus the tail read to its end.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.errors import (
    RETRYABLE,
    ConcurrencyError,
    ProviderError,
    StreamExistsError,
    StreamNotFoundError,
    ValidationError,
)
from eventsource.model import StreamInfo
from eventsource.timestamps import from_us, now_us

from eventsource_kafka import naming
from eventsource_kafka.client import record_size
from eventsource_kafka.fetching import TopicGoneError
from eventsource_kafka.views import meta_record

if TYPE_CHECKING:
    from eventsource.model import NewStream

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.snapshots import Snapshots
    from eventsource_kafka.tails import Slot, Tails
    from eventsource_kafka.views import Views

KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Configs of every stream topic unless ``topic_configs`` names them: the broker's default deletes events after a
week (``log.retention.hours=168``), and a stream whose first records are gone reads empty (``records.accepts``)."""

_CREATE_ATTEMPTS = 8
"""Incarnations one creation tries when each is deleted by another process before it can join it."""


def info(stream_id: str, meta: dict[str, Any], slot: Slot) -> StreamInfo:
    """The stream's info from its metadata record and its tail."""
    created = from_us(meta["created_us"])
    hidden = int(meta.get("hidden", 0))
    count = slot.version - hidden
    first = meta.get("first_visible", 1) if hidden else 1
    return StreamInfo(
        stream_id=stream_id,
        version=slot.version,
        event_count=count,
        created_at=created,
        updated_at=from_us(slot.last_ts_us) if slot.last_ts_us is not None else created,
        name=meta.get("name"),
        aggregate_id=meta.get("aggregate_id"),
        aggregate_type=meta.get("aggregate_type"),
        metadata=dict(meta.get("metadata") or {}),
        last_event_id=slot.last_event_id,
        first_version=first if count > 0 and first <= slot.version else None,
    )


def _create_record(stream: NewStream, inc: int, topic: str, created_us: int, creator: str | None) -> dict[str, Any]:
    """The ``create`` metadata record of incarnation ``inc`` (``creator``: what made it, see :meth:`Streams.create`)."""
    meta: dict[str, Any] = {
        "op": "create",
        "inc": inc,
        "topic": topic,
        "name": stream.name,
        "aggregate_id": stream.aggregate_id,
        "aggregate_type": stream.aggregate_type,
        "metadata": dict(stream.metadata),
        "created_us": created_us,
    }
    if creator is not None:
        meta["creator"] = creator
    return meta


class Streams:
    """Creation, deletion, info and listing of streams."""

    def __init__(self, conn: Connection, views: Views, tails: Tails, snapshots: Snapshots) -> None:
        self.conn = conn
        self.views = views
        self.tails = tails
        self.snapshots = snapshots

    async def create(
        self, stream: NewStream, slot: Slot, created_us: int, *, creator: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Start the stream's next incarnation; returns its metadata and whether this call created its topic.

        Every process names incarnation ``n`` the same topic (``naming.stream_topic``), and the broker
        lets only one ``create_topics`` create it: a process that finds it created (another process
        creating the stream at the same moment) joins that incarnation instead of making a second
        topic. The first ``create`` record of an incarnation wins (``Namespace.apply_meta``).
        ``creator``: the first event id of the append creating the stream (or a token of ``create_stream``).
        Metadata too large for one record is refused first (:meth:`_check_size`), before any topic exists.
        """
        sid = stream.stream_id
        settings = self.conn.settings
        self._check_size(stream, created_us, creator)
        for _ in range(_CREATE_ATTEMPTS):
            inc = self.conn.ns.incarnations.get(sid, 0) + 1
            topic = naming.stream_topic(self.conn.prefix, sid, inc)
            created = await self.conn.io.ensure_topic(
                topic,
                replication_factor=settings["replication_factor"],
                configs={**KEEP_FOREVER, **settings["topic_configs"]},
            )
            slot.made = topic if created else slot.made
            current = (await self.views.meta()).get(sid)
            if not created:
                current = await self._await_create_record(sid, topic, current, slot)
            if current is None:  # never beside a live incarnation: its create record would supersede it
                current = await self.views.put_meta(sid, _create_record(stream, inc, topic, created_us, creator))
            if current is not None and current["topic"] == topic:
                if slot.topic != topic:
                    slot.reset(topic)
                    slot.loaded = created  # a topic another process created may hold its appends already
                return current, created
            if current is not None:  # another incarnation is live: the caller re-checks against it
                if created:
                    await self.conn.io.delete_topic(topic)  # nobody writes to it: no create record names it
                return current, False
            # the incarnation was created and deleted meanwhile (its delete record is in): take the next one
            if created:
                await self.conn.io.delete_topic(topic)
        msg = f"stream {sid!r} was created and deleted concurrently {_CREATE_ATTEMPTS} times; not created"
        raise ConcurrencyError(msg, stream_id=sid, expected="NO_STREAM", actual=0)

    def _check_size(self, stream: NewStream, created_us: int, creator: str | None) -> None:
        """Refuse, before anything is created, a stream whose create record would not fit in ``max_record_bytes``.

        Checked against the record limit, not the producer's (``max_record_bytes`` + ``ENVELOPE_SLACK``): the
        retention markers an ``update`` record adds to the same fields need the slack, and a stream whose
        record just fitted at creation could never be truncated.
        """
        sid = stream.stream_id
        inc = self.conn.ns.incarnations.get(sid, 0) + 1
        key, value = meta_record(
            sid, _create_record(stream, inc, naming.stream_topic(self.conn.prefix, sid, inc), created_us, creator)
        )
        size, limit = record_size(value, [], key), self.conn.max_record_bytes
        if size > limit:
            msg = (
                f"stream {sid!r}: its id, name, aggregate and metadata are {size} bytes as one metadata record; "
                f"the limit is {limit} (max_record_bytes)"
            )
            raise ValidationError(msg, field="metadata", size=size, limit=limit)

    async def _await_create_record(
        self, sid: str, topic: str, current: dict[str, Any] | None, slot: Slot
    ) -> dict[str, Any] | None:
        """Give the process that created ``topic`` time to write its create record (its attributes win).

        Only if none comes within ``request_timeout`` (that process stopped between creating the
        topic and writing the record) does the caller write one, so the incarnation is never stranded.
        Not called for a topic this process made (``Slot.made``: an append that failed after making it,
        its create record lost with the produce's answer): a retry writes the record at once.
        """
        if slot.made == topic:  # made by this process: no other process writes its create record
            return current
        # from the first wait for this topic in this process: a call cut off meanwhile (the manager's timeout
        # equals request_timeout by default) is retried, and the retry must not start the wait again
        awaited = self.conn.ns.awaited
        deadline = awaited.setdefault(topic, monotonic()) + self.conn.settings["request_timeout"]
        delay = 0.002
        while (current is None or current["topic"] != topic) and monotonic() < deadline:
            if current is not None:
                break  # another incarnation is live: nobody writes a create record for this one
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            current = (await self.views.meta()).get(sid)
            if current is None and self.conn.ns.incarnations.get(sid, 0) >= (naming.incarnation(topic) or 0):
                break  # that incarnation was created and deleted meanwhile
        if current is not None:  # else kept: an attempt cut off after the wait (writing the record) waits no more
            awaited.pop(topic, None)
        return current

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create the stream's topic and metadata record. :class:`StreamExistsError` if it exists."""
        slot = self.conn.ns.slot(stream.stream_id)
        token = f"create_stream {uuid.uuid4()}"  # tells this call's create record from another process's
        async with self.conn.exclusive(stream.stream_id):
            if await self.tails.refresh(stream.stream_id, slot) is None:
                meta, created = await self.create(stream, slot, now_us(), creator=token)
                # a topic left by a process that stopped before writing its create record is joined, and
                # the record this call then writes makes the stream: created here, whoever made the topic
                if created or meta.get("creator") == token:
                    return info(stream.stream_id, meta, slot)
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)

    async def delete_stream(self, stream_id: str) -> None:
        """Delete the snapshots, write the delete record, delete the topic; the id is reusable from version 0.

        Snapshots go first (and those saved meanwhile again after the record): once the delete record is
        written the stream is gone and a retried delete finds nothing to do, so a topic deletion that
        fails (``delete.topic.enable=false``, a timeout) must not leave them to the stream created next.
        A delete finding the stream gone deletes the topic of its last delete record again (that delete
        may have failed after its record: its answer lost, or the topic deletion failed).
        """
        slot = self.conn.ns.slot(stream_id)
        async with self.conn.exclusive(stream_id):
            meta = await self.tails.refresh(stream_id, slot)
            if meta is None:
                gone = self.conn.ns.deleted.get(stream_id)
                if gone:  # a delete that failed after its record (answer lost): its topic may be left
                    try:
                        await self.conn.io.delete_topic(gone)
                    except RETRYABLE:
                        raise
                    except ProviderError:
                        pass  # refused for good (``delete.topic.enable=false``): no retry would do more
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            await self.snapshots.delete_snapshots(stream_id, None)
            await self.views.put_meta(
                stream_id, {"op": "delete", "inc": int(meta.get("inc", 0)), "topic": meta["topic"]}
            )
            slot.reset(None)
            await self.snapshots.delete_snapshots(stream_id, None)
            await self.conn.io.delete_topic(meta["topic"])

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: metadata view plus the stream's tail read to its high watermark.

        ``None`` also for a stream whose topic is gone while the metadata view still names it (another
        instance deleted every topic of the store, its metadata topic too): its events are gone, and a
        one-stream subscription, which asks this when a read finds nothing, reports the stream deleted
        instead of waiting on a view nothing will ever correct.
        """
        slot = self.conn.ns.slot(stream_id)
        async with slot.lock.held():
            try:
                meta = await self.tails.refresh(stream_id, slot, or_gone=True)
            except TopicGoneError:
                return None
            return None if meta is None else info(stream_id, meta, slot)

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams by id (from the metadata view, sorted per call), each with exact info."""
        ids = sorted(await self.views.meta())
        start = offset if after is None else bisect.bisect_right(ids, after) + offset
        page = []
        for sid in ids[start : start + limit]:
            slot = self.conn.ns.slot(sid)
            async with slot.lock.held():
                meta = await self.tails.refresh(sid, slot, meta_too=False)
                if meta is not None:
                    page.append(info(sid, meta, slot))
        return page, len(ids)
