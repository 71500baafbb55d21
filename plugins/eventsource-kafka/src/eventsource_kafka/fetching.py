"""The blocking read loop a pooled consumer runs in the provider's thread pool (:meth:`KafkaIO.read_page`).

Every wait in it is bounded: one ``poll`` waits at most :data:`POLL_MS`, so the loop re-checks, at each
turn, whether its caller gave up (``stop``: a cancelled read, a closed provider) and how long it made no
progress; a topic that stays silent is looked up in fresh metadata, never in the consumer's cache. More in
docs/internals/kafka.md ("Reads that stop").
"""

from __future__ import annotations

import gc
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading

FETCH_BYTES = 256 * 1024
"""What one fetch response may hold (per partition and in all): a page of a scan."""
COLLECT_AFTER_BYTES = 128 * 1024
STALL_S = 1.0
"""A read that got no record for this long looks the topic up (deleted meanwhile?)."""
SEEK_WAIT_MS = 200
"""Fetch max wait once a fetch below the end came back empty (see :func:`read_loop`)."""
POLL_MS = 2
"""How long one ``poll`` may wait for a fetch response before the read loop re-checks its state."""
METADATA_WAIT_MS = 5000
"""The longest one look-up of a silent topic in fresh metadata may wait (bounded by the read's deadline too)."""


class TopicGoneError(Exception):
    """The topic disappeared while it was being read (deleted by another instance)."""


class TopicRecreatedError(Exception):
    """The topic was deleted and created again since this process read it (another id: a new log)."""


class ReadStoppedError(Exception):
    """The read was stopped from outside (its caller was cancelled, or the provider closed)."""


def read_sync(  # noqa: PLR0917 - positional: it is submitted to the thread pool
    consumer: Any,
    topic: str,
    start: int,
    max_records: int | None,
    stop: int | None,
    timeout: float,
    one_fetch: bool,
    halt: threading.Event,
    ids: dict[str, Any],
) -> tuple[list[Any], int, bool, int | None]:
    """Records of ``topic`` from ``start`` (see :meth:`KafkaIO.read_page`); ``halt`` set: :class:`ReadStoppedError`.

    ``ids``: topic -> the id this process read it under (recorded here after a read); a read that stalls and
    finds another id raises :class:`TopicRecreatedError`.
    """
    from kafka import TopicPartition

    tp = TopicPartition(topic, 0)
    consumer._eventsource_topic = topic  # noqa: SLF001 - pool affinity
    subscription = consumer._subscription  # noqa: SLF001 - see below
    if (
        subscription.assigned_partitions() != {tp}
        or subscription.assignment[tp].position is None
        or (subscription.assignment[tp].position.offset != start)
    ):
        consumer.assign([tp])
        consumer.seek(tp, start)
    # else: the consumer stopped exactly here in an earlier read (the next page of a scan): keep the
    # records it already fetched instead of discarding them with a seek.
    # A fetch sent before this read (a poll that timed out while its fetch was in flight) can still
    # answer for this position with an older high watermark: if one may be pending, the end found
    # is checked once against ListOffsets (a lower bound of the true end, even on Tansu).
    fetcher = consumer._fetcher  # noqa: SLF001
    suspect = bool(
        fetcher.in_flight_fetches() or fetcher._completed_fetches or fetcher._paused_completed_fetches  # noqa: SLF001
    )
    consumer.resume(tp)
    try:
        out = read_loop(
            consumer,
            tp,
            subscription.assignment[tp],
            start,
            max_records,
            stop,
            timeout,
            one_fetch,
            suspect=suspect,
            halt=halt,
            ids=ids,
        )
    finally:
        consumer.pause(tp)
    seen = consumer._cluster._topic_ids.get(topic)  # noqa: SLF001 - the id its metadata gave the topic
    if seen is not None:
        ids.setdefault(topic, seen)
    if max((len(r.value or b"") for r in out[0]), default=0) >= COLLECT_AFTER_BYTES:
        # kafka-python leaves each fetch response in reference cycles (through the tracebacks of the
        # timeouts it raises and catches while waiting), so a response is freed only by the cyclic
        # collector; after a page holding a large record, collect the young generations now so a
        # scan of big records holds O(page) memory rather than whatever the thresholds allow.
        gc.collect(1)
    return out


