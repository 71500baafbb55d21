"""Streams: creating an empty stream, deleting one (and what the manager remembers of it), looking one up.

Each is one provider call under the call policy. Creating and deleting are never retried: an attempt that
timed out may still have landed, and a retried delete could remove a stream another writer re-created in
between (or report a delete that happened as not found).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.errors import StreamNotFoundError
from eventsource.manager.validation import new_stream

if TYPE_CHECKING:
    from eventsource.config import ManagerConfig
    from eventsource.manager.policy import CallPolicy
    from eventsource.manager.sealed import SealedAppends
    from eventsource.manager.threshold import SnapshotThreshold
    from eventsource.model import CreateStreamRequest, StreamInfo
    from eventsource.provider import Provider


class Streams:
    """Stream calls of one manager, through its call policy."""

    __slots__ = ("config", "policy", "sealed", "threshold")

    def __init__(
        self, config: ManagerConfig, policy: CallPolicy, sealed: SealedAppends, threshold: SnapshotThreshold
    ) -> None:
        self.config = config
        self.policy = policy
        self.sealed = sealed
        self.threshold = threshold

    async def create(self, p: Provider, sid: str, req: CreateStreamRequest) -> StreamInfo:
        """Create the empty stream ``sid`` (:class:`StreamExistsError` if taken); never retried."""
        stream = new_stream(sid, req, self.config.max_event_size)
        return await self.policy.run(p, "create_stream", lambda: p.create_stream(stream), retry=False)

    async def delete(self, p: Provider, sid: str) -> None:
        """Delete the stream and forget its pinned version and snapshot count; never retried."""
        self.sealed.forget(p.name, sid)
        self.threshold.forget(p.name, sid)
        await self.policy.run(p, "delete_stream", lambda: p.delete_stream(sid), retry=False)

    async def find(self, p: Provider, sid: str) -> StreamInfo | None:
        """The stream's info, or ``None`` when it does not exist."""
        return await self.policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))

    async def info(self, p: Provider, sid: str) -> StreamInfo:
        """The stream's info; :class:`StreamNotFoundError` when it does not exist."""
        info = await self.find(p, sid)
        if info is None:
            msg = f"stream {sid!r} does not exist"
            raise StreamNotFoundError(msg, stream_id=sid)
        return info
