"""Review of issue #11 (session 4): real processes whose view of a stream is stale, no lease.

Each test drives two provider processes (``op_worker.py``) against the real broker and checks what a
process started afterwards (fresh caches) reads: exactly what the writers were told they wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsource_kafka.provider import KafkaProvider

from .test_provider import drop_namespace

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


@pytest.fixture
async def two(kafka_url: str) -> Any:
    """Two provider processes on a fresh prefix, and a fresh in-test reader for afterwards."""
    args = {"url": kafka_url, "topic_prefix": f"v{uuid.uuid4().hex[:12]}", "request_timeout": 10.0}
    a, b = await Proc.start(args), await Proc.start(args)
    reader = KafkaProvider(**args)
    try:
        yield a, b, reader
    finally:
        await a.stop()
        await b.stop()
        await reader.connect()
        await drop_namespace(reader)
        await reader.close()


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def test_an_identical_retry_through_a_process_with_a_stale_tail_is_a_duplicate(two: Any) -> None:
    """A client's retry (reply lost) reaching another process whose tail predates the original."""
    a, b, reader = two
    assert "ok" in await a(op="append", stream="s", ids=ids(1), expected="NO_STREAM")
    assert (await b(op="info", stream="s"))["ok"]["version"] == 1  # b now knows version 1, and no more
    batch = ids(2)
    assert (await a(op="append", stream="s", ids=batch, expected=1))["ok"] == {"first": 2, "last": 3, "duplicate": False}
    retry = await b(op="append", stream="s", ids=batch, expected=1)
    assert retry.get("ok") == {"first": 2, "last": 3, "duplicate": True}, retry
    await reader.connect()
    assert [e.version async for e in reader.read_stream("s")] == [1, 2, 3]


async def test_a_batch_too_large_with_its_headers_is_refused_before_the_stream_is_created(kafka_url: str) -> None:
    """7,000 empty events: the value fits the limit, the record with one event-id header per event does not."""
    from eventsource.errors import ValidationError
    from eventsource.model import NO_STREAM, NewEvent, utcnow

    p = KafkaProvider(kafka_url, topic_prefix=f"v{uuid.uuid4().hex[:12]}", request_timeout=10.0)
    await p.connect()
    try:
        batch = [NewEvent(i, "E", b"", b"", "json", utcnow()) for i in ids(7000)]
        with pytest.raises(ValidationError):
            await p.append("many", batch, NO_STREAM)
        assert await p.get_stream_info("many") is None  # the store is unchanged
        assert (await p.list_streams(limit=10, offset=0))[1] == 0
        await p.append("kept", [NewEvent(str(uuid.uuid4()), "E", b"", b"", "json", utcnow())], NO_STREAM)
        with pytest.raises(ValidationError):
            await p.append("kept", batch, 1)
        info = await p.get_stream_info("kept")
        assert info is not None
        assert (info.version, info.event_count) == (1, 1)
        r = await p.append("kept", batch[:3000], 1)  # a batch that fits is still one record
        assert (r.first_version, r.last_version) == (2, 3001)
    finally:
        await drop_namespace(p)
        await p.close()


async def _acked_events_are_readable(reader: KafkaProvider, stream: str, acked: list[str]) -> None:
    await reader.connect()
    stored = [e.event_id async for e in reader.read_stream(stream)]
    for eid in acked:
        assert eid in stored, f"acknowledged event {eid} is not readable; the stream holds {stored}"
        assert await reader.get_event(eid) is not None


async def test_an_append_to_an_empty_stream_another_process_deleted_is_never_acknowledged_into_nothing(
    two: Any,
) -> None:
    """a created the stream (empty), b deleted it; a's view still names the deleted topic."""
    a, b, reader = two
    assert "ok" in await a(op="create", stream="gone")
    assert "ok" in await b(op="delete", stream="gone")
    late = ids(1)
    out = await a(op="append", stream="gone", ids=late, expected=0)
    await _acked_events_are_readable(reader, "gone", late if "ok" in out else [])


async def test_an_append_after_a_conflict_on_a_stream_another_process_deleted_is_never_acknowledged_into_nothing(
    two: Any,
) -> None:
    """a wrote version 1, b deleted the stream; a appends twice more with its stale view."""
    a, b, reader = two
    assert "ok" in await a(op="append", stream="gone", ids=ids(1), expected="NO_STREAM")
    assert "ok" in await b(op="delete", stream="gone")
    acked = []
    for _ in range(3):
        late = ids(1)
        out = await a(op="append", stream="gone", ids=late, expected=1)
        if "ok" in out:
            acked += late
    await _acked_events_are_readable(reader, "gone", acked)


async def test_a_process_that_saw_a_stream_missing_never_gives_it_a_second_topic(two: Any) -> None:
    """a looked at the stream before b created it; a's view then learnt of the creation elsewhere.

    a's append used to trust "does not exist" from its tail, create incarnation 2 beside the live
    incarnation 1, and so hide b's acknowledged events (found by a three-process random run).
    """
    a, b, reader = two
    assert (await a(op="info", stream="s")) == {"ok": None}
    first = ids(2)
    assert (await b(op="append", stream="s", ids=first, expected="NO_STREAM"))["ok"]["first"] == 1
    assert (await a(op="info", stream="other")) == {"ok": None}  # a's metadata view now holds b's creation
    second = ids(1)
    out = await a(op="append", stream="s", ids=second, expected="ANY")
    assert out.get("ok", {}).get("first") == 3, out
    await _acked_events_are_readable(reader, "s", first + second)
    from eventsource_kafka import naming

    topics = await reader.io.run("listing topics", reader.io.admin.list_topics)
    assert len([t for t in topics if f".{naming.stream_hash('s')}." in t]) == 1
