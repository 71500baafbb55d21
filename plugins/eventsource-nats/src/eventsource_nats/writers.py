"""The expected-sequence writers: one append's events published under the server's version check.

Every message carries ``Nats-Expected-Last-Subject-Sequence`` (or, on an old replicated server, the
stream-wide ``Nats-Expected-Last-Sequence``) set from the stream's :class:`Tail`, so the server refuses
a write that raced in between, and ``Nats-Msg-Id`` so a retry inside the duplicate window is answered
with the original sequence; that answer is checked against the stored message before it counts as
this append. A batch is one envelope message, or on servers with atomic batch publish one message per
event committed atomically. A successful write updates the tail cache and the event-id index.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from eventsource.errors import DuplicateEventError, ValidationError
from eventsource.model import AppendResult, make_append_result
from eventsource.provider import check_duplicate

from eventsource_nats import records
from eventsource_nats.errors import DUPLICATE_IN_BATCH_CODE, DuplicateInBatch, WrongSequence, is_wrong_sequence
from eventsource_nats.naming import batch_msg_id, msg_id, position, token_is_reversible
from eventsource_nats.records import HDR_COUNT, HDR_EXPECTED_SEQ, HDR_EXPECTED_SUBJECT_SEQ, HDR_MSG_ID, HDR_VERSION

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.model import NewEvent, RecordedEvent

    from eventsource_nats.connection import Connection
    from eventsource_nats.index import IdIndex
    from eventsource_nats.publish import Publisher
    from eventsource_nats.reads import Reader

MESSAGE_OVERHEAD = 8192
"""Bytes of a message kept free for headers and the event head (ids, type, timestamp...)."""
ATOMIC_BATCH_LIMIT = 1000


class Tail(NamedTuple):
    """What an append needs to know about a stream: its last message and version (a tuple: cheap)."""

    seq: int  # stream sequence of the subject's last message (0: no message)
    version: int
    exists: bool
    stream_seq: int = 0  # last sequence of the whole JetStream stream (stream-wide check only)
    claim: str | None = None  # id of the first event of the NO_STREAM append that created the (empty) stream
    claim_rev: int = 0  # revision of the info record holding that claim


class Writer:
    """Publishes an append's events against a known :class:`Tail`; ``tails`` is the shared tail cache."""

    def __init__(
        self, conn: Connection, publisher: Publisher, reader: Reader, index: IdIndex, tails: dict[str, Tail]
    ) -> None:
        self.conn = conn
        self.publisher = publisher
        self.reader = reader
        self.index = index
        self.tails = tails
        self._events_prefix = conn.names.subject("")

    def _expect_headers(self, tail: Tail) -> dict[str, str]:
        if self.conn.stream_wide:
            return {HDR_EXPECTED_SEQ: str(tail.stream_seq)}
        return {HDR_EXPECTED_SUBJECT_SEQ: str(tail.seq)}

    async def write(self, sid: str, token: str, events: list[NewEvent], tail: Tail) -> AppendResult:
        """Publish ``events`` after ``tail``; :class:`WrongSequence` if the server saw another write first."""
        if len(events) > 1 and self.conn.atomic and len(events) <= ATOMIC_BATCH_LIMIT:
            return await self._write_atomic(sid, token, events, tail)
        return await self._write_message(sid, token, events, tail)

    def check_fits(self, sid: str, token: str, events: list[NewEvent]) -> None:
        """The size check of :meth:`_write_message`, run before anything is written."""
        n = len(events)
        if n > 1 and self.conn.atomic and n <= ATOMIC_BATCH_LIMIT:
            return  # atomic batches check each message as they build it
        body = records.encode(events, None if token_is_reversible(token) else sid)
        what = "the event" if n == 1 else f"the batch of {n} events"
        self._check_size(body, {HDR_MSG_ID: "x" * 64, HDR_VERSION: "0" * 20}, what)

    def _check_size(self, body: bytes, headers: dict[str, str], what: str) -> None:
        size = len(body) + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items()) + 16  # UTF-8 bytes
        max_payload = self.conn.max_payload
        if size > max_payload:
            msg = f"{what} is {size} bytes as a NATS message; the server's max_payload is {max_payload}"
            raise ValidationError(msg, field="events", size=size, limit=max_payload)

    async def _write_message(self, sid: str, token: str, events: list[NewEvent], tail: Tail) -> AppendResult:
        """One message holding every event (a single event, or an envelope)."""
        self.conn.require()
        n = len(events)
        last_version = tail.version + n
        headers = {
            HDR_MSG_ID: msg_id(events[0].event_id) if n == 1 else batch_msg_id([e.event_id for e in events]),
            HDR_VERSION: str(last_version),
        }
        if self.conn.stream_wide:
            headers[HDR_EXPECTED_SEQ] = str(tail.stream_seq)
        else:
            headers[HDR_EXPECTED_SUBJECT_SEQ] = str(tail.seq)
        if n > 1:  # readers take a missing Vx-Count as 1
            headers[HDR_COUNT] = str(n)
        body = records.encode(events, None if token_is_reversible(token) else sid)
        if len(body) + 1024 + 4 * len(headers[HDR_MSG_ID]) > self.conn.max_payload:  # an id: up to 4 bytes a char
            self._check_size(body, headers, "the event" if n == 1 else f"the batch of {n} events")
        subject = f"{self._events_prefix}{token}"
        ack = await self.publisher.publish_expecting(subject, body, headers)
        if ack.get("duplicate"):
            resolved = await self._resolve_duplicate_ack(sid, events, int(ack["seq"]))
            if resolved is not None:
                return resolved
            # the message the server remembers for this id is gone (stream deleted, or retention): the id
            # is free again. Publish under a message id derived from the gone one, so a retry of this
            # publish is still recognised as a duplicate of it.
            headers[HDR_MSG_ID] = f"{headers[HDR_MSG_ID]}~{int(ack['seq'])}"
            ack = await self.publisher.publish_expecting(subject, body, headers)
            if ack.get("duplicate"):
                again = await self._resolve_duplicate_ack(sid, events, int(ack["seq"]))
                if again is None:
                    msg = f"message id {headers[HDR_MSG_ID]!r} is remembered for a message that no longer exists"
                    raise DuplicateEventError(msg, event_id=events[0].event_id, stream_id=sid)
                return again
        seq = int(ack["seq"])
        self.tails[token] = Tail(seq, last_version, True, seq)  # noqa: FBT003 - positional: hot path
        if n == 1:  # the hot path: no per-call generators
            ev = events[0]
            await self.index.add_one(ev.event_id, seq, 0)
            return make_append_result(
                sid,
                last_version,
                last_version,
                (position(seq, 0),),
                (ev.event_id,),
                ev.timestamp,
                False,  # noqa: FBT003
            )
        await self.index.add(events, [(seq, i) for i in range(n)])
        return make_append_result(
            sid,
            tail.version + 1,
            last_version,
            tuple(position(seq, i) for i in range(n)),
            tuple(e.event_id for e in events),
            events[0].timestamp,
            False,  # noqa: FBT003
        )

    async def _write_atomic(self, sid: str, token: str, events: list[NewEvent], tail: Tail) -> AppendResult:
        """One message per event, committed as one atomic batch (nats-server >= 2.12)."""
        import nats.errors
        import nats.js.errors

        self.conn.require()
        nc = self.conn.nc
        subject = self.conn.names.subject(token)
        carry = None if token_is_reversible(token) else sid
        n = len(events)
        timeout = self.conn.settings["publish_timeout"]
        bodies = [records.encode([ev], carry) for ev in events]
        for i, (ev, body) in enumerate(zip(events, bodies, strict=True), start=1):
            # the headers message i really gets, with the expected sequence and the commit of the first and last
            worst = {**self._batch_headers("0" * 32, i, n, ev.event_id, tail), **self._expect_headers(tail)}
            self._check_size(body, {**worst, "Nats-Batch-Commit": "1"}, "an event of the batch")

        async def send() -> dict[str, Any]:
            batch_id = uuid.uuid4().hex
            reply: dict[str, Any] = {}
            for i, (ev, body) in enumerate(zip(events, bodies, strict=True), start=1):
                headers = self._batch_headers(batch_id, i, n, ev.event_id, tail)
                if i in (1, n):
                    msg = await nc.request(subject, body, headers=headers, timeout=timeout)
                    if msg.data:
                        reply = json.loads(msg.data)
                        if "error" in reply:
                            return reply
                else:
                    await nc.publish(subject, body, headers=headers)
            return reply

        try:
            reply = await self.conn.retrying(send)
        except nats.errors.NoRespondersError as e:
            raise nats.js.errors.NoStreamResponseError from e
        if "error" in reply:
            _raise_batch_error(reply["error"])
        last_seq = int(reply["seq"])
        seqs = [last_seq - n + 1 + i for i in range(n)]
        self.tails[token] = Tail(last_seq, tail.version + n, exists=True, stream_seq=last_seq)
        await self.index.add(events, [(s, 0) for s in seqs])
        return AppendResult(
            stream_id=sid,
            first_version=tail.version + 1,
            last_version=tail.version + n,
            positions=tuple(position(s, 0) for s in seqs),
            event_ids=tuple(e.event_id for e in events),
            timestamp=events[0].timestamp,
        )

    def _batch_headers(self, batch_id: str, i: int, n: int, event_id: str, tail: Tail) -> dict[str, str]:
        """Headers of message ``i`` (from 1) of an ``n``-message atomic batch: the first checks, the last commits."""
        headers = {
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(i),
            HDR_MSG_ID: msg_id(event_id),
            HDR_VERSION: str(tail.version + i),
            HDR_COUNT: "1",
        }
        if i == 1:
            headers.update(self._expect_headers(tail))
        if i == n:
            headers["Nats-Batch-Commit"] = "1"
        return headers

    async def _resolve_duplicate_ack(self, sid: str, events: Sequence[NewEvent], seq: int) -> AppendResult | None:
        """JetStream answered "duplicate" with the seq of the message that holds this message id.

        ``None`` when that message no longer exists (deleted with its stream, or by retention).
        """
        msg = await self.conn.msg_at(seq)
        if msg is None:
            return None
        found = {r.event_id: r for r in await self.reader.decode_msg(msg.subject, seq, msg.headers, msg.data or b"")}
        stored: list[RecordedEvent | None] = [found.get(e.event_id) for e in events]
        result = check_duplicate(sid, events, stored)
        if result is None:
            text = f"message id {events[0].event_id!r} was already used for other events (at sequence {seq})"
            raise DuplicateEventError(text, event_id=events[0].event_id, stream_id=sid)
        return result


def _raise_batch_error(err: dict[str, Any]) -> NoReturn:
    """Map the error reply of an atomic batch: a moved tail, an id twice in the batch, or the API error."""
    import nats.js.errors

    code = int(err.get("err_code", 0))
    if is_wrong_sequence(code, err.get("description", "")):
        raise WrongSequence
    if code == DUPLICATE_IN_BATCH_CODE:
        raise DuplicateInBatch
    raise nats.js.errors.APIError.from_error(err)
