"""JetStream error 10049, "error creating store for stream": the server could not create a stream's file store.

The server answers with that fixed sentence (code 500) and logs the cause only (here "storage directory is not a
directory", 10077; a directory a racing delete still holds, a full disk, open-file limits alike). A file standing
where the stream's directory goes makes it happen on demand, on a private server (never the shared one).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import unique_store
from eventsource.errors import ProviderUnavailableError
from eventsource_nats.checkpoints import NatsCheckpointStore
from eventsource_nats.lease import NatsKvLease
from eventsource_nats.provider import NatsProvider
from servers import start_single
from test_nats import _old_server_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers import Servers


@pytest.fixture(params=["machine", "current"])
def server(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """A private server: the machine's binary (2.9.10 here), then the current one."""
    servers = start_single(_old_server_binary() if request.param == "machine" else None)
    yield servers
    servers.stop()


@pytest.mark.parametrize("blocked", ["events stream", "info bucket"])
async def test_a_store_the_server_cannot_create_fails_connect_as_retriable(server: Servers, blocked: str) -> None:
    """Connect reported 10049 as a plain ``ProviderError``, which neither it nor the manager retries: one transient
    failure of the server (the kit met it once on 2.9.10) failed the whole connect for good. It is retried (a
    current server clears the way as it cleans up, and the retry succeeds), and reported as
    ``ProviderUnavailableError`` when it persists (2.9.10); once the server can create the store, connect works."""
    settings = unique_store()
    streams = Path(server.tmp.name) / "js" / "jetstream" / "$G" / "streams"
    streams.mkdir(parents=True, exist_ok=True)
    name = settings["stream"] if blocked == "events stream" else f"KV_{settings['stream']}_info"
    (streams / name).write_text("not a directory")
    p = NatsProvider(server.url, **settings)
    try:
        try:
            await p.connect()  # a current server removes the file as it cleans up the failed create: a retry works
        except ProviderUnavailableError as e:  # 2.9.10 leaves it: the failure persists
            assert "10049" in str(e)
        if (streams / name).is_file():
            (streams / name).unlink()
        await p.connect()
        assert p._conn.is_open
    finally:
        await p.close()


@pytest.mark.parametrize("helper", ["checkpoints", "lease"])
async def test_a_bucket_the_server_cannot_create_fails_the_helpers_connect_as_retriable(
    server: Servers, helper: str
) -> None:
    """The checkpoint store's and the lease's bucket: the checkpoint store reported 10049 as a plain ``ProviderError``
    and the lease as nats-py's own ``ServerError``, neither of which a subscription or the projection runner retries."""
    bucket = f"b_{uuid.uuid4().hex[:10]}"
    streams = Path(server.tmp.name) / "js" / "jetstream" / "$G" / "streams"
    streams.mkdir(parents=True, exist_ok=True)
    (streams / f"KV_{bucket}").write_text("not a directory")
    store = NatsCheckpointStore(server.url, bucket=bucket) if helper == "checkpoints" else None
    lease = NatsKvLease(server.url, bucket=bucket, ttl=2) if helper == "lease" else None
    opened = store or lease
    assert opened is not None
    try:
        try:
            await opened.connect()
        except ProviderUnavailableError as e:  # 2.9.10 leaves the file: the failure persists
            assert "10049" in str(e)
        if (streams / f"KV_{bucket}").is_file():
            (streams / f"KV_{bucket}").unlink()
        await opened.connect()
        if store is not None:
            assert await store.get("n", "s") is None
        if lease is not None:
            async with lease.hold("k", timeout=5):
                pass
    finally:
        await opened.close()
