"""Stored records another tool wrote into a real SQLite file: a column holding a value of another type.

SQLite keeps whatever type a statement gives a column: ``UPDATE es_events SET data = '{"a": 1}'`` from the
``sqlite3`` shell stores text, not a blob. Every read of such a record (the manager's reads, a subscription, a
snapshot, export and copy) must fail with a typed error naming the event, never an ``AttributeError`` or
``OverflowError`` from deep inside, and the other events must read on.
"""

from __future__ import annotations

import base64
import io
import sqlite3
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import pytest
from eventsource import EventSourcingManager
from eventsource.domain.rewrite import rewrite_stream
from eventsource.errors import CodecError
from eventsource.model import ExpectedVersion, NewEvent, NewStream, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.subscriptions import EventDecodeError
from eventsource.transfer import copy_store, export_store

if TYPE_CHECKING:
    from pathlib import Path

KEY = base64.b64encode(b"k" * 32).decode()
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "sealed": {"encryption": True, "encryption_keys": {"k1": KEY}, "compression": "zlib", "compression_threshold": 0},
}

# (column, SQL value written over it): what a hand edit or another tool can leave in the column
EVENT_COLUMNS = [
    ("data", "'{\"a\": 1}'"),
    ("data", "7"),
    ("metadata", "'{}'"),
    ("metadata", "1.5"),
    ("encoding", "X'6a736f6e'"),
    ("timestamp", "'2024-01-01'"),
    ("timestamp", "X'00'"),
    ("timestamp", "9223372036854775807"),
    ("timestamp", "1e300"),
    ("version", "1.5"),
    ("event_id", "X'41'"),
    ("event_type", "X'54'"),
    ("tenant_id", "X'74'"),
]


async def _store(tmp_path: Path, config: str) -> tuple[EventSourcingManager, str]:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    es = EventSourcingManager({"providers": {"s": url}, **CONFIGS[config]})
    await es.connect()
    await es.append_event(stream_id="bad", event_type="T", data={"a": 1}, metadata={"m": 1}, tenant_id="t")
    await es.append_event(stream_id="bad", event_type="T", data={"a": 2})
    await es.append_event(stream_id="good", event_type="T", data={"b": 1})
    return es, url


def _edit(tmp_path: Path, sql: str) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    try:
        db.execute(sql)
        db.commit()
    finally:
        db.close()


# the columns a read interprets (payload bytes, their descriptor, the timestamp; with encryption, what the
# associated data binds); the other envelope fields are handed out as stored
READ_CASES = [
    *[(config, column, value) for config in CONFIGS for column, value in EVENT_COLUMNS[:9]],
    ("sealed", "event_id", "X'41'"),
    ("sealed", "event_type", "X'54'"),
    ("sealed", "version", "1.5"),
]


@pytest.mark.parametrize(("config", "column", "value"), READ_CASES, ids=[f"{c}-{k}={v}" for c, k, v in READ_CASES])
async def test_an_event_column_of_another_type_is_a_typed_error_on_every_read(
    config: str, column: str, value: str, tmp_path: Path
) -> None:
    es, _ = await _store(tmp_path, config)
    try:
        eid = (await es.get_events_by_stream("bad")).events[0].event_id
        _edit(tmp_path, f"UPDATE es_events SET {column} = {value} WHERE stream_id = 'bad' AND version = 1")
        with pytest.raises(CodecError):
            await _all(es.read_stream("bad"))
        with pytest.raises(CodecError):
            await _all(es.read_all())
        with pytest.raises(CodecError):
            await es.get_events_by_stream("bad")
        if column != "event_id":
            with pytest.raises(CodecError):
                await es.get_event_by_id(eid)
        with pytest.raises(EventDecodeError) as caught:
            async with es.subscribe(from_position=0, poll_interval=0.05) as sub:
                async for _ in sub:
                    pass
        assert isinstance(caught.value.__cause__, CodecError)
        async with es.subscribe(from_position=0, poll_interval=0.05, on_decode_error="skip") as sub:
            got = [await anext(sub), await anext(sub)]  # the event is the one at fault: skip passes over it
        assert [e.data for e in got] == [{"a": 2}, {"b": 1}]
        assert [e.data async for e in es.read_stream("good")] == [{"b": 1}]
    finally:
        await es.close()


@pytest.mark.parametrize(("column", "value"), EVENT_COLUMNS, ids=[f"{c}={v}" for c, v in EVENT_COLUMNS])
async def test_an_event_column_of_another_type_stops_an_export_or_copy_with_a_typed_error(
    column: str, value: str, tmp_path: Path
) -> None:
    es, url = await _store(tmp_path, "sealed")
    await es.close()
    _edit(tmp_path, f"UPDATE es_events SET {column} = {value} WHERE stream_id = 'bad' AND version = 1")
    await _export_and_copy_refused(url, tmp_path)


