"""Requests on connections the event loop owns: the stale-incarnation check and produces, with no thread.

Through the producer's network thread a request costs two thread hand-offs (and the GIL each way);
here the request is written by the loop itself and its answer parsed in ``data_received``. One
:class:`Wire` per event loop, provider, purpose (checks, produces) and broker, PLAINTEXT only (with
TLS or SASL the producer's connection is used). Requests are pipelined and answered in order (Kafka's
rule per connection). A produce the wire lost after writing it may have been stored: it is never sent
again here (:class:`ProduceOutcomeUnknownError`); an answer with an error code is the broker's word.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import socket
import struct
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource_kafka.client import KafkaIO

_LIST_OFFSETS = 2
_MAX_VERSION = 5
"""The newest ListOffsets version asked for: 1-5 have the classic (non-flexible) header and body."""
_PRODUCE = 0
_PRODUCE_VERSIONS = (3, 8)
"""Produce versions used: 3 is the first with record batches (magic 2), 8 the last non-flexible one."""
MAX_IN_FLIGHT = 5
"""Produces in flight at once on one loop's connection, as kafka-python's producer pipelines at most (its
``max_in_flight_requests_per_connection``): a broker takes one request of a connection at a time, so each
waits for the ones before it; past this many, produces go the producer's way, which puts them in one request."""
_UNWRITTEN = frozenset({5, 10, 18})
"""Produce error codes under which the broker stored nothing and the producer's own way may be tried: no leader,
message or record list too large (the producer then says it as it always did)."""
_MOVED = frozenset({3, 6})
"""Unknown topic or partition, not the leader: also Kafka's answer to an acks=all produce ALREADY appended when the
partition's leadership moves (or the partition leaves the broker) while it waits for its replicas. The record may
stay: the outcome is unknown, and the producer's metadata is refreshed for the next produce."""


_CIDS = itertools.count(1)
"""Correlation ids of every wire in the process: never reused by a later connection, so an answer that
crosses from an earlier connection (a proxy, a reconnect) never matches a request (per connection from 1,
the old connection's answer to request 3 was taken as the new one's)."""


class WireLostError(ProviderUnavailableError):
    """The wire closed, or its broker no longer leads the topic, before answering: ask another way."""


class ProduceOutcomeUnknownError(ProviderUnavailableError):
    """A produce was written on the wire, and the wire was lost (or the answer damaged) before its answer."""


class ProduceRefusedError(ProviderError):
    """The broker answered a produce with an error code (``code``).

    ``unwritten``: it stored nothing; ``moved``: the partition is not (or no longer) led by that broker, and
    the record may be stored.
    """

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg, operation="producing")
        self.code = code
        self.unwritten = code in _UNWRITTEN
        self.moved = code in _MOVED


