"""Review of the shared stale-incarnation check (issue #11): one provider instance used from two event loops.

Each thread runs its own loop and appends to its own streams through the SAME provider; the checks
the appends share are numbered per provider, so a check (or the one queued after it) of one loop must
never be handed to an append running on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import uuid
from pathlib import Path

from eventsource.model import ANY, NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider

from .conftest import drop_namespace


def ev() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())


async def test_appends_from_two_event_loops_on_one_provider_share_no_futures_across_loops(kafka_url: str) -> None:
    p = KafkaProvider(kafka_url, topic_prefix=f"v{uuid.uuid4().hex[:12]}", request_timeout=10.0)
    await p.connect()
    errors: list[BaseException] = []
    acked: dict[str, list[str]] = {}
    try:
        for k in range(2):  # streams exist and their tails are loaded: every append below runs a check
            for j in range(4):
                await p.append(f"t{k}-{j}", [ev()], ANY)

        async def writer(k: int) -> None:
            async def one(sid: str) -> None:
                for _ in range(40):
                    e = ev()
                    try:
                        await p.append(sid, [e], ANY)
                    except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                        errors.append(exc)
                    else:
                        acked.setdefault(sid, []).append(e.event_id)

            await asyncio.gather(*(one(f"t{k}-{j}") for j in range(4)))

        threads = [threading.Thread(target=asyncio.run, args=(writer(k),)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join)
        assert [f"{type(e).__name__}: {e}" for e in errors] == []
        for sid, got in acked.items():
            read = {e.event_id async for page in p.read_stream_pages(sid) for e in page}
            assert set(got) <= read

        # each loop had its own check connection, which holds its loop: once those loops are closed, the
        # next loop to open one drops their entries (a provider outliving many loops keeps no socket each)
        both = (p._conn.io.wires, p._conn.io.produce_wires)  # check connections, produce connections
        assert all(len(wires._by_loop) >= 2 for wires in both)
        left: list[object] = []

        async def third() -> None:
            for _ in range(20):
                await p.append("t0-0", [ev()], ANY)
            left.extend(lp for wires in both for lp in wires._by_loop if lp.is_closed())

        t = threading.Thread(target=asyncio.run, args=(third(),))
        t.start()
        await asyncio.to_thread(t.join)
        assert left == []
    finally:
        await drop_namespace(p)
        await p.close()


def _socket_inodes() -> set[int]:
    """The inodes of the sockets this process holds open (``/proc/self/fd``)."""
    out = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            link = str(fd.readlink())
            if link.startswith("socket:["):
                out.add(int(link[len("socket:[") : -1]))
    return out


async def test_the_check_connection_of_a_loop_closed_before_the_provider_is_closed_not_left_to_the_collector(
    kafka_url: str,
) -> None:
    """A loop ends (``asyncio.run`` in a thread) while the provider lives on: its check connection's socket
    is closed when the next loop opens one, and at the provider's close, not whenever the cyclic garbage
    collector runs (the wire and its transport reference each other). The collector is off here so
    that only the provider can close it."""
    p = KafkaProvider(kafka_url, topic_prefix=f"v{uuid.uuid4().hex[:12]}", request_timeout=10.0)
    await p.connect()
    gc.disable()
    try:
        wires = p._conn.io.wires

        async def appends(sid: str, into: list[int]) -> None:
            await p.append(sid, [ev()], ANY)
            for _ in range(500):
                await p.append(sid, [ev()], ANY)
                loop = asyncio.get_running_loop()
                w, pw = wires.current(loop), p._conn.io.produce_wires.current(loop)
                if w is not None and pw is not None:  # the check connection and the produce connection
                    for x in (w, pw):
                        assert x.transport is not None
                        into.append(os.fstat(x.transport.get_extra_info("socket").fileno()).st_ino)
                    return
            msg = "no check connection came up"
            raise AssertionError(msg)

        def in_a_thread(sid: str) -> set[int]:
            got: list[int] = []
            t = threading.Thread(target=asyncio.run, args=(appends(sid, got),))
            t.start()
            t.join()
            assert len(got) == 2  # its check and its produce connections
            return set(got)

        first = await asyncio.to_thread(in_a_thread, "a")
        assert first <= _socket_inodes()  # its loop is closed; nothing closed the sockets yet
        second = await asyncio.to_thread(in_a_thread, "b")  # the next loop to open connections of its own
        assert not first & _socket_inodes()
        await p.close()
        assert not second & _socket_inodes()
    finally:
        gc.enable()
        await p.close()
        q = KafkaProvider(kafka_url, topic_prefix=p._conn.prefix, request_timeout=10.0)
        await q.connect()
        await drop_namespace(q)
        await q.close()
