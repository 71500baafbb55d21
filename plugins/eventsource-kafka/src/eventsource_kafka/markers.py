"""Retention markers as readers see them: which events a stream's markers hide, and where a read starts.

``truncate_stream`` and ``delete_events_before`` never delete records (records deletion crashes
Tansu); they write markers into the stream's metadata record (:mod:`~eventsource_kafka.retention`).
Every read, the tails included, applies them through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.timestamps import to_us

if TYPE_CHECKING:
    from eventsource.model import RecordedEvent


class Visibility:
    """Which events a stream's retention markers hide."""

    __slots__ = ("before", "below")

    def __init__(self, meta: dict[str, Any]) -> None:
        self.below: int = meta.get("hide_below", 0)
        self.before: list[tuple[int, int]] = [(int(c), int(u)) for c, u in meta.get("hide_before", [])]

    def visible(self, ev: RecordedEvent) -> bool:
        """Whether no marker hides ``ev``."""
        if ev.version < self.below:
            return False
        if self.before:
            ts = to_us(ev.timestamp)
            return not any(ev.version <= upto and ts < cut for cut, upto in self.before)
        return True

    def shows(self, version: int, ts_us: int) -> bool:
        """Whether no marker hides the event at ``version`` stamped ``ts_us`` (:meth:`visible` without the event)."""
        if version < self.below:
            return False
        return not any(version <= upto and ts_us < cut for cut, upto in self.before)

    @property
    def trivial(self) -> bool:
        """Whether the markers hide nothing (reads then skip the check)."""
        return self.below <= 1 and not self.before


def start(meta: dict[str, Any]) -> tuple[int, int]:
    """Where a read of the stream may start: (offset, version before it).

    A ``truncate_stream`` marker records the record holding the first version it leaves visible and
    the version before it, so reads skip the hidden records instead of fetching them (on Tansu, past
    ~1,500 records a fetch answers one record, so every skipped record is a round trip saved); the
    rule of :func:`records.accepts` resumes exactly there.
    """
    skip = meta.get("skip")
    return (int(skip[0]), int(skip[1])) if skip else (0, 0)
