"""An all-streams checkpoint kept by the PostgreSQL checkpoint store names the event at its position; a resume
finds another event there (a store restored from another server's backup) and refuses, or finds it deleted
(retention) and goes on."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from conftest import manager_on
from eventsource.errors import StreamDeletedError
from eventsource.testing.subscriptions import take

if TYPE_CHECKING:
    from eventsource_postgres.checkpoints import PostgresCheckpointStore


@pytest.fixture
def store(checkpoint_store: PostgresCheckpointStore) -> PostgresCheckpointStore:
    return checkpoint_store


@pytest.mark.parametrize("change", ["replaced", "deleted"])
async def test_an_all_streams_resume_checks_the_event_its_checkpoint_counted(
    make_provider: Callable[..., Any], store: PostgresCheckpointStore, url: str, change: str
) -> None:
    p = await make_provider()
    m = await manager_on(p)
    res = await m.append_events_batch(stream_id="a", events=[{"event_type": "T", "data": {"n": i}} for i in range(3)])
    async with m.subscribe(checkpoint=store, name="n") as sub:
        got = await take(sub, 2)
        committed = await sub.commit()
    stored = await store.get("n", committed.source)
    assert stored is not None and (stored.position, stored.event_id) == (got[1].position, got[1].event_id)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if change == "replaced":  # what a backup restored from another server holds there: another event
            sql = f"UPDATE {p.names.events} SET event_id = %s WHERE position = %s"
            await conn.execute(sql, (str(uuid.uuid4()), stored.position))
        else:
            await conn.execute(f"DELETE FROM {p.names.events} WHERE position = %s", (stored.position,))
    async with m.subscribe(checkpoint=store, name="n") as sub:
        if change == "replaced":
            with pytest.raises(StreamDeletedError, match="replaced"):
                await take(sub, 1)
        else:
            assert [e.event_id for e in await take(sub, 1)] == [res.event_ids[2]]
    await m.close()