def topic_known(consumer: Any, topic: str, wait_ms: int) -> bool:
    """Whether the cluster still has ``topic``, asked in a metadata request sent now (waiting at most ``wait_ms``).

    Not from the consumer's cached metadata: that still holds a topic deleted since it was assigned (it is
    refreshed only every ``metadata_max_age_ms``, 5 minutes, or after a fetch error, and Tansu answers a
    fetch of a deleted topic with no error and no records), so a read of a deleted topic from the offset it
    had reached went on until its ``request_timeout``, and a subscription polling it read it again after
    every wait. No answer within ``wait_ms`` (a broker that does not answer): known, as far as it can tell.
    """
    from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

    cluster = consumer._cluster  # noqa: SLF001 - the consumer's own metadata (the assigned topic's)
    try:
        consumer._net.run(consumer._manager.wait_for, cluster.request_update(), wait_ms)  # noqa: SLF001
    except UnknownTopicOrPartitionError:  # the update fails naming the topic the answer lacks
        return False
    except KafkaTimeoutError:
        return True
    return bool(cluster.partitions_for_topic(topic))


def _still_there(consumer: Any, topic: str, left: float, ids: dict[str, Any]) -> None:
    """Raise if the topic went: fresh metadata (waited for at most ``left`` seconds) lacks it, or gives it another id.

    :class:`TopicGoneError`, or :class:`TopicRecreatedError` for an id other than ``ids`` holds: a read from an
    offset the old log had reached waits on a new, shorter one (Tansu answers it with nothing, and no end).
    """
    if not topic_known(consumer, topic, max(1, min(METADATA_WAIT_MS, int(left * 1000)))):
        raise TopicGoneError(topic)
    now, then = consumer._cluster._topic_ids.get(topic), ids.get(topic)  # noqa: SLF001
    if now is not None and then is not None and now != then:
        raise TopicRecreatedError(topic)


def read_loop(  # noqa: PLR0917, C901, PLR0912 - the fetch loop and its broker quirks, read top to bottom
    consumer: Any,
    tp: Any,
    state: Any,
    start: int,
    max_records: int | None,
    stop: int | None,
    timeout: float,
    one_fetch: bool,
    *,
    suspect: bool,
    halt: threading.Event,
    ids: dict[str, Any],
) -> tuple[list[Any], int, bool, int | None]:
    """The fetch loop of :func:`read_sync`: records, the next offset, whether the end was reached, and that end."""
    from kafka.errors import KafkaTimeoutError

    topic = tp.topic
    # a high watermark from an earlier read may be stale: wait for a fresh one
    state.highwater = None
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    stalled_check = time.monotonic() + STALL_S
    pos = start
    # The end this read stops at: the high watermark of the first fresh fetch response (or ``stop``
    # if lower). Taken once: a writer appending all the while moves the high watermark on every
    # fetch, and a read that chased it would never end.
    end = stop
    ended = False
    fetch_config = consumer._fetcher.config  # noqa: SLF001 - the wait of the NEXT fetch request, set per read
    fetch_config["fetch_max_wait_ms"] = 1
    while True:
        if halt.is_set():  # its caller gave up (cancelled, or the provider closed): free the thread now
            raise ReadStoppedError(topic)
        if not ended:
            hw = state.highwater
            if hw is not None and hw < max(start, stop or 0):
                # below what this read knows the log holds (its start, or a stop the caller saw
                # written): not this log's end (Tansu was seen answering an empty fetch with 0)
                state.highwater = hw = None
            if hw is not None:
                if suspect and hw <= pos and int(consumer.end_offsets([tp])[tp]) > pos:
                    state.highwater = None  # that watermark predates newer writes: fetch again
                else:
                    end = hw if stop is None else min(stop, hw)
                    ended = True
                suspect = False
        if end is not None and (ended or stop is not None) and pos >= end:
            return [r for r in out if r.offset < end], end, True, end
        if (max_records is not None and len(out) >= max_records) or (one_fetch and out):
            return out, pos if end is None else min(pos, end), False, end
        now = time.monotonic()
        if now > deadline:
            msg = f"reading {topic} from offset {start} made no progress within {timeout}s"
            raise KafkaTimeoutError(msg)
        if now > stalled_check:
            # no answer for a while: a topic deleted meanwhile (by another instance) reads as empty
            _still_there(consumer, topic, deadline - now, ids)
            stalled_check = time.monotonic() + STALL_S
        want = None if max_records is None else max_records - len(out)
        got = consumer.poll(timeout_ms=POLL_MS, max_records=want) if want else consumer.poll(timeout_ms=POLL_MS)
        recs = got.get(tp)
        if not recs and end is not None and pos < end:
            # Tansu answers a fetch below the end with NO records when it cannot find them within the
            # fetch's max wait (past ~1,400 records per partition, measured: many offsets come back empty
            # at 1 ms, none at 100 ms); there are records there, so give the broker time to find them
            fetch_config["fetch_max_wait_ms"] = SEEK_WAIT_MS
        if recs:
            if end is not None and recs[-1].offset >= end:
                recs = [r for r in recs if r.offset < end]
            out.extend(recs)
            pos = recs[-1].offset + 1
            deadline = time.monotonic() + timeout
            stalled_check = time.monotonic() + STALL_S
        p = consumer.position(tp)
        pos = max(pos, p if p is not None else pos)
