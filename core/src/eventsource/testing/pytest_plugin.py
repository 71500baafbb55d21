"""pytest plugin of the conformance kit: enable it with ``pytest_plugins = ["eventsource.testing.pytest_plugin"]``.

It adds the ``eventsource_test_env`` fixture (server locations from ``EVENTSOURCE_TEST_*`` variables with
this project's defaults) and a ``unique_name`` fixture for per-test namespaces.
"""

from __future__ import annotations

import os
import uuid

import pytest

DEFAULTS = {
    "EVENTSOURCE_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "EVENTSOURCE_TEST_NATS_URL": "nats://127.0.0.1:4222",
    "EVENTSOURCE_TEST_KAFKA_BOOTSTRAP": "",
}


@pytest.fixture(scope="session")
def eventsource_test_env() -> dict[str, str]:
    """``EVENTSOURCE_TEST_*`` settings, defaults filled in."""
    env = dict(DEFAULTS)
    env.update({k: v for k, v in os.environ.items() if k.startswith("EVENTSOURCE_TEST_")})
    return env


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses (letters and digits only, safe for schemas, subjects and topics)."""
    return f"es{uuid.uuid4().hex[:16]}"
