"""Checkpoints of NATS stores on one server: each JetStream stream (subject prefix) is its own source."""

from __future__ import annotations

import pytest
from conftest import dispose, open_provider
from eventsource.testing.identity import check_own_checkpoints
from eventsource_nats.provider import NatsProvider


async def test_two_stores_on_one_server_keep_their_own_checkpoints(
    machine_provider: NatsProvider, machine_nats_url: str
) -> None:
    other = await open_provider(machine_nats_url)
    try:
        await check_own_checkpoints(machine_provider, other)
    finally:
        await dispose(other)


def test_the_default_stream_keeps_the_plain_url_as_its_source(machine_nats_url: str) -> None:
    p = NatsProvider(machine_nats_url)  # never connected: the identity is the settings'
    assert p.checkpoint_source == p.display_url
    assert NatsProvider(machine_nats_url, stream="X").checkpoint_source == f"{p.display_url}#stream=X"


@pytest.mark.parametrize(
    ("url", "source"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://app:s3cret@n1:4222", "nats://app:***@n1:4222"),
    ],
)
def test_the_source_is_pinned_literally(url: str, source: str) -> None:
    # literal, not "== display_url": a change to the masking would change the source, and every checkpoint
    # stored under the old one would be orphaned (subscriptions restart from the beginning)
    assert NatsProvider(url).checkpoint_source == source
    assert NatsProvider(url, stream="X").checkpoint_source == f"{source}#stream=X"
