"""``eventsource retention``: what it deletes and keeps in a real SQLite file, its refusals, reports and exit codes.

Each test fills a SQLite file (or a named in-memory store of a provider that lacks a primitive) with the
library, runs ``main([...])`` in-process, and reads the store back with the library.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ProviderPlugin, isolate
from eventsource import EventData
from eventsource.cli import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, main
from eventsource.memory import MemoryProvider
from eventsource.plugins import PluginHost
from eventsource.provider import Capabilities
from eventsource.sync import SyncEventSourcingManager

OLD = datetime.now(UTC) - timedelta(days=90)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own directory, with no store or config from the environment."""
    isolate(tmp_path, monkeypatch)


def run(capsys: pytest.CaptureFixture[str], *argv: str, host: PluginHost | None = None) -> tuple[int, str, str]:
    code = main(list(argv), host=host or PluginHost(load_entrypoints=False))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def versions(url: str, stream: str) -> list[int]:
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        return [e.version for e in m.read_stream(stream)]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    """``old``: 5 events of 90 days ago then 3 new ones; ``busy``: 10 new ones, a snapshot at version 6."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    with SyncEventSourcingManager({"providers": {"m": url}}, host=PluginHost(load_entrypoints=False)) as m:
        m.append_events_batch(stream_id="old", events=[EventData("E", {"i": i}, timestamp=OLD) for i in range(5)])
        m.append_events_batch(stream_id="old", events=[EventData("E", {"i": i}) for i in range(3)])
        m.append_events_batch(stream_id="busy", events=[EventData("E", {"i": i}) for i in range(10)])
        m.create_snapshot(stream_id="busy", data={"n": 6}, version=6)
    return url


def test_max_age_and_max_count_delete_what_they_say_and_keep_the_rest(
    capsys: pytest.CaptureFixture[str], sqlite_store: str
) -> None:
    code, out, err = run(
        capsys, "--store", sqlite_store, "retention", "--policy", "max_age=30d", "--policy", "max_count=4", "--yes"
    )
    assert (code, err) == (EXIT_OK, ""), err
    assert versions(sqlite_store, "old") == [6, 7, 8]  # the 5 old ones went by age; 3 <= 4 kept
    assert versions(sqlite_store, "busy") == [7, 8, 9, 10]  # the newest 4
    lines = out.splitlines()
    assert lines[0] == "default (sqlite): max_age=30d: running..."
    assert lines[1] == "default (sqlite): max_age: deleted 5 events, 0 streams touched"
    assert lines[2] == "default (sqlite): max_count=4: running..."
    assert lines[3] == "default (sqlite): max_count: deleted 6 events, 1 streams touched"
    assert lines[4].startswith("retention: deleted 11 events, 1 streams touched, on 1 store(s) (2 ok,")
    # run again: nothing left to delete, still a success
    code, out, _ = run(capsys, "--store", sqlite_store, "retention", "--policy", "max_count=4", "--yes")
    assert code == EXIT_OK
    assert "deleted 0 events" in out
    assert versions(sqlite_store, "busy") == [7, 8, 9, 10]


def test_before_snapshot_keeps_events_below_the_snapshot_when_asked(
    capsys: pytest.CaptureFixture[str], sqlite_store: str
) -> None:
    code, out, err = run(capsys, "--store", sqlite_store, "retention", "--policy", "before_snapshot=2", "--yes")
    assert code == EXIT_OK, err
    assert "before_snapshot=2: running..." in out
    assert versions(sqlite_store, "busy") == [5, 6, 7, 8, 9, 10]  # covered up to 6, 2 of them kept
    assert versions(sqlite_store, "old") == [1, 2, 3, 4, 5, 6, 7, 8]  # no snapshot: untouched


def test_the_configured_policies_run_when_none_is_given(
    capsys: pytest.CaptureFixture[str], sqlite_store: str, tmp_path: Path
) -> None:
    config = tmp_path / "es.json"
    config.write_text(
        json.dumps(
            {
                "providers": {"main": sqlite_store},
                "retention_period": "30d",
                "retention_policies": [{"policy": "before_snapshot"}],
            }
        )
    )
    code, out, err = run(capsys, "--config", str(config), "retention", "--yes")
    assert code == EXIT_OK, err
    assert "main (sqlite): before_snapshot=0: running..." in out
    assert "main (sqlite): max_age=30d: running..." in out
    assert versions(sqlite_store, "busy") == [7, 8, 9, 10]
    assert versions(sqlite_store, "old") == [6, 7, 8]
    # --provider names a configured store; another name is refused before anything runs
    code, _, err = run(capsys, "--config", str(config), "retention", "--provider", "nope", "--yes")
    assert code == EXIT_USAGE
    one_line_error(err, "--provider 'nope'", "configured: main")


def test_without_yes_it_refuses_saying_what_it_would_run_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str], sqlite_store: str
) -> None:
    before = Path(sqlite_store.removeprefix("sqlite:///")).read_bytes()
    code, out, err = run(capsys, "--store", sqlite_store, "retention", "--policy", "max_count=1")
    assert (code, out) == (EXIT_USAGE, "")
    one_line_error(err, "would run max_count=1 on sqlite:///", "events.db", "--yes")
    assert Path(sqlite_store.removeprefix("sqlite:///")).read_bytes() == before
    assert versions(sqlite_store, "busy") == list(range(1, 11))
    code, out, err = run(capsys, "--store", sqlite_store, "--json", "retention", "--policy", "max_count=1")
    assert (code, out) == (EXIT_USAGE, "")
    assert json.loads(err)["error"]["details"]["field"] == "--yes"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("max_count=abc", "max_events must be an int >= 1, got 'abc'"),
        ("max_count=0", "max_events must be an int >= 1, got 0"),
        ("max_age=soon", "not a duration: 'soon'"),
        ("before_snapshot=-1", "keep_events must be an int >= 0"),
        ("max_count=", "no value after '='"),
        ("=5", "give a policy name"),
        ("nosuch", "unknown retention policy 'nosuch'"),
        ("nosuch=3", "NAME=VALUE is for max_age=VALUE"),
        ('{"policy": "max_count"', "is not valid JSON"),
        ('{"max_events": 3}', 'an object with a "policy" name'),
        ('{"policy": "max_count", "max_evnts": 3}', "max_evnts"),
    ],
)
def test_a_bad_policy_spec_is_one_line_naming_the_option(
    capsys: pytest.CaptureFixture[str], sqlite_store: str, spec: str, needle: str
) -> None:
    code, out, err = run(
        capsys, "--store", sqlite_store, "retention", "--policy", "max_age=30d", "--policy", spec, "--yes"
    )
    assert (code, out) == (EXIT_USAGE, "")
    one_line_error(err, "--policy", needle)
    assert versions(sqlite_store, "old") == list(range(1, 9))  # the good policy before it did not run either


def test_no_policy_configured_or_given_is_a_usage_error(capsys: pytest.CaptureFixture[str], sqlite_store: str) -> None:
    code, out, err = run(capsys, "--store", sqlite_store, "retention", "--yes")
    assert (code, out) == (EXIT_USAGE, "")
    one_line_error(err, "no retention policy is configured", "--policy")


def test_a_missing_store_is_refused_and_not_created(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "--store", "sqlite:///absent.db", "retention", "--policy", "max_count=1", "--yes")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    one_line_error(err, "no store at sqlite:///absent.db")
    assert not (tmp_path / "absent.db").exists()
    other = tmp_path / "app.db"  # another application's database: no eventsource tables, left as it is
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (t TEXT)")
    conn.close()
    before = other.read_bytes()
    code, _, err = run(capsys, "--store", f"sqlite:///{other}", "retention", "--policy", "max_count=1", "--yes")
    assert code == EXIT_NOT_FOUND
    one_line_error(err, "no eventsource store at")
    assert other.read_bytes() == before


def test_json_reports_every_outcome_and_the_totals(capsys: pytest.CaptureFixture[str], sqlite_store: str) -> None:
    argv = ("--store", sqlite_store, "--json", "retention", "--policy", "max_age=30d", "--policy", "max_count=4")
    code, out, err = run(capsys, *argv, "--yes")
    assert (code, err) == (EXIT_OK, "")
    (line,) = out.splitlines()
    report = json.loads(line)
    assert report["ok"] is True
    assert (report["deleted_events"], report["streams_touched"], report["exit_code"]) == (11, 1, EXIT_OK)
    assert datetime.fromisoformat(report["started_at"]) <= datetime.fromisoformat(report["finished_at"])
    assert [
        (o["provider"], o["policy"], o["status"], o["deleted_events"], o["streams_touched"], o["parameters"])
        for o in report["outcomes"]
    ] == [
        ("default", "max_age", "ok", 5, 0, {"max_age": 30 * 86400.0}),
        ("default", "max_count", "ok", 6, 1, {"max_events": 4}),
    ]


# --------------------------------------------------------------------------- stores that cannot, or fail


class _NoTruncate(MemoryProvider):
    """A store that cannot truncate a stream (so no per-stream policy)."""

    kind = "notruncate"
    capabilities = Capabilities(unsupported=frozenset({"truncate_stream"}))


class _FailingAge(MemoryProvider):
    """A store whose age-based delete fails with a plain bug."""

    kind = "failingage"

    async def delete_events_before(self, cutoff: datetime, stream_id: str | None = None) -> int:
        msg = f"disk on fire at {self.url}"  # a driver that puts the whole URL, password too, in its error
        raise RuntimeError(msg)


def _filled(capsys: pytest.CaptureFixture[str], cls: type[MemoryProvider], scheme: str) -> tuple[str, PluginHost]:
    host = PluginHost(load_entrypoints=False, plugins=[(scheme, ProviderPlugin((cls, scheme)))])
    store = f"{scheme}://user:secret@{uuid.uuid4().hex}"
    for _ in range(3):
        assert run(capsys, "--store", store, "append", "s", "E", host=host)[0] == EXIT_OK
    return store, host


def test_a_policy_the_store_cannot_run_is_reported_and_exits_6(capsys: pytest.CaptureFixture[str]) -> None:
    store, host = _filled(capsys, _NoTruncate, "notruncate")
    argv = ("--store", store, "retention", "--policy", "max_count=1", "--policy", "max_age=1s", "--yes")
    code, out, err = run(capsys, *argv, host=host)
    assert code == EXIT_UNSUPPORTED
    assert "default (notruncate): max_count: unsupported: provider 'default' (notruncate) does not support" in out
    assert "default (notruncate): max_age: deleted 0 events" in out  # the other policy still ran
    assert "1 ok, 1 unsupported, 0 failed" in out
    one_line_error(err, "max_count on 'default' unsupported")
    code, out, err = run(capsys, "--json", *argv, host=host)
    assert (code, err) == (EXIT_UNSUPPORTED, "")
    report = json.loads(out)
    assert [o["status"] for o in report["outcomes"]] == ["unsupported", "ok"]
    assert report["exit_code"] == EXIT_UNSUPPORTED
    assert "truncate_stream" in report["outcomes"][0]["message"]


def test_a_policy_that_fails_is_reported_the_rest_run_and_it_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    store, host = _filled(capsys, _FailingAge, "failingage")
    argv = ("--store", store, "retention", "--policy", "max_age=1d", "--policy", "max_count=1", "--yes")
    code, out, err = run(capsys, *argv, host=host)
    assert code == EXIT_ERROR
    failed = "default (failingage): max_age: FAILED: ProviderError: RuntimeError: disk on fire at failingage://user:"
    assert failed in out
    assert "(deleted 0 events, 0 streams touched before it failed)" in out
    assert "secret" not in out + err
    assert "default (failingage): max_count: deleted 2 events, 1 streams touched" in out
    one_line_error(err, "max_age on 'default' failed")
    assert "Traceback" not in out
    code, out, err = run(capsys, "--json", *argv, host=host)
    report = json.loads(out)
    assert (code, report["ok"], report["exit_code"]) == (EXIT_ERROR, False, EXIT_ERROR)
    assert [o["status"] for o in report["outcomes"]] == ["failed", "ok"]
    assert "disk on fire" in report["outcomes"][0]["message"]
    assert "secret" not in out + err
