"""One live subscription: catch up from history a page at a time, then follow the store as it grows.

:class:`Subscription` is an async iterator of decoded :class:`~eventsource.model.Event` objects and an async
context manager. It pulls: it reads one page (``read_all_pages``, or ``read_stream_pages`` for one stream)
after the last position it handed out, delivers it, and reads the next only when the consumer asks, so it
holds at most one page whatever the backlog. When a read comes back empty it waits on the provider's
``wait_for_change`` for at most ``poll_interval`` and reads again, so a lost wake-up costs at most that
interval. Checkpoints are committed explicitly (:meth:`Subscription.commit`) or every ``commit_every``
events once the consumer has asked for the next one. ``docs/subscriptions.md`` has the guarantees.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias

from eventsource.checkpoints.base import Checkpoint, CheckpointStore
from eventsource.errors import (
    ConfigurationError,
    ConflictError,
    StreamDeletedError,
    UnsupportedOperationError,
    ValidationError,
)
from eventsource.manager.validation import check_number
from eventsource.subscriptions.anchor import check_anchor
from eventsource.subscriptions.pages import (
    SKIPPED_KEPT,
    EventDecodeError,
    PageDelivery,
    SkippedEvent,
    _fields,
    first_page,
    first_rows,
    report_deleted,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.model import Event, RecordedEvent
    from eventsource.provider import Provider


__all__ = [  # with the names of pages.py its callers import from here
    "BACKOFF_AFTER",
    "DECODE_ERROR_POLICIES",
    "END",
    "SKIPPED_KEPT",
    "CheckpointAheadError",
    "CheckpointFilterError",
    "EventDecodeError",
    "SkippedEvent",
    "StartAt",
    "Subscription",
    "Target",
    "first_page",
    "first_rows",
]

BACKOFF_AFTER = 2
"""Empty reads in a row after which a subscription pauses before waiting again (see ``_wait``)."""

DECODE_ERROR_POLICIES = ("raise", "skip")
"""What a subscription does with an event it cannot decode (``subscribe(on_decode_error=...)``)."""

END: Final = "end"
"""``subscribe(from_position=END)`` (or ``from_version``): only what is committed after the subscription starts."""
StartAt: TypeAlias = int | Literal["end"]
"""Where a subscription starts: a position (one stream: a version), or :data:`END`."""


class CheckpointFilterError(ConfigurationError):
    """The stored checkpoint was written by a subscription with another filter (stream prefixes, event types).

    Its position counts events that filter let through, so resuming with another filter would silently
    skip or repeat events. Delete the checkpoint, or subscribe with ``reset=True``, to start over.
    """


class CheckpointAheadError(ConflictError):
    """A subscription's start (a checkpoint, a position) lies beyond anything the store has handed out.

    Typical causes: a checkpoint from another store, or a failover that lost the events it counted. Resuming
    would silently skip whatever the store writes next below that position, so the subscription refuses.
    """


@dataclass(frozen=True, slots=True)
class Target:
    """What a subscription follows: one stream, or every stream filtered by id prefix and event type."""

    stream_id: str | None = None
    prefixes: tuple[str, ...] = ()
    event_types: frozenset[str] = frozenset()
    stored_types: frozenset[str] = frozenset()
    """The stored type names matched: ``event_types`` and the old names read as one of them (empty: those)."""

    @property
    def scope(self) -> str:
        """The checkpoint scope: ``"all"``, ``"all filter=<fingerprint>"`` (global positions) or ``"stream:<id>"``.

        A filtered subscription's scope carries :attr:`fingerprint`, so a checkpoint is never resumed (nor
        overwritten, see ``CheckpointStore.check_move``) by a subscription with another filter.
        """
        if self.stream_id is not None:
            return f"stream:{self.stream_id}"
        return "all" if not self.prefixes and not self.event_types else f"all filter={self.fingerprint}"

    @property
    def fingerprint(self) -> str:
        """A short hash of the filter (prefixes and event types, order ignored)."""
        spec = json.dumps({"prefixes": sorted(set(self.prefixes)), "types": sorted(self.event_types)})
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The filter for people: ``stream <id>``, ``all streams`` or the prefixes and types."""
        if self.stream_id is not None:
            return f"stream {self.stream_id!r}"
        parts = [f"stream_prefix={list(self.prefixes)}"] if self.prefixes else []
        parts += [f"event_types={sorted(self.event_types)}"] if self.event_types else []
        return " ".join(parts) or "all streams, unfiltered"

    def wants(self, rec: RecordedEvent) -> bool:
        """Whether ``rec`` is delivered (the filters run on stored fields, before decoding)."""
        return self.wants_fields(rec.stream_id, rec.event_type)

    def wants_fields(self, stream_id: str, event_type: str) -> bool:
        """Whether an event of ``stream_id`` and ``event_type`` is delivered."""
        if self.prefixes and not stream_id.startswith(self.prefixes):
            return False
        return not self.event_types or event_type in (self.stored_types or self.event_types)


