"""The snapshot threshold: whether a stream is ``snapshot_threshold`` events past its latest snapshot.

After each append the manager tells the caller (``snapshot_due`` in the append response); with a snapshot handler set it
asks the handler for the state and stores the snapshot itself. The latest snapshot version is cached per
stream: fetched on the first append this manager makes to the stream, updated by this manager's
snapshot calls, and re-fetched at most once per ``snapshot_threshold`` events while a snapshot is due
(to notice snapshots other processes took).
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from eventsource.manager.cache import bounded_put, stream_key

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from eventsource.manager.policy import CallPolicy
    from eventsource.model import AppendResult
    from eventsource.provider import Provider

    SnapshotHandler = Callable[[str, int], Any]
    TakeSnapshot = Callable[[Provider, str, Any, int], Awaitable[object]]

log = logging.getLogger("eventsource")


class SnapshotThreshold:
    """Tracks how far each stream is past its latest snapshot; see the module docstring."""

    __slots__ = ("handler", "latest", "policy", "take", "threshold")

    def __init__(
        self, threshold: int | None, policy: CallPolicy, take: TakeSnapshot, handler: SnapshotHandler | None
    ) -> None:
        self.threshold = threshold
        self.policy = policy
        self.take = take
        self.handler = handler
        self.latest: dict[str, list[int]] = {}  # stream key -> [latest snapshot version, next re-check]

    def forget(self, provider: str, sid: str) -> None:
        """Drop what is known of a stream (deleted, or its snapshots deleted)."""
        self.latest.pop(stream_key(provider, sid), None)

    def saw(self, provider: str, sid: str, version: int) -> None:
        """Note a snapshot this manager stored at ``version``."""
        entry = self.latest.get(stream_key(provider, sid))
        if entry is not None and version > entry[0]:
            entry[0] = version

    async def due(self, p: Provider, res: AppendResult) -> bool:
        """Whether a snapshot is due after ``res`` (a handler may take it: then ``False``)."""
        threshold = self.threshold
        assert threshold is not None  # the manager asks only when a threshold is set
        sid = res.stream_id
        key = stream_key(p.name, sid)
        version = res.last_version
        entry = self.latest.get(key)
        if entry is None:
            entry = [await self._latest_version(p, sid), version + threshold]
            bounded_put(self.latest, key, entry)
        if version - entry[0] < threshold:
            return False
        if version >= entry[1]:
            entry[0] = await self._latest_version(p, sid)
            entry[1] = version + threshold
            if version - entry[0] < threshold:
                return False
        handler = self.handler
        if handler is None or res.duplicate:
            return True
        return await self._run_handler(handler, p, sid, version)

    async def _run_handler(self, handler: SnapshotHandler, p: Provider, sid: str, version: int) -> bool:
        rec = self.policy.metrics.op(p.name, "snapshot_handler")
        rec.calls += 1
        try:
            data = handler(sid, version)
            if inspect.isawaitable(data):
                data = await data
            if data is None:
                return True
            await self.take(p, sid, data, version)
        except Exception as e:  # noqa: BLE001 - the append succeeded; report the snapshot as still due
            rec.errors += 1
            log.warning("snapshot handler failed for a stream on %s: %s", p.name, type(e).__name__)
            return True
        return False

    async def _latest_version(self, p: Provider, sid: str) -> int:
        if not p.capabilities.supports("get_snapshot"):
            return 0
        snap = await self.policy.run(p, "get_snapshot", lambda: p.get_snapshot(sid))
        return snap.version if snap is not None else 0
