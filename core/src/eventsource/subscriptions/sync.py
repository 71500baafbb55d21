"""The blocking twin of :class:`~eventsource.subscriptions.Subscription`, returned by the sync API's ``subscribe``.

It crosses to the facade's event loop once per batch of already-read events (never one event at a time), and
``commit()`` without an argument stores the checkpoint after the last event this iterator handed out, not
after events it still holds.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Self

from eventsource.errors import ValidationError

if TYPE_CHECKING:
    from eventsource.checkpoints.base import Checkpoint
    from eventsource.model import Event
    from eventsource.subscriptions.subscription import Subscription
    from eventsource.syncloop import SyncLoop


class SyncSubscription:
    """Iterate with ``for``; ``with`` closes it. See :class:`~eventsource.subscriptions.Subscription`.

    Threads sharing one take turns in ``next()``: each event goes to one of them, once.
    """

    def __init__(self, loop: SyncLoop, subscription: Subscription) -> None:
        self._loop = loop
        self.subscription = subscription
        self._pending: collections.deque[Event] = collections.deque()
        self._last: Event | None = None
        self._dropped = False  # close() dropped fetched events never handed out: commit() stops at ``_last``
        self._turn = threading.RLock()  # held by the thread in next()
        loop.end_on_close(self, SyncSubscription.end)  # the facade's close() ends it first: a next() returns

    def __repr__(self) -> str:
        return f"Sync{self.subscription!r}"

    @property
    def buffered(self) -> int:
        """Events read from the store and not handed out yet (at most one page)."""
        return len(self._pending) + self.subscription.buffered

    def start(self) -> Self:
        """Resume from the stored checkpoint and check the start against the store."""
        self._loop.run(self.subscription.start())
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop; the iterator ends (``commit()`` still stores only what it handed out). Idempotent."""
        self._dropped = self._dropped or bool(self._pending)
        self._pending.clear()
        if self.subscription.closed:
            return  # closed already (by the facade's close(), say, which then stops the loop)
        self._loop.run(self.subscription.close())

    async def end(self) -> None:
        """Close the subscription on the loop (the facade's close() calls this first)."""
        await self.subscription.close()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event:
        with self._turn:  # consumer threads sharing it take turns: each event goes to one of them, once
            if not self._pending and (self.subscription.closed or not self._loop.run(self._fill(), settle=True)):
                raise StopIteration  # closed (the facade's close() too, maybe from this loop's body): the end
            try:
                self._last = self._pending.popleft()
            except IndexError:  # close() in another thread dropped the events buffered
                raise StopIteration from None
            return self._last

    async def _fill(self) -> bool:
        """The next batch into ``_pending``, on the loop: the subscription counts it as handed out once it is read.

        So it lands in ``_pending`` even when this thread is interrupted (Ctrl-C) while the batch is read:
        the next ``next()`` hands it out, and ``commit()`` stops before it.
        """
        batch = await self.subscription.next_batch(self.subscription.page_size)
        self._pending.extend(batch)
        return bool(batch)

    def commit(self, event: Event | None = None) -> Checkpoint:
        """Store the checkpoint after ``event`` (default: after the last event handed out)."""
        if event is None and (self._pending or self._dropped):
            event = self._last
            if event is None:
                msg = "no event was handed out yet"
                raise ValidationError(msg, field="event")
        return self._loop.run(self.subscription.commit(event))
