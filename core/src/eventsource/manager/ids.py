"""Event ids the manager generates before the first attempt, so a retried append is an idempotent no-op."""

from __future__ import annotations

import os
import threading


class EventIds:
    """Random (version 4) UUID strings, 256 per ``os.urandom`` call.

    ``str(uuid.uuid4())`` makes one ``getrandom`` syscall and builds a ``UUID`` object per id; the bytes
    here are just as random. The buffer is dropped in a forked child (so parent and child never hand out
    the same ids) and guarded by a lock (the sync facade and user threads may append at once).
    """

    __slots__ = ("buf", "i", "lock")

    def __init__(self) -> None:
        self.buf = b""
        self.i = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget the buffered bytes (in a forked child)."""
        self.buf = b""
        self.i = 0

    def __call__(self) -> str:
        """A new id."""
        with self.lock:
            i = self.i
            if i >= len(self.buf):
                self.buf = os.urandom(4096)
                i = 0
            raw = bytearray(self.buf[i : i + 16])
            self.i = i + 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


event_id = EventIds()
"""The process-wide generator: ``event_id()`` is a new id."""
os.register_at_fork(after_in_child=event_id.reset)