class Wire(asyncio.Protocol):
    """One event loop's connection to one broker, for ListOffsets LATEST and produces (see the module docstring)."""

    def __init__(
        self, node: Any, versions: tuple[int | None, int | None], client_id: str, timeout: float, sock: socket.socket
    ) -> None:
        self.node = node
        self.sock = sock  # its own, so it can be closed once its loop is closed (the transport cannot be)
        self.version, self.produce_version = versions  # ListOffsets', Produce's (None: not supported)
        self.client_id = client_id.encode()
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.refused = False
        """Closed on an answer it could not take (an error code, a damaged frame): see :meth:`Wires.get`."""
        self.producing = 0
        """Produces written and neither answered nor failed by the wire: one whose waiter was cancelled is still on
        the connection, ahead of any written after it, until its answer comes."""
        self._buf = bytearray()
        self._cid = 0
        self._frames: dict[str, bytes] = {}
        # requests in the order they were written: correlation id, how to read the answer, future, timer
        self._waiting: collections.deque[
            tuple[int, Callable[[bytes, int], int], asyncio.Future[int], asyncio.TimerHandle]
        ] = collections.deque()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.lost = True
        self._fail_all(f"the connection closed: {exc}")

    def data_received(self, data: bytes) -> None:  # noqa: D102
        buf = self._buf
        buf += data
        while len(buf) >= 4:  # noqa: PLR2004 - the frame's length prefix
            (n,) = struct.unpack_from(">i", buf, 0)
            if n < 0:  # not a Kafka frame: this connection cannot be trusted
                self.refused = True
                self.close()
                return
            if len(buf) < 4 + n:
                return
            frame = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            self._answer(frame)

    # ------------------------------------------------------------------ requests

    def usable(self) -> bool:
        """Connected and not lost."""
        return self.transport is not None and not self.lost and not self.transport.is_closing()

    def ask(self, topic: str) -> asyncio.Future[int]:
        """Write one ListOffsets LATEST of ``topic`` partition 0 NOW; its future resolves to the answer."""
        frame = self._frames.get(topic)
        if frame is None:
            frame = self._frames[topic] = self._encode(topic)
        return self._write(frame, functools.partial(self._listed, topic))

    def send_frame(self, frame: bytes, topic: str) -> asyncio.Future[int]:
        """Write one :func:`produce_frame` to ``topic`` NOW; its future resolves to the record's offset.

        It fails with :class:`ProduceRefusedError` (an error code: the broker's word) or, written and no
        answer taken, :class:`ProduceOutcomeUnknownError` or a timeout (the record may be stored).
        """
        return self._write(frame, functools.partial(_produced, self, topic))

    def _write(self, frame: bytes, read: Callable[[bytes, int], int]) -> asyncio.Future[int]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._cid = next(_CIDS) % 2**31
        out = bytearray(frame)
        struct.pack_into(">i", out, 8, self._cid)  # after the length, api key and version
        fut: asyncio.Future[int] = loop.create_future()
        timer = loop.call_later(self.timeout, self._timed_out)
        self._waiting.append((self._cid, read, fut, timer))
        if _producing(read):
            self.producing += 1
        self.transport.write(bytes(out))
        return fut

    def _next(self) -> tuple[int, Callable[[bytes, int], int], asyncio.Future[int]]:
        """Take the oldest request off the wire (answered or failed): its timer stops, and it no longer counts."""
        cid, read, fut, timer = self._waiting.popleft()
        timer.cancel()
        if _producing(read):
            self.producing -= 1
        return cid, read, fut

    def close(self) -> None:
        """Close the connection (waiters fail: a check with :class:`WireLostError`, a produce as unknown)."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()
        self._fail_all("the connection was closed")

    def abandon(self) -> None:
        """Close the socket of a wire whose event loop is closed (nothing can run there: no waiter to fail)."""
        self.lost = True
        self.sock.close()

    def _encode(self, topic: str) -> bytes:
        from kafka.protocol.consumer import ListOffsetsRequest

        part = ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition
        request = ListOffsetsRequest(
            isolation_level=0,
            topics=[(topic, [part(partition_index=0, current_leader_epoch=-1, timestamp=-1)])],
        )
        request.with_header(correlation_id=0, client_id=self.client_id.decode())
        return bytes(request.encode(version=self.version, framed=True, header=True))

    def _answer(self, frame: bytes) -> None:
        if not self._waiting:
            self.refused = True
            self.close()  # an answer nobody asked for: this connection cannot be trusted
            return
        cid, read, fut = self._next()
        try:
            value = read(frame, cid)
        except ProduceRefusedError as e:  # the broker's well-formed answer: the connection stays
            if not fut.done():
                fut.set_exception(e)
            return
        except Exception as e:  # noqa: BLE001 - handed to the waiter
            if not isinstance(e, ProviderUnavailableError):  # an answer that does not decode: ask the other way
                e = _lost(read, f"an undecodable answer: {e!r}")
            if not fut.done():
                fut.set_exception(e)
            self.refused = True
            self.close()
            return
        if not fut.done():
            fut.set_result(value)

    def _listed(self, topic: str, frame: bytes, cid: int) -> int:
        """The offset a ListOffsets answer gives, or :class:`WireLostError` for one it cannot take."""
        from kafka.protocol.consumer import ListOffsetsResponse

        resp = ListOffsetsResponse.decode(frame, version=self.version, header=True)
        rows = [(t.name, p.partition_index, p.error_code, int(p.offset)) for t in resp.topics for p in t.partitions]
        # another request's answer, or not the answer to the question asked (a partition's offset of another
        # topic or partition would vouch for a stale view): this connection cannot be trusted
        _the_row(resp.header.correlation_id, cid, rows, topic, error=WireLostError, op="listing an end offset")
        _, _, code, offset = rows[0]
        if code or offset < 0:
            # not the leader any more, unknown topic... (error code), or Kafka's "no offset" (-1) that is
            # no end at all (taken as one, it is below every view): the caller asks the producer's connection
            msg = f"ListOffsets of {topic}: error code {code}, offset {offset}"
            raise WireLostError(msg, operation="listing an end offset")
        return offset

    def _timed_out(self) -> None:
        if self.lost:
            return
        self.lost = True
        self._fail_all(f"the broker did not answer within {self.timeout}s", timed_out=True)
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, why: str, *, timed_out: bool = False) -> None:
        while self._waiting:
            _, read, fut = self._next()
            if not fut.done():
                fut.set_exception(_lost(read, why, timed_out=timed_out))


def _producing(read: Callable[[bytes, int], int]) -> bool:
    """Whether the request answered by ``read`` is a produce (else a ListOffsets check)."""
    return isinstance(read, functools.partial) and read.func is _produced


def _lost(read: Callable[[bytes, int], int], why: str, *, timed_out: bool = False) -> ProviderError:
    """The error of a request the wire could not answer: a check asks another way, a produce's outcome is unknown."""
    if _producing(read):
        msg = f"a produce was sent, and {why}: it may or may not be stored"
        if timed_out:
            return ProviderTimeoutError(msg, operation="producing")
        return ProduceOutcomeUnknownError(msg, operation="producing")
    if timed_out:
        return ProviderTimeoutError(f"the broker did not answer ListOffsets: {why}", operation="listing an end offset")
    return WireLostError(f"the check connection: {why}", operation="listing an end offset")


