"""The public API: :class:`EventSourcingManager` (async); :mod:`eventsource.sync` wraps it for sync callers.

Each method validates its input (:mod:`.validation`), picks the provider (:mod:`.providers`), encodes
through the event codec (:mod:`.codec`, :mod:`.batches`, :mod:`.sealed`), and calls the store under the
call policy (:mod:`.policy`); reads run the other way. Every method accepts either the seed's request
object or the same fields as keyword arguments. The policies it applies on every provider (codecs,
associated data, version pinning, crypto-shredding, retries and timeouts, snapshot threshold, metrics,
retention) are described in ``docs/manager.md``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self, Unpack, overload

from eventsource.config import ManagerConfig
from eventsource.domain.events import EventClasses
from eventsource.errors import ProviderUnavailableError, UnsupportedOperationError
from eventsource.manager.appends import Appends, batch_response, event_response
from eventsource.manager.batches import BatchEncoder
from eventsource.manager.codec import EventCodec
from eventsource.manager.ids import event_id as _event_id
from eventsource.manager.key_scopes import KeyScopes
from eventsource.manager.lane import SyncLane
from eventsource.manager.metrics import LATENCY_WINDOW
from eventsource.manager.monitoring import Monitoring
from eventsource.manager.policy import CallPolicy
from eventsource.manager.providers import Providers, create_configured
from eventsource.manager.queries import Queries
from eventsource.manager.retention_runs import RetentionRuns
from eventsource.manager.sealed import VERSION_PIN_ATTEMPTS, SealedAppends
from eventsource.manager.snapshots import Snapshots
from eventsource.manager.streams import Streams
from eventsource.manager.subscribing import OpenSubscriptions
from eventsource.manager.threshold import SnapshotThreshold
from eventsource.manager.validation import (
    check_flag,
    check_optional_number,
    check_time,
    check_top_streams,
    coerce,
    event_list,
    event_of,
)
from eventsource.model import (
    ANY,
    SHREDDED_KEY,
    AppendEventRequest,
    AppendEventResponse,
    AppendEventsBatchRequest,
    AppendEventsBatchResponse,
    CreateSnapshotRequest,
    CreateSnapshotResponse,
    CreateStreamRequest,
    EventData,
    GetEventsRequest,
    GetEventsResponse,
    ListStreamsResponse,
    SortOrder,
)
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from datetime import datetime

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.codecs.keys import KeyProvider
    from eventsource.domain.events import DomainEvent
    from eventsource.model import AppendResult, Event, HealthStatus, ProviderInfo, ProviderStats, Snapshot, StreamInfo
    from eventsource.provider import Provider
    from eventsource.request_args import (
        AppendEventArgs,
        AppendEventsBatchArgs,
        CreateSnapshotArgs,
        CreateStreamArgs,
        GetEventsArgs,
    )
    from eventsource.retention import RetentionPolicy, RetentionReport, RetentionSchedule
    from eventsource.subscriptions.lag import SubscriptionLag
    from eventsource.subscriptions.subscription import StartAt, Subscription


class EventSourcingManager(KeyScopes):
    """Append, read, snapshot and manage event streams on any registered store.

    :param config: a :class:`ManagerConfig`, a dict, a JSON/TOML file path, or ``None`` for defaults
        (an embedded SQLite file ``eventsource.db``).
    :param host: the plugin host (built with entry points when omitted).
    :param key_provider: where encryption keys come from; wins over the ``eventsource_key_provider``
        hook and over the key ring built from ``encryption_keys``.
    :param snapshot_handler: see :meth:`set_snapshot_handler`.
    """

    def __init__(
        self,
        config: ManagerConfig | Mapping[str, Any] | str | None = None,
        *,
        host: PluginHost | None = None,
        key_provider: KeyProvider | None = None,
        snapshot_handler: Callable[[str, int], Any] | None = None,
    ) -> None:
        self.config = ManagerConfig.load(config)
        self.host = host if host is not None else PluginHost()
        self._closed = False
        self._codec = EventCodec(self.config, self.host, key_provider)
        self.keys: KeyProvider | None = self._codec.keys
        self.pipeline = self._codec.pipeline
        self._policy = CallPolicy(self.config)
        self._providers = Providers()
        self._batches = BatchEncoder(self.config, self._codec)
        self._sealed = SealedAppends(self._policy, self._batches)
        self._threshold = SnapshotThreshold(
            self.config.snapshot_threshold, self._policy, self._take_snapshot, snapshot_handler
        )
        self._appends = Appends(self.config, self._codec, self._sealed, self._threshold)
        self._streams = Streams(self.config, self._policy, self._sealed, self._threshold)
        self._queries = Queries(self.config, self._codec, self._policy)
        self._snapshots = Snapshots(self.config, self._codec, self._policy, self._threshold)
        self._retention = RetentionRuns(
            self.config, self.host, self._policy, self._providers, self._codec.snapshot_readable
        )
        self._monitoring = Monitoring(self._providers, self._policy, self.host, self.config, time.monotonic())
        self.event_classes = EventClasses(self._codec.chain)
        self._subscriptions = OpenSubscriptions(self._policy, self._codec, self.host)  # close() ends them
        self._lane = SyncLane(self)  # the sync facade's appends in its caller's thread

    def __repr__(self) -> str:
        return (
            f"EventSourcingManager(providers={list(self._providers.by_name)!r}, default={self._providers.default!r}, "
            f"encryption={self._codec.cipher is not None}, keys={self.keys!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def _check_open(self) -> None:
        """Refuse work that would run on a closed manager (and report success for doing nothing)."""
        if self._closed:
            msg = "this manager is closed; create a new one (or call connect() again)"
            raise ProviderUnavailableError(msg)

    async def connect(self) -> EventSourcingManager:
        """Build and connect every provider named in the configuration.

        A URL whose scheme no installed plugin handles raises :class:`ConfigurationError`.
        """
        self._closed = False
        for name, entry in self.config.providers.items():
            if name not in self._providers.by_name:
                provider = create_configured(self.host, name, entry["url"], entry.get("settings", {}))
                await self.register_provider(provider, name=name)
        if self.config.default_provider and self.config.default_provider in self._providers.by_name:
            self._providers.default = self.config.default_provider
        return self

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop retention schedules, close every provider (errors are logged, then the first one is raised)."""
        await self._retention.stop()
        await self._subscriptions.close()
        self._policy.close()
        first = await self._providers.close(self._policy)
        self._closed = True
        if first is not None:
            raise first

    # ------------------------------------------------------------------ provider management

    async def register_provider(
        self, provider: Provider | str, *, name: str | None = None, default: bool = False, **settings: Any
    ) -> Provider:
        """Connect and register a provider instance, or one built from a URL."""
        if isinstance(provider, str):
            provider = self.host.create_provider(provider, **settings)
        return await self._providers.connect(provider, name, self._policy, default=default)

    def get_provider(self, name: str | None = None) -> Provider:
        """The provider registered as ``name``, or the default.

        A URL selects the provider registered with exactly that URL, else the only provider of its
        scheme; with several of that scheme and none at that URL it is ambiguous (an error, never a guess).
        """
        return self._providers.get(name)

    def get_default_provider(self) -> Provider:
        """The default provider."""
        return self._providers.get_default()

    def list_providers(self) -> list[str]:
        """Names of registered providers."""
        return list(self._providers.by_name)

    def get_provider_info(self) -> list[ProviderInfo]:
        """Kind, masked URL, distribution, version and capabilities of each provider."""
        return self._providers.info(self.host)

    def metrics(self, provider: str | None = None) -> dict[str, dict[str, Any]]:
        """Counters and latency percentiles kept by this manager, by provider name then operation.

        ``provider`` limits the answer to one provider. The fields are listed in ``docs/manager.md`` (Metrics).
        """
        names = [self.get_provider(provider).name] if provider is not None else list(self._providers.by_name)
        return {name: self._policy.summary(name) for name in names}

    # ------------------------------------------------------------------ streams

    def _stream_id(self, stream_id: object) -> str:
        return self._queries.stream_id(stream_id)

    @overload
    async def create_stream(self, request: CreateStreamRequest, /) -> StreamInfo: ...
    @overload
    async def create_stream(self, request: None = None, /, **kwargs: Unpack[CreateStreamArgs]) -> StreamInfo: ...
    async def create_stream(self, request: CreateStreamRequest | None = None, /, **kwargs: Any) -> StreamInfo:
        """Create an empty stream; :class:`StreamExistsError` if the id is taken."""
        req = coerce(CreateStreamRequest, request, kwargs)
        sid = self._stream_id(req.stream_id)
        return await self._streams.create(self.get_provider(req.provider), sid, req)

    async def delete_stream(self, stream_id: str, *, provider: str | None = None) -> None:
        """Delete the stream's events, info and snapshots; :class:`StreamNotFoundError` if missing."""
        sid = self._stream_id(stream_id)
        await self._streams.delete(self.get_provider(provider), sid)

    async def stream_exists(self, stream_id: str, *, provider: str | None = None) -> bool:
        """Whether the stream exists."""
        sid = self._stream_id(stream_id)
        return await self._streams.find(self.get_provider(provider), sid) is not None

    async def get_stream_info(self, stream_id: str, *, provider: str | None = None) -> StreamInfo:
        """Exact info of one stream."""
        sid = self._stream_id(stream_id)
        return await self._streams.info(self.get_provider(provider), sid)

    async def list_streams(
        self, *, limit: int = 100, offset: int = 0, provider: str | None = None, after: str | None = None
    ) -> ListStreamsResponse:
        """A page of streams ordered by id; ``after`` (a stream id, e.g. the last ``next_cursor``) continues after it.

        ``offset`` skips streams one by one (its cost grows with it); ``after`` goes straight to the page.
        """
        return await self._queries.streams(limit, offset, after, provider, self.get_provider)

    # ------------------------------------------------------------------ appends

    @overload
    async def append_event(self, request: AppendEventRequest, /) -> AppendEventResponse: ...
    @overload
    async def append_event(self, request: None = None, /, **kwargs: Unpack[AppendEventArgs]) -> AppendEventResponse: ...
    async def append_event(self, request: AppendEventRequest | None = None, /, **kwargs: Any) -> AppendEventResponse:
        """Append one event; see :meth:`append_events_batch` for the rules."""
        req = coerce(AppendEventRequest, request, kwargs)
        res, due = await self._append(req.stream_id, [event_of(req)], req.expected_version, req.provider)
        return event_response(res, due)

    @overload
    async def append_events_batch(self, request: AppendEventsBatchRequest, /) -> AppendEventsBatchResponse: ...
    @overload
    async def append_events_batch(
        self, request: None = None, /, **kwargs: Unpack[AppendEventsBatchArgs]
    ) -> AppendEventsBatchResponse: ...
    async def append_events_batch(
        self, request: AppendEventsBatchRequest | None = None, /, **kwargs: Any
    ) -> AppendEventsBatchResponse:
        """Append events to one stream, all or nothing.

        ``expected_version`` is checked first (a mismatch raises :class:`ConcurrencyError`, nothing written). Ids
        are made before the first attempt, so a retry (or re-sent ids) is a no-op returning the original versions.
        ``snapshot_due``: ``snapshot_threshold`` events stand past the latest snapshot (no handler took one).
        """
        req = coerce(AppendEventsBatchRequest, request, kwargs)
        events = event_list(req.events)
        res, due = await self._append(req.stream_id, events, req.expected_version, req.provider)
        return batch_response(res, due)

    async def _append(
        self, stream_id: object, events: list[EventData], expected: object, provider: str | None
    ) -> tuple[AppendResult, bool]:
        sid = self._stream_id(stream_id)
        return await self._appends.append(sid, events, expected, provider, self.get_provider)

    def set_snapshot_handler(self, handler: Callable[[str, int], Any] | None) -> None:
        """Let the manager take snapshots itself when ``snapshot_threshold`` is reached (``None``: stop).

        ``handler(stream_id, version)`` (sync or async) returns the aggregate's state at ``version``, or
        ``None`` to decline; see ``docs/manager.md`` (Snapshot threshold) for what happens when it fails.
        """
        self._threshold.handler = handler

    async def _take_snapshot(self, p: Provider, sid: str, data: Any, version: int) -> CreateSnapshotResponse:
        return await self.create_snapshot(stream_id=sid, data=data, version=version, provider=p.name)

    # ------------------------------------------------------------------ reads

    @overload
    async def get_events(self, request: GetEventsRequest, /, *, as_classes: bool = False) -> GetEventsResponse: ...
    @overload
    async def get_events(
        self, request: None = None, /, *, as_classes: bool = False, **kwargs: Unpack[GetEventsArgs]
    ) -> GetEventsResponse: ...
    async def get_events(
        self, request: GetEventsRequest | None = None, /, *, as_classes: bool = False, **kwargs: Any
    ) -> GetEventsResponse:
        """Events matching every given filter, a page at a time, with the total count and ``has_more``.

        A page may be short while ``has_more`` (PostgreSQL), or longer than ``limit`` (a tie of positions on a store
        without total order comes whole): go on from ``next_cursor`` or at ``offset + len(page.events)``.
        ``as_classes=True`` puts an instance of the registered event class in each event's ``data``
        (see :meth:`register_event_class`); events of other types keep their plain data.
        """
        req = coerce(GetEventsRequest, request, kwargs)
        return await self._queries.events(req, self.get_provider, self._classes(as_classes))

    async def get_events_by_stream(
        self,
        stream_id: str,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
        limit: int = 100,
        offset: int = 0,
        sort_order: SortOrder | str = SortOrder.ASC,
        provider: str | None = None,
        as_classes: bool = False,
    ) -> GetEventsResponse:
        """A page of one stream's events; :class:`StreamNotFoundError` if the stream does not exist."""
        res = await self.get_events(
            as_classes=as_classes,
            stream_id=stream_id,
            from_version=from_version,
            to_version=to_version,
            limit=limit,
            offset=offset,
            sort_order=sort_order,
            provider=provider,
        )
        if res.total_count == 0:
            await self.get_stream_info(stream_id, provider=provider)
        return res

    async def get_event_by_id(
        self, event_id: str, *, stream_id: str | None = None, provider: str | None = None, as_classes: bool = False
    ) -> Event:
        """One event by id; :class:`EventNotFoundError` if no event has it."""
        classes = self._classes(as_classes)
        return await self._queries.event(event_id, stream_id, provider, self.get_provider, classes)

    def register_upcaster(self, event_type: str, upcaster: Callable[[Event], Event]) -> None:
        """Transform events of ``event_type`` on read (old schemas into new ones); applied in order.

        These run after the schema-version chains (:meth:`add_upcaster`), on the upcast event's type.
        """
        self._codec.register_upcaster(event_type, upcaster)

    def add_upcaster(
        self, event_type: str, from_version: int, upcaster: Callable[[Any], Any], *, to_type: str | None = None
    ) -> None:
        """Upcast ``event_type`` data from schema ``from_version`` to the next with ``upcaster(data)``.

        Steps chain to the newest version on every read path; ``to_type`` renames the type at that step.
        See :mod:`eventsource.domain.upcasting`.
        """
        self._codec.chain.add(event_type, from_version, upcaster, to_type=to_type)

    def rename_event_type(self, old_type: str, new_type: str) -> None:
        """Read events stored as ``old_type`` as ``new_type`` (the stored events are not rewritten)."""
        self._codec.chain.rename(old_type, new_type)

    def add_snapshot_upcaster(self, aggregate_type: str, from_version: int, upcaster: Callable[[Any], Any]) -> None:
        """Upcast snapshot data of ``aggregate_type`` from schema ``from_version`` to the next, on read."""
        self._codec.chain.add_snapshot(aggregate_type, from_version, upcaster)

    def _classes(self, as_classes: bool) -> EventClasses | None:
        """The registered event classes when ``as_classes`` is ``True`` (a bool: anything else is refused)."""
        return self.event_classes if check_flag("as_classes", as_classes) else None

    def register_event_class(self, *classes: type[DomainEvent]) -> None:
        """Register event classes for reads with ``as_classes=True`` (one class per type name)."""
        self.event_classes.register(*classes)

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
        provider: str | None = None,
        as_classes: bool = False,
    ) -> AsyncIterator[Event]:
        """Iterate one stream's events in O(page) memory. A missing stream yields nothing.

        ``as_classes=True`` puts an instance of the registered event class in each ``data``. A connection or
        timeout error mid-way is retried, resuming after the last event delivered: each event is seen once.
        """
        return self._queries.stream(
            stream_id,
            from_version=from_version,
            to_version=to_version,
            backwards=backwards,
            page_size=page_size,
            provider=provider,
            get_provider=self.get_provider,
            classes=self._classes(as_classes),
        )

    def read_all(
        self, *, from_position: int = 0, page_size: int = 500, provider: str | None = None, as_classes: bool = False
    ) -> AsyncIterator[Event]:
        """Iterate every stream's events in the provider's declared global order, in O(page) memory.

        ``as_classes=True`` puts an instance of the registered event class in each event's ``data``.

        On a store with a ``total`` global order a connection or timeout error mid-way is retried,
        resuming after the last position delivered.
        """
        classes = self._classes(as_classes)
        return self._queries.all_events(
            from_position, page_size, provider=provider, get_provider=self.get_provider, classes=classes
        )

    def subscribe(
        self,
        *,
        stream_id: str | None = None,
        stream_prefix: str | Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        from_position: StartAt = 0,
        from_version: StartAt = 1,
        checkpoint: CheckpointStore | str | None = None,
        name: str | None = None,
        source: str | None = None,
        commit_every: int | None = None,
        page_size: int = 100,
        poll_interval: float = 1.0,
        provider: str | None = None,
        on_decode_error: str = "raise",
        reset: bool = False,
    ) -> Subscription:
        """Follow events as they are appended: catch up from history, then go live (``docs/subscriptions.md``).

        Iterate it with ``async for``; its arguments and delivery: ``docs/manager.md`` (Method details).
        """
        return self._subscriptions.open(
            self.get_provider(provider),
            stream_id=None if stream_id is None else self._stream_id(stream_id),  # as read_stream checks it
            stream_prefix=stream_prefix,
            event_types=event_types,
            from_position=from_position,
            from_version=from_version,
            checkpoint=checkpoint,
            name=name,
            source=source,
            commit_every=commit_every,
            page_size=page_size,
            poll_interval=poll_interval,
            on_decode_error=on_decode_error,
            reset=reset,
        )

    # ------------------------------------------------------------------ snapshots

    @overload
    async def create_snapshot(self, request: CreateSnapshotRequest, /) -> CreateSnapshotResponse: ...
    @overload
    async def create_snapshot(
        self, request: None = None, /, **kwargs: Unpack[CreateSnapshotArgs]
    ) -> CreateSnapshotResponse: ...
    async def create_snapshot(
        self, request: CreateSnapshotRequest | None = None, /, **kwargs: Any
    ) -> CreateSnapshotResponse:
        """Store a snapshot of the stream's state at ``version`` (default: its current version).

        Its encoding, key scope and size limit: ``docs/manager.md`` (Method details).
        """
        req = coerce(CreateSnapshotRequest, request, kwargs)
        sid = self._stream_id(req.stream_id)
        p = self.get_provider(req.provider)
        return await self._snapshots.create(p, sid, req)

    async def get_snapshot(
        self, stream_id: str, *, max_version: int | None = None, provider: str | None = None
    ) -> Snapshot:
        """The latest snapshot (at or below ``max_version``); :class:`SnapshotNotFoundError` if none.

        A snapshot whose key scope was shredded raises :class:`KeyShreddedError` (never redacted).
        """
        sid = self._stream_id(stream_id)
        max_version = check_optional_number("max_version", max_version)
        p = self.get_provider(provider)
        return await self._snapshots.get(p, sid, max_version)

    async def delete_snapshot(self, stream_id: str, *, version: int | None = None, provider: str | None = None) -> int:
        """Delete the snapshot at ``version`` (every snapshot of the stream when ``None``); returns the count."""
        sid = self._stream_id(stream_id)
        version = check_optional_number("version", version)
        p = self.get_provider(provider)
        return await self._snapshots.delete(p, sid, version)

    # ------------------------------------------------------------------ retention

    def retention_policies(self) -> list[RetentionPolicy]:
        """The policies built from configuration (``retention_policies`` and ``retention_period``)."""
        return self._retention.configured()

    async def apply_retention(
        self,
        policies: Sequence[RetentionPolicy | Mapping[str, Any] | str] | None = None,
        *,
        provider: str | None = None,
        now: datetime | None = None,
    ) -> RetentionReport:
        """Apply retention policies now and report what each deleted, per provider.

        Its arguments and the :class:`RetentionError` it raises: ``docs/manager.md`` (Method details).
        """
        self._check_open()
        chosen = self._retention.choose(policies)
        check_time("now", now)
        targets = [self.get_provider(provider)] if provider is not None else list(self._providers.by_name.values())
        return await self._retention.apply(chosen, targets, now, strict=provider is not None)

    async def start_retention(
        self,
        interval: float | str,
        policies: Sequence[RetentionPolicy | Mapping[str, Any] | str] | None = None,
        *,
        provider: str | None = None,
        run_now: bool = True,
    ) -> RetentionSchedule:
        """Apply retention every ``interval`` (seconds or ``"12h"``) until stopped; returns the schedule.

        ``run_now`` runs once immediately. How runs are scheduled and reported: ``docs/manager.md`` (Retention).
        """
        self._check_open()
        every, chosen = self._retention.plan(interval, policies, provider)
        return self._retention.schedule(lambda: self.apply_retention(chosen, provider=provider), every, run_now=run_now)

    async def stop_retention(self, schedule: RetentionSchedule | None = None) -> int:
        """Stop one retention schedule (every one when ``None``); returns how many were running."""
        return await self._retention.stop(schedule)

    # ------------------------------------------------------------------ monitoring

    async def get_stats(self, *, top_streams: int | None = None) -> dict[str, ProviderStats]:
        """Statistics of every provider, by name, with this manager's :meth:`metrics` in ``extra["manager"]``.

        ``top_streams`` bounds ``events_by_stream`` to the streams with the most events (``total_streams``
        stays exact); without it every stream is listed, as the seed did, at a cost that grows with the
        number of streams. Which figures are estimates on a store is named in ``ProviderStats.estimated``.
        """
        return await self._monitoring.stats(check_top_streams(top_streams))

    async def health_check(self) -> dict[str, HealthStatus]:
        """Health of every provider, by name; one that fails is reported unhealthy (never raised), with a reason."""
        return await self._monitoring.health()

    async def subscription_lag(
        self,
        name: str,
        checkpoint: CheckpointStore | str,
        *,
        source: str | None = None,
        provider: str | None = None,
        wait: float | None = None,
    ) -> SubscriptionLag:
        """How far checkpoint ``name`` (in a store or at a URL) of ``source`` (default: the provider's) is behind.

        ``wait``: seconds to wait for the read past the checkpoint (default: as long as it takes); past them
        ``events`` and ``seconds`` are ``None`` (``note`` says why). ``CheckpointNotFoundError`` when none is stored,
        also at a URL with no store (opened with ``create_store`` off: never created); see docs/subscriptions.md.
        """
        p = self.get_provider(provider)
        return await self._monitoring.lag(p, checkpoint, name=name, source=source, wait=wait)

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the manager was built."""
        return self._monitoring.uptime


__all__ = [
    "ANY",
    "LATENCY_WINDOW",
    "SHREDDED_KEY",
    "VERSION_PIN_ATTEMPTS",
    "EventSourcingManager",
    "UnsupportedOperationError",
]
__all__ += ["_event_id"]  # tests and benchmarks draw ids from the manager's generator
