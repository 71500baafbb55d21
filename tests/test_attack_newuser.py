"""A new user's and an attacker's review of the command line, the configuration and the plugin host.

Each test failed on the code it was written against (run as a person would: the commands, real SQLite files).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import console_script
from eventsource import hookimpl
from eventsource.cli import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, main
from eventsource.plugins import PluginHost

HOST = PluginHost(load_entrypoints=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign_database(path: Path) -> None:
    """Another application's SQLite database: a table of its own, no eventsource tables."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ann')")
    db.close()


READ_ONLY = {
    "read": ["read", "s"],
    "info": ["info", "s"],
    "streams": ["streams"],
    "stats": ["stats"],
    "snapshot --get": ["snapshot", "s", "--get"],
    "projections": ["projections"],
}


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_command_leaves_another_applications_sqlite_database_alone(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eventsource --store sqlite:///app.db stats`` (the app's database, not the events') changed that file.

    It created eventsource's seven tables in it, switched it to WAL mode and reported an empty store, exit 0:
    a read-only command wrote into a file it was pointed at by mistake. A file that is a SQLite database
    without eventsource's tables holds no store: the command says so (exit 3) and leaves it byte for byte.
    """
    app = tmp_path / "app.db"
    _foreign_database(app)
    before = _digest(app)
    code = main(["--store", f"sqlite:///{app}", *READ_ONLY[command]], host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND, err
    assert "no eventsource store" in err and str(app) in err, err
    assert "users" in err, err  # what the file holds instead
    assert _digest(app) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal/-shm either


@pytest.mark.parametrize("command", ["export", "copy"])
def test_a_transfer_source_that_is_another_applications_database_is_refused(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export --from``/``copy --from`` a foreign SQLite file migrated it and exported an empty store, exit 0."""
    app = tmp_path / "app.db"
    _foreign_database(app)
    before = _digest(app)
    url = f"sqlite:///{app}"
    argv = {
        "export": ["export", "--from", url, "-o", str(tmp_path / "out.jsonl")],
        "copy": ["copy", "--from", url, "--to", f"sqlite:///{tmp_path / 'dst.db'}", "--map", str(tmp_path / "m.db")],
    }[command]
    code = main(argv, host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "no eventsource store" in err and str(app) in err, err
    assert _digest(app) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


@pytest.mark.parametrize("command", ["snapshot --get", "snapshot", "projections"])
def test_a_read_command_on_a_mistyped_sqlite_path_creates_no_store(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``snapshot`` and ``projections`` on a mistyped path created an empty store there.

    ``snapshot s --get`` (and storing one: a snapshot needs its stream) then said the stream has no snapshot or
    does not exist, true of the empty file just made; ``projections`` said "no checkpoints", exit 0.
    """
    typo = tmp_path / "data" / "evnts.db"
    argv = {
        "snapshot --get": ["snapshot", "s", "--get"],
        "snapshot": ["snapshot", "s", "{}"],
        "projections": ["projections"],
    }[command]
    code = main(["--store", f"sqlite:///{typo}", *argv], host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_NOT_FOUND, err
    assert "no file" in err and str(typo) in err, err
    assert not typo.parent.exists()


def test_follow_on_a_mistyped_sqlite_path_says_so_instead_of_waiting_on_an_empty_store(tmp_path: Path) -> None:
    """``eventsource --store sqlite:///evnts.db follow`` created an empty store and waited on it for ever."""
    script, env = console_script()
    typo = tmp_path / "evnts.db"
    try:
        done = subprocess.run(
            [script, "--store", f"sqlite:///{typo}", "follow", "--limit", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("follow waited on the empty store it had just created")
    assert done.returncode == EXIT_NOT_FOUND, done.stderr
    assert "no file" in done.stderr and str(typo) in done.stderr
    assert not list(tmp_path.glob("evnts.db*"))


def test_health_on_a_mistyped_sqlite_path_is_unhealthy_not_a_new_healthy_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eventsource --store sqlite:///evnts.db health`` created the store and reported it healthy, exit 0.

    A monitoring job with a typo in its path then reported healthy for ever, watching an empty file.
    """
    typo = tmp_path / "evnts.db"
    code = main(["--store", f"sqlite:///{typo}", "health"], host=HOST)
    out, err = capsys.readouterr()
    assert code == EXIT_UNAVAILABLE, (out, err)
    assert "UNHEALTHY" in out and "no file" in out and str(typo) in out, out
    assert not list(tmp_path.glob("evnts.db*"))


EMPTY_VALUE = {
    "--store": ["--store", "", "stats"],
    "--config": ["--config", "", "stats"],
    "export --from": ["export", "--from", "", "-o", "out.jsonl"],
    "import --to": ["import", "in.jsonl", "--to", ""],
    "copy --to": ["copy", "--from", "memory://", "--to", ""],
    "projections --checkpoints": ["projections", "--checkpoints", ""],
}


@pytest.mark.parametrize("option", sorted(EMPTY_VALUE))
def test_an_option_given_an_empty_value_is_refused_not_taken_as_left_out(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eventsource --store "$STORE" ...`` with ``STORE`` unset in a script ran on ./eventsource.db.

    An empty ``--store``, ``--config``, ``--from``, ``--to`` or ``--checkpoints`` was treated as not given:
    ``export --from ''`` exported the default store (exit 0), ``--store ''`` read or wrote it. Given, the value
    must name something; the option is refused (exit 2) naming it.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTSOURCE_STORE", raising=False)
    monkeypatch.delenv("EVENTSOURCE_CONFIG", raising=False)
    (tmp_path / "in.jsonl").write_text("")
    main(["append", "s", "E"], host=HOST)  # the default store, which an empty option must not reach
    before = _digest(tmp_path / "eventsource.db")
    capsys.readouterr()
    code = main(EMPTY_VALUE[option], host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    flag = option.rsplit(maxsplit=1)[-1]
    assert f"argument {flag}" in err and "empty" in err, err
    assert not (tmp_path / "out.jsonl").exists()
    assert _digest(tmp_path / "eventsource.db") == before


def test_a_yaml_configuration_file_is_not_reported_as_bad_yaml(tmp_path: Path) -> None:
    """``--config settings.yaml`` said "settings.yaml is not valid yaml: Expecting value: line 1 column 1".

    The file was read as JSON (every name but ``*.toml`` is) and the JSON error shown as YAML's, so a person
    looked for a mistake in valid YAML. YAML is not a configuration format here: the error says which are.
    """
    from eventsource.config import ManagerConfig
    from eventsource.errors import ConfigurationError

    path = tmp_path / "settings.yaml"
    path.write_text("timeout: 10s\n")
    with pytest.raises(ConfigurationError) as info:
        ManagerConfig.from_file(path)
    assert "not valid yaml" not in str(info.value)
    assert ".json" in str(info.value) and ".toml" in str(info.value), str(info.value)


def test_a_configuration_file_named_in_capitals_is_read_as_what_its_suffix_says(tmp_path: Path) -> None:
    """``SETTINGS.TOML`` was read as JSON and refused as "not valid TOML" with a JSON parser's message."""
    from eventsource.config import ManagerConfig

    path = tmp_path / "SETTINGS.TOML"
    path.write_text('[eventsource]\ntimeout = "10s"\n')
    assert ManagerConfig.from_file(path).timeout == 10.0


class _RaisesInHook:
    @hookimpl
    def eventsource_register_retention_policies(self, registry: object) -> None:
        raise RuntimeError("boom")


class _Quiet:
    @hookimpl
    def eventsource_register_retention_policies(self, registry: object) -> None:
        pass


def test_a_plugin_failing_in_a_registration_hook_is_named_so_it_can_be_disabled() -> None:
    """``error: a plugin failed in eventsource_register_retention_policies: RuntimeError: boom``: which one?

    With several plugins installed, a person could not tell which to uninstall or block, and the command line's
    hint (``EVENTSOURCE_DISABLED_PLUGINS=<name>``) was left out for want of a name. The error now names the
    plugin whose hook implementation raised, as an import failure or a misspelt hook does.
    """
    from eventsource.cli.errors import describe_error
    from eventsource.errors import PluginLoadError

    for plugins in ([("acme", _RaisesInHook()), ("quiet", _Quiet())], [("quiet", _Quiet()), ("acme", _RaisesInHook())]):
        with pytest.raises(PluginLoadError) as info:
            PluginHost(load_entrypoints=False, plugins=plugins)
        assert "eventsource_register_retention_policies: RuntimeError: boom" in str(info.value)
        assert "plugin 'acme'" in str(info.value), str(info.value)
        assert "quiet" not in str(info.value)
        assert info.value.details["plugin"] == "acme"
        assert "EVENTSOURCE_DISABLED_PLUGINS=acme" in describe_error(info.value)[1]


def _one_slash_builders() -> dict[str, object]:
    from eventsource.checkpoints import SqliteCheckpointStore
    from eventsource.projections import SqliteSink
    from eventsource.sqlite.lease import SqliteFileLease
    from eventsource.sqlite.provider import SqliteProvider

    return {
        "provider": SqliteProvider,
        "checkpoints": SqliteCheckpointStore,
        "sink": SqliteSink,
        "lease": SqliteFileLease,
    }


@pytest.mark.parametrize("kind", ["provider", "checkpoints", "sink", "lease"])
def test_a_sqlite_url_with_one_slash_is_refused_not_opened_relative(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:/var/lib/app/events.db`` (one slash, as JDBC writes it) meant /var/lib/app/events.db.

    It opened ``var/lib/app/events.db`` under the working directory instead, creating the directories: a service
    wrote its events to a file nobody backs up, and the next process started elsewhere found none of them.
    (``--store`` refused it already; the classes built from a URL did not.) It is refused, saying how to write it.
    """
    from eventsource.errors import ConfigurationError

    monkeypatch.chdir(tmp_path)
    build = _one_slash_builders()[kind]
    with pytest.raises(ConfigurationError, match="sqlite:///") as info:
        build(f"sqlite:{tmp_path}/abs.db")  # type: ignore[operator]
    assert info.value.details["field"] == "url"
    assert list(tmp_path.iterdir()) == []


async def test_a_checkpoint_url_without_its_slashes_is_refused_without_showing_its_password() -> None:
    """``subscribe(checkpoint="postgresql:/app:s3cret@db/x")`` said "no checkpoint store handles URL scheme
    'postgresql:/app:s3cret@db/x' (known: ..., postgresql, ...)": the whole URL, password included, as the
    scheme, and a scheme it lists as known. It is refused as not a URL, the password masked."""
    from eventsource import EventSourcingManager
    from eventsource.errors import ConfigurationError

    async with EventSourcingManager({"providers": {"m": "memory://"}}, host=HOST) as es:
        for url in ("postgresql:/app:s3cret@db/x", "sqlite:cp.db"):
            with pytest.raises(ConfigurationError) as info:
                es.subscribe(checkpoint=url, name="n")
            assert "s3cret" not in str(info.value)
            assert "not a checkpoint store URL" in str(info.value), str(info.value)
    with pytest.raises(ConfigurationError) as info:
        HOST.create_lease("postgresql:/app:s3cret@db/x")
    assert "s3cret" not in str(info.value) and "not a lease URL" in str(info.value)


@pytest.mark.parametrize("content", [b"garbage\n", b""], ids=["not-json", "empty"])
def test_an_import_of_a_bad_file_into_a_new_sqlite_file_creates_no_store(
    content: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eventsource import bad.jsonl --to sqlite:///restored.db`` refused the file, and left restored.db behind.

    The import checks a file whole "before writing anything", but it opened the target first, and opening a
    SQLite URL creates the database and its tables: the refused run left an empty store where there was
    none, which a second run (or a person reading the directory) then took for a restore.
    """
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code = main(["import", str(bad), "--to", f"sqlite:///{tmp_path / 'restored.db'}"], host=HOST)
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert "bad.jsonl, line 1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "core" / "README.md", *ROOT.glob("plugins/*/README.md"), *ROOT.glob("docs/**/*.md")]


@pytest.mark.parametrize("doc", sorted(DOCS), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_installs_eventsource_from_the_package_index(doc: Path) -> None:
    """``pip install 'eventsource[otel]'`` (README, docs/observability.md) installs another project.

    This project is not on the package index, but a name-sake is: an unrelated server-sent-events library,
    ``eventsource`` 1.x. A new user who copied the command got it (and a warning that it has no ``otel`` extra)
    instead of an error. Every ``pip install`` of the core names the checkout (``./core[otel]``).
    """
    import re

    bad = [
        line.strip()
        for line in doc.read_text(encoding="utf-8").splitlines()
        for cmd in re.findall(r"pip install ([^`\n;|&]*)", line)
        for arg in cmd.split()
        if re.fullmatch(r"['\"]?eventsource(\[[\w,]+\])?['\"]?", arg)
    ]
    assert not bad, f"{doc.name} installs eventsource from the index: {bad}"


class _NeverConnects:
    """A store whose connect never finishes (a server that accepts and never answers)."""

    @hookimpl
    def eventsource_register_providers(self, registry: object) -> None:
        import asyncio

        from eventsource.memory import MemoryProvider

        class Stuck(MemoryProvider):
            kind = "stuck"

            async def connect(self) -> None:
                await asyncio.sleep(3600)

        registry.add(Stuck, schemes=("stuck",))  # type: ignore[attr-defined]


def test_a_connect_that_times_out_says_the_timeout_can_be_raised(capsys: pytest.CaptureFixture[str]) -> None:
    """``--timeout 1ms stats`` said "connect ... did not finish within 0.001s; check the file's path, that it is a
    database and that you may write to it": the file was fine, the timeout too short, and nothing said so."""
    host = PluginHost(load_entrypoints=False, plugins=[("stuck", _NeverConnects())])
    code = main(["--store", "stuck://", "--timeout", "50ms", "stats"], host=host)
    err = capsys.readouterr().err
    assert code == EXIT_UNAVAILABLE, err
    assert "did not finish within 0.05s" in err
    assert "--timeout" in err.split("did not finish", 1)[1], err


def test_a_copy_refused_part_way_says_what_it_left_on_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy into a target whose ``s3`` holds other events exited 4 naming ``s3``, and nothing more.

    By then it had written ``s0``-``s2`` and ``s4`` (a copy writes stream by stream, and a re-run skips what is
    there): the target was changed, and the error read as if the copy had been refused whole. The refusal now
    says that what was written stays, and how to go on.
    """
    from eventsource import EventData, SyncEventSourcingManager

    src, dst = tmp_path / "src.db", tmp_path / "dst.db"
    with SyncEventSourcingManager({"providers": {"m": f"sqlite:///{src}"}}, host=HOST) as es:
        for s in range(5):
            es.append_events_batch(stream_id=f"s{s}", events=[EventData("E", {"n": i}) for i in range(3)])
    with SyncEventSourcingManager({"providers": {"m": f"sqlite:///{dst}"}}, host=HOST) as es:
        es.append_event(stream_id="s3", event_type="Other", data={})
    argv = ["copy", "--from", f"sqlite:///{src}", "--to", f"sqlite:///{dst}", "--map", str(tmp_path / "m.db")]
    code = main(argv, host=HOST)
    err = capsys.readouterr().err
    assert code == 4, err  # conflict
    assert "'s3'" in err
    assert "stays on the target" in err and "run the same copy again" in err, err


@pytest.mark.parametrize("url", ["sqlite://[::1/x.db", "foo://[::1"])
def test_a_url_with_a_broken_ipv6_host_is_a_clear_error_not_an_unexpected_one(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--store 'sqlite://[::1/x.db'`` said "unexpected ValueError: Invalid IPv6 URL", exit 1.

    urlsplit raises on an unclosed ``[``: the plugin host took the scheme with it before any provider could
    say what is wrong with the URL. A malformed URL is bad input (exit 2), and nothing is created.
    """
    monkeypatch.chdir(tmp_path)
    code = main(["--store", url, "append", "s", "E"], host=HOST)
    err = capsys.readouterr().err
    assert "unexpected" not in err, err
    assert code == EXIT_USAGE, err
    assert list(tmp_path.iterdir()) == []
