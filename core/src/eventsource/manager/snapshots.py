"""Snapshots: storing an encoded snapshot of a stream's state at a version, reading the latest back, deleting."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import SnapshotNotFoundError, StreamNotFoundError, ValidationError
from eventsource.manager.validation import check_metadata, check_optional_text, check_size
from eventsource.model import MAX_NUMBER, CreateSnapshotResponse, NewSnapshot, new_id, utcnow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from eventsource.config import ManagerConfig
    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy, Page
    from eventsource.manager.threshold import SnapshotThreshold
    from eventsource.model import CreateSnapshotRequest, Event, Snapshot
    from eventsource.provider import Provider


class Snapshots:
    """Snapshot calls of one manager, through its codec and call policy."""

    __slots__ = ("codec", "config", "policy", "threshold")

    def __init__(
        self, config: ManagerConfig, codec: EventCodec, policy: CallPolicy, threshold: SnapshotThreshold
    ) -> None:
        self.config = config
        self.codec = codec
        self.policy = policy
        self.threshold = threshold

    async def create(self, p: Provider, sid: str, req: CreateSnapshotRequest) -> CreateSnapshotResponse:
        """Store ``req`` as a snapshot of stream ``sid`` (validated) on ``p``; every argument is checked first."""
        wanted = req.version
        if wanted is not None and (
            isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= MAX_NUMBER
        ):
            msg = f"snapshot version must be an int from 1 to the stream's version, got {wanted!r}"
            raise ValidationError(msg, field="version")
        metadata = check_metadata(req.metadata)
        aggregate_id = check_optional_text("aggregate id", req.aggregate_id, field_name="aggregate_id")
        aggregate_type = check_optional_text("aggregate type", req.aggregate_type, field_name="aggregate_type")
        info = await self.policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))
        if info is None:
            msg = f"stream {sid!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=sid)
        version = info.version if wanted is None else wanted
        if not 1 <= version <= info.version:
            msg = f"snapshot version must be from 1 to the stream's version {info.version}, got {version!r}"
            raise ValidationError(msg, field="version")
        snapshot_id = new_id()
        at = await self._event_at(p, sid, version, exact=True)
        tenant_of = at
        if at is None and self.codec.cipher is not None and self.codec.scope_mode == "tenant":
            # the event was truncated: the tenant of the nearest remaining one (below, else above)
            tenant_of = await self._event_at(p, sid, version, exact=False)
        tenant = tenant_of.tenant_id if tenant_of is not None else None
        data, meta, encoding, size = self.codec.encode_snapshot(
            sid, snapshot_id, tenant, req.data, metadata, version=version
        )
        check_size(f"snapshot of stream {sid!r}", size, self.config.max_snapshot_size, "max_snapshot_size")
        snap = NewSnapshot(
            snapshot_id=snapshot_id,
            stream_id=sid,
            version=version,
            data=data,
            metadata=meta,
            encoding=encoding,
            created_at=utcnow(),
            aggregate_id=aggregate_id or info.aggregate_id,
            aggregate_type=aggregate_type or info.aggregate_type,
            position=at.position if at is not None and at.version == version else None,
        )
        await self.policy.run(p, "save_snapshot", lambda: p.save_snapshot(snap))
        self.threshold.saw(p.name, sid, version)
        return CreateSnapshotResponse(
            snapshot_id=snapshot_id, stream_id=sid, version=version, created_at=snap.created_at
        )

    async def _event_at(self, p: Provider, sid: str, version: int, *, exact: bool) -> Event | None:
        """The event at ``version``; with ``exact=False`` the nearest one below it, else above it."""
        if exact:
            return await self._first(
                p, lambda: p.read_stream_pages(sid, from_version=version, to_version=version, page_size=1)
            )
        below = await self._first(p, lambda: p.read_stream_pages(sid, to_version=version, backwards=True, page_size=1))
        if below is not None:
            return below
        return await self._first(p, lambda: p.read_stream_pages(sid, from_version=version + 1, page_size=1))

    async def _first(self, p: Provider, open_: Callable[[], AsyncIterator[Page]]) -> Event | None:
        codec = self.codec
        found = self.policy.iterate(
            p, "read_stream", lambda last: None if last is not None else open_(), codec.decode_page, codec.page_tail
        )
        try:
            async for ev in found:
                return ev
        finally:
            await found.aclose()
        return None

    async def get(self, p: Provider, sid: str, max_version: int | None) -> Snapshot:
        """The latest snapshot of ``sid`` at or below ``max_version``; :class:`SnapshotNotFoundError` if none."""
        snap = await self.policy.run(p, "get_snapshot", lambda: p.get_snapshot(sid, max_version))
        if snap is None:
            msg = f"stream {sid!r} has no snapshot" + (f" at or below version {max_version}" if max_version else "")
            raise SnapshotNotFoundError(msg, stream_id=sid)
        return self.codec.decode_snapshot(sid, snap)

    async def delete(self, p: Provider, sid: str, version: int | None) -> int:
        """Delete the snapshot at ``version`` (every one when ``None``); the count. Never retried.

        An attempt that timed out or lost its reply may have landed; a retry would then delete a
        snapshot another writer took in between (which ``before_snapshot`` retention may already rely on).
        """
        try:
            n: int = await self.policy.run(p, "delete_snapshots", lambda: p.delete_snapshots(sid, version), retry=False)
        finally:  # whatever the outcome, the cached latest snapshot version may be gone
            self.threshold.forget(p.name, sid)
        return n


__all__ = ["Snapshots"]
