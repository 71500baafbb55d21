"""Checkpoints keep the id of the event they counted (``Checkpoint.event_id``), stored as an anchor
``"<position>:<event_id>"``: a resume on a stream deleted and created again (the kit's
``test_a_stream_checkpoint_of_a_deleted_and_recreated_stream_is_refused``), or on a store replaced by an older
copy that grew past an all-streams checkpoint, is refused; these are the edges around it."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import Checkpoint, SqliteCheckpointStore
from eventsource.checkpoints.base import event_id_of
from eventsource.errors import ValidationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.testing.subscriptions import take

if TYPE_CHECKING:
    from pathlib import Path

HOST = PluginHost(load_entrypoints=False)


def test_an_anchor_vouches_only_for_the_position_it_was_written_with() -> None:
    cp = Checkpoint("n", "s", "stream:a", 7, event_id="e:7")
    assert cp.anchor == "7:e:7"
    assert event_id_of(cp.anchor, 7) == "e:7"
    assert event_id_of(cp.anchor, 9) is None  # the position moved without it (an older writer): unchecked
    assert event_id_of(None, 7) is None
    assert event_id_of("7:", 7) is None


async def test_sqlite_checkpoints_keep_the_anchor_and_add_it_to_an_older_table(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    db = sqlite3.connect(path)
    db.execute(  # the table as releases before the anchor made it
        "CREATE TABLE es_checkpoints (name TEXT NOT NULL, source TEXT NOT NULL, scope TEXT NOT NULL, "
        "position INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (name, source))"
    )
    db.execute("INSERT INTO es_checkpoints VALUES ('old', 'src', 'stream:a', 4, '')")
    db.commit()
    db.close()
    store = SqliteCheckpointStore(f"sqlite:///{path}")
    await store.connect()
    old = await store.get("old", "src")
    assert old is not None and (old.position, old.event_id) == (4, None)
    await store.put(Checkpoint("old", "src", "stream:a", 5, event_id="id-5"))
    assert (await store.get("old", "src")).event_id == "id-5"  # type: ignore[union-attr]
    assert [cp.event_id for cp in await store.list()] == ["id-5"]
    db = sqlite3.connect(path)
    db.execute("UPDATE es_checkpoints SET position = 6")  # what an older release's put does: the anchor stays
    db.commit()
    db.close()
    moved = await store.get("old", "src")
    assert moved is not None and (moved.position, moved.event_id) == (6, None)
    with pytest.raises(ValidationError):
        await store.put(Checkpoint("old", "src", "stream:a", 7, event_id="bad\x00id"))
    await store.close()


async def test_a_resume_whose_counted_event_was_truncated_goes_on(tmp_path: Path) -> None:
    """Retention removed the event the checkpoint counted: nothing to compare, the stream is the same one."""
    m = EventSourcingManager(
        {"providers": {"db": {"url": f"sqlite:///{tmp_path}/e.db"}}, "default_provider": "db"}, host=HOST
    )
    await m.connect()
    cp = f"sqlite:///{tmp_path}/cp.db"
    await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(6)])
    async with m.subscribe(stream_id="s", checkpoint=cp, name="n") as sub:
        await take(sub, 3)
        assert (await sub.commit()).event_id is not None
    await m.get_default_provider().truncate_stream("s", 5)
    async with m.subscribe(stream_id="s", checkpoint=cp, name="n") as sub:
        assert [e.version for e in await take(sub, 2)] == [5, 6]
    await m.close()


async def test_a_commit_names_the_event_at_its_position_wherever_the_page_stands(tmp_path: Path) -> None:
    m = EventSourcingManager({"providers": {"db": {"url": "memory://"}}, "default_provider": "db"}, host=HOST)
    await m.connect()
    res = await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(7)])
    ids = dict(zip(range(1, 8), res.event_ids, strict=True))
    cp = f"sqlite:///{tmp_path}/cp.db"
    async with m.subscribe(stream_id="s", checkpoint=cp, name="n", page_size=3) as sub:
        got = await take(sub, 2)
        assert (await sub.commit()).event_id == ids[2]  # mid-page
        got += await take(sub, 2)  # the first page handed out whole, then the first of the next
        assert (await sub.commit(got[2])).event_id == ids[3]  # an event before the last handed out
        assert (await sub.commit()).event_id == ids[4]
    async with m.subscribe(stream_id="s", checkpoint=cp, name="n", page_size=3) as sub:
        assert [e.version for e in await take(sub, 3)] == [5, 6, 7]
        assert (await sub.commit()).event_id == ids[7]
    await m.close()


async def test_a_stream_subscription_from_the_end_notices_a_stream_created_again_before_its_first_event(
    tmp_path: Path,
) -> None:
    """It starts after the stream's last event and names it in the checkpoint it stores at once: a delete and
    re-create before anything new came is noticed (on the next read, and by a resume), not passed over."""
    from eventsource.errors import StreamDeletedError

    m = EventSourcingManager(
        {"providers": {"db": {"url": f"sqlite:///{tmp_path}/e.db"}}, "default_provider": "db"}, host=HOST
    )
    await m.connect()
    cp = f"sqlite:///{tmp_path}/cp.db"
    old = await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(3)])
    async with m.subscribe(stream_id="s", from_version="end", checkpoint=cp, name="n", poll_interval=0.05) as sub:
        assert sub.committed is not None and (sub.committed.position, sub.committed.event_id) == (3, old.event_ids[2])
        await m.delete_stream("s")
        await m.append_events_batch(stream_id="s", events=[{"event_type": "T", "data": {"n": i}} for i in range(5)])
        with pytest.raises(StreamDeletedError):
            await anext(sub)
    await m.close()


def _copy(src: Path, dst: Path) -> None:
    """An SQLite file copied whole (a backup taken, or restored over the live file)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def _events(n: int) -> list[dict[str, object]]:
    return [{"event_type": "T", "data": {"n": i}} for i in range(n)]


