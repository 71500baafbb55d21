"""A snapshot saved while another instance deletes the stream and starts it again under the same id."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.errors import ConcurrencyError, StreamNotFoundError
from eventsource.model import ANY, NewSnapshot, utcnow
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers


@pytest.mark.parametrize("again", [0, 2, 5])
async def test_a_snapshot_of_a_stream_deleted_between_its_check_and_its_put_is_not_kept(
    current_server: Servers, again: int
) -> None:
    """The save checks that the stream holds the snapshot's event, then puts the snapshot: a delete (and the id
    written again, ``again`` events) in between left the old stream's snapshot to the new one, and loading the
    aggregate started from another stream's state."""
    p = await open_provider(current_server.url)
    other = NatsProvider(**p.spawn_args())  # another process
    await other.connect()
    try:
        for _ in range(3):
            last = await p.append("s", [new_event()], ANY)
        bucket = p._conn.kv[p.names.snapshot_bucket]
        real_put = bucket.put

        async def put_after_a_delete(*args: Any, **kwargs: Any) -> Any:
            await other.delete_stream("s")
            for _ in range(again):
                await other.append("s", [new_event()], ANY)
            return await real_put(*args, **kwargs)

        bucket.put = put_after_a_delete
        snap = NewSnapshot(str(uuid.uuid4()), "s", 3, b"{}", b"", "json", utcnow(), position=last.positions[0])
        with pytest.raises((ConcurrencyError, StreamNotFoundError)):
            await p.save_snapshot(snap)
        bucket.put = real_put
        assert await p.get_snapshot("s") is None
    finally:
        await other.close()
        await dispose(p)
