"""Findings of the transfer attack review (round x), each reproduced by a test that failed on the code as it was.

Stores are real SQLite files; the Kafka case of the position map is in the kafka plugin's tests.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.cli.main import main
from eventsource.errors import ValidationError, VerificationError
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider
from eventsource.transfer import PositionMap, copy_store, export_store, verify_stores

if TYPE_CHECKING:
    from pathlib import Path


def _events(n: int, data: bytes = b"{}") -> list[NewEvent]:
    return [NewEvent(str(uuid.uuid4()), "E", data, b"{}", "json", utcnow()) for _ in range(n)]


async def _sqlite(path: Path) -> SqliteProvider:
    p = SqliteProvider(f"sqlite:///{path}")
    await p.connect()
    return p


# -- 1. the position map: a per_stream source's positions are not unique across streams


def _old_map(path: Path, rows: list[tuple[int, int, str, int]]) -> None:
    """A map as releases before this one wrote it: keyed by source position, without event ids."""
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE positions (source INTEGER PRIMARY KEY, target INTEGER NOT NULL, stream_id TEXT NOT NULL, "
        "version INTEGER NOT NULL)"
    )
    db.execute("CREATE INDEX positions_stream ON positions (stream_id, version)")
    db.execute("CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)")
    db.executemany("INSERT INTO positions VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def test_events_of_two_streams_at_one_source_position_both_stay_mapped(tmp_path: Path) -> None:
    positions = PositionMap(tmp_path / "map.db")
    try:
        positions.record([(7, 1, "a", 1, "e1"), (7, 2, "b", 1, "e2")])
        assert len(positions) == 2
        assert positions.target_of_version("a", 1) == 1
        assert positions.target_of_version("b", 1) == 2
        assert positions.target(7, "b") == 2
        with pytest.raises(ValidationError, match="several streams"):
            positions.target(7)
    finally:
        positions.close()


async def test_a_map_keyed_by_source_position_is_rekeyed_and_a_rerun_carries_on(tmp_path: Path) -> None:
    src, dst = await _sqlite(tmp_path / "src.db"), await _sqlite(tmp_path / "dst.db")
    try:
        await src.append("a", _events(2), NO_STREAM)
        await src.append("b", _events(2), NO_STREAM)
        first = await copy_store(src, dst)
        assert first.written == 4
        rows = [(r.position, r.position, r.stream_id, r.version) async for r in dst.read_all()]
        _old_map(tmp_path / "old.db", rows)
        again = await copy_store(src, dst, position_map=tmp_path / "old.db")
        assert (again.written, again.skipped) == (0, 4)
        positions = PositionMap(tmp_path / "old.db")
        try:
            assert len(positions) == 4
            assert None not in positions.event_ids("a", 1, 2).values()  # the re-run checked and filled them
            positions.record([(1, 99, "c", 1, "x")])  # a position "a" holds, of another stream: both kept
            assert len(positions) == 5
        finally:
            positions.close()
    finally:
        await src.close()
        await dst.close()


# -- 3. verify: streams only the target holds


async def test_verify_of_whole_stores_reports_streams_only_the_target_holds(tmp_path: Path) -> None:
    src, dst = await _sqlite(tmp_path / "src.db"), await _sqlite(tmp_path / "dst.db")
    try:
        for sid in ("a", "b"):
            await src.append(sid, _events(2), NO_STREAM)
        assert (await copy_store(src, dst, verify=True)).verify.ok  # type: ignore[union-attr]
        await src.delete_stream("b")  # deleted on the source after the copy
        await dst.append("extra", _events(1), NO_STREAM)  # the target held more than the copy brought
        report = await verify_stores(src, dst)
        assert not report.ok
        assert report.target_only == 2
        assert report.differences == ["2 streams on the target only (not on the source): 'b', 'extra'"]
        assert (await verify_stores(src, dst, streams=["a*"])).ok  # a filtered verify compares what it names
        with pytest.raises(VerificationError, match="on the target only"):
            await copy_store(src, dst, verify=True)
    finally:
        await src.close()
        await dst.close()


def test_cli_copy_verify_exits_4_on_streams_only_the_target_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    for url, sid in ((src, "a"), (dst, "only-here")):
        assert main(["append", "--store", url, sid, "T", '{"n": 1}'], host=PluginHost()) == 0
    capsys.readouterr()
    argv = ["copy", "--from", src, "--to", dst, "--map", str(tmp_path / "m.db"), "--verify", "--json"]
    code = main(argv, host=PluginHost())
    captured = capsys.readouterr()
    assert code == 4, captured.err
    assert "'only-here'" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["target_only"] == 1


# -- 4. the export's checksum


async def _exported(tmp_path: Path) -> Path:
    src = await _sqlite(tmp_path / "src.db")
    try:
        await src.append("s", [*_events(2), *_events(1, b'{"amount":"QUJDRA=="}')], NO_STREAM)
        path = tmp_path / "export.jsonl"
        with path.open("wb") as out:
            await export_store(src, out)
    finally:
        await src.close()
    return path


def _flip_in_payload(data: bytes) -> bytes:
    """One bit flipped inside the base64 of the last event's data: still base64, still JSON."""
    lines = data.splitlines(keepends=True)
    at = max(i for i, line in enumerate(lines) if b'"kind":"event"' in line)
    start = lines[at].index(b'"data":"') + len(b'"data":"')
    line = bytearray(lines[at])
    line[start + 1] ^= 0x01  # 'e' <-> 'd', 'J' <-> 'K': another valid base64 digit
    lines[at] = bytes(line)
    return b"".join(lines)


async def test_an_export_with_a_bit_flipped_in_a_payload_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = await _exported(tmp_path)
    path.write_bytes(_flip_in_payload(path.read_bytes()))
    dst = tmp_path / "dst.db"
    argv = ["import", str(path), "--to", f"sqlite:///{dst}", "--map", str(tmp_path / "m.db")]
    code = await asyncio.to_thread(main, argv, host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert "SHA-256" in err, err
    store = await _sqlite(dst)
    try:
        assert (await store.list_streams(limit=10, offset=0))[1] == 0  # nothing written
    finally:
        await store.close()
    assert len(json.loads(path.read_bytes().splitlines()[-1])["sha256"]) == 64


async def test_an_export_without_a_checksum_still_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file written before the end line carried a SHA-256."""
    path = await _exported(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    end = json.loads(lines[-1])
    end.pop("sha256", None)
    path.write_bytes(b"".join([*lines[:-1], json.dumps(end).encode() + b"\n"]))
    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    argv = ["import", str(path), "--to", dst, "--map", str(tmp_path / "m.db"), "--json"]
    code = await asyncio.to_thread(main, argv, host=PluginHost())
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out.splitlines()[-1])["written"] == 3
