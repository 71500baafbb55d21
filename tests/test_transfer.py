"""Copy between stores, export and import (issue #15): stored bytes kept, re-runs idempotent, checkpoints translated.

Sources and targets here are the in-memory and SQLite stores; the chain through PostgreSQL, NATS and Kafka
runs in the kafka plugin's tests, where every plugin is installed.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eventsource.checkpoints.base import Checkpoint
from eventsource.cli.main import main
from eventsource.errors import ConcurrencyError, ProviderNotFoundError, TransferFormatError, VerificationError
from eventsource.memory import MemoryProvider
from eventsource.model import NewEvent, NewStream
from eventsource.plugins import PluginHost
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import KILLED_COPY, decoded, manager_on
from eventsource.timestamps import from_us
from eventsource.transfer import (
    PLACEHOLDER_TYPE,
    PositionMap,
    StoreSink,
    TransferProgress,
    copy_store,
    export_store,
    import_store,
    open_input,
    verify_stores,
)

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager


async def sqlite_target(path: Path) -> EventSourcingManager:
    return await manager_on(SqliteProvider(f"sqlite:///{path}"))


async def test_copy_keeps_every_byte_and_decrypts_at_the_target(source: EventSourcingManager, tmp_path: Path) -> None:
    target = await sqlite_target(tmp_path / "target.db")
    try:
        src, dst = source.get_default_provider(), target.get_default_provider()
        result = await copy_store(src, dst, position_map=tmp_path / "map.db", verify=True)
        assert result.verify is not None
        assert result.verify.ok, result.verify.differences
        assert result.written == result.events == 600 - 2  # stream 0 was truncated below version 3
        assert result.streams == 21
        assert result.snapshots == 8
        assert await decoded(target) == await decoded(source)
        info = await dst.get_stream_info("s-0000")
        src_info = await src.get_stream_info("s-0000")
        assert info is not None
        assert src_info is not None
        assert (info.first_version, info.version, info.event_count) == (3, src_info.version, src_info.event_count)
        assert (info.name, info.aggregate_id, info.metadata) == ("name 0", "agg-0", {"i": 0})
        assert (await dst.get_stream_info("s-empty")) is not None
        async for rec in dst.read_all():
            assert rec.event_type != PLACEHOLDER_TYPE
    finally:
        await target.close()


async def test_placeholders_left_by_a_killed_copy_are_truncated_on_rerun(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    info = await src.get_stream_info("s-0000")
    assert info is not None
    assert info.first_version == 3
    # what a copy killed between the placeholders and their truncation leaves behind
    await dst.create_stream(NewStream("s-0000", "name 0", "agg-0", "Order", {"i": 0}))
    await StoreSink(dst, PositionMap())._placeholders("s-0000", 0, 2)
    assert [r.event_type async for r in dst.read_stream("s-0000")] == [PLACEHOLDER_TYPE] * 2
    result = await copy_store(src, dst, verify=True)
    assert result.verify is not None
    assert result.verify.ok, result.verify.differences
    assert result.verify.snapshots == 8
    versions = [r.version async for r in dst.read_stream("s-0000")]
    assert versions[:1] == [3]
    assert PLACEHOLDER_TYPE not in {r.event_type async for r in dst.read_all()}


async def test_a_stream_retention_emptied_keeps_its_version(source: EventSourcingManager, tmp_path: Path) -> None:
    src = source.get_default_provider()
    info = await src.get_stream_info("s-0005")
    assert info is not None
    await src.truncate_stream("s-0005", info.version + 1)  # every event gone, the version stays
    target = await sqlite_target(tmp_path / "target.db")
    try:
        dst = target.get_default_provider()
        result = await copy_store(src, dst, verify=True)
        assert result.verify is not None
        assert result.verify.ok, result.verify.differences
        copied = await dst.get_stream_info("s-0005")
        assert copied is not None
        assert (copied.version, copied.event_count, copied.first_version) == (info.version, 0, None)
        assert [r async for r in dst.read_stream("s-0005")] == []
        # the source's stream info, not the placeholders' (stamped 1970-01-01, with ids of their own)
        emptied = await src.get_stream_info("s-0005")
        assert emptied is not None
        assert (copied.updated_at, copied.last_event_id) == (emptied.updated_at, emptied.last_event_id)
    finally:
        await target.close()


async def test_a_rerun_after_a_kill_before_an_emptied_streams_placeholders_were_truncated_finishes_it(
    source: EventSourcingManager,
) -> None:
    """The top placeholder of a stream truncated to nothing carries the source's last event id and time (so the
    target's stream info reads as the source's): a re-run must still know it for this copy's, not another stream's."""
    src = source.get_default_provider()
    info = await src.get_stream_info("s-0005")
    assert info is not None
    await src.truncate_stream("s-0005", info.version + 1)
    emptied = await src.get_stream_info("s-0005")
    assert emptied is not None
    assert emptied.last_event_id is not None
    dst = MemoryProvider()
    await dst.connect()
    await dst.create_stream(
        NewStream("s-0005", emptied.name, emptied.aggregate_id, emptied.aggregate_type, dict(emptied.metadata))
    )
    top = (emptied.last_event_id, emptied.updated_at)
    await StoreSink(dst, PositionMap())._placeholders("s-0005", 0, emptied.version, top)  # killed before truncating
    result = await copy_store(src, dst, verify=True)
    assert result.verify is not None
    assert result.verify.ok, result.verify.differences
    copied = await dst.get_stream_info("s-0005")
    assert copied is not None
    assert (copied.version, copied.event_count, copied.first_version) == (emptied.version, 0, None)
    assert (copied.updated_at, copied.last_event_id) == (emptied.updated_at, emptied.last_event_id)


async def test_an_import_of_a_stream_truncated_to_nothing_keeps_the_sources_stream_info(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    """The export's stream line had no ``last_event_id``: an import read back a placeholder's, and 1970-01-01."""
    src = source.get_default_provider()
    info = await src.get_stream_info("s-0005")
    assert info is not None
    await src.truncate_stream("s-0005", info.version + 1)
    emptied = await src.get_stream_info("s-0005")
    assert emptied is not None
    out = io.BytesIO()
    await export_store(src, out)
    target = await sqlite_target(tmp_path / "restored.db")
    try:
        dst = target.get_default_provider()
        await import_store(io.BytesIO(out.getvalue()), dst, name="backup")
        copied = await dst.get_stream_info("s-0005")
        assert copied is not None
        assert (copied.version, copied.event_count, copied.first_version) == (emptied.version, 0, None)
        assert (copied.updated_at, copied.last_event_id) == (emptied.updated_at, emptied.last_event_id)
    finally:
        await target.close()


async def test_rerun_writes_nothing_and_the_map_translates_checkpoints(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    target = await sqlite_target(tmp_path / "target.db")
    try:
        src, dst = source.get_default_provider(), target.get_default_provider()
        await copy_store(src, dst, position_map=tmp_path / "map.db")
        again = await copy_store(src, dst, position_map=tmp_path / "map.db", verify=True)
        # the map's cursor says every event was written: nothing is read again
        assert (again.events, again.written, again.skipped, again.snapshots) == (0, 0, 0, 0)
        # without it (another map), every event is read and found on the target
        fresh = await copy_store(src, dst, position_map=tmp_path / "other.db", verify=True)
        assert (fresh.events, fresh.written, fresh.skipped, fresh.snapshots) == (598, 0, 598, 0)
        assert len(PositionMap(tmp_path / "other.db")) == 598  # ... and mapped from the target
        positions = PositionMap(tmp_path / "map.db")
        try:
            assert len(positions) == 598
            source_log = [rec async for rec in src.read_all()]
            target_ids = {rec.event_id: rec.position async for rec in dst.read_all()}
            for rec in source_log:
                assert positions.target(rec.position) == target_ids[rec.event_id]
            middle = source_log[300]
            cp = positions.translate_checkpoint(Checkpoint("sub", "store", "all", middle.position))
            done = {r.event_id for r in source_log[:301]}
            # every target event at or below the translated checkpoint was handled on the source
            assert all(eid in done for eid, pos in target_ids.items() if pos <= cp.position)
            assert cp.position > 0
            kept = Checkpoint("sub", "store", "stream:s-0001", 7)
            assert positions.translate_checkpoint(kept) == kept
        finally:
            positions.close()
    finally:
        await target.close()


async def test_stream_filter_copies_only_matching_streams(source: EventSourcingManager, tmp_path: Path) -> None:
    target = await sqlite_target(tmp_path / "target.db")
    try:
        src, dst = source.get_default_provider(), target.get_default_provider()
        result = await copy_store(src, dst, streams=["s-000*"], verify=True)
        assert result.streams == 10
        listed, total = await dst.list_streams(limit=100, offset=0)
        assert total == 10
        assert all(s.stream_id.startswith("s-000") for s in listed)
    finally:
        await target.close()


async def test_verify_reports_a_changed_payload(source: EventSourcingManager, tmp_path: Path) -> None:
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    await copy_store(src, dst)
    assert (await verify_stores(src, dst)).ok
    # one more event on the target only: its stream's count differs
    ev = NewEvent("extra-id", "T", b"x", b"", "json", from_us(0))
    await dst.append("s-0003", [ev], -1)
    report = await verify_stores(src, dst)
    assert not report.ok
    assert any("s-0003" in d for d in report.differences)
    with pytest.raises(VerificationError) as err:
        await copy_store(src, dst, verify=True)
    assert err.value.report is not None
    assert not err.value.report.ok


async def test_target_holding_other_events_is_refused(source: EventSourcingManager, tmp_path: Path) -> None:
    src = source.get_default_provider()
    dst = MemoryProvider()
    await dst.connect()
    await dst.append("s-0001", [NewEvent("other", "T", b"x", b"", "json", from_us(0))], -1)
    with pytest.raises(ConcurrencyError, match="s-0001"):
        await copy_store(src, dst)


async def test_export_import_round_trip_is_byte_equal(source: EventSourcingManager, tmp_path: Path) -> None:
    src = source.get_default_provider()
    path = tmp_path / "backup.jsonl.gz"
    with gzip.open(path, "wb") as out:
        exported = await export_store(src, out)  # type: ignore[arg-type]
    assert exported.events == 598
    target = await sqlite_target(tmp_path / "restored.db")
    try:
        dst = target.get_default_provider()
        with open_input(str(path)) as stream:
            imported = await import_store(stream, dst, name=str(path), check_first=True)
        assert imported.written == 598
        assert imported.snapshots == 8
        report = await verify_stores(src, dst)
        assert report.ok, report.differences
        assert await decoded(target) == await decoded(source)
        # exporting the restored store gives the same lines but for positions, the header and the order of events
        # within a page (a copy writes a page's events stream by stream)
        again = io.BytesIO()
        await export_store(dst, again)
        with gzip.open(path, "rb") as first:
            a = [_without_positions(line) for line in first.read().splitlines()[1:]]
        b = [_without_positions(line) for line in again.getvalue().splitlines()[1:]]
        assert sorted(a, key=_line_key) == sorted(b, key=_line_key)
    finally:
        await target.close()


def _line_key(d: dict[str, object]) -> tuple[str, str, int]:
    return (str(d["kind"]), str(d.get("stream_id")), int(d.get("version", 0)))  # type: ignore[call-overload]


def _without_positions(line: bytes) -> dict[str, object]:
    d = json.loads(line)
    for key in ("position", "created_at", "updated_at"):
        if (
            d.get("kind") in ("stream", "snapshot", "event")
            and key in d
            and not (d["kind"] == "snapshot" and key == "created_at")
        ):
            d.pop(key)
    d.pop("sha256", None)  # the end line's checksum covers the positions too
    return d


async def _export_text(src: MemoryProvider | SqliteProvider) -> list[bytes]:
    out = io.BytesIO()
    await export_store(src, out)
    return out.getvalue().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: [b'{"kind":"header"}\n', *lines[1:]], "not an eventsource export"),
        (lambda lines: [*lines[:5], lines[5][: len(lines[5]) // 2] + b"\n", *lines[6:]], "line 6: not a JSON line"),
        (lambda lines: lines[:-1], "no end line"),
        (lambda lines: [*lines[:5], *lines[6:]], "the end line counts"),
        (lambda lines: [*lines[:3], b'{"kind":"mystery"}\n', *lines[3:]], "unknown record kind"),
        (lambda lines: [*lines[:-2], lines[-2].replace(b'"data":"', b'"data":"!!'), lines[-1]], "a bad"),
    ],
)
async def test_a_damaged_export_is_refused_and_nothing_is_imported(
    source: EventSourcingManager, tmp_path: Path, damage: object, message: str
) -> None:
    lines = await _export_text(source.get_default_provider())
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(damage(lines)))  # type: ignore[operator]
    dst = MemoryProvider()
    await dst.connect()
    with open_input(str(path)) as stream, pytest.raises(TransferFormatError, match=message):
        await import_store(stream, dst, name=str(path), check_first=True)
    assert (await dst.list_streams(limit=10, offset=0))[1] == 0


def test_an_unreadable_export_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(TransferFormatError, match="cannot read the export"):
        open_input(str(tmp_path / "missing.jsonl"))


def test_cli_copy_verify_json(source: EventSourcingManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src_url = source.get_default_provider().url
    assert src_url is not None
    dst_url = f"sqlite:///{tmp_path / 'cli.db'}"
    argv = ["copy", "--from", src_url, "--to", dst_url, "--verify", "--json", "--map", str(tmp_path / "m.db")]
    code = main(argv, host=PluginHost())
    out = capsys.readouterr()
    assert code == 0, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["written"] == 598
    assert summary["verified"] is True
    assert summary["differences"] == []


def test_cli_verify_exits_4_and_lists_the_difference(
    source: EventSourcingManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_url = source.get_default_provider().url
    assert src_url is not None
    dst_url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["copy", "--from", src_url, "--to", dst_url, "--map", str(tmp_path / "m.db")], host=PluginHost()) == 0
    capsys.readouterr()
    argv = ["copy", "--from", src_url, "--to", dst_url, "--verify", "--json", "--map", str(tmp_path / "m.db")]
    assert main(["append", "s-0004", "T", "{}", "--store", dst_url], host=PluginHost()) == 0
    capsys.readouterr()
    code = main(argv, host=PluginHost())
    out = capsys.readouterr()
    assert code == 4, out.err
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert summary["verified"] is False
    assert summary["differences"] == [d for d in summary["differences"] if "s-0004" in d]
    assert summary["differences"]
    assert "difference: stream 's-0004'" in out.err


def test_cli_import_of_a_corrupted_file_is_one_line_and_exit_2(
    source: EventSourcingManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_url = source.get_default_provider().url
    assert src_url is not None
    path = tmp_path / "backup.jsonl"
    assert main(["export", "--from", src_url, "-o", str(path)], host=PluginHost()) == 0
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:10], b"{not json\n", *lines[11:]]))
    capsys.readouterr()
    dst = tmp_path / "restored.db"
    code = main(["import", str(path), "--to", f"sqlite:///{dst}", "--map", str(tmp_path / "m.db")], host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip() == f"error: {path}, line 11: not a JSON line (corrupted or cut short?)"
    code = main(["import", str(tmp_path / "nope.jsonl"), "--to", f"sqlite:///{dst}"], host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot read the export" in err


def test_cli_stores_named_in_the_config_carry_their_settings(
    source: EventSourcingManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src_url = source.get_default_provider().url
    dst_url = f"sqlite:///{tmp_path / 'named.db'}"
    cfg = tmp_path / "stores.json"
    bad = {"url": dst_url, "settings": {"busy_timeout": -1}}
    dst = {"url": dst_url, "settings": {"synchronous": "normal"}}
    cfg.write_text(json.dumps({"providers": {"src": src_url, "dst": dst, "bad": bad}}))
    argv = ["copy", "--config", str(cfg), "--from", "src", "--map", str(tmp_path / "m.db"), "--json"]
    assert main([*argv, "--to", "bad"], host=PluginHost()) == 2
    assert "busy_timeout" in capsys.readouterr().err  # the settings reached the provider
    assert main([*argv, "--to", "dst", "--verify"], host=PluginHost()) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["written"] == 598


def test_cli_unknown_url_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["copy", "--from", "nosuch://x", "--to", f"sqlite:///{tmp_path / 'x.db'}"], host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert "nosuch" in err
    with pytest.raises(ProviderNotFoundError):
        PluginHost().create_provider("nosuch://x")


def test_cli_export_import_through_a_pipe(source: EventSourcingManager, tmp_path: Path) -> None:
    src_url = source.get_default_provider().url
    assert src_url is not None
    dst_url = f"sqlite:///{tmp_path / 'piped.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    cmd = [script]
    env["HOME"] = str(tmp_path)
    run = functools.partial(subprocess.run, capture_output=True, env=env, cwd=tmp_path)
    exported = run([*cmd, "export", "--from", src_url, "--gzip"], check=True)
    assert exported.stdout[:2] == b"\x1f\x8b"
    imported = run([*cmd, "import", "--to", dst_url, "--json"], input=exported.stdout, check=True)
    assert json.loads(imported.stdout.decode().splitlines()[-1])["written"] == 598
    assert "import: 598 events" in imported.stderr.decode()  # stderr is a pipe: plain progress lines
    assert "\r" not in imported.stderr.decode()
    verified = run([*cmd, "copy", "--from", src_url, "--to", dst_url, "--verify", "--json"], check=False)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout.decode().splitlines()[-1])["written"] == 0
    assert len(list(tmp_path.glob("eventsource-map-*.db"))) == 2  # one per (source, target) pair


@pytest.mark.parametrize(("mode", "n"), [("progress", 300), ("append", 30)])
async def test_a_copy_killed_half_way_and_rerun_has_nothing_missing_or_doubled(
    source: EventSourcingManager, tmp_path: Path, mode: str, n: int
) -> None:
    src = source.get_default_provider()
    src_url = src.url
    assert src_url is not None
    dst_url = f"sqlite:///{tmp_path / 'killed.db'}"
    mapfile = str(tmp_path / "map.db")
    killed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", KILLED_COPY, src_url, dst_url, "{}", mapfile, mode, str(n)], check=False
    )
    assert killed.returncode == -signal.SIGKILL
    target = await sqlite_target(tmp_path / "killed.db")
    try:
        dst = target.get_default_provider()
        half = [rec async for rec in dst.read_all()]
        assert 0 < len(half) < 598
        positions = PositionMap(mapfile)
        try:
            mapped = len(positions)
        finally:
            positions.close()
        assert (mapped == len(half)) if mode == "progress" else (mapped < len(half))
        result = await copy_store(src, dst, position_map=mapfile, verify=True)
        assert result.written == 598 - len(half)
        ids = [rec.event_id async for rec in dst.read_all()]
        assert len(ids) == len(set(ids)) == 598
        assert await decoded(target) == await decoded(source)
        positions = PositionMap(mapfile)
        try:
            assert len(positions) == 598
        finally:
            positions.close()
    finally:
        await target.close()


def test_cli_export_to_a_path_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed ``error: FileNotFoundError: [Errno 2] ...`` and exited 1, the code of an unexpected failure."""
    src = f"sqlite:///{tmp_path / 'src.db'}"
    assert main(["append", "s-1", "T", "{}", "--store", src], host=PluginHost()) == 0
    capsys.readouterr()
    cases = ((tmp_path / "no" / "such" / "x.jsonl", "No such file or directory"), (tmp_path, "Is a directory"))
    for path, why in cases:
        code = main(["export", "--from", src, "-o", str(path)], host=PluginHost())
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.strip() == f"error: cannot write the export {str(path)!r}: {why}"