async def _export_and_copy_refused(url: str, tmp_path: Path) -> None:
    """An export and a copy of the store at ``url`` both stop with the CodecError naming what is malformed."""
    source = SqliteProvider(url)
    target = SqliteProvider(f"sqlite:///{tmp_path / 'copy.db'}")
    await source.connect()
    await target.connect()
    try:
        with pytest.raises(CodecError, match="malformed"):
            await export_store(source, io.BytesIO())
        with pytest.raises(CodecError, match="malformed"):
            await copy_store(source, target, position_map=tmp_path / "map.db")
    finally:
        await source.close()
        await target.close()


async def _all(it: Any) -> list[Any]:
    return [x async for x in it]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize(("column", "value"), [("data", "'{}'"), ("metadata", "2"), ("encoding", "X'6a736f6e'")])
async def test_a_snapshot_column_of_another_type_is_a_typed_error_on_read_export_and_copy(
    config: str, column: str, value: str, tmp_path: Path
) -> None:
    es, url = await _store(tmp_path, config)
    try:
        await es.create_snapshot(stream_id="bad", data={"state": 1}, metadata={"m": 1})
        _edit(tmp_path, f"UPDATE es_snapshots SET {column} = {value}")
        with pytest.raises(CodecError, match="malformed"):
            await es.get_snapshot("bad")
    finally:
        await es.close()
    await _export_and_copy_refused(url, tmp_path)


@pytest.mark.parametrize(
    ("table", "column"),
    [("es_streams", "name"), ("es_streams", "aggregate_type"), ("es_snapshots", "aggregate_id")],
)
async def test_a_stream_or_snapshot_text_column_holding_bytes_stops_an_export_with_a_typed_error(
    table: str, column: str, tmp_path: Path
) -> None:
    """A blob where text belongs: the export stopped with 'Object of type bytes is not JSON serializable'."""
    es, url = await _store(tmp_path, "plain")
    await es.create_snapshot(stream_id="bad", data={"state": 1})
    await es.close()
    _edit(tmp_path, f"UPDATE {table} SET {column} = X'41' WHERE stream_id = 'bad'")
    source = SqliteProvider(url)
    await source.connect()
    try:
        with pytest.raises(CodecError, match=f"malformed: its {column} is bytes, not text"):
            await export_store(source, io.BytesIO())
    finally:
        await source.close()


@pytest.mark.parametrize("config", list(CONFIGS))
async def test_an_event_column_of_another_type_stops_the_upcast_rewrite_with_a_typed_error(
    config: str, tmp_path: Path
) -> None:
    """The offline rewrite opens each stored payload itself: text in a payload column was an AttributeError."""
    es, _ = await _store(tmp_path, config)
    try:
        _edit(tmp_path, "UPDATE es_events SET data = '{\"a\": 1}' WHERE stream_id = 'bad' AND version = 1")
        with pytest.raises(CodecError):
            await rewrite_stream(es, "bad")
    finally:
        await es.close()


@pytest.mark.parametrize("encoding", ["json", "json+zlib"])
@pytest.mark.parametrize("meta", [b"5", b"[1]", b"null", b'"x"'])
async def test_stored_metadata_that_is_not_an_object_is_a_typed_error(
    encoding: str, meta: bytes, tmp_path: Path
) -> None:
    """Metadata another writer stored as a JSON number, list, null or string (a hand-made import file, say).

    It was handed out as the event's ``metadata`` (typed a dict), or, with an upcasting chain registered, raised
    ``AttributeError: 'list' object has no attribute 'get'`` from every read, subscription and rewrite.
    """
    es, _ = await _store(tmp_path, "plain")
    try:
        es.add_upcaster("T", 1, lambda data: data)
        pack = zlib.compress if encoding.endswith("zlib") else bytes  # the descriptor covers data and metadata
        rec = NewEvent(str(uuid.uuid4()), "T", pack(b'{"c": 1}'), pack(meta), encoding, utcnow())
        await es.get_provider().append("odd", [rec], ExpectedVersion.ANY, NewStream(stream_id="odd"))
        with pytest.raises(CodecError, match="metadata"):
            await _all(es.read_stream("odd"))
        with pytest.raises(CodecError, match="metadata"):
            await es.get_event_by_id(rec.event_id)
        with pytest.raises(CodecError, match="metadata"):
            await rewrite_stream(es, "odd", dry_run=True)
        async with es.subscribe(stream_id="odd", poll_interval=0.05) as sub:
            with pytest.raises(EventDecodeError):
                await anext(sub)
        await es.create_snapshot(stream_id="bad", data={"s": 1}, metadata={"m": 1})
        _edit(tmp_path, f"UPDATE es_snapshots SET metadata = X'{meta.hex()}', encoding = 'json'")
        with pytest.raises(CodecError, match="metadata"):
            await es.get_snapshot("bad")
    finally:
        await es.close()
