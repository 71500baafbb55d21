"""Event ids that differ only in what a NATS header cannot carry: each is its own event."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.model import ANY, NewEvent, utcnow

if TYPE_CHECKING:
    from servers import Servers


def _event(event_id: str) -> NewEvent:
    return NewEvent(event_id, "E", b"{}", b"", "json", utcnow())


@pytest.mark.parametrize("server", ["machine", "current"])
@pytest.mark.parametrize("batch", [False, True])
async def test_event_ids_that_differ_in_edge_whitespace_are_distinct_events(
    machine_nats_url: str, current_server: Servers, server: str, batch: bool
) -> None:
    """nats-py strips header values, so ``Nats-Msg-Id`` of ``"a "`` was ``"a"``: the server answered the second
    event as a duplicate of the first, and its append failed with DuplicateEventError ("already used")."""
    p = await open_provider(machine_nats_url if server == "machine" else current_server.url)
    try:
        base = uuid.uuid4().hex
        ids = [base, f"{base} ", f" {base}", f"{base}\u00a0", f"{base}\u2003"]
        if batch:
            first = await p.append("s", [_event(ids[0]), _event(f"{base}-pad")], ANY)
            rest = await p.append("s", [_event(i) for i in ids[1:]], ANY)
            assert (first.last_version, rest.first_version, rest.duplicate) == (2, 3, False)
        else:
            for n, event_id in enumerate(ids, start=1):
                assert (await p.append("s", [_event(event_id)], ANY)).last_version == n
        stored = [e.event_id async for e in p.read_stream("s")]
        assert [i for i in stored if i != f"{base}-pad"] == ids
        again = await p.append("s", [_event(ids[1])], ANY)  # a retry of one of them is still recognised
        assert again.duplicate
    finally:
        await dispose(p)


@pytest.mark.parametrize("server", ["machine", "current"])
async def test_an_event_id_shaped_like_a_derived_message_id_is_its_own_event(
    machine_nats_url: str, current_server: Servers, server: str
) -> None:
    """An id written again after its stream was deleted is published as ``<id>~<sequence of the gone message>``:
    an event whose own id is that text (another stream, inside the duplicate window) was refused as a duplicate."""
    p = await open_provider(machine_nats_url if server == "machine" else current_server.url)
    try:
        base = uuid.uuid4().hex
        gone = await p.append("s", [_event(base)], ANY)
        await p.delete_stream("s")
        assert not (await p.append("s", [_event(base)], ANY)).duplicate  # the id is free again: a derived message id
        shaped = f"{base}~{gone.positions[0] >> 20}"
        assert (await p.append("t", [_event(shaped)], ANY)).last_version == 1
        assert [e.event_id async for e in p.read_stream("t")] == [shaped]
    finally:
        await dispose(p)