def produce_frame(  # noqa: PLR0917 - a record's parts, as the producer's send takes them
    wire: Wire, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]], timestamp_ms: int
) -> bytes:
    """A framed Produce request (acks all, one record batch of one record, no compression) with correlation id 0."""
    from kafka.protocol.producer import ProduceRequest
    from kafka.record.default_records import DefaultRecordBatchBuilder

    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    batch = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1, base_sequence=-1,
        batch_size=size,
    )  # fmt: skip
    if batch.append(0, timestamp_ms, key, value, headers) is None:  # pragma: no cover - a first record always fits
        msg = "the record batch builder refused its first record"
        raise AssertionError(msg)
    data = ProduceRequest.TopicProduceData
    partition = data.PartitionProduceData(index=0, records=batch.build())
    request = ProduceRequest(
        transactional_id=None,
        acks=-1,
        # the broker's own limit ends before the wire's timer: a slow produce is answered REQUEST_TIMED_OUT
        # alone, instead of the timer dropping the connection and every produce in flight on it
        timeout_ms=int(wire.timeout * 750),
        topic_data=[data(name=topic, partition_data=[partition])],
    )
    request.with_header(correlation_id=0, client_id=wire.client_id.decode())
    return bytes(request.encode(version=wire.produce_version, framed=True, header=True))


async def produce_on_wire(  # noqa: PLR0917 - a record's parts, as the producer's send takes them
    io: KafkaIO, topic: str, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]], stamp: int
) -> int | None:
    """The record's offset, produced on the loop's wire to ``topic``'s leader; ``None``: take the producer's way.

    The producer's way: no wire up, :data:`MAX_IN_FLIGHT` produces already in flight on it (the producer puts
    produces made at once in one request), a request over ``max_request_size`` (refused there as
    always), or an answer saying nothing was stored. An answer that says the leader moved raises as unknown.
    """
    from eventsource_kafka.errors import map_error

    wire = io.produce_wires.get(io.producer._metadata, negotiated_versions(io), topic)  # noqa: SLF001
    if wire is None or wire.producing >= MAX_IN_FLIGHT:
        return None
    request = produce_frame(wire, topic, value, key, headers, stamp)
    if len(request) > io.max_request_size:
        return None
    try:
        return await wire.send_frame(request, topic)
    except ProduceRefusedError as e:
        if e.moved:  # maybe appended before the leader moved: never sent again (the caller's retry decides)
            io.producer._metadata.request_update()  # noqa: SLF001 - the next produce finds the new leader
            raise ProduceOutcomeUnknownError(f"{e}: it may be stored", operation=f"producing to {topic}") from e
        if not e.unwritten:  # the broker's own word on a record it may have stored
            from kafka import errors as ke

            raise map_error(ke.for_code(e.code)(str(e)), f"producing to {topic}") from e
    return None  # nothing stored (no leader, too large): the producer's way refreshes and says it as always


