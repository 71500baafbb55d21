"""Event ids the manager generates before the first attempt, so a retried append is an idempotent no-op."""

from __future__ import annotations

import os
import threading
import time


class EventIds:
    """Time-ordered (version 7, RFC 9562) UUID strings: 48 bits of Unix milliseconds, then 74 random bits.

    Ids made one after another sort one after another (to the millisecond), so a store's unique index on
    event ids takes each new one at its end instead of on a random page: a batch dirties a page or two of
    that index, not one per event. The random bits come from ``os.urandom``, 10 bytes an id, read 4,096 at a
    time; the buffer is dropped in a forked child (parent and child never hand out the same bits) and guarded
    by a lock (the sync facade and user threads may append at once).
    """

    __slots__ = ("buf", "i", "lock")

    def __init__(self) -> None:
        self.buf = b""
        self.i = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget the buffered bytes (in a forked child), and free the lock another thread may have held then."""
        self.buf = b""
        self.i = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        """A new id."""
        with self.lock:
            i = self.i
            if i + 10 > len(self.buf):
                self.buf = os.urandom(4090)
                i = 0
            rand = self.buf[i : i + 10]
            self.i = i + 10
        raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + rand)
        raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


event_id = EventIds()
"""The process-wide generator: ``event_id()`` is a new id."""
os.register_at_fork(after_in_child=event_id.reset)
