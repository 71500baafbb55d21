"""ListOffsets of one topic on a connection the event loop owns: the stale-incarnation check with no thread.

Through the producer's network thread a check costs two thread hand-offs (and the GIL each way);
here the request is written by the loop itself and its answer parsed in ``data_received``. One
:class:`Wire` per event loop and provider, to the broker leading the topic, PLAINTEXT only (with
TLS or SASL :func:`listoffsets.end_offset_now <eventsource_kafka.listoffsets.end_offset_now>` keeps
the producer's connection). Requests are pipelined and answered in order (Kafka's rule per connection).
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

from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

_LIST_OFFSETS = 2
_MAX_VERSION = 5
"""The newest ListOffsets version asked for: 1-5 have the classic (non-flexible) header and body."""


_CIDS = itertools.count(1)
"""Correlation ids of every wire in the process: never reused by a later connection, so an answer that
crosses from an earlier connection (a proxy, a reconnect) never matches a request (per connection from 1,
the old connection's answer to request 3 was taken as the new one's)."""


class WireLostError(ProviderUnavailableError):
    """The wire closed, or its broker no longer leads the topic, before answering: ask another way."""


class Wire(asyncio.Protocol):
    """One event loop's connection for ListOffsets LATEST of partition 0 (see the module docstring)."""

    def __init__(self, node: Any, version: int, client_id: str, timeout: float, sock: socket.socket) -> None:
        self.node = node
        self.sock = sock  # its own, so it can be closed once its loop is closed (the transport cannot be)
        self.version = version
        self.client_id = client_id.encode()
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.refused = False
        """Closed on an answer it could not take (an error code, a damaged frame): see :meth:`Wires.get`."""
        self._buf = bytearray()
        self._cid = 0
        self._frames: dict[str, bytes] = {}
        # requests in the order they were written: correlation id, topic, future, timer
        self._waiting: collections.deque[tuple[int, str, asyncio.Future[int], asyncio.TimerHandle]] = (
            collections.deque()
        )

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self.lost = True
        self._fail_all(WireLostError(f"the check connection closed: {exc}", operation="listing an end offset"))

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
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._cid = next(_CIDS) % 2**31
        frame = self._frames.get(topic)
        if frame is None:
            frame = self._frames[topic] = self._encode(topic)
        out = bytearray(frame)
        struct.pack_into(">i", out, 8, self._cid)  # after the length, api key and version
        fut: asyncio.Future[int] = loop.create_future()
        timer = loop.call_later(self.timeout, self._timed_out)
        self._waiting.append((self._cid, topic, fut, timer))
        self.transport.write(bytes(out))
        return fut

    def close(self) -> None:
        """Close the connection (waiters fail with :class:`WireLostError`)."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()
        self._fail_all(WireLostError("the check connection was closed", operation="listing an end offset"))

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
        from kafka.protocol.consumer import ListOffsetsResponse

        if not self._waiting:
            self.refused = True
            self.close()  # an answer nobody asked for: this connection cannot be trusted
            return
        cid, topic, fut, timer = self._waiting.popleft()
        timer.cancel()
        try:
            resp = ListOffsetsResponse.decode(frame, version=self.version, header=True)
            if resp.header.correlation_id != cid:
                raise WireLostError(  # noqa: TRY301 - handed to the waiter below
                    f"answer {resp.header.correlation_id} to request {cid}", operation="listing an end offset"
                )
            rows = [(t.name, p.partition_index, p.error_code, int(p.offset)) for t in resp.topics for p in t.partitions]
            if len(rows) != 1 or rows[0][:2] != (topic, 0):
                # not the answer to the question asked (a partition's offset of another topic or partition
                # would vouch for a stale view): this connection cannot be trusted
                msg = f"ListOffsets of {topic} partition 0 answered for {[r[:2] for r in rows]}"
                raise WireLostError(msg, operation="listing an end offset")  # noqa: TRY301
            _, _, code, offset = rows[0]
            if code or offset < 0:
                # not the leader any more, unknown topic... (error code), or Kafka's "no offset" (-1) that is
                # no end at all (taken as one, it is below every view): the caller asks the producer's connection
                msg = f"ListOffsets of {topic}: error code {code}, offset {offset}"
                raise WireLostError(msg, operation="listing an end offset")  # noqa: TRY301
        except Exception as e:  # noqa: BLE001 - handed to the waiter
            if not isinstance(e, WireLostError):  # an answer that does not decode: ask the other way
                e = WireLostError(f"an undecodable ListOffsets answer: {e!r}", operation="listing an end offset")
            if not fut.done():
                fut.set_exception(e)
            self.refused = True
            self.close()
            return
        if not fut.done():
            fut.set_result(offset)

    def _timed_out(self) -> None:
        if self.lost:
            return
        self.lost = True
        err = ProviderTimeoutError(
            f"the broker did not answer ListOffsets within {self.timeout}s", operation="listing an end offset"
        )
        self._fail_all(err)
        if self.transport is not None:
            self.transport.abort()

    def _fail_all(self, err: BaseException) -> None:
        while self._waiting:
            _, _, fut, timer = self._waiting.popleft()
            timer.cancel()
            if not fut.done():
                fut.set_exception(err)


def version(broker_versions: dict[int, tuple[int, int]] | None) -> int | None:
    """The ListOffsets version to use with this broker (``None``: none of 1-5 is supported)."""
    if not broker_versions or _LIST_OFFSETS not in broker_versions:
        return None
    low, high = broker_versions[_LIST_OFFSETS]
    v = min(high, _MAX_VERSION)
    return v if v >= max(low, 1) else None


_RETRY_S = 5.0
"""After a failed connection attempt, or an answer the wire could not take (a broker answering an error),
how long a loop keeps to the producer's connection before opening another."""


