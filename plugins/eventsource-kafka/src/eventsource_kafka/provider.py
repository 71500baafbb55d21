"""The Kafka provider: a topic per stream, versions and event ids in record headers.

Layout (see the package README for limits on real clusters):

* one topic per incarnation of a stream, one partition, created explicitly (``naming.stream_topic``: the
  same name in every process, so the broker's ``create_topics`` lets one process create it); every append
  is ONE record holding an envelope of all its events (``records``), so a batch is atomic on any
  broker; versions, positions and event ids are in the envelope and in record headers (offsets are
  not versions: transaction markers take offsets, and Tansu's ListOffsets is wrong);
* ``<prefix>.meta``: a compacted topic with one record per stream (key: the exact stream id): its
  topic name, attributes, creation time and retention markers; a tombstone deletes the stream;
* ``<prefix>.snapshots``: a compacted topic with one record per snapshot (key: stream id + version).

Both compacted topics are read into an in-process view that is brought up to the high watermark
(incrementally) before any answer that depends on them.

Concurrency: Kafka has no conditional append, but a stream's topic is one totally ordered log: the
first record carrying the next version wins (``records.accepts``, applied by every reader and by the
writers' tails). An append checks the expected version against the tail this process knows (shared
by every provider instance on the same cluster and prefix in this process, under a per-stream lock;
refreshed before a conflict is reported), produces one record, and learns from its offset whether it
won; a lost record is invisible and the append reports ``ConcurrencyError``. That holds across
processes (``concurrency="cross_process"``) without a lease; ``lease_url`` (a lease plugin, e.g.
PostgreSQL advisory locks) only saves the records losers would write under heavy contention.

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

import array
import asyncio
import collections
import contextlib
import heapq
import json
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    StreamExistsError,
    StreamNotFoundError,
    ValidationError,
)
from eventsource.model import (
    AppendResult,
    ExpectedVersion,
    HealthStatus,
    NewStream,
    ProviderStats,
    RecordedEvent,
    StreamInfo,
)
from eventsource.provider import (
    Capabilities,
    Provider,
    check_duplicate,
    check_expected,
    check_snapshot,
    pages_of,
    position_at,
)
from eventsource.timestamps import from_us, now_us, to_us
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

_CREATE_ATTEMPTS = 8
"""Incarnations one creation tries when each is deleted by another process before it can join it."""


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
    offset: int  # of the record holding the event
    before: int  # the stream's version before that record (what a reader starting there must know)


@dataclass(slots=True)
class _Slot:
    """What this process knows about one stream's tail (shared by every provider instance)."""

    lock: _SlotLock = field(default_factory=_SlotLock)
    marker_lock: _SlotLock = field(default_factory=_SlotLock)  # retention markers: one change at a time
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

    def see(self, value: bytes, offset: int, window: int) -> bool:
        """Apply the record at ``offset`` (the next one after ``next_offset``); returns whether it is accepted."""
        ids: list[str] = []
        rows = records.peek_rows(value)
        accepted = bool(rows) and records.accepts(self.version, rows[0][2])
        for row in rows if accepted else ():  # a record that lost its version (or a repeat) is ignored whole
            version = row[2]
            self.version = version
            self.last_position = row[3]
            self.last_event_id = row[0]
            self.last_ts_us = row[4]
            self.window[row[0]] = _Seen(version, row[3], row[4], offset, rows[0][2] - 1)
            ids.append(row[0])
        if ids:
            self.appends.append(ids)
        # whole appends leave the window, oldest first, and the latest always stays: an identical retry of
        # any append still in it is recognised whole, never half (which would look like a conflict)
        while len(self.window) > window and len(self.appends) > 1:
            for event_id in self.appends.popleft():
                self.window.pop(event_id, None)
        self.next_offset = max(self.next_offset, offset + 1)
        return accepted


