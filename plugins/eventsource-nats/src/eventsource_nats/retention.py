"""Retention primitives: delete events older than a time, truncate a stream below a version.

JetStream can only remove whole messages, and an envelope holds a whole batch. So per event stream a
leading run of wholly deleted messages is purged in one request, other wholly deleted messages are
deleted one by one, and an envelope that keeps live events lists its deleted indexes in the hidden
bucket, which reads honour. Versions never change or go down: the stream's info record counts the
removed events, each once however runs race (:meth:`Retention._claim`), and remembers the last version, so an
emptied stream keeps its version. Both primitives
read a stream from its start only up to the first message they keep (``delete_events_before`` with
``retention_scan="leading"``: the first event at or after the cutoff; by default it reads every message,
since timestamps need not run in stream order), so their reads follow what they delete. A guarded
truncation (``if_holds``) checks the stream's incarnation after its read (:class:`_Holds`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import itertools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderTimeoutError, StreamNotFoundError

from eventsource_nats import records
from eventsource_nats.naming import Names, split_position, stream_token
from eventsource_nats.reads import stream_id_from
from eventsource_nats.records import HDR_COUNT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence
    from datetime import datetime

    from eventsource.model import RecordedEvent

    from eventsource_nats.connection import Connection
    from eventsource_nats.index import IdIndex
    from eventsource_nats.reads import Reader
    from eventsource_nats.writers import Tail


SEQUENCE_NOT_FOUND = 10043
"""err_code of a message delete whose message is already gone (nats-server 2.9)."""
MSG_DELETE_FAILED = 10057
"""err_code of a failed message delete; with "no message found", the message is already gone (current servers)."""
GETS_FIRST = 16
"""Messages of a stream ``delete_events_before`` reads with single gets before it opens a consumer."""


@dataclass
class _Holds:
    """A guarded truncation's ``if_holds`` event and the message found holding it (``seq``; 0: not yet).

    A message outlives a delete_stream of its incarnation only if it is not purged, and sequences are never
    reused; so the message (stored before the run began: ``seq <= start_seq``) read again after the scan, and
    between each read of the info record and its write, proves the run saw and counts only that incarnation.
    Every deletion then names sequences the scan read, which a stream created again later cannot hold.
    """

    version: int
    event_id: str
    subject: str
    stop_version: int  # the scan reads every message holding a version below this one
    start_seq: int  # the subject's last sequence as the run began
    seq: int = 0
    other: bool = False  # the scan read another event at ``version`` (or this one twice)

    def note(self, rec: RecordedEvent) -> None:
        """Look at an event the scan read."""
        if rec.version == self.version:
            seq = split_position(rec.position)[0]
            if rec.event_id != self.event_id or self.seq not in (0, seq):
                self.other = True
            self.seq = seq


@dataclass
class _Plan:
    """What to delete of one event stream (one subject); whole messages as (seq, events the message holds)."""

    purge_below: int = 0
    prefix: bool = True
    leading: list[tuple[int, int]] = field(default_factory=list)  # the leading run it purges
    singles: list[tuple[int, int]] = field(default_factory=list)  # the messages deleted one by one
    runs: list[list[int]] = field(default_factory=list)  # [first, last] seqs of singles with no kept message between
    partial: dict[int, list[int]] = field(default_factory=dict)
    envelopes: list[int] = field(default_factory=list)
    removed: int = 0
    version: int = 0
    stream_id: str = ""
    last: tuple[int, int] = (0, 0)  # the last message seen: (seq, events it loses)
    last_seq: int = 0  # the seq of the message added before the one being added
    holds: _Holds | None = None  # a guarded truncation's event (``if_holds``)
    lost: list[int] = field(default_factory=list)  # envelopes it marked that another run claimed whole

    def add(
        self, seq: int, count: int, live: list[RecordedEvent], gone: list[RecordedEvent], hidden: frozenset[int]
    ) -> None:
        """Account for the message at ``seq`` (``count`` events): its ``live`` ones, of which ``gone`` are to go.

        A message with no live event (every event marked deleted) goes whole: it must not stop a leading run.
        """
        if live:
            self.stream_id = live[0].stream_id
        self.removed += len(gone)
        self.last = (seq, len(gone))
        chained = bool(self.singles) and self.runs[-1][1] == self.last_seq
        self.last_seq = seq
        if len(gone) == len(live):
            if self.prefix:
                self.purge_below = seq + 1
                self.leading.append((seq, count))
            else:
                self.singles.append((seq, count))
                if chained:
                    self.runs[-1][1] = seq
                else:
                    self.runs.append([seq, seq])
        else:
            self.prefix = False
            if gone:
                self.partial[seq] = sorted(hidden | {split_position(r.position)[1] for r in gone})

    def keep_last(self) -> None:
        """Keep the subject's last message when it would be deleted one by one (live ones come before it)."""
        if self.singles and self.singles[-1][0] == self.last[0]:
            self.singles.pop()
            self.removed -= self.last[1]
            if self.runs[-1][0] == self.last[0]:
                self.runs.pop()
            else:  # the run held the single before it too
                self.runs[-1][1] = self.singles[-1][0]

    def work(self) -> bool:
        """Whether the plan deletes or purges anything."""
        return bool(self.leading or self.singles or self.partial)


