"""The connection an inline sync call used stays out of the pool for the next inline call, within bounds.

Between an inline sync caller's calls nothing else runs on the loop, so the pool's hand-over (its lock, its
queue, its checks) is skipped; the connection goes back through the pool when unused for ``KEEP_IDLE``,
kept ``KEEP_AT_MOST`` in all or past ``max_lifetime``, found stale, before an async caller's call, and on close
(closed with a pool an interrupt left broken).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsource.sync import SyncEventSourcingManager
from eventsource_postgres import connection


@pytest.fixture
def config(url: str) -> Iterator[dict[str, Any]]:
    schema = f"es_{uuid.uuid4().hex[:16]}"
    yield {"providers": {"pg": {"url": url, "settings": {"schema": schema, "pool_max_size": 4}}}}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _conn(es: SyncEventSourcingManager) -> Any:
    return es.get_provider()._conn  # the store's pool and what it keeps


def _requests(es: SyncEventSourcingManager) -> int:
    return int(_conn(es).pool.get_stats().get("requests_num", 0))


def test_consecutive_inline_calls_share_one_connection_without_the_pools_hand_over(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=0)
        kept = _conn(es)._kept
        assert kept is not None
        before = _requests(es)
        for i in range(1, 21):
            es.append_event(stream_id="s", event_type="E", data=i, expected_version=i)
        assert [e.data for e in es.read_stream("s")] == list(range(21))
        assert _requests(es) == before, "each call took a connection from the pool"
        assert _conn(es)._kept is kept
    assert kept.closed, "close() left the kept connection open"


@pytest.mark.parametrize(("limit", "calls"), [("KEEP_IDLE", 5), ("KEEP_AT_MOST", 1)])
def test_a_connection_past_keep_idle_or_keep_at_most_goes_back_through_the_pool(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, limit: str, calls: int
) -> None:
    monkeypatch.setattr(connection, limit, 0.0)
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=0)
        before = _requests(es)
        for i in range(1, calls + 1):
            es.append_event(stream_id="s", event_type="E", data=i, expected_version=i)
        assert _requests(es) == before + calls


def test_once_the_loop_runs_on_its_thread_the_kept_connection_goes_back_to_the_pool(config: dict[str, Any]) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=1)
        assert _conn(es)._kept is not None
        sub = es.subscribe(stream_id="s", poll_interval=0.05)  # (the loop moves to its thread for good)
        try:
            assert es._loop.threaded
            es.append_event(stream_id="s", event_type="E", data=2, expected_version=1)
            assert _conn(es)._kept is None, "a call on the loop's thread left a connection out of the pool"
            stats = _conn(es).pool.get_stats()
            assert stats["pool_available"] + 1 >= stats["pool_size"]  # (the subscription may hold one)
        finally:
            sub.close()


def test_the_idle_status_the_plugin_compares_with_is_psycopgs() -> None:
    from psycopg.pq import TransactionStatus

    assert connection.IDLE == TransactionStatus.IDLE


def test_a_kept_connection_past_max_lifetime_goes_back_through_the_pool_which_closes_it(
    config: dict[str, Any],
) -> None:
    # max_lifetime (connection recycling: failover, credentials, a balancer) held for a pooled connection;
    # kept for the next inline call, one outlived it by up to KEEP_AT_MOST (30 s)
    config["providers"]["pg"]["settings"].update(max_lifetime=0.5, pool_min_size=1)
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=0)
        first = _conn(es)._kept
        assert first is not None
        version, t_end = 1, time.monotonic() + 1.0
        while time.monotonic() < t_end:  # (each call well within KEEP_IDLE of the last)
            es.append_event(stream_id="s", event_type="E", data=version, expected_version=version)
            version += 1
            time.sleep(0.02)
        assert _conn(es)._kept is not first, "a connection past max_lifetime was still kept and used"
        assert first.closed, "the pool did not close a connection past max_lifetime"


def test_a_connection_is_not_kept_while_another_task_of_the_inline_call_waits_for_the_pool(
    config: dict[str, Any],
) -> None:
    # an async snapshot handler runs inside the append's inline call, and may read through the async manager
    # concurrently; with one connection in all, the one a task kept was the one its sibling waited for
    app = f"es-kept-{uuid.uuid4().hex[:12]}"
    config["providers"]["pg"]["settings"].update(pool_max_size=1, pool_min_size=1, application_name=app)
    config["snapshot_threshold"] = 1
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=0)
        assert _conn(es)._kept is not None
        seen: list[object] = []

        async def handler(stream_id: str, version: int) -> Any:
            # the server drops the kept connection (a restart, a terminated backend): both reads wait for the pool
            drop = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
            with psycopg.connect(config["providers"]["pg"]["url"], autocommit=True) as admin:
                admin.execute(drop, [app])
            await asyncio.sleep(0.2)  # (the goodbye reaches the socket; asyncio.timeout needs the task this starts)
            try:
                async with asyncio.timeout(10):  # the hang bound (the pool's timeout is 30 s)
                    seen.extend(
                        await asyncio.gather(es.manager.stream_exists(stream_id), es.manager.stream_exists("x"))
                    )
            except TimeoutError:
                seen.append("expired")
            return None

        es.set_snapshot_handler(handler)
        es.append_event(stream_id="s", event_type="E", data=1, expected_version=1)
        assert seen == [True, False], "a task of the call waited for the connection its sibling kept"
        assert es.append_event(stream_id="s", event_type="E", data=2, expected_version=2).version == 3


def test_appends_on_one_connection_run_on_its_one_kept_cursor_whose_adapters_psycopg_keeps(
    config: dict[str, Any],
) -> None:
    with SyncEventSourcingManager(config) as es:
        es.append_event(stream_id="s", event_type="E", data=0)
        es.append_event(stream_id="s", event_type="E", data=1, expected_version=1)  # (the statement of an exact one)
        kept = _conn(es)._kept
        cur = kept._append_cursor
        assert cur is not None
        tx = cur._tx  # psycopg builds a new Transformer (its adapters) for a query other than the cursor's last one
        for i in range(2, 4):
            es.append_event(stream_id="s", event_type="E", data=i, expected_version=i)
        assert kept._append_cursor is cur
        assert cur._tx is tx
        assert [e.data for e in es.read_stream("s")] == list(range(4))
        es._loop.run(cur.close())  # (closed: a new one is made)
        es.append_event(stream_id="s", event_type="E", data=4, expected_version=4)
        assert kept._append_cursor is not cur
        assert kept._append_cursor is not None
