"""The public API: :class:`EventSourcingManager` (async). :mod:`eventsource.sync` wraps it for sync callers.

Data flows one way. Append: validate (ids, sizes, batch limit) -> encode through the codec pipeline ->
retry/timeout policy -> provider. Read: provider -> decode -> upcasters -> :class:`Event`.

Every method accepts either the seed's request object or the same fields as keyword arguments::

    await m.append_event(AppendEventRequest(stream_id="order-1", event_type="Created", data={...}))
    await m.append_event(stream_id="order-1", event_type="Created", data={...})
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.codecs import CodecPipeline
from eventsource.config import ManagerConfig
from eventsource.errors import (
    RETRYABLE,
    ConfigurationError,
    EventNotFoundError,
    EventSourceError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    SnapshotNotFoundError,
    StreamNotFoundError,
    UnsupportedOperationError,
    ValidationError,
)
from eventsource.model import (
    ANY,
    AppendEventRequest,
    AppendEventResponse,
    AppendEventsBatchRequest,
    AppendEventsBatchResponse,
    CreateSnapshotRequest,
    CreateSnapshotResponse,
    CreateStreamRequest,
    Event,
    EventData,
    EventFilter,
    ExpectedVersion,
    GetEventsRequest,
    GetEventsResponse,
    HealthStatus,
    ListStreamsResponse,
    NewEvent,
    NewSnapshot,
    NewStream,
    ProviderInfo,
    ProviderStats,
    RecordedEvent,
    Snapshot,
    SortOrder,
    StreamInfo,
    new_id,
    utcnow,
)
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

    from eventsource.model import Expected
    from eventsource.provider import Provider

log = logging.getLogger("eventsource")

T = TypeVar("T")
R = TypeVar("R")

MAX_EVENT_TYPE_LENGTH = 256
MAX_EVENT_ID_LENGTH = 256
MAX_PAGE_LIMIT = 10_000
_CONTROL = frozenset(chr(c) for c in (*range(32), 127))

Upcaster = "Callable[[Event], Event]"


def _coerce(cls: type[R], request: R | None, kwargs: Mapping[str, Any]) -> R:
    """A request object from either the object itself or keyword fields."""
    if request is not None:
        if kwargs:
            msg = f"pass either a {cls.__name__} or keyword arguments, not both"
            raise ValidationError(msg)
        if not isinstance(request, cls):
            msg = f"expected a {cls.__name__}, got {type(request).__name__}"
            raise ValidationError(msg)
        return request
    try:
        return cls(**kwargs)
    except TypeError as e:
        msg = f"invalid arguments for {cls.__name__}: {e}"
        raise ValidationError(msg) from e


def _check_text(what: str, value: object, max_len: int, *, field_name: str) -> str:
    if not isinstance(value, str):
        msg = f"{what} must be a string, got {type(value).__name__}"
        raise ValidationError(msg, field=field_name)
    if not value:
        msg = f"{what} must not be empty"
        raise ValidationError(msg, field=field_name)
    if len(value) > max_len:
        msg = f"{what} is {len(value)} characters long; the limit is {max_len}"
        raise ValidationError(msg, field=field_name, length=len(value), limit=max_len)
    if not _CONTROL.isdisjoint(value):
        bad = next(c for c in value if c in _CONTROL)
        msg = f"{what} contains the control character {bad!r}, which no store can hold safely"
        raise ValidationError(msg, field=field_name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        msg = f"{what} is not valid Unicode text (lone surrogate)"
        raise ValidationError(msg, field=field_name) from e
    return value


def _check_optional_text(what: str, value: object, *, field_name: str) -> str | None:
    if value is None:
        return None
    return _check_text(what, value, MAX_EVENT_ID_LENGTH, field_name=field_name)


def _check_expected(expected: object) -> Expected:
    if isinstance(expected, ExpectedVersion):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int):
        msg = f"expected_version must be an int >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected!r}"
        raise ValidationError(msg, field="expected_version")
    if expected < 0:
        try:
            return ExpectedVersion(expected)
        except ValueError:
            msg = f"expected_version must be >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected}"
            raise ValidationError(msg, field="expected_version") from None
    return expected


def _check_metadata(value: object, *, field_name: str = "metadata") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        msg = f"{field_name} must be a dict, got {type(value).__name__}"
        raise ValidationError(msg, field=field_name)
    return value


class EventSourcingManager:
    """Append, read, snapshot and manage event streams on any registered store.

    :param config: a :class:`ManagerConfig`, a dict, a JSON/TOML file path, or ``None`` for defaults
        (an embedded SQLite file ``eventsource.db``).
    :param host: the plugin host (built with entry points when omitted).
    """

    def __init__(self, config: ManagerConfig | Mapping[str, Any] | str | None = None, *, host: PluginHost | None = None) -> None:
        self.config = ManagerConfig.load(config)
        self.host = host if host is not None else PluginHost()
        self._providers: dict[str, Provider] = {}
        self._default: str | None = None
        self._started = time.monotonic()
        self._upcasters: dict[str, list[Callable[[Event], Event]]] = {}
        self._closed = False
        compressor = self.config.compression
        if compressor is True:
            compressor = "zlib"
        if compressor in (False, None, "none"):
            compressor = None
        self.pipeline = CodecPipeline(
            self.host.codecs,
            compressor=compressor if isinstance(compressor, str) else None,
            compression_threshold=self.config.compression_threshold,
            cipher=self._build_cipher(),
        )

    def _build_cipher(self) -> Any:
        if not self.config.encryption:
            return None
        if "aes256gcm" not in self.host.codecs.ciphers:
            msg = "encryption is on but no 'aes256gcm' cipher is registered"
            raise ConfigurationError(msg, field="encryption")
        factory = self.host.codecs.ciphers.get("aes256gcm")
        return factory.configure(self.config) if hasattr(factory, "configure") else factory

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> EventSourcingManager:
        """Build and connect every provider named in the configuration."""
        for name, entry in self.config.providers.items():
            if name not in self._providers:
                provider = self.host.create_provider(entry["url"], **entry.get("settings", {}))
                await self.register_provider(provider, name=name)
        if self.config.default_provider and self.config.default_provider in self._providers:
            self._default = self.config.default_provider
        return self

    async def __aenter__(self) -> EventSourcingManager:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every provider (errors are logged, then the first one is raised)."""
        first: BaseException | None = None
        for name, provider in list(self._providers.items()):
            try:
                await provider.close()
            except Exception as e:  # noqa: BLE001 - close the rest, then report
                log.warning("closing provider %s failed: %s", name, type(e).__name__)
                first = first or e
        self._providers.clear()
        self._default = None
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
        name = name or provider.name or provider.kind
        if name in self._providers:
            msg = f"a provider named {name!r} is already registered"
            raise ConfigurationError(msg, field="name")
        provider.name = name
        await self._run(provider, "connect", provider.connect, retry=True)
        self._providers[name] = provider
        if default or self._default is None:
            self._default = name
        return provider

    def get_provider(self, name: str | None = None) -> Provider:
        """The provider registered as ``name``, or the default. A URL selects by scheme."""
        if name is None:
            return self.get_default_provider()
        if name in self._providers:
            return self._providers[name]
        if "://" in name:
            scheme = name.split("://", 1)[0]
            for p in self._providers.values():
                if p.url and p.url.split("://", 1)[0] == scheme:
                    return p
        known = ", ".join(sorted(self._providers)) or "none (call connect() or register_provider())"
        msg = f"no provider named {name!r} is registered (registered: {known})"
        raise ProviderNotFoundError(msg, name=name)

    def get_default_provider(self) -> Provider:
        """The default provider."""
        if self._default is None:
            msg = "no provider is registered; call connect() or register_provider() first"
            raise ProviderNotFoundError(msg)
        return self._providers[self._default]

    def list_providers(self) -> list[str]:
        """Names of registered providers."""
        return list(self._providers)

    def get_provider_info(self) -> list[ProviderInfo]:
        """Kind, masked URL, distribution, version and capabilities of each provider."""
        out = []
        for name, p in self._providers.items():
            reg = self.host.providers.registration(p.kind) if p.kind in self.host.providers else None
            out.append(
                ProviderInfo(
                    name=name,
                    kind=p.kind,
                    url=p.display_url,
                    distribution=reg.distribution if reg else None,
                    version=reg.version if reg else None,
                    capabilities=p.capabilities.as_dict(),
                    is_default=name == self._default,
                )
            )
        return out

    # ------------------------------------------------------------------ call policy

    async def _run(
        self, provider: Provider, op: str, factory: Callable[[], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Run one provider call under the timeout; retry connection/timeout errors with backoff + jitter."""
        if not provider.capabilities.supports(op):
            raise provider.unsupported(op)
        attempts = self.config.retry_attempts if retry else 1
        timeout = self.config.timeout
        delay = self.config.retry_delay
        for attempt in range(1, attempts + 1):
            try:
                if timeout is None:
                    return await factory()
                async with asyncio.timeout(timeout):
                    return await factory()
            except TimeoutError as e:
                err: EventSourceError = (
                    e
                    if isinstance(e, ProviderTimeoutError)
                    else ProviderTimeoutError(
                        f"{op} on provider {provider.name!r} did not finish within {timeout}s",
                        provider=provider.name,
                        operation=op,
                    )
                )
                if attempt == attempts:
                    if err is e:
                        raise
                    raise err from e
            except RETRYABLE:
                if attempt == attempts:
                    raise
            log.info("retrying %s on %s (attempt %d of %d)", op, provider.name, attempt + 1, attempts)
            await asyncio.sleep(random.uniform(0, min(self.config.retry_max_delay, delay)))  # noqa: S311
            delay *= 2
        msg = "unreachable"
        raise AssertionError(msg)

    # ------------------------------------------------------------------ validation and encoding

    def _stream_id(self, stream_id: object) -> str:
        return _check_text("stream id", stream_id, self.config.max_stream_id_length, field_name="stream_id")

    def _aad(self, stream_id: str, item_id: str) -> bytes:
        return f"{stream_id}\x00{item_id}".encode()

    def _encode_event(self, stream_id: str, ev: EventData, provider: Provider) -> NewEvent:
        _check_text("event type", ev.event_type, MAX_EVENT_TYPE_LENGTH, field_name="event_type")
        event_id = ev.event_id if ev.event_id is not None else new_id()
        _check_text("event id", event_id, MAX_EVENT_ID_LENGTH, field_name="event_id")
        metadata = _check_metadata(ev.metadata)
        aad = self._aad(stream_id, event_id)
        scope = ev.tenant_id
        data, encoding = self.pipeline.encode(ev.data, aad=aad, scope=scope)
        meta = self.pipeline.encode_as(metadata, encoding, aad=aad + b"\x00m", scope=scope) if metadata else b""
        size = len(data) + len(meta)
        limit = min(self.config.max_event_size, provider.capabilities.max_event_size or self.config.max_event_size)
        if size > limit:
            msg = f"event of type {ev.event_type!r} is {size} bytes encoded; the limit is {limit}"
            raise ValidationError(msg, field="data", size=size, limit=limit)
        if ev.timestamp is not None and ev.timestamp.tzinfo is None:
            msg = "event timestamp must be timezone-aware"
            raise ValidationError(msg, field="timestamp")
        return NewEvent(
            event_id=event_id,
            event_type=ev.event_type,
            data=data,
            metadata=meta,
            encoding=encoding,
            timestamp=ev.timestamp or utcnow(),
            correlation_id=_check_optional_text("correlation id", ev.correlation_id, field_name="correlation_id"),
            causation_id=_check_optional_text("causation id", ev.causation_id, field_name="causation_id"),
            user_id=_check_optional_text("user id", ev.user_id, field_name="user_id"),
            tenant_id=_check_optional_text("tenant id", ev.tenant_id, field_name="tenant_id"),
            aggregate_id=_check_optional_text("aggregate id", ev.aggregate_id, field_name="aggregate_id"),
            aggregate_type=_check_optional_text("aggregate type", ev.aggregate_type, field_name="aggregate_type"),
        )

    def _decode(self, rec: RecordedEvent) -> Event:
        aad = self._aad(rec.stream_id, rec.event_id)
        scope = rec.tenant_id
        data = self.pipeline.decode(rec.data, rec.encoding, aad=aad, scope=scope)
        meta = self.pipeline.decode(rec.metadata, rec.encoding, aad=aad + b"\x00m", scope=scope) if rec.metadata else {}
        ev = Event(
            event_id=rec.event_id,
            stream_id=rec.stream_id,
            event_type=rec.event_type,
            data=data,
            metadata=meta,
            version=rec.version,
            position=rec.position,
            timestamp=rec.timestamp,
            correlation_id=rec.correlation_id,
            causation_id=rec.causation_id,
            user_id=rec.user_id,
            tenant_id=rec.tenant_id,
            aggregate_id=rec.aggregate_id,
            aggregate_type=rec.aggregate_type,
        )
        for up in self._upcasters.get(ev.event_type, ()):
            ev = up(ev)
        return ev

    def register_upcaster(self, event_type: str, upcaster: Callable[[Event], Event]) -> None:
        """Transform events of ``event_type`` on read (old schemas into new ones); applied in order."""
        self._upcasters.setdefault(event_type, []).append(upcaster)

    # ------------------------------------------------------------------ streams

    async def create_stream(self, request: CreateStreamRequest | None = None, /, **kwargs: Any) -> StreamInfo:
        """Create an empty stream; :class:`StreamExistsError` if the id is taken."""
        req = _coerce(CreateStreamRequest, request, kwargs)
        sid = self._stream_id(req.stream_id)
        stream = NewStream(
            stream_id=sid,
            name=_check_optional_text("stream name", req.name, field_name="name"),
            aggregate_id=_check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id"),
            aggregate_type=_check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type"),
            metadata=self._plain_metadata(req.metadata),
        )
        p = self.get_provider(req.provider)
        return await self._run(p, "create_stream", lambda: p.create_stream(stream), retry=False)

    def _plain_metadata(self, metadata: object) -> dict[str, Any]:
        md = _check_metadata(metadata)
        try:
            self.host.codecs.serializers.get("json").dumps(md)
        except ValidationError as e:
            msg = f"stream metadata must be JSON-serializable: {e}"
            raise ValidationError(msg, field="metadata") from e
        return md

    async def delete_stream(self, stream_id: str, *, provider: str | None = None) -> None:
        """Delete the stream's events, info and snapshots; :class:`StreamNotFoundError` if missing."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        await self._run(p, "delete_stream", lambda: p.delete_stream(sid))

    async def stream_exists(self, stream_id: str, *, provider: str | None = None) -> bool:
        """Whether the stream exists."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        return await self._run(p, "get_stream_info", lambda: p.get_stream_info(sid)) is not None

    async def get_stream_info(self, stream_id: str, *, provider: str | None = None) -> StreamInfo:
        """Exact info of one stream."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        info = await self._run(p, "get_stream_info", lambda: p.get_stream_info(sid))
        if info is None:
            msg = f"stream {sid!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=sid)
        return info

    async def list_streams(self, *, limit: int = 100, offset: int = 0, provider: str | None = None) -> ListStreamsResponse:
        """A page of streams ordered by id."""
        self._check_paging(limit, offset)
        p = self.get_provider(provider)
        streams, total = await self._run(p, "list_streams", lambda: p.list_streams(limit=limit, offset=offset))
        return ListStreamsResponse(streams=streams, total_count=total, has_more=offset + len(streams) < total)

    @staticmethod
    def _check_paging(limit: object, offset: object) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
            msg = f"limit must be an int from 1 to {MAX_PAGE_LIMIT}, got {limit!r}"
            raise ValidationError(msg, field="limit")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            msg = f"offset must be an int >= 0, got {offset!r}"
            raise ValidationError(msg, field="offset")

    # ------------------------------------------------------------------ events

    async def append_event(self, request: AppendEventRequest | None = None, /, **kwargs: Any) -> AppendEventResponse:
        """Append one event; see :meth:`append_events_batch` for the rules."""
        req = _coerce(AppendEventRequest, request, kwargs)
        ev = EventData(
            event_type=req.event_type,
            data=req.data,
            metadata=req.metadata,
            event_id=req.event_id,
            correlation_id=req.correlation_id,
            causation_id=req.causation_id,
            user_id=req.user_id,
            tenant_id=req.tenant_id,
            aggregate_id=req.aggregate_id,
            aggregate_type=req.aggregate_type,
            timestamp=req.timestamp,
        )
        res = await self._append(req.stream_id, [ev], req.expected_version, req.provider)
        return AppendEventResponse(
            event_id=res.event_ids[0],
            stream_id=res.stream_id,
            version=res.first_version,
            position=res.positions[0],
            timestamp=res.timestamp,
            duplicate=res.duplicate,
        )

    async def append_events_batch(
        self, request: AppendEventsBatchRequest | None = None, /, **kwargs: Any
    ) -> AppendEventsBatchResponse:
        """Append events to one stream, all or nothing.

        ``expected_version`` is checked first (a mismatch raises :class:`ConcurrencyError`, nothing is
        written). Event ids are generated before the first attempt, so a retried call, or a caller
        re-sending the same ids, is an idempotent no-op that returns the original versions.
        """
        req = _coerce(AppendEventsBatchRequest, request, kwargs)
        if not isinstance(req.events, (list, tuple)):
            msg = "events must be a list of EventData"
            raise ValidationError(msg, field="events")
        events = [e if isinstance(e, EventData) else self._event_data(e) for e in req.events]
        res = await self._append(req.stream_id, events, req.expected_version, req.provider)
        return AppendEventsBatchResponse(
            stream_id=res.stream_id,
            event_ids=list(res.event_ids),
            first_version=res.first_version,
            last_version=res.last_version,
            positions=list(res.positions),
            timestamp=res.timestamp,
            duplicate=res.duplicate,
        )

    @staticmethod
    def _event_data(value: object) -> EventData:
        if isinstance(value, dict):
            try:
                return EventData(**value)
            except TypeError as e:
                msg = f"invalid event: {e}"
                raise ValidationError(msg, field="events") from e
        msg = f"events must be EventData or dicts, got {type(value).__name__}"
        raise ValidationError(msg, field="events")

    async def _append(self, stream_id: object, events: list[EventData], expected: object, provider: str | None) -> Any:
        sid = self._stream_id(stream_id)
        exp = _check_expected(expected)
        if not events:
            msg = "a batch must hold at least one event"
            raise ValidationError(msg, field="events")
        if len(events) > self.config.max_batch_size:
            msg = f"a batch of {len(events)} events exceeds max_batch_size={self.config.max_batch_size}"
            raise ValidationError(msg, field="events", size=len(events), limit=self.config.max_batch_size)
        p = self.get_provider(provider)
        encoded = [self._encode_event(sid, e, p) for e in events]
        ids = [e.event_id for e in encoded]
        if len(set(ids)) != len(ids):
            msg = "a batch holds the same event id twice"
            raise ValidationError(msg, field="event_id")
        limit = p.capabilities.max_batch_bytes
        if limit is not None and len(encoded) > 1:
            total = sum(e.size for e in encoded)
            if total > limit:
                msg = f"the batch is {total} bytes encoded; provider {p.name!r} can write at most {limit} atomically"
                raise ValidationError(msg, field="events", size=total, limit=limit)
        first = encoded[0]
        stream = NewStream(stream_id=sid, aggregate_id=first.aggregate_id, aggregate_type=first.aggregate_type)
        return await self._run(p, "append", lambda: p.append(sid, encoded, exp, stream))

    async def get_events(self, request: GetEventsRequest | None = None, /, **kwargs: Any) -> GetEventsResponse:
        """Events matching every given filter, a page at a time, with the total count and ``has_more``."""
        req = _coerce(GetEventsRequest, request, kwargs)
        self._check_paging(req.limit, req.offset)
        try:
            order = SortOrder(req.sort_order)
        except ValueError:
            msg = f"sort_order must be 'asc' or 'desc', got {req.sort_order!r}"
            raise ValidationError(msg, field="sort_order") from None
        for name in ("from_timestamp", "to_timestamp"):
            ts = getattr(req, name)
            if ts is not None and ts.tzinfo is None:
                msg = f"{name} must be timezone-aware"
                raise ValidationError(msg, field=name)
        flt = EventFilter(
            stream_id=self._stream_id(req.stream_id) if req.stream_id is not None else None,
            event_types=tuple(req.event_types) if req.event_types else None,
            from_version=req.from_version,
            to_version=req.to_version,
            from_timestamp=req.from_timestamp,
            to_timestamp=req.to_timestamp,
            tenant_id=req.tenant_id,
            correlation_id=req.correlation_id,
            aggregate_id=req.aggregate_id,
            aggregate_type=req.aggregate_type,
        )
        p = self.get_provider(req.provider)
        page = await self._run(
            p,
            "query",
            lambda: p.query(flt, limit=req.limit, offset=req.offset, descending=order is SortOrder.DESC),
        )
        events = [self._decode(r) for r in page.events]
        return GetEventsResponse(
            events=events,
            total_count=page.total_count,
            has_more=req.offset + len(events) < page.total_count,
            limit=req.limit,
            offset=req.offset,
        )

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
    ) -> GetEventsResponse:
        """A page of one stream's events; :class:`StreamNotFoundError` if the stream does not exist."""
        res = await self.get_events(
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

    async def get_event_by_id(self, event_id: str, *, stream_id: str | None = None, provider: str | None = None) -> Event:
        """One event by id; :class:`EventNotFoundError` if no event has it."""
        eid = _check_text("event id", event_id, MAX_EVENT_ID_LENGTH, field_name="event_id")
        sid = self._stream_id(stream_id) if stream_id is not None else None
        p = self.get_provider(provider)
        rec = await self._run(p, "get_event", lambda: p.get_event(eid, sid))
        if rec is None:
            msg = f"no event has id {eid!r}" + (f" in stream {sid!r}" if sid else "")
            raise EventNotFoundError(msg, event_id=eid)
        return self._decode(rec)

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
        provider: str | None = None,
    ) -> AsyncIterator[Event]:
        """Iterate one stream's events in O(page) memory. A missing stream yields nothing."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        self._check_paging(page_size, 0)
        it = p.read_stream(sid, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size)
        async for rec in self._guarded(p, "read_stream", it):
            yield self._decode(rec)

    async def read_all(self, *, from_position: int = 0, page_size: int = 500, provider: str | None = None) -> AsyncIterator[Event]:
        """Iterate every stream's events in the provider's declared global order, in O(page) memory."""
        p = self.get_provider(provider)
        self._check_paging(page_size, 0)
        async for rec in self._guarded(p, "read_all", p.read_all(from_position=from_position, page_size=page_size)):
            yield self._decode(rec)

    async def _guarded(self, p: Provider, op: str, it: AsyncIterator[RecordedEvent]) -> AsyncIterator[RecordedEvent]:
        """Apply the timeout to each step of a provider iterator, and close it when the caller stops."""
        if not p.capabilities.supports(op):
            raise p.unsupported(op)
        timeout = self.config.timeout
        aiter_ = it.__aiter__()
        try:
            while True:
                try:
                    if timeout is None:
                        rec = await aiter_.__anext__()
                    else:
                        async with asyncio.timeout(timeout):
                            rec = await aiter_.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError as e:
                    if isinstance(e, ProviderTimeoutError):
                        raise
                    msg = f"{op} on provider {p.name!r} produced nothing within {timeout}s"
                    raise ProviderTimeoutError(msg, provider=p.name, operation=op) from e
                yield rec
        finally:
            aclose = getattr(aiter_, "aclose", None)
            if aclose is not None:
                await aclose()

    # ------------------------------------------------------------------ snapshots

    async def create_snapshot(self, request: CreateSnapshotRequest | None = None, /, **kwargs: Any) -> CreateSnapshotResponse:
        """Store a snapshot of the stream's state at ``version`` (default: its current version)."""
        req = _coerce(CreateSnapshotRequest, request, kwargs)
        sid = self._stream_id(req.stream_id)
        p = self.get_provider(req.provider)
        info = await self.get_stream_info(sid, provider=req.provider)
        version = info.version if req.version is None else req.version
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= info.version:
            msg = f"snapshot version must be from 1 to the stream's version {info.version}, got {version!r}"
            raise ValidationError(msg, field="version")
        snapshot_id = new_id()
        aad = self._aad(sid, f"snapshot:{snapshot_id}")
        metadata = _check_metadata(req.metadata)
        data, encoding = self.pipeline.encode(req.data, aad=aad, scope=None)
        meta = self.pipeline.encode_as(metadata, encoding, aad=aad + b"\x00m", scope=None) if metadata else b""
        position = None
        async for rec in p.read_stream(sid, from_version=version, to_version=version):
            position = rec.position
        snap = NewSnapshot(
            snapshot_id=snapshot_id,
            stream_id=sid,
            version=version,
            data=data,
            metadata=meta,
            encoding=encoding,
            created_at=utcnow(),
            aggregate_id=_check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id") or info.aggregate_id,
            aggregate_type=_check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type")
            or info.aggregate_type,
            position=position,
        )
        await self._run(p, "save_snapshot", lambda: p.save_snapshot(snap))
        return CreateSnapshotResponse(snapshot_id=snapshot_id, stream_id=sid, version=version, created_at=snap.created_at)

    async def get_snapshot(self, stream_id: str, *, max_version: int | None = None, provider: str | None = None) -> Snapshot:
        """The latest snapshot (at or below ``max_version``); :class:`SnapshotNotFoundError` if none."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        snap = await self._run(p, "get_snapshot", lambda: p.get_snapshot(sid, max_version))
        if snap is None:
            msg = f"stream {sid!r} has no snapshot" + (f" at or below version {max_version}" if max_version else "")
            raise SnapshotNotFoundError(msg, stream_id=sid)
        aad = self._aad(sid, f"snapshot:{snap.snapshot_id}")
        return Snapshot(
            snapshot_id=snap.snapshot_id,
            stream_id=snap.stream_id,
            version=snap.version,
            data=self.pipeline.decode(snap.data, snap.encoding, aad=aad),
            metadata=self.pipeline.decode(snap.metadata, snap.encoding, aad=aad + b"\x00m") if snap.metadata else {},
            created_at=snap.created_at,
            aggregate_id=snap.aggregate_id,
            aggregate_type=snap.aggregate_type,
            position=snap.position,
        )

    async def delete_snapshot(self, stream_id: str, *, version: int | None = None, provider: str | None = None) -> int:
        """Delete the snapshot at ``version`` (every snapshot of the stream when ``None``); returns the count."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        return await self._run(p, "delete_snapshots", lambda: p.delete_snapshots(sid, version))

    # ------------------------------------------------------------------ monitoring

    async def get_stats(self) -> dict[str, ProviderStats]:
        """Statistics of every provider, by name."""
        out = {}
        for name, p in self._providers.items():
            out[name] = await self._run(p, "stats", p.stats)
        return out

    async def health_check(self) -> dict[str, HealthStatus]:
        """Health of every provider, by name; a provider that raises is reported unhealthy, not raised."""
        out = {}
        for name, p in self._providers.items():
            start = time.perf_counter()
            try:
                out[name] = await self._run(p, "health", p.health, retry=False)
            except (EventSourceError, OSError) as e:
                out[name] = HealthStatus(
                    healthy=False,
                    provider=name,
                    message=f"{type(e).__name__}: {e}",
                    latency_ms=(time.perf_counter() - start) * 1000,
                )
        return out

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the manager was built."""
        return time.monotonic() - self._started


__all__ = ["ANY", "EventSourcingManager", "UnsupportedOperationError"]
