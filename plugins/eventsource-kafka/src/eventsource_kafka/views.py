"""The two compacted topics as in-process views: stream metadata and snapshot offsets.

``<prefix>.meta`` holds one record per stream change (create, update, delete; applied by
:meth:`Namespace.apply_meta <eventsource_kafka.state.Namespace.apply_meta>`), ``<prefix>.snapshots``
one record per snapshot. Each view is brought up to the topic's high watermark, incrementally and
under its lock, before any answer that depends on it; :meth:`Views.put_meta` is the one writer of
metadata records.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from eventsource_kafka import records

if TYPE_CHECKING:
    from eventsource_kafka.connection import Connection


class Views:
    """Catch-up reads of the metadata and snapshot topics into the shared namespace."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def meta(self) -> dict[str, dict[str, Any]]:
        """The metadata of every live stream, brought up to the metadata topic's high watermark."""
        ns = self.conn.ns
        async with ns.meta_lock.held():
            recs, pos, _ = await self.conn.io.read(self.conn.meta_topic, ns.meta_offset)
            for r in recs:
                if r.offset >= ns.meta_offset:
                    ns.apply_meta(
                        r.key.decode("utf-8", "surrogatepass"), None if r.value is None else json.loads(r.value)
                    )
                    ns.meta_offset = r.offset + 1
            ns.meta_offset = max(ns.meta_offset, pos)
        return ns.meta

    async def meta_if_changed(self) -> dict[str, dict[str, Any]]:
        """:meth:`meta`, but reading the topic only when it holds records past the view (one ListOffsets when not).

        The view always stops at a record-batch boundary, and another process's records are in batches
        of their own, so a ListOffsets answer above the view's offset is exactly "something was written".
        """
        ns = self.conn.ns
        if await self.conn.io.end_offset(self.conn.meta_topic) > ns.meta_offset:
            return await self.meta()
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
        key = stream_id.encode("utf-8", "surrogatepass")
        value = json.dumps(meta, ensure_ascii=False).encode("utf-8", "surrogatepass")
        offset = await self.conn.io.produce(self.conn.meta_topic, value, key=key)
        ns = self.conn.ns
        async with ns.meta_lock.held():
            if ns.meta_offset == offset:
                ns.apply_meta(stream_id, meta)
                ns.meta_offset = offset + 1
                return ns.meta.get(stream_id)
        return (await self.meta()).get(stream_id)