def _produced(wire: Wire, topic: str, frame: bytes, cid: int) -> int:
    """The offset a Produce answer gives; :class:`ProduceRefusedError` for an error code."""
    from kafka.protocol.producer import ProduceResponse

    resp = ProduceResponse.decode(frame, version=wire.produce_version, header=True)
    rows = [(t.name, p.index, p.error_code, int(p.base_offset)) for t in resp.responses for p in t.partition_responses]
    _the_row(resp.header.correlation_id, cid, rows, topic, error=ProduceOutcomeUnknownError, op="producing")
    _, _, code, offset = rows[0]
    if code:
        raise ProduceRefusedError(f"the broker refused a produce to {topic}: error code {code}", code)
    if offset < 0:
        msg = f"a produce to {topic} was answered with offset {offset}"
        raise ProduceOutcomeUnknownError(msg, operation="producing")
    return offset


def _the_row(
    answered: int, cid: int, rows: list[tuple[str, int, int, int]], topic: str, *, error: type[ProviderError], op: str
) -> None:
    """Raise ``error`` unless the answer is to request ``cid`` and names partition 0 of ``topic`` alone."""
    if answered != cid:
        msg = f"{op} {topic}: answer {answered} came to request {cid}"
        raise error(msg, operation=op)
    if len(rows) != 1 or rows[0][:2] != (topic, 0):
        msg = f"{op} {topic} partition 0 was answered for {[r[:2] for r in rows]}"
        raise error(msg, operation=op)


def negotiated_versions(io: KafkaIO) -> dict[int, tuple[int, int]] | None:
    """The API versions the producer negotiated with the cluster (``None`` before it did).

    What :meth:`Wires.get` picks a wire's versions from, for checks (:mod:`~eventsource_kafka.listoffsets`)
    and produces alike.
    """
    data = getattr(io.producer._sender._client._manager, "broker_version_data", None)  # noqa: SLF001
    return getattr(data, "api_versions", None)


def version(broker_versions: dict[int, tuple[int, int]] | None) -> int | None:
    """The ListOffsets version to use with this broker (``None``: none of 1-5 is supported)."""
    return _pick(broker_versions, _LIST_OFFSETS, (1, _MAX_VERSION))


def produce_version(broker_versions: dict[int, tuple[int, int]] | None) -> int | None:
    """The Produce version to use with this broker (``None``: none of 3-8 is supported)."""
    return _pick(broker_versions, _PRODUCE, _PRODUCE_VERSIONS)


def _pick(broker_versions: dict[int, tuple[int, int]] | None, api: int, ours: tuple[int, int]) -> int | None:
    if not broker_versions or api not in broker_versions:
        return None
    low, high = broker_versions[api]
    v = min(high, ours[1])
    return v if v >= max(low, ours[0]) else None


_RETRY_S = 5.0
"""After a failed connection attempt, or an answer the wire could not take (a broker answering an error),
how long a loop keeps to the producer's connection before opening another."""


