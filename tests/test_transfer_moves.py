"""Findings of the attacker's and newcomer's review of moving data (copy, export, import, verify) and of the CLI's long
operations, each reproduced by a test that failed on the code as it was.

Stores are real SQLite files and memory stores; the round trips through PostgreSQL and NATS are in the kafka
plugin's tests, where every plugin is installed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.cli.main import main
from eventsource.cli.output import Output
from eventsource.cli.transfer import ProgressView, map_path
from eventsource.errors import ConfigurationError
from eventsource.model import NO_STREAM, NewEvent, NewStream, RecordedSnapshot, utcnow
from eventsource.plugins import PluginHost
from eventsource.timestamps import from_us
from eventsource.transfer import PositionMap, TransferProgress, copy_store, export_store, verify_stores

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import OpenSqlite
    from eventsource.sqlite import SqliteProvider


def _store_with_events(path: Path) -> str:
    url = f"sqlite:///{path}"
    for n in (1, 2):
        assert main(["--store", url, "append", "s1", "E", json.dumps({"n": n})], host=PluginHost()) == 0
    return url


# -- a target whose create_store is off, and missing: the error named it "the source store"


@pytest.mark.parametrize("command", ["copy", "import"])
def test_cli_a_missing_target_with_create_store_off_is_named_as_the_target(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--to 'sqlite:///x.db?create_store=false'`` (or a --config provider with it off) that does not exist.

    The error said "the source store sqlite:///x.db?create_store=false does not exist", with ``field: source``:
    a newcomer checked the source, which was fine, and never the target's setting.
    """
    src = _store_with_events(tmp_path / "src.db")
    assert main(["export", "--from", src, "-o", str(tmp_path / "out.jsonl")], host=PluginHost()) == 0
    capsys.readouterr()
    missing = tmp_path / "missing.db"
    target = f"sqlite:///{missing}?create_store=false"
    where = ["--from", src] if command == "copy" else [str(tmp_path / "out.jsonl")]
    argv = ["--json", command, *where, "--to", target, "--map", str(tmp_path / "m.db")]
    code = main(argv, host=PluginHost())
    err = capsys.readouterr().err
    assert code == 2, err
    body = json.loads(err.splitlines()[-1])["error"]
    assert body["message"].startswith(f"the target store {target} does not exist: "), body
    assert "create_store" in body["message"].partition("does not exist: ")[2], body
    assert "source" not in body["message"], body
    assert body["details"]["field"] == "target", body
    assert not missing.exists()


# -- progress: the streams were listed, and their snapshots looked for, with no progress at all


async def _many_streams(p: SqliteProvider, n: int) -> None:
    """``n`` streams of one event each, every third with a snapshot."""
    for i in range(n):
        sid = f"s{i:05d}"
        event = NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())
        await p.append(sid, [event], NO_STREAM, NewStream(sid, "n", None, None, {}))
        if i % 3 == 0:
            await p.save_snapshot(RecordedSnapshot(f"snap-{i}", sid, 1, b"{}", b"", "json", from_us(0)))


@pytest.mark.parametrize("how", ["copy", "export"])
async def test_progress_is_reported_while_streams_are_listed_and_snapshots_looked_for(
    how: str, open_sqlite: OpenSqlite
) -> None:
    """Progress came only after a write of events (a window of 10,000): before the first, the copy listed every
    stream (asking the target for each), and after the last it looked for every stream's snapshots, silently.

    5,000 streams of one event into PostgreSQL: 1.6 s listing, 2.1 s of events, then 7.9 s of snapshots with the
    line standing at "5,000 of 5,000 events, ETA 0m00s"; at 100,000 streams, minutes with nothing moving.
    """
    src = await open_sqlite()
    await _many_streams(src, 250)
    seen: list[TransferProgress] = []
    if how == "copy":
        await copy_store(src, await open_sqlite(), progress=seen.append)
    else:
        await export_store(src, io.BytesIO(), progress=seen.append)
    phases = [p.phase for p in seen]
    assert "streams" in phases, phases
    assert "snapshots" in phases, phases
    first_write = phases.index("write")
    assert phases.index("streams") < first_write, phases
    assert {p.phase for p in seen[:first_write]} == {"streams"}, phases
    listed = [p.streams for p in seen if p.phase == "streams"]
    assert listed == sorted(listed), listed
    assert listed[-1] == 250, listed
    last_write = len(phases) - 1 - phases[::-1].index("write")
    after = seen[last_write + 1 :]
    assert after, phases
    assert {p.phase for p in after} == {"snapshots"}, phases
    assert (after[-1].streams, after[-1].stream_total, after[-1].events) == (250, 250, 250)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_says_what_the_copy_is_doing_after_its_events() -> None:
    """After the last event the line stood at "N of N events, ETA 0m00s" while snapshots took minutes."""
    err = _Terminal()
    out = Output(as_json=False, stdout=io.StringIO(), stderr=err)
    view = ProgressView(out, "copy")
    view(TransferProgress(5000, 5000, 3.0, phase="snapshots", streams=1200, stream_total=5000))
    line = err.getvalue().rpartition("\r\x1b[K")[2]
    assert line == "copy: 5,000 events; snapshots: 1,200 of 5,000 streams looked at", line
    view.last = 0.0
    view(TransferProgress(0, None, 1.0, phase="streams", streams=12_300))
    line = err.getvalue().rpartition("\r\x1b[K")[2]
    assert line == "copy: 12,300 streams listed", line


