"""An error of the target during a copy names the stream and versions the copy was writing.

NATS refuses a message over the server's ``max_payload`` (1 MiB by default): a 2 MB event that SQLite holds
cannot be copied there, and the error has to say which one it is, not only how large it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, unique_store
from eventsource.errors import ValidationError
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.transfer import copy_store
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from pathlib import Path


def _event(data: bytes) -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", data, b"{}", "json", utcnow())


async def test_a_target_error_names_the_stream_and_versions_being_written(
    machine_nats_url: str, tmp_path: Path
) -> None:
    source = SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}")
    settings = unique_store()
    target = NatsProvider(machine_nats_url, **settings)
    try:
        await source.connect()
        await target.connect()
        await source.append("small", [_event(b"{}")], NO_STREAM)
        big = b'"' + os.urandom(1_000_000).hex().encode() + b'"'  # 2 MB: over NATS's max_payload
        await source.append("big-one", [_event(b"{}"), _event(big)], NO_STREAM)
        with pytest.raises(ValidationError) as caught:
            await copy_store(source, target, position_map=tmp_path / "map.db")
        message = str(caught.value)
        assert "'big-one'" in message, message
        assert "version 2" in message, message
        assert "max_payload" in message, message  # the store's own reason stays

        cfg = tmp_path / "stores.json"
        cfg.write_text(json.dumps({"providers": {"dst": {"url": machine_nats_url, "settings": settings}}}))
        argv = ["copy", "--config", str(cfg), "--from", source.url or "", "--to", "dst", "--map", str(tmp_path / "m")]
        cli = [sys.executable, "-m", "eventsource.cli", *argv]
        run = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, check=False, timeout=120)
        assert run.returncode == 2, run.stderr  # a ValidationError's exit code, as before
        assert "'big-one'" in run.stderr, run.stderr
        assert "version 2" in run.stderr, run.stderr
    finally:
        await dispose(target)
        await source.close()
