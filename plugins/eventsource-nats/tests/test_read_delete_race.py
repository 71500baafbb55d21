"""A read of a stream that another instance deletes and starts again under the same id while the read goes on."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.model import ANY, NewEvent, utcnow
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers


def _event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


@pytest.mark.parametrize("server", ["machine", "current"])
async def test_a_read_never_goes_back_to_version_1_of_a_stream_started_again_meanwhile(
    machine_nats_url: str, current_server: Servers, server: str
) -> None:
    """The read's consumer follows the subject past the stream's last message when the read began: events of the
    stream started again after a delete came after version 10 as versions 1, 2, 3 (a read out of version order,
    mixing two streams)."""
    p = await open_provider(machine_nats_url if server == "machine" else current_server.url)
    other = NatsProvider(**p.spawn_args())  # another process
    await other.connect()
    try:
        for _ in range(30):
            await p.append("s", [_event()], ANY)
        pages = p.read_stream_pages("s", page_size=10)
        versions = [e.version for e in await anext(pages)]
        await other.delete_stream("s")
        for _ in range(3):
            await other.append("s", [_event()], ANY)
        async for page in pages:
            versions += [e.version for e in page]
        assert versions == sorted(set(versions)), versions
    finally:
        await other.close()
        await dispose(p)
