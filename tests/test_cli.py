"""The ``eventsource`` command: real outcomes in the store, exit codes, one-line errors, no secrets.

Most tests run ``main([...])`` in-process on a named in-memory store (``memory://<uuid>`` is shared by
every manager in this process, so what one command wrote the next one reads). One test runs the
installed console script in a subprocess on the default embedded SQLite store.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import eventsource
import pytest
from conftest import ProviderPlugin, console_script, isolate
from eventsource import ConcurrencyError, EventData, ProviderUnavailableError
from eventsource.cli import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    PROGRESS_EVERY,
    STORE_ENV,
    build_parser,
    main,
)
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.provider import Capabilities
from eventsource.sync import SyncEventSourcingManager


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory, with no store or config from the environment."""
    isolate(tmp_path, monkeypatch)


@pytest.fixture
def store() -> str:
    """A named memory store, created (a command that only reads refuses one no instance has created)."""
    url = f"memory://cli-{uuid.uuid4().hex}"
    MemoryProvider(url)
    return url


@functools.cache
def builtin_host() -> PluginHost:
    """One host without entry points for every plain run (its registries are read-only after start-up)."""
    return PluginHost(load_entrypoints=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str, host: PluginHost | None = None) -> tuple[int, str, str]:
    code = main(list(argv), host=host if host is not None else builtin_host())
    out, err = capsys.readouterr()
    return code, out, err


def manager(store: str) -> SyncEventSourcingManager:
    return SyncEventSourcingManager({"providers": {"m": store}}, host=PluginHost(load_entrypoints=False))


def assert_one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, err)


# --------------------------------------------------------------------------- append / read