@pytest.mark.parametrize("command", ["export", "export --store", "copy"])
def test_cli_a_source_sqlite_file_that_does_not_exist_is_refused_not_created(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped source path made an empty store there, and the export or copy reported 0 events, exit 0."""
    missing = tmp_path / "typo.db"
    url = f"sqlite:///{missing}"
    argv = {
        "export": ["export", "--from", url, "-o", str(tmp_path / "out.jsonl")],
        "export --store": ["--store", url, "export", "-o", str(tmp_path / "out.jsonl")],
        "copy": ["copy", "--from", url, "--to", f"sqlite:///{tmp_path / 'dst.db'}", "--map", str(tmp_path / "m.db")],
    }[command]
    code = main(argv, host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip() == (
        f"error: the source store {url} does not exist: no file {str(missing)!r} "
        "(a sqlite:/// path is relative to the working directory, sqlite://// is absolute)"
    )
    assert not missing.exists()
    assert not (tmp_path / "dst.db").exists()


def test_cli_import_with_no_file_at_a_terminal_says_what_to_give_instead_of_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eventsource import --to URL`` typed without FILE sat silently waiting for an export on the keyboard."""

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    class Stdin:
        buffer = Terminal(b"")

        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Stdin())
    dst = tmp_path / "t.db"
    code = main(["import", "--to", f"sqlite:///{dst}", "--map", str(tmp_path / "m.db")], host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip() == (
        "error: no export FILE given, and stdin is a terminal: name the file "
        "(eventsource import backup.jsonl.gz) or pipe one in (zcat backup.jsonl.gz | eventsource import)"
    )
    assert not dst.exists()


async def test_import_of_a_file_reports_progress_while_it_checks_it(
    source: EventSourcingManager, tmp_path: Path
) -> None:
    """A file is read whole before anything is written: that pass showed nothing, however long the file."""
    path = tmp_path / "backup.jsonl"
    with path.open("wb") as out:
        await export_store(source.get_default_provider(), out)
    target = await sqlite_target(tmp_path / "restored.db")
    seen: list[TransferProgress] = []
    try:
        with open_input(str(path)) as stream:
            await import_store(stream, target.get_default_provider(), check_first=True, progress=seen.append)
    finally:
        await target.close()
    phases = [p.phase for p in seen]
    assert phases[0] == "check"
    assert [p.events for p in seen if p.phase == "check"][-1] == 598
    assert "write" in phases
    assert phases.index("write") > len(phases) - 1 - phases[::-1].index("check")


def test_cli_import_shows_the_check_of_a_file_on_a_terminal(
    source: EventSourcingManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    src_url = source.get_default_provider().url
    assert src_url is not None
    path = tmp_path / "backup.jsonl"
    assert main(["export", "--from", src_url, "-o", str(path)], host=PluginHost()) == 0
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    dst = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["import", str(path), "--to", dst, "--map", str(tmp_path / "m.db")], host=PluginHost()) == 0
    assert "import: checking 598 events" in tty.getvalue()


async def test_a_manager_passed_for_a_provider_is_refused_naming_the_fix(tmp_path: Path) -> None:
    """A newcomer passed ``es`` to copy_store and got ``AttributeError: ... no attribute 'capabilities'``."""
    src = await sqlite_target(tmp_path / "src.db")
    dst = await sqlite_target(tmp_path / "dst.db")
    try:
        await src.append_event(stream_id="s-1", event_type="A", data={})
        calls = {
            "copy_store": lambda: copy_store(src, dst.get_default_provider()),  # type: ignore[arg-type]
            "verify_stores": lambda: verify_stores(src.get_default_provider(), dst),  # type: ignore[arg-type]
            "export_store": lambda: export_store(src, io.BytesIO()),  # type: ignore[arg-type]
            "import_store": lambda: import_store(io.BytesIO(b""), dst),  # type: ignore[arg-type]
        }
        for name, call in calls.items():
            with pytest.raises(TypeError, match=r"get_provider\(\)") as info:
                await call()
            assert name in str(info.value)
        assert await dst.stream_exists("s-1") is False
    finally:
        await src.close()
        await dst.close()
