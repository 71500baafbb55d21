"""SQLite URLs: a ``#`` in the path ended it at the ``#`` (a URL fragment), so another file was opened (review).

``sqlite:///runs/run#3/events.db`` opened ``runs/run`` as the database, silently; it is refused now, naming
the ``%23`` spelling, which opens the path as written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError
from eventsource.sqlite import SqliteProvider, path_from_url

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("url", ["sqlite:///events#1.db", "sqlite:///runs/run#3/events.db", "sqlite:///x.db#"])
def test_a_hash_in_the_path_is_refused_not_cut_off(url: str) -> None:
    with pytest.raises(ConfigurationError, match="%23"):
        path_from_url(url)


async def test_a_percent_encoded_hash_opens_the_file_as_named(tmp_path: Path) -> None:
    p = SqliteProvider(f"sqlite:///{tmp_path}/run%233/events.db")
    await p.connect()
    await p.close()
    assert (tmp_path / "run#3" / "events.db").is_file()
    assert not (tmp_path / "run").exists()


def test_an_in_memory_databases_own_source_still_parses() -> None:
    assert path_from_url(SqliteProvider("sqlite:///:memory:").checkpoint_source) == ":memory:"
