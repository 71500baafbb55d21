"""Findings of a review of the attacker review's fixes: each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import test_nats
from conftest import dispose, open_provider
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers


old_cluster = test_nats.old_cluster  # the fixture: a 3-node cluster of a server before 2.9.21


def _event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b'{"x": 1}', b"", "json", utcnow())


@pytest.mark.parametrize(
    ("setting", "value", "deletes"),
    [("max_msgs", 1000, False), ("max_bytes", 1 << 30, False), ("max_age", 3600.0, True)],
)
async def test_a_limit_under_discard_new_that_refuses_writes_is_not_a_deletion_risk(
    machine_nats_url: str, setting: str, value: float, deletes: bool
) -> None:
    """A cap on the events stream with ``discard: new`` (the way to bound disk without losing anything) makes the
    server refuse new messages at the cap, never delete stored ones: health said "degraded" and that the server
    deletes messages past this limit. ``max_age`` deletes whatever the discard policy."""
    import dataclasses

    from nats.js.api import DiscardPolicy

    p = await open_provider(machine_nats_url)
    try:
        info = await p._conn.js.stream_info(p.names.stream)
        await p._conn.js.update_stream(
            dataclasses.replace(info.config, discard=DiscardPolicy.NEW, **{setting: value})
        )
        h = await p.health()
        assert [r["setting"] for r in h.details["durability_risks"]] == ([setting] if deletes else [])
        assert h.details["status"] == ("degraded" if deletes else "healthy"), h.message
    finally:
        await dispose(p)
