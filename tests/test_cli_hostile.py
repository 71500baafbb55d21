"""The ``eventsource`` command used the way a hostile caller would: closed or broken standard streams, input
that is not UTF-8, payloads no terminal encoding can print, and an exit-code table checked against behaviour.

Runs go through the installed console script when the standard streams themselves are under test (an
in-process run cannot close them), else through ``main`` in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import ProviderPlugin, console_script, isolate
from eventsource import ConfigurationError, EventData, SnapshotNotFoundError
from eventsource.cli import EXIT_CODES, EXIT_CONFLICT, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from eventsource.config import ManagerConfig
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def _store(tmp_path: Path, *streams: tuple[str, list[EventData]]) -> str:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        for stream_id, events in streams:
            m.append_events_batch(stream_id=stream_id, events=events)
    return url


def _script(
    tmp_path: Path, *argv: str, unbuffered: bool = False, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    script, env = console_script()
    if unbuffered:  # PYTHONUNBUFFERED=1 (common in containers): every write reaches the pipe at once
        env["PYTHONUNBUFFERED"] = "1"
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


def test_a_closed_stdout_is_refused_before_anything_is_done(tmp_path: Path) -> None:
    """``eventsource append s E >&-``: the event was written, then an AttributeError traceback came out (exit 1)."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    for argv in (("read", "s"), ("export",), ("append", "s", "E")):
        done = _script(tmp_path, "--store", url, *argv, stdout=None, preexec_fn=lambda: os.close(1))
        err = done.stderr.decode()
        assert done.returncode == EXIT_USAGE, (argv, err)
        assert "Traceback" not in err and "AttributeError" not in err, (argv, err)
        assert "stdout is closed" in err, (argv, err)
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert m.get_stream_info("s").version == 1  # the append refused: nothing written


def test_a_closed_stderr_never_puts_notes_or_errors_into_the_data_on_stdout(tmp_path: Path) -> None:
    """``eventsource export 2>&- > backup.jsonl``: the error line was written into the export itself."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    done = _script(tmp_path, "--store", url, "read", "s", "--json", stderr=None, preexec_fn=lambda: os.close(2))
    assert done.returncode == EXIT_OK
    assert [json.loads(line)["data"] for line in done.stdout.decode().splitlines()] == [{"n": 1}]
    done = _script(tmp_path, "--store", url, "read", "s", stderr=None, preexec_fn=lambda: os.close(2))
    assert done.returncode == EXIT_OK
    assert "event from" not in done.stdout.decode()  # the closing count is a note: stderr's, not the data's
    done = _script(tmp_path, "--store", url, "export", stderr=None, preexec_fn=lambda: os.close(2))
    assert done.returncode == EXIT_OK
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]  # every line of it is the export
    assert lines[0]["kind"] == "header"
    assert any(x["kind"] == "event" for x in lines)
    done = _script(tmp_path, "--store", url, "info", "missing", stderr=None, preexec_fn=lambda: os.close(2))
    assert done.returncode != EXIT_OK
    assert done.stdout == b""


def test_a_closed_stdin_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """``eventsource append s E - <&-`` said "unexpected AttributeError" (exit 1)."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    for argv in (("append", "s", "E", "-"), ("snapshot", "s", "-"), ("import", "--to", url)):
        done = _script(tmp_path, "--store", url, *argv, stdin=None, preexec_fn=lambda: os.close(0))
        err = done.stderr.decode()
        assert done.returncode == EXIT_USAGE, (argv, err)
        assert "stdin is closed" in err and "unexpected" not in err, (argv, err)


def test_a_gzip_export_to_a_reader_that_left_ends_quietly_like_a_plain_one(tmp_path: Path) -> None:
    """``eventsource export --gzip | true``: the gzip header's write met the closed pipe, reported as bad usage (2).

    Unbuffered, the header is written when the output is opened, where any ``OSError`` was taken for a file
    that cannot be created.
    """
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    for gz in ((), ("--gzip",)):
        for unbuffered in (False, True):
            reader, writer = os.pipe()
            os.close(reader)  # the reader has already left
            try:
                done = _script(tmp_path, "--store", url, "export", *gz, stdout=writer, unbuffered=unbuffered)
            finally:
                os.close(writer)
            err = done.stderr.decode()
            assert done.returncode == EXIT_OK, (gz, unbuffered, err)
            assert "error" not in err and "Traceback" not in err, (gz, unbuffered, err)


