"""Produces on the loop's own connection, attacked behind the TCP proxy of ``test_loopwire_proxy`` on real Tansu.

Several produces in flight on one connection when it is cut, an append cancelled while its produce is in
flight (later answers must go to later requests; its produce still counts against the connection's cap until
answered), the connection's request timer, and the provider closed with produces in flight. Each time every
append is acknowledged (at once or on the caller's retry with the same events) and every stream holds each
event exactly once, at consecutive versions. Then what a lost or ambiguous answer does to the callers of
produce: error codes Kafka may answer after storing the record, a new stream's create record, a stream's
delete record.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import ANY, NewEvent, utcnow
from eventsource_kafka.loopwire import MAX_IN_FLIGHT

from .conftest import drop_namespace
from .test_loopwire_proxy import _produce_wire_up, proxied  # noqa: F401 - the module's broker behind the proxy

if TYPE_CHECKING:
    from eventsource_kafka import KafkaProvider

    from .test_loopwire_proxy import Proxy

RETRYABLE = (ProviderUnavailableError, ProviderTimeoutError)


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())


async def _providers(url: str, **settings: Any) -> tuple[KafkaProvider, KafkaProvider]:
    from eventsource_kafka import KafkaProvider

    args = {"url": url, "topic_prefix": f"w{uuid.uuid4().hex[:12]}", "request_timeout": 10.0, **settings}
    writer, reader = KafkaProvider(**args), KafkaProvider(**args)
    await writer.connect()
    await reader.connect()
    return writer, reader


async def _forwarded(proxy: Proxy, n: int) -> None:
    """Wait until the proxy forwarded ``n`` Produce requests of the loop's produce connections in all."""
    for _ in range(3000):
        if proxy.produce_requests >= n:
            return
        await asyncio.sleep(0.005)
    msg = f"the proxy forwarded {proxy.produce_requests} produces, not {n}"
    raise AssertionError(msg)


async def _exactly_once(reader: KafkaProvider, stream: str, ids: list[str]) -> None:
    read = [e async for e in reader.read_stream(stream)]
    assert [e.event_id for e in read] == ids
    assert [e.version for e in read] == list(range(1, len(ids) + 1))


async def _settle(p: KafkaProvider, stream: str, e: NewEvent, version: int) -> None:
    """The caller's retry, with the same event, until it is acknowledged at ``version``."""
    for _ in range(20):
        try:
            r = await p.append(stream, [e], version - 1)
        except RETRYABLE:
            await asyncio.sleep(0.05)
            continue
        assert (r.first_version, r.event_ids) == (version, (e.event_id,))
        return
    msg = f"the retry of {e.event_id} in {stream} was never acknowledged"
    raise AssertionError(msg)


