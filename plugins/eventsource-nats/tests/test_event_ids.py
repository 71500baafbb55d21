"""Event ids that differ only in what a NATS header cannot carry: each is its own event."""

from __future__ import annotations

import uuid

import pytest
from conftest import dispose, new_event, open_provider
from eventsource.model import ANY


@pytest.mark.parametrize("batch", [False, True])
async def test_event_ids_that_differ_in_edge_whitespace_are_distinct_events(server_url: str, batch: bool) -> None:
    """nats-py strips header values, so ``Nats-Msg-Id`` of ``"a "`` was ``"a"``: the server answered the second
    event as a duplicate of the first, and its append failed with DuplicateEventError ("already used")."""
    p = await open_provider(server_url)
    try:
        base = uuid.uuid4().hex
        ids = [base, f"{base} ", f" {base}", f"{base}\u00a0", f"{base}\u2003"]
        if batch:
            first = await p.append("s", [new_event(event_id=ids[0]), new_event(event_id=f"{base}-pad")], ANY)
            rest = await p.append("s", [new_event(event_id=i) for i in ids[1:]], ANY)
            assert (first.last_version, rest.first_version, rest.duplicate) == (2, 3, False)
        else:
            for n, event_id in enumerate(ids, start=1):
                assert (await p.append("s", [new_event(event_id=event_id)], ANY)).last_version == n
        stored = [e.event_id async for e in p.read_stream("s")]
        assert [i for i in stored if i != f"{base}-pad"] == ids
        again = await p.append("s", [new_event(event_id=ids[1])], ANY)  # a retry of one of them is still recognised
        assert again.duplicate
    finally:
        await dispose(p)


async def test_an_event_id_shaped_like_a_derived_message_id_is_its_own_event(server_url: str) -> None:
    """An id written again after its stream was deleted is published as ``<id>~<sequence of the gone message>``:
    an event whose own id is that text (another stream, inside the duplicate window) was refused as a duplicate."""
    p = await open_provider(server_url)
    try:
        base = uuid.uuid4().hex
        gone = await p.append("s", [new_event(event_id=base)], ANY)
        await p.delete_stream("s")
        # the id is free again: a derived message id
        assert not (await p.append("s", [new_event(event_id=base)], ANY)).duplicate
        shaped = f"{base}~{gone.positions[0] >> 20}"
        assert (await p.append("t", [new_event(event_id=shaped)], ANY)).last_version == 1
        assert [e.event_id async for e in p.read_stream("t")] == [shaped]
    finally:
        await dispose(p)
