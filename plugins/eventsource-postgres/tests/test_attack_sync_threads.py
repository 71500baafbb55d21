"""The sync API on PostgreSQL as a threaded service uses it: one facade shared by worker threads, in both loop
modes, closed while they are mid-call or mid-iteration. Every wait is bounded (join with a timeout, then a check)."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsource import ANY, EventData
from eventsource.errors import ProviderUnavailableError
from eventsource.sync import SyncEventSourcingManager
from eventsource.testing.threads import consumers_share_one_subscription


@pytest.fixture(params=[True, False], ids=["inline", "loop-thread"])
def config(url: str, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    app = f"es-threads-{uuid.uuid4().hex[:12]}"
    settings = {"schema": schema, "pool_max_size": 4, "application_name": app, "sync_inline": request.param}
    yield {"providers": {"pg": {"url": url, "settings": settings}}, "default_provider": "pg", "timeout": 30}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _sessions(url: str, config: dict[str, Any]) -> int:
    """The facade's sessions still on the server, once those it closed have gone (a closed session's backend
    leaves ``pg_stat_activity`` a moment after the client hangs up: a loaded server showed one still there)."""
    app = config["providers"]["pg"]["settings"]["application_name"]
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()
            assert row is not None
            if not row[0] or time.monotonic() > deadline:
                return int(row[0])
            time.sleep(0.05)


def test_worker_threads_sharing_one_facade_lose_and_duplicate_nothing_then_close_mid_use(
    url: str, config: dict[str, Any]
) -> None:
    es = SyncEventSourcingManager(config).connect()
    es.append_events_batch(stream_id="r", events=[EventData("E", i) for i in range(120)])
    errors: list[BaseException] = []
    refused = collections.Counter[int]()

    def worker(n: int) -> None:
        try:
            for i in range(25):
                es.append_event(stream_id="hot", event_type="E", data={"w": n, "i": i}, expected_version=ANY)
                es.append_event(stream_id=f"own-{n}", event_type="E", data=i, expected_version=i)
                it = es.read_stream("r", page_size=9)
                assert [next(it).data for _ in range(20)] == list(range(20))  # abandoned mid-page
            assert [e.data for e in es.read_stream(f"own-{n}", page_size=7)] == list(range(25))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert errors == []
    events = list(es.read_stream("hot", page_size=13))
    assert [e.version for e in events] == list(range(1, 151))
    assert sorted((e.data["w"], e.data["i"]) for e in events) == [(w, i) for w in range(6) for i in range(25)]

    def busy(n: int) -> None:  # until the facade is closed under it: refused with the typed error, never hung
        try:
            while True:
                es.append_event(stream_id="late", event_type="E", data=n, expected_version=ANY)
                for _ in es.read_stream("r", page_size=10):
                    pass
        except ProviderUnavailableError:
            refused[n] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=busy, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    closer = threading.Thread(target=es.close)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert errors == []
    assert sorted(refused) == [0, 1, 2, 3]
    assert _sessions(url, config) == 0
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("eventsource", "asyncio"))]


def test_consumer_threads_sharing_one_subscription_each_get_distinct_events(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        consumers_share_one_subscription(es, batches=5)
