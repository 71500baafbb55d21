"""The provider contract every store implements.

A provider stores opaque encoded payloads plus plain envelope fields; it never sees user objects,
never encodes, never retries (the manager does both). Every method is ``async``. A provider that
cannot do an operation lists it in ``capabilities.unsupported`` and raises
:class:`~eventsource.errors.UnsupportedOperationError` from it; it never reports success for work it
did not do. The semantics every store honours (versions, expected versions, idempotent retries, atomic batches, the
page views, global order) are listed in docs/writing-a-provider.md and checked by :mod:`eventsource.testing`.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import operator
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, final

from eventsource.declarations import check_capabilities
from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    StreamNotFoundError,
    UnsupportedOperationError,
)
from eventsource.inline import (  # noqa: F401 - also importable from here, where plugins found them before
    CALL_TASK,
    SYNC_CALLER,
    SYNC_TIMEOUT,
    inline_io_allowed,
)
from eventsource.model import (
    AppendResult,
    CountMode,
    EventAt,
    EventFilter,
    Expected,
    ExpectedVersion,
    HealthStatus,
    NewEvent,
    NewSnapshot,
    NewStream,
    ProviderStats,
    QueryPage,
    RecordedEvent,
    RecordedSnapshot,
    RowPage,
    StreamInfo,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence
    from datetime import datetime

    from marshmallow import Schema

    from eventsource.domain.rewrite import EventRewrite

OPERATIONS: tuple[str, ...] = (
    "create_stream",
    "delete_stream",
    "get_stream_info",
    "list_streams",
    "append",
    "read_stream",
    "read_all",
    "get_event",
    "query",
    "save_snapshot",
    "get_snapshot",
    "delete_snapshots",
    "delete_events_before",
    "truncate_stream",
    "stats",
    "health",
    "rewrite_events",
)
"""Operation names a provider may list in ``Capabilities.unsupported``."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store guarantees, and what it cannot do.

    :param global_order: ``"total"``: ``read_all`` yields one order with increasing positions, and a
        reader never skips an event that commits late; ``"per_stream"``: each stream in order, streams
        merged by time.
    :param concurrency: how far the expected-version check reaches: ``"cross_process"`` or
        ``"in_process"`` (single writer per stream unless a lease is configured).
    :param unsupported: operation names (from :data:`OPERATIONS`) that raise
        :class:`UnsupportedOperationError`.
    :param deleted_stream_ids: ``"reusable"`` (a deleted id starts again at version 0) or ``"refused"``
        (appending to it raises :class:`StreamDeletedError`).
    :param max_event_size: bytes the store can hold for one encoded event, if it has a limit.
    :param max_batch_bytes: bytes one atomic batch may hold, if the store has a limit.
    :param late_commits: whether an append can commit after one with a higher position (a position drawn
        before commit, as PostgreSQL's sequence is); a store that declares it gives the kit a way to make one.
    :param cross_process_reads: whether another OS process, given the provider's ``spawn_args()``, reads and
        writes the same events; ``False`` for a store whose events live in this process (memory, SQLite's
        ``:memory:``). The kit's tests that run a second process (a projection runner killed and restarted)
        need it.
    :param head_position: whether :meth:`Provider.head_position` returns the highest position handed out
        (not ``None``); a subscription can then refuse a start beyond the store.
    :param live_wakeup: whether :meth:`Provider.wait_for_change` returns once an event is stored (a change
        signal) rather than sleeping; without it subscriptions poll. The kit checks both against the store.
    """

    global_order: Literal["total", "per_stream"] = "total"
    concurrency: Literal["cross_process", "in_process"] = "cross_process"
    unsupported: frozenset[str] = frozenset()
    deleted_stream_ids: Literal["reusable", "refused"] = "reusable"
    max_event_size: int | None = None
    max_batch_bytes: int | None = None
    late_commits: bool = False
    cross_process_reads: bool = True
    head_position: bool = False
    live_wakeup: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_capabilities(self, OPERATIONS)  # an unknown operation, a misspelt or mistyped value: ValueError

    def supports(self, operation: str) -> bool:
        """Whether ``operation`` is implemented by the store."""
        return operation not in self.unsupported

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (sets become sorted lists)."""
        d = asdict(self)
        d["unsupported"] = sorted(self.unsupported)
        return d


def check_expected(stream_id: str, expected: Expected, *, exists: bool, version: int) -> None:
    """Raise :class:`ConcurrencyError` unless a stream in this state satisfies ``expected``.

    Providers that read-then-write inside a transaction or under a lock call this; providers that
    push the check into the store must match its semantics.
    """
    if expected == ExpectedVersion.ANY:
        return
    if expected == ExpectedVersion.NO_STREAM:
        ok = not exists
    elif expected == ExpectedVersion.STREAM_EXISTS:
        ok = exists
    else:
        ok = version == expected
    if not ok:
        shown = expected.name if isinstance(expected, ExpectedVersion) else int(expected)
        msg = f"stream {stream_id!r}: expected version {shown}, actual version {version}"
        if not exists:
            msg += " (stream does not exist)"
        raise ConcurrencyError(msg, stream_id=stream_id, expected=shown, actual=version)


def check_snapshot(snapshot: NewSnapshot, *, exists: bool, version: int, position_at: int | None) -> None:
    """Raise unless the stream as it is now backs ``snapshot`` (see :meth:`Provider.save_snapshot`).

    ``version`` is the stream's current version, ``position_at`` the global position of its event at
    ``snapshot.version`` (``None`` when retention removed it). A missing stream is
    :class:`StreamNotFoundError`; a snapshot above the stream's version, or taken at an event the stream
    no longer holds at that version (it was deleted and re-created since), is :class:`ConcurrencyError`.
    """
    sid = snapshot.stream_id
    if not exists:
        msg = f"stream {sid!r} does not exist; a snapshot needs its stream"
        raise StreamNotFoundError(msg, stream_id=sid)
    if snapshot.version > version:
        msg = (
            f"stream {sid!r} is at version {version}: a snapshot at version {snapshot.version} is not of this stream "
            "(deleted and re-created?)"
        )
        raise ConcurrencyError(msg, stream_id=sid, expected=snapshot.version, actual=version)
    if snapshot.position is not None and position_at is not None and position_at != snapshot.position:
        msg = (
            f"stream {sid!r} holds another event at version {snapshot.version} than the snapshot was taken at "
            f"(position {position_at}, not {snapshot.position}): the stream was deleted and re-created since"
        )
        raise ConcurrencyError(msg, stream_id=sid, expected=snapshot.version, actual=version)


async def position_at(provider: Provider, stream_id: str, version: int) -> int | None:
    """The global position of the stream's event at ``version``; ``None`` if it holds none there.

    Read through ``provider.read_stream``: for stores that check :func:`check_snapshot` outside a transaction.
    """
    async with contextlib.aclosing(provider.read_stream(stream_id, from_version=version, to_version=version)) as found:  # type: ignore[type-var]
        async for rec in found:
            return rec.position
    return None


def check_duplicate(
    stream_id: str, events: Sequence[NewEvent], stored: Sequence[RecordedEvent | None]
) -> AppendResult | None:
    """Decide idempotency given what is stored under each of ``events``' ids.

    ``stored[i]`` is the event already stored with ``events[i].event_id`` (anywhere), or ``None``.
    Returns the original result when every id is stored in ``stream_id`` at consecutive versions in the
    same order (an identical retry), ``None`` when none is stored, and raises
    :class:`DuplicateEventError` for any other overlap.
    """
    if all(s is None for s in stored):
        return None
    found = [s for s in stored if s is not None]
    if len(found) == len(events) and all(s.stream_id == stream_id for s in found):
        versions = [s.version for s in found]
        if versions == list(range(versions[0], versions[0] + len(versions))):
            return AppendResult(
                stream_id=stream_id,
                first_version=versions[0],
                last_version=versions[-1],
                positions=tuple(s.position for s in found),
                event_ids=tuple(s.event_id for s in found),
                timestamp=found[0].timestamp,
                duplicate=True,
            )
    clash = next(s for s in found)
    msg = (
        f"event id {clash.event_id!r} is already stored in stream {clash.stream_id!r} "
        f"(version {clash.version}) and this append is not an identical retry"
    )
    raise DuplicateEventError(msg, event_id=clash.event_id, stream_id=clash.stream_id)


class Provider(ABC):
    """Base class of every store. Subclasses implement the abstract methods.

    Construction takes a URL and keyword settings; ``settings_schema`` (a marshmallow schema) validates
    the settings, so a wrong setting fails with :class:`ConfigurationError` naming the field.
    """

    kind: ClassVar[str] = ""
    """Registry name of the provider type (``"sqlite"``, ``"postgres"``...)."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    settings_schema: ClassVar[type[Schema] | None] = None
    loop_free: bool = False
    """``True`` when the provider needs no running event loop between calls (no pool workers, pings or other
    background tasks): the sync API may then run its loop only during each call, in the caller's thread.
    A class attribute for a store that never needs one (SQLite, memory); an instance may set it (PostgreSQL
    connected by the sync API with ``sync_inline``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a store that overrides a record view: each view has one canonical method, the page view.

        A class whose :meth:`append` comes from further down its MRO than its :meth:`append_now` declines the sync
        API's lane: an inherited ``append_now`` (SQLite's, memory's) would write past the override (instrumentation).
        """
        super().__init_subclass__(**kwargs)
        for name in ("read_stream", "read_all"):
            if name in vars(cls):
                msg = f"{cls.__qualname__} overrides {name}; implement {name}_pages instead ({name} is built on it)"
                raise TypeError(msg)
        mro = cls.__mro__
        by = [next(i for i, k in enumerate(mro) if name in vars(k)) for name in ("append", "append_now")]
        if by[0] < by[1]:
            cls.append_now = Provider.append_now  # type: ignore[method-assign]  # declines: append runs

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        self.url = url
        self.settings: dict[str, Any] = self.load_settings(settings)
        self.name: str = self.kind

    @classmethod
    def load_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``settings`` through ``settings_schema``; errors name the field."""
        if cls.settings_schema is None:
            if settings:
                msg = f"provider {cls.kind!r} takes no settings, got {sorted(settings)}"
                raise ConfigurationError(msg, field=next(iter(settings)))
            return {}
        from marshmallow import ValidationError as MarshmallowValidationError

        try:
            return dict(cls.settings_schema().load(dict(settings)))
        except MarshmallowValidationError as e:
            fields = e.normalized_messages()  # type: ignore[no-untyped-call]
            first = next(iter(fields)) if isinstance(fields, dict) else "?"
            msg = f"invalid settings for provider {cls.kind!r}: {fields}"
            raise ConfigurationError(msg, field=first) from e

    def spawn_args(self) -> dict[str, Any]:
        """Keyword arguments that build an equivalent instance on the same store (JSON-able).

        The conformance kit uses this to race a second instance, in this process or in another one.
        """
        return {"url": self.url, **self.settings}

    @property
    def display_url(self) -> str | None:
        """The URL with any password masked (safe to print or log)."""
        from eventsource.config import mask_url

        return mask_url(self.url) if self.url else None

    @property
    def checkpoint_source(self) -> str:
        """The store's identity in checkpoints (a subscription's default ``source``): the masked URL, else the kind.

        A store that keeps several stores behind one URL (a schema, a table prefix, a stream name) adds what
        tells them apart, so their checkpoints and lag never mix.
        """
        return self.display_url or self.kind

    def unsupported(self, operation: str) -> UnsupportedOperationError:
        """The error to raise from an operation the store cannot do."""
        msg = f"provider {self.kind!r} does not support {operation}"
        return UnsupportedOperationError(msg, provider=self.kind, operation=operation)

    # ------------------------------------------------------------------ lifecycle

    @abstractmethod
    async def connect(self) -> None:
        """Open connections, create or migrate the store as needed (``create_store`` off: only check). Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Release every resource. Idempotent."""

    # ------------------------------------------------------------------ streams

    @abstractmethod
    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create an empty stream (version 0). Raises :class:`StreamExistsError` if it exists."""

    @abstractmethod
    async def delete_stream(self, stream_id: str) -> None:
        """Remove the stream's events, info and snapshots. Raises :class:`StreamNotFoundError`."""

    @abstractmethod
    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info, or ``None`` if the stream does not exist."""

    @abstractmethod
    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams ordered by stream id, and the total number of streams.

        ``after`` is a keyset cursor: only streams whose id sorts after it (code point order), then ``offset``.
        A store reaches the first stream after it through an index or its own order, whatever its depth.
        """

    # ------------------------------------------------------------------ events

    @abstractmethod
    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append ``events`` (one or more) atomically. ``stream`` carries attributes for implicit creation."""

    def append_now(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected: Expected,
        stream: NewStream | None,
        *,
        timeout: float | None,
    ) -> AppendResult | None:
        """Optional: :meth:`append` done right here, blocking, for the sync API; ``None`` declines (the default).

        Only a ``loop_free`` store whose driver blocks anyway (SQLite, memory; PostgreSQL's inline pool) implements
        it: the sync API calls it in the caller's thread while it holds its loop idle, so nothing else runs on the
        provider meanwhile. Same contract and errors as :meth:`append`; ``timeout`` bounds any lock wait. Declining
        writes nothing: the manager then awaits :meth:`append` as usual. A subclass that overrides
        :meth:`append` and not this declines (:meth:`__init_subclass__`), so its ``append`` is never bypassed.
        """
        del stream_id, events, expected, stream, timeout  # declined: nothing is used
        return None

    @abstractmethod
    def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[Sequence[RecordedEvent] | RowPage]:
        """Events of one stream in version order (or reversed), a page at a time; nothing for a missing stream.

        The one read of a stream a store implements: the manager reads through it, and :meth:`read_stream`
        is built on it. Each page is a sequence of records or, fastest, a :class:`~eventsource.model.RowPage`;
        no page is empty; at most ``page_size`` events per page. A store that reads record by record
        groups them with :func:`pages_of`.
        """

    @abstractmethod
    def read_all_pages(
        self, *, from_position: int = 0, page_size: int = 500
    ) -> AsyncIterator[Sequence[RecordedEvent] | RowPage]:
        """Every event at ``position >= from_position`` in the declared global order, a page at a time.

        The one read of the global log a store implements (see :meth:`read_stream_pages`).
        """

    @final
    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """The events of :meth:`read_stream_pages`, one record at a time (not overridden by stores)."""
        return records_of(
            self.read_stream_pages(
                stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
            )
        )

    @final
    def read_all(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RecordedEvent]:
        """The events of :meth:`read_all_pages`, one record at a time (not overridden by stores)."""
        return records_of(self.read_all_pages(from_position=from_position, page_size=page_size))

    # ------------------------------------------------------------------ live reads (subscriptions)

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:  # noqa: ARG002 - a hint for stores with a wake-up
        """Return once an event above ``after_position`` may be readable, or after ``max_wait`` seconds.

        Live subscriptions call this when they have caught up, then read again whatever happened, so an
        early or spurious return costs one read and a missed wake-up costs at most ``max_wait``. The
        default has no wake-up and sleeps (subscriptions then poll); stores with a change signal override it.
        """
        import asyncio

        await asyncio.sleep(max_wait)

    async def head_position(self) -> int | None:
        """The highest global position the store has handed out (deleted events included), or ``None``.

        ``None`` means the store cannot say cheaply; subscriptions then skip the checks that use it (a
        checkpoint ahead of the store, the wake-up of a one-stream subscription).
        """
        return None

    async def end_position(self) -> int | None:
        """Where a subscription "from the end" starts: every event committed from now on is at or above it.

        The default is one above :meth:`head_position`, right for stores whose positions commit in order. A
        store with late commits returns its safe horizon instead (PostgreSQL: the oldest running transaction),
        so an append already running commits above it; events committed while that transaction ran come too.
        ``None``: the store cannot say (a subscription from the end then raises ``UnsupportedOperationError``).
        """
        head = await self.head_position()
        return None if head is None else head + 1

    @abstractmethod
    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """The event with that id (optionally known to be in ``stream_id``), or ``None``."""

    async def query(
        self, flt: EventFilter, *, limit: int, offset: int, descending: bool = False, count: CountMode = "exact"
    ) -> QueryPage:
        """A page of events matching ``flt`` and the total number of matches (as ``count`` asks).

        ``flt.after_position`` / ``flt.before_position`` are the keyset cursor (ascending / descending).
        ``count="none"`` may return ``total_count=None``; ``"estimate"`` may return an estimate with
        ``total_exact=False``; an exact count is always a valid answer. The manager passes ``count`` only
        when it is not ``"exact"``. The default filters a scan (``read_stream`` for one stream, else
        ``read_all`` from the cursor) in O(limit+offset) memory; stores override it to push the filters down.
        """
        if flt.stream_id is not None:
            source = self.read_stream(
                flt.stream_id, from_version=max(1, flt.from_version or 1), to_version=flt.to_version
            )
        else:
            source = self.read_all(from_position=flt.after_position + 1 if flt.after_position is not None else 0)
        total = 0
        window: collections.deque[RecordedEvent] = collections.deque(maxlen=limit + offset if descending else None)
        async for ev in source:
            if not flt.matches(ev):
                continue
            total += 1
            if descending or offset < total <= offset + limit:
                window.append(ev)
            if count == "none" and not descending and total >= offset + limit:
                break
        page = list(reversed(window))[offset : offset + limit] if descending else list(window)
        return QueryPage(events=page, total_count=None if count == "none" else total)

    # ------------------------------------------------------------------ snapshots

    @abstractmethod
    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Store a snapshot (several versions per stream may be kept; one at the same version is replaced).

        Only a snapshot the stream as it is now backs: :func:`check_snapshot` says which are refused (a
        missing stream; a version above the stream's; an event at that version with another position,
        i.e. a stream deleted and re-created while the snapshot was taken). Check and write atomically
        where the store can; otherwise retention's ``before_snapshot`` could delete events no snapshot covers.
        """

    @abstractmethod
    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot (at or below ``max_version``), or ``None``."""

    @abstractmethod
    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Delete the snapshot at ``version`` (all when ``None``); returns how many were deleted."""

    # ------------------------------------------------------------------ retention primitives

    @abstractmethod
    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events with ``timestamp < cutoff`` (in one stream or all); returns the count.

        Versions of remaining events do not change; a stream's version never goes down.
        """

    @abstractmethod
    async def truncate_stream(self, stream_id: str, before_version: int, *, if_holds: EventAt | None = None) -> int:
        """Delete the stream's events with ``version < before_version``; returns the count.

        With ``if_holds=(version, event_id)``, only while the stream holds that event at that version (the
        incarnation the caller looked at): one deleted and created again since, or no longer holding that
        event, is left as it is and 0 is returned. Checked with each deletion, atomically where the store has
        transactions (retention policies pass the stream's last event as they listed it).
        """

    # ------------------------------------------------------------------ offline rewrite

    async def rewrite_events(self, stream_id: str, rewrites: Sequence[EventRewrite]) -> int:
        """Replace stored payloads in place (the offline upcast rewrite, :mod:`eventsource.domain.rewrite`).

        In one atomic write, each rewrite whose event (``stream_id``, event id, version) still holds exactly
        the old type, data, metadata and encoding gets the new four; ids, versions, positions, timestamps and
        the other envelope fields stay. Returns how many were replaced (an event deleted or changed since it
        was read is left alone). A store that cannot change a stored event in place (an append-only log)
        lists ``"rewrite_events"`` in ``capabilities.unsupported`` and keeps this default, which refuses.
        """
        del stream_id, rewrites
        raise self.unsupported("rewrite_events")

    # ------------------------------------------------------------------ monitoring

    @abstractmethod
    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Store-wide statistics; with ``top_streams``, ``events_by_stream`` holds only that many streams.

        Those are the streams with the most events (ties in any order); ``total_streams`` stays exact and the
        result names the bound in ``ProviderStats.top_streams`` and any estimated figure in ``estimated``.
        The manager passes ``top_streams`` only when the caller gives one.
        """

    @abstractmethod
    async def health(self) -> HealthStatus:
        """Check the store; say what is wrong when it is not healthy. Never raises for a down store."""


async def pages_of(records: AsyncIterator[RecordedEvent], page_size: int) -> AsyncIterator[Sequence[RecordedEvent]]:
    """Records grouped into pages of at most ``page_size`` (for a store that reads record by record).

    A page is handed out when it is full or the records end; the record iterator is closed when this one is.
    """
    page: list[RecordedEvent] = []
    try:
        async for rec in records:
            page.append(rec)
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page
    finally:
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()


async def records_of(pages: AsyncIterator[Sequence[RecordedEvent] | RowPage]) -> AsyncIterator[RecordedEvent]:
    """The events of a page view, one record at a time: a record view built on a page view.

    :meth:`Provider.read_stream` / :meth:`Provider.read_all` are built on it. The page iterator is closed
    when this one is.
    """
    try:
        async for page in pages:
            for rec in page.records() if isinstance(page, RowPage) else page:
                yield rec
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def top_of(counts: Mapping[str, int], top: int | None) -> dict[str, int]:
    """``counts`` cut to the ``top`` largest (all when ``top`` is ``None``): ``events_by_stream`` under a bound."""
    if top is None or len(counts) <= top:
        return dict(counts)
    return dict(heapq.nlargest(top, counts.items(), key=operator.itemgetter(1)))
