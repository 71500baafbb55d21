"""SQLite ``busy_timeout``: SQLite takes the wait in milliseconds as a C int; a longer wait wrapped around (review).

``busy_timeout=3e6`` (about 35 days: "wait as long as it takes") left the connection with no busy handler at
all, so any other writer on the file made appends fail at once with ``ProviderTimeoutError``. It is refused
now, naming the field, as every other bad setting is.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError
from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.sqlite.settings import MAX_BUSY_TIMEOUT

if TYPE_CHECKING:
    from pathlib import Path


def new() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", datetime(2022, 1, 1, tzinfo=UTC))


def test_a_busy_timeout_sqlite_cannot_take_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        SqliteProvider("sqlite:///x.db", busy_timeout=3e6)
    assert info.value.details["field"] == "busy_timeout"


async def test_the_longest_busy_timeout_accepted_still_waits_for_another_writer(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/b.db", busy_timeout=MAX_BUSY_TIMEOUT)
    await p.connect()
    try:
        await p.append("s", [new()], -1)
        other = sqlite3.connect(tmp_path / "b.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Event()
        threading.Thread(target=lambda: (release.wait(), other.execute("ROLLBACK"))).start()
        append = asyncio.ensure_future(p.append("s", [new()], 1))
        await asyncio.sleep(0.3)
        assert not append.done()  # waiting for the other writer, not refused at once
        release.set()
        assert (await append).first_version == 2
    finally:
        await p.close()
