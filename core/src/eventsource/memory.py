"""The in-memory provider, for tests and prototypes. Everything is lost when the process ends.

It honours the whole contract within one process: no ``await`` happens inside a check-then-write, so two
appends on one event loop cannot interleave, and every write (and stats and listing, which walk its tables)
holds the store's lock, so neither can two from threads (sync managers, or loops, in threads sharing a store).
"""

from __future__ import annotations

import bisect
import functools
import inspect
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eventsource.create_store import CreateStoreSettings, store_not_found
from eventsource.errors import ConfigurationError, ProviderUnavailableError, StreamExistsError, StreamNotFoundError
from eventsource.model import (
    AppendResult,
    HealthStatus,
    NewStream,
    ProviderStats,
    RecordedEvent,
    StreamInfo,
    utcnow,
)
from eventsource.provider import Capabilities, Provider, check_duplicate, check_expected, check_snapshot, top_of
from eventsource.subscriptions.signal import ChangeSignal
from eventsource.timestamps import utc_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from eventsource.domain.rewrite import EventRewrite
    from eventsource.model import EventAt, Expected, NewEvent, NewSnapshot, RecordedSnapshot


@dataclass(slots=True)
class _Stream:
    info: StreamInfo
    events: list[RecordedEvent] = field(default_factory=list)  # ascending versions, may start above 1


@dataclass(slots=True)
class _Store:
    streams: dict[str, _Stream] = field(default_factory=dict)
    log: list[RecordedEvent] = field(default_factory=list)  # ascending positions (deleted events removed)
    by_id: dict[str, RecordedEvent] = field(default_factory=dict)
    snapshots: dict[str, list[NewSnapshot]] = field(default_factory=dict)
    next_position: int = 1
    changes: ChangeSignal = field(default_factory=ChangeSignal)  # bumped after each append (live subscriptions)
    by_type: dict[str, int] = field(default_factory=dict)  # kept by every append and delete: stats never scan
    payload_bytes: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)  # held by every write (threads share a store)


_NAMED: dict[str, _Store] = {}

_F = TypeVar("_F", bound="Callable[..., Any]")


def _locked(write: _F) -> _F:
    """``write`` (or a read that walks the store's dicts) holding its store's lock; it makes no ``await``."""
    if inspect.iscoroutinefunction(write):

        async def locked_async(self: MemoryProvider, *args: Any, **kwargs: Any) -> Any:
            with self._store.lock:
                return await write(self, *args, **kwargs)

        return cast("_F", functools.wraps(write)(locked_async))

    def locked(self: MemoryProvider, *args: Any, **kwargs: Any) -> Any:
        with self._store.lock:
            return write(self, *args, **kwargs)

    return cast("_F", functools.wraps(write)(locked))


