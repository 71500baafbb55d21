"""The public API: :class:`EventSourcingManager` (async). :mod:`eventsource.sync` wraps it for sync callers.

Data flows one way. Append: validate (ids, sizes, batch limit) -> encode through the codec pipeline ->
retry/timeout policy -> provider. Read: provider -> decode -> upcasters -> :class:`Event`.

Every method accepts either the seed's request object or the same fields as keyword arguments::

    await m.append_event(AppendEventRequest(stream_id="order-1", event_type="Created", data={...}))
    await m.append_event(stream_id="order-1", event_type="Created", data={...})

Policies the manager applies the same way on every provider (payloads are encoded before any
provider sees them):

* **Codecs.** JSON (lossless for datetimes, UUIDs, Decimals...), zlib or brotli above
  ``compression_threshold``, AES-256-GCM. Each payload stores its encoding descriptor, so events and
  snapshots written under any past configuration stay readable.
* **Associated data.** An event payload is bound to ``(stream id, event id, version, part)`` and a
  snapshot to ``(stream id, snapshot id, version, part)``; ``part`` separates data from metadata, and
  the encoding descriptor is bound too. A ciphertext moved to another event, version or part fails
  with :class:`DecryptionError`.
* **Binding the version.** The provider assigns versions, so with encryption on and
  ``expected_version`` ANY or STREAM_EXISTS the manager *pins* the version: it takes the stream's
  current version (cached per stream after the first append; one ``get_stream_info`` otherwise),
  seals the payloads for the versions that follow, and appends with that exact expected version. A
  ``ConcurrencyError`` means another writer got there first: the manager re-seals for the version the
  error reports and tries again (up to :data:`VERSION_PIN_ATTEMPTS` times, with a short random pause
  from the second), so ANY keeps its meaning. Pinned appends to one stream through one manager take
  turns (a lock per stream), so only other processes can make a pin lose; if every attempt loses, the
  append raises :class:`ProviderTimeoutError` (nothing was written; try again), never a
  ``ConcurrencyError`` the caller's ANY cannot have asked for.
  An exact expected version or NO_STREAM needs no extra round-trip. With encryption off nothing of this
  runs.
* **Crypto-shredding.** :meth:`EventSourcingManager.shred` removes a scope's keys. Reading one of its
  events raises :class:`KeyShreddedError` naming the scope (or redacts it: ``shredded_events =
  "redact"``); ``read_stream`` / ``get_events`` over a mix raise on the first shredded event, the rest
  of the store reads normally. Snapshots of a shredded scope always raise.
* **Retries and timeouts.** Every provider call runs under ``timeout`` (raising
  :class:`ProviderTimeoutError`); connection and timeout errors are retried up to ``retry_attempts``
  with exponential backoff and full jitter (``retry_delay`` doubling, capped by ``retry_max_delay``);
  conflicts and validation errors never are. Appends are idempotent across retries because event ids
  are generated before the first attempt. Stream reads resume after the last event delivered.
  ``create_stream`` and ``delete_stream`` are never retried: an attempt that timed out may still land,
  and a retried delete would then remove a stream another writer re-created in between.
* **Snapshot threshold.** With ``snapshot_threshold = N`` an append response says ``snapshot_due=True``
  once the stream holds N events past its latest snapshot. The manager *tells the caller*; if a
  snapshot handler is set (:meth:`EventSourcingManager.set_snapshot_handler`) it calls it instead and
  stores the snapshot itself before returning (then ``snapshot_due`` is ``False`` unless the handler
  declined or failed).
* **Metrics.** Calls, errors, retries, events and latency percentiles (p50/p90/p99 over the last
  :data:`LATENCY_WINDOW` calls) per provider and operation: :meth:`EventSourcingManager.metrics`, also
  in ``get_stats()[name].extra["manager"]``.
* **Retention.** :meth:`EventSourcingManager.apply_retention` and
  :meth:`EventSourcingManager.start_retention` (see :mod:`eventsource.retention`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import logging
import os
import random
import threading
import time
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from eventsource.codecs import CodecPipeline
from eventsource.config import ManagerConfig
from eventsource.errors import (
    RETRYABLE,
    CodecError,
    ConcurrencyError,
    ConfigurationError,
    EventNotFoundError,
    EventSourceError,
    KeyShreddedError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RetentionError,
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
    RowPage,
    Snapshot,
    SortOrder,
    StreamInfo,
    make_event,
    make_recorded_event,
    new_id,
    positional_constructor,
    utcnow,
)
from eventsource.plugins import PluginHost
from eventsource.provider import check_expected
from eventsource.retention import (
    RetentionContext,
    RetentionPolicy,
    RetentionReport,
    RetentionSchedule,
    build_policies,
    run_policy,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from eventsource.codecs import Cipher
    from eventsource.codecs.keys import KeyProvider
    from eventsource.model import AppendResult, Expected
    from eventsource.provider import Provider

_make_new_event = positional_constructor(NewEvent)
_make_new_stream = positional_constructor(NewStream)
_make_append_event_response = positional_constructor(AppendEventResponse)

log = logging.getLogger("eventsource")

T = TypeVar("T")
R = TypeVar("R")

MAX_EVENT_TYPE_LENGTH = 256
MAX_EVENT_ID_LENGTH = 256
MAX_PAGE_LIMIT = 10_000
_CONTROL = frozenset(chr(c) for c in (*range(32), 127))

Upcaster = "Callable[[Event], Event]"

VERSION_PIN_ATTEMPTS = 8
"""Encrypted ANY/STREAM_EXISTS appends: how many times a lost version race is re-sealed and retried."""
LATENCY_WINDOW = 1024
"""Latency percentiles are computed over this many most recent calls per provider and operation."""
STREAM_CACHE_SIZE = 65_536
"""Streams whose version / latest snapshot version the manager remembers (oldest evicted first)."""
SHREDDED_KEY = "eventsource.shredded"
"""Metadata key of a redacted event (``shredded_events = "redact"``): the shredded scope."""


class _Deadlines:
    """One timer bounding every in-flight provider call of a manager by ``timeout``.

    ``asyncio.timeout`` arms and cancels a timer per call (about a quarter of an in-memory append's
    cost). Here a call only adds itself to an insertion-ordered dict (oldest first) and removes itself
    when done; a single timer, armed for the oldest call's deadline, cancels the calls that overran
    (as ``asyncio.timeout`` does) and re-arms for the next oldest. :meth:`expired` tells the caller's
    ``except CancelledError`` whether the cancellation was this deadline (then it is undone) or a real
    cancellation, which propagates.
    """

    __slots__ = ("calls", "handle", "loop", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.calls: dict[int, list[Any]] = {}
        self.handle: asyncio.TimerHandle | None = None

    def enter(self) -> list[Any]:
        """Register the current task's call: ``[task, start, fired, cancelling-before]``."""
        entry: list[Any] = [asyncio.current_task(), self.loop.time(), False, 0]
        self.calls[id(entry)] = entry
        if self.handle is None:
            self.handle = self.loop.call_at(entry[1] + self.timeout, self._fire)
        return entry

    def exit(self, entry: list[Any]) -> None:
        self.calls.pop(id(entry), None)

    def expired(self, entry: list[Any]) -> bool:
        """Whether this deadline cancelled the call (the cancellation is then undone)."""
        return bool(entry[2]) and entry[0].uncancel() <= entry[3]

    def _fire(self) -> None:
        self.handle = None
        limit = self.loop.time() - self.timeout + 0.001
        calls = self.calls
        while calls:
            key = next(iter(calls))
            entry = calls[key]
            if entry[1] > limit:
                self.handle = self.loop.call_at(entry[1] + self.timeout, self._fire)
                return
            del calls[key]
            task = entry[0]
            if task is not None and not task.done():
                entry[2] = True
                entry[3] = task.cancelling()
                task.cancel()


