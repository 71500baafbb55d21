"""A NO_STREAM append that claimed a new stream's id loses the write to an ANY append of another instance."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.errors import ConcurrencyError
from eventsource.model import ANY, NO_STREAM, NewStream
from eventsource_nats.provider import NatsProvider


async def test_the_winner_over_another_appends_claim_keeps_its_stream_attributes(server_url: str) -> None:
    """A's NO_STREAM append claims the id with a record of its attributes; B's ANY append (another process) finds
    that record, counts the stream as existing and writes the first event; A's write loses and A gives its claim
    back, purging the record. The stream B created was left with no record: the attributes B passed (name,
    metadata) were gone, and A's claim had stood in for them."""
    p = await open_provider(server_url)
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        writer = p._appender.writer
        real_write = writer.write
        won = []

        async def write_after_b(*args: Any, **kwargs: Any) -> Any:  # B's append lands between A's claim and write
            won.append(await other.append("s", [new_event()], ANY, NewStream("s", name="B", metadata={"by": "B"})))
            return await real_write(*args, **kwargs)

        writer.write = write_after_b  # type: ignore[method-assign]
        with pytest.raises(ConcurrencyError):
            await p.append("s", [new_event()], NO_STREAM, NewStream("s", name="A", metadata={"by": "A"}))
        writer.write = real_write  # type: ignore[method-assign]
        assert won[0].first_version == 1
        for provider in (p, other):
            info = await provider.get_stream_info("s")
            assert info is not None
            assert (info.version, info.name, info.metadata) == (1, "B", {"by": "B"})
    finally:
        await other.close()
        await dispose(p)