def test_append_then_read_round_trips(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, out, err = run(
        capsys, "--store", store, "append", "orders-1", "OrderCreated", '{"total": 9.5, "items": ["a"]}',
        "--metadata", '{"source": "cli"}', "--expected-version", "no_stream", "--correlation-id", "req-1",
        "--tenant-id", "t-1",
    )  # fmt: skip
    assert code == EXIT_OK, err
    assert "version 1" in out
    code, out, err = run(capsys, "--store", store, "append", "orders-1", "OrderPaid", "--expected-version", "1")
    assert code == EXIT_OK, err

    with manager(store) as m:
        events = list(m.read_stream("orders-1"))
    assert [(e.version, e.event_type) for e in events] == [(1, "OrderCreated"), (2, "OrderPaid")]
    assert events[0].data == {"total": 9.5, "items": ["a"]}
    assert events[0].metadata == {"source": "cli"}
    assert (events[0].correlation_id, events[0].tenant_id) == ("req-1", "t-1")
    assert events[1].data == {}

    code, out, err = run(capsys, "--store", store, "read", "orders-1")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert len(lines) == 2
    assert "OrderCreated" in lines[0] and '"total": 9.5' in lines[0] and "correlation=req-1" in lines[0]
    assert "2 events from 'orders-1' (versions 1-2)" in err


def test_read_json_lines_parse(capsys: pytest.CaptureFixture[str], store: str) -> None:
    with manager(store) as m:
        m.append_events_batch(stream_id="s", events=[EventData("E", {"n": i}, user_id="u") for i in range(5)])
    code, out, err = run(capsys, "--store", store, "read", "s", "--json")
    assert code == EXIT_OK
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["version"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["data"]["n"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0]["user_id"] == "u" and rows[0]["stream_id"] == "s"
    assert rows[0]["timestamp"].endswith("+00:00")
    assert err == ""  # --json and not a terminal: nothing but the data


def test_read_ranges_limit_and_backwards(capsys: pytest.CaptureFixture[str], store: str) -> None:
    with manager(store) as m:
        m.append_events_batch(stream_id="s", events=[EventData("E", {"n": i}) for i in range(10)])

    def versions(*extra: str) -> list[int]:
        code, out, _ = run(capsys, "--store", store, "--json", "read", "s", *extra)
        assert code == EXIT_OK
        return [json.loads(line)["version"] for line in out.splitlines()]

    assert versions("--from-version", "8") == [8, 9, 10]
    assert versions("--limit", "3") == [1, 2, 3]
    assert versions("--backwards", "--limit", "2") == [10, 9]
    assert versions("--backwards", "--from-version", "3") == [3, 2, 1]
    assert versions("--from-version", "11") == []


def test_read_shows_progress_on_a_terminal(
    capsys: pytest.CaptureFixture[str], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    n = PROGRESS_EVERY * 2 + 5
    with manager(store) as m:
        for start in range(0, n, 1000):
            m.append_events_batch(
                stream_id="big", events=[EventData("E", {"i": i}) for i in range(start, min(n, start + 1000))]
            )
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    code = main(["--store", store, "read", "big"], host=PluginHost(load_entrypoints=False))
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert len(out.splitlines()) == n
    shown = tty.getvalue()
    assert f"{PROGRESS_EVERY:,} events..." in shown
    assert f"{PROGRESS_EVERY * 2:,} events..." in shown
    assert f"{n:,} events from 'big'" in shown


def test_empty_stream_and_reading_past_the_end(capsys: pytest.CaptureFixture[str], store: str) -> None:
    with manager(store) as m:
        m.create_stream(stream_id="empty")
    code, out, err = run(capsys, "--store", store, "read", "empty")
    assert (code, out) == (EXIT_OK, "")
    assert "no events in 'empty' (stream is at version 0)" in err


def test_same_event_id_twice_is_reported_as_an_idempotent_retry(capsys: pytest.CaptureFixture[str], store: str) -> None:
    eid = str(uuid.uuid4())
    code, out, _ = run(capsys, "--store", store, "--json", "append", "s", "E", '{"a": 1}', "--event-id", eid)
    first = json.loads(out)
    assert code == EXIT_OK and first["event_id"] == eid and first["duplicate"] is False
    code, out, _ = run(capsys, "--store", store, "append", "s", "E", '{"a": 1}', "--event-id", eid)
    assert code == EXIT_OK
    assert "already stored" in out and "nothing written" in out
    with manager(store) as m:
        assert m.get_stream_info("s").version == 1


def test_data_from_stdin(capsys: pytest.CaptureFixture[str], store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"from": "stdin", "n": [1, 2]}'))
    code, _, err = run(capsys, "--store", store, "append", "s", "Piped", "-")
    assert code == EXIT_OK, err
    with manager(store) as m:
        assert next(iter(m.read_stream("s"))).data == {"from": "stdin", "n": [1, 2]}


# --------------------------------------------------------------------------- exit codes and errors


def test_missing_stream_exits_3(capsys: pytest.CaptureFixture[str], store: str) -> None:
    for argv in (("read", "nope"), ("info", "nope"), ("snapshot", "nope", "--get")):
        code, out, err = run(capsys, "--store", store, *argv)
        assert code == EXIT_NOT_FOUND, argv
        assert out == ""
        assert_one_line_error(err, "'nope'")
    code, _, err = run(capsys, "--store", store, "read", "nope")
    assert_one_line_error(err, "stream 'nope' does not exist")


def test_wrong_expected_version_exits_4_and_writes_nothing(capsys: pytest.CaptureFixture[str], store: str) -> None:
    with manager(store) as m:
        m.append_event(stream_id="s", event_type="E", data={})
    code, _, err = run(capsys, "--store", store, "append", "s", "E", "{}", "--expected-version", "5")
    assert code == EXIT_CONFLICT
    assert_one_line_error(err, "expected version 5", "actual version 1")
    code, _, err = run(capsys, "--store", store, "append", "s", "E", "{}", "--expected-version", "no_stream")
    assert code == EXIT_CONFLICT
    with manager(store) as m:
        assert m.get_stream_info("s").version == 1


def test_bad_json_and_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, _, err = run(capsys, "--store", store, "append", "s", "E", "{not json")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "DATA-JSON is not valid JSON")
    code, _, err = run(capsys, "--store", store, "append", "s", "E", "{}", "--metadata", "[1, 2]")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "--metadata must be a JSON object")
    code, _, err = run(capsys, "--store", store, "append", "s", "E", "--expected-version", "soon")
    assert code == EXIT_USAGE
    assert "expected a version number" in err and "Traceback" not in err
    code, _, err = run(capsys, "--store", store, "read", "s", "--limit", "0")
    assert code == EXIT_USAGE
    code, _, err = run(capsys)
    assert code == EXIT_USAGE
    code, _, err = run(capsys, "--store", store, "append", "", "E")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "stream id must not be empty")
    with manager(store) as m:
        assert m.list_streams().total_count == 0


