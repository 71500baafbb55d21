"""The Kafka provider: the provider contract, each operation handed to the module that owns its role.

More in docs/internals/kafka.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from eventsource.provider import Capabilities, Provider, pages_of

from eventsource_kafka.append import Appender
from eventsource_kafka.connection import Connection
from eventsource_kafka.monitoring import Monitor
from eventsource_kafka.reads import Reader
from eventsource_kafka.retention import Retention
from eventsource_kafka.settings import DEFAULT_TOPIC_PREFIX, RECORD_OVERHEAD, KafkaSettings
from eventsource_kafka.snapshots import Snapshots
from eventsource_kafka.streams import Streams
from eventsource_kafka.tails import Tails
from eventsource_kafka.views import Views

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

    from eventsource_kafka.client import KafkaIO


class KafkaProvider(Provider):
    """``kafka://host:port[,host:port...]``: a topic per stream on Kafka (or Tansu), via kafka-python.

    Settings (``KafkaSettings``): ``topic_prefix``, ``replication_factor``, ``client_id``, the SASL/TLS
    pass-through (``security_protocol``, ``sasl_*``, ``ssl_*``; ``kafka://user:password@host:port``
    sets the SASL PLAIN credentials), ``request_timeout`` (seconds), ``lease_url``,
    ``lease_timeout`` and ``lease_settings`` (a distributed per-stream lease for writers in several
    processes, built by the lease plugin that handles the URL's scheme),
    ``dedup_window`` (event ids remembered per stream for idempotent retries), ``max_record_bytes``
    (largest event or batch envelope), ``io_threads``, ``topic_configs`` (extra configs of stream
    topics, over ``retention.ms`` and ``retention.bytes`` of ``-1``: events are kept forever), ``create_store``
    (off: ``connect()`` creates no topic, and refuses a store without its metadata and snapshot topics).
    """

    kind = "kafka"
    capabilities: ClassVar[Capabilities] = Capabilities(
        global_order="per_stream", concurrency="cross_process", unsupported=frozenset({"rewrite_events"})
    )
    settings_schema = KafkaSettings

    def __init__(self, url: str | None = "kafka://127.0.0.1:9092", **settings: Any) -> None:
        super().__init__(url or "kafka://127.0.0.1:9092", **settings)
        s = self.settings
        conn = self._conn = Connection(self.url or "", s)
        self.max_record_bytes: int = conn.max_record_bytes
        self.capabilities = Capabilities(  # type: ignore[misc]
            global_order="per_stream",
            concurrency="cross_process",  # the log decides (records.accepts), with or without a lease
            unsupported=frozenset({"rewrite_events"}),  # a record cannot change in place in a log
            deleted_stream_ids="reusable",
            max_event_size=self.max_record_bytes - RECORD_OVERHEAD,
            max_batch_bytes=self.max_record_bytes - RECORD_OVERHEAD,
            extra={"layout": "topic-per-stream", "lease": bool(s.get("lease_url"))},
        )
        views = self._views = Views(conn)
        tails = Tails(conn, views)
        reader = self._reader = Reader(conn, views, self)
        self._snapshots = Snapshots(conn, views, self)
        streams = self._streams = Streams(conn, views, tails, self._snapshots)
        self._appender = Appender(conn, tails, streams)
        self._retention = Retention(conn, views, tails, reader)
        self._monitor = Monitor(conn, views, reader, tails, lambda: self.name)

    @property
    def prefix(self) -> str:
        """The topic prefix every topic of this store starts with."""
        return self._conn.prefix

    @property
    def checkpoint_source(self) -> str:
        """The masked URL, with ``#topic_prefix=...`` unless it is the default.

        Two stores on one cluster are two sources: a checkpoint of one is never resumed, nor its lag
        measured, against the other.
        """
        url = self.display_url or self.kind
        return url if self.prefix == DEFAULT_TOPIC_PREFIX else f"{url}#topic_prefix={self.prefix}"

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers named by the URL."""
        return self._conn.servers

    # ------------------------------------------------------------------ lifecycle

    @property
    def io(self) -> KafkaIO:
        """The connected I/O layer."""
        return self._conn.io

    async def connect(self) -> None:
        """Connect, create the metadata and snapshot topics, and build the lease if configured (see the Connection)."""
        await self._conn.connect()

    async def close(self) -> None:
        """Close the clients and the lease. Idempotent."""
        await self._conn.close()

    # ------------------------------------------------------------------ streams

    async def create_stream(self, stream: NewStream) -> StreamInfo:
        """Create the stream's topic and metadata record. :class:`StreamExistsError` if it exists."""
        return await self._streams.create_stream(stream)

    async def delete_stream(self, stream_id: str) -> None:
        """Write the delete record, delete the topic and the snapshots; the id is reusable from version 0."""
        await self._streams.delete_stream(stream_id)

    async def get_stream_info(self, stream_id: str) -> StreamInfo | None:
        """Exact info: metadata view plus the stream's tail read to its high watermark."""
        return await self._streams.get_stream_info(stream_id)

    async def list_streams(self, *, limit: int, offset: int, after: str | None = None) -> tuple[list[StreamInfo], int]:
        """A page of streams by id (from the metadata view), each with exact info."""
        return await self._streams.list_streams(limit=limit, offset=offset, after=after)

    # ------------------------------------------------------------------ events

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: Expected, stream: NewStream | None = None
    ) -> AppendResult:
        """One envelope record per append; the first record carrying the next version wins (:mod:`.append`)."""
        return await self._appender.append(stream_id, events, expected, stream)

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
        records = self._reader.stream_records(
            stream_id, from_version=from_version, to_version=to_version, backwards=backwards, page_size=page_size
        )
        return pages_of(records, page_size)

    def read_all_pages(self, *, from_position: int = 0, page_size: int = 500) -> AsyncIterator[Sequence[RecordedEvent]]:
        """Every stream in version order, streams merged by time (``per_stream``), in pages."""
        return pages_of(self._reader.all_records(from_position=from_position), page_size)

    async def get_event(self, event_id: str, stream_id: str | None = None) -> RecordedEvent | None:
        """Look in the stream (or every stream: a scan of the store) for the event id."""
        return await self._reader.get_event(event_id, stream_id)

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Produce the snapshot to the compacted snapshot topic once the stream is checked to back it."""
        await self._snapshots.save_snapshot(snapshot)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version`` (one record fetched by offset)."""
        return await self._snapshots.get_snapshot(stream_id, max_version)

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Tombstone one or all snapshots of a stream."""
        return await self._snapshots.delete_snapshots(stream_id, version)

    # ------------------------------------------------------------------ retention

    async def truncate_stream(
        self, stream_id: str, before_version: int, *, if_holds: tuple[int, str] | None = None
    ) -> int:
        """Hide the stream's events below ``before_version`` (a marker in its metadata record).

        ``if_holds=(version, event_id)``: only while the stream's current incarnation holds that event
        there; the marker names that incarnation, so one created again meanwhile keeps every event.
        """
        return await self._retention.truncate_stream(stream_id, before_version, if_holds=if_holds)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Hide events older than ``cutoff`` in one stream or all (a marker per stream)."""
        return await self._retention.delete_events_before(cutoff, stream_id)

    # ------------------------------------------------------------------ monitoring

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Exact counts from a scan of every stream (O(store)), snapshot count from the snapshot view."""
        return await self._monitor.stats(top_streams=top_streams)

    async def health(self) -> HealthStatus:
        """Describe the cluster; unhealthy (never raising) when it cannot be reached."""
        return await self._monitor.health()