class MemoryProvider(Provider):
    """``memory://`` (a private store) or ``memory://<name>`` (shared by every instance in this process)."""

    kind = "memory"
    capabilities = Capabilities(
        global_order="total", concurrency="in_process", cross_process_reads=False, head_position=True, live_wakeup=True
    )
    settings_schema = CreateStoreSettings
    loop_free = True

    def __init__(self, url: str | None = "memory://", **settings: Any) -> None:
        super().__init__(url or "memory://", **settings)
        name = self._store_name = (url or "memory://").split("://", 1)[-1].strip("/")
        if "?" in name or "#" in name:  # no settings in the URL: it would name another store, never read them
            msg = (
                f"memory URL {url!r}: the in-memory store reads no settings from its URL (a '?' or '#' would be "
                "part of the store's name); give them as the provider's settings, e.g. {'create_store': False}"
            )
            raise ConfigurationError(msg, field="url")
        create = self._create = bool(self.settings.get("create_store", True))  # (a subclass may have its own schema)
        self._data = _NAMED.setdefault(name, _Store()) if name and create else _Store()
        self._closed = False
        if name and not create:  # found by connect(), never made (a mistyped name is refused)
            found = _NAMED.get(name)
            self._data, self._closed = (found, False) if found is not None else (self._data, True)
        self._started = monotonic()
        self._source = self.display_url or self.kind
        if not name:  # a private store: no URL tells it apart from another one
            self._source = f"memory://#store={uuid.uuid4().hex}"

    @property
    def checkpoint_source(self) -> str:
        """``memory://<name>`` for a named store; a private store's is unique (``memory://#store=<uuid>``).

        Every private store is its own source: two of them in one process (or a checkpoint store another
        process shares) never resume, nor measure lag against, each other's checkpoints.
        """
        return self._source

    @property
    def _store(self) -> _Store:
        """The data, through which every operation goes: refused once this instance is closed."""
        if self._closed:
            msg = f"{self.kind}: the provider is closed (call connect() to reopen it)"
            raise ProviderUnavailableError(msg, provider=self.kind)
        return self._data

    @property
    def _streams(self) -> dict[str, _Stream]:
        return self._store.streams

    @property
    def _by_id(self) -> dict[str, RecordedEvent]:
        return self._store.by_id

    @property
    def _snapshots(self) -> dict[str, list[NewSnapshot]]:
        return self._store.snapshots

    @property
    def _log(self) -> list[RecordedEvent]:
        return self._store.log

    @_log.setter
    def _log(self, value: list[RecordedEvent]) -> None:
        self._store.log = value

    @property
    def _next_position(self) -> int:
        return self._store.next_position

    @_next_position.setter
    def _next_position(self, value: int) -> None:
        self._store.next_position = value

    async def connect(self) -> None:
        """Nothing to open; reopens a closed instance (its data, or a named store's, is still there).

        With ``create_store`` off, a named store no instance of this process has created is refused (a private
        one, ``memory://``, is this instance's own: it is always there).
        """
        if self._store_name and not self._create:
            found = _NAMED.get(self._store_name)
            if found is None:
                why = "no instance in this process has created it (a named memory store lives in one process)"
                raise store_not_found(self.display_url or self.kind, why, missing=[self._store_name])
            self._data = found
        self._closed = False

    async def close(self) -> None:
        """Refuse every operation on this instance from now on, as a closed connection would. Idempotent.

        The data stays: a named store's other instances go on, and ``connect()`` reopens this one.
        Waiting subscriptions are woken, read again and find the provider closed.
        """
        self._closed = True
        self._data.changes.notify()

    # ------------------------------------------------------------------ streams

    @_locked
    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create an empty stream."""
        if stream.stream_id in self._streams:
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)
        info = StreamInfo.new(stream, utcnow())
        self._streams[stream.stream_id] = _Stream(info)
        return info

    @_locked
    async def delete_stream(self, stream_id: str) -> None:
        """Remove the stream, its events and snapshots; the id can be reused from version 0."""
        s = self._streams.pop(stream_id, None)
        if s is None:
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)
        self._remove(s.events)
        self._snapshots.pop(stream_id, None)

    def _remove(self, events: Sequence[RecordedEvent]) -> None:
        if not events:
            return
        self._count(events, -1)
        gone = {e.event_id for e in events}
        for eid in gone:
            self._by_id.pop(eid, None)
        self._log = [e for e in self._log if e.event_id not in gone]

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info or ``None``."""
        s = self._streams.get(stream_id)
        return s.info if s else None

    def _count(self, events: Sequence[RecordedEvent], sign: int) -> None:
        """Keep the per-type counts and payload bytes that :meth:`stats` reports."""
        by_type = self._store.by_type
        for e in events:
            n = by_type.get(e.event_type, 0) + sign
            if n:
                by_type[e.event_type] = n
            else:
                del by_type[e.event_type]
            self._store.payload_bytes += sign * (len(e.data) + len(e.metadata))

    @_locked
    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """Streams ordered by id (sorted per call), from the first id above ``after``."""
        ids = sorted(self._streams)
        start = offset if after is None else bisect.bisect_right(ids, after) + offset
        return [self._streams[i].info for i in ids[start : start + limit]], len(ids)

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Check, then write the whole batch (no await in between)."""
        return self._append(stream_id, events, expected, stream)

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        *,
        timeout: float | None,  # noqa: ARG002 - nothing here waits
    ) -> AppendResult | None:
        """:meth:`append` for the sync API, in the caller's thread (see :meth:`Provider.append_now`)."""
        return self._append(stream_id, events, expected, stream)

    @_locked
    def _append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None
    ) -> AppendResult:
        events = utc_events(events)  # an instant, given back in UTC as every other store does
        dup = check_duplicate(stream_id, events, [self._by_id.get(e.event_id) for e in events])
        if dup is not None:
            return dup
        s = self._streams.get(stream_id)
        check_expected(stream_id, expected, exists=s is not None, version=s.info.version if s else 0)
        if s is None:
            attrs = stream or NewStream(
                stream_id, aggregate_id=events[0].aggregate_id, aggregate_type=events[0].aggregate_type
            )
            s = _Stream(StreamInfo.new(attrs, events[0].timestamp))
            self._streams[stream_id] = s
        version = s.info.version
        recorded = []
        for ev in events:
            version += 1
            rec = RecordedEvent.from_new(stream_id, version, self._next_position, ev)
            self._next_position += 1
            recorded.append(rec)
        s.events.extend(recorded)
        self._log.extend(recorded)
        self._count(recorded, 1)
        for rec in recorded:
            self._by_id[rec.event_id] = rec
        s.info = replace(
            s.info,
            version=version,
            event_count=s.info.event_count + len(recorded),
            updated_at=recorded[-1].timestamp,
            last_event_id=recorded[-1].event_id,
            first_version=s.info.first_version or recorded[0].version,
        )
        self._store.changes.notify()
        return AppendResult(
            stream_id=stream_id,
            first_version=recorded[0].version,
            last_version=version,
            positions=tuple(r.position for r in recorded),
            event_ids=tuple(r.event_id for r in recorded),
            timestamp=recorded[0].timestamp,
        )

    async def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[Sequence[RecordedEvent]]:
        """The stream's events (a copy-free slice of its list) in slices of ``page_size``; refused once closed."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        evs = s.events
        lo = bisect.bisect_left(evs, from_version, key=lambda e: e.version)
        hi = len(evs) if to_version is None else bisect.bisect_right(evs, to_version, key=lambda e: e.version)
        chosen = evs[lo:hi]
        if backwards:
            chosen.reverse()
        for i in range(0, len(chosen), page_size):
            if i:
                _ = self._store  # raises once this instance is closed mid-read, as a closed connection would
            yield chosen[i : i + page_size]

    async def read_all_pages(
        self, *, from_position: int = 0, page_size: int = 500
    ) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Events in position order, in slices of ``page_size``; sees events appended while iterating."""
        last = from_position - 1
        while True:
            log = self._log
            i = bisect.bisect_right(log, last, key=lambda e: e.position)
            if i >= len(log):
                return
            page = log[i : i + page_size]
            last = page[-1].position
            yield page

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:
        """Return once an event above ``after_position`` is stored (woken by appends), or after ``max_wait``."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        changes = self._store.changes
        while True:
            seen = changes.count
            log = self._log
            if log and log[-1].position > after_position:  # an event, not just a position: deleted ones don't count
                return
            remaining = deadline - loop.time()
            if remaining <= 0 or not await changes.wait(seen, remaining):
                return

    async def head_position(self) -> int:
        """The last position handed out (deleted events included)."""
        return self._next_position - 1

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look the id up in the index."""
        ev = self._by_id.get(event_id)
        if ev is None or (stream_id is not None and ev.stream_id != stream_id):
            return None
        return ev

    # ------------------------------------------------------------------ snapshots

    @_locked
    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Keep snapshots sorted by version; a snapshot at an existing version replaces it."""
        s = self._streams.get(snapshot.stream_id)
        at = next((e.position for e in s.events if e.version == snapshot.version), None) if s is not None else None
        check_snapshot(snapshot, exists=s is not None, version=s.info.version if s else 0, position_at=at)
        snaps = [s for s in self._snapshots.get(snapshot.stream_id, []) if s.version != snapshot.version]
        snaps.append(snapshot)
        snaps.sort(key=lambda s: s.version)
        self._snapshots[snapshot.stream_id] = snaps

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """Latest snapshot at or below ``max_version``."""
        for snap in reversed(self._snapshots.get(stream_id, [])):
            if max_version is None or snap.version <= max_version:
                return snap
        return None

    @_locked
    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete one or all snapshots of a stream."""
        snaps = self._snapshots.get(stream_id, [])
        keep = [] if version is None else [s for s in snaps if s.version != version]
        if keep:
            self._snapshots[stream_id] = keep
        else:  # (an empty entry per id asked about would grow the store with every call)
            self._snapshots.pop(stream_id, None)
        return len(snaps) - len(keep)

    # ------------------------------------------------------------------ retention

    @_locked
    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events older than ``cutoff``."""
        targets = [self._streams[stream_id]] if stream_id in self._streams else []
        if stream_id is None:
            targets = list(self._streams.values())
        n = 0
        for s in targets:
            old = [e for e in s.events if e.timestamp < cutoff]
            n += self._drop(s, old)
        return n

    @_locked
    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: EventAt | None = None) -> int:
        """Delete events below ``before_version`` (with ``if_holds``: only while the stream holds that event)."""
        s = self._streams.get(stream_id)
        if s is None:
            msg = f"stream {stream_id!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=stream_id)
        if if_holds is not None:
            i = bisect.bisect_left(s.events, if_holds[0], key=lambda e: e.version)
            if i == len(s.events) or (s.events[i].version, s.events[i].event_id) != if_holds:
                return 0
        return self._drop(s, [e for e in s.events if e.version < before_version])

    def _drop(self, s: _Stream, old: list[RecordedEvent]) -> int:
        if not old:
            return 0
        gone = {e.event_id for e in old}
        s.events = [e for e in s.events if e.event_id not in gone]
        self._remove(old)
        s.info = replace(s.info, event_count=len(s.events), first_version=s.events[0].version if s.events else None)
        return len(old)

    # ------------------------------------------------------------------ monitoring

    @_locked
    async def rewrite_events(self, stream_id: str, rewrites: Sequence[EventRewrite]) -> int:
        """Swap each event still stored as it was read for its rewrite, keeping its place everywhere."""
        s = self._streams.get(stream_id)
        if s is None:
            return 0
        done = 0
        for rw in rewrites:
            old = rw.old
            i = bisect.bisect_left(s.events, old.version, key=lambda e: e.version)
            if i == len(s.events) or s.events[i] != old:  # deleted or changed since it was read
                continue
            cur = s.events[i]
            new = replace(cur, event_type=rw.event_type, data=rw.data, metadata=rw.metadata, encoding=rw.encoding)
            self._count([cur], -1)
            self._count([new], 1)
            s.events[i] = new
            self._by_id[new.event_id] = new
            j = bisect.bisect_left(self._log, new.position, key=lambda e: e.position)
            self._log[j] = new
            done += 1
        return done

    @_locked
    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Counts kept by appends and deletes; ``events_by_stream`` cut to ``top_streams``."""
        return ProviderStats(
            total_events=len(self._log),
            total_streams=len(self._streams),
            total_snapshots=sum(len(v) for v in self._snapshots.values()),
            events_by_type=dict(self._store.by_type),
            events_by_stream=top_of({k: s.info.event_count for k, s in self._streams.items()}, top_streams),
            storage_size=self._store.payload_bytes,
            last_event_at=self._log[-1].timestamp if self._log else None,
            uptime_seconds=monotonic() - self._started,
            provider=self.name,
            top_streams=top_streams,
        )

    async def health(self) -> HealthStatus:
        """Healthy while the process lives, and degraded: nothing it holds survives the process."""
        from eventsource.manager.monitoring import risk, with_durability  # the manager imports this module

        if self._closed:
            return HealthStatus(healthy=False, provider=self.name, message="the provider is closed")
        ok = HealthStatus(healthy=True, provider=self.name, message="ok", latency_ms=0.0)
        return with_durability(ok, [risk("storage", "memory", "process", "every event is lost when the process exits")])