async def test_an_all_streams_resume_on_a_store_restored_from_an_older_backup_is_refused(tmp_path: Path) -> None:
    """The restored store grew past the checkpoint's position: the events between its head and the checkpoint
    were passed over, unseen (versions 1-5 of a stream skipped, 6-8 delivered); the anchor notices it."""
    from eventsource.errors import StreamDeletedError

    config = {"providers": {"db": {"url": f"sqlite:///{tmp_path}/e.db"}}, "default_provider": "db"}
    cp = f"sqlite:///{tmp_path}/cp.db"
    m = EventSourcingManager(config, host=HOST)
    await m.connect()
    await m.append_events_batch(stream_id="a", events=_events(3))
    await m.close()
    _copy(tmp_path / "e.db", tmp_path / "backup.db")
    await m.connect()
    await m.append_events_batch(stream_id="b", events=_events(5))
    async with m.subscribe(stream_prefix="b", checkpoint=cp, name="n") as sub:  # a's events are filtered out
        assert [e.position for e in await take(sub, 5)] == [4, 5, 6, 7, 8]
        assert (await sub.commit()).event_id is not None
    async with m.subscribe(checkpoint=cp, name="all", page_size=3) as sub:
        got = await take(sub, 8)
        last = await sub.commit()
        assert (last.position, last.event_id) == (8, got[-1].event_id)
    await m.close()
    _copy(tmp_path / "backup.db", tmp_path / "e.db")
    await m.connect()
    await m.append_events_batch(stream_id="c", events=_events(8))  # positions 4-11: 8 is another event now
    for name in ("n", "all"):
        with pytest.raises(StreamDeletedError, match="replaced"):
            async with m.subscribe(stream_prefix="b" if name == "n" else None, checkpoint=cp, name=name) as sub:
                await take(sub, 1)
    await m.close()


async def test_an_all_streams_resume_whose_counted_event_was_deleted_by_retention_goes_on(tmp_path: Path) -> None:
    """Retention removed the events at and around the checkpoint's position: the store is the same one."""
    m = EventSourcingManager(
        {"providers": {"db": {"url": f"sqlite:///{tmp_path}/e.db"}}, "default_provider": "db"}, host=HOST
    )
    await m.connect()
    cp = f"sqlite:///{tmp_path}/cp.db"
    await m.append_events_batch(stream_id="a", events=_events(2))
    await m.append_events_batch(stream_id="b", events=_events(4))  # positions 3-6
    async with m.subscribe(checkpoint=cp, name="n") as sub:
        await take(sub, 5)
        assert (await sub.commit()).event_id is not None  # position 5, b's version 3
    await m.append_events_batch(stream_id="b", events=_events(2))  # positions 7-8
    await m.get_default_provider().truncate_stream("b", 6)  # positions 3-7 deleted
    async with m.subscribe(checkpoint=cp, name="n") as sub:
        assert [e.position for e in await take(sub, 1)] == [8]
        assert (await sub.commit()).event_id is not None
    async with m.subscribe(checkpoint=cp, name="n", poll_interval=0.05) as sub:  # the event at 8 is still there
        await m.append_events_batch(stream_id="a", events=_events(1))
        assert [e.position for e in await take(sub, 1)] == [9]
    await m.close()


async def test_an_all_streams_projection_resumed_on_a_restored_store_refuses(tmp_path: Path) -> None:
    """The sink's checkpoint (SQLite, same transaction as the handlers' writes) keeps the anchor too."""
    from eventsource.errors import StreamDeletedError
    from eventsource.projections import Projection, ProjectionRunner, SqliteSink

    seen: list[int] = []

    def runner() -> ProjectionRunner:
        p: Projection[Any] = Projection("all", {"T": lambda e, _tx: seen.append(e.position)})
        return ProjectionRunner(m, batch_size=2).add(p, SqliteSink(f"sqlite:///{tmp_path}/read.db"))

    m = EventSourcingManager(
        {"providers": {"db": {"url": f"sqlite:///{tmp_path}/e.db"}}, "default_provider": "db"}, host=HOST
    )
    await m.connect()
    await m.append_events_batch(stream_id="a", events=_events(2))
    await m.close()
    _copy(tmp_path / "e.db", tmp_path / "backup.db")
    await m.connect()
    await m.append_events_batch(stream_id="b", events=_events(3))
    await runner().catch_up(timeout=60)
    assert seen == [1, 2, 3, 4, 5]
    await m.close()
    _copy(tmp_path / "backup.db", tmp_path / "e.db")
    await m.connect()
    await m.append_events_batch(stream_id="c", events=_events(4))  # positions 3-6
    with pytest.raises(StreamDeletedError, match="replaced"):
        await runner().catch_up(timeout=60)
    assert seen == [1, 2, 3, 4, 5]
    await m.close()
