"""The Kafka I/O layer of the provider.

One producer whose futures are bridged to asyncio, a pool of assign-only consumers and one admin
client, whose blocking calls run in the provider's thread pool. More in docs/internals/kafka.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import ProviderError, ProviderUnavailableError

from eventsource_kafka.errors import StoreReplacedError, map_error
from eventsource_kafka.fetching import FETCH_BYTES, ReadStoppedError, TopicGoneError, TopicRecreatedError, read_sync
from eventsource_kafka.loopwire import ProduceOutcomeUnknownError, produce_on_wire

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

_CLOSE_WAIT_S = 2.0
"""How long :meth:`KafkaIO.close` waits for the calls running in the pool to let go of their consumers."""


def record_size(value: bytes, headers: list[tuple[str, bytes]], key: bytes | None = None) -> int:
    """The bytes one record takes in a produce request, headers included (what the producer checks)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def resolve(fut: asyncio.Future[Any], value: Any, exc: BaseException | None) -> None:
    """Settle ``fut`` with ``exc`` if given, else ``value``; nothing if it is done (cancelled, say) already."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class KafkaIO:
    """Producer, consumer pool and admin client for one provider instance.

    :param config: kafka-python settings shared by all clients (bootstrap servers, security...).
    :param threads: size of the thread pool running blocking calls (and of the consumer pool).
    :param timeout: seconds a blocking call may take before :class:`ProviderTimeoutError`.
    :param max_request_size: the producer's ``max_request_size``.
    """

    def __init__(self, config: dict[str, Any], *, threads: int, timeout: float, max_request_size: int) -> None:
        self.config = config
        self.timeout = timeout
        self.max_request_size = max_request_size
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="eventsource-kafka")
        self._threads = threads
        self._idle: list[Any] = []
        self._consumers: list[Any] = []
        self._slots = asyncio.Semaphore(threads)
        self._admin_lock = threading.Lock()
        self._primed: set[str] = set()
        # calls running in the pool with a pooled consumer, and the event that stops each (reads; see _with_consumer)
        self._running: dict[Future[Any], threading.Event | None] = {}
        # topic -> the id a read found it under (the Connection shares its namespace's), and what to do when
        # a read finds one created again (the Connection forgets the store as it saw it)
        self.topic_ids: dict[str, Any] = {}
        self.on_recreated: Callable[[str], None] | None = None
        self._producer: Any = None
        self.admin: Any = None
        from eventsource_kafka.loopwire import Wires

        # the stale-incarnation check, and produces, on connections each event loop owns (plain TCP only)
        plain = config.get("security_protocol", "PLAINTEXT") == "PLAINTEXT"
        client_id = str(config.get("client_id") or "eventsource")
        self.wires = Wires(enabled=plain, client_id=client_id, timeout=timeout)
        self.produce_wires = Wires(enabled=plain, client_id=client_id, timeout=timeout, produce=True)

    @property
    def producer(self) -> Any:
        """The producer; a typed error once :meth:`close` ran (an append racing close got an AttributeError)."""
        if self._producer is None:
            msg = "the Kafka provider was closed while this call was running"
            raise ProviderUnavailableError(msg, operation="producing")
        return self._producer

    # ------------------------------------------------------------------ lifecycle

    async def run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call in the thread pool, mapping its errors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except Exception as e:
            raise map_error(e, what) from e

    async def start(self) -> None:
        """Create the producer and the admin client (both connect to the cluster)."""
        await self.run("connecting", self._start_sync)

    def _start_sync(self) -> None:
        from kafka import KafkaAdminClient, KafkaProducer

        timeout_ms = int(self.timeout * 1000)
        self.admin = KafkaAdminClient(**self.config, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms)
        self._producer = KafkaProducer(
            **self.config,
            acks="all",
            linger_ms=0,
            max_request_size=self.max_request_size,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            # the whole send, retries included, within the same bound (kafka-python's default is 120 s,
            # and it must not be below linger_ms + request_timeout_ms)
            delivery_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        _tune_metadata(self._producer._metadata)  # noqa: SLF001 - see _tune_metadata

    async def close(self) -> None:
        """Close every client and the thread pool. Idempotent."""
        producer, admin, consumers = self._producer, self.admin, list(self._consumers)
        running = dict(self._running)  # a copy in one step: pool threads remove the calls that end
        for halt in running.values():  # reads in the pool stop within a poll, not at their own deadline
            if halt is not None:
                halt.set()
        if running:  # then their consumers are closed: never one another thread is still using
            await asyncio.wait([asyncio.wrap_future(cf) for cf in running], timeout=_CLOSE_WAIT_S)
        self.wires.close()
        self.produce_wires.close()
        self._producer = self.admin = None
        self._consumers.clear()
        self._idle.clear()

        def _close() -> None:
            for c in consumers:
                c.close()
            if producer is not None:
                producer.close(timeout=5)
            if admin is not None:
                admin.close()

        if producer is not None or admin is not None or consumers:
            await asyncio.get_running_loop().run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ admin

    def _admin_call(self, fn: Callable[[], T]) -> T:
        with self._admin_lock:
            return fn()

    async def ensure_topic(self, topic: str, *, replication_factor: int, configs: dict[str, str]) -> bool:
        """Create a one-partition topic (an existing one is fine) and load its metadata in the producer.

        Returns whether THIS call created it (``False``: it existed, e.g. another process created it
        first; the broker arbitrates).
        """

        def _create() -> bool:
            from kafka import errors as ke

            created = True

            res = self._admin_call(
                lambda: self.admin.create_topics(
                    {topic: {"num_partitions": 1, "replication_factor": replication_factor, "configs": configs}},
                    raise_errors=False,
                )
            )
            for t in res.get("topics", []) if isinstance(res, dict) else []:
                code = t.get("error_code", 0)
                if code == ke.TopicAlreadyExistsError.errno:
                    created = False
                elif code != 0:
                    raise ke.for_code(code)(f"creating topic {topic}: {t.get('error_message')}")
            self.producer.partitions_for(topic)
            return created

        created = await self.run(f"creating topic {topic}", _create)
        self._primed.add(topic)
        return created

    async def missing_topics(self, topics: list[str]) -> list[str]:
        """Which of ``topics`` the cluster does not have; the producer loads the metadata of the others.

        Every topic is listed (a metadata request for all topics never auto-creates one), as
        :meth:`ensure_topic` loads the metadata of the topic it makes.
        """

        def _find() -> list[str]:
            have = set(self._admin_call(self.admin.list_topics))
            for topic in topics:
                if topic in have:
                    self.producer.partitions_for(topic)
            return [t for t in topics if t not in have]

        missing = await self.run("listing topics", _find)
        self._primed.update(t for t in topics if t not in missing)
        return missing

    async def delete_topic(self, topic: str) -> None:
        """Delete a topic; a topic that is already gone is fine."""

        def _delete() -> None:
            from kafka import errors as ke

            res = self._admin_call(lambda: self.admin.delete_topics([topic], raise_errors=False))
            rows = (res.get("responses") or res.get("topics") or []) if isinstance(res, dict) else []
            for t in rows:
                code = t.get("error_code", 0)
                if code not in (0, ke.UnknownTopicOrPartitionError.errno):
                    raise ke.for_code(code)(f"deleting topic {topic}")

        await self.run(f"deleting topic {topic}", _delete)
        self._primed.discard(topic)

    async def describe_cluster(self) -> dict[str, Any]:
        """The cluster description (brokers, controller)."""
        return await self.run("describing the cluster", lambda: self._admin_call(self.admin.describe_cluster))

    # ------------------------------------------------------------------ produce

    def knows(self, topic: str) -> bool:
        """Whether the producer holds the topic's metadata (a produce to it then never waits for a refresh)."""
        return topic in self._primed and bool(self.producer._metadata.partitions_for_topic(topic))  # noqa: SLF001

    async def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> int:
        """Send one record and wait for its acknowledgement without blocking the loop; returns its offset.

        On the loop's own connection to the topic's leader once it is up (:mod:`~eventsource_kafka.loopwire`),
        else through the producer, whose future is resolved onto the loop with ``call_soon_threadsafe`` from
        kafka-python's sender thread (no thread waits on it). A produce the loop's connection lost after
        writing it is never sent again: it raises (it may be stored), and the caller's retry decides.
        """
        # a topic the producer's metadata lost (deleted by another process, seen by a refresh) would make
        # ``send`` block the loop while it waits for the topic's metadata: wait for it in the pool instead
        if not self.knows(topic):
            await self.run(f"loading metadata of {topic}", self.producer.partitions_for, topic)
            self._primed.add(topic)
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        offset = await produce_on_wire(self, topic, value, key, headers or [], stamp)
        if offset is not None:
            return offset
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def ok(md: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(resolve, fut, md, None)

        def failed(e: BaseException) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(resolve, fut, None, e)

        try:
            rec = self.producer.send(
                topic, value=value, key=key, headers=headers, partition=0, timestamp_ms=timestamp_ms
            )
        except Exception as e:
            raise map_error(e, f"producing to {topic}") from e
        rec.add_callback(ok)
        rec.add_errback(failed)
        try:
            md = await fut
        except Exception as e:
            raise map_error(e, f"producing to {topic}") from e
        if md.offset < 0:
            # stored, at an offset nobody told: kafka-python sent the batch again after losing the answer, and
            # Tansu answers a repeat DUPLICATE_SEQUENCE_NUMBER with offset -1, which kafka-python takes as
            # success. Taken as an offset, an append found no record of its own there and reported a conflict
            # for an event it had stored; the caller's retry (same event ids) is answered from the stream
            msg = f"a produce to {topic} was answered with offset {md.offset}: it may or may not be stored"
            raise ProduceOutcomeUnknownError(msg, operation=f"producing to {topic}")
        return int(md.offset)

    # ------------------------------------------------------------------ consume

    async def _acquire(self, topic: str | None = None) -> Any:
        """An idle consumer, preferably one already assigned to ``topic`` (no metadata round trip)."""
        await self._slots.acquire()
        for i in range(len(self._idle) - 1, -1, -1):
            if self._idle[i]._eventsource_topic == topic:  # noqa: SLF001 - our own attribute
                return self._idle.pop(i)
        if self._idle and len(self._consumers) >= self._threads:
            return self._idle.pop()
        try:
            c = await self.run("creating a consumer", self._new_consumer)
        except BaseException:
            self._slots.release()
            raise
        self._consumers.append(c)
        return c

    def _release(self, consumer: Any, *, broken: bool) -> None:
        if broken:
            if consumer in self._consumers:
                self._consumers.remove(consumer)
            try:
                self._executor.submit(consumer.close)
            except RuntimeError:  # the pool is shut down (provider closed)
                consumer.close()
        else:
            self._idle.append(consumer)
        self._slots.release()

    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        c = KafkaConsumer(
            **self.config,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=1,  # an empty tail answers at once (Tansu never answers max_wait 0 for an empty log)
            check_crcs=False,  # the broker checks CRCs on produce; kafka-python's pure-Python CRC32C is slow
            # O(page) memory: a fetch answers at most this much (and always at least one whole record
            # batch, however large), and kafka-python holds a few copies of a response while decoding
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
            request_timeout_ms=max(int(self.timeout * 1000), 5000),
            bootstrap_timeout_ms=int(self.timeout * 1000),
        )
        _tune_metadata(c._cluster)  # noqa: SLF001 - see _tune_metadata
        _no_prefetch(c._fetcher)  # noqa: SLF001 - see _no_prefetch
        c._eventsource_topic = None  # noqa: SLF001 - the topic it is assigned to (pool affinity)
        return c

    async def read(
        self,
        topic: str,
        start: int,
        *,
        max_records: int | None = None,
        stop: int | None = None,
        one_fetch: bool = False,
    ) -> tuple[list[Any], int, bool]:
        """Records of ``topic`` (one partition) from offset ``start``: :meth:`read_page` without the end."""
        recs, pos, at_end, _ = await self.read_page(
            topic, start, max_records=max_records, stop=stop, one_fetch=one_fetch
        )
        return recs, pos, at_end

    async def read_page(
        self,
        topic: str,
        start: int,
        *,
        max_records: int | None = None,
        stop: int | None = None,
        one_fetch: bool = False,
        or_gone: bool = False,
    ) -> tuple[list[Any], int, bool, int | None]:
        """Records of ``topic`` (one partition) from offset ``start``.

        Stops at the END THIS READ SAW WHEN IT BEGAN (the high watermark of its first fetch response,
        or ``stop`` if lower), never chasing a high watermark that moves while it reads; after
        ``max_records`` records; or (with ``one_fetch``) once one fetch response has delivered
        records: a page of at most ``FETCH_BYTES`` (or one record batch, however large), so scans
        hold O(page) memory. Returns the records (kafka-python ``ConsumerRecord``), the next offset to
        read, whether the end was reached, and that end (pass it as ``stop`` to read the next pages of
        the same snapshot of the log; ``None`` when no fetch answered yet).

        A topic deleted meanwhile (by another instance) reads as empty: ``[], start, True, start``, or
        (``or_gone``) raises :class:`~eventsource_kafka.fetching.TopicGoneError`. The read stops at once when
        its caller is cancelled or :meth:`close` runs (:mod:`~eventsource_kafka.fetching`).
        """
        halt = threading.Event()
        try:
            args = (topic, start, max_records, stop, self.timeout, one_fetch, halt, self.topic_ids)
            return await self._with_consumer(topic, f"reading {topic}", read_sync, *args, halt=halt)
        except ProviderError as e:
            if isinstance(e.__cause__, TopicRecreatedError):
                if self.on_recreated is not None:
                    self.on_recreated(topic)
                msg = (
                    f"topic {topic} was deleted and created again since this process read it (the store was "
                    "dropped and created anew, or the broker lost its data): its view of the store is read anew; retry"
                )
                raise StoreReplacedError(msg, operation=f"reading {topic}") from None
            if isinstance(e.__cause__, TopicGoneError):  # deleted meanwhile (that consumer is retired)
                if or_gone:
                    raise e.__cause__ from None
                return [], start, True, start
            raise

    async def end_offset(self, topic: str) -> int:
        """ListOffsets LATEST of partition 0: a LOWER BOUND of the log end on Tansu.

        Tansu answers the base offset of the last record batch + 1 (STORES.md section 10), so the answer
        is above an offset ``o`` read to a batch boundary exactly when a batch was written at or after
        ``o``: enough to learn whether a topic changed, never where it ends. One round trip, no fetch wait.
        """
        from kafka import TopicPartition

        tp = TopicPartition(topic, 0)
        return await self._with_consumer(topic, f"listing the end of {topic}", lambda c: int(c.end_offsets([tp])[tp]))

    async def end_offsets(self, topics: list[str]) -> dict[str, int]:
        """:func:`listoffsets.end_offsets <eventsource_kafka.listoffsets.end_offsets>` on this I/O layer."""
        from eventsource_kafka import listoffsets

        return await listoffsets.end_offsets(self, topics)

    def end_offset_now(self, topic: str) -> asyncio.Future[int]:
        """:func:`listoffsets.end_offset_now <eventsource_kafka.listoffsets.end_offset_now>` on this I/O layer."""
        from eventsource_kafka import listoffsets

        return listoffsets.end_offset_now(self, topic)

    async def _with_consumer(
        self, topic: str, what: str, fn: Callable[..., T], *args: Any, halt: threading.Event | None = None
    ) -> T:
        """Run ``fn(consumer, *args)`` in the pool with a pooled consumer.

        The consumer goes back to the pool only when the thread is done with it: if the caller is
        cancelled (a timeout) while the call runs, it is retired once the call ends. ``halt``: an event
        ``fn`` watches, set when the caller is cancelled or :meth:`close` runs, so ``fn`` frees its thread
        then instead of running on to its own deadline while the pool's threads run out.
        """
        consumer = await self._acquire(topic)
        loop = asyncio.get_running_loop()
        try:
            cf = self._executor.submit(fn, consumer, *args)
        except BaseException:
            self._release(consumer, broken=True)
            raise
        self._running[cf] = halt
        cf.add_done_callback(lambda _: self._running.pop(cf, None))
        try:
            out = await asyncio.wrap_future(cf)
        except asyncio.CancelledError:
            if halt is not None:
                halt.set()

            def retire(_: Any) -> None:
                with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                    loop.call_soon_threadsafe(functools.partial(self._release, consumer, broken=True))

            cf.add_done_callback(retire)
            raise
        except ReadStoppedError as e:
            self._release(consumer, broken=True)
            msg = "the Kafka provider was closed while this call was running"
            raise ProviderUnavailableError(msg, operation=what) from e
        except Exception as e:
            self._release(consumer, broken=True)
            raise map_error(e, what) from e
        self._release(consumer, broken=False)
        return out


def _tune_metadata(cluster: Any) -> None:
    """Never auto-create topics, and refresh metadata without the driver's default back-off.

    kafka-python 3.0.12 builds its ``ClusterMetadata`` without the client's ``allow_auto_create_topics``
    and ``retry_backoff_ms`` (STORES.md, kafka-python quirks), so a read of a deleted topic would
    re-create it with the broker's default partition count, and every newly assigned topic would wait
    its default ``retry_backoff_ms`` for its metadata. Both are set on the metadata object itself (a private attribute).
    """
    cfg = getattr(cluster, "config", None)
    if isinstance(cfg, dict):
        cfg["allow_auto_create_topics"] = False
        cfg["retry_backoff_ms"] = 2


def _no_prefetch(fetcher: Any) -> None:
    """Stop kafka-python from fetching ahead after a poll that returned records.

    ``Fetcher.fetch_records`` sends the next fetch as soon as its buffer is drained, so a reader that
    takes one large record per page holds that record plus the next response (several copies of each
    while kafka-python decodes). Reads here always know where they stop, so the next fetch is sent
    only by a poll that found nothing buffered: O(page) memory, at most one extra round trip a page.
    """
    drain, send = fetcher.fetched_records, fetcher.send_fetches
    state = {"drained": False}

    def fetched_records(*args: Any, **kwargs: Any) -> Any:
        out = drain(*args, **kwargs)
        state["drained"] = bool(out[0])
        return out

    def send_fetches() -> Any:
        if state["drained"]:
            return []
        return send()

    fetcher.fetched_records = fetched_records
    fetcher.send_fetches = send_fetches
