"""SQLite URLs: a query string was silently ignored (SQLite review).

``sqlite:///events.db?mode=ro`` opened the file read-write (creating and migrating it); ``?synchronous=normal``
left the store at ``full``. A query parameter is now a setting of the store, as ``settings`` would give it, and
anything else is refused naming the key. The URL itself stays as written (it is the store's checkpoint source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError
from eventsource.sqlite import SqliteProvider

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("query", ["mode=ro", "cache=shared", "synchronous=normal&immutable=1", "journal_mode=wal"])
def test_a_query_parameter_that_is_no_setting_is_refused(tmp_path: Path, query: str) -> None:
    with pytest.raises(ConfigurationError, match="not a setting") as info:
        SqliteProvider(f"sqlite:///{tmp_path}/events.db?{query}")
    assert info.value.details["field"] == "url"
    assert not (tmp_path / "events.db").exists()


async def test_a_setting_in_the_query_string_applies(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/events.db?synchronous=normal&busy_timeout=7")
    assert (p.settings["synchronous"], p.settings["busy_timeout"]) == ("normal", 7.0)
    await p.connect()
    await p.close()
    # the file was written through a connection at NORMAL: its own connection says so while open
    again = SqliteProvider(**p.spawn_args())
    await again.connect()
    try:
        assert again.settings["synchronous"] == "normal"
        assert again.checkpoint_source.endswith("events.db?synchronous=normal&busy_timeout=7")
    finally:
        await again.close()
    assert p.checkpoint_source == f"sqlite:///{tmp_path}/events.db?synchronous=normal&busy_timeout=7"


async def test_the_writer_connection_runs_at_the_level_the_query_gives(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/events.db?synchronous=normal")
    await p.connect()
    try:
        assert p._writer is not None and p._writer.db is not None
        level = p._writer.db.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        await p.close()
    assert level == 1  # NORMAL (FULL is 2)


def test_a_setting_given_twice_differently_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous") as info:
        SqliteProvider(f"sqlite:///{tmp_path}/events.db?synchronous=normal", synchronous="full")
    assert info.value.details["field"] == "url"
    SqliteProvider(f"sqlite:///{tmp_path}/events.db?busy_timeout=7", busy_timeout=7.0)  # the same value: fine


def test_a_malformed_query_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        SqliteProvider(f"sqlite:///{tmp_path}/events.db?synchronous=normal&&=x")
