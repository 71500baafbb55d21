"""JetStream publishes that wait for their ack, through one reply subscription kept for the connection.

Same protocol as ``js.publish`` (a request whose reply is the pub ack), but every pending ack shares one
reply subscription and one deadline timer instead of a subscription, a ``wait_for`` and an ack
dataclass each: the append path is the hot path. :meth:`Publisher.publish_expecting` adds the retries
of a publish that times out or finds no responder (same message id, same expected sequence, so nothing
is lost or duplicated) and reports a refused expected sequence as
:class:`~eventsource_nats.errors.WrongSequence`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from eventsource_nats.errors import WrongSequence, is_wrong_sequence, js_errors, retriable

if TYPE_CHECKING:
    from eventsource_nats.connection import Connection

ACK_TICK = 0.05
"""Seconds between checks of the pub-ack deadlines (the precision of ``publish_timeout``)."""


class Publisher:
    """Publishes awaiting their pub ack; one reply subscription and one timer for all of them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._ack_sub: Any = None
        self._ack_nc: Any = None
        self._ack_prefix = ""
        self._ack_counter = 0
        self._acks: dict[str, tuple[asyncio.Future[Any], float]] = {}
        self._ack_timer: asyncio.TimerHandle | None = None

    def reset(self) -> None:
        """Forget the reply subscription and stop the timer (the connection is closing)."""
        self._ack_sub = None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None

    async def publish_expecting(self, subject: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """Publish with retries (``Connection.retrying``); a refused expected sequence raises :class:`WrongSequence`."""
        timeout = self.conn.settings["publish_timeout"]
        try:
            try:
                return await self.publish(subject, body, headers, timeout)
            except retriable():
                return await self.conn.retrying(lambda: self.publish(subject, body, headers, timeout))  # type: ignore[no-any-return]
        except js_errors().APIError as e:
            if is_wrong_sequence(e.err_code, e.description or ""):
                raise WrongSequence from e
            raise

    async def publish(self, subject: str, body: bytes, headers: dict[str, str], wait: float) -> dict[str, Any]:
        """A JetStream publish awaiting its ack (at most ``wait`` seconds); the ack's JSON."""
        conn = self.conn
        if self._ack_sub is None or self._ack_nc is not conn.nc:  # none yet, or on a client replaced since
            self._ack_nc = conn.nc
            self._ack_prefix = conn.nc.new_inbox()
            self._ack_sub = await conn.nc.subscribe(f"{self._ack_prefix}.*", cb=self._on_ack)
        self._ack_counter += 1
        token = str(self._ack_counter)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._acks[token] = (fut, loop.time() + wait)
        if self._ack_timer is None:
            self._ack_timer = loop.call_later(ACK_TICK, self._expire_acks)
        try:
            await conn.nc.publish(subject, body, reply=f"{self._ack_prefix}.{token}", headers=headers)
            msg = await fut
        finally:
            self._acks.pop(token, None)
        if not msg.data and (msg.headers or {}).get("Status") == "503":
            raise js_errors().NoStreamResponseError
        resp: dict[str, Any] = json.loads(msg.data)
        if "error" in resp:
            raise js_errors().APIError.from_error(resp["error"])
        return resp

    async def _on_ack(self, msg: Any) -> None:
        entry = self._acks.get(msg.subject.rsplit(".", 1)[-1])
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg)

    def _expire_acks(self) -> None:
        """Fail the pub acks past their deadline with a timeout (one timer for every pending publish).

        Armed while publishes wait, so an append does not pay for a timeout object and a timer of its
        own; a deadline is honoured within :data:`ACK_TICK`.
        """
        self._ack_timer = None
        if not self._acks:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for fut, deadline in list(self._acks.values()):
            if deadline <= now and not fut.done():
                fut.set_exception(TimeoutError())
        self._ack_timer = loop.call_later(ACK_TICK, self._expire_acks)