def test_a_payload_holding_a_lone_surrogate_is_printed_as_json_escapes(tmp_path: Path) -> None:
    """Payloads keep any ``str`` (a lone surrogate too), but ``read`` crashed on one: exit 1, output cut short.

    ``print`` cannot encode a lone surrogate to UTF-8; the JSON escape ``\\ud800`` reads back as the same text.
    """
    odd = "a\ud800b\udcff"
    url = _store(
        tmp_path,
        ("s", [EventData("E", {"n": 1}), EventData("E", {"k": odd, odd: 2}, metadata={"m": odd}), EventData("E", {})]),
    )
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.create_snapshot(stream_id="s", data={"state": odd}, metadata={"m": odd})
    done = _script(tmp_path, "--store", url, "read", "s", "--json")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [e["data"] for e in events] == [{"n": 1}, {"k": odd, odd: 2}, {}]
    assert events[1]["metadata"]["m"] == odd
    for argv in (
        ("read", "s"),
        ("follow", "--limit", "3"),
        ("snapshot", "s", "--get"),
        ("--json", "snapshot", "s", "--get"),
    ):
        done = _script(tmp_path, "--store", url, *argv)
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == EXIT_OK, (argv, err)
        assert "\\ud800" in out and "\\udcff" in out, (argv, out)
    assert json.loads(done.stdout)["data"] == {"state": odd}


def test_json_arguments_that_are_not_utf8_are_refused_not_stored_as_mangled_text(tmp_path: Path) -> None:
    """``append s E "$(cat latin1.json)"`` stored each non-UTF-8 byte as a lone surrogate (``\\udcff``), silently.

    Python reads such bytes (argv, stdin) as surrogate escapes; a JSON escape ``\\udcff`` written out in the text
    is the caller's choice and stays accepted.
    """
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    latin1 = b'{"name": "Jos\xe9"}'  # José in Latin-1
    for argv, stdin in (
        (("append", "s", "E", latin1.decode("utf-8", "surrogateescape")), b""),
        (("append", "s", "E", "{}", "--metadata", latin1.decode("utf-8", "surrogateescape")), b""),
        (("append", "s", "E", "-"), latin1),
        (("snapshot", "s", "-"), latin1),
    ):
        done = _script(tmp_path, "--store", url, *argv, stdin=None, input=stdin)
        err = done.stderr.decode()
        assert done.returncode == EXIT_USAGE, (argv, err)
        assert "not UTF-8" in err and "0xe9" in err, (argv, err)
    done = _script(tmp_path, "--store", url, "append", "s", "E", '{"k": "\\udcff"}')  # an escape, spelled out
    assert done.returncode == EXIT_OK, done.stderr.decode()
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        events = m.read_stream("s")
        assert [e.data for e in events] == [{"n": 1}, {"k": "\udcff"}]  # only the spelled-out escape was stored
        with pytest.raises(SnapshotNotFoundError):
            m.get_snapshot("s")