def _covers(headers: dict[str, str] | None, version: int) -> bool:
    """Whether a message with ``headers`` holds ``version``."""
    first_v, last_v = records.message_versions(headers)
    return first_v <= version <= last_v


def _tally(info: dict[str, Any]) -> tuple[Any, ...]:
    """What :meth:`Retention._bump_info` changes in an info record (to skip a write that changes nothing)."""
    keys = ("removed", "known_version", "counted_below")
    return (*(int(info.get(k, 0)) for k in keys), *(info.get(k) for k in ("gone", "gone_runs", "hides")))


def _merged(runs: Iterable[Sequence[int]], below: int) -> list[list[int]]:
    """``runs`` ([first, last] sequences) as sorted disjoint runs, the parts below ``below`` left out."""
    out: list[list[int]] = []
    for first, last in sorted((max(int(a), below), int(b)) for a, b in runs if int(b) >= below):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


class Retention:
    """Deletes events; every stream it touches is dropped from the append ``tails`` cache."""

    def __init__(self, conn: Connection, reader: Reader, tails: dict[str, Tail], index: IdIndex) -> None:
        self.conn = conn
        self.reader = reader
        self.tails = tails
        self.index = index

    async def truncate_stream(
        self, stream_id: str, before_version: int, if_holds: tuple[int, str] | None = None
    ) -> int:
        """Delete events below ``before_version``: purge whole messages, mark the rest of an envelope.

        With ``if_holds``, only in the incarnation holding that event: checked after the scan (:class:`_Holds`).
        """
        conn = self.conn
        conn.require()

        def victims(rec: RecordedEvent) -> bool:
            return rec.version < before_version

        async def run() -> int:
            token = stream_token(stream_id)
            subject = conn.names.subject(token)
            (info, _), last = await asyncio.gather(conn.info_get(token), conn.last_msg(subject))
            if info is None and last is None:
                raise StreamNotFoundError(f"stream {stream_id!r} does not exist", stream_id=stream_id)
            if if_holds is None:
                return await self._delete_where(subject, victims, stop_version=before_version)
            start = int(last.seq) if last is not None else 0
            holds = _Holds(if_holds[0], if_holds[1], subject, before_version, start)

            def noted(rec: RecordedEvent) -> bool:
                holds.note(rec)
                return rec.version < before_version

            plan = (await self._plan(subject, noted, before_version)).get(token)
            if plan is None or not plan.work():
                return 0
            plan.holds = holds
            return await self._carry_out(token, plan)

        return await conn.call(f"truncate {stream_id!r}", run())

    async def _held(self, h: _Holds) -> bool:
        """Whether the stream still holds ``h``'s event in the message found for it (found first if need be)."""
        conn = self.conn
        if h.other or (not h.seq and h.version < h.stop_version):
            return False  # the scan read another event there, or read every message up to it and missed it
        if not h.seq:
            h.seq = await self._find(h)
            return 0 < h.seq <= h.start_seq
        m = await conn.msg_at(h.seq)
        return m is not None and m.subject == h.subject and h.seq <= h.start_seq

    async def _find(self, h: _Holds) -> int:
        """The sequence of the message holding ``h``'s event live on ``h.subject`` now (0: none)."""
        conn = self.conn
        last = await conn.last_msg(h.subject)
        if last is None or records.message_versions(last.headers)[1] < h.version:
            return 0
        m = last
        if records.message_versions(last.headers)[0] > h.version:  # an earlier message: the id index, else seek
            loc = await self.index.locate(h.event_id)
            m = await conn.msg_at(loc[0]) if loc is not None else None
            if m is None or m.subject != h.subject or not _covers(m.headers, h.version):
                m = await conn.next_msg(h.subject, await self.reader.seek(h.subject, h.version, 1, int(last.seq)))
            if m is None or not _covers(m.headers, h.version):
                return 0
        recs = await self.reader.decode_msg(h.subject, int(m.seq), m.headers, m.data or b"")
        return int(m.seq) if any(r.version == h.version and r.event_id == h.event_id for r in recs) else 0

    async def _exists(self, subject: str, seq: int) -> bool:
        """Whether the message at ``seq`` is still on ``subject``."""
        m = await self.conn.msg_at(seq) if seq else None
        return m is not None and m.subject == subject

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events with ``timestamp < cutoff`` (one stream or all), by the ``retention_scan`` setting.

        ``full`` (the default) reads every message of the event streams and deletes every older event,
        wherever it sits: timestamps are the caller's (imports, backfills, skewed clocks) and need not run
        in stream order. ``leading`` deletes only each stream's leading run (:meth:`_leading_runs`).
        """
        conn = self.conn
        conn.require()
        if conn.settings["retention_scan"] == "leading":
            return await self._leading_runs(cutoff, stream_id)
        n = conn.names
        subject = n.subject(stream_token(stream_id)) if stream_id is not None else n.events_wildcard
        doomed = self._delete_where(subject, lambda r: r.timestamp < cutoff)
        return await conn.call("delete events before a time", doomed)

    async def _leading_runs(self, cutoff: datetime, stream_id: str | None) -> int:
        """Delete each event stream's leading run of events with ``timestamp < cutoff`` (``retention_scan="leading"``).

        The streams come from the stream info's per-subject state (one request per 100,000 streams); each
        is read from its first message up to the first event at or after ``cutoff``, which stays with
        everything after it. An older event behind a newer one (client timestamps that run backwards) stays
        until a run finds nothing newer before it: never, while the newer one is kept.
        """
        conn = self.conn
        n = conn.names

        async def run() -> int:
            if stream_id is not None:
                subjects = [n.subject(stream_token(stream_id))]
            else:
                subjects = sorted(await conn.subjects(n.stream, n.events_wildcard))
            total = 0
            for subject in subjects:
                plan = await self._leading_run(subject, lambda r: r.timestamp < cutoff)
                if plan.work():
                    total += await self._carry_out(n.token_of_subject(subject), plan)
            return total

        return await conn.call("delete events before a time", run())

    async def _leading_run(self, subject: str, doomed: Callable[[RecordedEvent], bool]) -> _Plan:
        """The plan deleting ``subject``'s events from its start up to the first one that is not ``doomed``.

        The first :data:`GETS_FIRST` messages are next-by-subject gets (one request each, no consumer: a stream
        with nothing to delete costs one get); a longer run continues through a pull consumer, whose pages can
        read past the cut by at most one page.
        """
        plan = _Plan()
        token = self.conn.names.token_of_subject(subject)
        seq = 1
        for _ in range(GETS_FIRST):
            m = await self.conn.next_msg(subject, seq)
            if m is None:
                plan.keep_last()  # the whole stream was read: its last message stays while an earlier one does
                return plan
            seq = int(m.seq)
            if await self._take(plan, token, seq, m, doomed):
                return plan
            seq += 1
        async with contextlib.aclosing(self.reader.consume(subject, seq, 256)) as msgs:
            async for m in msgs:
                if await self._take(plan, token, m.metadata.sequence.stream, m, doomed):
                    return plan
        plan.keep_last()
        return plan

    async def _take(self, plan: _Plan, token: str, seq: int, m: Any, doomed: Callable[[RecordedEvent], bool]) -> bool:
        """Add the leading doomed events of message ``m`` (from a get or a consumer) to ``plan``; True: the run ends."""
        headers, data = m.headers, m.data
        _, last_v = records.message_versions(headers)
        plan.version = max(plan.version, last_v)
        count = int((headers or {}).get(HDR_COUNT, "1"))
        hidden = await self.reader.hidden(token, seq) if count > 1 else frozenset()
        if count > 1:
            plan.envelopes.append(seq)
        live = records.decode(data, headers, seq, stream_id_from(m.subject, data), hidden)
        gone = list(itertools.takewhile(doomed, live))
        plan.add(seq, count, live, gone, hidden)
        return len(gone) < len(live)

    async def _delete_where(
        self, subject: str, doomed: Callable[[RecordedEvent], bool], stop_version: int | None = None
    ) -> int:
        """Delete matching events of the messages on ``subject``; versions never change or go down.

        A subject's last message stays while an earlier one does (events whose client timestamps run
        backwards): the stream's tail is read from it, and nats-server 2.9 no longer finds a subject's
        last message once it is deleted.
        """
        plans = await self._plan(subject, doomed, stop_version)
        total = 0
        for token, plan in plans.items():
            if plan.work():
                total += await self._carry_out(token, plan)
        return total

    async def _plan(
        self, subject: str, doomed: Callable[[RecordedEvent], bool], stop_version: int | None
    ) -> dict[str, _Plan]:
        """Read the messages on ``subject`` (up to ``stop_version``): a plan per event stream."""
        n = self.conn.names
        plans: dict[str, _Plan] = {}
        to_the_end = True
        async with contextlib.aclosing(self.reader.consume(subject, 1, 256)) as msgs:
            async for m in msgs:
                seq = m.metadata.sequence.stream
                token = n.token_of_subject(m.subject)
                first_v, last_v = records.message_versions(m.headers)
                if stop_version is not None and first_v >= stop_version:
                    to_the_end = False
                    break
                plan = plans.setdefault(token, _Plan())
                plan.version = max(plan.version, last_v)
                count = int((m.headers or {}).get(HDR_COUNT, "1"))
                hidden = await self.reader.hidden(token, seq) if count > 1 else frozenset()
                if count > 1:
                    plan.envelopes.append(seq)
                live = records.decode(m.data, m.headers, seq, stream_id_from(m.subject, m.data), hidden)
                plan.add(seq, count, live, [r for r in live if doomed(r)], hidden)
        if to_the_end:
            for plan in plans.values():
                plan.keep_last()
        return plans

    async def _carry_out(self, token: str, plan: _Plan) -> int:
        """Apply one stream's plan; returns how many events THIS run counted as deleted (another run may race it).

        The envelope marks come first, then one write of the info record claims the whole messages and counts
        the marks (:meth:`_claim`), then the messages go: what a reader can no longer see is counted by then, an
        emptied stream keeps its version, and each event is counted once however runs interleave.
        """
        conn = self.conn
        n = conn.names
        subject = n.subject(token)
        holds = plan.holds
        last = await conn.last_msg(subject)
        version = max(plan.version, records.message_versions(last.headers)[1] if last else 0)
        held = None if holds is None else functools.partial(self._held, holds)
        if held is not None and not await held():
            return 0  # not the stream holding the guarded event: nothing is marked
        for seq, idxs in plan.partial.items():
            await self._hide(token, seq, idxs)
        counted = await self._bump_info(token, plan, version, witness=held)
        self.tails.pop(token, None)
        if counted is None:  # deleted by another process since the plan was read (or its guarded event went)
            # the marks made stand where their envelope still does (then it is this incarnation's): count them
            marks = _Plan(partial=plan.partial, stream_id=plan.stream_id)
            counted = await self._bump_info(token, marks, 0) or 0
            await self._unmark(token, plan.partial)
            return counted
        if plan.purge_below:
            await conn.purge(n.stream, filter=subject, seq=plan.purge_below)
        for seq, _ in plan.singles:
            await self._delete_msg(seq)
        whole = [seq for seq, events in (*plan.leading, *plan.singles) if events > 1]
        for seq in whole:
            await conn.purge(f"KV_{n.hidden_bucket}", filter=f"$KV.{n.hidden_bucket}.{Names.hidden_key(token, seq)}")
        await self._unmark(token, plan.lost)
        self.tails.pop(token, None)
        return counted

    async def _unmark(self, token: str, seqs: Iterable[int]) -> None:
        """Purge this run's marks of envelopes at ``seqs`` that are gone (another run's, or a deleted stream's).

        A sequence is never reused, so such a mark hides nothing; left, it would keep reads looking marks up.
        """
        n = self.conn.names
        for seq in seqs:
            if not await self._exists(n.subject(token), seq):
                key = f"$KV.{n.hidden_bucket}.{Names.hidden_key(token, seq)}"
                await self.conn.purge(f"KV_{n.hidden_bucket}", filter=key)

    async def _hide(self, token: str, seq: int, idxs: list[int]) -> int:
        """Add ``idxs`` to the deleted indexes of the envelope at ``seq`` (CAS); how many were not there yet."""
        import nats.js.errors

        conn = self.conn
        bucket = conn.names.hidden_bucket
        key = Names.hidden_key(token, seq)
        for _ in range(50):
            entry = await conn.kv_get(bucket, key)
            before = set(json.loads(entry.value)) if entry is not None and entry.value else set()
            after = before | set(idxs)
            if after == before:
                return 0
            value = json.dumps(sorted(after)).encode()
            try:
                if entry is None:
                    await conn.kv[bucket].create(key, value)
                else:
                    await conn.kv[bucket].update(key, value, last=entry.revision)
            except (
                nats.js.errors.KeyWrongLastSequenceError,
                nats.js.errors.BadRequestError,
                nats.js.errors.KeyNotFoundError,
            ):
                # KeyNotFoundError: kv.create found the key taken, then purged when it re-read it: try again
                continue
            return len(after - before)
        msg = f"could not mark deleted events of the message at sequence {seq} under contention"
        raise ProviderTimeoutError(msg)

    async def _delete_msg(self, seq: int) -> bool:
        """Delete the message at ``seq``; ``False`` when it is already gone (another run deleted it)."""
        import nats.js.errors

        try:
            await self.conn.api(f"STREAM.MSG.DELETE.{self.conn.names.stream}", {"seq": seq})
        except nats.js.errors.APIError as e:
            if e.err_code == SEQUENCE_NOT_FOUND or (
                e.err_code == MSG_DELETE_FAILED and "no message found" in (e.description or "")
            ):
                return False
            raise
        return True

    async def _bump_info(
        self, token: str, plan: _Plan, version: int, *, witness: Callable[[], Awaitable[bool]] | None = None
    ) -> int | None:
        """Claim ``plan``'s deletions in the stream's info record and remember ``version`` (CAS loop); the count.

        ``None`` when the stream has neither a record nor a message, or is being deleted: not to be brought back;
        nor when ``witness`` (awaited after each read of the record) says the incarnation is gone.
        """
        import nats.js.errors

        for _ in range(50):
            got = await self._record(token, plan.stream_id)
            if got is None:
                return None
            info, rev = got
            if witness is not None and not await witness():
                return None  # deleted since the run read it (and perhaps created again: not this run's record)
            before = _tally(info)
            counted = await self._claim(token, info, plan)
            info["removed"] = int(info.get("removed", 0)) + counted
            info["known_version"] = max(int(info.get("known_version", 0)), version)
            if _tally(info) == before:
                return 0  # every deletion planned was claimed and counted by another run already
            info.pop("claim", None)  # the stream has had events: no append can count as its creator any more
            try:
                if not await self._write_info(token, info, rev, witness):
                    return None
            except (
                nats.js.errors.KeyWrongLastSequenceError,
                nats.js.errors.BadRequestError,
                nats.js.errors.KeyNotFoundError,
            ):
                # KeyNotFoundError: kv.create found the key taken, then purged when it re-read it: try again
                continue
            return counted
        msg = f"could not update the info of stream {plan.stream_id!r} under contention"
        raise ProviderTimeoutError(msg)

    async def _claim(self, token: str, info: dict[str, Any], plan: _Plan) -> int:
        """Record ``plan``'s deletions in ``info`` (read at one revision); how many events they add to ``removed``.

        The record is the one place a deleted event is counted. A message taken whole is claimed before it goes:
        a leading run moves ``counted_below`` (every message of the stream below it is counted), a single is
        listed in ``gone``; either counts the message's events less those ``hides`` already counted from its
        marks. An envelope's marks are counted from the hidden bucket, read after this run made its own, up to
        what ``hides`` says was counted, while the envelope is still there. A run that planned a message another run
        claimed counts nothing of it.
        """
        below = int(info.get("counted_below", 0))
        gone = set(info.get("gone", ()))
        runs = _merged(info.get("gone_runs", ()), 0)
        starts = [r[0] for r in runs]

        def claimed(seq: int) -> bool:
            at = bisect.bisect_right(starts, seq) - 1
            return seq < below or seq in gone or (at >= 0 and seq <= runs[at][1])

        hides = {int(seq): int(n) for seq, n in info.get("hides", {}).items()}
        counted = 0
        plan.lost = []
        for seq, events in (*plan.leading, *plan.singles):
            if not claimed(seq):
                counted += events - hides.pop(seq, 0)
                gone.add(seq)
        # singles go into runs (a run covers every message of the stream between its ends: the scan read them in
        # order and deleted each), not one by one: a run of many singles would outgrow the record's max_payload
        gone.difference_update(seq for seq, _ in plan.singles)
        subject = self.conn.names.subject(token)
        for seq in plan.partial:
            # a message goes only after a claim: one gone unclaimed was the stream's before a delete_stream
            if claimed(seq) or not await self._exists(subject, seq):
                plan.lost.append(seq)
                continue
            marks = len(await self.reader.hidden(token, seq))
            if marks > hides.get(seq, 0):
                counted += marks - hides.get(seq, 0)
                hides[seq] = marks
        below = max(below, plan.purge_below)
        info["counted_below"] = below
        info["gone"] = sorted(seq for seq in gone if seq >= below)
        info["gone_runs"] = _merged([*runs, *plan.runs], below)
        info["hides"] = {str(seq): n for seq, n in sorted(hides.items()) if seq >= below}
        for key in ("gone", "gone_runs", "hides"):
            if not info[key]:
                del info[key]
        return counted

    async def _record(self, token: str, sid: str) -> tuple[dict[str, Any], int | None] | None:
        """The stream's info record and revision (a new one, revision ``None``, for a stream without one).

        ``None`` when the stream has neither a record nor a message, or is being deleted.
        """
        conn = self.conn
        info, rev = await conn.info_get(token)
        if info is not None and "deleting" in info:
            last = await conn.last_msg(conn.names.subject(token))
            if last is None or int(last.seq) <= int(info["deleting"]):
                return None  # a delete_stream under way (or interrupted before its purges: waits for a retry)
            del info["deleting"]  # a delete interrupted after the subject's purge, the id written again since
        if info is None:
            if await conn.last_msg(conn.names.subject(token)) is None:
                return None
            info = {"id": sid, "removed": 0, "known_version": 0, "metadata": {}}
        return info, rev

    async def _write_info(
        self, token: str, info: dict[str, Any], rev: int | None, witness: Callable[[], Awaitable[bool]] | None
    ) -> bool:
        """Write the record at ``rev`` (CAS; create for ``None``); ``False`` if ``witness`` then fails a creation.

        A delete_stream can purge the key after the check and the id be written again before the create, which
        then expects no record and succeeds: the record made is purged again (up to its own revision).
        """
        bucket = self.conn.names.info_bucket
        kv = self.conn.kv[bucket]
        if rev is not None:
            await kv.update(token, json.dumps(info).encode(), last=rev)
            return True
        created = await kv.create(token, json.dumps(info).encode())
        if witness is None or await witness():
            return True
        await self.conn.purge(f"KV_{bucket}", filter=f"$KV.{bucket}.{token}", seq=int(created) + 1)
        return False