class Subscription(PageDelivery):
    """Catch-up then live delivery of one provider's events; see the module docstring.

    Built by :meth:`EventSourcingManager.subscribe <eventsource.manager.EventSourcingManager.subscribe>`.
    """

    def __init__(
        self,
        provider: Provider,
        policy: CallPolicy,
        codec: EventCodec,
        target: Target,
        *,
        start: StartAt,
        page_size: int,
        poll_interval: float,
        checkpoints: CheckpointStore | None,
        name: str | None,
        source: str,
        commit_every: int | None,
        owns_checkpoints: bool = False,
        on_decode_error: str = "raise",
        reset: bool = False,
    ) -> None:
        self.provider = provider
        self.target = target
        self.name = name
        self.source = source
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.checkpoints = checkpoints
        self.commit_every = commit_every
        self._policy = policy
        self._codec = codec
        self._owns_checkpoints = owns_checkpoints
        self.on_decode_error = on_decode_error
        self._reset = reset
        self.skipped = 0
        """How many events ``on_decode_error="skip"`` passed over."""
        self.skipped_events: collections.deque[SkippedEvent] = collections.deque(maxlen=SKIPPED_KEPT)
        """The latest of them, with the error each raised."""
        self._from_end = start == END  # start at the store's end, taken by start() (a checkpoint comes first)
        first = 0 if isinstance(start, str) else start  # first position (or version) wanted
        self._cursor = first - 1  # last position (or version) read from the store
        self._mark = first - 1  # last position (or version) delivered or filtered out: what commit() stores
        self._last_id: str | None = None  # event id at _cursor (detects a re-created stream, a replaced store)
        self._before: tuple[int, str | None] = (first - 1, None)  # version (position) and id the buffer follows
        self._resumed = False  # the first read checks an event a checkpoint named (check_first)
        # one page: RecordedEvent objects, or a RowPage's rows (then _conv is its timestamp conversion); the
        # items before _at were handed out or passed over
        self._buffer: list[Any] = []
        self._at = 0
        self._rows = False
        self._conv: Any = None
        self._events: Iterator[Event] | None = None  # the buffer's wanted events, decoded lazily, in order
        self._started = False
        self._closed = False
        self._since_commit = 0
        self._waiter: asyncio.Future[None] | None = None  # the read or wait in progress (close() ends it)
        self._at_tail = True  # one-stream: the last read came back short, so the next may find nothing
        self._head: int | None = None  # one-stream: the store's head taken just before the last read
        self._waited: int | None = None  # one-stream: the head the last wait started from
        self._empty_reads = 0  # reads in a row that found nothing new (a wake-up that keeps firing for nothing)
        self.reads = 0
        """Store reads made so far (with :attr:`last_read_empty`, how a projection runner knows it caught up)."""
        self.last_read_empty = False
        """Whether the last store read found nothing past what was already read."""
        self.committed: Checkpoint | None = None
        """The last checkpoint this subscription stored or resumed from."""
        self._passed_at: tuple[float, int] | None = None  # commit_every: (loop time, mark) of the last commit
        self._handed: int | None = None  # position (one-stream: version) of the last event handed out
        self._putting = asyncio.Lock()  # held by a checkpoint put, and by close() closing a store it opened
        self._reading = asyncio.Lock()  # held by the task reading the next page (or waiting for the store)

    def __repr__(self) -> str:
        return (
            f"Subscription(name={self.name!r}, scope={self.target.scope!r}, at={self._mark}, buffered={self.buffered})"
        )

    # ------------------------------------------------------------------ state

    @property
    def buffered(self) -> int:
        """Events read from the store and not handed out yet (never more than one page)."""
        return len(self._buffer) - self._at

    @property
    def position(self) -> int:
        """The last global position (one-stream subscriptions: version) delivered or filtered out."""
        return self._mark

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        """Resume from the stored checkpoint (if any) and check the start against the store. Idempotent."""
        if self._started:
            return self
        if self.checkpoints is not None and self.name is not None:
            await self.checkpoints.connect()
            if self._reset:
                await self.checkpoints.delete(self.name, self.source)
            cp = await self.checkpoints.get(self.name, self.source)
            if cp is not None:
                if cp.scope != self.target.scope and cp.scope.startswith("all") and self.target.stream_id is None:
                    msg = (
                        f"checkpoint {self.name!r} on {self.source!r} was written by a subscription with another "
                        f"filter (scope {cp.scope!r}); this one has {self.target.describe()} (scope "
                        f"{self.target.scope!r}). Delete the checkpoint or subscribe with reset=True to start over"
                    )
                    raise CheckpointFilterError(msg, field="name", stored=cp.scope, wanted=self.target.scope)
                if cp.scope != self.target.scope:
                    msg = (
                        f"checkpoint {self.name!r} on {self.source!r} counts {cp.scope!r}, "
                        f"but this subscription counts {self.target.scope!r}"
                    )
                    raise ConfigurationError(msg, field="name")
                self._cursor = self._mark = cp.position
                self.committed = cp
                if cp.event_id is not None:
                    self.check_first(cp.event_id)
        if self._from_end and self.committed is None:
            await self._start_at_end()
            if self.checkpoints is not None and self.name is not None:
                # stored now: stopped before its first commit, it resumes here, not at a later end (a skip)
                at = max(self._mark, 0)
                cp = Checkpoint(self.name, self.source, self.target.scope, at, event_id=self.event_id_at(at))
                self.committed = await self.checkpoints.put(cp)
        else:
            await self._check_start(from_checkpoint=self.committed is not None)
        self._started = True
        return self

    async def _start_at_end(self) -> None:
        """Start after what the store holds now: its ``end_position`` (one stream: after its current version).

        On a store with late commits the end is the safe horizon, below every transaction still running, so
        an append that had begun before the subscription started is delivered when it commits, not skipped.
        """
        p = self.provider
        sid = self.target.stream_id
        if sid is not None:
            info = await self._policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))
            self._cursor = self._mark = info.version if info is not None else 0
            if info is not None and info.last_event_id is not None and info.version > 0:
                self._last_id = info.last_event_id  # the next read checks it is still there (a re-created stream)
                self._before = (self._cursor, self._last_id)
            return
        end = await self._policy.run(p, "end_position", p.end_position)
        if end is None:
            msg = f"provider {p.kind!r} cannot say where its end is: subscribe from a position instead"
            raise UnsupportedOperationError(msg, provider=p.kind, operation="subscribe", capability="end_position")
        self._cursor = self._mark = end - 1

    async def _check_start(self, *, from_checkpoint: bool) -> None:
        first = self._cursor + 1
        if first <= 1:
            return
        p = self.provider
        if self.target.stream_id is None:
            head = await self._policy.run(p, "head_position", p.head_position)
            if head is not None and first - 1 > head:
                msg = f"subscription start {first} is beyond the store's highest position {head} on {self.source!r}"
                raise CheckpointAheadError(msg, position=first - 1, head=head)
        else:  # from_version beyond the stream would pass over, unseen, the versions it grows by up to there
            sid = self.target.stream_id
            info = await self._policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))
            version = info.version if info is not None else 0
            if first - 1 > version:
                msg = (
                    f"checkpoint {self.name!r} is at version {first - 1} of {sid!r}, which is at version {version}"
                    if from_checkpoint
                    else f"from_version={first} is beyond {sid!r}, which is at version {version} (next: {version + 1})"
                )
                raise CheckpointAheadError(msg, position=first - 1, head=version)

    async def close(self) -> None:
        """Stop: the iterator ends, the buffer is dropped. Uncommitted progress is not committed. Idempotent."""
        self._closed = True
        if self._buffer:  # a commit() after this still names its event
            self._before = (self._mark, self.event_id_at(self._mark))
        self._buffer, self._at = [], 0
        self._events = None
        waiter = self._waiter
        if waiter is not None:
            waiter.cancel()  # a consumer waiting for the store to change ends now, not after poll_interval
        if self._owns_checkpoints and self.checkpoints is not None:
            async with self._putting:  # a commit under way (commit_every's, say) lands before the store closes
                await self.checkpoints.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ iteration

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        """The next event: from the buffer, else the next page, else after the store changes."""
        if self._events is not None and self._rows and self.commit_every is None and not self._closed:
            event = self._next_decoded()
            if event is not None:
                return self._hand(event)
        if not self._started:
            await self.start()
        if self.commit_every is not None and self._since_commit >= self.commit_every and not self._closed:
            await self.commit()  # the consumer asked for more: it is done with what it got
        while not self._closed:
            got: list[Event] = []
            self._take_buffered(got, 1)
            if got:
                return self._hand(got[0])
            if self.commit_every is not None or self._all_committed():
                await self._commit_passed()
            await self._read_turn()
        raise StopAsyncIteration

    async def _read_turn(self) -> None:
        """Read the next page, or wait for the store after an empty one; tasks sharing the subscription take turns.

        A task whose turn comes after another's read filled the buffer reads nothing (each page is read once,
        so each event is handed out once). The read and the wait run as one future close() cancels: a close
        that lands during the read (or the pause before the wait) ends this call too, not poll_interval later.
        """
        async with self._reading:
            if self._closed or self.buffered:
                return
            step = self._waiter = asyncio.ensure_future(self._step())
            try:
                await step
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self._closed or (task is not None and task.cancelling()):
                    raise  # the consumer was cancelled, not the step ended by close()
            finally:
                self._waiter = None

    def _hand(self, event: Event) -> Event:
        self._handed = event.version if self.target.stream_id is not None else event.position
        return event

    def _all_committed(self) -> bool:
        """Manual commits: whether every event handed out is committed, so what the filters pass over can follow."""
        if self.checkpoints is None or self.name is None:
            return False
        return self._handed is None or (self.committed is not None and self.committed.position >= self._handed)

    async def _commit_passed(self) -> None:
        """While nothing is handed out, commit what the filters passed over (once a poll_interval).

        With ``commit_every`` the consumer asked for more, so it is done with what it got; with manual commits,
        only once it committed everything handed out. Without this a filtered subscription's
        checkpoint (and its lag) stayed behind every other event stored until one of its own came.
        """
        now = asyncio.get_running_loop().time()
        if self._passed_at is None:
            self._passed_at = (now, self._mark)
        elif self._mark > self._passed_at[1] and now - self._passed_at[0] >= self.poll_interval:
            await self.commit()

    async def _step(self) -> None:
        if not await self._fill():
            await self._wait()

    async def next_batch(self, max_events: int) -> list[Event]:
        """Up to ``max_events`` events: waits for the first, then takes only what is buffered already.

        An empty list means the subscription was closed. A record that fails to decode ends the batch
        before it; the next call raises its error (so no event taken for the batch is lost).

        :raises ValidationError: ``max_events`` is not an int of at least 1.
        """
        max_events = check_number("max_events", max_events, minimum=1)  # the except below would hide a bad one
        try:
            out = [await self.__anext__()]
        except StopAsyncIteration:
            return []
        if not self._closed:
            with contextlib.suppress(Exception):  # the record stays buffered: the next call raises it again
                self._take_buffered(out, max_events)  # what it put in ``out`` counts as delivered: hand it out
            self._hand(out[-1])
        return out

    async def _fill(self) -> bool:
        """Read the next page into the buffer; whether it held anything."""
        p = self.provider
        page: Sequence[Any]
        conv: Any = None
        if self.target.stream_id is None:
            page, conv = await self._policy.run(p, "read_all", self._all_page, counted=lambda r: len(r[0]))
        else:
            # near the tail, the head a wait will start from is taken *before* the read: an append landing
            # between an empty read and a later head would already be below it and wake nobody
            self._head = await self._policy.run(p, "head_position", p.head_position) if self._at_tail else None
            page = await self._stream_page()
            if not page and not self._at_tail:  # after a full page: read again with a head taken first
                self._head = await self._policy.run(p, "head_position", p.head_position)
                page = await self._stream_page()
            self._at_tail = len(page) < self.page_size
        self.reads += 1
        self.last_read_empty = not page
        if self._closed or not page:
            # one stream: a store grown since the last wait began woke it for real (another stream's append)
            grew = self._head is not None and self._waited is not None and self._head > self._waited
            self._empty_reads = 0 if grew else self._empty_reads + 1
            return False
        self._empty_reads = 0
        eid, _, _, version, position = _fields(page[-1])
        self._before = (self._cursor, self._last_id)  # the buffer before this page was all handed out or passed
        self._cursor = version if self.target.stream_id is not None else position
        self._last_id = eid
        self._rows, self._conv, self._events = conv is not None, conv, None
        self._buffer, self._at = list(page), 0  # a copy: the store may reuse its list
        return True

    async def _all_page(self) -> tuple[Sequence[Any], Any]:
        if self._resumed and self.reads == 0 and self._last_id is not None:  # a store replaced under a checkpoint
            await check_anchor(self.provider, self._cursor, self._last_id, self.name or self.target.describe())
        return await first_rows(self.provider.read_all_pages(from_position=self._cursor + 1, page_size=self.page_size))

    async def _stream_page(self) -> list[RecordedEvent]:
        """The next page of the stream, read from the last version handed out to check it is still there."""
        p, sid = self.provider, self.target.stream_id
        assert sid is not None
        check = self._last_id is not None and self._cursor >= 1
        lo = self._cursor if check else self._cursor + 1
        size = self.page_size + 1 if check else self.page_size  # the event at ``lo`` is checked, not held

        async def read() -> list[RecordedEvent]:
            return await first_page(p.read_stream_pages(sid, from_version=lo, page_size=size))

        page = await self._policy.run(p, "read_stream", read, stream=sid, counted=len)
        if check:
            if page and page[0].version == self._cursor:
                if page[0].event_id != self._last_id:
                    raise self._replaced()
                page = page[1:]
            elif not page:
                info = await self._policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))
                if info is None or info.version < self._cursor:
                    raise self._replaced()
        if page and self._cursor >= 1 and page[0].version > self._cursor + 1:  # versions are gap-free: deleted
            report_deleted(self.name or self.target.describe(), sid, self._cursor + 1, page[0].version)
        return page

    def _replaced(self) -> StreamDeletedError:
        sid = self.target.stream_id
        msg = f"stream {sid!r} was deleted under this subscription (at version {self._cursor}); subscribe again"
        if self.reads == 0 and self._resumed:
            msg = (
                f"stream {sid!r} no longer holds the event checkpoint {self.name!r} counted at version "
                f"{self._cursor} (deleted and created again since): delete the checkpoint or start over "
                "(subscribe with reset=True, runner.reset) to read the new stream from its start"
            )
        return StreamDeletedError(msg, stream_id=sid, version=self._cursor)

    def check_first(self, event_id: str) -> None:
        """Before the first read: check the store holds ``event_id`` at the start version (position) - 1.

        A resume from a checkpoint (or one kept elsewhere, a projection sink's) that names the event it counted:
        a stream deleted and created again since, or a store replaced by an older copy (all streams, see
        :mod:`~eventsource.subscriptions.anchor`), raises :class:`StreamDeletedError` instead of being passed over.
        """
        if self.reads == 0 and self._cursor >= 1:
            self._last_id, self._before, self._resumed = event_id, (self._cursor, event_id), True

    def event_id_at(self, version: int) -> str | None:
        """The id of the event at ``version`` (all streams: position) if it was the last handed out or passed."""
        if version == self._cursor:  # the page read last was handed out whole
            return self._last_id
        if self._at > 0:
            fields = _fields(self._buffer[self._at - 1])
            return fields[0] if fields[3 if self.target.stream_id is not None else 4] == version else None
        return self._before[1] if self._before[0] == version else None

    async def _wait(self) -> None:
        """Wait for a change after an empty read: the provider's wake-up, bounded by ``poll_interval``.

        A wake-up that keeps returning early while reads find nothing (a stale signal, a store bug) is slowed
        down by a growing pause, never longer than ``poll_interval``, and the event loop always gets a turn.
        A wait that lasted at least half of ``poll_interval`` resets that count: idling is not spinning.
        """
        p = self.provider
        pause = (
            0.0
            if self._empty_reads < BACKOFF_AFTER
            else min(self.poll_interval, 0.001 * 2 ** min(self._empty_reads, 12))
        )
        await asyncio.sleep(pause)
        if self.target.stream_id is None:
            after: int | None = self._cursor
        elif self._head is not None:
            after = self._head
        else:
            after = await self._policy.run(p, "head_position", p.head_position)
        if self._closed:
            return
        self._waited = after if self.target.stream_id is not None else None
        loop = asyncio.get_running_loop()
        began = loop.time()
        if after is None:
            await asyncio.sleep(self.poll_interval)
        else:
            await p.wait_for_change(after, self.poll_interval)
        if loop.time() - began >= self.poll_interval / 2:
            # a wait that ran (about) its course is an idle store, not a wake-up firing for nothing: no pause
            # next time, or an idle subscription would sleep blind for poll_interval before every wait
            self._empty_reads = 0

    # ------------------------------------------------------------------ checkpoints

    async def commit(self, event: Event | None = None) -> Checkpoint:
        """Store the checkpoint: after ``event`` (default: after everything handed out so far).

        :raises ConfigurationError: the subscription has no checkpoint store or no name.
        :raises ValidationError: ``event`` was not delivered by this subscription yet.
        """
        if self.checkpoints is None or self.name is None:
            msg = "this subscription has no checkpoint store and name (subscribe(..., checkpoint=..., name=...))"
            raise ConfigurationError(msg, field="checkpoint")
        at = self._mark
        if event is not None:
            at = event.version if self.target.stream_id is not None else event.position
            if at > self._mark or (self.target.stream_id is not None and event.stream_id != self.target.stream_id):
                msg = f"event {event.event_id!r} was not delivered by this subscription yet"
                raise ValidationError(msg, field="event")
        at = max(at, 0)
        eid = event.event_id if event is not None else self.event_id_at(at)
        cp = Checkpoint(self.name, self.source, self.target.scope, at, event_id=eid)
        async with self._putting:
            if self._closed and self._owns_checkpoints:  # close() closed the store it opened: open it for this put
                await self.checkpoints.connect()
                try:
                    self.committed = await self.checkpoints.put(cp)
                finally:
                    await self.checkpoints.close()
            else:
                self.committed = await self.checkpoints.put(cp)
        self._since_commit = 0
        self._passed_at = (asyncio.get_running_loop().time(), at)
        return self.committed