class Wires:
    """The :class:`Wire` of each event loop and broker (made on first use, in the background; until then: ``None``).

    ``produce``: the wires are for produces (a loop's produces and checks never share a connection).
    """

    def __init__(self, *, enabled: bool, client_id: str, timeout: float, produce: bool = False) -> None:
        self.enabled = enabled
        self.client_id = client_id
        self.timeout = timeout
        self.produce = produce
        self._lock = threading.Lock()
        self._closed = False
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Wire | asyncio.Task[None]]] = (
            weakref.WeakKeyDictionary()
        )
        self._retry_at: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, float]] = (
            weakref.WeakKeyDictionary()
        )

    def current(self, loop: asyncio.AbstractEventLoop) -> Wire | None:
        """A usable wire of ``loop`` (to any broker), if one is up."""
        for w in list(self._by_loop.get(loop, {}).values()):
            if isinstance(w, Wire) and w.usable():
                return w
        return None

    def get(self, cluster: Any, broker_versions: dict[int, tuple[int, int]] | None, topic: str) -> Wire | None:
        """The running loop's wire to the broker leading ``topic``, if connected (else starts connecting one)."""
        if not self.enabled or self._closed:
            return None
        from kafka import TopicPartition

        loop = asyncio.get_running_loop()
        node = cluster.leader_for_partition(TopicPartition(topic, 0))
        if node is None or node == -1:
            return None
        mine = self._by_loop.get(loop)
        current = None if mine is None else mine.get(node)
        if isinstance(current, Wire):
            if current.usable():
                return current
            self._drop(loop, current)  # lost
            current = None
        if current is not None or self._retry_at.get(loop, {}).get(node, 0.0) > time.monotonic():
            return None  # connecting, or a recent attempt failed
        broker = cluster.broker_metadata(node)
        versions = (version(broker_versions), produce_version(broker_versions))
        if broker is None or versions[self.produce] is None:
            return None
        with self._lock:
            # a wire holds its loop, so its entry would outlive a loop closed before the provider: dropped
            # here, its socket closed (nothing can run on that loop any more; left to the collector, the
            # socket stayed open until a cyclic collection, the wire and its transport holding each other)
            for gone in [lp for lp in self._by_loop if lp.is_closed()]:
                for w in self._by_loop.pop(gone).values():
                    if isinstance(w, Wire):
                        w.abandon()
            task = loop.create_task(self._open(loop, broker.host, broker.port, node, versions))
            self._by_loop.setdefault(loop, {})[node] = task
        return None

    def _drop(self, loop: asyncio.AbstractEventLoop, wire: Wire) -> None:
        """Close ``loop``'s wire; after an answer it could not take, keep to the producer's way for a while."""
        wire.close()
        with self._lock:
            mine = self._by_loop.get(loop)
            if mine is not None and mine.get(wire.node) is wire:
                del mine[wire.node]
        if wire.refused:  # a broker answering errors would otherwise cost a connection per request
            self._retry_at.setdefault(loop, {})[wire.node] = time.monotonic() + _RETRY_S

    async def _open(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, node: Any, versions: tuple[int | None, int | None]
    ) -> None:
        wire: Wire | None = None
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            wire = await asyncio.wait_for(self._connect(loop, host, port, node, versions), self.timeout)
        with self._lock:
            mine = self._by_loop.setdefault(loop, {})
            if wire is None:
                mine.pop(node, None)
                self._retry_at.setdefault(loop, {})[node] = time.monotonic() + _RETRY_S
            elif self._closed:
                wire.close()
            else:
                mine[node] = wire

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, node: Any, versions: tuple[int | None, int | None]
    ) -> Wire:
        """A connected wire on a socket of its own (see :meth:`Wire.abandon`); each address in turn, as asyncio does."""
        error: OSError = OSError(f"{host}:{port} resolved to no address")
        for family, kind, proto, _, addr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)  # noqa: FBT003 - the socket API
                await loop.sock_connect(sock, addr)
                factory = functools.partial(Wire, node, versions, self.client_id, self.timeout, sock)
                _, wire = await loop.create_connection(factory, sock=sock)
            except OSError as e:
                sock.close()
                error = e
                continue
            except BaseException:
                sock.close()
                raise
            return wire
        raise error

    def close(self) -> None:
        """Close every loop's wires (another loop's in that loop's thread, if it still runs)."""
        with self._lock:
            self._closed = True
            items = [(loop, w) for loop, mine in self._by_loop.items() for w in mine.values()]
            self._by_loop.clear()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, w in items:
            stop: Callable[[], Any] = w.close if isinstance(w, Wire) else w.cancel
            if loop is running:
                stop()
            elif loop.is_closed():  # nothing runs there any more: only the socket is left to close
                if isinstance(w, Wire):
                    w.abandon()
            else:
                try:
                    loop.call_soon_threadsafe(stop)
                except RuntimeError:  # closed meanwhile
                    if isinstance(w, Wire):
                        w.abandon()
