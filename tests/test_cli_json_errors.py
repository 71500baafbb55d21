"""With ``--json`` every error on stderr is one JSON line of one shape; ``streams --limit`` says its bounds; an
export stopped by Ctrl-C says what it left and how to get a whole one (exit 130)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from conftest import console_script, isolate
from eventsource.cli import EXIT_INTERRUPTED, EXIT_USAGE, main
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)
SHAPE = {"type", "code", "message", "exit_code", "details"}
"""The keys of the ``error`` object of every ``--json`` error line (README: The command line)."""
SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)
"""Run the CLI with Ctrl-C as a KeyboardInterrupt even where the test runs with SIGINT ignored (a background job)."""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def error_line(err: str) -> dict[str, Any]:
    """The ``error`` object of stderr's last line (lines before it are progress: an export lists its streams)."""
    body: dict[str, Any] = json.loads(err.splitlines()[-1])["error"]
    assert set(body) == SHAPE, body
    return body


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "streams", "--limit", "x"],
        ["streams", "--limit", "0", "--json"],
        ["--json", "nosuch"],
        ["--json", "read"],
    ],
    ids=["not-a-number", "json-after-the-command", "unknown-command", "missing-argument"],
)
def test_a_command_line_argparse_refuses_with_json_is_the_json_error_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """argparse printed its usage and a text line even with ``--json``: the one error a script could not parse."""
    code = main(argv, host=HOST)
    out, err = capsys.readouterr()
    assert code == EXIT_USAGE and out == "" and len(err.splitlines()) == 1, err
    body = error_line(err)
    assert (body["type"], body["code"], body["exit_code"]) == ("validation", 400, EXIT_USAGE)
    assert "--help" in body["message"]


def test_without_json_argparse_refusals_stay_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", "--limit", "x"], host=HOST) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "error: argument --limit" in err


def test_streams_limit_help_says_what_it_counts_and_its_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", "--help"], host=HOST) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the most streams to show, one page: 1 to 10,000 (default: 50)" in text
    assert "--offset of the next page" in text


def test_a_streams_limit_past_a_page_is_refused_before_the_store_is_opened(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--limit 10001`` went to the store: a missing store said "no eventsource store" (exit 3), an existing one
    refused it only after connecting; the bound is the option's now."""
    code = main(["--store", f"sqlite:///{tmp_path / 'none.db'}", "--json", "streams", "--limit", "10001"], host=HOST)
    assert code == EXIT_USAGE
    assert "from 1 to 10,000" in error_line(capsys.readouterr().err)["message"]
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_export_stopped_by_ctrl_c_says_what_it_left_and_how_to_get_a_whole_one(
    tmp_path: Path, as_json: bool
) -> None:
    """A Ctrl-C part-way through an export printed only "interrupted": nothing said the output was cut short (an
    import refuses it) nor that an export starts over."""
    src = f"sqlite:///{tmp_path / 'src.db'}"
    with SyncEventSourcingManager({"providers": {"s": {"url": src}}, "default_provider": "s"}) as es:
        for k in range(0, 20_000, 1_000):
            es.append_events_batch(
                stream_id=f"s{k}", events=[{"event_type": "T", "data": {"i": i}} for i in range(k, k + 1_000)]
            )
    script, env = console_script()
    argv = [script, "--store", src, *(["--json"] if as_json else []), "export"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_DEFAULT, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith('{"kind":"header"')  # running; the pipe fills, unread, and it waits
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_INTERRUPTED, err
    message = error_line(err)["message"] if as_json else err
    assert "export stopped by Ctrl-C" in message, err
    assert "what went to stdout is cut short" in message and "import refuses it" in message, err
    assert "run the export again" in message, err
    if not as_json:
        assert err.splitlines()[-1] == "interrupted"


def test_a_copy_refused_part_way_with_json_says_what_it_left_in_the_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``--json`` the note that the streams written before the refusal stay on the target came as a text line
    before the JSON error line: a script reading the error never saw it. It is in the error's message now."""
    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with SyncEventSourcingManager({"providers": {"m": f"sqlite:///{src}"}}, host=HOST) as es:
        for s in range(5):
            es.append_events_batch(stream_id=f"s{s}", events=[{"event_type": "E", "data": {"n": i}} for i in range(3)])
    with SyncEventSourcingManager({"providers": {"m": f"sqlite:///{dst}"}}, host=HOST) as es:
        es.append_event(stream_id="s3", event_type="Other", data={})
    argv = ["--json", "copy", "--from", f"sqlite:///{src}", "--to", f"sqlite:///{dst}", "--map", str(tmp_path / "m.db")]
    assert main(argv, host=HOST) == 4  # conflict
    err = capsys.readouterr().err
    assert not [line for line in err.splitlines()[:-1] if "stays on the target" in line], err
    body = error_line(err)
    assert body["type"] == "conflict" and "'s3'" in body["message"], body
    assert "stays on the target" in body["message"] and "run the same copy again" in body["message"], body