def test_unknown_scheme_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--store", "nosuchstore://somewhere/x", "stats")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "'nosuchstore'", "known schemes", "memory")
    code, _, err = run(capsys, "--store", "just-a-path.db", "stats")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "not a store URL")


class _LeakyDown(MemoryProvider):
    """A store that is down, and whose driver puts the whole URL (password too) in its error."""

    kind = "leakydown"

    async def connect(self) -> None:
        logging.getLogger("leakydriver.pool").warning("pool error connecting to %s (password %s)", self.url, "secret")
        msg = f"could not connect to {self.url}: connection refused"
        raise ProviderUnavailableError(msg)


def test_unreachable_store_exits_5_with_the_url_masked(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("leaky", ProviderPlugin((_LeakyDown, "leaky")))])
    url = "leaky://user:secret@127.0.0.1:1/x"
    for verbose in ((), ("-v",)):
        code, out, err = run(capsys, "--store", url, *verbose, "stats", host=host)
        assert code == EXIT_UNAVAILABLE
        assert "secret" not in out + err
        assert "leaky://user:***@127.0.0.1:1/x" in err
        if not verbose:
            assert_one_line_error(err, "cannot reach the store", "check that the server is running")
        else:  # the driver's own warnings and the traceback are shown, scrubbed
            assert "Traceback" in err
            assert (
                "WARNING leakydriver.pool: pool error connecting to leaky://user:***@127.0.0.1:1/x (password ***)"
                in err
            )
    code, out, err = run(capsys, "--store", url, "--json", "health", host=host)
    assert code == EXIT_UNAVAILABLE
    assert json.loads(out)["default"]["healthy"] is False
    assert "secret" not in out + err


