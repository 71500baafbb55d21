"""The kit's ProjectionSuite with NATS as the source (handed over by the NATS KV lease), and the lease itself:
exclusion, a takeover that cancels the old holder's block, and a handover when the holder's process dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.errors import ConfigurationError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.plugins import PluginHost
from eventsource.testing.projections import ProjectionSuite
from eventsource_nats.lease import NatsKvLease

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from eventsource_nats.provider import NatsProvider


class TestNatsProjections(ProjectionSuite):
    @pytest.fixture
    async def provider(self, machine_provider: NatsProvider) -> AsyncIterator[NatsProvider]:
        yield machine_provider

    @pytest.fixture
    def lease_url(self, machine_nats_url: str) -> str:
        return machine_nats_url


@pytest.fixture
async def lease(machine_nats_url: str) -> AsyncIterator[NatsKvLease]:
    bucket = f"leases_{uuid.uuid4().hex[:10]}"
    made = PluginHost().create_lease(machine_nats_url, bucket=bucket, ttl=2)
    assert isinstance(made, NatsKvLease)
    await made.connect()
    yield made
    await made._nc.jetstream().delete_key_value(bucket)
    await made.close()


async def test_the_lease_excludes_a_second_holder_until_released(lease: NatsKvLease) -> None:
    async with lease.hold("projection:a", timeout=1):
        with pytest.raises(ProviderTimeoutError):
            async with lease.hold("projection:a", timeout=0.3):
                pass
        async with lease.hold("projection:b", timeout=1):
            pass
    async with lease.hold("projection:a", timeout=1):  # released on leaving: free at once
        pass


async def test_a_holder_that_is_taken_over_is_cancelled_and_told(lease: NatsKvLease) -> None:
    entered = asyncio.Event()

    async def holder() -> None:
        async with lease.hold("projection:c", timeout=1):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(holder())
    await asyncio.wait_for(entered.wait(), 30)
    assert lease._kv is not None
    await lease._kv.purge(lease._key("projection:c"))  # as if it had expired: another process takes it
    await lease._kv.create(lease._key("projection:c"), b"someone else")
    with pytest.raises(ProviderUnavailableError, match="lost"):
        await asyncio.wait_for(task, 30)


def test_bad_settings_are_refused(machine_nats_url: str) -> None:
    with pytest.raises(ConfigurationError):
        NatsKvLease(machine_nats_url, ttl=0)
    with pytest.raises(ConfigurationError):
        NatsKvLease(machine_nats_url, bucket="a b")
    with pytest.raises(ConfigurationError):
        NatsKvLease(machine_nats_url, namespace="x")


@pytest.mark.parametrize("bucket", ["leases_\u00e9", "leases_\u00b2", "leases\n"])
def test_a_bucket_name_the_server_refuses_is_a_configuration_error(machine_nats_url: str, bucket: str) -> None:
    """Non-ASCII letters and digits passed ``str.isalnum``; the lease then failed at connect as a
    ``ProviderUnavailableError`` (an outage a runner waits out for ever) and the checkpoint store as a
    ``ProviderError``, where a bucket name the server cannot hold is a configuration error."""
    from eventsource_nats.checkpoints import NatsCheckpointStore

    with pytest.raises(ConfigurationError) as lease:
        NatsKvLease(machine_nats_url, bucket=bucket)
    with pytest.raises(ConfigurationError) as store:
        NatsCheckpointStore(machine_nats_url, bucket=bucket)
    assert lease.value.details["field"] == store.value.details["field"] == "bucket"


HOLDER = """
import asyncio, sys
from eventsource_nats.lease import NatsKvLease
async def main():
    lease = NatsKvLease(sys.argv[1], bucket=sys.argv[2], ttl=2)
    await lease.connect()
    async with lease.hold("projection:x", timeout=30):
        print("held", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_the_lease_passes_to_another_process_when_the_holder_is_killed(
    lease: NatsKvLease, machine_nats_url: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, machine_nats_url, lease.bucket, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"held\n"
        with pytest.raises(ProviderTimeoutError):
            async with lease.hold("projection:x", timeout=0.5):
                pass
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        async with lease.hold("projection:x", timeout=30):  # the entry expires once nobody refreshes it
            pass
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
