"""Retention by hiding: ``truncate_stream`` and ``delete_events_before`` write markers, never delete records.

Records deletion crashes Tansu, so each call adds a marker to the stream's metadata record
(``hide_below`` for a version bound, ``hide_before`` for a time cutoff up to the version the stream
had then) with the exact count of events it hides; every read applies the markers
(:mod:`~eventsource_kafka.markers`). A version bound also records where the first visible record is,
so reads skip the hidden ones. The bytes stay in the topic until the stream is deleted or the topic's
own retention removes them. A marker record names the incarnation (``inc``, ``topic``) it was computed
for, and :meth:`Namespace.apply_meta <eventsource_kafka.state.Namespace.apply_meta>` ignores it in any
other, so a guarded truncation (``if_holds``) checked against one incarnation never hides events of the
next, whenever a delete and a re-creation land.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.errors import StreamNotFoundError
from eventsource.timestamps import to_us

from eventsource_kafka.markers import Visibility, start

if TYPE_CHECKING:
    from datetime import datetime

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.reads import Reader
    from eventsource_kafka.tails import Seen, Tails
    from eventsource_kafka.views import Views


class Retention:
    """Retention markers: each one computed against the stream's tail and counted exactly."""

    def __init__(self, conn: Connection, views: Views, tails: Tails, reader: Reader) -> None:
        self.conn = conn
        self.views = views
        self.tails = tails
        self.reader = reader

    async def _hide(self, stream_id: str, rule: str, value: int, if_holds: tuple[int, str] | None = None) -> int:
        """Add a retention marker to the stream's metadata; returns how many visible events it hides.

        The stream's tail is read under the stream's lock (and lease), but the events are counted
        outside it, so appends go on while retention runs beside them; markers of one stream are
        changed one at a time in this process. A marker counts only the versions that existed when
        it was taken, and its record applies only to the incarnation it was computed for (0 is
        returned when the stream lives elsewhere, or nowhere, once it landed). ``if_holds``: only
        if that incarnation holds the event visibly (:meth:`_holds`).
        """
        slot = self.conn.ns.slot(stream_id)
        async with slot.marker_lock.held():
            async with self.conn.exclusive(stream_id):
                meta = await self.tails.refresh(stream_id, slot)
                version, next_offset = slot.version, slot.next_offset
                starts = {s.version: (s.offset, s.before) for s in slot.window.values()}
                seen = None if if_holds is None else slot.window.get(if_holds[1])
            if meta is None:
                if rule == "below":
                    msg = f"stream {stream_id!r} does not exist"
                    raise StreamNotFoundError(msg, stream_id=stream_id)
                return 0
            if if_holds is not None and not await self._holds(stream_id, meta, version, if_holds, seen):
                return 0
            new = dict(meta)
            new["op"] = "update"
            old_below = max(int(meta.get("hide_below", 0)), 1)
            if rule == "below":  # never above the next version: events appended later stay visible
                new["hide_below"] = max(int(meta.get("hide_below", 0)), min(value, version + 1))
            else:
                # an older marker the new one covers (an earlier cutoff, fewer versions) goes: periodic runs
                # keep one entry, not one per run (the record would grow until the broker refused it)
                kept = [m for m in meta.get("hide_before", []) if not (int(m[0]) <= value and int(m[1]) <= version)]
                new["hide_before"] = [*kept, [value, version]]
            if rule == "below" and not meta.get("hide_before"):
                # versions are gap-free: the marker hides exactly the versions between the old and new bound
                hidden = max(0, int(new["hide_below"]) - old_below)
                first_visible: int | None = new["hide_below"] if new["hide_below"] <= version else None
                skip = (next_offset, version) if first_visible is None else starts.get(new["hide_below"])
                if skip is not None and skip[0] > start(meta)[0]:
                    new["skip"] = list(skip)
            else:
                hidden, first_visible = await self._count_hidden(stream_id, meta, new, version)
            if hidden == 0:
                return 0
            new["hidden"] = int(meta.get("hidden", 0)) + hidden
            new["first_visible"] = first_visible if first_visible is not None else version + 1
            after = await self.views.put_meta(stream_id, new)
            if after is None or after["topic"] != meta["topic"]:
                # deleted (and perhaps created again) before it landed: the marker hides nothing there, but as
                # the stream's last record compaction would keep it alone: the stream as it is now goes after it
                await self._restate(stream_id, int(meta.get("inc", 0)))
                return 0
            if after != {**new, "op": "update"}:
                # another process's marker landed beside this one and was kept (``merge_markers``): write the
                # merged record, so compaction (which keeps a stream's last record only) keeps both, with the
                # counts of both markers together (each record counted only its own; the merge keeps the larger)
                counted, first = await self._recount(stream_id, after)
                await self.views.put_meta(
                    stream_id, {**after, "op": "update", "hidden": counted, "first_visible": first}
                )
            return hidden

    async def _recount(self, stream_id: str, meta: dict[str, Any]) -> tuple[int, int]:
        """The events every marker of ``meta`` hides together, and the first version they leave visible.

        Counted over the versions the markers cover (they never reach past the version the stream had when
        each was taken): the versions before the marker's ``skip`` are all below ``hide_below``, the others
        are read.
        """
        vis = Visibility(meta)
        limit = max([int(meta.get("hide_below", 0)) - 1, *(int(upto) for _, upto in meta.get("hide_before", []))])
        hidden = start(meta)[1]
        first: int | None = None
        scan = self.reader.scan(stream_id, {**meta, "hide_below": 0, "hide_before": []})  # every event from skip
        try:
            async for e in scan:
                if e.version > limit:
                    break
                if not vis.visible(e):
                    hidden += 1
                elif first is None:
                    first = e.version
        finally:
            await scan.aclose()  # type: ignore[attr-defined]
        return hidden, first if first is not None else limit + 1

    async def _restate(self, stream_id: str, inc: int) -> None:
        """Write the stream's metadata as every process now applies it, after a record that landed too late."""
        now = (await self.views.meta()).get(stream_id)
        if now is None:
            latest = max(self.conn.ns.incarnations.get(stream_id, inc), inc)
            await self.views.put_meta(stream_id, {"op": "delete", "inc": latest, "topic": ""})
        else:
            await self.views.put_meta(stream_id, {**now, "op": "update"})

    async def _holds(
        self, stream_id: str, meta: dict[str, Any], version: int, if_holds: tuple[int, str], seen: Seen | None
    ) -> bool:
        """Whether the incarnation ``meta`` names (tail at ``version``) holds the event ``if_holds`` visibly.

        Decided in that incarnation's own topic: from the tail's window of recent ids (``seen``, the
        latest append always in it), else by reading the stream from that version. A look gone stale
        meanwhile does not matter: the marker names the incarnation too (see the module docstring).
        """
        at, event_id = if_holds
        if not 1 <= at <= version:
            return False
        if seen is not None and seen.version == at:
            return Visibility(meta).shows(seen.version, seen.ts_us)
        scan = self.reader.scan(stream_id, meta, from_version=at)
        try:
            async for e in scan:
                return e.version == at and e.event_id == event_id
        finally:
            await scan.aclose()  # type: ignore[attr-defined]
        return False

    async def _count_hidden(
        self, stream_id: str, meta: dict[str, Any], new: dict[str, Any], version: int
    ) -> tuple[int, int | None]:
        """Events visible under ``meta`` but not under ``new`` (up to ``version``), and the first visible one."""
        before, after = Visibility(meta), Visibility(new)
        hidden = 0
        first_visible: int | None = None
        scan = self.reader.scan(stream_id, meta)
        try:
            async for e in scan:
                if e.version > version:
                    break
                if before.visible(e) and not after.visible(e):
                    hidden += 1
                elif first_visible is None and after.visible(e):
                    first_visible = e.version
        finally:
            await scan.aclose()  # type: ignore[attr-defined]
        return hidden, first_visible

    async def truncate_stream(
        self, stream_id: str, before_version: int, *, if_holds: tuple[int, str] | None = None
    ) -> int:
        """Hide the stream's events below ``before_version`` (a marker in its metadata record).

        With ``if_holds=(version, event_id)``, only while the stream's current incarnation holds that
        event visibly at that version; else 0.
        """
        return await self._hide(stream_id, "below", before_version, if_holds)

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        """Hide events older than ``cutoff`` in one stream or all (a marker per stream)."""
        ids = [stream_id] if stream_id is not None else sorted(await self.views.meta())
        total = 0
        for sid in ids:
            total += await self._hide(sid, "before", to_us(cutoff))
        return total
