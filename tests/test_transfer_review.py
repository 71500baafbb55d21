"""Review of copy / export / import (issue #15): attacks on resumption, crafted exports and the position map.

Each test reproduces a defect found in review on real SQLite and memory stores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError
from eventsource.sqlite import SqliteProvider
from eventsource.testing.transfer import manager_on, populate
from eventsource.transfer import copy_store, verify_stores

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from eventsource.manager import EventSourcingManager


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[EventSourcingManager]:
    m = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}"))
    await populate(m, streams=20, events=600)
    yield m
    await m.close()


async def test_a_map_whose_target_was_reset_is_not_trusted(source: EventSourcingManager, tmp_path: Path) -> None:
    """The target is wiped (deleted file) and the same copy is run again, with the map of the first run.

    The map's cursor said everything was written, so the re-run read nothing and left the new target with
    every stream but no event, exit 0 (verify was off).
    """
    src = source.get_default_provider()
    mapfile = tmp_path / "map.db"
    first = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}"))
    await copy_store(src, first.get_default_provider(), position_map=mapfile)
    await first.close()
    (tmp_path / "target.db").unlink()
    again = await manager_on(SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}"))
    try:
        dst = again.get_default_provider()
        with pytest.raises(ConfigurationError, match="remove the map file"):
            await copy_store(src, dst, position_map=mapfile)
        assert (await dst.list_streams(limit=10, offset=0))[1] == 0  # refused before writing anything
        mapfile.unlink()
        result = await copy_store(src, dst, position_map=mapfile)
        assert result.written == 598
        assert (await verify_stores(src, dst)).ok
    finally:
        await again.close()