def test_an_unreachable_store_says_it_was_tried_more_than_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NATS host that never answered: 'cannot connect ... within 11s', printed after three tries and 33 s."""
    host = PluginHost(load_entrypoints=False, plugins=[("leaky", ProviderPlugin((_LeakyDown, "leaky")))])
    monkeypatch.setenv("EVENTSOURCE_RETRY_DELAY", "0")
    code, _, err = run(capsys, "--store", "leaky://127.0.0.1:1/x", "stats", host=host)
    assert code == EXIT_UNAVAILABLE
    assert_one_line_error(err, "connection refused (tried 3 times, retry_attempts);")
    monkeypatch.setenv("EVENTSOURCE_RETRY_ATTEMPTS", "1")
    code, _, err = run(capsys, "--store", "leaky://127.0.0.1:1/x", "stats", host=host)
    assert code == EXIT_UNAVAILABLE
    assert "tried" not in err


def test_postgres_url_password_never_shown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """With the postgres plugin installed the store is unreachable (5); without it the scheme is unknown (2)."""
    host = PluginHost()
    url = "postgresql://user:secret@127.0.0.1:1/x"
    expected = EXIT_UNAVAILABLE if "postgresql" in host.providers.schemes() else EXIT_USAGE
    quick = tmp_path / "quick.json"  # give up after one short attempt: the point is the message
    quick.write_text('{"retry_attempts": 1, "timeout": "2s"}')
    for argv in (("stats",), ("--json", "read", "s"), ("-v", "info", "s")):
        code, out, err = run(capsys, "--store", url, "--config", str(quick), *argv, host=host)
        assert code == expected, err
        assert "secret" not in out + err
        assert "postgresql://user:***@127.0.0.1:1/x" in err


class _Limited(MemoryProvider):
    """A store without snapshots."""

    kind = "limited"
    capabilities = Capabilities(unsupported=frozenset({"save_snapshot", "get_snapshot", "delete_snapshots"}))


class _Broken(MemoryProvider):
    """A store whose statistics fail with a plain bug."""

    kind = "brokenstats"

    async def stats(self) -> Any:
        msg = "boom in the driver"
        raise RuntimeError(msg)


def test_unsupported_operation_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("limited", ProviderPlugin((_Limited, "limited")))])
    store = f"limited://{uuid.uuid4().hex}"
    assert run(capsys, "--store", store, "append", "s", "E", host=host)[0] == EXIT_OK
    code, _, err = run(capsys, "--store", store, "snapshot", "s", '{"x": 1}', host=host)
    assert code == EXIT_UNSUPPORTED
    assert_one_line_error(err, "does not support save_snapshot")


def test_demo_on_a_store_without_snapshots_says_so_and_carries_on(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("limited", ProviderPlugin((_Limited, "limited")))])
    store = f"limited://{uuid.uuid4().hex}"
    code, out, err = run(capsys, "--store", store, "demo", host=host)
    assert code == EXIT_OK, err
    assert "skipped: provider 'limited' does not support save_snapshot" in out
    assert "now holds 4 events." in out
    assert "events:     4" in out


def test_unexpected_failure_exits_1_without_traceback_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    host = PluginHost(load_entrypoints=False, plugins=[("broken", ProviderPlugin((_Broken, "broken")))])
    code, _, err = run(capsys, "--store", "broken://", "stats", host=host)
    assert code == EXIT_ERROR
    assert_one_line_error(err, "RuntimeError", "boom in the driver", "-v")
    code, _, err = run(capsys, "--store", "broken://", "-v", "stats", host=host)
    assert code == EXIT_ERROR
    assert "Traceback" in err and "boom in the driver" in err


def test_json_errors_are_one_json_line(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, out, err = run(capsys, "--store", store, "--json", "info", "missing")
    assert code == EXIT_NOT_FOUND and out == ""
    (line,) = err.splitlines()
    body = json.loads(line)["error"]
    assert body["type"] == "not_found" and body["exit_code"] == EXIT_NOT_FOUND
    assert body["details"] == {"stream_id": "missing"}


# --------------------------------------------------------------------------- the other commands


def test_streams_info_snapshot_stats_health_json(capsys: pytest.CaptureFixture[str], store: str) -> None:
    with manager(store) as m:
        m.create_stream(stream_id="a", name="Stream A", aggregate_type="Order", metadata={"k": "v"})
        for sid in ("a", "b", "c"):
            m.append_events_batch(stream_id=sid, events=[EventData("E", {"n": 1}), EventData("F", {"n": 2})])

    code, out, _ = run(capsys, "--store", store, "--json", "streams", "--limit", "2")
    page = json.loads(out)
    assert code == EXIT_OK
    assert [s["stream_id"] for s in page["streams"]] == ["a", "b"]
    assert (page["total_count"], page["has_more"]) == (3, True)
    code, out, _ = run(capsys, "--store", store, "streams", "--limit", "2", "--offset", "2")
    assert "c" in out.split() and "3-3 of 3 streams" in out

    code, out, _ = run(capsys, "--store", store, "info", "a", "--json")
    info = json.loads(out)
    assert (info["version"], info["event_count"], info["name"], info["metadata"]) == (2, 2, "Stream A", {"k": "v"})
    code, out, _ = run(capsys, "--store", store, "info", "a")
    assert "Stream A" in out and "Order" in out

    code, out, err = run(
        capsys, "--store", store, "snapshot", "a", '{"total": 3}', "--metadata", '{"by": "cli"}', "--version", "1"
    )
    assert code == EXIT_OK, err
    code, out, _ = run(capsys, "--store", store, "--json", "snapshot", "a", "--get")
    snap = json.loads(out)
    assert (snap["version"], snap["data"], snap["metadata"]) == (1, {"total": 3}, {"by": "cli"})
    code, _, err = run(capsys, "--store", store, "snapshot", "a", '{"x": 1}', "--version", "9")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "snapshot version")
    code, _, err = run(capsys, "--store", store, "snapshot", "a")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "--get")

    code, out, _ = run(capsys, "--store", store, "--json", "stats")
    stats = json.loads(out)["default"]
    assert (stats["total_events"], stats["total_streams"], stats["total_snapshots"]) == (6, 3, 1)
    assert stats["events_by_type"] == {"E": 3, "F": 3}
    code, out, _ = run(capsys, "--store", store, "stats")
    assert "events:     6" in out

    code, out, _ = run(capsys, "--store", store, "health", "--json")
    assert code == EXIT_OK and json.loads(out)["default"]["healthy"] is True
    code, out, _ = run(capsys, "--store", store, "health")
    assert "healthy" in out


def test_providers_lists_the_builtin_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "providers", "--json")
    assert code == EXIT_OK
    rows = json.loads(out)["plugins"]
    memory = next(r for r in rows if r["type"] == "provider" and r["name"] == "memory")
    assert memory["distribution"] == "eventsource"
    assert memory["version"] == eventsource.__version__
    assert memory["schemes"] == ["memory"]
    code, out, _ = run(capsys, "providers")
    assert "memory://" in out and f"eventsource {eventsource.__version__}" in out


def test_demo_runs_twice_on_the_same_store(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, out, err = run(capsys, "--store", store, "demo")
    assert code == EXIT_OK, err
    assert "ConcurrencyError" in out and "snapshot" in out
    code, out, err = run(capsys, "--store", store, "demo")
    assert code == EXIT_OK, err
    assert "exists from an earlier run" in out
    with manager(store) as m:
        streams = [s.stream_id for s in m.list_streams().streams]
        assert len(streams) == 2 and "user-events" in streams
        for sid in streams:
            events = list(m.read_stream(sid))
            assert [e.event_type for e in events] == [
                "UserCreated",
                "UserEmailChanged",
                "UserProfileUpdated",
                "UserLoggedIn",
            ]
            created = events[0]
            assert (created.correlation_id, created.causation_id, created.user_id, created.tenant_id) == (
                "req-456", "cmd-789", "admin", "tenant-1",
            )  # fmt: skip
            assert created.metadata["source"] == "user-service"
            assert m.get_snapshot(sid).version == 4
            assert m.get_stream_info(sid).name == "User Events Stream"
            with pytest.raises(ConcurrencyError):
                m.append_event(stream_id=sid, event_type="X", data={}, expected_version=3)


def test_demo_json_steps_parse(capsys: pytest.CaptureFixture[str], store: str) -> None:
    code, out, _ = run(capsys, "--store", store, "--json", "demo")
    assert code == EXIT_OK
    steps = [json.loads(line)["step"] for line in out.splitlines()]
    assert steps[:5] == ["store", "create_stream", "append_event", "append_events_batch", "conflict"]
    assert steps.count("read") == 4 and steps[-1] == "stats"


# --------------------------------------------------------------------------- configuration


def test_store_from_environment(
    capsys: pytest.CaptureFixture[str], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, store)
    assert run(capsys, "append", "s", "E")[0] == EXIT_OK
    with manager(store) as m:
        assert m.get_stream_info("s").version == 1


def test_config_file_and_its_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, store: str) -> None:
    cfg = tmp_path / "es.toml"
    cfg.write_text(f'[eventsource]\nmax_batch_size = 2\ntimeout = "5s"\n[eventsource.providers]\nmain = "{store}"\n')
    assert run(capsys, "--config", str(cfg), "append", "s", "E")[0] == EXIT_OK
    with manager(store) as m:
        assert m.get_stream_info("s").version == 1
    other = f"memory://cli-{uuid.uuid4().hex}"
    assert run(capsys, "--config", str(cfg), "--store", other, "append", "t", "E")[0] == EXIT_OK
    with manager(other) as m:
        assert m.stream_exists("t")

    bad = tmp_path / "bad.json"
    bad.write_text('{"retry_attempts": 0}')
    code, _, err = run(capsys, "--config", str(bad), "stats")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "retry_attempts")
    bad.write_text('{"retries": 3}')
    code, _, err = run(capsys, "--config", str(bad), "stats")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "retries")
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "stats")
    assert code == EXIT_USAGE
    assert_one_line_error(err, "missing.toml")
    code, _, err = run(capsys, "--timeout", "soon", "stats")
    assert code == EXIT_USAGE


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == EXIT_OK
    commands = {"demo", "append", "read", "follow", "streams", "info", "snapshot", "stats", "projections", "health"}
    commands |= {"providers", "retention", "upcast-rewrite", "copy", "export", "import"}
    for command in commands:
        assert command in out
    assert "exit codes" in out
    subcommands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(subcommands) == commands


def test_help_gives_exit_3_for_a_missing_store_of_any_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """A read-only command refuses a store nothing created with 3 on every store, not only a SQLite file."""
    code, _, err = run(capsys, "--store", f"memory://absent-{uuid.uuid4().hex}", "stats")
    assert code == EXIT_NOT_FOUND, err
    assert "no eventsource store at memory://" in err
    _, out, _ = run(capsys, "--help")
    line = " ".join(next(x for x in out.splitlines() if x.strip().startswith(f"{EXIT_NOT_FOUND} ")).split())
    assert "SQLite" not in line, line  # it names the store, whatever its kind
    assert "store" in line, line


# --------------------------------------------------------------------------- the installed console script


def test_console_script_demo_on_the_default_sqlite_store(tmp_path: Path) -> None:
    script = shutil.which("eventsource", path=str(Path(sys.executable).parent))
    assert script is not None, "the eventsource console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_") or k.startswith("EVENTSOURCE_TEST_")}
    done = subprocess.run(
        [script, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "sqlite:///eventsource.db" in done.stdout
    assert "Read it again with:  eventsource read user-events" in done.stdout
    assert (tmp_path / "eventsource.db").exists()
    read = subprocess.run(
        [script, "read", "user-events", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == EXIT_OK, read.stderr
    assert [json.loads(line)["event_type"] for line in read.stdout.splitlines()] == [
        "UserCreated", "UserEmailChanged", "UserProfileUpdated", "UserLoggedIn",
    ]  # fmt: skip
    missing = subprocess.run(
        [script, "info", "nope"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert missing.returncode == EXIT_NOT_FOUND
    assert missing.stderr.strip() == "error: stream 'nope' does not exist"


def test_demo_hint_repeats_the_store_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "es.json"
    cfg.write_text(json.dumps({"providers": {"main": f"sqlite:///{tmp_path / 'x.db'}"}}))
    code, out, err = run(capsys, "--config", str(cfg), "demo")
    assert code == EXIT_OK, err
    assert f"Read it again with:  eventsource --config {cfg} read user-events" in out
    code, out, err = run(capsys, "--config", str(cfg), "read", "user-events", "--backwards", "--limit", "2")
    assert [line.split()[0] for line in out.splitlines()] == ["4", "3"]
    assert "2 events from 'user-events' (versions 3-4, newest first)" in err


def test_deeply_nested_json_and_an_offset_beyond_any_store_are_usage_errors(
    capsys: pytest.CaptureFixture[str], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("[" * 200_000))
    code, _, err = run(capsys, "--store", store, "append", "s", "T", "-")
    assert code == 2
    assert_one_line_error(err, "nests too deeply")
    code, _, err = run(capsys, "--store", store, "streams", "--offset", str(2**70))
    assert code == 2
    assert "Traceback" not in err


# --------------------------------------------------------------------------- pipes and Ctrl-C, as a person meets them


def test_a_reader_that_leaves_the_pipe_early_ends_the_run_quietly(tmp_path: Path) -> None:
    """``eventsource info s | true``: the output is still buffered when the reader leaves; no traceback, exit 0."""
    script, env = console_script()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="s", events=[EventData("E", {"n": i}) for i in range(3)])
        for start in (0, 1000):
            m.append_events_batch(stream_id="big", events=[EventData("E", {"n": start + i}) for i in range(1000)])
    for argv in (("info", "s"), ("read", "s", "--json"), ("read", "big"), ("demo",), ("info", "missing")):
        reader, writer = os.pipe()
        os.close(reader)  # the reader has already left
        try:
            done = subprocess.run(
                [script, "--store", url, *argv], stdout=writer, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
                text=True, timeout=120, check=False,
            )  # fmt: skip
        finally:
            os.close(writer)
        expected = EXIT_NOT_FOUND if argv[-1] == "missing" else EXIT_OK
        assert done.returncode == expected, (argv, done.stderr)
        assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr)


_DEFAULT_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _wait_until_reading_stdin(pid: int) -> None:
    """Wait (bounded) until the process blocks in a pipe read: a loaded machine may take seconds to start it."""
    wchan = Path(f"/proc/{pid}/wchan")
    for _ in range(600):
        if "pipe" in wchan.read_text():
            return
        time.sleep(0.05)


def test_one_ctrl_c_while_waiting_for_stdin_exits_130(tmp_path: Path) -> None:
    """``eventsource append s E -`` waiting on a terminal: the first Ctrl-C stops it (it once took two)."""
    script, env = console_script()
    proc = subprocess.Popen(
        # a run started in the background passes SIGINT on ignored: the command gets the default back first
        [sys.executable, "-c", _DEFAULT_SIGINT_THEN_EXEC, script, "--store", "memory://", "append", "s", "E", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env, text=True,
    )  # fmt: skip
    try:
        _wait_until_reading_stdin(proc.pid)  # past start-up: blocked reading DATA-JSON from stdin, which stays open
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("one Ctrl-C did not stop a command waiting for stdin")
        assert proc.returncode == EXIT_INTERRUPTED
        assert proc.stderr is not None
        assert proc.stderr.read().strip() == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_file_store_that_cannot_be_opened_names_the_file_not_a_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An embedded store has no server to check: the hint is about the file."""
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n")
    code, out, err = run(capsys, "--store", f"sqlite:///{junk}", "stats", host=PluginHost(load_entrypoints=False))
    assert (code, out) == (EXIT_UNAVAILABLE, "")
    assert_one_line_error(err, "cannot open the store at sqlite:///", "notes.db", "check the file's path")
    assert "server is running" not in err