# -- a copy into its own source: "0 written, 2 already there", and --verify said "verified"


async def test_a_copy_into_its_own_source_is_refused(tmp_path: Path, open_sqlite: OpenSqlite) -> None:
    """The same provider, or the same file under another spelling: the copy wrote nothing and said it succeeded.

    A newcomer who mistyped --to (or pasted the source twice) got "copied: ... 0 written, 2 already there" and,
    with --verify, "verified: 1 streams, 2 events match": a backup they do not have.
    """
    src = await open_sqlite(tmp_path / "events.db")
    await src.append("s1", [NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())], NO_STREAM)
    again = await open_sqlite(tmp_path / "sub" / ".." / "events.db")
    for target in (src, again):
        with pytest.raises(ConfigurationError, match="the source and the target are the same store"):
            await copy_store(src, target, position_map=tmp_path / "map.db", verify=True)
    assert not (tmp_path / "map.db").exists()


def test_cli_a_copy_into_its_own_source_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = _store_with_events(tmp_path / "events.db")
    capsys.readouterr()
    code = main(["copy", "--from", url, "--to", "sqlite:///events.db", "--verify"], host=PluginHost())
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.startswith("error: copy_store: the source and the target are the same store"), err
    assert len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("eventsource-map-*")), list(tmp_path.iterdir())


# -- verify must fail: one field changed on the target, anywhere, is a difference naming it

_BASE = NewEvent(
    "e-2", "Placed", b'{"n":1}', b'{"m":1}', "json", from_us(1_700_000_000_123_456), "c", "cause", "u", "t", "a", "A"
)
_EVENT_CHANGES: dict[str, tuple[dict[str, object], str]] = {
    "event_id": ({"event_id": "e-other"}, "the event id differs"),
    "event_type": ({"event_type": "Placed2"}, "the event type differs"),
    "encoding": ({"encoding": "json+zlib"}, "the encoding differs"),
    "data": ({"data": b'{"n":2}'}, "the data differs"),
    "metadata": ({"metadata": b""}, "the metadata differs"),
    "timestamp": ({"timestamp": from_us(1_700_000_000_123_457)}, "the timestamp differs"),
    "correlation_id": ({"correlation_id": None}, "the correlation id differs"),
    "causation_id": ({"causation_id": "cause2"}, "the causation id differs"),
    "user_id": ({"user_id": None}, "the user id differs"),
    "tenant_id": ({"tenant_id": "t2"}, "the tenant id differs"),
    "aggregate_id": ({"aggregate_id": "a2"}, "the aggregate id differs"),
    "aggregate_type": ({"aggregate_type": None}, "the aggregate type differs"),
}


@pytest.mark.parametrize("name", sorted(_EVENT_CHANGES))
async def test_verify_sees_one_event_field_changed_on_the_target(name: str, open_sqlite: OpenSqlite) -> None:
    changes, said = _EVENT_CHANGES[name]
    src, dst = await open_sqlite(), await open_sqlite()
    first = NewEvent("e-1", "Placed", b"{}", b"", "json", from_us(0))
    await src.append("s", [first, _BASE], NO_STREAM)
    await dst.append("s", [first, dataclasses.replace(_BASE, **changes)], NO_STREAM)  # type: ignore[arg-type]
    report = await verify_stores(src, dst)
    assert report.differences == [f"stream 's': version 2: {said}"]
    assert not report.ok


_STREAM_CHANGES: dict[str, tuple[dict[str, object], str]] = {
    "name": ({"name": "other"}, "the name differs ('n' on the source, 'other' on the target)"),
    "aggregate_id": ({"aggregate_id": None}, "the aggregate id differs ('a' on the source, None on the target)"),
    "aggregate_type": ({"aggregate_type": "B"}, "the aggregate type differs ('A' on the source, 'B' on the target)"),
    "metadata value": ({"metadata": {"k": [1, {"deep": "y"}]}}, "the metadata differs"),
    "metadata key": ({"metadata": {"k": [1, {"deeper": "x"}]}}, "the metadata differs"),
    "metadata float": ({"metadata": {"k": [1.0000000000000002, {"deep": "x"}]}}, "the metadata differs"),
    "metadata bool": ({"metadata": {"k": [True, {"deep": "x"}]}}, "the metadata differs"),
}


@pytest.mark.parametrize("name", sorted(_STREAM_CHANGES))
async def test_verify_sees_one_stream_attribute_changed_on_the_target(name: str, open_sqlite: OpenSqlite) -> None:
    changes, said = _STREAM_CHANGES[name]
    src, dst = await open_sqlite(), await open_sqlite()
    attrs = NewStream("s", "n", "a", "A", {"k": [1, {"deep": "x"}]})
    await src.create_stream(attrs)
    await dst.create_stream(dataclasses.replace(attrs, **changes))  # type: ignore[arg-type]
    report = await verify_stores(src, dst)
    assert report.differences == [f"stream 's': {said}"]


