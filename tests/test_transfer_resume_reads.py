"""A resumed copy checks that its read reached what it listed without looking up every stream it finished before.

The check that the global read reached every listed stream's version (PostgreSQL's read can be held back) reads
a stream's last event when the read did not pass it; a resumed copy's read starts after its cursor, so every
stream finished before it would have cost one read: a million of them on a re-run.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from eventsource.model import NewEvent, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.transfer import copy_store

if TYPE_CHECKING:
    from pathlib import Path


def _events(n: int) -> list[NewEvent]:
    return [NewEvent(str(uuid.uuid4()), "T", b"{}", b"", "json", utcnow()) for _ in range(n)]


async def test_a_resumed_copy_does_not_read_each_finished_stream_again(tmp_path: Path) -> None:
    source = SqliteProvider(f"sqlite:///{tmp_path / 'source.db'}")
    target = SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}")
    await source.connect()
    await target.connect()
    try:
        for i in range(40):
            await source.append(f"s-{i:02d}", _events(3), 0)
        mapfile = str(tmp_path / "map.db")
        await copy_store(source, target, position_map=mapfile)
        await source.append("s-07", _events(2), 3)
        reads: list[str] = []
        pages = source.read_stream_pages

        def counted(stream_id: str, **kw: Any) -> Any:
            reads.append(stream_id)
            return pages(stream_id, **kw)

        source.read_stream_pages = counted  # type: ignore[method-assign]
        result = await copy_store(source, target, position_map=mapfile, verify=False)
        assert (result.events, result.written) == (2, 2)
        assert reads == ["s-39"]  # the cursor's event, found where the map recorded it (one read), and no more
    finally:
        await source.close()
        await target.close()
