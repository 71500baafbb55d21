"""Checks of the sync API under threads that every store runs the same way (core on SQLite, plugins on their server).

Each takes a connected :class:`~eventsource.sync.SyncEventSourcingManager` on the store under test; every wait is
bounded (a join with a timeout, then a check), and none asserts a time.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING

from eventsource.model import EventData

if TYPE_CHECKING:
    from eventsource.sync import SyncEventSourcingManager


def consumers_share_one_subscription(
    es: SyncEventSourcingManager, *, batches: int, consumers: int = 4, within: float = 30.0
) -> None:
    """Threads sharing one ``SyncSubscription`` each get distinct events, and together every event once.

    A pool of consumer threads on one subscription got ``IndexError: pop from an empty deque`` (two took the last
    buffered event) and an event twice (two read the next batch at once).

    :param es: a connected sync facade; the check appends ``batches`` batches of 100 events to stream ``"shared"``.
    :param within: seconds to wait for the events (and then for each thread to end).
    """
    total = batches * 100
    for k in range(batches):
        es.append_events_batch(stream_id="shared", events=[EventData("E", k * 100 + i) for i in range(100)])
    sub = es.subscribe(stream_id="shared", page_size=7, poll_interval=0.05).start()
    got: collections.Counter[int] = collections.Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def consume() -> None:
        try:
            for event in sub:
                with lock:
                    got[event.data] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the check below
            errors.append(e)

    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + within
    while sum(got.values()) < total and not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # (a duplicate would land now)
    sub.close()
    for t in threads:
        t.join(within)
        assert not t.is_alive(), "a consumer thread did not end when the subscription closed"
    assert errors == []
    assert sorted(got) == list(range(total))
    assert set(got.values()) == {1}, "an event went to more than one consumer"