def test_a_config_file_that_is_not_text_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config backup.db`` (binary, not UTF-8) said "unexpected UnicodeDecodeError" and exited 1."""
    binary = tmp_path / "settings.json"
    binary.write_bytes(b"SQLite format 3\x00\xd4\xff\xfe" + bytes(range(256)))
    with pytest.raises(ConfigurationError, match="not UTF-8 text"):
        ManagerConfig.from_file(binary)
    for argv in (("--config", str(binary), "stats"), ("--config", str(binary), "export", "--from", "p")):
        code = main(list(argv), host=PluginHost(load_entrypoints=False))
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, (argv, err)
        assert "settings.json" in err and "not UTF-8 text" in err and "unexpected" not in err, (argv, err)


def test_an_import_line_nested_too_deeply_is_a_bad_file_not_an_unexpected_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crafted export line ``[[[[...]]]]`` said "unexpected RecursionError" (exit 1) instead of naming the line."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    assert main(["--store", url, "export", "-o", "good.jsonl"], host=PluginHost(load_entrypoints=False)) == EXIT_OK
    header = (tmp_path / "good.jsonl").read_text().splitlines()[0]
    deep = (header + "\n" + "[" * 100_000 + "]" * 100_000 + "\n").encode()
    (tmp_path / "deep.jsonl").write_bytes(deep)
    capsys.readouterr()
    target = f"sqlite:///{tmp_path / 'new.db'}"
    code = main(["import", "deep.jsonl", "--to", target], host=PluginHost(load_entrypoints=False))
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "deep.jsonl, line 2" in err and "unexpected" not in err, err
    assert not (tmp_path / "new.db").exists()  # a file is checked whole before the target is opened
    done = _script(tmp_path, "import", "--to", target, stdin=None, input=deep)  # a pipe: checked as it is read
    assert done.returncode == EXIT_USAGE, done.stderr.decode()
    assert "line 2" in done.stderr.decode() and "unexpected" not in done.stderr.decode()


def test_a_policy_or_config_file_nested_too_deeply_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--policy '{..[[[[...]]]]}'`` and a config file nesting as deep said "unexpected RecursionError" (exit 1)."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    deep = "[" * 100_000 + "]" * 100_000  # past Python 3.13's C recursion limit too (3.12's is the recursion limit)
    (tmp_path / "deep.json").write_text(f'{{"providers": {{}}, "x": {deep}}}')
    (tmp_path / "deep.toml").write_text(f"x = {deep}\n")
    for path in ("deep.json", "deep.toml"):
        with pytest.raises(ConfigurationError, match="nest"):
            ManagerConfig.from_file(tmp_path / path)
    for argv in (
        ("--store", url, "retention", "--yes", "--policy", f'{{"policy": "max_count", "max_events": {deep}}}'),
        ("--config", "deep.json", "stats"),
        ("--config", "deep.toml", "stats"),
    ):
        code = main(list(argv), host=PluginHost(load_entrypoints=False))
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, (argv[-2:], err)
        assert "nest" in err and "unexpected" not in err, (argv[-2:], err)
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert m.get_stream_info("s").event_count == 1


def test_an_environment_setting_nested_too_deeply_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EVENTSOURCE_RETENTION_POLICIES='[[[[...]]]]'`` made every command say "unexpected RecursionError"."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    monkeypatch.setenv("EVENTSOURCE_RETENTION_POLICIES", "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigurationError, match="retention_policies"):
        ManagerConfig.from_env()
    code = main(["--store", url, "stats"], host=PluginHost(load_entrypoints=False))
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "retention_policies" in err and "unexpected" not in err, err


def test_an_upcasters_module_that_fails_is_named_in_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``--upcasters`` module that does not import, or a function that raises, said "unexpected ValueError: boom"
    (exit 1), naming neither the option nor the module; the streams are left as they were."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    (tmp_path / "broken_upcasters.py").write_text("def register(registry):\n")
    (tmp_path / "raising_upcasters.py").write_text("def register(registry):\n    raise ValueError('boom')\n")
    (tmp_path / "failing_upcasters.py").write_text("x = 1 / 0\n")
    for spec in ("broken_upcasters:register", "raising_upcasters:register", "failing_upcasters:x"):
        code = main(
            ["--store", url, "upcast-rewrite", "s", "--upcasters", spec], host=PluginHost(load_entrypoints=False)
        )
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, (spec, err)
        assert f"--upcasters {spec!r}" in err and "unexpected" not in err, (spec, err)
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        assert [e.data for e in m.read_stream("s")] == [{"n": 1}]


class _CtrlCMidway(MemoryProvider):
    """A store where Ctrl-C arrives while retention truncates its second stream."""

    kind = "ctrlcmidway"

    async def truncate_stream(self, stream_id: str, before_version: int, **kwargs: Any) -> int:
        if stream_id == "b":
            raise KeyboardInterrupt
        return await super().truncate_stream(stream_id, before_version, **kwargs)


def test_retention_stopped_by_ctrl_c_says_what_it_deleted_stays_and_how_to_finish(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Ctrl-C part-way through ``retention --yes`` printed only "interrupted": nothing said that the events of
    the streams already done are gone, nor that running it again finishes (as copy, import and upcast-rewrite say).
    """
    host = PluginHost(load_entrypoints=False, plugins=[("ctrlc", ProviderPlugin((_CtrlCMidway, "ctrlcmidway")))])
    store = f"ctrlcmidway://{uuid.uuid4().hex}"
    for stream in ("a", "b"):
        for _ in range(3):
            assert main(["--store", store, "append", stream, "E"], host=host) == EXIT_OK
    capsys.readouterr()
    code = main(["--store", store, "retention", "--yes", "--policy", "max_count=1"], host=host)
    _, err = capsys.readouterr()
    assert code == EXIT_INTERRUPTED, err
    assert "retention stopped by Ctrl-C" in err, err
    assert "stays deleted" in err and "run the same command again" in err, err
    assert "max_count=1" in err and "default" in err, err  # the policy and the store it was running on


def test_an_empty_stream_pattern_is_refused_not_a_transfer_of_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export --stream "$PATTERN"`` with PATTERN unset exported 0 streams and exited 0, as if all went well."""
    url = _store(tmp_path, ("s", [EventData("E", {"n": 1})]))
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    for argv in (
        ("--store", url, "export", "--stream", "", "-o", "out.jsonl"),
        ("copy", "--from", url, "--to", target, "--stream", " "),
        ("--store", url, "import", "nothing.jsonl", "--stream", ""),
    ):
        code = main(list(argv), host=PluginHost(load_entrypoints=False))
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, (argv, err)
        assert "--stream" in err and "empty" in err, (argv, err)
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "copy.db").exists()