async def test_a_connection_cut_with_many_produces_in_flight_fails_each_as_unknown_and_retries_store_once(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """Twelve appends to twelve streams at once: five produces are in flight on the loop's produce connection
    (they reached the broker, no answer yet) when it is cut, the others went the producer's way (a broker
    takes one request of a connection at a time: no more wait there than kafka-python pipelines). Each fails
    retryable or is acknowledged, and the retries leave every stream with its events once each."""
    url, proxy = proxied
    writer, reader = await _providers(url)
    streams = [f"s{i}" for i in range(12)]
    try:
        firsts = {s: ev() for s in streams}
        for s in streams:
            await writer.append(s, [firsts[s]], 0)
        await _produce_wire_up(writer)
        seconds = {s: ev() for s in streams}
        proxy.produce_hold = True
        base = proxy.produce_requests
        tasks = {s: asyncio.ensure_future(writer.append(s, [seconds[s]], 1)) for s in streams}
        await _forwarded(proxy, base + MAX_IN_FLIGHT)
        done, _ = await asyncio.wait(tasks.values(), timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert done  # the others do not wait behind the held ones
        proxy.cut_produce_connections()
        outcomes = await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert proxy.produce_requests == base + MAX_IN_FLIGHT  # never more in flight on the connection
        proxy.release_produce()
        for o in outcomes:
            assert not isinstance(o, BaseException) or isinstance(o, RETRYABLE), repr(o)
        assert any(isinstance(o, BaseException) for o in outcomes)  # the cut connection's produces
        for s in streams:
            await _settle(writer, s, seconds[s], 2)
            third = ev()
            assert (await writer.append(s, [third], 2)).first_version == 3
            await _exactly_once(reader, s, [firsts[s].event_id, seconds[s].event_id, third.event_id])
    finally:
        proxy.release_produce()
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_an_append_cancelled_with_its_produce_in_flight_leaves_the_connection_answering_the_right_requests(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """An append is cancelled while its produce waits for its answer, a second append's produce is written
    behind it on the same connection, then both answers come: the second append gets its own answer (its own
    topic and offset), the connection stays in use, and the cancelled append's retry is answered once."""
    url, proxy = proxied
    writer, reader = await _providers(url)
    try:
        a1, b1 = ev(), ev()
        await writer.append("a", [a1], 0)
        await writer.append("b", [b1], 0)
        for _ in range(5):  # b's topic ahead of a's, so an answer crossed between them shows
            await writer.append("b", [ev()], ANY)
        await _produce_wire_up(writer)
        wire = writer._conn.io.produce_wires.current(asyncio.get_running_loop())
        assert wire is not None
        proxy.produce_hold = True
        base = proxy.produce_requests
        a2 = ev()
        cancelled = asyncio.ensure_future(writer.append("a", [a2], 1))
        await _forwarded(proxy, base + 1)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        b2 = ev()
        second = asyncio.ensure_future(writer.append("b", [b2], 6))
        await _forwarded(proxy, base + 2)
        proxy.release_produce()
        r = await second
        assert (r.first_version, r.duplicate) == (7, False)
        assert writer._conn.io.produce_wires.current(asyncio.get_running_loop()) is wire  # still trusted
        await _settle(writer, "a", a2, 2)
        await _exactly_once(reader, "a", [a1.event_id, a2.event_id])
        read_b = [e async for e in reader.read_stream("b")]
        assert [e.version for e in read_b] == list(range(1, 8))
        assert read_b[-1].event_id == b2.event_id
    finally:
        proxy.release_produce()
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_produces_of_cancelled_appends_count_against_the_connections_cap_until_answered(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """MAX_IN_FLIGHT appends are cancelled while their produces wait for their answers on the loop's produce
    connection: the produces are still on it (the broker answers them in turn), yet each cancellation took one
    off the connection's count, so the next produces were written behind them, past MAX_IN_FLIGHT (and waited
    behind them). The count is of produces written and unanswered: the next appends go the producer's way until
    the answers come, and those answers (to nobody) bring the count back to zero, the connection still in use."""
    url, proxy = proxied
    writer, reader = await _providers(url, request_timeout=30.0)  # the wire's timer far from the held answers
    cancelled = [f"x{i}" for i in range(MAX_IN_FLIGHT)]
    later = [f"y{i}" for i in range(MAX_IN_FLIGHT)]
    try:
        firsts = {s: ev() for s in [*cancelled, *later]}
        for s, e in firsts.items():
            await writer.append(s, [e], 0)
        await _produce_wire_up(writer)
        loop = asyncio.get_running_loop()
        wire = writer._conn.io.produce_wires.current(loop)
        assert wire is not None
        assert wire.producing == 0
        proxy.produce_hold = True
        base = proxy.produce_requests
        seconds = {s: ev() for s in cancelled}
        tasks = [asyncio.ensure_future(writer.append(s, [seconds[s]], 1)) for s in cancelled]
        await _forwarded(proxy, base + MAX_IN_FLIGHT)
        for t in tasks:
            t.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
        assert wire.producing == MAX_IN_FLIGHT  # written, their answers held back: still in flight
        thirds = {s: ev() for s in later}
        results = await asyncio.gather(*(writer.append(s, [thirds[s]], 1) for s in later))
        assert [r.first_version for r in results] == [2] * MAX_IN_FLIGHT
        assert proxy.produce_requests == base + MAX_IN_FLIGHT  # never more in flight on the connection
        proxy.release_produce()
        for _ in range(3000):
            if wire.producing == 0:
                break
            await asyncio.sleep(0.005)
        assert wire.producing == 0  # every answer came, each to a request nobody waits for
        assert writer._conn.io.produce_wires.current(loop) is wire  # still trusted
        for s in cancelled:
            await _settle(writer, s, seconds[s], 2)
            await _exactly_once(reader, s, [firsts[s].event_id, seconds[s].event_id])
        for s in later:
            await _exactly_once(reader, s, [firsts[s].event_id, thirds[s].event_id])
    finally:
        proxy.release_produce()
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_a_produce_whose_answer_outlasts_the_request_timeout_is_retried_once(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """The broker stores the record, its answer is held past the request timeout: the append fails with a
    retryable error (the wire's timer), and the retry is answered from the stream, which takes the next
    append at the next version."""
    url, proxy = proxied
    writer, reader = await _providers(url, request_timeout=2.0)
    try:
        first = ev()
        await writer.append("s", [first], 0)
        await _produce_wire_up(writer)
        proxy.produce_hold = True
        base = proxy.produce_requests
        e = ev()
        task = asyncio.ensure_future(writer.append("s", [e], 1))
        await _forwarded(proxy, base + 1)
        outcome = await asyncio.gather(task, return_exceptions=True)
        proxy.release_produce()
        assert isinstance(outcome[0], RETRYABLE), repr(outcome[0])
        await _settle(writer, "s", e, 2)
        nxt = ev()
        assert (await writer.append("s", [nxt], 2)).first_version == 3
        await _exactly_once(reader, "s", [first.event_id, e.event_id, nxt.event_id])
    finally:
        proxy.release_produce()
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_closing_the_provider_with_produces_in_flight_fails_them_retryable_and_loses_nothing(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """The provider is closed while appends wait for their produces' answers on the loop's produce connection:
    each append fails retryable (or is acknowledged); a new provider's retries with the same events store each
    once."""
    url, proxy = proxied
    writer, reader = await _providers(url)
    streams = [f"c{i}" for i in range(4)]
    try:
        firsts = {s: ev() for s in streams}
        for s in streams:
            await writer.append(s, [firsts[s]], 0)
        await _produce_wire_up(writer)
        proxy.produce_hold = True
        base = proxy.produce_requests
        seconds = {s: ev() for s in streams}
        tasks = [asyncio.ensure_future(writer.append(s, [seconds[s]], 1)) for s in streams]
        await _forwarded(proxy, base + len(streams))
        await writer.close()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        proxy.release_produce()
        for o in outcomes:
            assert not isinstance(o, BaseException) or isinstance(o, RETRYABLE), repr(o)
        await writer.connect()
        for s in streams:
            await _settle(writer, s, seconds[s], 2)
            await _exactly_once(reader, s, [firsts[s].event_id, seconds[s].event_id])
    finally:
        proxy.release_produce()
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


@pytest.mark.parametrize("code", [6, 3])  # NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION
async def test_an_error_kafka_may_answer_after_storing_the_record_never_makes_a_first_append_a_duplicate(
    proxied: tuple[str, Proxy],  # noqa: F811
    code: int,
) -> None:
    """Kafka answers an acks=all produce with NOT_LEADER_OR_FOLLOWER (or UNKNOWN_TOPIC_OR_PARTITION) when the
    partition's leadership moves (or it leaves the broker) while the produce waits for its replicas: the
    record is then in the log, and may stay there. The proxy answers so after Tansu stored the record.

    Sent again, the record is stored twice: the second copy loses to the first, and the append, finding its
    own events already in the stream, answered ``duplicate=True`` to its one and only call (a caller that
    acts on new events only skipped them). The append must be acknowledged as new, or fail retryable (its
    outcome unknown) and then be answered as a retry; the stream holds the event once either way."""
    from .test_loopwire_proxy import _rewrite_produce

    url, proxy = proxied
    writer, reader = await _providers(url)
    try:
        first = ev()
        await writer.append("s", [first], 0)
        await _produce_wire_up(writer)
        await writer.append("s", [ev()], 1)
        before = proxy.produce_tampered
        proxy.produce_tamper = _rewrite_produce(proxy.produce_version, error=code)
        e = ev()
        try:
            r = await writer.append("s", [e], 2)
        except RETRYABLE:
            r = None
        assert proxy.produce_tampered == before + 1
        if r is not None:
            assert (r.first_version, r.duplicate) == (3, False)
        await _settle(writer, "s", e, 3)
        read = [x async for x in reader.read_stream("s")]
        assert [x.version for x in read] == [1, 2, 3]
        assert read[2].event_id == e.event_id
    finally:
        proxy.produce_tamper = None
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_a_lost_answer_to_a_new_streams_create_record_does_not_strand_the_stream(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """The first append to a new stream creates its topic, then produces its create record; that produce is cut
    on the loop's connection (it never reaches the broker), so the append fails retryable. Every retry then
    found the topic made and no create record, and waited ``request_timeout`` for another process to write one
    (the one that made the topic was this very append). Through the manager, whose call timeout is the same as
    the provider's request timeout by default, each attempt was cut off first: the stream could never be
    created. The caller's retries of the same event must create it, with the event at version 1."""
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost

    url, proxy = proxied
    writer, reader = await _providers(url, request_timeout=3.0)
    m = EventSourcingManager(
        {"providers": {}, "default_provider": None, "timeout": 3.0, "retry_attempts": 2},
        host=PluginHost(load_entrypoints=False),
    )
    await m.register_provider(writer, name="k", default=True)
    try:
        await _produce_wire_up(writer)
        before = proxy.produce_tampered
        proxy.produce_cut_next_request = True
        event_id = str(uuid.uuid4())
        res = None
        for _ in range(3):  # the caller's retries of the same event
            try:
                res = await m.append_event(stream_id="new", event_type="E", data={}, event_id=event_id)
                break
            except RETRYABLE:
                continue
        assert proxy.produce_tampered == before + 1  # the create record's produce was the one cut
        assert res is not None, "the stream was never created"
        assert res.version == 1
        await _exactly_once(reader, "new", [event_id])
    finally:
        proxy.produce_cut_next_request = False
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_a_delete_whose_record_was_stored_but_its_answer_lost_still_deletes_the_topic(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """``delete_stream`` writes the delete record, then deletes the stream's topic. The delete record is stored
    and half of its answer comes before the loop's connection is cut: the delete fails retryable, and its retry
    finds the stream gone (``StreamNotFoundError``). The topic, with every event of the stream, was then never
    deleted: a stream deleted to erase its events kept them in the broker for good. After the caller's retry
    the topic must be gone."""
    from eventsource.errors import StreamNotFoundError

    url, proxy = proxied
    writer, reader = await _providers(url)
    try:
        await writer.append("d", [ev()], 0)
        await _produce_wire_up(writer)
        await writer.append("d", [ev()], 1)
        topic = (await writer._views.meta())["d"]["topic"]
        before = proxy.produce_tampered
        proxy.produce_half_next_answer = True
        for _ in range(3):  # the caller's retries
            try:
                await writer.delete_stream("d")
                break
            except RETRYABLE:
                continue
            except StreamNotFoundError:
                break
        assert proxy.produce_tampered == before + 1  # the delete record's answer was the one cut
        assert await reader.get_stream_info("d") is None
        topics = await writer.io.run("listing topics", writer.io.admin.list_topics)
        assert topic not in topics, "the deleted stream's topic (and its events) stayed in the broker"
    finally:
        proxy.produce_half_next_answer = False
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


async def test_a_call_after_close_is_a_retryable_unavailable_error_and_one_before_connect_a_configuration_error(
    proxied: tuple[str, Proxy],  # noqa: F811
) -> None:
    """An append racing ``close()`` (or made after it) met "not connected (call connect() first)", a
    ConfigurationError the manager never retries, as if the caller had misconfigured the store; a provider
    never connected still says so."""
    from eventsource.errors import ConfigurationError
    from eventsource_kafka import KafkaProvider

    url, _ = proxied
    writer, reader = await _providers(url)
    never = KafkaProvider(url=url, topic_prefix=f"w{uuid.uuid4().hex[:12]}")
    try:
        await writer.append("s", [ev()], 0)
        await writer.close()
        with pytest.raises(ProviderUnavailableError, match="closed"):
            await writer.append("s", [ev()], 1)
        with pytest.raises(ConfigurationError, match="connect"):
            await never.append("s", [ev()], 0)
        await writer.connect()  # connected again: usable again
        assert (await writer.append("s", [ev()], 1)).first_version == 2
    finally:
        await writer.close()
        await drop_namespace(reader)
        await reader.close()
