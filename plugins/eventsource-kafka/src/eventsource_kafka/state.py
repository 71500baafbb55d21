"""What every provider instance on one cluster and topic prefix shares in this process.

A :class:`Namespace` holds each stream's tail (:class:`~eventsource_kafka.tails.Slot`), the metadata
view (live streams and their incarnations, applied in topic order by :meth:`Namespace.apply_meta`)
and the snapshot view, with their read positions and locks. Sharing it is what makes two instances in
one process see each other's appends at once; :func:`namespace` keys it by the cluster's id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eventsource_kafka.tails import Slot, SlotLock


def merge_markers(live: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """``value`` (an ``update`` of the live incarnation) keeping every retention marker ``live`` already has.

    A marker record is a copy of the metadata its process read, so one computed beside another process's
    marker would drop it (two truncations at once: the second to land un-hid what the first hid). Markers
    only ever hide more: the higher version bound, every time cutoff not covered by one in ``value``, the
    skip furthest into the topic (nothing before either skip is visible, so nothing before the further
    one is under both markers); the counts are the larger of the two (exact for version bounds alone).
    """
    out = dict(value)
    below = max(int(live.get("hide_below", 0)), int(value.get("hide_below", 0)))
    if below:
        out["hide_below"] = below
    mine = [(int(c), int(u)) for c, u in value.get("hide_before", [])]
    kept = [[c, u] for c, u in live.get("hide_before", []) if not any(int(c) <= c2 and int(u) <= u2 for c2, u2 in mine)]
    if kept:
        out["hide_before"] = [*value.get("hide_before", []), *kept]
    skips = [s for s in (live.get("skip"), value.get("skip")) if s]
    if skips:
        out["skip"] = max(skips, key=lambda s: (int(s[0]), int(s[1])))
    for count in ("hidden", "first_visible"):
        if count in live or count in value:
            out[count] = max(int(live.get(count, 0)), int(value.get(count, 0)))
    return out


@dataclass(slots=True)
class Namespace:
    """Shared per (bootstrap servers, topic prefix) in this process."""

    slots: dict[str, Slot] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # live streams only
    incarnations: dict[str, int] = field(default_factory=dict)  # latest incarnation per stream id, deleted or not
    deleted: dict[str, str] = field(default_factory=dict)  # the topic named by each stream's latest delete record
    # topic -> when a call here first waited for another process's create record of it (Streams._await_create_record)
    awaited: dict[str, float] = field(default_factory=dict)
    meta_offset: int = 0
    meta_lock: SlotLock = field(default_factory=SlotLock)
    snaps: dict[str, dict[int, int]] = field(default_factory=dict)
    snap_offset: int = 0
    snap_lock: SlotLock = field(default_factory=SlotLock)
    guard: threading.Lock = field(default_factory=threading.Lock)
    # topic -> the id the cluster gave it when this process read it (a read finding another: created again)
    topic_ids: dict[str, Any] = field(default_factory=dict)

    def apply_meta(self, stream_id: str, value: dict[str, Any] | None) -> None:
        """Apply one record of the metadata topic, in topic order (the same rule in every process).

        ``op`` ``create`` starts incarnation ``inc``: the FIRST create of an incarnation wins (two
        processes that raced on creating the same incarnation's topic may both write one; both name
        the same topic); ``update`` changes the attributes and retention markers of the incarnation it
        names (``inc`` and ``topic``) only while that one is live, so a marker computed for an
        incarnation deleted (and created again) before it landed hides nothing, and one above every
        incarnation seen starts it (compaction keeps a stream's last record only); ``delete`` ends it (the
        incarnation count is kept, so the next creation takes ``inc + 1``). Records of older versions
        (no ``op``, random topic names) replace the entry; ``None`` is their tombstone.
        """
        current = self.incarnations.get(stream_id, -1)
        if value is None:
            self.meta.pop(stream_id, None)
            return
        op = value.get("op")
        inc = int(value.get("inc", 0))
        if op == "create":
            if inc > current:
                self.meta[stream_id] = value
                self.incarnations[stream_id] = inc
        elif op == "delete":
            if inc >= current:
                self.meta.pop(stream_id, None)
                self.incarnations[stream_id] = inc
                self.deleted[stream_id] = str(value.get("topic") or "")
        elif op == "update":
            live = self.meta.get(stream_id)
            if live is not None and int(live.get("inc", 0)) == inc and live.get("topic") == value.get("topic"):
                self.meta[stream_id] = merge_markers(live, value)
            elif inc > current:  # compaction kept the update alone: it carries the whole record, as a create
                self.meta[stream_id] = value
                self.incarnations[stream_id] = inc
        elif inc >= current:  # written by an older version of the provider
            self.meta[stream_id] = value
            self.incarnations[stream_id] = max(current, 0)

    def forget(self) -> None:
        """Forget the store as this process saw it: a topic of it was deleted and created again.

        Another process dropped the store and created it anew, or the broker lost its data, so every offset and
        version held here may name records the new topics do not have. The views are read anew from their
        topics' starts, and each stream's tail from its topic's; locks stay (their holders keep them).
        """
        with self.guard:
            for s in self.slots.values():
                s.reset(None)
            self.meta.clear()
            self.incarnations.clear()
            self.deleted.clear()
            self.awaited.clear()
            self.meta_offset = 0
            self.snaps.clear()
            self.snap_offset = 0
            self.topic_ids.clear()

    def slot(self, stream_id: str) -> Slot:
        """The stream's tail, created on first use."""
        s = self.slots.get(stream_id)
        if s is None:
            with self.guard:
                s = self.slots.setdefault(stream_id, Slot())
        return s


_NAMESPACES: dict[tuple[tuple[str, ...], str], Namespace] = {}
_NAMESPACES_GUARD = threading.Lock()


def namespace(servers: list[str], prefix: str, cluster_id: str | None = None) -> Namespace:
    """The state shared in this process by every provider on one cluster and prefix.

    Keyed by the cluster's id once connected (so ``localhost:9092`` and ``127.0.0.1:9092``, or two
    bootstrap lists of one cluster, share it: the in-process concurrency guarantee depends on that),
    by the bootstrap servers before.
    """
    key = (("cluster-id", cluster_id) if cluster_id else tuple(sorted(servers)), prefix)
    with _NAMESPACES_GUARD:
        return _NAMESPACES.setdefault(key, Namespace())
