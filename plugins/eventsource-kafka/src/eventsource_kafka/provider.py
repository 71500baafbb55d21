"""The Kafka provider: a topic per stream, versions and event ids in record headers.

Layout (see the package README for limits on real clusters):

* one topic per stream, one partition, created explicitly (``naming.new_stream_topic``); every append
  is ONE record holding an envelope of all its events (``records``), so a batch is atomic on any
  broker; versions, positions and event ids are in the envelope and in record headers (offsets are
  not versions: transaction markers take offsets, and Tansu's ListOffsets is wrong);
* ``<prefix>.meta``: a compacted topic with one record per stream (key: the exact stream id): its
  topic name, attributes, creation time and retention markers; a tombstone deletes the stream;
* ``<prefix>.snapshots``: a compacted topic with one record per snapshot (key: stream id + version).

Both compacted topics are read into an in-process view that is brought up to the high watermark
(incrementally) before any answer that depends on them.

Concurrency: Kafka has no conditional append. The expected version is checked against a tail version
kept per stream and shared by every provider instance on the same cluster and prefix in this
process, under a per-stream lock; the tail is seeded by reading the topic to its high watermark and
then advanced from produce acknowledgements. That is correct for one writing process per stream
(``concurrency="in_process"``). With ``lease_url`` set, every check-then-write also runs while
holding a distributed lease on the stream id (a lease plugin, e.g. PostgreSQL advisory locks) and
re-reads the tail under it, which makes writers in several processes safe
(``concurrency="cross_process"``).

Positions: an event's ``position`` is its append time in microseconds since the epoch, bumped so it
increases strictly within a stream. ``read_all`` declares ``per_stream``: each stream in version
order, streams merged by position (time); ``read_all(from_position=p)`` yields the events with
``position >= p``.

Retention: records deletion crashes Tansu, so ``truncate_stream`` and ``delete_events_before`` write
a retention marker into the stream's metadata record; every read (streams, read_all, read by id,
query, stats) hides the events it covers, and counts are exact. The bytes stay in the topic until
the stream is deleted (``delete_topics``) or the topic's own retention removes them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from eventsource.errors import ConfigurationError, StreamExistsError, StreamNotFoundError, ValidationError
from eventsource.model import AppendResult, HealthStatus, NewStream, ProviderStats, RecordedEvent, StreamInfo
from eventsource.provider import Capabilities, Provider, check_duplicate, check_expected, check_snapshot, position_at
from marshmallow import Schema, fields, validate

from eventsource_kafka import naming, records
from eventsource_kafka.client import KafkaIO

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from eventsource.lease import Lease
    from eventsource.model import Expected, NewEvent, NewSnapshot, RecordedSnapshot

_PREFETCH_PAGE_BYTES = 320 * 1024
"""Fetch the next page of a scan ahead only after pages up to this size (bounded memory for big records)."""

_ENVELOPE_SLACK = 64 * 1024
"""Bytes allowed on top of ``max_record_bytes`` for the envelope and headers in a produce request."""


class KafkaSettings(Schema):
    """Settings of :class:`KafkaProvider` (all optional)."""

    topic_prefix = fields.String(load_default="eventsource")
    replication_factor = fields.Integer(load_default=1, validate=validate.Range(min=1))
    client_id = fields.String(load_default="eventsource")
    security_protocol = fields.String(
        load_default="PLAINTEXT", validate=validate.OneOf(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
    )
    sasl_mechanism = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI"]),
    )
    sasl_plain_username = fields.String(load_default=None, allow_none=True)
    sasl_plain_password = fields.String(load_default=None, allow_none=True)
    ssl_cafile = fields.String(load_default=None, allow_none=True)
    ssl_certfile = fields.String(load_default=None, allow_none=True)
    ssl_keyfile = fields.String(load_default=None, allow_none=True)
    ssl_password = fields.String(load_default=None, allow_none=True)
    ssl_check_hostname = fields.Boolean(load_default=True)
    request_timeout = fields.Float(load_default=30.0, validate=validate.Range(min=0.1))
    lease_url = fields.String(load_default=None, allow_none=True)
    lease_timeout = fields.Float(load_default=10.0, validate=validate.Range(min=0.01))
    lease_settings = fields.Dict(keys=fields.String(), load_default=dict)
    dedup_window = fields.Integer(load_default=1000, validate=validate.Range(min=1))
    max_record_bytes = fields.Integer(load_default=1_000_000, validate=validate.Range(min=1024))
    io_threads = fields.Integer(load_default=8, validate=validate.Range(min=1, max=256))
    topic_configs = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


# --------------------------------------------------------------------------- process-wide state


class _SlotLock:
    """A per-stream lock usable from any event loop or thread (a thread lock acquired without blocking)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        delay = 0.0002
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.005)
        try:
            yield
        finally:
            self._lock.release()