def test_every_command_module_is_registered_once_under_its_own_name() -> None:
    """A command module copied but not listed in COMMANDS, or registering another module's name, fails here."""
    import pkgutil

    from eventsource.cli import commands

    names = [m.__name__.rsplit(".", 1)[-1] for m in commands.COMMANDS]
    assert sorted(names) == sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    # a command "a-b" lives in module a_b, one named after a Python keyword in a module with a trailing _ (import_)
    assert [c.replace("-", "_") for c in choices] == [n.removesuffix("_") for n in names]
    for name, parser in zip(names, choices.values(), strict=True):
        assert parser.get_default("handler").__module__ == f"eventsource.cli.commands.{name}"


def test_health_of_a_broken_file_store_gives_the_file_hint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n")
    code, out, err = run(capsys, "--store", f"sqlite:///{junk}", "health", host=PluginHost(load_entrypoints=False))
    assert code == EXIT_UNAVAILABLE
    assert "UNHEALTHY" in out
    assert "check the file's path" in err and "server is running" not in err


def test_reading_data_from_a_terminal_says_how_to_finish(
    capsys: pytest.CaptureFixture[str], store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``append s E -`` typed at a terminal: without a word it looks hung."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal('{"typed": true}'))
    code, _, err = run(capsys, "--store", store, "append", "s", "Typed", "-")
    assert code == EXIT_OK, err
    assert "reading DATA-JSON from the terminal" in err and "Ctrl-D" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"piped": true}'))
    code, _, err = run(capsys, "--store", store, "append", "s", "Piped", "-")
    assert code == EXIT_OK and "reading" not in err