class _Watchdog:
    """Bounds every step of an iteration by ``timeout`` without arming a timer per step.

    ``asyncio.timeout`` around each ``__anext__`` schedules and cancels a timer per event, which
    costs more than decoding a small event. Instead one timer checks, at most once per ``timeout``,
    whether the current step started more than ``timeout`` ago; if so it cancels the task (as
    ``asyncio.timeout`` does) and :meth:`timed_out` turns that cancellation into a timeout. A step
    sets ``start`` (loop clock), ``task`` (the task driving it) and ``stepping``.
    """

    __slots__ = ("base", "fired", "handle", "loop", "start", "stepping", "task", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.start = self.loop.time()
        self.stepping = False
        self.fired = False
        self.base = 0
        self.task: asyncio.Task[Any] | None = None
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.start + timeout, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        task = self.task
        if self.stepping and task is not None and now >= self.start + self.timeout - 0.001:
            self.fired = True
            self.base = task.cancelling()
            task.cancel()
            self.handle = None
            return
        self.handle = self.loop.call_at((self.start if self.stepping else now) + self.timeout, self._check)

    def timed_out(self) -> bool:
        """Called on ``CancelledError``: whether this watchdog caused it (then the cancel is undone)."""
        if not self.fired or self.task is None:
            return False
        self.fired = False
        self.handle = self.loop.call_at(self.loop.time() + self.timeout, self._check)
        return self.task.uncancel() <= self.base

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class _NotResumableError(Exception):
    """Internal: an iterator cannot be reopened after an error."""


class _Op:
    """Counters and a latency ring for one (provider, operation). No allocation per call."""

    __slots__ = ("calls", "errors", "events", "i", "retries", "ring")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.retries = 0
        self.events = 0
        self.i = 0
        self.ring = [0.0] * LATENCY_WINDOW

    def record(self, seconds: float) -> None:
        self.ring[self.i % LATENCY_WINDOW] = seconds
        self.i += 1

    def summary(self) -> dict[str, Any]:
        n = min(self.i, LATENCY_WINDOW)
        lat = sorted(self.ring[:n])
        out: dict[str, Any] = {
            "calls": self.calls,
            "errors": self.errors,
            "retries": self.retries,
            "events": self.events,
            "samples": n,
        }
        for name, q in (("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99)):
            out[name] = round(lat[min(n - 1, int(q * n))] * 1000, 4) if n else None
        out["max_ms"] = round(lat[-1] * 1000, 4) if n else None
        return out


class _Metrics:
    """Per-provider operation metrics kept by the manager."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: dict[str, _Op] = {}

    def op(self, name: str) -> _Op:
        o = self.ops.get(name)
        if o is None:
            o = self.ops[name] = _Op()
        return o


class _EventIds:
    """Random (version 4) UUID strings, 256 per ``os.urandom`` call.

    ``str(uuid.uuid4())`` makes one ``getrandom`` syscall and builds a ``UUID`` object per id: several
    microseconds, as much as encoding a small event. The bytes are just as random; the buffer is
    dropped in a forked child (so parent and child never hand out the same ids) and guarded by a lock
    (the sync facade and user threads may append at once).
    """

    __slots__ = ("buf", "i", "lock")

    def __init__(self) -> None:
        self.buf = b""
        self.i = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.buf = b""
        self.i = 0

    def __call__(self) -> str:
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


_event_id = _EventIds()
os.register_at_fork(after_in_child=_event_id.reset)


def _bounded_put(cache: dict[str, Any], key: str, value: Any) -> None:
    if key not in cache and len(cache) >= STREAM_CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = value


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


MAX_NUMBER = 2**63 - 1
"""The largest version, position or count any store can hold (a signed 64-bit integer)."""


def _check_number(name: str, value: object, *, minimum: int = 0) -> int:
    """An int from ``minimum`` to :data:`MAX_NUMBER` (never a bool), else :class:`ValidationError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise ValidationError(msg, field=name)
    if not minimum <= value <= MAX_NUMBER:
        msg = f"{name} must be from {minimum} to {MAX_NUMBER}, got {value}"
        raise ValidationError(msg, field=name)
    return value


def _check_optional_number(name: str, value: object, *, minimum: int = 0) -> int | None:
    return None if value is None else _check_number(name, value, minimum=minimum)


def _check_time(name: str, value: object) -> datetime | None:
    """``None`` or a timezone-aware datetime, else :class:`ValidationError`."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        msg = f"{name} must be a timezone-aware datetime, got {type(value).__name__}"
        raise ValidationError(msg, field=name)
    if value.utcoffset() is None:
        msg = f"{name} must be timezone-aware"
        raise ValidationError(msg, field=name)
    return value


def _check_event_types(value: object) -> tuple[str, ...] | None:
    """``None``, one type name, or a list/tuple of them (a str is one name, never its letters)."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple, set, frozenset)):
        msg = f"event_types must be a list of event type names, got {type(value).__name__}"
        raise ValidationError(msg, field="event_types")
    return tuple(_check_text("event type", n, MAX_EVENT_TYPE_LENGTH, field_name="event_types") for n in names) or None


def _check_expected(expected: object) -> Expected:
    if isinstance(expected, ExpectedVersion):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int):
        msg = f"expected_version must be an int >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected!r}"
        raise ValidationError(msg, field="expected_version")
    if expected > MAX_NUMBER:
        msg = f"expected_version must be at most {MAX_NUMBER}, got {expected}"
        raise ValidationError(msg, field="expected_version")
    if expected < 0:
        try:
            return ExpectedVersion(expected)
        except ValueError:
            msg = f"expected_version must be >= 0 or ANY/NO_STREAM/STREAM_EXISTS, got {expected}"
            raise ValidationError(msg, field="expected_version") from None
    return expected


def _with_context(e: CodecError, where: str, **details: Any) -> CodecError:
    """The same error type with ``where`` (ids only, never payload) in front of its message."""
    try:
        return type(e)(f"{where}: {e.message}", **{**e.details, **details})
    except TypeError:  # a third-party subclass with another signature
        return e


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
        self._providers: dict[str, Provider] = {}
        self._default: str | None = None
        self._started = time.monotonic()
        self._upcasters: dict[str, list[Callable[[Event], Event]]] = {}
        self._closed = False
        self._metrics: dict[str, _Metrics] = {}
        self._versions: dict[str, int] = {}  # "provider\x00stream" -> last known version (a guess, verified by the store)
        self._pin_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._snapshots: dict[str, list[int]] = {}  # "provider\x00stream" -> [latest snapshot version, next re-check]
        self._schedules: list[RetentionSchedule] = []
        self._deadlines: _Deadlines | None = None
        self._policies: list[RetentionPolicy] | None = None
        self._snapshot_handler = snapshot_handler
        self._threshold = self.config.snapshot_threshold
        self._redact = self.config.shredded_events == "redact"
        self._scope_mode = self.config.encryption_scope
        compressor: bool | str | None = self.config.compression
        if compressor is True:
            compressor = "zlib"
        if compressor in (False, None, "none"):
            compressor = None
        self.keys: KeyProvider | None = self._build_keys(key_provider)
        readers = self._build_ciphers()
        writer = None
        if self.config.encryption:
            writer = readers.get("aes256gcm")
            if writer is None:
                msg = "encryption is on but no 'aes256gcm' cipher is registered"
                raise ConfigurationError(msg, field="encryption")
        self._cipher: Cipher | None = writer
        self.pipeline = CodecPipeline(
            self.host.codecs,
            compressor=compressor if isinstance(compressor, str) else None,
            compression_threshold=self.config.compression_threshold,
            cipher=writer,
            ciphers=readers,
        )
        self._serializer = self.pipeline.serializer
        self._plain = self.pipeline.serializer.name

    def __repr__(self) -> str:
        return (
            f"EventSourcingManager(providers={list(self._providers)!r}, default={self._default!r}, "
            f"encryption={self._cipher is not None}, keys={self.keys!r})"
        )

    def _build_keys(self, explicit: KeyProvider | None) -> KeyProvider | None:
        """Explicit provider, else the ``eventsource_key_provider`` hook, else the ring from configuration."""
        if explicit is not None:
            return explicit
        hooked = self.host.key_provider(self.config)
        if hooked is not None:
            return hooked
        cfg = self.config
        if not cfg.encryption_keys:
            if cfg.encryption:
                msg = "encryption is on but no key is configured (encryption_keys, a key_provider, or a key-provider plugin)"
                raise ConfigurationError(msg, field="encryption_keys")
            return None
        from eventsource.codecs.keys import ScopedKeyStore, StaticKeyRing

        ring = StaticKeyRing(cfg.encryption_keys, cfg.active_key_id)
        if cfg.encryption_scope == "global":
            return ring
        if cfg.encryption_key_store is None:
            msg = (
                f"encryption_scope={cfg.encryption_scope!r} needs a key store for per-scope keys: set "
                "encryption_key_store to a file path (or 'memory' for throw-away stores), or install a key-provider plugin"
            )
            raise ConfigurationError(msg, field="encryption_key_store")
        path = None if cfg.encryption_key_store == "memory" else cfg.encryption_key_store
        return ScopedKeyStore(ring, path)

    def _build_ciphers(self) -> dict[str, Cipher]:
        """Every registered cipher that can take keys, bound to :attr:`keys` (for reading and writing)."""
        if self.keys is None:
            return {}
        out: dict[str, Cipher] = {}
        for reg in self.host.codecs.ciphers:
            bind = getattr(reg.item, "bind", None)
            if bind is not None:
                out[reg.name] = bind(self.keys)
        return out

    def key_scope(self, *, stream_id: str | None = None, tenant_id: str | None = None) -> str | None:
        """The key scope of an event of ``stream_id`` / ``tenant_id`` under ``encryption_scope``.

        ``"global"``: ``None``; ``"tenant"``: ``"tenant:<tenant_id>"`` (``None`` without a tenant);
        ``"stream"``: ``"stream:<stream_id>"``.
        """
        mode = self._scope_mode
        if mode == "tenant":
            return f"tenant:{tenant_id}" if tenant_id else None
        if mode == "stream":
            return f"stream:{stream_id}" if stream_id else None
        return None

    def _check_open(self) -> None:
        """Refuse work that would run on a closed manager (and report success for doing nothing)."""
        if self._closed:
            msg = "this manager is closed; create a new one (or call connect() again)"
            raise ProviderUnavailableError(msg)

    def _require_keys(self) -> KeyProvider:
        if self.keys is None:
            msg = "no key provider is configured (encryption_keys or key_provider)"
            raise ConfigurationError(msg, field="encryption_keys")
        return self.keys

    async def shred(self, *, tenant_id: str | None = None, stream_id: str | None = None, scope: str | None = None) -> int:
        """Crypto-shred one scope: delete its keys, so its events and snapshots can never be read again.

        Name the scope by ``tenant_id`` (``encryption_scope="tenant"``), ``stream_id``
        (``encryption_scope="stream"``) or its raw ``scope`` string. Reads of its payloads then raise
        :class:`KeyShreddedError` naming the scope; everything else reads normally. New events of the same
        tenant or stream get a fresh key. Returns how many keys were removed.
        """
        keys = self._require_keys()
        if scope is None:
            if (tenant_id is None) == (stream_id is None):
                msg = "shred needs exactly one of tenant_id, stream_id or scope"
                raise ValidationError(msg, field="scope")
            scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id)
            if scope is None:
                which = "tenant_id" if tenant_id is not None else "stream_id"
                msg = f"encryption_scope is {self._scope_mode!r}: keys are not scoped by {which}, so there is nothing to shred"
                raise ValidationError(msg, field=which)
        n = await asyncio.to_thread(keys.shred, scope)
        for cipher in self.pipeline.ciphers.values():
            forget = getattr(cipher, "forget", None)
            if forget is not None:
                forget()
        log.info("shredded %d key(s) of one scope", n)
        return n

    def rotate_key(self, *, tenant_id: str | None = None, stream_id: str | None = None, scope: str | None = None) -> str:
        """Give a scope a new active key (old payloads stay readable); returns the new key id.

        The global key ring rotates by configuration instead: add a key id and set ``active_key_id``.
        """
        keys = self._require_keys()
        if scope is None and (tenant_id is not None or stream_id is not None):
            scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id)
        return keys.rotate(scope)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> EventSourcingManager:
        """Build and connect every provider named in the configuration."""
        self._closed = False
        for name, entry in self.config.providers.items():
            if name not in self._providers:
                provider = self.host.create_provider(entry["url"], **entry.get("settings", {}))
                await self.register_provider(provider, name=name)
        if self.config.default_provider and self.config.default_provider in self._providers:
            self._default = self.config.default_provider
        return self

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop retention schedules, close every provider (errors are logged, then the first one is raised)."""
        for schedule in self._schedules:
            await schedule.stop()
        self._schedules.clear()
        if self._deadlines is not None and self._deadlines.handle is not None:
            self._deadlines.handle.cancel()
            self._deadlines.handle = None
        first: BaseException | None = None
        for name, provider in list(self._providers.items()):
            try:
                await self._run(provider, "close", provider.close, retry=False)
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
        """The provider registered as ``name``, or the default.

        A URL selects the provider registered with exactly that URL, else the only provider of its
        scheme; with several of that scheme and none at that URL it is ambiguous (an error, never a guess).
        """
        if name is None:
            return self.get_default_provider()
        if not isinstance(name, str):
            msg = f"provider must be a provider name or URL (str), got {type(name).__name__}"
            raise ValidationError(msg, field="provider")
        if name in self._providers:
            return self._providers[name]
        if "://" in name:
            exact = [p for p in self._providers.values() if p.url == name]
            if len(exact) == 1:
                return exact[0]
            scheme = name.split("://", 1)[0]
            same = [n for n, p in self._providers.items() if p.url and p.url.split("://", 1)[0] == scheme]
            if len(same) == 1:
                return self._providers[same[0]]
            if same:
                msg = f"{name!r} is registered under no name, and several {scheme}:// providers are ({', '.join(sorted(same))}): name one"
                raise ProviderNotFoundError(msg, name=name)
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
        self, provider: Provider, op: str, factory: Callable[[], Awaitable[T]], *, retry: bool = True, events: int = 0
    ) -> T:
        """Run one provider call under the timeout; retry connection/timeout errors with backoff + jitter.

        Latency (per attempt), calls, errors, retries and ``events`` are recorded for :meth:`metrics`.
        """
        if not provider.capabilities.supports(op):
            raise provider.unsupported(op)
        metrics = self._metrics.get(provider.name)
        if metrics is None:
            metrics = self._metrics[provider.name] = _Metrics()
        rec = metrics.op(op)
        rec.calls += 1
        attempts = self.config.retry_attempts if retry else 1
        timeout = self.config.timeout
        delay = self.config.retry_delay
        deadlines = None
        if timeout is not None:
            deadlines = self._deadlines
            if deadlines is None or deadlines.loop is not asyncio.get_running_loop():
                deadlines = self._deadlines = _Deadlines(timeout)
        for attempt in range(1, attempts + 1):
            start = time.perf_counter()
            entry = deadlines.enter() if deadlines is not None else None
            try:
                result = await factory()
            except asyncio.CancelledError:
                if entry is None or deadlines is None or not deadlines.expired(entry):
                    rec.errors += 1
                    raise
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    msg = f"{op} on provider {provider.name!r} did not finish within {timeout}s"
                    raise ProviderTimeoutError(msg, provider=provider.name, operation=op) from None
            except TimeoutError as e:
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    if isinstance(e, ProviderTimeoutError):
                        raise
                    msg = f"{op} on provider {provider.name!r} did not finish within {timeout}s"
                    raise ProviderTimeoutError(msg, provider=provider.name, operation=op) from e
            except RETRYABLE:
                rec.record(time.perf_counter() - start)
                if attempt == attempts:
                    rec.errors += 1
                    raise
            except BaseException:
                rec.errors += 1
                raise
            else:
                rec.record(time.perf_counter() - start)
                rec.events += events
                return result
            finally:
                if entry is not None and deadlines is not None:
                    deadlines.exit(entry)
            rec.retries += 1
            log.info("retrying %s on %s (attempt %d of %d)", op, provider.name, attempt + 1, attempts)
            await asyncio.sleep(random.uniform(0, min(self.config.retry_max_delay, delay)))  # noqa: S311
            delay *= 2
        msg = "unreachable"
        raise AssertionError(msg)

    def metrics(self, provider: str | None = None) -> dict[str, dict[str, Any]]:
        """Counters and latency percentiles kept by this manager, by provider name then operation.

        Each operation (``append``, ``query``, ``get_event``, ``read_stream``, ``read_all``,
        ``get_stream_info``...) has ``calls``, ``errors`` (calls that finally failed), ``retries``,
        ``events`` (appended or read), and ``p50_ms`` / ``p90_ms`` / ``p99_ms`` / ``max_ms`` over the last
        :data:`LATENCY_WINDOW` attempts (one sample per provider call; for ``read_stream`` / ``read_all``
        the time to the first event of each iteration). ``provider`` limits the answer to one provider.
        """
        names = [self.get_provider(provider).name] if provider is not None else list(self._providers)
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            m = self._metrics.get(name)
            out[name] = {op: rec.summary() for op, rec in sorted(m.ops.items())} if m else {}
        return out

    # ------------------------------------------------------------------ validation and encoding

    def _stream_id(self, stream_id: object) -> str:
        return _check_text("stream id", stream_id, self.config.max_stream_id_length, field_name="stream_id")

    @staticmethod
    def _event_aad(stream_id: str, event_id: str, version: int) -> bytes:
        r"""Associated data of an event's data payload (metadata appends ``\x00m``).

        Stream and event ids never contain NUL (validation refuses control characters), so the
        NUL-joined form is unambiguous.
        """
        return f"e\x00{stream_id}\x00{event_id}\x00{version}\x00d".encode()

    @staticmethod
    def _snapshot_aad(stream_id: str, snapshot_id: str, version: int) -> bytes:
        r"""Associated data of a snapshot's data payload (metadata appends ``\x00m``)."""
        return f"s\x00{stream_id}\x00{snapshot_id}\x00{version}\x00d".encode()

    def _encode_event(self, stream_id: str, ev: EventData, provider: Provider, version: int = 0) -> NewEvent:
        """Validate and encode one event; ``version`` is bound into the associated data when encrypting."""
        _check_text("event type", ev.event_type, MAX_EVENT_TYPE_LENGTH, field_name="event_type")
        if ev.event_id is None:
            event_id = _event_id()  # valid by construction
        else:
            event_id = _check_text("event id", ev.event_id, MAX_EVENT_ID_LENGTH, field_name="event_id")
        metadata = _check_metadata(ev.metadata)
        tenant_id = _check_optional_text("tenant id", ev.tenant_id, field_name="tenant_id")
        pipeline = self.pipeline
        meta_size = 0
        meta = b""
        if self._cipher is None:
            data, encoding, data_size = pipeline.encode_sized(ev.data)
            if metadata:
                meta, meta_size = pipeline.encode_as_sized(metadata, encoding)
        else:
            aad = self._event_aad(stream_id, event_id, version)
            scope = self.key_scope(stream_id=stream_id, tenant_id=tenant_id) if self._scope_mode != "global" else None
            data, encoding, data_size = pipeline.encode_sized(ev.data, aad=aad, scope=scope)
            if metadata:
                meta, meta_size = pipeline.encode_as_sized(metadata, encoding, aad=aad[:-1] + b"m", scope=scope)
        size = data_size + meta_size
        limit = self.config.max_event_size
        if size > limit:
            msg = f"event of type {ev.event_type!r} is {size} bytes serialized; the limit is {limit} (max_event_size)"
            raise ValidationError(msg, field="data", size=size, limit=limit)
        store_limit = provider.capabilities.max_event_size
        if store_limit is not None and len(data) + len(meta) > store_limit:
            stored = len(data) + len(meta)
            msg = f"event of type {ev.event_type!r} is {stored} bytes encoded; the limit is {store_limit} (what provider {provider.name!r} can hold)"
            raise ValidationError(msg, field="data", size=stored, limit=store_limit)
        if ev.timestamp is not None:
            _check_time("timestamp", ev.timestamp)
        return _make_new_event(  # positional, in NewEvent's field order, without the frozen __init__'s cost
            event_id,
            ev.event_type,
            data,
            meta,
            encoding,
            ev.timestamp or utcnow(),
            _check_optional_text("correlation id", ev.correlation_id, field_name="correlation_id"),
            _check_optional_text("causation id", ev.causation_id, field_name="causation_id"),
            _check_optional_text("user id", ev.user_id, field_name="user_id"),
            tenant_id,
            _check_optional_text("aggregate id", ev.aggregate_id, field_name="aggregate_id"),
            _check_optional_text("aggregate type", ev.aggregate_type, field_name="aggregate_type"),
        )

    def _decode(self, rec: RecordedEvent) -> Event:
        if rec.encoding == self._plain:
            loads = self._serializer.loads
            data = loads(rec.data)
            meta = loads(rec.metadata) if rec.metadata else {}
        else:
            aad = self._event_aad(rec.stream_id, rec.event_id, rec.version)
            scope = self.key_scope(stream_id=rec.stream_id, tenant_id=rec.tenant_id) if self._scope_mode != "global" else None
            try:
                data = self.pipeline.decode(rec.data, rec.encoding, aad=aad, scope=scope)
                meta = (
                    self.pipeline.decode(rec.metadata, rec.encoding, aad=aad[:-1] + b"m", scope=scope)
                    if rec.metadata
                    else {}
                )
            except KeyShreddedError as e:
                if not self._redact:
                    raise _with_context(e, f"event {rec.event_id!r} (version {rec.version} of stream {rec.stream_id!r})", event_id=rec.event_id, stream_id=rec.stream_id) from e
                data, meta = None, {SHREDDED_KEY: e.scope}
            except CodecError as e:
                raise _with_context(e, f"event {rec.event_id!r} (version {rec.version} of stream {rec.stream_id!r})", event_id=rec.event_id, stream_id=rec.stream_id) from e
        ev = make_event(  # positional, in Event's field order, without the frozen __init__'s cost
            rec.event_id,
            rec.stream_id,
            rec.event_type,
            data,
            meta,
            rec.version,
            rec.position,
            rec.timestamp,
            rec.correlation_id,
            rec.causation_id,
            rec.user_id,
            rec.tenant_id,
            rec.aggregate_id,
            rec.aggregate_type,
        )
        ups = self._upcasters.get(ev.event_type) if self._upcasters else None
        if ups:
            for up in ups:
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

    @staticmethod
    def _plain_metadata(metadata: object) -> dict[str, Any]:
        """Stream metadata as the stores keep it: plain JSON, normalised once here.

        No codec runs on it (so no tagged datetimes or Decimals); tuples become lists and keys strings
        here, so every store is given, and returns, the same value.
        """
        md = _check_metadata(metadata)
        try:
            plain: dict[str, Any] = json.loads(json.dumps(md, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as e:
            msg = f"stream metadata must be plain JSON (str keys; str, number, bool, null, list, dict values): {e}"
            raise ValidationError(msg, field="metadata") from None
        return plain

    async def delete_stream(self, stream_id: str, *, provider: str | None = None) -> None:
        """Delete the stream's events, info and snapshots; :class:`StreamNotFoundError` if missing."""
        sid = self._stream_id(stream_id)
        p = self.get_provider(provider)
        key = f"{p.name}\x00{sid}"
        self._versions.pop(key, None)
        self._snapshots.pop(key, None)
        # never retried: an attempt that timed out may still land, and a retry would then delete the
        # stream another writer re-created in between (or report a delete that happened as not found)
        await self._run(p, "delete_stream", lambda: p.delete_stream(sid), retry=False)

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
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_NUMBER:
            msg = f"offset must be an int from 0 to {MAX_NUMBER}, got {offset!r}"
            raise ValidationError(msg, field="offset")

    # ------------------------------------------------------------------ events

    async def append_event(self, request: AppendEventRequest | None = None, /, **kwargs: Any) -> AppendEventResponse:
        """Append one event; see :meth:`append_events_batch` for the rules."""
        req = _coerce(AppendEventRequest, request, kwargs)
        ev = EventData(  # positional, in EventData's field order
            req.event_type,
            req.data,
            req.metadata,
            req.event_id,
            req.correlation_id,
            req.causation_id,
            req.user_id,
            req.tenant_id,
            req.aggregate_id,
            req.aggregate_type,
            req.timestamp,
        )
        res, due = await self._append(req.stream_id, [ev], req.expected_version, req.provider)
        return _make_append_event_response(  # positional, in AppendEventResponse's field order
            res.event_ids[0], res.stream_id, res.first_version, res.positions[0], res.timestamp, res.duplicate, due
        )

    async def append_events_batch(
        self, request: AppendEventsBatchRequest | None = None, /, **kwargs: Any
    ) -> AppendEventsBatchResponse:
        """Append events to one stream, all or nothing.

        ``expected_version`` is checked first (a mismatch raises :class:`ConcurrencyError`, nothing is
        written). Event ids are generated before the first attempt, so a retried call, or a caller
        re-sending the same ids, is an idempotent no-op that returns the original versions.

        ``snapshot_due`` in the response is ``True`` when ``snapshot_threshold`` is set and the stream
        now holds that many events past its latest snapshot (and no snapshot handler took one).
        """
        req = _coerce(AppendEventsBatchRequest, request, kwargs)
        if not isinstance(req.events, (list, tuple)):
            msg = "events must be a list of EventData"
            raise ValidationError(msg, field="events")
        events = [e if isinstance(e, EventData) else self._event_data(e) for e in req.events]
        res, due = await self._append(req.stream_id, events, req.expected_version, req.provider)
        return AppendEventsBatchResponse(
            stream_id=res.stream_id,
            event_ids=list(res.event_ids),
            first_version=res.first_version,
            last_version=res.last_version,
            positions=list(res.positions),
            timestamp=res.timestamp,
            duplicate=res.duplicate,
            snapshot_due=due,
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

    async def _append(
        self, stream_id: object, events: list[EventData], expected: object, provider: str | None
    ) -> tuple[AppendResult, bool]:
        sid = self._stream_id(stream_id)
        exp = _check_expected(expected)
        if not events:
            msg = "a batch must hold at least one event"
            raise ValidationError(msg, field="events")
        if len(events) > self.config.max_batch_size:
            msg = f"a batch of {len(events)} events exceeds max_batch_size={self.config.max_batch_size}"
            raise ValidationError(msg, field="events", size=len(events), limit=self.config.max_batch_size)
        p = self.get_provider(provider)
        if self._cipher is None:
            encoded = self._prepare(sid, events, p, 0)
            first = encoded[0]
            stream = _make_new_stream(sid, None, first.aggregate_id, first.aggregate_type, {})
            res: AppendResult = await self._run(p, "append", lambda: p.append(sid, encoded, exp, stream), events=len(encoded))
        else:
            res = await self._append_sealed(p, sid, events, exp)
        if res.duplicate and all(e.event_id is None for e in events):
            # the ids were made for this call, so the stored copy is its own attempt whose reply was lost
            res = dataclasses.replace(res, duplicate=False)
        if self._threshold is None:
            return res, False
        return res, await self._snapshot_check(p, res)

    def _prepare(self, sid: str, events: Sequence[EventData], p: Provider, first_version: int) -> list[NewEvent]:
        """Encode a batch for versions ``first_version...`` and check batch-wide limits."""
        encoded = [self._encode_event(sid, e, p, first_version + i) for i, e in enumerate(events)]
        if len(encoded) > 1:
            ids = [e.event_id for e in encoded]
            if len(set(ids)) != len(ids):
                msg = "a batch holds the same event id twice"
                raise ValidationError(msg, field="event_id")
            limit = p.capabilities.max_batch_bytes
            if limit is not None:
                total = sum(e.size for e in encoded)
                if total > limit:
                    msg = f"the batch is {total} bytes encoded; provider {p.name!r} can write at most {limit} atomically"
                    raise ValidationError(msg, field="events", size=total, limit=limit)
        return encoded

    async def _append_sealed(self, p: Provider, sid: str, events: list[EventData], exp: Expected) -> AppendResult:
        """Encrypted append: the versions are sealed into each payload, so they are pinned first.

        Exact and NO_STREAM expectations fix the versions; ANY / STREAM_EXISTS pin the current version
        (see the module docstring) and re-seal on a lost race, up to :data:`VERSION_PIN_ATTEMPTS` times.
        """
        fixed = [e if e.event_id is not None else dataclasses.replace(e, event_id=_event_id()) for e in events]
        first = fixed[0]
        stream = NewStream(stream_id=sid, aggregate_id=first.aggregate_id, aggregate_type=first.aggregate_type)
        key = f"{p.name}\x00{sid}"
        if exp not in (ExpectedVersion.ANY, ExpectedVersion.STREAM_EXISTS):
            start = 0 if exp == ExpectedVersion.NO_STREAM else int(exp)
            encoded = self._prepare(sid, fixed, p, start + 1)
            res: AppendResult = await self._run(p, "append", lambda: p.append(sid, encoded, exp, stream), events=len(encoded))
            if not res.duplicate:
                _bounded_put(self._versions, key, res.last_version)
            return res
        lock = self._pin_locks.get(key)
        if lock is None:
            lock = self._pin_locks[key] = asyncio.Lock()
        async with lock:  # this manager's pinned appends to one stream take turns
            guess: int | None = self._versions.get(key)
            for attempt in range(1, VERSION_PIN_ATTEMPTS + 1):
                if attempt > 1:  # another process won the last pin: let a burst of writers spread out
                    await asyncio.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311 - jitter
                if guess is None or (guess == 0 and exp == ExpectedVersion.STREAM_EXISTS):
                    info = await self._run(p, "get_stream_info", lambda: p.get_stream_info(sid))
                    if info is None and exp == ExpectedVersion.STREAM_EXISTS:
                        check_expected(sid, exp, exists=False, version=0)
                    guess = info.version if info is not None else 0
                pinned = guess
                encoded = self._prepare(sid, fixed, p, pinned + 1)
                try:
                    res = await self._run(
                        p, "append", functools.partial(p.append, sid, encoded, pinned, stream), events=len(encoded)
                    )
                except ConcurrencyError as e:
                    self._versions.pop(key, None)
                    guess = e.actual if isinstance(e.actual, int) and e.actual >= 0 else None
                    continue
                if not res.duplicate:
                    _bounded_put(self._versions, key, res.last_version)
                return res
        msg = (
            f"append to {sid!r} with expected_version {ExpectedVersion(exp).name}: other writers changed the stream before each of "
            f"{VERSION_PIN_ATTEMPTS} attempts to seal the events for its next version; nothing was written, try again"
        )
        raise ProviderTimeoutError(msg, provider=p.name, operation="append")

    def set_snapshot_handler(self, handler: Callable[[str, int], Any] | None) -> None:
        """Let the manager take snapshots itself when ``snapshot_threshold`` is reached.

        ``handler(stream_id, version)`` (sync or async) returns the aggregate's state at ``version`` as
        snapshot data, or ``None`` to decline. It runs inside the append call that crossed the threshold,
        after the events are stored; the manager then stores the snapshot and the response says
        ``snapshot_due=False``. If the handler declines or fails, the append still succeeds (its events
        are stored), the failure is logged (type only) and counted (``metrics()[p]["snapshot_handler"]``),
        and the response says ``snapshot_due=True``. ``None`` removes the handler.
        """
        self._snapshot_handler = handler

    async def _snapshot_check(self, p: Provider, res: AppendResult) -> bool:
        """Whether the stream is ``snapshot_threshold`` events past its latest snapshot (maybe taking one).

        The latest snapshot version is cached per stream: fetched on the first append this manager makes
        to the stream, updated by this manager's snapshot calls, and re-fetched at most once per
        ``snapshot_threshold`` events while a snapshot is due (to notice snapshots other processes took).
        """
        threshold = self._threshold
        assert threshold is not None
        sid = res.stream_id
        key = f"{p.name}\x00{sid}"
        version = res.last_version
        entry = self._snapshots.get(key)
        if entry is None:
            entry = [await self._latest_snapshot_version(p, sid), version + threshold]
            _bounded_put(self._snapshots, key, entry)
        if version - entry[0] < threshold:
            return False
        if version >= entry[1]:
            entry[0] = await self._latest_snapshot_version(p, sid)
            entry[1] = version + threshold
            if version - entry[0] < threshold:
                return False
        handler = self._snapshot_handler
        if handler is None or res.duplicate:
            return True
        rec = self._metrics[p.name].op("snapshot_handler")
        rec.calls += 1
        try:
            data = handler(sid, version)
            if inspect.isawaitable(data):
                data = await data
            if data is None:
                return True
            await self.create_snapshot(stream_id=sid, data=data, version=version, provider=p.name)
        except Exception as e:  # noqa: BLE001 - the append succeeded; report the snapshot as still due
            rec.errors += 1
            log.warning("snapshot handler failed for a stream on %s: %s", p.name, type(e).__name__)
            return True
        return False

    async def _latest_snapshot_version(self, p: Provider, sid: str) -> int:
        if not p.capabilities.supports("get_snapshot"):
            return 0
        snap = await self._run(p, "get_snapshot", lambda: p.get_snapshot(sid))
        return snap.version if snap is not None else 0

    async def get_events(self, request: GetEventsRequest | None = None, /, **kwargs: Any) -> GetEventsResponse:
        """Events matching every given filter, a page at a time, with the total count and ``has_more``."""
        req = _coerce(GetEventsRequest, request, kwargs)
        self._check_paging(req.limit, req.offset)
        try:
            order = SortOrder(req.sort_order)
        except ValueError:
            msg = f"sort_order must be 'asc' or 'desc', got {req.sort_order!r}"
            raise ValidationError(msg, field="sort_order") from None
        flt = EventFilter(
            stream_id=self._stream_id(req.stream_id) if req.stream_id is not None else None,
            event_types=_check_event_types(req.event_types),
            from_version=_check_optional_number("from_version", req.from_version),
            to_version=_check_optional_number("to_version", req.to_version),
            from_timestamp=_check_time("from_timestamp", req.from_timestamp),
            to_timestamp=_check_time("to_timestamp", req.to_timestamp),
            tenant_id=_check_optional_text("tenant id", req.tenant_id, field_name="tenant_id"),
            correlation_id=_check_optional_text("correlation id", req.correlation_id, field_name="correlation_id"),
            aggregate_id=_check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id"),
            aggregate_type=_check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type"),
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

    def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
        provider: str | None = None,
    ) -> AsyncIterator[Event]:
        """Iterate one stream's events in O(page) memory. A missing stream yields nothing.

        A connection or timeout error mid-way is retried like any call, resuming after the last event
        delivered, so the caller sees every event exactly once.
        """
        sid = self._stream_id(stream_id)
        from_version = _check_number("from_version", from_version)
        to_version = _check_optional_number("to_version", to_version)
        p = self.get_provider(provider)
        self._check_paging(page_size, 0)

        def source(last: tuple[int, int] | None) -> AsyncIterator[Sequence[RecordedEvent] | RowPage] | None:
            lo, hi = from_version, to_version
            if last is not None:
                if backwards:
                    hi = last[0] - 1
                    if hi < lo:
                        return None
                else:
                    lo = last[0] + 1
                    if hi is not None and lo > hi:
                        return None
            return p.read_stream_pages(sid, from_version=lo, to_version=hi, backwards=backwards, page_size=page_size)

        return self._guarded(p, "read_stream", source)

    def read_all(self, *, from_position: int = 0, page_size: int = 500, provider: str | None = None) -> AsyncIterator[Event]:
        """Iterate every stream's events in the provider's declared global order, in O(page) memory.

        On a store with a ``total`` global order a connection or timeout error mid-way is retried,
        resuming after the last position delivered.
        """
        from_position = _check_number("from_position", from_position)
        p = self.get_provider(provider)
        self._check_paging(page_size, 0)
        resumable = p.capabilities.global_order == "total"

        def source(last: tuple[int, int] | None) -> AsyncIterator[Sequence[RecordedEvent] | RowPage] | None:
            if last is None:
                return p.read_all_pages(from_position=from_position, page_size=page_size)
            if not resumable:
                msg = "read_all cannot resume on a store without a total order"
                raise _NotResumableError(msg)
            return p.read_all_pages(from_position=last[1] + 1, page_size=page_size)

        return self._guarded(p, "read_all", source)

    async def _guarded(
        self,
        p: Provider,
        op: str,
        source: Callable[[tuple[int, int] | None], AsyncIterator[Sequence[RecordedEvent] | RowPage] | None],
    ) -> AsyncGenerator[Event, None]:
        """Drive a provider's page iterator under the timeout (per page), resuming after retryable errors; decode.

        One generator layer between the provider's pages and the caller; arguments were validated by
        the caller before it was created. The timeout bounds each wait for a page; retryable errors can
        only come from that wait, so a page is always delivered whole before the next is asked for, and
        ``source(last)`` (``last``: the version and position of the last event delivered; ``None``: from
        the start) reopens the iterator right after it (``None`` when nothing can follow). The
        iterator is closed when the caller stops early.

        A :class:`RowPage` of plain-encoded events without upcasters becomes events straight from its
        rows (no intermediate record); anything else goes through :meth:`_decode`.
        """
        if not p.capabilities.supports(op):
            raise p.unsupported(op)
        metrics = self._metrics.get(p.name)
        if metrics is None:
            metrics = self._metrics[p.name] = _Metrics()
        stat = metrics.op(op)
        stat.calls += 1
        timeout = self.config.timeout
        attempts = self.config.retry_attempts
        delay = self.config.retry_delay
        failures = 0
        last: tuple[int, int] | None = None
        decode = self._decode
        make = make_event
        make_record = make_recorded_event
        plain = self._plain
        loads = self._serializer.loads
        it = source(None)
        first = True
        start = time.perf_counter()
        dog = _Watchdog(timeout) if timeout is not None else None
        clock = dog.loop.time if dog is not None else time.monotonic
        current_task = asyncio.current_task
        count = 0
        try:
            while it is not None:
                aiter_ = it.__aiter__()
                anext_ = aiter_.__anext__
                try:
                    while True:
                        try:
                            try:
                                if dog is None:
                                    page = await anext_()
                                else:
                                    dog.start = clock()
                                    dog.task = current_task()
                                    dog.stepping = True
                                    try:
                                        page = await anext_()
                                    finally:
                                        dog.stepping = False
                            except asyncio.CancelledError as e:
                                if dog is None or not dog.timed_out():
                                    raise
                                msg = f"{op} on provider {p.name!r} produced nothing within {timeout}s"
                                raise ProviderTimeoutError(msg, provider=p.name, operation=op) from e
                            except TimeoutError as e:
                                if isinstance(e, ProviderTimeoutError):
                                    raise
                                msg = f"{op} on provider {p.name!r} timed out"
                                raise ProviderTimeoutError(msg, provider=p.name, operation=op) from e
                        except StopAsyncIteration:
                            if first:
                                stat.record(time.perf_counter() - start)
                            return
                        except RETRYABLE as e:  # (errors raised from here are counted below)
                            failures += 1
                            if failures >= attempts:
                                raise
                            try:
                                nxt = source(last)
                            except _NotResumableError:
                                raise e from None
                            stat.retries += 1
                            log.info("resuming %s on %s after %s (attempt %d of %d)", op, p.name, type(e).__name__, failures + 1, attempts)
                            await asyncio.sleep(random.uniform(0, min(self.config.retry_max_delay, delay)))  # noqa: S311
                            delay *= 2
                            break  # close this iterator (finally below), then read on from nxt
                        if first:
                            stat.record(time.perf_counter() - start)
                            first = False
                        failures = 0
                        if not page:
                            continue
                        if isinstance(page, RowPage):
                            rows, conv = page.rows, page.timestamp
                            tail = rows[-1]
                            fast = not self._upcasters
                            for row in rows:
                                (eid, sid, etype, ver, pos, data, meta, enc, ts, c1, c2, uid, tid, aid, atype) = row
                                if conv is not None:
                                    ts = conv(ts)
                                count += 1
                                if fast and enc == plain:
                                    yield make(eid, sid, etype, loads(data), loads(meta) if meta else {}, ver, pos, ts, c1, c2, uid, tid, aid, atype)
                                else:
                                    yield decode(make_record(eid, sid, etype, ver, pos, data, meta, enc, ts, c1, c2, uid, tid, aid, atype))
                            last = (tail[3], tail[4])
                        else:
                            for rec in page:
                                count += 1
                                yield decode(rec)
                            rec = page[-1]
                            last = (rec.version, rec.position)
                    it = nxt  # after a retryable error (the loop ends only by return or break)
                except GeneratorExit:
                    raise
                except BaseException:
                    stat.errors += 1
                    raise
                finally:
                    aclose = getattr(aiter_, "aclose", None)
                    if aclose is not None:
                        await aclose()
        finally:
            stat.events += count
            if dog is not None:
                dog.close()

    # ------------------------------------------------------------------ snapshots

    async def create_snapshot(self, request: CreateSnapshotRequest | None = None, /, **kwargs: Any) -> CreateSnapshotResponse:
        """Store a snapshot of the stream's state at ``version`` (default: its current version).

        The snapshot goes through the same codec pipeline as events, bound to (stream id, snapshot id,
        version). Under ``encryption_scope="tenant"`` it is sealed with the key of the tenant of the
        stream's event at ``version`` (if retention removed it: the nearest remaining event below, else
        above), so shredding that tenant shreds the snapshot too.
        """
        req = _coerce(CreateSnapshotRequest, request, kwargs)
        sid = self._stream_id(req.stream_id)
        p = self.get_provider(req.provider)
        info = await self.get_stream_info(sid, provider=req.provider)
        version = info.version if req.version is None else req.version
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= info.version:
            msg = f"snapshot version must be from 1 to the stream's version {info.version}, got {version!r}"
            raise ValidationError(msg, field="version")
        snapshot_id = new_id()
        metadata = _check_metadata(req.metadata)
        at = await self._event_at(p, sid, version, exact=True)
        tenant_of = at
        if at is None and self._cipher is not None and self._scope_mode == "tenant":
            # the event was truncated: the tenant of the nearest remaining one (below, else above)
            tenant_of = await self._event_at(p, sid, version, exact=False)
        if self._cipher is None:
            data, encoding = self.pipeline.encode(req.data)
            meta = self.pipeline.encode_as(metadata, encoding) if metadata else b""
        else:
            aad = self._snapshot_aad(sid, snapshot_id, version)
            scope = self.key_scope(stream_id=sid, tenant_id=tenant_of.tenant_id if tenant_of is not None else None)
            data, encoding = self.pipeline.encode(req.data, aad=aad, scope=scope)
            meta = self.pipeline.encode_as(metadata, encoding, aad=aad[:-1] + b"m", scope=scope) if metadata else b""
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
            position=at.position if at is not None and at.version == version else None,
        )
        await self._run(p, "save_snapshot", lambda: p.save_snapshot(snap))
        entry = self._snapshots.get(f"{p.name}\x00{sid}")
        if entry is not None and version > entry[0]:
            entry[0] = version
        return CreateSnapshotResponse(snapshot_id=snapshot_id, stream_id=sid, version=version, created_at=snap.created_at)

    async def _event_at(self, p: Provider, sid: str, version: int, *, exact: bool) -> Event | None:
        """The event at ``version``; with ``exact=False`` the nearest one below it, else above it."""
        if exact:
            return await self._first(p, lambda: p.read_stream_pages(sid, from_version=version, to_version=version, page_size=1))
        below = await self._first(p, lambda: p.read_stream_pages(sid, to_version=version, backwards=True, page_size=1))
        if below is not None:
            return below
        return await self._first(p, lambda: p.read_stream_pages(sid, from_version=version + 1, page_size=1))

    async def _first(self, p: Provider, open_: Callable[[], AsyncIterator[Sequence[RecordedEvent] | RowPage]]) -> Event | None:
        found = self._guarded(p, "read_stream", lambda last: None if last is not None else open_())
        try:
            async for rec in found:
                return rec
        finally:
            await found.aclose()
        return None

    async def get_snapshot(self, stream_id: str, *, max_version: int | None = None, provider: str | None = None) -> Snapshot:
        """The latest snapshot (at or below ``max_version``); :class:`SnapshotNotFoundError` if none.

        A snapshot whose key scope was shredded raises :class:`KeyShreddedError` (never redacted).
        """
        sid = self._stream_id(stream_id)
        max_version = _check_optional_number("max_version", max_version)
        p = self.get_provider(provider)
        snap = await self._run(p, "get_snapshot", lambda: p.get_snapshot(sid, max_version))
        if snap is None:
            msg = f"stream {sid!r} has no snapshot" + (f" at or below version {max_version}" if max_version else "")
            raise SnapshotNotFoundError(msg, stream_id=sid)
        aad = self._snapshot_aad(sid, snap.snapshot_id, snap.version)
        scope = self.key_scope(stream_id=sid) if self._scope_mode == "stream" else None
        try:
            data = self.pipeline.decode(snap.data, snap.encoding, aad=aad, scope=scope)
            meta = self.pipeline.decode(snap.metadata, snap.encoding, aad=aad[:-1] + b"m", scope=scope) if snap.metadata else {}
        except CodecError as e:
            where = f"snapshot {snap.snapshot_id!r} (version {snap.version} of stream {sid!r})"
            raise _with_context(e, where, snapshot_id=snap.snapshot_id, stream_id=sid) from e
        return Snapshot(
            snapshot_id=snap.snapshot_id,
            stream_id=snap.stream_id,
            version=snap.version,
            data=data,
            metadata=meta,
            created_at=snap.created_at,
            aggregate_id=snap.aggregate_id,
            aggregate_type=snap.aggregate_type,
            position=snap.position,
        )

    async def delete_snapshot(self, stream_id: str, *, version: int | None = None, provider: str | None = None) -> int:
        """Delete the snapshot at ``version`` (every snapshot of the stream when ``None``); returns the count."""
        sid = self._stream_id(stream_id)
        version = _check_optional_number("version", version)
        p = self.get_provider(provider)
        n = await self._run(p, "delete_snapshots", lambda: p.delete_snapshots(sid, version))
        self._snapshots.pop(f"{p.name}\x00{sid}", None)
        return n

    # ------------------------------------------------------------------ retention

    def retention_policies(self) -> list[RetentionPolicy]:
        """The policies built from configuration (``retention_policies`` and ``retention_period``)."""
        if self._policies is None:
            self._policies = build_policies(self.host.retention_policies, self.config)
        return list(self._policies)

    def _policy(self, value: RetentionPolicy | Mapping[str, Any] | str) -> RetentionPolicy:
        if isinstance(value, RetentionPolicy):
            return value
        if isinstance(value, str):
            value = {"policy": value}
        if not isinstance(value, dict):
            msg = f"a retention policy must be a RetentionPolicy, a name or a {{'policy': name, ...}} dict, got {value!r}"
            raise ConfigurationError(msg, field="retention_policies")
        cfg = dataclasses.replace(self.config, retention_policies=[dict(value)], retention_period=None)
        return build_policies(self.host.retention_policies, cfg)[0]

    async def apply_retention(
        self,
        policies: Sequence[RetentionPolicy | Mapping[str, Any] | str] | None = None,
        *,
        provider: str | None = None,
        now: datetime | None = None,
    ) -> RetentionReport:
        """Apply retention policies now and report what each deleted, per provider.

        :param policies: policy objects, names or ``{"policy": name, **params}`` dicts; default: the
            configured ones (:meth:`retention_policies`).
        :param provider: apply on this provider only. Then a policy the provider cannot carry out raises
            :class:`UnsupportedOperationError`; over all providers it is reported with status
            ``"unsupported"`` instead.
        :param now: the reference time for age-based policies (default: now).
        :raises RetentionError: a policy failed on some provider; ``error.report`` holds every outcome
            (the other policies still ran).
        """
        self._check_open()
        chosen = self.retention_policies() if policies is None else [self._policy(x) for x in policies]
        if not chosen:
            msg = "no retention policy is configured (set retention_period or retention_policies, or pass policies)"
            raise ConfigurationError(msg, field="retention_policies")
        _check_time("now", now)
        targets = [self.get_provider(provider)] if provider is not None else list(self._providers.values())
        started = utcnow()
        ref = now or started
        outcomes = []
        for p in targets:
            for policy in chosen:
                ctx = RetentionContext(p, ref, functools.partial(self._run, p))
                outcomes.append(await run_policy(policy, ctx, p.name, strict=provider is not None))
        report = RetentionReport(started_at=started, finished_at=utcnow(), outcomes=tuple(outcomes))
        log.info(
            "retention deleted %d event(s) on %d provider(s) (%d unsupported, %d failed)",
            report.deleted(),
            len(targets),
            sum(o.status == "unsupported" for o in outcomes),
            sum(o.status == "failed" for o in outcomes),
        )
        if not report.ok:
            failed = [f"{o.policy} on {o.provider}: {o.message}" for o in outcomes if o.status == "failed"]
            msg = "retention failed: " + "; ".join(failed)
            raise RetentionError(msg, report=report)
        return report

    async def start_retention(
        self,
        interval: float | str,
        policies: Sequence[RetentionPolicy | Mapping[str, Any] | str] | None = None,
        *,
        provider: str | None = None,
        run_now: bool = True,
    ) -> RetentionSchedule:
        """Apply retention every ``interval`` (seconds or ``"12h"``) until stopped; returns the schedule.

        The schedule is a task on the manager's event loop (with the sync facade: its private loop).
        Runs are sequential; a failed run is logged and kept in ``schedule.last_error`` and the schedule
        keeps going; ``schedule.last_report`` is the latest report. ``run_now`` runs once immediately.
        Stop it with ``await schedule.stop()``, :meth:`stop_retention` or :meth:`close`.
        """
        from eventsource.config import parse_duration

        self._check_open()
        try:
            seconds = parse_duration(interval)
        except ValueError as e:
            raise ConfigurationError(str(e), field="interval") from None
        chosen = self.retention_policies() if policies is None else [self._policy(x) for x in policies]
        if not chosen:
            msg = "no retention policy is configured (set retention_period or retention_policies, or pass policies)"
            raise ConfigurationError(msg, field="retention_policies")
        schedule = RetentionSchedule(lambda: self.apply_retention(chosen, provider=provider), seconds, run_now=run_now)
        self._schedules.append(schedule)
        return schedule

    async def stop_retention(self, schedule: RetentionSchedule | None = None) -> int:
        """Stop one retention schedule (every one when ``None``); returns how many were running."""
        chosen = [schedule] if schedule is not None else list(self._schedules)
        n = 0
        for sch in chosen:
            if sch.running:
                n += 1
            await sch.stop()
            if sch in self._schedules:
                self._schedules.remove(sch)
        return n

    # ------------------------------------------------------------------ monitoring

    async def get_stats(self) -> dict[str, ProviderStats]:
        """Statistics of every provider, by name.

        The store's fields (totals, by type, by stream, storage size, last update, uptime) come from the
        provider; ``extra["manager"]`` adds this manager's counters and latency percentiles for that
        provider (see :meth:`metrics`) and ``extra["manager_uptime_seconds"]``.
        """
        out = {}
        for name, p in self._providers.items():
            st = await self._run(p, "stats", p.stats)
            extra = {**st.extra, "manager": self.metrics(name)[name], "manager_uptime_seconds": self.uptime_seconds}
            out[name] = dataclasses.replace(st, provider=st.provider or name, extra=extra)
        return out

    async def health_check(self) -> dict[str, HealthStatus]:
        """Health of every provider, by name; a provider that raises is reported unhealthy, not raised.

        ``details["reason"]`` classifies a failure: ``"unreachable"`` (connection refused, DNS, pool),
        ``"timeout"``, ``"unsupported"``, or what the provider itself reports (``"auth"``,
        ``"schema_missing"``...); the message says what is wrong, with passwords masked.
        """
        out = {}
        for name, p in self._providers.items():
            start = time.perf_counter()
            try:
                status = await self._run(p, "health", p.health, retry=False)
            except (EventSourceError, OSError) as e:
                if isinstance(e, ProviderTimeoutError):
                    reason = "timeout"
                elif isinstance(e, (ProviderUnavailableError, ConnectionError)):
                    reason = "unreachable"
                elif isinstance(e, UnsupportedOperationError):
                    reason = "unsupported"
                else:
                    reason = str(e.details.get("reason", "error")) if isinstance(e, EventSourceError) else "error"
                status = HealthStatus(
                    healthy=False,
                    provider=name,
                    message=f"{type(e).__name__}: {e}",
                    details={"reason": reason},
                    latency_ms=(time.perf_counter() - start) * 1000,
                )
            else:
                if not status.healthy and "reason" not in status.details:
                    status = dataclasses.replace(status, details={**status.details, "reason": "error"})
            out[name] = status
        return out

    @property
    def uptime_seconds(self) -> float:
        """Seconds since the manager was built."""
        return time.monotonic() - self._started


__all__ = ["ANY", "EventSourcingManager", "UnsupportedOperationError"]
