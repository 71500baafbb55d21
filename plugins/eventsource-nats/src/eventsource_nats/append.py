"""The append loop: expected versions against the stream's tail, stream creation claims, idempotent retries.

An append reads (or takes from the cache) the stream's :class:`~eventsource_nats.writers.Tail`, checks
the caller's expected version against it and lets the writer publish under the server's sequence
check; when the server refuses, the tail is read again and the loop decides between a conflict and a
retry of an append already stored. A ``NO_STREAM`` append to a new stream first claims the id with a
KV create of its info record (the same atomic create ``create_stream`` uses) and gives the claim back
if the write fails. A retry of an append already stored, even one past the server's duplicate window
whose ack was lost, is recognised through the event-id index and the messages after the tail it
expected, and returns the original result.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

from eventsource.errors import DuplicateEventError, EventSourceError, ProviderTimeoutError, ValidationError
from eventsource.model import ExpectedVersion
from eventsource.provider import check_duplicate, check_expected

from eventsource_nats import records
from eventsource_nats.connection import quiet
from eventsource_nats.errors import DuplicateInBatch, WrongSequence, map_error
from eventsource_nats.index import LRU_SIZE
from eventsource_nats.naming import MAX_EVENTS_PER_MESSAGE, stream_token
from eventsource_nats.records import HDR_EXPECTED_SUBJECT_SEQ
from eventsource_nats.streams import new_info
from eventsource_nats.writers import Tail

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import AppendResult, Expected, NewEvent, NewStream, RecordedEvent

    from eventsource_nats.connection import Connection
    from eventsource_nats.index import IdIndex
    from eventsource_nats.reads import Reader
    from eventsource_nats.writers import Writer


def _satisfied(expected: Expected, tail: Tail, first_id: str) -> bool:
    if expected == ExpectedVersion.ANY:
        return True
    if expected == ExpectedVersion.NO_STREAM:
        # a stream this very append claimed (and has not written yet: a retry) still counts as new
        return not tail.exists or (tail.seq == 0 and tail.version == 0 and tail.claim == first_id)
    if expected == ExpectedVersion.STREAM_EXISTS:
        return tail.exists
    return tail.version == expected


class Appender:
    """Appends to one stream at a time; ``tails`` is the tail cache shared with the writer."""

    def __init__(
        self, conn: Connection, reader: Reader, index: IdIndex, writer: Writer, tails: dict[str, Tail]
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.index = index
        self.writer = writer
        self.tails = tails
        self._tokens: dict[str, str] = {}

    def token(self, stream_id: str) -> str:
        """``stream_token(stream_id)``, memoised (the append path asks for it on every call)."""
        token = self._tokens.get(stream_id)
        if token is None:
            if len(self._tokens) >= LRU_SIZE:
                self._tokens.clear()
            token = self._tokens[stream_id] = stream_token(stream_id)
        return token

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append atomically with the version check done by the server."""
        self.conn.require()
        if len(events) >= MAX_EVENTS_PER_MESSAGE:
            msg = f"a batch holds at most {MAX_EVENTS_PER_MESSAGE - 1} events on NATS"
            raise ValidationError(msg, field="events")
        try:
            result = await self._append(stream_id, list(events), expected, stream)
            if result.duplicate and result.first_version == 1:
                await self._restore_info(stream_id, stream, events[0])
        except EventSourceError:
            raise
        except Exception as e:
            raise map_error(e, f"append to {stream_id!r}") from e
        return result

    async def fetch_tail(self, token: str) -> Tail:
        """Read the subject's last message (and the info record when the subject is empty)."""
        conn = self.conn
        subject = conn.names.subject(token)
        stream_seq = 0
        if conn.stream_wide:
            resp = await conn.api(f"STREAM.INFO.{conn.names.stream}")
            stream_seq = int(resp["state"]["last_seq"])
        last = await conn.last_msg(subject)
        if last is not None:
            _, version = records.message_versions(last.headers)
            tail = Tail(int(last.seq), version, exists=True, stream_seq=max(stream_seq, int(last.seq)))
        else:
            # read AFTER the subject: retention counts an emptied stream's version in the record before it
            # purges, so a record read first could predate a purge the subject read then saw (version 0 again)
            info, rev = await conn.info_get(token)
            known = int(info.get("known_version", 0)) if info else 0
            claim = info.get("claim") if info else None
            tail = Tail(0, known, exists=info is not None, stream_seq=stream_seq, claim=claim, claim_rev=rev or 0)
        self.tails[token] = tail
        return tail

    async def _append(
        self, sid: str, events: list[NewEvent], expected: Expected, stream: NewStream | None
    ) -> AppendResult:
        token = self.token(sid)
        if len(events) > 1 or events[0].event_id in self.index.ids:
            # ids inside one envelope are not deduplicated by the server one by one, and an id this
            # process wrote may be older than the duplicate window: look them up first
            dup = await self._find_stored(sid, events, scan_from=None)
            if dup is not None:
                return dup
        tail, fresh = await self._start_tail(token)
        first_id = events[0].event_id
        for _ in range(200):
            if not _satisfied(expected, tail, first_id):
                if not fresh:
                    tail, fresh = await self.fetch_tail(token), True
                    continue
                dup = await self._stored_or_conflict(sid, token, events, expected, tail)
                if dup is not None:
                    return dup
            claim: int | None = None
            if expected == ExpectedVersion.NO_STREAM and not tail.exists:
                self.writer.check_fits(sid, token, events)  # refuse an oversize append before it claims the id
                # claim the id in the info bucket first (KV create: one creator wins), so a create_stream
                # or another NO_STREAM append racing this one loses instead of both succeeding
                claim = await self.claim(token, sid, stream, events[0])
                if claim is None:
                    tail, fresh = await self.fetch_tail(token), True
                    continue
                tail = tail._replace(exists=True, claim=first_id)
            outcome = await self._write(sid, token, events, tail, claim=claim, stream=stream)
            if isinstance(outcome, Tail):  # another writer moved the tail: try again from where it is now
                tail, fresh = outcome, True
                continue
            return outcome
        msg = f"append to {sid!r}: the stream kept changing under contention"
        raise ProviderTimeoutError(msg, stream_id=sid)

    async def _start_tail(self, token: str) -> tuple[Tail, bool]:
        """The cached tail, or one read now; and whether it was read now (``fresh``)."""
        tail = self.tails.get(token)
        if tail is not None and tail.seq != 0:
            return tail, False
        # nothing cached; or an empty stream's cached tail, which expects subject sequence 0, and a stream
        # deleted meanwhile (by another instance) matches that too: read it again
        return await self.fetch_tail(token), True

    async def _stored_or_conflict(
        self, sid: str, token: str, events: list[NewEvent], expected: Expected, tail: Tail
    ) -> AppendResult | None:
        """``expected`` fails at a fresh ``tail``: the original result if this is a retry, else the conflict.

        A retry of an append that landed after the duplicate window is not a conflict: its ids are in the
        index, or (its ack lost, so never indexed) in the messages right after ``expected`` (for ``NO_STREAM``,
        the stream's first messages). ``None`` when
        :func:`check_expected` accepts the tail after all.
        """
        scan_from = None
        subject = self.conn.names.subject(token)
        if expected == ExpectedVersion.NO_STREAM and tail.exists and tail.seq:
            # a NO_STREAM append's events are the stream's first: read further only when the first message
            # starts with this append's first id (a retry), not on every "stream exists" rejection
            first = await self.conn.next_msg(subject, 1)
            if first is not None:
                recs = await self.reader.decode_msg(first.subject, int(first.seq), first.headers, first.data or b"")
                if recs and recs[0].event_id == events[0].event_id:
                    scan_from = int(first.seq)
        elif not isinstance(expected, ExpectedVersion) and tail.exists and tail.seq and tail.version > expected:
            scan_from = await self.reader.seek(subject, expected + 1, 1, tail.seq)
        dup = await self._find_stored(sid, events, scan_from=scan_from, scan_messages=len(events))
        if dup is not None:
            return dup
        check_expected(sid, expected, exists=tail.exists, version=tail.version)
        return None

    async def _write(
        self,
        sid: str,
        token: str,
        events: list[NewEvent],
        tail: Tail,
        *,
        claim: int | None,
        stream: NewStream | None,
    ) -> AppendResult | Tail:
        """One write at ``tail``: its result (or the original's, for a retry), or the tail read again if it moved."""
        try:
            try:
                result = await self.writer.write(sid, token, events, tail)
            except BaseException:
                if claim is not None:
                    # lost, failed, or unknown (a timeout): give the id back, so an append that did not
                    # happen leaves no empty stream behind (one that did gets its record from its first event)
                    await self._unclaim(token, claim)
                raise
        except WrongSequence:
            moved = await self.fetch_tail(token)
            # an earlier attempt that expected the same tail can only be the subject's next message(s)
            dup = await self._find_stored(sid, events, scan_from=tail.seq + 1, scan_messages=len(events))
            return moved if dup is None else dup
        except DuplicateInBatch:
            self.tails.pop(token, None)
            dup = await self._find_stored(sid, events, scan_from=tail.seq + 1 if tail.seq else 1)
            if dup is not None:
                return dup
            msg = f"an event id of this batch is already stored (stream {sid!r}), and this append is not a retry"
            raise DuplicateEventError(msg, stream_id=sid) from None
        if not result.duplicate:
            if not tail.exists:
                await self._create_info(token, sid, stream, events[0])
            elif not tail.seq and tail.claim not in (None, events[0].event_id):
                await self._take_claim(token, sid, stream, events[0], tail.claim_rev)
        return result

    async def _take_claim(self, token: str, sid: str, stream: NewStream | None, first: NewEvent, revision: int) -> None:
        """Make the record this append's: it wrote the first event of a stream another append had claimed.

        The claimer's write fails (the subject is no longer empty) and it gives back its claim, a purge up to its
        own revision: the record written here over it stays. Given back already, the record is created.
        """
        import nats.js.errors

        record = json.dumps(new_info(sid, stream, first.timestamp, first)).encode()
        try:
            await self.conn.kv[self.conn.names.info_bucket].update(token, record, last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            await self._create_info(token, sid, stream, first)

    async def claim(self, token: str, sid: str, stream: NewStream | None, first: NewEvent) -> int | None:
        """Create the stream's info record naming ``first`` as its creator: its revision, or ``None`` if one exists."""
        import nats.js.errors

        info = new_info(sid, stream, first.timestamp, first)
        info["claim"] = first.event_id
        try:
            return int(await self.conn.kv[self.conn.names.info_bucket].create(token, json.dumps(info).encode()))
        except (
            nats.js.errors.KeyWrongLastSequenceError,
            nats.js.errors.BadRequestError,
            nats.js.errors.KeyNotFoundError,
        ):
            # KeyNotFoundError: taken, then purged before nats-py re-read it (a racing delete_stream): the caller
            # reads the tail again
            return None

    async def _restore_info(self, sid: str, stream: NewStream | None, first: NewEvent) -> None:
        """Write the record of the stream a retried append created, if its first attempt left none.

        A first attempt whose ack was lost never wrote the record, or gave its claim back: the stream's
        attributes (``stream``, else those of its first event) would be lost for good. A record written after
        a ``delete_stream`` emptied the subject is removed again.
        """
        import nats.js.errors

        token = self.token(sid)
        info, _ = await self.conn.info_get(token)
        if info is None:
            record = json.dumps(new_info(sid, stream, first.timestamp, first)).encode()
            taken = (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError)
            revision = None
            with contextlib.suppress(*taken, nats.js.errors.KeyNotFoundError):
                revision = await self.conn.kv[self.conn.names.info_bucket].create(token, record)
            if revision is not None and await self.conn.last_msg(self.conn.names.subject(token)) is None:
                await self._unclaim(token, int(revision))  # deleted meanwhile: not to be brought back

    async def _unclaim(self, token: str, revision: int) -> None:
        """Remove a claim record if it is still at ``revision`` (best effort: nothing else to do on failure).

        A purge of the key's messages up to ``revision``, not a KV delete: a delete marker would make the next
        claim of the id a compare-and-set on the marker's revision, which servers before 2.9.21 do not enforce
        on replicated buckets (two creators won); with no message left the next claim expects sequence 0.
        """
        bucket = self.conn.names.info_bucket
        await quiet(self.conn.purge(f"KV_{bucket}", filter=f"$KV.{bucket}.{token}", seq=revision + 1))

    async def _create_info(self, token: str, sid: str, stream: NewStream | None, first: NewEvent) -> None:
        info = new_info(sid, stream, first.timestamp, first)
        # create-if-absent (expected subject sequence 0) without waiting for the ack: a stream created
        # concurrently keeps its record, and a lost record is rebuilt from the first event on read
        subject = f"$KV.{self.conn.names.info_bucket}.{token}"
        await quiet(self.conn.nc.publish(subject, json.dumps(info).encode(), headers={HDR_EXPECTED_SUBJECT_SEQ: "0"}))

    async def _find_stored(
        self, sid: str, events: Sequence[NewEvent], scan_from: int | None, scan_messages: int | None = None
    ) -> AppendResult | None:
        """Idempotency: the original result if every id is stored as this append, ``None`` if none is.

        Looks ids up in this process, then in the id index; with ``scan_from`` it also reads the
        stream's messages from that sequence on (the writes that raced a stale expected sequence), at
        most ``scan_messages`` of them when given.
        """
        reader = self.reader
        ids = [e.event_id for e in events]
        locs = await self.index.locate_many(ids)
        stored = await reader.load_events(locs, ids)
        if scan_from is not None and any(s is None for s in stored):
            wanted = {i: n for n, i in enumerate(ids) if stored[n] is None}
            subject = self.conn.names.subject(stream_token(sid))
            budget = scan_messages
            async with contextlib.aclosing(reader.consume(subject, scan_from, min(256, budget or 256))) as msgs:
                async for m in msgs:
                    for rec in await reader.decode_msg(m.subject, m.metadata.sequence.stream, m.headers, m.data):
                        n = wanted.pop(rec.event_id, None)
                        if n is not None:
                            stored[n] = rec
                    if budget is not None:
                        budget -= 1
                    if not wanted or budget == 0:
                        break
        if any(s is None for s in stored) and any(s is not None for s in stored):
            await self._read_rest(sid, ids, stored)
        return check_duplicate(sid, events, stored)

    async def _read_rest(self, sid: str, ids: list[str], stored: list[RecordedEvent | None]) -> None:
        """Fill ``stored`` where the ids found place the batch in ``sid`` (index entries lost in a crash).

        Entries are written after the ack without waiting for theirs: some of a stored batch's ids may have
        none. If the ids found sit where an identical retry's would (``ids[n]`` at version ``start + n``),
        the others are read at their versions; anything else is not an identical retry, read or not.
        """
        starts = {s.version - n for n, s in enumerate(stored) if s is not None and s.stream_id == sid}
        if len(starts) != 1 or min(starts) < 1:
            return
        start = min(starts)
        wanted = {i: n for n, i in enumerate(ids) if stored[n] is None}
        recs = self.reader.read_stream(sid, from_version=start, to_version=start + len(ids) - 1)
        async with contextlib.aclosing(recs) as page:
            async for rec in page:
                n = wanted.pop(rec.event_id, None)
                if n is not None:
                    stored[n] = rec