def test_health_names_the_store_that_is_down_among_several(
    capsys: pytest.CaptureFixture[str], store: str, tmp_path: Path
) -> None:
    """A config with a healthy default store and a broken second one: health blames the broken one only."""
    junk = tmp_path / "archive.db"
    junk.write_text("these are my notes, not a database\n")
    config = tmp_path / "two.json"
    config.write_text(
        json.dumps({"providers": {"main": store, "archive": f"sqlite:///{junk}"}, "default_provider": "main"})
    )
    host = PluginHost(load_entrypoints=False)
    code, out, err = run(capsys, "--config", str(config), "--json", "health", host=host)
    assert code == EXIT_UNAVAILABLE
    statuses = json.loads(out)
    assert set(statuses) == {"main", "archive"}
    assert statuses["main"]["healthy"] is True
    assert statuses["archive"]["healthy"] is False
    assert "not a database" in statuses["archive"]["message"]
    code, out, err = run(capsys, "--config", str(config), "health", host=host)
    assert code == EXIT_UNAVAILABLE
    lines = out.splitlines()
    assert any(line.startswith("main (") and ": healthy" in line for line in lines), out
    assert any(line.startswith(f"archive (sqlite:///{junk}): UNHEALTHY") for line in lines), out
    assert "check the file's path" in err and "server is running" not in err


