"""Append details the kit reaches only through the manager."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eventsource.errors import ConcurrencyError, ValidationError
from eventsource.model import ANY, NO_STREAM, STREAM_EXISTS, NewEvent, NewStream, utcnow


def new_event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())


async def test_provider_refuses_a_batch_repeating_an_event_id(make_provider: Callable[..., Any]) -> None:
    p = await make_provider()
    e = new_event()
    with pytest.raises(ValidationError):
        await p.append("dup-in-batch", [e, e], ANY)
    assert [x async for x in p.read_stream("dup-in-batch")] == []


@pytest.mark.parametrize("size", [1, 3])
async def test_every_expected_form_single_and_batch(make_provider: Callable[..., Any], size: int) -> None:
    p = await make_provider()
    batch = lambda: [new_event() for _ in range(size)]  # noqa: E731
    with pytest.raises(ConcurrencyError) as info:
        await p.append("s", batch(), STREAM_EXISTS)
    assert (info.value.actual, info.value.expected) == (0, "STREAM_EXISTS")
    with pytest.raises(ConcurrencyError):
        await p.append("s", batch(), 2)
    r = await p.append("s", batch(), NO_STREAM, NewStream("s", name="S", metadata={"k": 1}))
    assert (r.first_version, r.last_version) == (1, size)
    with pytest.raises(ConcurrencyError) as info:
        await p.append("s", batch(), NO_STREAM)
    assert info.value.actual == size
    with pytest.raises(ConcurrencyError):
        await p.append("s", batch(), 0)
    r = await p.append("s", batch(), size)
    assert r.first_version == size + 1
    r = await p.append("s", batch(), STREAM_EXISTS)
    r = await p.append("s", batch(), ANY)
    assert r.last_version == 4 * size
    info_ = await p.get_stream_info("s")
    assert (info_.version, info_.event_count, info_.name, info_.metadata) == (4 * size, 4 * size, "S", {"k": 1})
    assert [e.version async for e in p.read_stream("s")] == list(range(1, 4 * size + 1))
    positions = [e.position async for e in p.read_stream("s")]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
