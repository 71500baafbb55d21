"""Live subscriptions on NATS: a core-NATS subscription on the events subjects as the wake-up.

JetStream stores what is published on ``<prefix>.e.*``; a plain (core) subscription on the same subjects
sees each publish as it happens, so the provider holds one such subscription (opened by the first waiting
live subscription, shared by all of them) and bumps a :class:`~eventsource.subscriptions.ChangeSignal` on
every message. Core NATS delivers at most once: what was published while the connection was down never
comes, so a reconnect bumps the signal too (every waiter reads again). Before waiting, the provider looks
for a stored event above the cursor with a one-event read, so a publish between the subscriber's last read
and its wait is never waited out. The wake-up subscription receives every event's bytes, like any subscriber would.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from eventsource.subscriptions import ChangeSignal

from eventsource_nats.naming import INDEX_MASK, position

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource_nats.connection import Connection
    from eventsource_nats.naming import Names


class Live:
    """The wake-up of one provider's live subscriptions."""

    def __init__(self, conn: Connection, names: Names) -> None:
        self.conn = conn
        self.names = names
        self.signal = ChangeSignal()
        self._sub: Any = None
        self._nc: Any = None
        conn.on_reconnect.append(self.signal.notify)  # publishes missed while disconnected: read again now

    async def _ensure(self) -> None:
        self.conn.require()
        nc = self.conn.nc
        if self._sub is not None and self._nc is nc:
            return
        signal = self.signal

        async def on_message(_msg: Any) -> None:
            signal.notify()

        self._sub = await self.conn.call("live subscribe", nc.subscribe(self.names.events_wildcard, cb=on_message))
        self._nc = nc

    async def wait_for_change(
        self, after_position: int, max_wait: float, has_event_after: Callable[[int], Awaitable[bool]]
    ) -> None:
        """Return when a publish lands, when an event above ``after_position`` is stored, or after ``max_wait``."""
        seen = self.signal.count
        await self._ensure()  # subscribed before looking: a publish after the look wakes the wait
        if await has_event_after(after_position):
            return
        await self.signal.wait(seen, max_wait)

    async def head_position(self) -> int:
        """The highest position the stream's last sequence can hold (JetStream never reuses a sequence)."""
        js = self.conn.require()
        info = await self.conn.call("stream info", js.stream_info(self.names.stream))
        return position(int(info.state.last_seq), INDEX_MASK)

    async def close(self) -> None:
        """Drop the wake-up subscription and wake every waiter (they read again and find the store closed)."""
        sub, self._sub, self._nc = self._sub, None, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self.signal.notify()
