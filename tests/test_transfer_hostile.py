"""Hostile export files (review of issue #15): each is refused whole, naming its line, before anything is written.

Before the fix each of these passed the check of a file and was written half-way: ids no manager accepts
(empty, a NUL, a lone surrogate, over-long) went into the store, and an event id used twice or a snapshot
beyond its stream failed at the store after other streams were written.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import tracemalloc
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from conftest import console_script
from eventsource.cli.transfer import map_path
from eventsource.errors import TransferFormatError, ValidationError
from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.timestamps import from_us
from eventsource.transfer import copy_store, import_store, open_input

if TYPE_CHECKING:
    from pathlib import Path

_TS = "2024-01-01T00:00:00+00:00"


def _stream(sid: str, version: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "stream",
        "stream_id": sid,
        "name": None,
        "aggregate_id": None,
        "aggregate_type": None,
        "metadata": {},
        "version": version,
        "first_version": 1 if version else None,
        "event_count": version,
        "created_at": _TS,
        "updated_at": _TS,
        **changes,
    }


def _event(sid: str, version: int = 1, position: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "event",
        "event_id": str(uuid.uuid4()),
        "stream_id": sid,
        "event_type": "T",
        "version": version,
        "position": position,
        "encoding": "json",
        "timestamp": _TS,
        "data": "e30=",
        "metadata": "",
        **changes,
    }


def _snapshot(sid: str, version: int) -> dict[str, Any]:
    return {
        "kind": "snapshot",
        "snapshot_id": "snap-1",
        "stream_id": sid,
        "version": version,
        "encoding": "json",
        "created_at": _TS,
        "data": "e30=",
        "metadata": "",
        "aggregate_id": None,
        "aggregate_type": None,
        "position": None,
    }


def _file(records: list[dict[str, Any]]) -> bytes:
    counts = {"stream": 0, "event": 0, "snapshot": 0}
    for r in records:
        counts[r["kind"]] += 1
    head = {"kind": "header", "format": "eventsource-export", "version": 1, "source": None}
    end = {"kind": "end", "streams": counts["stream"], "events": counts["event"], "snapshots": counts["snapshot"]}
    return b"".join(json.dumps(r).encode() + b"\n" for r in (head, *records, end))


_GOOD_ID = "ok-1"

# the bad records, and what the message says; each file holds a good stream 'ok' and its event first, so a check
# that lets the bad record through writes 'ok' before the store refuses it (or stores it)
CASES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "event id used twice": ([_stream("b"), _event("b", event_id=_GOOD_ID)], "twice"),
    "empty stream id": ([_stream("", 0)], "stream id must not be empty"),
    "NUL in a stream id": ([_stream("x\x00y", 0)], "control character"),
    "lone surrogate": ([_stream("x\ud800", 0)], "lone surrogate"),
    "stream id of 70,000 characters": ([_stream("z" * 70_000, 0)], "the limit is 65536"),
    "empty event type": ([_event("b", event_type="")], "event type must not be empty"),
    "event type of 300 characters": ([_event("b", event_type="T" * 300)], "the limit is 256"),
    "empty event id": ([_event("b", event_id="")], "event id must not be empty"),
    "control character in a tenant": ([_event("b", tenant_id="t\n1")], "control character"),
    "NaN in stream metadata": ([_stream("n", 0, metadata={"x": float("nan")})], "NaN"),
    "version 0 of an event": ([_event("b", version=0)], "version"),
    "negative position": ([_event("b", position=-5)], "position"),
    "snapshot beyond its stream": ([_snapshot("ok", 5)], "snapshot at version 5 of stream 'ok'"),
    "stream without a line starting at 5": ([_event("b", version=5)], "stream 'b' has no stream line"),
    "a second line of a stream": ([_stream("ok", name="Other")], "a second line of stream 'ok' (first on line 2)"),
}


async def refused_whole(bad: list[dict[str, Any]], message: str, tmp_path: Path, name: str) -> None:
    """An export ``name`` holding a good stream 'ok' and its event, then ``bad``, is refused whole on import.

    ``bad``'s streams go before the good event, its other records after it. The error names the bad record's line
    (``bad``'s first stream if it holds only streams, else its first other record) and says ``message``; nothing is
    written to the target, a fresh SQLite store.
    """
    streams = [r for r in bad if r["kind"] == "stream"]
    body = [_stream("ok"), *streams, _event("ok", event_id=_GOOD_ID), *[r for r in bad if r["kind"] != "stream"]]
    line = 3 if len(streams) == len(bad) else 2 + len(body) - len(bad) + len(streams)  # the bad record's line
    path = tmp_path / name
    path.write_bytes(_file(body))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        with open_input(str(path)) as stream, pytest.raises(TransferFormatError) as caught:
            await import_store(stream, dst, name=str(path), check_first=True)
        assert f"line {line}:" in str(caught.value)
        assert message in str(caught.value)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0
    finally:
        await dst.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_export_is_refused_naming_its_line_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    bad, message = CASES[case]
    await refused_whole(bad, message, tmp_path, "hostile.jsonl")


def _cli(args: list[str], tmp_path: Path, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    script, env = console_script()
    run = functools.partial(subprocess.run, capture_output=True, env=env, cwd=tmp_path, check=False, timeout=120)
    return run([script, *args], input=data)  # a command that hangs fails the test instead of stalling it


def test_cli_import_from_stdin_cut_short_says_what_was_imported(tmp_path: Path) -> None:
    """From stdin the lines before a bad one are imported; the error said only which line was bad."""
    data = _file([_stream("ok"), _event("ok", event_id=_GOOD_ID)])
    cut = data[: data.rindex(b'{"kind": "end"')]
    url = f"sqlite:///{tmp_path / 'dst.db'}"
    run = _cli(["import", "--to", url], tmp_path, cut)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert "-, line 3: no end line: the export was cut short" in err
    assert "the records before it were imported" in err
    assert "run the import again" in err


def test_cli_import_of_a_file_shows_progress_while_it_checks_it(tmp_path: Path) -> None:
    """A file is read whole before anything is written; that read showed nothing, however long it took."""
    path = tmp_path / "backup.jsonl"
    path.write_bytes(_file([_stream("ok"), _event("ok", event_id=_GOOD_ID)]))
    run = _cli(["import", str(path), "--to", f"sqlite:///{tmp_path / 'dst.db'}"], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert "import: checking 1 events" in err  # stderr is a pipe: plain progress lines


@pytest.mark.parametrize("option", ["--page-size", "--window"])
def test_cli_a_page_size_or_window_below_1_is_a_usage_error(option: str, tmp_path: Path) -> None:
    """--page-size 0 crashed in the store's read ('unexpected IndexError', exit 1)."""
    stores = ["--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", f"sqlite:///{tmp_path / 'b.db'}"]
    run = _cli(["copy", *stores, option, "0"], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert option in err
    assert "must be >= 1" in err


@pytest.mark.parametrize("setting", [{"page_size": 0}, {"window": 0}, {"concurrency": 0}, {"page_size": -3}])
async def test_copy_with_a_page_size_window_or_concurrency_below_1_is_refused(
    setting: dict[str, int], tmp_path: Path
) -> None:
    src = SqliteProvider(f"sqlite:///{tmp_path / 'a.db'}")
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'b.db'}")
    await src.connect()
    await dst.connect()
    try:
        await src.append("s", [NewEvent("e1", "T", b"{}", b"", "json", from_us(0))], 0)
        with pytest.raises(ValidationError, match=next(iter(setting))):
            await copy_store(src, dst, **setting)  # type: ignore[arg-type]
        assert await dst.get_stream_info("s") is None
    finally:
        await src.close()
        await dst.close()


def test_the_default_map_name_does_not_depend_on_a_password() -> None:
    """The default map file was named after a hash of the raw URLs: 48 bits of SHA-256 over text holding the
    password, shown in every summary ('position map: ...') and in directory listings, enough to test guesses
    of a weak password offline."""
    target = "sqlite:///restored.db"
    one = map_path(None, "postgresql://app:first-secret@db:5432/events", target)
    two = map_path(None, "postgresql://app:other-secret@db:5432/events", target)
    assert one == two
    assert one != map_path(None, "postgresql://app:first-secret@db:5432/other", target)
    dsn = map_path(None, "host=db dbname=events password=first-secret", target)
    assert dsn == map_path(None, "host=db dbname=events password=other-secret", target)


async def test_a_position_beyond_64_bits_is_refused_naming_its_line(tmp_path: Path) -> None:
    """Such a position passed the check and crashed the position map's insert half-way (OverflowError)."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(_file([_stream("ok", 2), _event("ok"), _event("ok", 2, position=2**70)]))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        with open_input(str(path)) as stream, pytest.raises(TransferFormatError, match=r"line 4: .*position"):
            await import_store(stream, dst, name=str(path), position_map=tmp_path / "m.db", check_first=True)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0
    finally:
        await dst.close()


def test_cli_export_onto_the_stores_own_file_is_refused(tmp_path: Path) -> None:
    """'export --from sqlite:///events.db -o events.db' (events.jsonl meant) truncated the store to one line."""
    store = tmp_path / "events.db"
    url = f"sqlite:///{store}"
    assert _cli(["append", "--store", url, "s", "T", '{"a": 1}'], tmp_path).returncode == 0
    size = store.stat().st_size
    run = _cli(["export", "--from", url, "-o", str(store)], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert "not an eventsource export" in err
    assert store.stat().st_size == size
    assert _cli(["read", "--store", url, "s"], tmp_path).returncode == 0
    previous = tmp_path / "backup.jsonl"
    assert _cli(["export", "--from", url, "-o", str(previous)], tmp_path).returncode == 0
    assert _cli(["export", "--from", url, "-o", str(previous)], tmp_path).returncode == 0  # an export is replaced


KILLED_EXPORT = """
import os, signal, sys
from eventsource.cli import transfer
from eventsource.cli.main import main

def die(self, progress):
    os.kill(os.getpid(), signal.SIGKILL)  # the export stopped half-way (a kill, a crash, a lost store)

transfer.ProgressView.__call__ = die
main(sys.argv[1:])
"""


def test_an_export_killed_half_way_leaves_the_previous_export_whole(tmp_path: Path) -> None:
    """The export truncated its output file first: a run that failed half-way had destroyed the last good backup."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    for i in range(3):
        assert _cli(["append", "--store", store, f"s{i}", "T", '{"a": 1}'], tmp_path).returncode == 0
    backup = tmp_path / "backup.jsonl.gz"
    assert _cli(["export", "--from", store, "-o", str(backup)], tmp_path).returncode == 0
    good = backup.read_bytes()
    _script, env = console_script()
    args = [sys.executable, "-c", KILLED_EXPORT, "export", "--from", store, "-o", str(backup), "--page-size", "1"]
    killed = subprocess.run(args, capture_output=True, env=env, cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert backup.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) in (
        ["backup.jsonl.gz"],
        sorted(["backup.jsonl.gz", "backup.jsonl.gz.partial"]),
    )
    again = _cli(["export", "--from", store, "-o", str(backup)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("backup")) == ["backup.jsonl.gz"]


def test_cli_import_from_a_named_pipe_checks_as_it_reads(tmp_path: Path) -> None:
    """'import <(zcat backup.jsonl.gz)' read the pipe whole to check it, then could not rewind it:
    'UnsupportedOperation: File or stream is not seekable', exit 1, nothing imported."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = _file([_stream("ok"), _event("ok", event_id=_GOOD_ID)])

    def feed() -> None:
        with fifo.open("wb") as w:
            w.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        run = _cli(["import", str(fifo), "--to", f"sqlite:///{tmp_path / 'dst.db'}", "--json"], tmp_path)
    finally:
        writer.join(timeout=30)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert json.loads(run.stdout.decode().splitlines()[-1])["written"] == 1


def test_cli_copy_verify_shows_progress_while_it_verifies(tmp_path: Path) -> None:
    """Verification reads both stores whole, as long as the copy took, and showed nothing meanwhile."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    for i in range(3):
        assert _cli(["append", "--store", store, f"s{i}", "T", '{"a": 1}'], tmp_path).returncode == 0
    run = _cli(["copy", "--from", store, "--to", f"sqlite:///{tmp_path / 'copy.db'}", "--verify"], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert "verify: 1 events" in err  # stderr is a pipe: plain progress lines, the first one at once


def test_cli_export_into_a_named_pipe_writes_into_the_pipe(tmp_path: Path) -> None:
    """'-o FILE' is written aside and renamed over FILE; a FILE that is a pipe or a device must not be replaced
    by a regular file (nor read first to see whether it is an export: that waits for a writer forever)."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    assert _cli(["append", "--store", store, "s", "T", '{"a": 1}'], tmp_path).returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def drain() -> None:
        with fifo.open("rb") as r:
            got.append(r.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        run = _cli(["export", "--from", store, "-o", str(fifo)], tmp_path)
    finally:
        if reader.is_alive():
            with fifo.open("wb"):
                pass  # the export never opened the pipe: let the reader finish
        reader.join(timeout=30)
    assert run.returncode == 0, run.stderr.decode()
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got[0].startswith(b'{"kind":"header"')
    assert not (tmp_path / "pipe.partial").exists()


def test_cli_export_through_a_symlink_writes_the_file_it_names(tmp_path: Path) -> None:
    """'-o latest.jsonl' naming a link to a dated export: the new export goes to that file, the link stays."""
    store = f"sqlite:///{tmp_path / 'events.db'}"
    assert _cli(["append", "--store", store, "s", "T", '{"a": 1}'], tmp_path).returncode == 0
    dated = tmp_path / "2026-12-06.jsonl"
    dated.write_bytes(b"")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(dated.name)
    run = _cli(["export", "--from", store, "-o", str(link)], tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert link.is_symlink()
    assert dated.read_bytes().startswith(b'{"kind":"header"')


async def test_an_older_export_of_a_live_store_imports(tmp_path: Path) -> None:
    """Exports written before the exporter took streams as listed hold events appended after a stream's line
    (versions 1..3 after a line saying 1..2); such a backup was refused whole, though nothing in it is missing."""
    events = [_event("ok", v, position=v) for v in (1, 2, 3)]
    path = tmp_path / "old.jsonl"
    late = [_event("was-empty", 1, position=4), _snapshot("ok", 3)]
    path.write_bytes(_file([_stream("ok", 2), _stream("was-empty", 0), *events, *late]))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        with open_input(str(path)) as stream:
            result = await import_store(stream, dst, name=str(path), check_first=True)
        assert result.written == 4
        info = await dst.get_stream_info("ok")
        assert info is not None
        assert info.version == 3
    finally:
        await dst.close()


async def test_a_stream_line_claiming_more_than_its_events_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    path.write_bytes(_file([_stream("ok", 3), _event("ok", 1), _event("ok", 2, position=2)]))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        with open_input(str(path)) as stream, pytest.raises(TransferFormatError, match=r"says versions 1\.\.3"):
            await import_store(stream, dst, name=str(path), check_first=True)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0
    finally:
        await dst.close()


async def test_a_stream_line_after_its_events_is_refused(tmp_path: Path) -> None:
    """The events created the stream without attributes; its line then failed at the store, half-way."""
    path = tmp_path / "late-line.jsonl"
    path.write_bytes(_file([_stream("ok"), _event("ok"), _event("b", position=2), _stream("b", name="B")]))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        refused = pytest.raises(TransferFormatError, match="line 5: the line of stream 'b'")
        with open_input(str(path)) as stream, refused:
            await import_store(stream, dst, name=str(path), check_first=True)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0
    finally:
        await dst.close()


async def test_a_sub_second_utc_offset_is_imported_at_its_instant(tmp_path: Path) -> None:
    """``fromisoformat`` reads ``+00:00:00.500000`` as ``+00:00``: the event was imported half a second off."""
    at = "2024-01-01T00:00:00+00:00:00.500000"
    path = tmp_path / "offset.jsonl"
    path.write_bytes(_file([_stream("s", created_at=at, updated_at=at), _event("s", timestamp=at)]))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        with open_input(str(path)) as stream:
            await import_store(stream, dst, name=str(path), check_first=True)
        [event] = [e async for e in dst.read_stream("s")]
        assert event.timestamp.isoformat() == "2023-12-31T23:59:59.500000+00:00"
    finally:
        await dst.close()


@pytest.mark.parametrize("kind", [[], ["event"], {}, {"event": 1}])
def test_cli_import_of_a_record_whose_kind_is_not_text_is_a_bad_file(kind: object, tmp_path: Path) -> None:
    """A record kind that is a JSON array or object was an unexpected TypeError (exit 1), not a bad line (exit 2)."""
    path = tmp_path / "odd.jsonl"
    good = _file([_stream("ok"), _event("ok", event_id=_GOOD_ID)])
    path.write_bytes(good.replace(b'"kind": "event"', b'"kind": ' + json.dumps(kind).encode()))
    url = f"sqlite:///{tmp_path / 'dst.db'}"
    run = _cli(["import", str(path), "--to", url], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert f"line 3: unknown record kind {kind!r}" in err
    assert "unexpected" not in err
    assert not (tmp_path / "dst.db").exists() or _no_streams(url)


def _no_streams(url: str) -> bool:
    async def count() -> int:
        p = SqliteProvider(url)
        await p.connect()
        try:
            return (await p.list_streams(limit=10, offset=0))[1]
        finally:
            await p.close()

    return asyncio.run(count()) == 0


async def test_an_import_line_of_millions_of_tiny_values_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    """A small gzip file whose one line holds millions of '{}' parsed into that many dicts before any check.

    The line limit bounds a line's bytes, not what they parse into: '{},' is 3 bytes and a 64-byte dict, so a
    120 KB file (one 126 MB line) took 6 GB of memory and 50 seconds to be refused. Here 4,000,000 of them
    (a 12 MB line, 40 KB gzipped) are refused on their count, before they are parsed, and nothing is written.
    """
    head = {"kind": "header", "format": "eventsource-export", "version": 1, "source": None}
    line = b'{"kind":"stream","stream_id":"s","metadata":{"x":[' + b"{}," * 4_000_000 + b"{}]}}\n"
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(json.dumps(head).encode() + b"\n" + line))
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await dst.connect()
    try:
        tracemalloc.start()
        try:
            with open_input(str(path)) as stream, pytest.raises(TransferFormatError) as caught:
                await import_store(stream, dst, name="bomb", check_first=True, position_map=tmp_path / "map.db")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "bomb, line 2: a line of more than 1,000,000 JSON values" in str(caught.value)
        assert peak < 64 << 20, f"{peak >> 20} MiB"  # the line's bytes and the reader's buffers, not 4 million dicts
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0
    finally:
        await dst.close()


async def test_stream_metadata_text_full_of_commas_survives_export_and_import(tmp_path: Path) -> None:
    """The value-count bomb guard counts separators JSON text merely holds: a stream's metadata with a note of
    1,200,000 commas (a CSV pasted in, say) exported fine and was refused on import as "more than 1,000,000
    JSON values". Separators inside strings are no values: the file imports, the metadata comes back whole."""
    from eventsource.model import NewStream
    from eventsource.transfer import export_store

    note = "a," * 1_200_000
    src = SqliteProvider(f"sqlite:///{tmp_path / 'src.db'}")
    dst = SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await src.connect()
    await dst.connect()
    try:
        await src.create_stream(NewStream("s", metadata={"note": note}))
        path = tmp_path / "out.jsonl"
        with path.open("wb") as out:
            await export_store(src, out)
        with open_input(str(path)) as stream:
            await import_store(stream, dst, name="out", check_first=True, position_map=tmp_path / "map.db")
        info = await dst.get_stream_info("s")
        assert info is not None
        assert info.metadata == {"note": note}
    finally:
        await src.close()
        await dst.close()