@dataclass(slots=True)
class _Seen:
    version: int
    position: int
    ts_us: int


@dataclass(slots=True)
class _Slot:
    """What this process knows about one stream's tail (shared by every provider instance)."""

    lock: _SlotLock = field(default_factory=_SlotLock)
    loaded: bool = False
    topic: str | None = None
    version: int = 0
    last_position: int = 0
    next_offset: int = 0
    last_event_id: str | None = None
    last_ts_us: int | None = None
    window: collections.OrderedDict[str, _Seen] = field(default_factory=collections.OrderedDict)
    appends: collections.deque[list[str]] = field(default_factory=collections.deque)  # the window's ids, by append

    def reset(self, topic: str | None) -> None:
        self.topic = topic
        self.version = 0
        self.last_position = 0
        self.next_offset = 0
        self.last_event_id = None
        self.last_ts_us = None
        self.window.clear()
        self.appends.clear()
        self.loaded = topic is None

    def see(self, value: bytes, offset: int, window: int) -> None:
        ids: list[str] = []
        for row in records.peek_rows(value):
            version = row[2]
            if version <= self.version:
                continue  # a repeated record (producer retry after a restart): readers drop it too
            self.version = version
            self.last_position = row[3]
            self.last_event_id = row[0]
            self.last_ts_us = row[4]
            self.window[row[0]] = _Seen(version, row[3], row[4])
            ids.append(row[0])
        if ids:
            self.appends.append(ids)
        # whole appends leave the window, oldest first, and the latest always stays: an identical retry of
        # any append still in it is recognised whole, never half (which would look like a conflict)
        while len(self.window) > window and len(self.appends) > 1:
            for event_id in self.appends.popleft():
                self.window.pop(event_id, None)
        self.next_offset = max(self.next_offset, offset + 1)


@dataclass(slots=True)
class _Namespace:
    """Shared per (bootstrap servers, topic prefix) in this process."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta_offset: int = 0
    meta_lock: _SlotLock = field(default_factory=_SlotLock)
    snaps: dict[str, dict[int, int]] = field(default_factory=dict)
    snap_offset: int = 0
    snap_lock: _SlotLock = field(default_factory=_SlotLock)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def slot(self, stream_id: str) -> _Slot:
        s = self.slots.get(stream_id)
        if s is None:
            with self.guard:
                s = self.slots.setdefault(stream_id, _Slot())
        return s


_NAMESPACES: dict[tuple[tuple[str, ...], str], _Namespace] = {}
_NAMESPACES_GUARD = threading.Lock()


def _namespace(servers: list[str], prefix: str, cluster_id: str | None = None) -> _Namespace:
    """The state shared in this process by every provider on one cluster and prefix.

    Keyed by the cluster's id once connected (so ``localhost:9092`` and ``127.0.0.1:9092``, or two
    bootstrap lists of one cluster, share it: the in-process concurrency guarantee depends on that),
    by the bootstrap servers before.
    """
    key = (("cluster-id", cluster_id) if cluster_id else tuple(sorted(servers)), prefix)
    with _NAMESPACES_GUARD:
        return _NAMESPACES.setdefault(key, _Namespace())


# --------------------------------------------------------------------------- retention markers


class _Visibility:
    """Which events a stream's retention markers hide."""

    __slots__ = ("before", "below")

    def __init__(self, meta: dict[str, Any]) -> None:
        self.below: int = meta.get("hide_below", 0)
        self.before: list[tuple[int, int]] = [(int(c), int(u)) for c, u in meta.get("hide_before", [])]

    def visible(self, ev: RecordedEvent) -> bool:
        if ev.version < self.below:
            return False
        if self.before:
            ts = records.to_us(ev.timestamp)
            return not any(ev.version <= upto and ts < cut for cut, upto in self.before)
        return True

    @property
    def trivial(self) -> bool:
        return self.below <= 1 and not self.before


