"""Snapshots in the KV bucket ``<stream>_snap``, one key ``<token>.<version>`` per snapshot.

A snapshot at a version that already has one replaces it; the latest at or below a version is found by
listing the stream's keys (subjects of the bucket's stream) and reading from the highest down. A save
checks the stream and the version, puts, and checks again: JetStream has no transaction spanning them, so
a delete and re-create of the stream that slipped in before the put takes the put back (a reader may see
the snapshot until then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import EventSourceError, ValidationError
from eventsource.provider import check_snapshot, position_at

from eventsource_nats import records
from eventsource_nats.naming import Names, stream_token

if TYPE_CHECKING:
    from eventsource.model import NewSnapshot, RecordedSnapshot
    from eventsource.provider import Provider

    from eventsource_nats.connection import Connection
    from eventsource_nats.streams import Streams


class Snapshots:
    """Save, get and delete snapshots; ``provider`` answers the position checks of a save."""

    def __init__(self, conn: Connection, streams: Streams, provider: Provider) -> None:
        self.conn = conn
        self.streams = streams
        self.provider = provider

    async def _versions(self, token: str) -> list[int]:
        n = self.conn.names
        subjects = await self.conn.subjects(f"KV_{n.snapshot_bucket}", f"$KV.{n.snapshot_bucket}.{token}.*")
        return sorted(int(s.rsplit(".", 1)[-1]) for s in subjects)

    async def save_snapshot(self, snapshot: NewSnapshot) -> None:
        """Put the snapshot under ``<token>.<version>`` (a snapshot at the same version is replaced)."""
        conn = self.conn
        conn.require()
        value = records.encode_snapshot(snapshot)
        if len(value) + 256 > conn.max_payload:
            msg = f"the snapshot is {len(value)} bytes; a NATS KV value holds at most {conn.max_payload - 256}"
            raise ValidationError(msg, field="data", size=len(value), limit=conn.max_payload - 256)
        key = Names.snapshot_key(stream_token(snapshot.stream_id), snapshot.version)

        async def save() -> None:
            # check, put, check again (JetStream has no transaction spanning them): a delete and re-create
            # that slipped in before the put fails the second check, and the put is taken back
            await self._check(snapshot)
            revision = int(await conn.kv[conn.names.snapshot_bucket].put(key, value))
            try:
                await self._check(snapshot)
            except EventSourceError:
                bucket = conn.names.snapshot_bucket
                await conn.purge(f"KV_{bucket}", filter=f"$KV.{bucket}.{key}", seq=revision + 1)
                raise

        await conn.call("save snapshot", save())

    async def _check(self, snapshot: NewSnapshot) -> None:
        """Raise unless the stream as it is now backs ``snapshot`` (:func:`check_snapshot`)."""
        info = await self.streams.stream_info(snapshot.stream_id)
        at = None
        if info is not None and snapshot.position is not None:
            at = await position_at(self.provider, snapshot.stream_id, snapshot.version)
        check_snapshot(snapshot, exists=info is not None, version=info.version if info else 0, position_at=at)

    async def get_snapshot(self, stream_id: str, max_version: int | None = None) -> RecordedSnapshot | None:
        """The latest snapshot at or below ``max_version``."""
        conn = self.conn
        conn.require()
        token = stream_token(stream_id)

        async def get() -> RecordedSnapshot | None:
            for v in reversed(await self._versions(token)):
                if max_version is not None and v > max_version:
                    continue
                entry = await conn.kv_get(conn.names.snapshot_bucket, Names.snapshot_key(token, v))
                if entry is not None and entry.value:
                    snap: RecordedSnapshot = records.decode_snapshot(entry.value)
                    return snap
            return None

        return await conn.call(f"get snapshot of {stream_id!r}", get())

    async def delete_snapshots(self, stream_id: str, version: int | None = None) -> int:
        """Purge one snapshot key (or all of the stream's); returns how many existed."""
        conn = self.conn
        conn.require()
        token = stream_token(stream_id)
        n = conn.names

        async def delete() -> int:
            versions = await self._versions(token)
            targets = versions if version is None else [v for v in versions if v == version]
            for v in targets:
                await conn.purge(
                    f"KV_{n.snapshot_bucket}", filter=f"$KV.{n.snapshot_bucket}.{Names.snapshot_key(token, v)}"
                )
            return len(targets)

        return await conn.call(f"delete snapshots of {stream_id!r}", delete())
