"""ListOffsets sent at once, with no pool thread: a look at topic ends costing one round trip.

:func:`end_offset_now` is the stale-incarnation check of appends (the request is sent before it
returns, on the loop's own connection once it is up, else through the producer's network thread,
so the broker answers it after that moment); :func:`end_offsets` asks for many topics in one
request per broker (bounded stats). Answers are ListOffsets LATEST, a lower bound of the log
end on Tansu (see :meth:`KafkaIO.end_offset <eventsource_kafka.client.KafkaIO.end_offset>`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from eventsource.errors import ProviderError, ProviderUnavailableError

from eventsource_kafka.client import resolve
from eventsource_kafka.errors import map_error

if TYPE_CHECKING:
    from eventsource_kafka.client import KafkaIO


async def end_offsets(io: KafkaIO, topics: list[str]) -> dict[str, int]:
    """:meth:`end_offset` of many topics, one ListOffsets request per broker on the producer's connection.

    A topic the producer holds no metadata of is asked of any broker (the one broker of Tansu; on a
    cluster, a broker that does not lead it answers an error). A topic answered with an error
    (deleted meanwhile, not led there) is absent from the answer: the caller reads it instead.
    """
    from kafka import TopicPartition

    cluster = io.producer._metadata  # noqa: SLF001
    known = [b.node_id for b in cluster.brokers()]
    by_node: dict[Any, list[str]] = {}
    for t in topics:
        node = cluster.leader_for_partition(TopicPartition(t, 0))
        if node is None or node == -1:  # not loaded in this process: ask any broker (a non-leader's error: absent)
            node = known[0] if known else None
        if node is not None:
            by_node.setdefault(node, []).append(t)
    out: dict[str, int] = {}
    for node, names in by_node.items():
        for i in range(0, len(names), 1000):
            try:
                out.update(await _list_offsets(io, names[i : i + 1000], node))
            except ProviderUnavailableError:  # the producer's connection is busy: those are read instead
                continue
    return out


def end_offset_now(io: KafkaIO, topic: str) -> asyncio.Future[int]:  # noqa: C901, PLR0915 - three paths, each falling back
    """:meth:`end_offset`, SENT before this returns, with no thread hop when it can be.

    On this event loop's own connection (:mod:`~eventsource_kafka.loopwire`) once it is up; else
    handed to the producer's network thread at once (pipelined with any produce sent after it). Its
    answer comes back on the loop, so the broker answers it at a moment after this call. Falls back
    to :meth:`end_offset` (sent later, so still after this call) when the producer does not know the
    partition's leader or its connection has as many requests in flight as it may, and to the
    producer's connection when the loop's connection is lost or its broker no longer leads the topic.
    """
    from kafka import TopicPartition

    from eventsource_kafka.loopwire import WireLostError, negotiated_versions

    loop = asyncio.get_running_loop()
    cluster = io.producer._metadata  # noqa: SLF001
    fut: asyncio.Future[int] = loop.create_future()

    def fall_back() -> None:
        if fut.done():
            return
        task = asyncio.ensure_future(io.end_offset(topic))

        def done(t: asyncio.Future[int]) -> None:
            if t.cancelled():
                fut.cancel()
            elif t.exception() is not None:
                resolve(fut, None, t.exception())
            elif t.result() < 0:  # Kafka's "no offset": no end at all (below every view, it would vouch for it)
                resolve(fut, None, ProviderError(f"Kafka answered no end offset of {topic}", operation="listing"))
            else:
                resolve(fut, t.result(), None)

        task.add_done_callback(done)

    def answered(ends: asyncio.Future[dict[str, int]]) -> None:
        if ends.cancelled():
            fut.cancel()
        elif isinstance(ends.exception(), ProviderUnavailableError):
            fall_back()
        elif ends.exception() is not None:
            resolve(fut, None, ends.exception())
        elif topic in ends.result():
            resolve(fut, ends.result()[topic], None)
        else:
            resolve(fut, None, ProviderError(f"Kafka does not know {topic}", operation="listing its end"))

    def via_producer() -> None:
        node = cluster.leader_for_partition(TopicPartition(topic, 0))
        if node is None or node == -1:
            fall_back()
        else:
            _list_offsets(io, [topic], node).add_done_callback(answered)

    def on_wire(asked: asyncio.Future[int]) -> None:
        if asked.cancelled():
            fut.cancel()
        elif isinstance(asked.exception(), WireLostError):
            try:
                via_producer()  # sent now, after the request the wire lost: still after this call
            except Exception as e:  # noqa: BLE001 - the provider is closing: handed to the waiting append
                resolve(fut, None, map_error(e, f"listing the end of {topic}"))
        else:
            resolve(fut, None if asked.exception() else asked.result(), asked.exception())

    wire = io.wires.get(cluster, negotiated_versions(io), topic)
    if wire is not None:
        wire.ask(topic).add_done_callback(on_wire)
    else:
        via_producer()
    return fut


def _list_offsets(io: KafkaIO, topics: list[str], node: Any) -> asyncio.Future[dict[str, int]]:
    """Send ListOffsets LATEST (partition 0 of each topic) to ``node`` now, through the producer's network thread.

    Topics answered with an error (or no offset) are absent; a busy connection (as many requests in flight as it
    may) fails with :class:`ProviderUnavailableError`.
    """
    from kafka.protocol.consumer import ListOffsetsRequest

    loop = asyncio.get_running_loop()
    part = ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition
    request = ListOffsetsRequest(
        isolation_level=0,
        topics=[(t, [part(partition_index=0, current_leader_epoch=-1, timestamp=-1)]) for t in topics],
        min_version=1,
    )
    fut: asyncio.Future[dict[str, int]] = loop.create_future()
    what = f"listing the end of {topics[0]}" + (f" and {len(topics) - 1} more topics" if len(topics) > 1 else "")

    def answered(resp: Any) -> None:
        try:
            # partition 0 only, with no error code and an offset (Kafka's -1 is "no offset", no end at all)
            out: Any = {
                t.name: int(p.offset)
                for t in resp.topics
                for p in t.partitions
                if not p.error_code and p.partition_index == 0 and p.offset >= 0
            }
            exc = None
        except Exception as e:  # noqa: BLE001 - handed to the awaiting task
            out, exc = None, map_error(e, what)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(resolve, fut, out, exc)

    def failed(e: BaseException) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(resolve, fut, None, map_error(e, what))

    manager = io.producer._sender._client._manager  # noqa: SLF001 - the producer's network thread
    try:
        sent = manager.call_soon(manager.send, request, node)
    except Exception as e:
        raise map_error(e, what) from e
    sent.add_callback(answered)
    sent.add_errback(failed)
    return fut
