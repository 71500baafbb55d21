"""Review of the transfer review's own fixes: regressions a reasonable user hits, each reproduced first.

The export now writes ``FILE.partial`` and renames it over ``FILE``; a copy now refuses target streams that
are not a copy of the source's. Each test failed on the code as merged.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import os
import stat
import subprocess
import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import console_script
from eventsource.cli.transfer import map_path
from eventsource.errors import ConcurrencyError, ValidationError
from eventsource.model import NewEvent
from eventsource.sqlite import SqliteProvider
from eventsource.timestamps import from_us
from eventsource.transfer import PositionMap, copy_store
from eventsource.transfer.sink import PLACEHOLDER_TYPE

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    script, env = console_script()
    run = functools.partial(subprocess.run, capture_output=True, env=env, cwd=cwd, check=False, timeout=120)
    return run([script, *args])


def _store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    assert _cli(["append", "--store", url, "s", "T", '{"a": 1}'], tmp_path).returncode == 0
    return url


@contextlib.contextmanager
def _no_new_files(folder: Path) -> Iterator[bool]:
    """``folder`` where no file can be created, its files still writable (root: immutable; others: mode 555).

    Yields ``False`` where root cannot make it immutable (no ``chattr``, or a file system without the flag).
    """
    root = os.geteuid() == 0
    if root:
        try:
            subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            yield False
            return
    else:
        folder.chmod(0o555)
    try:
        yield True
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_cli_export_over_an_export_keeps_its_permissions(tmp_path: Path) -> None:
    """The nightly export made group-readable for the backup job: replacing it reset it to 0600 (it was written
    in place before, keeping its mode), so the job that reads it failed the next night."""
    url = _store(tmp_path)
    backup = tmp_path / "backup.jsonl"
    assert _cli(["export", "--from", url, "-o", str(backup)], tmp_path).returncode == 0
    backup.chmod(0o640)
    run = _cli(["export", "--from", url, "-o", str(backup)], tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640


@pytest.mark.parametrize("why", ["locked folder", "name at the length limit"])
def test_cli_export_over_an_export_in_a_folder_without_room_for_a_new_file(tmp_path: Path, why: str) -> None:
    """An export file in a folder the user may not create files in (the file itself writable) was replaced in
    place; writing FILE.partial beside it failed, and the export was refused (exit 2) where it had worked.
    A name too long to take the suffix is the same case (and the way to make it where a folder cannot be locked)."""
    url = _store(tmp_path)
    folder = tmp_path / "backups"
    folder.mkdir()
    name = "backup.jsonl" if why == "locked folder" else f"{'b' * 244}.jsonl"  # 250: the limit is 255
    backup = folder / name
    backup.write_bytes(b"")
    with _no_new_files(folder) if why == "locked folder" else contextlib.nullcontext(enter_result=False) as locked:
        if why == "locked folder" and not locked:  # root on a file system without the immutable flag
            backup = backup.rename(folder / f"{'b' * 244}.jsonl")
        run = _cli(["export", "--from", url, "-o", str(backup)], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert backup.read_bytes().startswith(b'{"kind":"header"')
    assert "in place" in err  # says the earlier export is no longer kept whole if this run fails
    assert sorted(p.name for p in folder.iterdir()) == [backup.name]


def _event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "T", b'{"a":1}', b"", "json", from_us(1_700_000_000_000_000))


async def test_a_rerun_after_the_source_truncated_past_the_target_leaves_no_placeholder(tmp_path: Path) -> None:
    """A copy took versions 1..4 of 'x'; the source then got 5..10 and retention kept 7..10 only.

    The re-run with the same map appended placeholders 5..6 after the target's real events, could not
    truncate them away (the first event is no placeholder), and reported success: every reader of the
    target saw two '$eventsource.transfer.placeholder' events.
    """
    src, dst = SqliteProvider(f"sqlite:///{tmp_path / 'src.db'}"), SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await src.connect()
    await dst.connect()
    try:
        await src.append("x", [_event() for _ in range(4)], 0)
        await copy_store(src, dst, position_map=tmp_path / "map.db")
        await src.append("x", [_event() for _ in range(6)], 4)
        await src.truncate_stream("x", 7)
        with pytest.raises(ValidationError, match=r"'x'.*versions 5\.\.6"):
            await copy_store(src, dst, position_map=tmp_path / "map.db")
        assert [r.event_type async for r in dst.read_stream("x")] == ["T"] * 4
        assert PLACEHOLDER_TYPE not in [r.event_type async for r in dst.read_all()]
    finally:
        await src.close()
        await dst.close()


def test_cli_export_onto_a_gzip_file_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    """'-o FILE' replaces only an export (docs/transfer.md); any gzip file passed for one, so
    'export -o backup.tar.gz' (a .jsonl.gz meant) replaced an archive with the export."""
    url = _store(tmp_path)
    archive = tmp_path / "backup.tar.gz"
    archive.write_bytes(gzip.compress(b"etc/passwd\x00" * 100))
    before = archive.read_bytes()
    run = _cli(["export", "--from", url, "-o", str(archive)], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert "not an eventsource export" in err
    assert archive.read_bytes() == before
    export = tmp_path / "events.jsonl.gz"
    for _ in range(2):  # a gzip export is still replaced
        again = _cli(["export", "--from", url, "-o", str(export)], tmp_path)
        assert again.returncode == 0, again.stderr.decode()


def test_the_default_map_an_earlier_release_named_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default map was renamed (named after the masked URLs); a catch-up copy after the upgrade found none.

    Without it, every stream the source's retention had trimmed since the last copy was refused ('holds event
    ... below the source's first stored version: the target stream is not a copy of the source's') though the
    target held just what earlier copies wrote, and the rest was read and compared again from the start.
    """
    monkeypatch.chdir(tmp_path)
    source, target = "postgresql://app:secret@db/events", "sqlite:///restored.db"
    raw = f"{source}\n{target}".encode()  # how the earlier release named it
    old = f"eventsource-map-{hashlib.sha256(raw).hexdigest()[:12]}.db"
    positions = PositionMap(old)
    positions.record([(1, 1, "x", 1, "e-1")], ("run", 1))
    positions.close()
    path = map_path(None, source, target)
    assert path != old
    assert sorted(p.name for p in tmp_path.iterdir()) == [path]  # the name carrying the password's hash is gone
    positions = PositionMap(path)
    try:
        assert positions.cursor("run") == 1
    finally:
        positions.close()
    assert map_path(None, source, target) == path


async def test_a_copy_with_another_map_after_source_retention_says_which_map_to_name(tmp_path: Path) -> None:
    """A copy took versions 1..6 of 'x'; the source then got 7..10 and kept only those. The re-run with a new
    map (another directory's default) is refused, as no event of the target's can be compared: the message
    said only 'the target stream is not a copy of the source's', though it was, and gave no way on."""
    src, dst = SqliteProvider(f"sqlite:///{tmp_path / 'src.db'}"), SqliteProvider(f"sqlite:///{tmp_path / 'dst.db'}")
    await src.connect()
    await dst.connect()
    try:
        await src.append("x", [_event() for _ in range(6)], 0)
        await copy_store(src, dst, position_map=tmp_path / "map.db")
        await src.append("x", [_event() for _ in range(4)], 6)
        await src.truncate_stream("x", 7)
        with pytest.raises(ConcurrencyError, match=r"'x'.*made with another position map.*--map"):
            await copy_store(src, dst, position_map=tmp_path / "elsewhere.db")
        result = await copy_store(src, dst, position_map=tmp_path / "map.db")
        assert (result.written, result.skipped) == (4, 0)
    finally:
        await src.close()
        await dst.close()
