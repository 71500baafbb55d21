"""The whole kit again with a distributed lease: writers in several processes stay safe.

The lease is the PostgreSQL advisory-lock lease of the ``eventsource-postgres`` plugin, found through
its entry point (``lease_url`` scheme ``postgresql``). With it the provider declares
``concurrency="cross_process"``, so the kit also races two OS processes appending to one stream
with the same expected versions, and checks that exactly one wins each round.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource.testing import AbsentStore, ProviderSuite
from eventsource_kafka import records
from eventsource_kafka.provider import KafkaProvider

from .conftest import drop_namespace

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture(scope="session")
def lease_url(eventsource_test_env: dict[str, str]) -> str:
    """Where the PostgreSQL lease lives (``EVENTSOURCE_TEST_POSTGRES_URL``)."""
    return eventsource_test_env["EVENTSOURCE_TEST_POSTGRES_URL"]


class TestKafkaProviderWithLease(ProviderSuite):
    """The kit, with every append check-then-write under a PostgreSQL advisory lease."""

    @pytest.fixture
    async def provider(self, kafka_url: str, lease_url: str) -> AsyncIterator[KafkaProvider]:
        p = KafkaProvider(
            kafka_url,
            topic_prefix=f"l{uuid.uuid4().hex[:12]}",
            request_timeout=60.0,
            lease_url=lease_url,
            lease_timeout=60.0,
            lease_settings={"namespace": "eventsource-kafka-tests"},
        )
        await p.connect()
        try:
            yield p
        finally:
            await drop_namespace(p)
            await p.close()

    @pytest.fixture
    def absent_store(self, absent_kafka: AbsentStore, lease_url: str) -> AbsentStore:
        """A topic prefix nothing has used, with the same lease (refused before the lease is built)."""
        lease = {
            "lease_url": lease_url,
            "lease_timeout": 60.0,
            "lease_settings": {"namespace": "eventsource-kafka-tests"},
        }
        return AbsentStore({**absent_kafka.args, **lease}, absent_kafka.leftovers)


def test_lease_declares_cross_process_reach(kafka_url: str, lease_url: str) -> None:
    with_lease = KafkaProvider(kafka_url, lease_url=lease_url)
    without = KafkaProvider(kafka_url)
    assert with_lease.capabilities.concurrency == "cross_process"
    assert without.capabilities.concurrency == "cross_process"  # the lease only saves lost records now
    assert with_lease.spawn_args()["lease_url"] == lease_url


_WRITER = textwrap.dedent(
    """
    import asyncio, json, sys, uuid
    from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError
    from eventsource.model import NewEvent, utcnow
    from eventsource_kafka.provider import KafkaProvider

    async def main(spec):
        p = KafkaProvider(**spec["args"])
        await p.connect()
        written = []
        try:
            for i in range(spec["appends"]):
                # one event per append, kept across retries: an attempt that landed but timed out is
                # then found by its id (duplicate) and counted once, not written again as another event
                ev = NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", utcnow())
                while True:
                    info = await p.get_stream_info(spec["stream"])
                    version = info.version if info else 0
                    try:
                        r = await p.append(spec["stream"], [ev], version)
                    except ConcurrencyError:
                        continue  # lost the race: read the version again
                    except (ProviderTimeoutError, ProviderUnavailableError) as e:
                        print(f"retrying after {type(e).__name__}: {e}", file=sys.stderr)
                        continue
                    written.append(r.first_version)
                    break
        finally:
            await p.close()
        print(json.dumps(written))

    asyncio.run(main(json.loads(sys.argv[1])))
    """
)


async def test_two_processes_read_check_append_without_duplicate_versions(kafka_url: str, lease_url: str) -> None:
    """Two processes loop read-version/append-with-it: with the lease, versions stay unique and gap-free."""
    prefix = f"x{uuid.uuid4().hex[:12]}"
    args = {
        "url": kafka_url,
        "topic_prefix": prefix,
        "lease_url": lease_url,
        "request_timeout": 60.0,
        "lease_timeout": 60.0,
    }
    spec = {"args": args, "stream": "shared", "appends": 15}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            json.dumps(spec),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    won: list[int] = []
    each = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        each.append(json.loads(out.decode().strip().splitlines()[-1]))
        won.extend(each[-1])
    p = KafkaProvider(kafka_url, topic_prefix=prefix)
    await p.connect()
    try:
        if sorted(won) != list(range(1, 31)):  # show what each process won and what the topic holds
            meta = (await p._views.meta())["shared"]
            recs, _, _ = await p.io.read(meta["topic"], 0)
            stored = [(r.offset, [row[2] for row in records.peek_rows(r.value)]) for r in recs]
            pytest.fail(f"won per process: {each}; (offset, versions) stored: {stored}")
        assert [e.version async for e in p.read_stream("shared")] == list(range(1, 31))
        info = await p.get_stream_info("shared")
        assert (info.version, info.event_count) == (30, 30)
    finally:
        await drop_namespace(p)
        await p.close()
