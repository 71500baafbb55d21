"""A copy into NATS killed right after an append, then run again (review of issue #15).

A stream the target lacks is created by the copy's first append, carrying its attributes. At an exact
expected version (0) the NATS store writes the events first and the stream's record after, without waiting:
a copy killed between the two left streams with no name and no metadata, which the re-run never restored
(verification found them, a copy without it reported success).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from conftest import dispose, unique_store
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import KILLED_COPY, manager_on, populate
from eventsource.transfer import copy_store
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
