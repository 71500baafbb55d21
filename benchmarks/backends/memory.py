"""The in-memory provider against plain Python structures (a dict of lists plus json).

The "raw driver" of an in-process store is the data structure itself: a list per stream holding the
JSON-encoded payload and envelope, read back with ``json.loads``. The ratios show the library's own
per-call overhead (validation, codec pipeline, records); DESIGN.md has no column for this store.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from eventsource.memory import MemoryProvider
from eventsource.model import NewEvent, utcnow
from harness import Backend, RawEvent

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.provider import Provider

FILL_CAP = 200_000
"""The in-memory store holds Python objects: the big-store fill stops here to keep the run in RAM."""


class MemoryBackend(Backend):
    """``memory://bench-<uuid>`` per namespace; the raw side is a dict of lists."""

    name = "memory"
    notes = f"raw = dict of lists + json; big-store fill capped at {FILL_CAP:,} events"

    async def open(self) -> None:
        """Fresh raw structures."""
        self.streams: dict[str, list[tuple[str, str, int, int, bytes, str]]] = {}
        self.position = 0
        self._providers: list[MemoryProvider] = []

    async def close(self) -> None:
        """Drop everything."""
        self.streams.clear()
        for p in self._providers:
            await p.close()

    def new_provider(self) -> Provider:
        """A privately named in-memory store."""
        p = MemoryProvider(f"memory://bench-{uuid.uuid4().hex}")
        self._providers.append(p)
        return p

    async def fill(self, provider: Provider, n: int) -> int:
        """Append ``min(n, FILL_CAP)`` events straight through the provider, 1,000 per stream."""
        n = min(n, FILL_CAP)
        body = json.dumps({"filler": True}).encode()
        for s in range(0, n, 1000):
            count = min(1000, n - s)
            now = utcnow()
            evs = [NewEvent(str(uuid.uuid4()), "Filler", body, b"", "json", now) for _ in range(count)]
            await provider.append(f"filler-{s // 1000}", evs, 0)
        return n

    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        """Check the version, append one tuple."""
        rows = self.streams.setdefault(stream_id, [])
        if len(rows) != version - 1:
            msg = f"raw conflict on {stream_id}"
            raise RuntimeError(msg)
        self.position += 1
        rows.append(
            (
                event.event_id,
                event.event_type,
                version,
                self.position,
                json.dumps(event.data).encode(),
                event.timestamp.isoformat(),
            )
        )

    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        """Check the version once, extend."""
        rows = self.streams.setdefault(stream_id, [])
        if len(rows) != first_version - 1:
            msg = f"raw conflict on {stream_id}"
            raise RuntimeError(msg)
        out = []
        for i, ev in enumerate(events):
            self.position += 1
            out.append(
                (
                    ev.event_id,
                    ev.event_type,
                    first_version + i,
                    self.position,
                    json.dumps(ev.data).encode(),
                    ev.timestamp.isoformat(),
                )
            )
        rows.extend(out)

    async def raw_read_stream(self, stream_id: str) -> int:
        """Decode every payload."""
        loads = json.loads
        n = 0
        for row in self.streams.get(stream_id, ()):
            loads(row[4])
            n += 1
        return n


BACKEND = MemoryBackend
