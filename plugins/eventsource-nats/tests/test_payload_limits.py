"""Events whose message is right at the server's max_payload: refused before anything is sent, or stored whole.

nats-py checks only a message's body against ``max_payload``; the server counts the headers too and answers a
larger message by closing the connection ("Maximum Payload Violation"), which fails every call in flight on it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import dispose, open_provider
from eventsource.errors import ValidationError
from eventsource.model import NewEvent, utcnow
from eventsource_nats import records

if TYPE_CHECKING:
    from servers import Servers


def _sized(body: int) -> NewEvent:
    """An event whose message body (frame header, head, data) is ``body`` bytes."""
    ev = NewEvent(str(uuid.uuid4()), "Big", b"", b"", "json", utcnow())
    data = b"x" * (body - len(records.encode([ev])))
    ev = NewEvent(ev.event_id, "Big", data, b"", "json", ev.timestamp)
    assert len(records.encode([ev])) == body
    return ev


@pytest.mark.parametrize("slack", range(0, 16, 3))
async def test_an_atomic_batch_at_max_payload_is_refused_or_stored_never_cut_off(
    current_server: Servers, slack: int
) -> None:
    """The first message of an atomic batch carries the most headers (batch id, sequence, expected sequence):
    a body that fits with fewer headers than it really gets was sent, and the server dropped the connection."""
    p = await open_provider(current_server.url, publish_retry_seconds=1.0)
    try:
        assert p.uses_atomic_batches
        await p.append("s", [_sized(200)], 0)  # the expected sequence in the headers is no longer 0
        max_payload = p._conn.max_payload
        batch = [_sized(max_payload - 210 + slack), _sized(200)]
        try:
            result = await p.append("s", batch, 1)
        except ValidationError:
            assert [e.version async for e in p.read_stream("s")] == [1]
        else:
            assert result.last_version == 3
            got = [e.event_id async for e in p.read_stream("s")]
            assert got[1:] == [e.event_id for e in batch]
        assert p._conn.nc.stats["reconnects"] == 0, "the server closed the connection"
    finally:
        await dispose(p)


async def test_an_event_with_a_long_id_at_max_payload_is_refused_or_stored_never_cut_off(machine_nats_url: str) -> None:
    """The message id header carries the event id, up to 1 KiB of UTF-8: a body that left 1 KiB for the headers
    skipped the size check, and the server dropped the connection instead of the append being refused."""
    p = await open_provider(machine_nats_url, publish_retry_seconds=1.0)
    try:
        long_id = "\U0001f600" * 256
        ev = NewEvent(long_id, "Big", b"", b"", "json", utcnow())
        ev = NewEvent(
            long_id, "Big", b"x" * (p._conn.max_payload - 1030 - len(records.encode([ev]))), b"", "json", ev.timestamp
        )
        try:
            await p.append("s", [ev], 0)
        except ValidationError:
            assert [e.version async for e in p.read_stream("s")] == []
        else:
            assert [e.event_id async for e in p.read_stream("s")] == [long_id]
        assert p._conn.nc.stats["reconnects"] == 0, "the server closed the connection"
    finally:
        await dispose(p)


async def test_the_readme_states_the_limits_the_provider_declares(machine_nats_url: str) -> None:
    """The README's Capabilities section gives each limit as ``max_payload`` minus a figure: the declared one.

    With envelopes (every batch on a pre-2.12 server) a batch may hold ``max_payload - 64 KiB``; the README said
    "about ``max_payload``", and a batch sized by that was refused.
    """
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    p = await open_provider(machine_nats_url, batch_mode="envelope")
    try:
        caps, max_payload = p.capabilities, p._conn.max_payload
        assert caps.max_event_size is not None
        assert caps.max_batch_bytes is not None
        event_kib, batch_kib = (max_payload - caps.max_event_size) / 1024, (max_payload - caps.max_batch_bytes) / 1024
        assert f"`max_event_size = max_payload - {event_kib:g} KiB`" in readme
        assert f"`max_batch_bytes = max_payload - {batch_kib:g} KiB` with envelopes" in readme
    finally:
        await dispose(p)