_SNAP = RecordedSnapshot("snap-1", "s", 1, b'{"x":1}', b'{"m":1}', "json", from_us(1_000_001), "a", "A")
_SNAPSHOT_CHANGES: dict[str, tuple[dict[str, object], str]] = {
    "snapshot_id": ({"snapshot_id": "snap-2"}, "its id differs"),
    "encoding": ({"encoding": "json+zlib"}, "its encoding differs"),
    "data": ({"data": b'{"x":2}'}, "its data differs"),
    "metadata": ({"metadata": b""}, "its metadata differs"),
    "created_at": ({"created_at": from_us(1_000_002)}, "its creation time differs"),
    "aggregate_id": ({"aggregate_id": "b"}, "its aggregate id differs"),
    "aggregate_type": ({"aggregate_type": None}, "its aggregate type differs"),
}


@pytest.mark.parametrize("name", sorted(_SNAPSHOT_CHANGES))
async def test_verify_sees_one_snapshot_field_changed_on_the_target(name: str, open_sqlite: OpenSqlite) -> None:
    changes, said = _SNAPSHOT_CHANGES[name]
    src, dst = await open_sqlite(), await open_sqlite()
    for p, snap in ((src, _SNAP), (dst, dataclasses.replace(_SNAP, **changes))):  # type: ignore[arg-type]
        await p.append("s", [_BASE], NO_STREAM)
        await p.save_snapshot(snap)
    report = await verify_stores(src, dst)
    assert report.differences == [f"stream 's': the snapshot at version 1: {said}"]


async def test_verify_sees_a_snapshot_at_another_version(open_sqlite: OpenSqlite) -> None:
    src, dst = await open_sqlite(), await open_sqlite()
    second = NewEvent("e-3", "Placed", b"{}", b"", "json", from_us(0))
    for p, version in ((src, 1), (dst, 2)):
        await p.append("s", [_BASE, second], NO_STREAM)
        await p.save_snapshot(dataclasses.replace(_SNAP, version=version))
    report = await verify_stores(src, dst)
    assert report.differences == ["stream 's': the snapshot at version 1 is missing on the target"]


# -- the default map of a --config name: two configs naming two stores alike shared one map


def _config(path: Path, url: str) -> str:
    path.write_text(json.dumps({"providers": {"backup": {"url": url}}, "default_provider": "backup"}))
    return str(path)


def test_cli_two_configs_naming_two_stores_alike_get_two_default_maps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--to backup`` in two --config files that name different stores ``backup``: the default map was named after
    the word ``backup``, so the second copy found the first one's map and was refused ("the position map ... was
    written for a target that does not hold what it maps ... remove the map file"), which, followed, threw away the
    first copy's map (the one its checkpoints translate through). The docs promise two copies never share one.
    """
    monkeypatch.chdir(tmp_path)
    src = _store_with_events(tmp_path / "src.db")
    configs = [_config(tmp_path / f"{n}.json", f"sqlite:///{tmp_path / n}.db") for n in ("a", "b")]
    maps: list[str] = []
    for config in [*configs, configs[0]]:
        capsys.readouterr()
        code = main(["--json", "--config", config, "copy", "--from", src, "--to", "backup"], host=PluginHost())
        out, err = capsys.readouterr()
        assert code == 0, err
        summary = json.loads(out)
        maps.append(summary["position_map"])
    assert maps[0] != maps[1]
    assert maps[2] == maps[0]
    assert summary["written"] == 0  # the re-run found its own map


def test_the_default_map_a_config_name_had_is_taken_over_by_its_own_target_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default map named after the word ``backup`` (as before) is taken over by the copy whose target it maps."""
    monkeypatch.chdir(tmp_path)
    src = _store_with_events(tmp_path / "src.db")
    a, b = (_config(tmp_path / f"{n}.json", f"sqlite:///{tmp_path / n}.db") for n in ("a", "b"))
    assert main(["--config", a, "copy", "--from", src, "--to", "backup", "--map", "m.db"], host=PluginHost()) == 0
    earlier = map_path(None, src, "backup")
    (tmp_path / "m.db").rename(earlier)
    argv = ["--json", "--config", b, "copy", "--from", src, "--to", "backup"]
    capsys.readouterr()
    assert main(argv, host=PluginHost()) == 0, capsys.readouterr().err  # not b's map: left alone
    assert json.loads(capsys.readouterr().out)["position_map"] != earlier
    assert (tmp_path / earlier).is_file()
    argv = ["--json", "--config", a, "copy", "--from", src, "--to", "backup"]
    assert main(argv, host=PluginHost()) == 0, capsys.readouterr().err
    taken = json.loads(capsys.readouterr().out)["position_map"]
    assert not (tmp_path / earlier).exists()
    positions = PositionMap(tmp_path / taken)
    try:
        assert len(positions) == 2  # a's entries, carried on
    finally:
        positions.close()
