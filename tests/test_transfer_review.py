"""Review of copy / export / import (issue #15): attacks on resumption, crafted exports and the position map.

Each test reproduces a defect found in review on real SQLite and memory stores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from eventsource.cli.main import main
from eventsource.errors import ConfigurationError, TransferFormatError
from eventsource.memory import MemoryProvider
from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import manager_on
from eventsource.timestamps import from_us
from eventsource.transfer import TransferProgress, copy_store, export_store, import_store, open_input, verify_stores

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.manager import EventSourcingManager


async def test_a_map_whose_target_was_reset_is_not_trusted(source: EventSourcingManager, tmp_path: Path) -> None:
    """The target is wiped (deleted file) and the same copy is run again, with the map of the first run.

    The map's cursor said everything was written, so the re-run read nothing and left the new target with
    every stream but no event, exit 0 (verify was off).
    """
    src = source.get_default_provider()
    mapfile = tmp_path / "map.db"
    first = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}"))
    await copy_store(src, first.get_default_provider(), position_map=mapfile)
    await first.close()
    (tmp_path / "target.db").unlink()
    again = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}"))
    try:
        dst = again.get_default_provider()
        with pytest.raises(ConfigurationError, match="remove the map file"):
            await copy_store(src, dst, position_map=mapfile)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0  # refused before writing anything
        mapfile.unlink()
        result = await copy_store(src, dst, position_map=mapfile)
        assert result.written == 598
        assert (await verify_stores(src, dst)).ok
    finally:
        await again.close()


def _crafted(lines: list[bytes], kind: str, index: int, **changes: object) -> list[bytes]:
    """``lines`` with the ``index``-th record of ``kind`` changed (a hand-edited or hostile export)."""
    out, seen = [], 0
    for line in lines:
        d = json.loads(line)
        if d.get("kind") == kind:
            if seen == index:
                d.update(changes)
            seen += 1
        out.append(json.dumps(d).encode() + b"\n")
    return out


async def _refused(source: EventSourcingManager, tmp_path: Path, lines: list[bytes], match: str) -> None:
    path = tmp_path / "crafted.jsonl"
    path.write_bytes(b"".join(lines))
    dst = MemoryProvider()
    await dst.connect()
    with open_input(str(path)) as stream, pytest.raises(TransferFormatError, match=match):
        await import_store(stream, dst, name=str(path), check_first=True)
    assert (await dst.list_streams(limit=10, offset=0))[1] == 0  # nothing written


async def _export_lines(source: EventSourcingManager) -> list[bytes]:
    out = io.BytesIO()
    await export_store(source.get_default_provider(), out)
    return out.getvalue().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("stream", {"first_version": "3"}),
        ("stream", {"first_version": 0}),
        ("stream", {"version": -4}),
        ("stream", {"name": 5}),
        ("stream", {"aggregate_type": {"x": 1}}),
        ("stream", {"metadata": {"k": {"nested": [1, 2]}}, "version": True}),
        ("snapshot", {"position": "x"}),
        ("snapshot", {"aggregate_id": 7}),
    ],
)
async def test_a_crafted_export_is_refused_before_anything_is_written(
    source: EventSourcingManager, tmp_path: Path, kind: str, changes: dict[str, object]
) -> None:
    """Fields of the wrong type or range passed the check and crashed (or were stored) half-way through."""
    lines = _crafted(await _export_lines(source), kind, 3, **changes)
    await _refused(source, tmp_path, lines, f"line .*: a bad {kind} record")


async def test_verify_sees_a_snapshot_whose_aggregate_fields_differ(source: EventSourcingManager) -> None:
    """The snapshot digest covered id, version, descriptor and bytes: a lost aggregate id/type passed verify."""
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    await copy_store(src, dst)
    assert (await verify_stores(src, dst)).ok
    snap = await dst.get_snapshot("s-0002")
    assert snap is not None
    assert snap.aggregate_type is not None
    await dst.save_snapshot(replace(snap, aggregate_type="Other", aggregate_id="elsewhere"))
    report = await verify_stores(src, dst)
    assert any("s-0002" in d and "snapshot" in d for d in report.differences), report.differences


async def test_a_resumed_copy_does_not_promise_the_whole_store(source: EventSourcingManager, tmp_path: Path) -> None:
    """A re-run reads from the map's cursor, yet its progress showed the store's total: 'copy: 5 of 603 events'."""
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    await copy_store(src, dst, position_map=tmp_path / "map.db")
    await src.append("s-0001", [NewEvent(f"late-{i}", "Late", b"{}", b"", "json", from_us(0)) for i in range(5)], -1)
    seen: list[TransferProgress] = []
    result = await copy_store(src, dst, position_map=tmp_path / "map.db", progress=seen.append)
    assert result.written == 5
    assert seen
    assert all(p.total is None or p.total >= p.events for p in seen)
    assert seen[-1].total in (None, 5)


def test_an_export_file_is_readable_by_its_owner_only(source: EventSourcingManager, tmp_path: Path) -> None:
    """Exports were created 0644 under the usual umask: every local user could read the store's (unencrypted) events."""
    src_url = source.get_default_provider().url
    assert src_url is not None
    out = tmp_path / "backup.jsonl.gz"
    old = os.umask(0o022)
    try:
        assert main(["export", "--store", src_url, "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == 0, oct(out.stat().st_mode)


async def test_an_event_version_out_of_sequence_is_refused_before_anything_is_written(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    """Review: an event line at version 0 (or any gap) passed the check and failed later, after other streams."""
    lines = await _export_lines(source)
    events = [i for i, x in enumerate(lines) if json.loads(x).get("kind") == "event"]
    at = next(i for i in events if json.loads(lines[i])["version"] > 1)
    d = json.loads(lines[at])
    d["version"] += 5  # a gap in its stream
    lines[at] = json.dumps(d).encode() + b"\n"
    await _refused(source, tmp_path, lines, "does not follow")


async def test_a_stream_whose_events_in_the_file_disagree_with_its_line_is_refused(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    lines = await _export_lines(source)
    sid = next(json.loads(x)["stream_id"] for x in lines if json.loads(x).get("kind") == "stream")
    dropped = [x for x in lines if not (json.loads(x).get("kind") == "event" and json.loads(x)["stream_id"] == sid)]
    end = json.loads(dropped[-1])
    end["events"] -= len(lines) - len(dropped)
    end["sha256"] = hashlib.sha256(b"".join(dropped[:-1])).hexdigest()  # a forger recomputes it
    dropped[-1] = json.dumps(end).encode() + b"\n"
    await _refused(source, tmp_path, dropped, f"stream '{sid}' says versions")


async def test_a_stream_line_claiming_a_billion_missing_versions_is_refused(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    """Review: ``version: 10**9`` with no events made an import append a billion placeholder events."""
    lines = _crafted(await _export_lines(source), "stream", 2, version=10**9, first_version=None)
    await _refused(source, tmp_path, lines, "placeholder events")


async def test_a_line_longer_than_the_limit_is_refused_without_reading_it_whole(
    source: EventSourcingManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: a (gzip-expanded) line was read whole into memory before it was refused."""
    from eventsource.transfer import jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE", 4096)
    lines = await _export_lines(source)
    lines.insert(3, b'{"kind": "event", "pad": "' + b"x" * 10_000 + b'"}\n')
    await _refused(source, tmp_path, lines, "a line longer than")


async def test_verify_sees_a_snapshot_whose_created_at_differs(source: EventSourcingManager) -> None:
    """Snapshots keep ``created_at`` in transit (every store does, to the microsecond), yet verify left it out."""
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    await copy_store(src, dst)
    assert (await verify_stores(src, dst)).ok
    snap = await dst.get_snapshot("s-0003")
    assert snap is not None
    await dst.save_snapshot(replace(snap, created_at=snap.created_at + timedelta(microseconds=1)))
    report = await verify_stores(src, dst)
    assert any("s-0003" in d and "snapshot" in d for d in report.differences), report.differences