class Wires:
    """The :class:`Wire` of each event loop (made on first use, in the background; until then: ``None``)."""

    def __init__(self, *, enabled: bool, client_id: str, timeout: float) -> None:
        self.enabled = enabled
        self.client_id = client_id
        self.timeout = timeout
        self._lock = threading.Lock()
        self._closed = False
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wire | asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )
        self._retry_at: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, float] = weakref.WeakKeyDictionary()

    def get(self, cluster: Any, broker_versions: dict[int, tuple[int, int]] | None, topic: str) -> Wire | None:
        """The running loop's wire to the broker leading ``topic``, if connected (else starts connecting one)."""
        if not self.enabled or self._closed:
            return None
        from kafka import TopicPartition

        loop = asyncio.get_running_loop()
        node = cluster.leader_for_partition(TopicPartition(topic, 0))
        if node is None or node == -1:
            return None
        current = self._by_loop.get(loop)
        if isinstance(current, Wire):
            if current.usable() and current.node == node:
                return current
            self._drop(loop, current)  # lost, or the topic moved to another broker
            current = None
        if current is not None or self._retry_at.get(loop, 0.0) > time.monotonic():
            return None  # connecting, or a recent attempt failed
        broker = cluster.broker_metadata(node)
        ver = version(broker_versions)
        if broker is None or ver is None:
            return None
        with self._lock:
            # a wire holds its loop, so its entry would outlive a loop closed before the provider: dropped
            # here, its socket closed (nothing can run on that loop any more; left to the collector, the
            # socket stayed open until a cyclic collection, the wire and its transport holding each other)
            for gone in [lp for lp in self._by_loop if lp.is_closed()]:
                w = self._by_loop.pop(gone)
                if isinstance(w, Wire):
                    w.abandon()
            self._by_loop[loop] = loop.create_task(self._open(loop, broker.host, broker.port, node, ver))
        return None

    def _drop(self, loop: asyncio.AbstractEventLoop, wire: Wire) -> None:
        """Close ``loop``'s wire; after an answer it could not take, keep to the producer's way for a while."""
        wire.close()
        with self._lock:
            if self._by_loop.get(loop) is wire:
                del self._by_loop[loop]
        if wire.refused:  # a broker answering errors would otherwise cost a connection per check
            self._retry_at[loop] = time.monotonic() + _RETRY_S

    async def _open(self, loop: asyncio.AbstractEventLoop, host: str, port: int, node: Any, ver: int) -> None:
        wire: Wire | None = None
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            wire = await asyncio.wait_for(self._connect(loop, host, port, node, ver), self.timeout)
        with self._lock:
            if wire is None:
                self._by_loop.pop(loop, None)
                self._retry_at[loop] = time.monotonic() + _RETRY_S
            elif self._closed:
                wire.close()
            else:
                self._by_loop[loop] = wire

    async def _connect(self, loop: asyncio.AbstractEventLoop, host: str, port: int, node: Any, ver: int) -> Wire:
        """A connected wire on a socket of its own (see :meth:`Wire.abandon`); each address in turn, as asyncio does."""
        error: OSError = OSError(f"{host}:{port} resolved to no address")
        for family, kind, proto, _, addr in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)  # noqa: FBT003 - the socket API
                await loop.sock_connect(sock, addr)
                factory = functools.partial(Wire, node, ver, self.client_id, self.timeout, sock)
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
        """Close every loop's wire (another loop's in that loop's thread, if it still runs)."""
        with self._lock:
            self._closed = True
            items = list(self._by_loop.items())
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