@dataclass(slots=True)
class _Namespace:
    """Shared per (bootstrap servers, topic prefix) in this process."""

    slots: dict[str, _Slot] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # live streams only
    incarnations: dict[str, int] = field(default_factory=dict)  # latest incarnation per stream id, deleted or not
    meta_offset: int = 0
    meta_lock: _SlotLock = field(default_factory=_SlotLock)
    snaps: dict[str, dict[int, int]] = field(default_factory=dict)
    snap_offset: int = 0
    snap_lock: _SlotLock = field(default_factory=_SlotLock)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def apply_meta(self, stream_id: str, value: dict[str, Any] | None) -> None:
        """Apply one record of the metadata topic, in topic order (the same rule in every process).

        ``op`` ``create`` starts incarnation ``inc``: the FIRST create of an incarnation wins (two
        processes that raced on creating the same incarnation's topic may both write one; both name
        the same topic); ``update`` changes the live incarnation's attributes and retention markers;
        ``delete`` ends it (the incarnation count is kept, so the next creation takes ``inc + 1``).
        Records of older versions (no ``op``, random topic names) replace the entry; ``None`` is their
        tombstone.
        """
        current = self.incarnations.get(stream_id, -1)
        if value is None:
            self.meta.pop(stream_id, None)
            return
        op = value.get("op")
        inc = int(value.get("inc", 0))
        if op == "create":
            if inc > current:
                self.meta[stream_id] = value
                self.incarnations[stream_id] = inc
        elif op == "delete":
            if inc >= current:
                self.meta.pop(stream_id, None)
                self.incarnations[stream_id] = inc
        elif op == "update":
            live = self.meta.get(stream_id)
            if live is not None and int(live.get("inc", 0)) == inc:
                self.meta[stream_id] = value
        elif inc >= current:  # written by an older version of the provider
            self.meta[stream_id] = value
            self.incarnations[stream_id] = max(current, 0)

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
            ts = to_us(ev.timestamp)
            return not any(ev.version <= upto and ts < cut for cut, upto in self.before)
        return True

    @property
    def trivial(self) -> bool:
        return self.below <= 1 and not self.before