def _parse_url(url: str) -> tuple[list[str], str | None, str | None]:
    if not url.startswith("kafka://"):
        msg = f"a Kafka URL looks like kafka://host:port[,host:port...], got {url!r}"
        raise ConfigurationError(msg, field="url")
    rest = url[len("kafka://") :].split("/", 1)[0].split("?", 1)[0]
    user = password = None
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        user, _, password = cred.partition(":")
        user, password = unquote(user), unquote(password) if password else None
    servers = [h.strip() for h in rest.split(",") if h.strip()]
    if not servers:
        msg = f"the Kafka URL names no broker: {url!r}"
        raise ConfigurationError(msg, field="url")
    for s in servers:
        host, _, port = s.rpartition(":")
        if not host or not port.isdigit():
            msg = f"broker address must be host:port, got {s!r}"
            raise ConfigurationError(msg, field="url")
    return servers, user or None, password


_HOST: Any = None


def _lease_host() -> Any:
    """One plugin host per process to find lease plugins (discovery imports every plugin once)."""
    global _HOST  # noqa: PLW0603 - a process-wide cache
    if _HOST is None:
        from eventsource.plugins import PluginHost

        _HOST = PluginHost()
    return _HOST


def _now_us() -> int:
    return time.time_ns() // 1000


class KafkaProvider(Provider):
    """``kafka://host:port[,host:port...]``: a topic per stream on Kafka (or Tansu), via kafka-python.

    Settings (``KafkaSettings``): ``topic_prefix``, ``replication_factor``, ``client_id``, the SASL/TLS
    pass-through (``security_protocol``, ``sasl_*``, ``ssl_*``; ``kafka://user:password@host:port``
    sets the SASL PLAIN credentials), ``request_timeout`` (seconds), ``lease_url``,
    ``lease_timeout`` and ``lease_settings`` (a distributed per-stream lease for writers in several
    processes, built by the lease plugin that handles the URL's scheme),
    ``dedup_window`` (event ids remembered per stream for idempotent retries), ``max_record_bytes``
    (largest event or batch envelope), ``io_threads``, ``topic_configs`` (extra configs of stream
    topics, e.g. ``{"retention.ms": "-1"}``).
    """

    kind = "kafka"
    capabilities: ClassVar[Capabilities] = Capabilities(global_order="per_stream", concurrency="in_process")
    settings_schema = KafkaSettings

    def __init__(self, url: str | None = "kafka://127.0.0.1:9092", **settings: Any) -> None:
        super().__init__(url or "kafka://127.0.0.1:9092", **settings)
        s = self.settings
        self.prefix = naming.check_prefix(s["topic_prefix"])
        self.servers, user, password = _parse_url(self.url or "")
        s_user: str | None
        s_password: str | None
        if user and not s.get("sasl_plain_username"):
            s_user, s_password = user, password
        else:
            s_user, s_password = s.get("sasl_plain_username"), s.get("sasl_plain_password")
        protocol = s["security_protocol"]
        mechanism = s.get("sasl_mechanism")
        if s_user and protocol == "PLAINTEXT":
            protocol = "SASL_PLAINTEXT"
        if s_user and mechanism is None:
            mechanism = "PLAIN"
        self._client_config: dict[str, Any] = {"bootstrap_servers": self.servers, "client_id": s["client_id"]}
        self._client_config["security_protocol"] = protocol
        if mechanism:
            self._client_config["sasl_mechanism"] = mechanism
        if s_user:
            self._client_config["sasl_plain_username"] = s_user
            self._client_config["sasl_plain_password"] = s_password
        for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
            if s.get(k):
                self._client_config[k] = s[k]
        self._client_config["ssl_check_hostname"] = s["ssl_check_hostname"]
        self.max_record_bytes: int = s["max_record_bytes"]
        self.capabilities = Capabilities(  # type: ignore[misc]
            global_order="per_stream",
            concurrency="cross_process" if s.get("lease_url") else "in_process",
            unsupported=frozenset(),
            deleted_stream_ids="reusable",
            max_event_size=self.max_record_bytes - 4096,
            max_batch_bytes=self.max_record_bytes - 4096,
            extra={"layout": "topic-per-stream", "lease": bool(s.get("lease_url"))},
        )
        self._ns = _namespace(self.servers, self.prefix)
        self._meta_topic = naming.meta_topic(self.prefix)
        self._snap_topic = naming.snapshot_topic(self.prefix)
        self._io: KafkaIO | None = None
        self._lease: Lease | None = None
        self._started = monotonic()

    @property
    def display_url(self) -> str | None:
        """The URL with any password masked (``kafka://user:***@b1:9092,b2:9092``).

        Masked here rather than with ``eventsource.config.mask_url``, which parses one host:port and
        fails on a list of brokers.
        """
        if not self.url:
            return None
        scheme, _, rest = self.url.partition("://")
        netloc, sep, tail = rest.partition("/")
        if "@" in netloc:
            cred, host = netloc.rsplit("@", 1)
            user = cred.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in cred else f"{user}@{host}"
        return f"{scheme}://{netloc}{sep}{tail}"

    # ------------------------------------------------------------------ lifecycle

    @property
    def io(self) -> KafkaIO:
        """The connected I/O layer."""
        if self._io is None:
            msg = "the Kafka provider is not connected (call connect() first)"
            raise ConfigurationError(msg, field="url")
        return self._io

    async def connect(self) -> None:
        """Connect, create the metadata and snapshot topics, and build the lease if configured."""
        if self._io is not None:
            return
        io = KafkaIO(
            self._client_config,
            threads=self.settings["io_threads"],
            timeout=self.settings["request_timeout"],
            max_request_size=self.max_record_bytes + _ENVELOPE_SLACK,
        )
        try:
            await io.start()
            compact = {"cleanup.policy": "compact"}
            rf = self.settings["replication_factor"]
            await io.ensure_topic(self._meta_topic, replication_factor=rf, configs=compact)
            await io.ensure_topic(self._snap_topic, replication_factor=rf, configs=compact)
            desc = await io.describe_cluster()
        except BaseException:
            await io.close()
            raise
        cluster_id = desc.get("cluster_id") if isinstance(desc, dict) else None
        if cluster_id:
            self._ns = _namespace(self.servers, self.prefix, str(cluster_id))
        self._io = io
        if self.settings.get("lease_url") and self._lease is None:
            lease = _lease_host().create_lease(self.settings["lease_url"], **self.settings["lease_settings"])
            await lease.connect()
            self._lease = lease

    async def close(self) -> None:
        """Close the clients and the lease. Idempotent."""
        io, self._io = self._io, None
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.close()
        if io is not None:
            await io.close()

    @asynccontextmanager
    async def _exclusive(self, stream_id: str) -> AsyncIterator[bool]:
        """Hold the stream's lease (if configured) and its in-process lock; yields whether a lease is held."""
        if self._lease is None:
            async with self._ns.slot(stream_id).lock.held():
                yield False
        else:
            key = f"kafka/{self.prefix}/{stream_id}"  # streams of one prefix share leases, whatever the servers
            async with (
                self._lease.hold(key, timeout=self.settings["lease_timeout"]),
                self._ns.slot(stream_id).lock.held(),
            ):
                yield True

    # ------------------------------------------------------------------ compacted views

    async def _catch_up_meta(self) -> dict[str, dict[str, Any]]:
        ns = self._ns
        async with ns.meta_lock.held():
            recs, pos, _ = await self.io.read(self._meta_topic, ns.meta_offset)
            for r in recs:
                sid = r.key.decode("utf-8", "surrogatepass")
                if r.value is None:
                    ns.meta.pop(sid, None)
                else:
                    ns.meta[sid] = json.loads(r.value)
            ns.meta_offset = max(ns.meta_offset, pos)
        return ns.meta

    async def _catch_up_snaps(self) -> dict[str, dict[int, int]]:
        ns = self._ns
        async with ns.snap_lock.held():
            recs, pos, _ = await self.io.read(self._snap_topic, ns.snap_offset)
            for r in recs:
                sid, version = records.parse_snapshot_key(r.key)
                if r.value is None:
                    ns.snaps.get(sid, {}).pop(version, None)
                else:
                    ns.snaps.setdefault(sid, {})[version] = r.offset
            ns.snap_offset = max(ns.snap_offset, pos)
        return ns.snaps

    async def _put_meta(self, stream_id: str, meta: dict[str, Any] | None) -> None:
        key = stream_id.encode("utf-8", "surrogatepass")
        value = None if meta is None else json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass")
        await self.io.produce(self._meta_topic, value, key=key)
        if meta is None:
            self._ns.meta.pop(stream_id, None)
        else:
            self._ns.meta[stream_id] = meta

    # ------------------------------------------------------------------ the tail of a stream

    async def _refresh(self, stream_id: str, slot: _Slot, *, meta_too: bool = True) -> dict[str, Any] | None:
        """Bring ``slot`` up to the stream's high watermark (call with the slot's lock held)."""
        meta = (await self._catch_up_meta()).get(stream_id) if meta_too else self._ns.meta.get(stream_id)
        topic = meta["topic"] if meta else None
        if topic != slot.topic:
            slot.reset(topic)
        if topic is None:
            slot.loaded = True
            return None
        start = slot.next_offset
        if not slot.loaded:
            hint = await self.io.end_hint(topic)
            start = max(0, hint - self.settings["dedup_window"])
        recs, pos, _ = await self.io.read(topic, start)
        if pos < slot.next_offset:  # the topic is shorter than we knew: re-created elsewhere
            slot.reset(topic)
            return await self._refresh(stream_id, slot, meta_too=False)
        for r in recs:
            slot.see(r.value, r.offset, self.settings["dedup_window"])
        slot.next_offset = max(slot.next_offset, pos)
        slot.loaded = True
        return meta

    # ------------------------------------------------------------------ streams

    def _info(self, stream_id: str, meta: dict[str, Any], slot: _Slot) -> StreamInfo:
        created = records.from_us(meta["created_us"])
        hidden = int(meta.get("hidden", 0))
        count = slot.version - hidden
        first = meta.get("first_visible", 1) if hidden else 1
        return StreamInfo(
            stream_id=stream_id,
            version=slot.version,
            event_count=count,
            created_at=created,
            updated_at=records.from_us(slot.last_ts_us) if slot.last_ts_us is not None else created,
            name=meta.get("name"),
            aggregate_id=meta.get("aggregate_id"),
            aggregate_type=meta.get("aggregate_type"),
            metadata=dict(meta.get("metadata") or {}),
            last_event_id=slot.last_event_id,
            first_version=first if count > 0 and first <= slot.version else None,
        )

    async def _create(
        self, stream: NewStream, slot: _Slot, created_us: int, *, creator: str | None = None
    ) -> dict[str, Any]:
        """The stream's topic and metadata record; ``creator``: the first event id of the append creating it."""
        topic = naming.new_stream_topic(self.prefix, stream.stream_id)
        configs = dict(self.settings["topic_configs"])
        await self.io.ensure_topic(topic, replication_factor=self.settings["replication_factor"], configs=configs)
        meta = {
            "topic": topic,
            "name": stream.name,
            "aggregate_id": stream.aggregate_id,
            "aggregate_type": stream.aggregate_type,
            "metadata": dict(stream.metadata),
            "created_us": created_us,
        }
        if creator is not None:
            meta["creator"] = creator
        await self._put_meta(stream.stream_id, meta)
        slot.reset(topic)
        slot.loaded = True
        return meta

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create the stream's topic and metadata record. :class:`StreamExistsError` if it exists."""
        slot = self._ns.slot(stream.stream_id)
        async with self._exclusive(stream.stream_id):
            if await self._refresh(stream.stream_id, slot) is not None:
                msg = f"stream {stream.stream_id!r} already exists"
                raise StreamExistsError(msg, stream_id=stream.stream_id)
            meta = await self._create(stream, slot, _now_us())
            return self._info(stream.stream_id, meta, slot)

    async def delete_stream(self, stream_id: str) -> None:
        """Tombstone the metadata, delete the topic and the snapshots; the id is reusable from version 0."""
        slot = self._ns.slot(stream_id)
        async with self._exclusive(stream_id):
            meta = await self._refresh(stream_id, slot)
            if meta is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            await self._put_meta(stream_id, None)
            slot.reset(None)
            await self.io.delete_topic(meta["topic"])
            await self._drop_snapshots(stream_id, None)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: metadata view plus the stream's tail read to its high watermark."""
        slot = self._ns.slot(stream_id)
        async with slot.lock.held():
            meta = await self._refresh(stream_id, slot)
            return None if meta is None else self._info(stream_id, meta, slot)

    async def list_streams(self, *, limit: int, offset: int) -> tuple[list[StreamInfo], int]:
        """A page of streams by id (from the metadata view), each with exact info."""
        ids = sorted(await self._catch_up_meta())
        page = []
        for sid in ids[offset : offset + limit]:
            slot = self._ns.slot(sid)
            async with slot.lock.held():
                meta = await self._refresh(sid, slot, meta_too=False)
                if meta is not None:
                    page.append(self._info(sid, meta, slot))
        return page, len(ids)

    # ------------------------------------------------------------------ append

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Check idempotency and the expected version against the tail, then produce one envelope record."""
        slot = self._ns.slot(stream_id)
        async with self._exclusive(stream_id) as leased:
            if leased or not slot.loaded:
                meta = await self._refresh(stream_id, slot)
            else:
                meta = self._ns.meta.get(stream_id) if slot.topic else None
                if slot.topic and meta is None:  # deleted through another instance of this process
                    meta = await self._refresh(stream_id, slot)
            seen = [slot.window.get(e.event_id) for e in events]
            dup = check_duplicate(
                stream_id,
                events,
                [
                    None
                    if s is None
                    else RecordedEvent(
                        event_id=e.event_id,
                        stream_id=stream_id,
                        event_type=e.event_type,
                        version=s.version,
                        position=s.position,
                        data=b"",
                        metadata=b"",
                        encoding="",
                        timestamp=records.from_us(s.ts_us),
                    )
                    for e, s in zip(events, seen, strict=True)
                ],
            )
            if dup is not None:
                return dup
            # a stream an earlier attempt of this very append created (its write then failed) still counts as new
            created_by_this = meta is not None and slot.version == 0 and meta.get("creator") == events[0].event_id
            check_expected(stream_id, expected, exists=meta is not None and not created_by_this, version=slot.version)
            first_version = slot.version + 1
            first_position = max(_now_us(), slot.last_position + 1)
            value, headers = records.encode_events(stream_id, events, first_version, first_position)
            if len(value) > self.max_record_bytes + _ENVELOPE_SLACK // 2:  # checked before anything is created
                msg = f"the append is {len(value)} bytes as one record; the limit is {self.max_record_bytes}"
                raise ValidationError(msg, field="events", size=len(value), limit=self.max_record_bytes)
            if meta is None:
                attrs = stream or NewStream(stream_id=stream_id)
                meta = await self._create(attrs, slot, records.to_us(events[0].timestamp), creator=events[0].event_id)
            try:
                offset = await self.io.produce(meta["topic"], value, headers=headers)
            except BaseException:
                slot.loaded = False  # the record may have been written: re-read the tail next time
                raise
            slot.see(value, offset, self.settings["dedup_window"])
            n = len(events)
            return AppendResult(
                stream_id=stream_id,
                first_version=first_version,
                last_version=first_version + n - 1,
                positions=tuple(range(first_position, first_position + n)),
                event_ids=tuple(e.event_id for e in events),
                timestamp=events[0].timestamp,
            )

    # ------------------------------------------------------------------ reads

    async def _stream_meta(self, stream_id: str) -> dict[str, Any] | None:
        return (await self._catch_up_meta()).get(stream_id)

    async def _scan(
        self, stream_id: str, meta: dict[str, Any], *, from_version: int = 1, first: asyncio.Future[Any] | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Visible events of a stream in version order (repeated records dropped), a fetch at a time.

        Each read returns what one fetch response delivered (at most ~256 KiB, or one record however
        large), so memory stays O(page) whatever the events per record. While a page of small
        records is being consumed, the next one is already being fetched (at most two pages held).
        ``first`` is an already started read of the first page.
        """
        topic = meta["topic"]
        vis = _Visibility(meta)
        last = 0
        pending: asyncio.Future[Any] | None = first or asyncio.ensure_future(self.io.read(topic, 0, one_fetch=True))
        try:
            while pending is not None:
                recs, pos, at_end = await pending
                pending = None
                if recs and not at_end:
                    size = sum(len(r.value or b"") for r in recs)
                    if size <= _PREFETCH_PAGE_BYTES:
                        pending = asyncio.ensure_future(self.io.read(topic, pos, one_fetch=True))
                page: collections.deque[RecordedEvent] = collections.deque()
                recs.reverse()
                while recs:  # decode, dropping each raw record as soon as it is decoded
                    evs = records.decode_events(stream_id, recs.pop().value)
                    for e in evs:
                        if e.version <= last:
                            continue
                        last = e.version
                        if e.version >= from_version and (vis.trivial or vis.visible(e)):
                            page.append(e)
                    del evs
                while page:
                    yield page.popleft()
                if at_end:
                    return
                if pending is None:
                    pending = asyncio.ensure_future(self.io.read(topic, pos, one_fetch=True))
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[RecordedEvent]:
        """Events of one stream from its topic, paged; backwards reads pages from the end."""
        cached = self._ns.meta.get(stream_id)
        first = None
        if cached is not None and not backwards:  # fetch the first page while the metadata catches up
            first = asyncio.ensure_future(self.io.read(cached["topic"], 0, one_fetch=True))
        try:
            meta = await self._stream_meta(stream_id)
        except BaseException:
            if first is not None:
                first.cancel()
            raise
        if first is not None and (meta is None or cached is None or meta["topic"] != cached["topic"]):
            first.cancel()  # the stream was deleted or re-created elsewhere
            with contextlib.suppress(BaseException):
                await first
            first = None
        if meta is None:
            return
        if not backwards:
            async for e in self._scan(stream_id, meta, from_version=from_version, first=first):
                if to_version is not None and e.version > to_version:
                    return
                yield e
            return
        topic = meta["topic"]
        vis = _Visibility(meta)
        hint = await self.io.end_hint(topic)
        _, hi, _ = await self.io.read(topic, max(0, hint - 1))
        last: int | None = None
        while hi > 0:
            lo = max(0, hi - page_size)
            recs, _, _ = await self.io.read(topic, lo, stop=hi)
            page: list[RecordedEvent] = []
            for r in recs:
                page.extend(records.decode_events(stream_id, r.value))
            for e in reversed(page):
                if last is not None and e.version >= last:
                    continue
                if to_version is not None and e.version > to_version:
                    continue
                if e.version < from_version:
                    return
                last = e.version
                if vis.visible(e):
                    yield e
            hi = lo

    async def read_all(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RecordedEvent]:  # noqa: ARG002
        """Every stream in version order, merged by position (append time); ``per_stream`` guarantee.

        Each stream is read a fetch at a time (~256 KiB, see ``_scan``), whatever ``page_size`` says.
        """
        metas = dict(await self._catch_up_meta())
        ids = sorted(metas)
        if not ids:
            return
        iters = [self._scan(sid, metas[sid]).__aiter__() for sid in ids]
        heap: list[tuple[int, int, RecordedEvent]] = []
        try:

            async def advance(i: int) -> None:
                async for e in iters[i]:
                    if e.position >= from_position:
                        heapq.heappush(heap, (e.position, i, e))
                        return

            for i in range(len(iters)):
                await advance(i)
            while heap:
                _, i, e = heapq.heappop(heap)
                yield e
                await advance(i)
        finally:
            for it in iters:
                await it.aclose()  # type: ignore[attr-defined]

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look in the stream (or every stream: a scan of the store) for the event id.

        Ids appended through this process are found from the per-stream window first.
        """
        metas = await self._catch_up_meta()
        if stream_id is not None:
            candidates = [stream_id] if stream_id in metas else []
        else:
            known = [sid for sid, slot in list(self._ns.slots.items()) if event_id in slot.window and sid in metas]
            candidates = known + [sid for sid in sorted(metas) if sid not in known]
        for sid in candidates:
            meta = metas.get(sid)
            if meta is None:
                continue
            seen = self._ns.slot(sid).window.get(event_id)
            if seen is not None and self._ns.slot(sid).topic == meta["topic"]:
                async for e in self.read_stream(sid, from_version=seen.version, to_version=seen.version):
                    if e.event_id == event_id:
                        return e
            async for e in self._scan(sid, meta):
                if e.event_id == event_id:
                    return e
        return None

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Produce the snapshot to the compacted snapshot topic (a snapshot at an existing version replaces it).

        The stream must back it (:func:`check_snapshot`): checked first, then produced (Kafka has no
        transaction spanning both; a delete and re-create can slip in between, within one produce).
        """
        info = await self.get_stream_info(snapshot.stream_id)
        at = None
        if info is not None and snapshot.position is not None:
            at = await position_at(self, snapshot.stream_id, snapshot.version)
        check_snapshot(snapshot, exists=info is not None, version=info.version if info else 0, position_at=at)
        offset = await self.io.produce(
            self._snap_topic,
            records.encode_snapshot(snapshot),
            key=records.snapshot_key(snapshot.stream_id, snapshot.version),
        )
        async with self._ns.snap_lock.held():
            self._ns.snaps.setdefault(snapshot.stream_id, {})[snapshot.version] = offset

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version`` (one record fetched by offset)."""
        versions = dict((await self._catch_up_snaps()).get(stream_id, {}))
        for version in sorted(versions, reverse=True):
            if max_version is not None and version > max_version:
                continue
            recs, _, _ = await self.io.read(self._snap_topic, versions[version], max_records=1)
            for r in recs:
                if r.value is not None and records.parse_snapshot_key(r.key) == (stream_id, version):
                    return records.decode_snapshot(stream_id, r.value)
        return None

    async def _drop_snapshots(self, stream_id: str, version: int | None) -> int:
        versions = dict((await self._catch_up_snaps()).get(stream_id, {}))
        targets = sorted(versions) if version is None else [v for v in versions if v == version]
        for v in targets:
            await self.io.produce(self._snap_topic, None, key=records.snapshot_key(stream_id, v))
            async with self._ns.snap_lock.held():
                self._ns.snaps.get(stream_id, {}).pop(v, None)
        return len(targets)

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Tombstone one or all snapshots of a stream."""
        return await self._drop_snapshots(stream_id, version)

    # ------------------------------------------------------------------ retention

    async def _hide(self, stream_id: str, rule: str, value: int) -> int:
        """Add a retention marker to the stream's metadata; returns how many visible events it hides."""
        slot = self._ns.slot(stream_id)
        async with self._exclusive(stream_id):
            meta = await self._refresh(stream_id, slot)
            if meta is None:
                if rule == "below":
                    msg = f"stream {stream_id!r} does not exist"
                    raise StreamNotFoundError(msg, stream_id=stream_id)
                return 0
            new = dict(meta)
            if rule == "below":  # never above the next version: events appended later stay visible
                new["hide_below"] = max(int(meta.get("hide_below", 0)), min(value, slot.version + 1))
            else:
                new["hide_before"] = [*meta.get("hide_before", []), [value, slot.version]]
            before, after = _Visibility(meta), _Visibility(new)
            hidden = 0
            first_visible: int | None = None
            async for e in self._scan(stream_id, meta):
                if before.visible(e) and not after.visible(e):
                    hidden += 1
                elif first_visible is None and after.visible(e):
                    first_visible = e.version
            if hidden == 0:
                return 0
            new["hidden"] = int(meta.get("hidden", 0)) + hidden
            new["first_visible"] = first_visible if first_visible is not None else slot.version + 1
            await self._put_meta(stream_id, new)
            return hidden

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Hide the stream's events below ``before_version`` (a marker in its metadata record)."""
        return await self._hide(stream_id, "below", before_version)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Hide events older than ``cutoff`` in one stream or all (a marker per stream)."""
        ids = [stream_id] if stream_id is not None else sorted(await self._catch_up_meta())
        total = 0
        for sid in ids:
            total += await self._hide(sid, "before", records.to_us(cutoff))
        return total

    # ------------------------------------------------------------------ monitoring

    async def stats(self) -> ProviderStats:
        """Exact counts from a scan of every stream (O(store)), snapshot count from the snapshot view."""
        metas = dict(await self._catch_up_meta())
        snaps = await self._catch_up_snaps()
        by_type: dict[str, int] = {}
        by_stream: dict[str, int] = {}
        size = 0
        last: datetime | None = None
        for sid in sorted(metas):
            n = 0
            async for e in self._scan(sid, metas[sid]):
                n += 1
                by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
                size += len(e.data) + len(e.metadata)
                if last is None or e.timestamp > last:
                    last = e.timestamp
            by_stream[sid] = n
        return ProviderStats(
            total_events=sum(by_stream.values()),
            total_streams=len(metas),
            total_snapshots=sum(len(v) for k, v in snaps.items() if k in metas),
            events_by_type=by_type,
            events_by_stream=by_stream,
            storage_size=size,
            last_event_at=last,
            uptime_seconds=monotonic() - self._started,
            provider=self.name,
            extra={"topic_prefix": self.prefix, "layout": "topic-per-stream"},
        )

    async def health(self) -> HealthStatus:
        """Describe the cluster; unhealthy (never raising) when it cannot be reached."""
        t0 = monotonic()
        try:
            if self._io is None:
                return HealthStatus(healthy=False, provider=self.name, message="not connected")
            async with asyncio.timeout(min(5.0, self.settings["request_timeout"])):
                desc = await self.io.describe_cluster()
        except Exception as e:  # noqa: BLE001 - health reports, it never raises
            return HealthStatus(healthy=False, provider=self.name, message=f"{type(e).__name__}: {e}")
        brokers = desc.get("brokers", []) if isinstance(desc, dict) else []
        return HealthStatus(
            healthy=True,
            provider=self.name,
            message="ok",
            details={"brokers": len(brokers), "cluster_id": desc.get("cluster_id") if isinstance(desc, dict) else None},
            latency_ms=(monotonic() - t0) * 1000,
        )
