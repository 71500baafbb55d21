"""The NATS JetStream provider: the provider contract, each operation handed to the module that owns its role.

Events of a stream live on one subject of one JetStream stream; stream records, snapshots, the event-id
index and deletion marks live in four KV buckets (:mod:`~eventsource_nats.naming`). Connection, appends,
reads, streams, retention, snapshots and monitoring each have a module; ``docs/internals/nats.md`` maps
them, and the README describes the layout on the server and how each guarantee is met.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from eventsource.provider import Capabilities, Provider, pages_of
from eventsource.timestamps import utc_events

from eventsource_nats.append import Appender
from eventsource_nats.connection import Connection
from eventsource_nats.index import IdIndex
from eventsource_nats.live import Live
from eventsource_nats.monitoring import Monitor
from eventsource_nats.naming import Names
from eventsource_nats.publish import Publisher
from eventsource_nats.reads import Reader
from eventsource_nats.retention import Retention
from eventsource_nats.settings import DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX, NatsSettingsSchema, parse_url
from eventsource_nats.snapshots import Snapshots
from eventsource_nats.streams import Streams
from eventsource_nats.writers import MESSAGE_OVERHEAD, Tail, Writer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from eventsource.model import (
        AppendResult,
        Expected,
        HealthStatus,
        NewEvent,
        NewSnapshot,
        NewStream,
        ProviderStats,
        RecordedEvent,
        RecordedSnapshot,
        StreamInfo,
    )

RETENTION_SCANS = {"full": "exact", "leading": "leading_run"}
"""``retention_scan`` setting -> the ``delete_events_before`` capability (``extra``) the kit reads."""

UNSUPPORTED = frozenset({"rewrite_events"})
"""A JetStream message cannot change in place (a new one takes a new sequence, i.e. a new position)."""


def _capabilities(conn: Connection) -> Capabilities:
    """The limits of the server this instance is connected to (the kit and the manager read them)."""
    return Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
        head_position=True,
        live_wakeup=True,
        max_event_size=conn.max_payload - MESSAGE_OVERHEAD,
        max_batch_bytes=None if conn.atomic else conn.max_payload - 8 * MESSAGE_OVERHEAD,
        unsupported=UNSUPPORTED,
        extra={
            "batches": "atomic batch publish" if conn.atomic else "one envelope message",
            "occ": conn.occ_mode,
            "server_version": ".".join(map(str, conn.server_version)),
            "delete_events_before": RETENTION_SCANS[conn.settings["retention_scan"]],
        },
    )


class NatsProvider(Provider):
    """Event store on NATS JetStream (``nats://host:4222[,host:4222...]``).

    The README lists the settings, the layout on the server and the guarantees.
    """

    kind = "nats"
    capabilities: ClassVar[Capabilities] = Capabilities(
        global_order="total",
        concurrency="cross_process",
        deleted_stream_ids="reusable",
        head_position=True,
        live_wakeup=True,
        max_event_size=1024 * 1024 - MESSAGE_OVERHEAD,
        max_batch_bytes=1024 * 1024 - 8 * MESSAGE_OVERHEAD,
        unsupported=UNSUPPORTED,
    )
    settings_schema = NatsSettingsSchema

    def __init__(self, url: str | None = "nats://127.0.0.1:4222", **settings: Any) -> None:
        super().__init__(url or "nats://127.0.0.1:4222", **settings)
        s = self.settings
        self.names = Names(s["stream"], s["subject_prefix"])
        conn = self._conn = Connection(parse_url(self.url), s, self.names, lambda: self.name)
        # the append path caches each stream's tail; every role that changes a stream drops its entry
        self._tails: dict[str, Tail] = {}
        reader = self._reader = Reader(conn)
        index = self._index = IdIndex(conn, reader)
        self._publisher = Publisher(conn)
        writer = Writer(conn, self._publisher, reader, index, self._tails)
        self._appender = Appender(conn, reader, index, writer, self._tails)
        streams = self._streams = Streams(conn, reader, self._tails)
        self._retention = Retention(conn, reader, self._tails, index)
        self._snapshots = Snapshots(conn, streams, self)
        self._monitor = Monitor(conn, reader, streams)
        self._live = Live(conn, self.names)

    @property
    def display_url(self) -> str | None:
        """The URL with the password masked (every host of a multi-server URL kept)."""
        return self._conn.display_url

    @property
    def checkpoint_source(self) -> str:
        """The masked URL, with ``#stream=...`` (and ``&subject_prefix=...``) unless both are the defaults.

        Two stores on one server are two sources: a checkpoint of one is never resumed, nor its lag
        measured, against the other.
        """
        stream, prefix = self.names.stream, self.names.prefix
        parts = [f"stream={stream}"] if stream != DEFAULT_STREAM else []
        parts += [f"subject_prefix={prefix}"] if prefix != DEFAULT_SUBJECT_PREFIX else []
        return f"{self.display_url}#{'&'.join(parts)}" if parts else (self.display_url or self.kind)

    @property
    def server_version(self) -> tuple[int, int, int]:
        """Version of the server this provider is connected to."""
        return self._conn.server_version

    @property
    def uses_atomic_batches(self) -> bool:
        """Whether multi-event appends use atomic batch publish (else one envelope message)."""
        return self._conn.atomic

    @property
    def occ_mode(self) -> str:
        """``"subject"`` (per-stream expected sequence) or ``"stream_wide"`` (old replicated server)."""
        return self._conn.occ_mode

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect, check the server version, create the stream and buckets if missing."""
        if self._conn.is_open:
            return
        await self._conn.connect()
        self.capabilities = _capabilities(self._conn)  # type: ignore[misc]

    async def close(self) -> None:
        """Finish background work (consumer deletions) and close the connection. Idempotent."""
        await self._conn.settle()
        self._publisher.reset()
        self._tails.clear()
        await self._live.close()
        await self._conn.close()

    async def drop_store(self) -> None:
        """Delete the JetStream stream and the four KV buckets (every event, snapshot and index)."""
        await self._conn.drop_store()
        self._tails.clear()
        self._index.clear()

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Record the stream in the info bucket (KV create: exactly one creator wins)."""
        return await self._streams.create_stream(stream)

    async def delete_stream(self, stream_id: str) -> None:
        """Purge the stream's subject, info, snapshots and deletion marks; the id can be reused."""
        await self._streams.delete_stream(stream_id)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: version from the last message, counts from the retention bookkeeping."""
        return await self._streams.get_stream_info(stream_id)

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams ordered by id."""
        return await self._streams.list_streams(limit=limit, offset=offset, after=after)

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """Append atomically with the version check done by the server (see :mod:`~eventsource_nats.append`).

        Timestamps are written in UTC, as every store gives them back (a sub-second offset would not even read back).
        """
        return await self._appender.append(stream_id, utc_events(events), expected, stream)

    def read_stream_pages(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
        page_size: int = 500,
    ) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Events of one stream in version order (or reversed), in pages of at most ``page_size``."""
        records = self._reader.read_stream(
            stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
        )
        return pages_of(records, page_size)

    def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Every event in JetStream sequence order (a total order: the server assigns it at commit), in pages."""
        return pages_of(self._reader.read_all(from_position=from_position, page_size=page_size), page_size)

    async def wait_for_change(self, after_position: int, max_wait: float) -> None:
        """Return on a publish to the events subjects, or after ``max_wait`` (see :mod:`~eventsource_nats.live`)."""
        await self._live.wait_for_change(after_position, max_wait, self._has_event_after)

    async def head_position(self) -> int:
        """The highest position handed out so far, or above it (from the stream's last sequence)."""
        return await self._live.head_position()

    async def _has_event_after(self, after_position: int) -> bool:
        from eventsource.subscriptions.subscription import first_page

        return bool(await first_page(self.read_all_pages(from_position=after_position + 1, page_size=1)))

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """By id: the id index (verified against the message), else a scan of the named stream."""
        self._conn.require()
        return await self._conn.call(f"get event {event_id!r}", self._index.get_event(event_id, stream_id))

    async def rebuild_id_index(self) -> int:
        """Rewrite the id-index entry of every stored event (after a crash lost some); returns the count."""
        return await self._index.rebuild()

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Put the snapshot under ``<token>.<version>`` (a snapshot at the same version is replaced)."""
        await self._snapshots.save_snapshot(snapshot)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version``."""
        return await self._snapshots.get_snapshot(stream_id, max_version)

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Purge one snapshot key (or all of the stream's); returns how many existed."""
        return await self._snapshots.delete_snapshots(stream_id, version)

    # ------------------------------------------------------------------ retention

    async def truncate_stream(
        self, stream_id: str, before_version: int, *, if_holds: tuple[int, str] | None = None
    ) -> int:
        """Delete events below ``before_version``: purge whole messages, mark the rest of an envelope.

        With ``if_holds=(version, event_id)``, only while the stream holds that event (checked after the read).
        """
        return await self._retention.truncate_stream(stream_id, before_version, if_holds)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Delete events with ``timestamp < cutoff`` (one stream or every stream; a scan of the events)."""
        return await self._retention.delete_events_before(cutoff, stream_id)

    # ------------------------------------------------------------------ monitoring

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Counts from one scan of every event (exact), or with ``top_streams`` from metadata only."""
        return await self._monitor.stats(top_streams=top_streams)

    def durability_warnings(self, stream_config: dict[str, Any], cluster: dict[str, Any] | None) -> list[str]:
        """Settings under which an acknowledged event can be lost."""
        return self._monitor.durability_warnings(stream_config, cluster)

    async def health(self) -> HealthStatus:
        """Connected, stream and buckets present, a leader elected; lists durability risks."""
        return await self._monitor.health()
