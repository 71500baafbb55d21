"""A read of a stream that another instance deletes and starts again under the same id while the read goes on."""

from __future__ import annotations

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.model import ANY
from eventsource_nats.provider import NatsProvider


async def test_a_read_never_goes_back_to_version_1_of_a_stream_started_again_meanwhile(server_url: str) -> None:
    """The read's consumer follows the subject past the stream's last message when the read began: events of the
    stream started again after a delete came after version 10 as versions 1, 2, 3 (a read out of version order,
    mixing two streams)."""
    p = await open_provider(server_url)
    other = NatsProvider(**p.spawn_args())  # another process
    await other.connect()
    try:
        for _ in range(30):
            await p.append("s", [new_event()], ANY)
        pages = p.read_stream_pages("s", page_size=10)
        versions = [e.version for e in await anext(pages)]
        await other.delete_stream("s")
        for _ in range(3):
            await other.append("s", [new_event()], ANY)
        async for page in pages:
            versions += [e.version for e in page]
        assert versions == sorted(set(versions)), versions
    finally:
        await other.close()
        await dispose(p)


@pytest.mark.parametrize("read", ["read_stream", "read_all"])
async def test_a_read_whose_remaining_messages_are_deleted_meanwhile_ends(machine_nats_url: str, read: str) -> None:
    """Another instance deletes the stream while a read is between pages: the read ends with what it had. Its
    consumer still counts the purged messages, so the next fetch waited for its whole timeout and then, in some
    rounds, raised the client's bare timeout: the read (or an append scanning for its own events after a lost race)
    failed with ProviderTimeoutError."""
    p = await open_provider(machine_nats_url, request_timeout=0.3)
    other = NatsProvider(**p.spawn_args())
    await other.connect()
    try:
        for r in range(30):
            sid = f"s{r}"
            for _ in range(40):
                await p.append(sid, [new_event()], ANY)
            pages = p.read_stream_pages(sid, page_size=10) if read == "read_stream" else p.read_all_pages(page_size=10)
            first = await anext(pages)
            await other.delete_stream(sid)
            rest = [e async for page in pages for e in page]
            assert len({e.event_id for e in [*first, *rest]}) == len(first) + len(rest)
    finally:
        await other.close()
        await dispose(p)
