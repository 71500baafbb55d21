"""Snapshots: one record per (stream, version) in the compacted ``<prefix>.snapshots`` topic.

The snapshot view (:meth:`Views.snaps <eventsource_kafka.views.Views.snaps>`) knows each snapshot's
offset, so a get fetches one record; a delete writes tombstones. A save first checks that the stream
backs the snapshot (:func:`~eventsource.provider.check_snapshot`), then produces it: Kafka has no
transaction spanning both, so a delete and re-create can slip in between, within one produce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import ValidationError
from eventsource.provider import check_snapshot, position_at

from eventsource_kafka import records
from eventsource_kafka.client import record_size
from eventsource_kafka.connection import ENVELOPE_SLACK

if TYPE_CHECKING:
    from eventsource.model import NewSnapshot, RecordedSnapshot
    from eventsource.provider import Provider

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.views import Views


class Snapshots:
    """Save, get and delete snapshots."""

    def __init__(self, conn: Connection, views: Views, store: Provider) -> None:
        self.conn = conn
        self.views = views
        self.store = store  # the provider: the snapshot check reads the stream through its contract

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Produce the snapshot to the compacted snapshot topic (a snapshot at an existing version replaces it).

        The stream must back it (:func:`check_snapshot`): checked first, then produced (Kafka has no
        transaction spanning both; a delete and re-create can slip in between, within one produce).
        """
        value, key = records.encode_snapshot(snapshot), records.snapshot_key(snapshot.stream_id, snapshot.version)
        size, limit = record_size(value, [], key), self.conn.max_record_bytes
        if size > limit + ENVELOPE_SLACK // 2:  # the limit of an append's record too
            msg = f"snapshot of stream {snapshot.stream_id!r} is {size} bytes as one record; the limit is {limit}"
            raise ValidationError(f"{msg} (max_record_bytes)", field="data", size=size, limit=limit)
        info = await self.store.get_stream_info(snapshot.stream_id)
        at = None
        if info is not None and snapshot.position is not None:
            at = await position_at(self.store, snapshot.stream_id, snapshot.version)
        check_snapshot(snapshot, exists=info is not None, version=info.version if info else 0, position_at=at)
        offset = await self.conn.io.produce(self.conn.snap_topic, value, key=key)
        async with self.conn.ns.snap_lock.held():
            self.conn.ns.snaps.setdefault(snapshot.stream_id, {})[snapshot.version] = offset

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version`` (one record fetched by offset)."""
        versions = dict((await self.views.snaps()).get(stream_id, {}))
        for version in sorted(versions, reverse=True):
            if max_version is not None and version > max_version:
                continue
            recs, _, _ = await self.conn.io.read(self.conn.snap_topic, versions[version], max_records=1)
            for r in recs:
                if r.value is not None and records.parse_snapshot_key(r.key) == (stream_id, version):
                    return records.decode_snapshot(stream_id, r.value)
        return None

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Tombstone one or all snapshots of a stream; returns how many there were."""
        versions = dict((await self.views.snaps()).get(stream_id, {}))
        targets = sorted(versions) if version is None else [v for v in versions if v == version]
        for v in targets:
            await self.conn.io.produce(self.conn.snap_topic, None, key=records.snapshot_key(stream_id, v))
            async with self.conn.ns.snap_lock.held():
                self.conn.ns.snaps.get(stream_id, {}).pop(v, None)
        return len(targets)