def test_a_reader_that_leaves_does_not_turn_a_failed_health_check_into_success(tmp_path: Path) -> None:
    """``eventsource health | true`` on a broken store: the reader leaving is fine, the store is still down (5)."""
    script, env = console_script()
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database\n")
    for argv in (("health",), ("--json", "health")):
        reader, writer = os.pipe()
        os.close(reader)  # the reader has already left
        try:
            done = subprocess.run(
                [script, "--store", f"sqlite:///{junk}", *argv], stdout=writer, stderr=subprocess.PIPE,
                cwd=tmp_path, env=env, text=True, timeout=120, check=False,
            )  # fmt: skip
        finally:
            os.close(writer)
        assert done.returncode == EXIT_UNAVAILABLE, (argv, done.stderr)
        assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, (argv, done.stderr)


def test_the_scrubber_learns_the_checkpoint_store_and_query_string_passwords() -> None:
    """The CLI's scrubber learned only the providers' user:password@ passwords: a checkpoint_store URL's password,
    or one given as ?password=, was shown wherever a driver's message quoted it outside a URL (libpq's
    key/value DSN, a 'password authentication failed' line echoing it)."""
    from eventsource.cli.scrub import Scrubber
    from eventsource.config import ManagerConfig

    cfg = ManagerConfig(
        providers={"pg": {"url": "postgresql://app@db/es?sslmode=disable&password=qs3cret"}},
        checkpoint_store="postgresql://cp:cps3cret@db/cps",
    )
    scrub = Scrubber()
    scrub.add_config(cfg)
    shown = scrub("connect failed: host=db password=qs3cret; checkpoints: host=db user=cp password=cps3cret")
    assert "qs3cret" not in shown and "cps3cret" not in shown
