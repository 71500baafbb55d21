"""Copies and imports into NATS (review of issue #15): a copy killed after an append; an event too large.

A stream the target lacks is created by the copy's first append, carrying its attributes. At an exact
expected version (0) the NATS store writes the events first and the stream's record after, without waiting:
a copy killed between the two left streams with no name and no metadata, which the re-run never restored
(verification found them, a copy without it reported success).
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, unique_store
from eventsource.errors import TransferFormatError
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import KILLED_COPY, manager_on, populate
from eventsource.transfer import copy_store, import_store, open_input
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_copy_killed_after_an_append_keeps_every_streams_attributes(
    machine_nats_url: str, tmp_path: Path
) -> None:
    source = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    settings = unique_store()
    target = NatsProvider(machine_nats_url, **settings)
    try:
        await populate(source, streams=20, events=600)
        src = source.get_default_provider()
        assert src.url is not None
        mapfile = str(tmp_path / "map.db")
        args = [sys.executable, "-c", KILLED_COPY, src.url, machine_nats_url, json.dumps(settings), mapfile]
        killed = await asyncio.to_thread(subprocess.run, [*args, "append", "7"], check=False)
        assert killed.returncode == -signal.SIGKILL
        await target.connect()
        assert 0 < len([r async for r in target.read_all()]) < 598
        result = await copy_store(src, target, position_map=mapfile, verify=True)
        assert result.verify is not None
        assert result.verify.ok, result.verify.differences
        named = await target.get_stream_info("s-0002")
        assert named is not None
        assert (named.name, named.metadata) == ("name 2", {"i": 2})
    finally:
        await dispose(target)
        await source.close()


async def test_an_import_with_an_event_too_large_for_nats_is_refused_before_writing(
    machine_nats_url: str, tmp_path: Path
) -> None:
    """The file passed its check; NATS refused the event at its append, after the events before it were written."""
    target = NatsProvider(machine_nats_url, **unique_store())
    try:
        await target.connect()
        limit = target.capabilities.max_event_size
        assert limit is not None
        head = {"kind": "header", "format": "eventsource-export", "version": 1, "source": None}
        ts = "2024-01-01T00:00:00+00:00"
        stream = {"kind": "stream", "stream_id": "s", "version": 2, "first_version": 1, "event_count": 2}
        stream |= {"metadata": {}, "created_at": ts, "updated_at": ts}
        small = base64.b64encode(b"{}").decode()
        large = base64.b64encode(b"x" * (limit + 1)).decode()
        events = [
            {"kind": "event", "event_id": f"e{v}", "stream_id": "s", "event_type": "T", "version": v, "position": v}
            | {"encoding": "json", "timestamp": ts, "data": data, "metadata": ""}
            for v, data in ((1, small), (2, large))
        ]
        end = {"kind": "end", "streams": 1, "events": 2, "snapshots": 0}
        path = tmp_path / "large.jsonl"
        path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in (head, stream, *events, end)))
        with open_input(str(path)) as data, pytest.raises(TransferFormatError, match=r"line 4: .*at most"):
            await import_store(data, target, name=str(path), position_map=tmp_path / "m.db", check_first=True)
        assert await target.get_stream_info("s") is None
    finally:
        await dispose(target)