def _start(meta: dict[str, Any]) -> tuple[int, int]:
    """Where a read of the stream may start: (offset, version before it).

    A ``truncate_stream`` marker records the record holding the first version it leaves visible and
    the version before it, so reads skip the hidden records instead of fetching them (on Tansu, past
    ~1,500 records a fetch answers one record, so every skipped record is a round trip saved); the
    rule of :func:`records.accepts` resumes exactly there.
    """
    skip = meta.get("skip")
    return (int(skip[0]), int(skip[1])) if skip else (0, 0)


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
    capabilities: ClassVar[Capabilities] = Capabilities(global_order="per_stream", concurrency="cross_process")
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
            concurrency="cross_process",  # the log decides (records.accepts), with or without a lease
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
                if r.offset >= ns.meta_offset:
                    ns.apply_meta(r.key.decode("utf-8", "surrogatepass"), None if r.value is None else json.loads(r.value))
                    ns.meta_offset = r.offset + 1
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

    async def _put_meta(self, stream_id: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        """Write one metadata record (``op`` create/update/delete) and return the stream's metadata after it.

        Another process's record may land first and win (:meth:`_Namespace.apply_meta`), so the view
        is brought up to this record (no read when nothing landed in between) before answering.
        """
        key = stream_id.encode("utf-8", "surrogatepass")
        value = json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass")
        offset = await self.io.produce(self._meta_topic, value, key=key)
        ns = self._ns
        async with ns.meta_lock.held():
            if ns.meta_offset == offset:
                ns.apply_meta(stream_id, meta)
                ns.meta_offset = offset + 1
                return ns.meta.get(stream_id)
        return (await self._catch_up_meta()).get(stream_id)

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
        # from where this process stopped (a new slot: from the topic's first record; the rule that
        # decides which records count needs every record before them), to the end seen now
        window = self.settings["dedup_window"]
        if slot.next_offset == 0 and slot.version == 0:  # new here: from the first record a reader may need
            slot.next_offset, slot.version = _start(meta)
        start = slot.next_offset
        end: int | None = None
        while True:
            recs, pos, at_end, end = await self.io.read_page(topic, start, stop=end, one_fetch=True)
            for r in recs:
                if r.offset >= slot.next_offset:
                    slot.see(r.value, r.offset, window)
            start = max(start, pos)
            if at_end:
                break
        slot.next_offset = max(slot.next_offset, start)
        slot.loaded = True
        return meta

    # ------------------------------------------------------------------ streams

    def _info(self, stream_id: str, meta: dict[str, Any], slot: _Slot) -> StreamInfo:
        created = from_us(meta["created_us"])
        hidden = int(meta.get("hidden", 0))
        count = slot.version - hidden
        first = meta.get("first_visible", 1) if hidden else 1
        return StreamInfo(
            stream_id=stream_id,
            version=slot.version,
            event_count=count,
            created_at=created,
            updated_at=from_us(slot.last_ts_us) if slot.last_ts_us is not None else created,
            name=meta.get("name"),
            aggregate_id=meta.get("aggregate_id"),
            aggregate_type=meta.get("aggregate_type"),
            metadata=dict(meta.get("metadata") or {}),
            last_event_id=slot.last_event_id,
            first_version=first if count > 0 and first <= slot.version else None,
        )

    async def _create(
        self, stream: NewStream, slot: _Slot, created_us: int, *, creator: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Start the stream's next incarnation; returns its metadata and whether this call created its topic.

        Every process names incarnation ``n`` the same topic (``naming.stream_topic``), and the broker
        lets only one ``create_topics`` create it: a process that finds it created (another process
        creating the stream at the same moment) joins that incarnation instead of making a second
        topic. The first ``create`` record of an incarnation wins (``_Namespace.apply_meta``).
        ``creator``: the first event id of the append creating the stream.
        """
        sid = stream.stream_id
        for _ in range(_CREATE_ATTEMPTS):
            inc = self._ns.incarnations.get(sid, 0) + 1
            topic = naming.stream_topic(self.prefix, sid, inc)
            created = await self.io.ensure_topic(
                topic, replication_factor=self.settings["replication_factor"], configs=dict(self.settings["topic_configs"])
            )
            current = (await self._catch_up_meta()).get(sid)
            if not created:
                current = await self._await_create_record(sid, topic, current)
            if current is None or current["topic"] != topic:
                meta: dict[str, Any] = {
                    "op": "create",
                    "inc": inc,
                    "topic": topic,
                    "name": stream.name,
                    "aggregate_id": stream.aggregate_id,
                    "aggregate_type": stream.aggregate_type,
                    "metadata": dict(stream.metadata),
                    "created_us": created_us,
                }
                if creator is not None:
                    meta["creator"] = creator
                current = await self._put_meta(sid, meta)
            if current is not None and current["topic"] == topic:
                if slot.topic != topic:
                    slot.reset(topic)
                    slot.loaded = created  # a topic another process created may hold its appends already
                return current, created
            if current is not None:  # another incarnation is live: the caller re-checks against it
                return current, False
            # the incarnation was created and deleted meanwhile (its delete record is in): take the next one
            if created:
                await self.io.delete_topic(topic)
        msg = f"stream {sid!r} was created and deleted concurrently {_CREATE_ATTEMPTS} times; not created"
        raise ConcurrencyError(msg, stream_id=sid, expected="NO_STREAM", actual=0)

    async def _await_create_record(self, sid: str, topic: str, current: dict[str, Any] | None) -> dict[str, Any] | None:
        """Give the process that created ``topic`` time to write its create record (its attributes win).

        Only if none comes within ``request_timeout`` (that process stopped between creating the
        topic and writing the record) does the caller write one, so the incarnation is never stranded.
        """
        deadline = monotonic() + self.settings["request_timeout"]
        delay = 0.002
        while (current is None or current["topic"] != topic) and monotonic() < deadline:
            if current is not None and int(current.get("inc", 0)) > int(naming.incarnation(topic) or 0):
                break  # a later incarnation is live already
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            current = (await self._catch_up_meta()).get(sid)
            if current is None and self._ns.incarnations.get(sid, 0) >= (naming.incarnation(topic) or 0):
                break  # that incarnation was created and deleted meanwhile
        return current

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create the stream's topic and metadata record. :class:`StreamExistsError` if it exists."""
        slot = self._ns.slot(stream.stream_id)
        async with self._exclusive(stream.stream_id):
            if await self._refresh(stream.stream_id, slot) is None:
                meta, created = await self._create(stream, slot, now_us())
                if created:
                    return self._info(stream.stream_id, meta, slot)
            msg = f"stream {stream.stream_id!r} already exists"
            raise StreamExistsError(msg, stream_id=stream.stream_id)

    async def delete_stream(self, stream_id: str) -> None:
        """Write the delete record, delete the topic and the snapshots; the id is reusable from version 0."""
        slot = self._ns.slot(stream_id)
        async with self._exclusive(stream_id):
            meta = await self._refresh(stream_id, slot)
            if meta is None:
                msg = f"stream {stream_id!r} does not exist"
                raise StreamNotFoundError(msg, stream_id=stream_id)
            await self._put_meta(stream_id, {"op": "delete", "inc": int(meta.get("inc", 0)), "topic": meta["topic"]})
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

    def _stored(self, stream_id: str, slot: _Slot, events: Sequence[NewEvent]) -> list[RecordedEvent | None]:
        """What the dedup window holds under each event id (accepted records only)."""
        out: list[RecordedEvent | None] = []
        for e in events:
            s = slot.window.get(e.event_id)
            out.append(
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
                    timestamp=from_us(s.ts_us),
                )
            )
        return out

    async def _settle(self, slot: _Slot, topic: str, value: bytes, offset: int) -> bool:
        """Whether our record at ``offset`` won its version (call with the slot's lock held).

        Applies every record from where this process stopped up to ours, by the one rule
        (:func:`records.accepts`). When nothing landed in between (the usual case) no read is needed.
        """
        window = self.settings["dedup_window"]
        if offset == slot.next_offset:
            return slot.see(value, offset, window)
        if offset < slot.next_offset:  # already applied (cannot happen under the slot lock; never guess)
            rows = records.peek_rows(value)
            seen = slot.window.get(rows[0][0])
            return seen is not None and seen.offset == offset
        won = False
        start = slot.next_offset
        while start <= offset:
            recs, pos, at_end = await self.io.read(topic, start, stop=offset + 1, one_fetch=True)
            for r in recs:
                if r.offset >= slot.next_offset:
                    accepted = slot.see(r.value, r.offset, window)
                    if r.offset == offset:
                        won = accepted
            start = max(start, pos)
            if at_end:
                break
        if start <= offset:  # the topic is gone (deleted meanwhile): what we wrote went with it
            slot.loaded = False
            return False
        return won

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Check idempotency and the expected version, produce one envelope record, and learn whether it won.

        Without a lease, the check runs against what this process knows of the stream (refreshed when
        it disagrees), and the log decides: the first record carrying the next version wins
        (:func:`records.accepts`); a record that lost is never visible, and the append reports
        :class:`ConcurrencyError` (or, for ``ANY``, tries again at the new tail).
        """
        slot = self._ns.slot(stream_id)
        async with self._exclusive(stream_id) as leased:
            fresh = leased or not slot.loaded
            if fresh:
                meta = await self._refresh(stream_id, slot)
            else:
                meta = self._ns.meta.get(stream_id) if slot.topic else None
            while True:
                if not fresh and ((slot.topic and meta is None) or (meta is not None and meta["topic"] != slot.topic)):
                    meta, fresh = await self._refresh(stream_id, slot), True  # deleted or re-created meanwhile
                dup = check_duplicate(stream_id, events, self._stored(stream_id, slot, events))
                if dup is not None:
                    return dup
                # a stream an earlier attempt of this very append created (its write then failed) still counts as new
                created_by_this = meta is not None and slot.version == 0 and meta.get("creator") == events[0].event_id
                try:
                    check_expected(stream_id, expected, exists=meta is not None and not created_by_this, version=slot.version)
                except ConcurrencyError:
                    if fresh:
                        raise
                    # what this process knows may be stale (another process wrote): look again, then decide
                    meta, fresh = await self._refresh(stream_id, slot), True
                    continue
                first_version = slot.version + 1
                first_position = max(now_us(), slot.last_position + 1)
                value, headers = records.encode_events(stream_id, events, first_version, first_position)
                if len(value) > self.max_record_bytes + _ENVELOPE_SLACK // 2:  # checked before anything is created
                    msg = f"the append is {len(value)} bytes as one record; the limit is {self.max_record_bytes}"
                    raise ValidationError(msg, field="events", size=len(value), limit=self.max_record_bytes)
                if meta is None:
                    attrs = stream or NewStream(stream_id=stream_id)
                    meta, created = await self._create(
                        attrs, slot, to_us(events[0].timestamp), creator=events[0].event_id
                    )
                    if not created:  # joined another process's creation: learn what it wrote, check again
                        meta, fresh = await self._refresh(stream_id, slot), True
                        continue
                try:
                    offset = await self.io.produce(meta["topic"], value, headers=headers)
                except BaseException:
                    slot.loaded = False  # the record may have been written: re-read the tail next time
                    raise
                try:
                    won = await self._settle(slot, meta["topic"], value, offset)
                except BaseException:
                    slot.loaded = False
                    raise
                if won:
                    n = len(events)
                    return AppendResult(
                        stream_id=stream_id,
                        first_version=first_version,
                        last_version=first_version + n - 1,
                        positions=tuple(range(first_position, first_position + n)),
                        event_ids=tuple(e.event_id for e in events),
                        timestamp=events[0].timestamp,
                    )
                # another process's record took this version first: ours is ignored by every reader
                if expected not in (ExpectedVersion.ANY, ExpectedVersion.STREAM_EXISTS):
                    shown = expected.name if isinstance(expected, ExpectedVersion) else int(expected)
                    msg = (
                        f"stream {stream_id!r}: another writer appended version {first_version} first "
                        f"(expected version {shown}, actual version {slot.version})"
                    )
                    raise ConcurrencyError(msg, stream_id=stream_id, expected=shown, actual=slot.version)
                meta, fresh = await self._refresh(stream_id, slot), True

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
        offset, last = _start(meta)
        pending: asyncio.Future[Any] | None = first or asyncio.ensure_future(
            self.io.read_page(topic, offset, one_fetch=True)
        )
        try:
            while pending is not None:
                # ``end``: where the log ended when the first page was fetched; later pages stop there
                recs, pos, at_end, end = await pending
                pending = None
                if recs and not at_end:
                    size = sum(len(r.value or b"") for r in recs)
                    if size <= _PREFETCH_PAGE_BYTES:
                        pending = asyncio.ensure_future(self.io.read_page(topic, pos, stop=end, one_fetch=True))
                page: collections.deque[RecordedEvent] = collections.deque()
                recs.reverse()
                while recs:  # decode, dropping each raw record as soon as it is decoded
                    evs = records.decode_events(stream_id, recs.pop().value)
                    if evs and records.accepts(last, evs[0].version):  # the one rule: see records.accepts
                        last = evs[-1].version
                        for e in evs:
                            if e.version >= from_version and (vis.trivial or vis.visible(e)):
                                page.append(e)
                    del evs
                while page:
                    yield page.popleft()
                if at_end:
                    return
                if pending is None:
                    pending = asyncio.ensure_future(self.io.read_page(topic, pos, stop=end, one_fetch=True))
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    async def _stream_records(
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
            first = asyncio.ensure_future(self.io.read_page(cached["topic"], _start(cached)[0], one_fetch=True))
        try:
            meta = await self._stream_meta(stream_id)
        except BaseException:
            if first is not None:
                first.cancel()
            raise
        if first is not None and (
            meta is None or cached is None or meta["topic"] != cached["topic"] or _start(meta) != _start(cached)
        ):
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
        async for e in self._scan_backwards(stream_id, meta, from_version, to_version, page_size):
            yield e

    async def _scan_backwards(
        self, stream_id: str, meta: dict[str, Any], from_version: int, to_version: int | None, page_size: int
    ) -> AsyncIterator[RecordedEvent]:
        """Visible events from the end, a page of records at a time.

        Which records make up the stream is only known reading forward (:func:`records.accepts`), so a
        first pass reads the envelopes' rows forward and keeps the offsets of the records in range
        (eight bytes each); the second reads those records back, last page first.
        """
        topic = meta["topic"]
        vis = _Visibility(meta)
        wanted = array.array("q")
        start, last = _start(meta)
        end: int | None = None
        while True:
            recs, pos, at_end, end = await self.io.read_page(topic, start, stop=end, one_fetch=True)
            for r in recs:
                rows = records.peek_rows(r.value)
                if rows and records.accepts(last, rows[0][2]):
                    last = rows[-1][2]
                    if last >= from_version and (to_version is None or rows[0][2] <= to_version):
                        wanted.append(r.offset)
            start = pos
            if at_end:
                break
        hi = len(wanted)
        while hi > 0:
            lo = max(0, hi - page_size)
            keep = set(wanted[lo:hi])
            recs, _, _ = await self.io.read(topic, wanted[lo], stop=wanted[hi - 1] + 1)
            page = [e for r in recs if r.offset in keep for e in records.decode_events(stream_id, r.value)]
            for e in reversed(page):
                if to_version is not None and e.version > to_version:
                    continue
                if e.version < from_version:
                    return
                if vis.visible(e):
                    yield e
            hi = lo

    def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Events of one stream from its topic, in pages of at most ``page_size``."""
        records = self._stream_records(
            stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
        )
        return pages_of(records, page_size)

    def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Every stream in version order, streams merged by time (``per_stream``), in pages."""
        return pages_of(self._all_records(from_position=from_position, page_size=page_size), page_size)

    async def _all_records(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[RecordedEvent]:  # noqa: ARG002
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
        """Add a retention marker to the stream's metadata; returns how many visible events it hides.

        The stream's tail is read under the stream's lock (and lease), but the events are counted
        outside it, so appends go on while retention runs beside them; markers of one stream are
        changed one at a time in this process. A marker counts only the versions that existed when
        it was taken, and its record applies only to the incarnation it was computed for.
        """
        slot = self._ns.slot(stream_id)
        async with slot.marker_lock.held():
            async with self._exclusive(stream_id):
                meta = await self._refresh(stream_id, slot)
                version, next_offset = slot.version, slot.next_offset
                starts = {s.version: (s.offset, s.before) for s in slot.window.values()}
            if meta is None:
                if rule == "below":
                    msg = f"stream {stream_id!r} does not exist"
                    raise StreamNotFoundError(msg, stream_id=stream_id)
                return 0
            new = dict(meta)
            new["op"] = "update"
            old_below = max(int(meta.get("hide_below", 0)), 1)
            if rule == "below":  # never above the next version: events appended later stay visible
                new["hide_below"] = max(int(meta.get("hide_below", 0)), min(value, version + 1))
            else:
                new["hide_before"] = [*meta.get("hide_before", []), [value, version]]
            if rule == "below" and not meta.get("hide_before"):
                # versions are gap-free: the marker hides exactly the versions between the old and new bound
                hidden = max(0, new["hide_below"] - old_below)
                first_visible: int | None = new["hide_below"] if new["hide_below"] <= version else None
                skip = (next_offset, version) if first_visible is None else starts.get(new["hide_below"])
                if skip is not None and skip[0] > _start(meta)[0]:
                    new["skip"] = list(skip)
            else:
                hidden, first_visible = await self._count_hidden(stream_id, meta, new, version)
            if hidden == 0:
                return 0
            new["hidden"] = int(meta.get("hidden", 0)) + hidden
            new["first_visible"] = first_visible if first_visible is not None else version + 1
            await self._put_meta(stream_id, new)
            return hidden

    async def _count_hidden(
        self, stream_id: str, meta: dict[str, Any], new: dict[str, Any], version: int
    ) -> tuple[int, int | None]:
        """Events visible under ``meta`` but not under ``new`` (up to ``version``), and the first visible one."""
        before, after = _Visibility(meta), _Visibility(new)
        hidden = 0
        first_visible: int | None = None
        scan = self._scan(stream_id, meta)
        try:
            async for e in scan:
                if e.version > version:
                    break
                if before.visible(e) and not after.visible(e):
                    hidden += 1
                elif first_visible is None and after.visible(e):
                    first_visible = e.version
        finally:
            await scan.aclose()  # type: ignore[attr-defined]
        return hidden, first_visible

    async def truncate_stream(self, stream_id: str, before_version: int) -> int:
        """Hide the stream's events below ``before_version`` (a marker in its metadata record)."""
        return await self._hide(stream_id, "below", before_version)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Hide events older than ``cutoff`` in one stream or all (a marker per stream)."""
        ids = [stream_id] if stream_id is not None else sorted(await self._catch_up_meta())
        total = 0
        for sid in ids:
            total += await self._hide(sid, "before", to_us(cutoff))
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
