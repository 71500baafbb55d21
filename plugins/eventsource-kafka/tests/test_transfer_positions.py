"""A copy from Kafka, whose global positions are unique within a stream only, maps every event of every stream.

Kafka declares ``per_stream`` order: an append's first position is ``max(now, the stream's last + 1)``, so two
streams appended in the same microsecond share positions. The clock is held still here to make that certain;
the store is the real broker.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from eventsource.model import NO_STREAM, NewEvent, NewSnapshot, utcnow
from eventsource.sqlite import SqliteProvider
from eventsource.timestamps import now_us
from eventsource.transfer import PositionMap, copy_store

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from eventsource_kafka import KafkaProvider


def _events(n: int) -> list[NewEvent]:
    return [NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow()) for _ in range(n)]


async def test_streams_sharing_positions_keep_every_map_entry(
    kafka_provider: KafkaProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = now_us()
    monkeypatch.setattr("eventsource_kafka.append.now_us", lambda: frozen)
    for sid in ("a", "b"):
        await kafka_provider.append(sid, _events(3), NO_STREAM)
    monkeypatch.undo()
    a = [rec async for rec in kafka_provider.read_stream("a")]
    b = [rec async for rec in kafka_provider.read_stream("b")]
    assert [r.position for r in a] == [r.position for r in b]  # the collision this test is about
    snap = NewSnapshot(str(uuid.uuid4()), "a", 3, b"{}", b"", "json", utcnow(), position=a[-1].position)
    await kafka_provider.save_snapshot(snap)

    target = SqliteProvider(f"sqlite:///{tmp_path / 'target.db'}")
    await target.connect()
    try:
        result = await copy_store(kafka_provider, target, position_map=tmp_path / "map.db", verify=True)
        assert result.written == 6
        copied = {(r.stream_id, r.version): r.position async for r in target.read_all()}
        positions = PositionMap(tmp_path / "map.db")
        try:
            assert len(positions) == 6
            for (sid, version), at in copied.items():
                assert positions.target_of_version(sid, version) == at, (sid, version)
        finally:
            positions.close()
        saved = await target.get_snapshot("a")
        assert saved is not None
        assert saved.position == copied["a", 3]  # the snapshot keeps the position of its event on the target
        again = await copy_store(kafka_provider, target, position_map=tmp_path / "map.db")
        assert again.written == 0
        assert again.skipped == 6
    finally:
        await target.close()
