"""Copies into and out of PostgreSQL (attacker's review): what a re-run accepts, what verification reads.

The target is changed behind the copy's back by SQL, as an operator or another application could.
"""

from __future__ import annotations

import io
import random
import string
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ValidationError
from eventsource.model import EventData, NewEvent, NewStream, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import manager_on, populate
from eventsource.transfer import copy_store, export_store, verify_stores

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

FLIP = "UPDATE {table} SET data = set_byte(data, 3, get_byte(data, 3) # 1) WHERE stream_id = %s AND version = %s"
"""Flip one bit of one stored payload (the fourth byte)."""


async def test_verify_reads_the_target_back_and_sees_one_flipped_payload_bit(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    m = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    try:
        await populate(m, streams=5, events=100)
        source, target = m.get_default_provider(), await make_provider()
        await copy_store(source, target, position_map=str(tmp_path / "map.db"), verify=True)
        await admin.execute(FLIP.format(table=target.names.events), ("s-0003", 4))
        report = await verify_stores(source, target)
        assert report.differences == ["stream 's-0003': version 4: the data differs"]
    finally:
        await m.close()


async def test_a_rerun_refuses_a_target_snapshot_with_the_sources_id_and_other_bytes(
    make_provider: Callable[..., Any], admin: psycopg.AsyncConnection[Any], tmp_path: Path
) -> None:
    """Events held already are compared field by field; a snapshot held already was taken on its id alone."""
    m = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    try:
        await populate(m, streams=5, events=100)
        source, target = m.get_default_provider(), await make_provider()
        mapfile = str(tmp_path / "map.db")
        await copy_store(source, target, position_map=mapfile)
        snap = await source.get_snapshot("s-0000")
        assert snap is not None
        await admin.execute(FLIP.format(table=target.names.snapshots), ("s-0000", snap.version))
        with pytest.raises(ConcurrencyError, match=r"'s-0000'.*snapshot.*version \d+.*data"):
            await copy_store(source, target, position_map=mapfile)
    finally:
        await m.close()


@pytest.mark.parametrize("how", ["copy", "export"])
async def test_a_transfer_whose_read_is_held_back_by_a_running_transaction_does_not_end_as_done(
    how: str, make_provider: Callable[..., Any], url: str, tmp_path: Path
) -> None:
    """PostgreSQL's global read stops at the oldest running transaction, after ``visibility_wait`` seconds.

    Any transaction holding an xid, in any database of the cluster, holds back the events committed after it
    began. The copy ended there as if the source held nothing more, and said so: 'copied: ... events'; the
    export wrote a file whose stream line promised events it did not hold, which no import takes.
    """
    source = await make_provider(visibility_wait=0.5)
    m = await manager_on(source)
    target = SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}")
    blocker = await psycopg.AsyncConnection.connect(url)
    try:
        await populate(m, streams=5, events=40)
        await blocker.execute("SELECT pg_current_xact_id()")  # holds an xid, so the horizon, until rolled back
        for n in range(3):  # committed above the running transaction, so held back
            await m.append_events_batch(
                stream_id="late-0001", events=[EventData(event_type="T", data={"n": n, "k": k}) for k in range(2)]
            )
        await target.connect()
        with pytest.raises(ProviderTimeoutError, match=r"'late-0001' version 6.*transaction running.*run it again"):
            if how == "copy":
                await copy_store(source, target, position_map=str(tmp_path / "map.db"))
            else:
                await export_store(source, io.BytesIO())
        await blocker.rollback()
        result = await copy_store(source, target, position_map=str(tmp_path / "map.db"), verify=True)
        assert result.verify is not None
        assert result.verify.ok, result.verify.differences
    finally:
        await blocker.close()
        await target.close()
        await m.close()


@pytest.mark.parametrize("truncated", [False, True], ids=["empty", "truncated"])
async def test_a_stream_the_target_cannot_create_is_named(
    truncated: bool, make_provider: Callable[..., Any], tmp_path: Path
) -> None:
    """A stream id over PostgreSQL's index limit, which SQLite and NATS hold: its append named it, its creation not.

    A stream with no event to append (empty, or truncated: created before its placeholders) is created on its
    own, and the error said 'create_stream ... failed: the stream id is longer ...' of one stream among thousands.
    """
    source = SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}")
    await source.connect()
    try:
        long_id = "L" + "".join(random.choice(string.ascii_letters) for _ in range(4000))  # incompressible
        await source.create_stream(NewStream(long_id))
        if truncated:
            events = [NewEvent(str(uuid.uuid4()), "T", b"{}", b"", "json", utcnow()) for _ in range(3)]
            await source.append(long_id, events, 0)
            await source.truncate_stream(long_id, 3)
        target = await make_provider()
        with pytest.raises(ValidationError, match=rf"creating stream '{long_id}' on the target: .*index"):
            await copy_store(source, target, position_map=str(tmp_path / "map.db"))
    finally:
        await source.close()


async def test_a_stream_truncated_to_nothing_keeps_the_sources_stream_info_on_a_postgresql_target(
    make_provider: Callable[..., Any], tmp_path: Path
) -> None:
    """The placeholders filling its versions were stamped 1970-01-01: the copy read back ``updated_at`` 1970 and a
    placeholder's id as ``last_event_id``. The top placeholder carries the source's last event id and time now."""
    m = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    try:
        await populate(m, streams=2, events=20)
        source, target = m.get_default_provider(), await make_provider()
        info = await source.get_stream_info("s-0001")
        assert info is not None
        await source.truncate_stream("s-0001", info.version + 1)
        emptied = await source.get_stream_info("s-0001")
        assert emptied is not None
        await copy_store(source, target, position_map=str(tmp_path / "map.db"), verify=True)
        copied = await target.get_stream_info("s-0001")
        assert copied is not None
        assert (copied.version, copied.event_count, copied.first_version) == (emptied.version, 0, None)
        assert (copied.updated_at, copied.last_event_id) == (emptied.updated_at, emptied.last_event_id)
    finally:
        await m.close()
