"""The two compacted topics as in-process views: stream metadata and snapshot offsets.

``<prefix>.meta`` holds one record per stream change (create, update, delete; applied by
:meth:`Namespace.apply_meta <eventsource_kafka.state.Namespace.apply_meta>`), ``<prefix>.snapshots``
one record per snapshot. Each view is brought up to the topic's high watermark, incrementally and
under its lock, before any answer that depends on it; :meth:`Views.put_meta` is the one writer of
metadata records.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderTimeoutError

from eventsource_kafka import records
from eventsource_kafka.errors import StoreReplacedError

if TYPE_CHECKING:
    from eventsource_kafka.connection import Connection


def _chain(target: asyncio.Future[int], source: asyncio.Future[int]) -> None:
    """Resolve ``target`` as ``source`` was."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


def meta_record(stream_id: str, meta: dict[str, Any]) -> tuple[bytes, bytes]:
    """Key and value of a metadata record (key: the exact stream id)."""
    return stream_id.encode("utf-8", "surrogatepass"), json.dumps(meta, ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


class _InFlight:
    """One event loop's checks: the one in flight (its number and future) and the callers waiting for the next."""

    __slots__ = ("next", "pending")

    def __init__(self) -> None:
        self.pending: tuple[int, asyncio.Future[int]] | None = None
        self.next: asyncio.Future[int] | None = None


class Views:
    """Catch-up reads of the metadata and snapshot topics into the shared namespace."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._seq_lock = threading.Lock()
        self._sent = 0  # metadata end-offset checks sent (see check), numbered across every loop
        self._done: tuple[int, int] = (0, 0)  # the latest one answered: its number and its answer
        # per event loop (a provider may be used from several loops, one per thread): a loop's futures
        # are never handed to an append running on another
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _InFlight] = weakref.WeakKeyDictionary()

    async def meta(self) -> dict[str, dict[str, Any]]:
        """The metadata of every live stream, brought up to the metadata topic's high watermark."""
        ns = self.conn.ns
        async with ns.meta_lock.held():
            try:
                recs, pos, _ = await self.conn.io.read(self.conn.meta_topic, ns.meta_offset)
            except StoreReplacedError:  # created again: the namespace forgot it all; read it from its start
                recs, pos, _ = await self.conn.io.read(self.conn.meta_topic, ns.meta_offset)
            for r in recs:
                if r.offset >= ns.meta_offset:
                    ns.apply_meta(
                        r.key.decode("utf-8", "surrogatepass"), None if r.value is None else json.loads(r.value)
                    )
                    ns.meta_offset = r.offset + 1
            ns.meta_offset = max(ns.meta_offset, pos)
        return ns.meta

    def mark(self) -> int:
        """A mark taken when an operation begins, for :meth:`check` (how many checks were sent before it)."""
        return self._sent

    def check(self, mark: int) -> int | asyncio.Future[int]:
        """The metadata topic's end as ListOffsets answers it at some moment after ``mark`` was taken.

        The answer of a check SENT after the mark: answered already (the int), in flight (its future,
        to await through :func:`asyncio.shield`: other callers share it), or, while a check sent
        before the mark is in flight, the next one, sent when that one is answered (one check in
        flight at a time, like a group commit); else a check sent now. Pass the answer to
        :meth:`meta_at` (docs/internals/kafka.md, "The stale-incarnation check").
        """
        done_seq, end = self._done
        if done_seq > mark:
            return end
        loop = asyncio.get_running_loop()
        mine = self._loops.get(loop)
        if mine is None:
            with self._seq_lock:  # threads may add their loops at the same moment
                mine = self._loops.setdefault(loop, _InFlight())
        pending = mine.pending
        if pending is None:
            return self._send(mine)
        if pending[0] > mark:
            return pending[1]
        if mine.next is None:
            mine.next = loop.create_future()
        return mine.next

    def _send(self, mine: _InFlight) -> asyncio.Future[int]:
        """Send one check now (numbered as it is sent) and make it the one in flight on this loop."""
        with self._seq_lock:  # numbers only grow, even when threads share this instance
            self._sent += 1
            seq = self._sent
        fut = self.conn.io.end_offset_now(self.conn.meta_topic)
        mine.pending = (seq, fut)

        def answered(f: asyncio.Future[int]) -> None:
            if mine.pending is not None and mine.pending[0] == seq:
                mine.pending = None
            if not f.cancelled() and f.exception() is None:
                with self._seq_lock:
                    if seq > self._done[0]:
                        self._done = (seq, f.result())
            waiting, mine.next = mine.next, None
            if waiting is not None and not waiting.done():  # callers that began while this one was in flight
                try:
                    nxt = self._send(mine)
                except BaseException as e:  # noqa: BLE001 - handed to the waiting callers
                    waiting.set_exception(e)
                else:
                    nxt.add_done_callback(functools.partial(_chain, waiting))

        fut.add_done_callback(answered)
        return fut

    async def meta_at(self, end: int | asyncio.Future[int]) -> dict[str, dict[str, Any]]:
        """The metadata view, at least as current as the metadata topic was when ``end`` (:meth:`check`) was answered.

        The view always stops at a record-batch boundary, and another process's records are in batches
        of their own, so an answer above the view's offset is exactly "something was written": only
        then is the topic read, and read again until the view reaches ``end`` (a read ends at the high
        watermark of its first fetch response, which can be one sent before the check, docs/internals/kafka.md).
        """
        if not isinstance(end, int):
            end = await asyncio.shield(end)
        ns = self.conn.ns
        deadline = None
        while end > ns.meta_offset:
            if deadline is None:
                deadline = time.monotonic() + self.conn.settings["request_timeout"]
            elif time.monotonic() > deadline:
                msg = f"the view of {self.conn.meta_topic} stays at {ns.meta_offset}, below {end}"
                raise ProviderTimeoutError(msg, operation="reading stream metadata")
            await self.meta()
        return ns.meta

    async def snaps(self) -> dict[str, dict[int, int]]:
        """The offset of every snapshot by stream and version, brought up to the snapshot topic's high watermark."""
        ns = self.conn.ns
        async with ns.snap_lock.held():
            recs, pos, _ = await self.conn.io.read(self.conn.snap_topic, ns.snap_offset)
            for r in recs:
                sid, version = records.parse_snapshot_key(r.key)
                if r.value is None:
                    ns.snaps.get(sid, {}).pop(version, None)
                else:
                    ns.snaps.setdefault(sid, {})[version] = r.offset
            ns.snap_offset = max(ns.snap_offset, pos)
        return ns.snaps

    async def put_meta(self, stream_id: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        """Write one metadata record (``op`` create/update/delete) and return the stream's metadata after it.

        Another process's record may land first and win (:meth:`Namespace.apply_meta`), so the view
        is brought up to this record (no read when nothing landed in between) before answering.
        """
        key, value = meta_record(stream_id, meta)
        offset = await self.conn.io.produce(self.conn.meta_topic, value, key=key)
        ns = self.conn.ns
        async with ns.meta_lock.held():
            if ns.meta_offset == offset:
                ns.apply_meta(stream_id, meta)
                ns.meta_offset = offset + 1
                return ns.meta.get(stream_id)
        return (await self.meta()).get(stream_id)
