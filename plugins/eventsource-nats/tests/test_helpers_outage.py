"""The checkpoint store and the lease through a server outage, on a private current server (never the shared one).

Each test starts its own nats-server (file storage, a free loopback port) and stops or freezes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from typing import TYPE_CHECKING

import pytest
from conftest import new_event, open_provider, retried, until_given_up
from eventsource.checkpoints import Checkpoint
from eventsource.errors import ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import ANY
from eventsource_nats.checkpoints import NatsCheckpointStore
from eventsource_nats.lease import NatsKvLease

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_nats.provider import NatsProvider
    from servers import Servers


@contextlib.asynccontextmanager
async def _frozen_under_appends(server: Servers, p: NatsProvider) -> AsyncIterator[list[asyncio.Future[object]]]:
    """The server frozen (SIGSTOP) under six appends of 900 kB (past nats-py's 2 MiB of buffer), after one stored.

    Yields the appends, running; on the way out the server runs again and they are cancelled and waited for.
    """
    proc = server.nodes[0].proc
    assert proc is not None
    appends: list[asyncio.Future[object]] = []
    try:
        await p.append("big", [new_event()], ANY)
        proc.send_signal(signal.SIGSTOP)
        appends += [asyncio.ensure_future(p.append("big", [new_event(data=b"1" * 900_000)], ANY)) for _ in range(6)]
        yield appends
    finally:
        proc.send_signal(signal.SIGCONT)
        for a in appends:
            a.cancel()
        if appends:  # (asyncio.wait refuses an empty list, and a bare coroutine since 3.11)
            await asyncio.wait(appends, timeout=30)


async def test_the_checkpoint_store_works_again_after_its_client_gave_up_reconnecting(own_server: Servers) -> None:
    """The store kept nats-py's defaults (60 attempts two seconds apart) and its client: after an outage longer
    than that, the client closed for good and every get and put failed, with nats-py's own ``ConnectionClosedError``
    (neither unavailable nor timed out, so nothing retried it), until the process was restarted."""
    store = NatsCheckpointStore(own_server.url, bucket=f"cp_{uuid.uuid4().hex[:10]}", max_reconnect_attempts=2)
    await store.connect()
    try:
        await store.put(Checkpoint("sub", "src", "all", 1, None, None))
        own_server.nodes[0].stop()
        assert await until_given_up(store._nc), "the client never gave up reconnecting"
        with pytest.raises((ProviderUnavailableError, ProviderTimeoutError)):  # a typed error worth a retry
            await store.get("sub", "src")
        own_server.nodes[0].start()
        await retried(lambda: store.put(Checkpoint("sub", "src", "all", 2, None, None)))
        got = await store.get("sub", "src")
        assert got is not None
        assert got.position == 2
    finally:
        await store.close()


async def test_the_lease_can_be_held_again_after_its_client_gave_up_reconnecting(own_server: Servers) -> None:
    """The lease kept nats-py's defaults and its client: after a long outage every ``hold`` failed with
    ``ProviderUnavailableError`` for good, and the projection runner, which retries exactly that, retried for ever
    without running the projection again."""
    lease = NatsKvLease(own_server.url, bucket=f"ls_{uuid.uuid4().hex[:10]}", ttl=2, max_reconnect_attempts=2)
    await lease.connect()
    try:
        async with lease.hold("projection:p", timeout=5):
            pass
        own_server.nodes[0].stop()
        assert await until_given_up(lease._nc), "the client never gave up reconnecting"
        own_server.nodes[0].start()

        async def hold() -> None:
            async with lease.hold("projection:p", timeout=0.5):
                pass

        await retried(hold)
    finally:
        await lease.close()


async def test_close_returns_against_a_frozen_server_with_unsent_data(own_server: Servers) -> None:
    """A server that stops reading (SIGSTOP here; a hung process, a dead link) while appends are under way: nats-py's
    close waits for the socket to take the bytes it still holds, and the provider's ``close()`` never returned (also
    not after the server's 20 s of drain and flush timeouts), so a service could not shut down. The checkpoint
    store's and the lease's ``close()`` share the bounded close."""
    p = await open_provider(own_server.url, publish_timeout=0.5, publish_retry_seconds=3.0)
    store = NatsCheckpointStore(own_server.url, bucket=f"cp_{uuid.uuid4().hex[:10]}")
    lease = NatsKvLease(own_server.url, bucket=f"ls_{uuid.uuid4().hex[:10]}", ttl=2)
    await store.connect()
    await lease.connect()
    try:
        async with _frozen_under_appends(own_server, p):
            writer = p._conn.nc._transport._io_writer
            for _ in range(300):  # until the socket holds bytes the server does not read
                if writer.transport.get_write_buffer_size() > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the frozen server's socket never filled up")
            closing = asyncio.ensure_future(asyncio.gather(p.close(), store.close(), lease.close()))
            done, _ = await asyncio.wait([closing], timeout=60)
            assert done, "close() did not return within 60 s against a frozen server"
    finally:
        await store.close()
        await lease.close()


async def test_an_append_to_a_frozen_server_fails_in_time_instead_of_hanging(own_server: Servers) -> None:
    """Once the socket to a server that stopped reading was full, nats-py waited for its flusher to take more than its
    2 MiB of buffered publishes with no timeout (``flush_timeout`` unset), and swallowed the cancel of that wait: the
    append neither timed out (``publish_timeout``, ``publish_retry_seconds``) nor could be cancelled, for as long as
    the server stayed frozen. It must fail with an error worth a retry instead."""
    p = await open_provider(own_server.url, publish_timeout=0.5, publish_retry_seconds=3.0)
    try:
        async with _frozen_under_appends(own_server, p) as appends:
            done, _ = await asyncio.wait(appends, timeout=90)
            assert len(done) == len(appends), "appends to a frozen server still ran after 90 s"
            for a in appends:
                assert isinstance(a.exception(), (ProviderTimeoutError, ProviderUnavailableError)), a.exception()
    finally:
        await p.close()
