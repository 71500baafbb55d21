"""Review of the transfer review's own fixes: regressions a reasonable user hits, each reproduced first.

The export now writes ``FILE.partial`` and renames it over ``FILE``; a copy now refuses target streams that
are not a copy of the source's. Each test failed on the code as merged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import subprocess
from typing import TYPE_CHECKING

from conftest import console_script

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
def _no_new_files(folder: Path) -> Iterator[None]:
    """``folder`` where no file can be created, its files still writable (root: immutable; others: mode 555)."""
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield
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


def test_cli_export_over_an_export_in_a_folder_without_room_for_a_new_file(tmp_path: Path) -> None:
    """An export file in a folder the user may not create files in (the file itself writable) was replaced in
    place; writing FILE.partial beside it failed, and the export was refused (exit 2) where it had worked."""
    url = _store(tmp_path)
    folder = tmp_path / "backups"
    folder.mkdir()
    backup = folder / "backup.jsonl"
    backup.write_bytes(b"")
    with _no_new_files(folder):
        run = _cli(["export", "--from", url, "-o", str(backup)], tmp_path)
    err = run.stderr.decode()
    assert run.returncode == 0, err
    assert backup.read_bytes().startswith(b'{"kind":"header"')
    assert "in place" in err  # says the earlier export is no longer kept whole if this run fails
    assert sorted(p.name for p in folder.iterdir()) == ["backup.jsonl"]
