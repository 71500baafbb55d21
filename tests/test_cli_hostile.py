"""The ``eventsource`` command used the way a hostile caller would: closed or broken standard streams, input
that is not UTF-8, payloads no terminal encoding can print, and an exit-code table checked against behaviour.

Runs go through the installed console script when the standard streams themselves are under test (an
in-process run cannot close them), else through ``main`` in-process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import console_script, isolate
from eventsource.cli import EXIT_CODES, EXIT_CONFLICT, EXIT_INTERRUPTED, EXIT_OK, main
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from eventsource import EventData


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def _store(tmp_path: Path, *streams: tuple[str, list[EventData]]) -> str:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        for stream_id, events in streams:
            m.append_events_batch(stream_id=stream_id, events=events)
    return url


def _script(tmp_path: Path, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    script, env = console_script()
    options: dict[str, object] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL}
    options.update(kwargs)
    return subprocess.run([script, *argv], cwd=tmp_path, env=env, timeout=120, check=False, **options)  # type: ignore[call-overload,no-any-return]


def test_help_exit_code_table_names_the_interrupted_code(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C exits 130 (README, every long command); the table ``eventsource --help`` prints listed 0-7 only."""
    assert main(["--help"], host=PluginHost(load_entrypoints=False)) == EXIT_OK
    out = capsys.readouterr().out
    table = out[out.index("exit codes:") :]
    rows = {line.split()[0] for line in table.splitlines()[1:] if line.strip()}
    assert str(EXIT_INTERRUPTED) in rows, table
    assert EXIT_INTERRUPTED in EXIT_CODES
    assert "copy --verify" in EXIT_CODES[EXIT_CONFLICT]  # its exit 4 on a difference is no write conflict
