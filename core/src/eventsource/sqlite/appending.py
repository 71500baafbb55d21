"""The SQLite provider's appends: one write transaction on the writer, from its thread or inline for a sync caller.

:class:`AppendCalls` is a base of :class:`~eventsource.sqlite.provider.SqliteProvider`. After each commit it wakes
this process's live subscriptions, weighs the WAL written toward the next checkpoint poke and, every
:data:`~eventsource.sqlite.counts.FOLD_EVERY` events, folds the stream counts, none of which is part of the result.
"""

from __future__ import annotations

from functools import partial
from time import monotonic
from typing import TYPE_CHECKING

from eventsource.errors import EventSourceError, ValidationError
from eventsource.inline import SYNC_TIMEOUT, inline_io_allowed
from eventsource.sqlite import counts
from eventsource.sqlite.appends import append_sync
from eventsource.sqlite.calls import ConnectionCalls, tx
from eventsource.sqlite.checkpoints import CHECKPOINT_EVERY, PAYLOAD_BYTES_PER_WEIGHT, append_weight, finish_then

if TYPE_CHECKING:
    import asyncio
    import sqlite3
    from collections.abc import Callable, Sequence

    from eventsource.model import AppendResult, Expected, NewEvent, NewStream
    from eventsource.sqlite.checkpoints import Checkpointer
    from eventsource.subscriptions.signal import ChangeSignal


class AppendCalls(ConnectionCalls):
    """``append`` and ``append_now``, and what follows each commit (see the module docstring)."""

    _checkpoints: Checkpointer | None
    _changes: ChangeSignal
    _unchecked: int
    _unfolded: int
    _wrote_at: float

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append ``events`` in one write transaction (see the module docstring): one thread hop."""
        if self._writer is not None and inline_io_allowed():  # what _on does, without its coroutine
            # this class's own append_now, not a subclass's: the same append, inline (the writer is set: never None)
            return AppendCalls.append_now(self, stream_id, events, expected, stream, timeout=SYNC_TIMEOUT.get())  # type: ignore[return-value]
        writer = self._writer
        result = await self._submit(writer, "append", self._append_call(stream_id, events, expected, stream))
        if self._appended(events):  # queued behind the append, not awaited: housekeeping, not part of the result
            try:
                self._submit(writer, "append", partial(tx, body=counts.fold)).add_done_callback(self._folded)
            except EventSourceError as e:  # closed meanwhile
                self._fold_failed(e)
        return result

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        *,
        timeout: float | None,
    ) -> AppendResult | None:
        """The sync API's append, on the writer connection in the caller's thread (see :meth:`Provider.append_now`).

        SQLite waits at most ``timeout`` seconds for its write lock.
        """
        writer = self._writer
        if writer is None:
            return None  # not connected: append() says so
        result = self._inline(writer, "append", self._append_call(stream_id, events, expected, stream), timeout)
        if self._appended(events):
            try:
                self._inline(writer, "append", lambda db: tx(db, counts.fold), timeout)
            except EventSourceError as e:
                self._fold_failed(e)
        return result

    def _folded(self, fut: asyncio.Future[None]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._fold_failed(fut.exception())  # type: ignore[arg-type]

    def _fold_failed(self, _error: BaseException) -> None:
        """The fold after an append failed (lock held, disk full): the append stands, the next one folds."""
        self._unfolded = counts.FOLD_EVERY

    def _append_call(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None
    ) -> Callable[[sqlite3.Connection], AppendResult]:
        """What the writer runs for one append (finishing a checkpoint's copy first when one just ended)."""
        if not events:
            msg = "append needs at least one event"
            raise ValidationError(msg, field="events")
        fn = partial(append_sync, stream_id, events, expected, stream)
        checkpoints = self._checkpoints
        if checkpoints is not None and checkpoints.copied and checkpoints.take_copied():
            fn = partial(finish_then, fn)  # the pages committed while the thread copied, so this write restarts the WAL
        self._wrote_at = monotonic()
        return fn

    def _appended(self, events: Sequence[NewEvent]) -> bool:
        """Note a committed append (wake subscriptions, poke the checkpointer); whether the counts are due a fold."""
        self._changes.notify()
        if len(events) == 1 and len(events[0].data) + len(events[0].metadata) < PAYLOAD_BYTES_PER_WEIGHT:
            self._unchecked += 1  # its weight (append_weight's answer); _written pokes once past CHECKPOINT_EVERY
            if self._unchecked >= CHECKPOINT_EVERY:
                self._written(0)
        else:
            self._written(append_weight(len(events), sum([len(e.data) + len(e.metadata) for e in events])))
        self._unfolded += len(events)
        if self._unfolded < counts.FOLD_EVERY:
            return False
        self._unfolded = 0
        return True

    def _written(self, n: int) -> None:
        """``n`` one-event commits' worth of WAL was written: poke the checkpointer every :data:`CHECKPOINT_EVERY`."""
        self._unchecked += n
        if self._unchecked >= CHECKPOINT_EVERY and self._checkpoints is not None:
            self._unchecked = 0
            self._checkpoints.poke()
