"""Reads on a standby (``read_url``) and read-your-writes, on a private primary + asynchronous standby.

The standby's walreceiver is stopped (SIGSTOP) to make it fall behind on purpose: without
read-your-writes a read on the standby then misses the newest append, which proves reads go there;
with it, a read waits until the standby has replayed this provider's writes, or reads from the
primary once ``read_your_writes_timeout`` has passed (counted in health).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Self

import psycopg
import pytest
from eventsource import EventData, EventSourcingManager
from eventsource.errors import ConcurrencyError, ConfigurationError, ProviderTimeoutError, ProviderUnavailableError
from pair import Pair


def _walreceivers(pair: Pair) -> list[int]:
    pid = int((pair.standby_dir / "postmaster.pid").read_text().splitlines()[0])
    children = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True).stdout
    return [int(c) for c in children.split() if "walreceiver" in Path(f"/proc/{c}/cmdline").read_text()]


class Held:
    """The standby stops receiving WAL while the block runs (its walreceiver is SIGSTOPped)."""

    def __init__(self, pair: Pair) -> None:
        self.pids = _walreceivers(pair)
        assert self.pids, "the standby has no walreceiver"

    def __enter__(self) -> Self:
        for p in self.pids:
            os.kill(p, signal.SIGSTOP)
        return self

    def release(self) -> None:
        for p in self.pids:
            os.kill(p, signal.SIGCONT)
        self.pids = []

    def __exit__(self, *exc: object) -> None:
        self.release()


def _config(pair: Pair, **settings: Any) -> dict[str, Any]:
    return {
        "providers": {
            "pg": {"url": pair.url(), "settings": {"read_url": pair.url("prefer-standby"), **settings}},
        },
        "timeout": 60,
    }


async def _ids(es: EventSourcingManager, stream: str) -> list[str]:
    return [e.event_id async for e in es.read_stream(stream)]


async def _wait_until_seen(es: EventSourcingManager, stream: str, n: int) -> None:
    for _ in range(600):
        if len(await _ids(es, stream)) >= n:
            return
        await asyncio.sleep(0.05)
    msg = f"the standby never showed {n} events of {stream}"
    raise AssertionError(msg)


async def test_reads_go_to_the_standby_and_trail_it_without_read_your_writes(standby_pair: Pair) -> None:
    async with EventSourcingManager(_config(standby_pair)) as es:
        await es.append_event(stream_id="order-1", event_type="Placed", data={"n": 1})
        await _wait_until_seen(es, "order-1", 1)
        with Held(standby_pair):
            r = await es.append_event(stream_id="order-1", event_type="Paid", data={"n": 2})
            assert r.event_id not in await _ids(es, "order-1")  # the standby has not received it
            page = await es.get_events(stream_id="order-1")
            assert [e.version for e in page.events] == [1]
            info = await es.get_stream_info("order-1")  # stream facts come from the primary
            assert info.version == 2
        await _wait_until_seen(es, "order-1", 2)
        health = (await es.health_check())["pg"]
        assert health.details["read_replica"]["url"].endswith("target_session_attrs=prefer-standby&connect_timeout=2")
        assert health.details["read_replica"]["fallbacks"] == 0


async def test_read_your_writes_waits_for_the_standby_to_replay(standby_pair: Pair) -> None:
    async with EventSourcingManager(_config(standby_pair, read_your_writes=True, read_your_writes_timeout=30)) as es:
        provider = es.get_provider("pg")
        with Held(standby_pair) as held:
            r = await es.append_event(stream_id="order-2", event_type="Placed", data={})
            reading = asyncio.create_task(_ids(es, "order-2"))
            await asyncio.sleep(0.5)
            assert not reading.done(), "the read did not wait for the standby"
            held.release()
            assert await reading == [r.event_id]
        replica = provider._replica
        assert replica is not None
        assert replica.waits >= 1
        assert replica.fallbacks == 0
        # once the standby has replayed the writes, later reads need no check
        waits = replica.waits
        assert await _ids(es, "order-2") == [r.event_id]
        assert replica.waits == waits


async def test_read_your_writes_reads_the_primary_when_the_standby_stays_behind(standby_pair: Pair) -> None:
    config = _config(standby_pair, read_your_writes=True, read_your_writes_timeout=0.2)
    async with EventSourcingManager(config) as es:
        with Held(standby_pair):
            r = await es.append_events_batch(
                stream_id="order-3", events=[EventData(event_type="Line", data={"i": i}) for i in range(3)]
            )
            assert await _ids(es, "order-3") == list(r.event_ids)
            page = await es.get_events(stream_id="order-3")
            assert [e.event_id for e in page.events] == list(r.event_ids)
        replica = es.get_provider("pg")._replica
        assert replica is not None
        assert replica.fallbacks >= 2


async def test_a_subscription_on_the_standby_sees_every_event(standby_pair: Pair) -> None:
    async with EventSourcingManager(_config(standby_pair)) as es:
        for i in range(10):
            await es.append_event(stream_id=f"s-{i % 3}", event_type="E", data={"i": i})
        got: list[int] = []
        async with es.subscribe() as sub:

            async def consume() -> None:
                async for e in sub:
                    got.append(e.data["i"])
                    if len(got) == 20:
                        return

            task = asyncio.create_task(consume())
            for i in range(10, 20):
                await es.append_event(stream_id=f"s-{i % 3}", event_type="E", data={"i": i})
            await asyncio.wait_for(task, timeout=60)
        assert sorted(got) == list(range(20))
        assert len(got) == len(set(got))


async def test_a_read_url_on_another_cluster_is_refused_at_connect(standby_pair: Pair) -> None:
    # a server that is not in recovery answers NULL for its replay position, which read-your-writes took for
    # "has every write": a read_url naming another cluster's primary served that database's rows as this store's
    config = {
        "providers": {
            "pg": {
                "url": standby_pair.url(),
                "settings": {"read_url": "postgresql://postgres@127.0.0.1:5432/test", "read_your_writes": True},
            }
        },
        "timeout": 60,
    }
    es = EventSourcingManager(config)
    with pytest.raises(ConfigurationError) as err:
        await es.connect()
    assert err.value.details["field"] == "read_url"
    assert "another cluster" in str(err.value)
    await es.close()


async def test_read_your_writes_holds_on_a_read_pool_mixing_standby_and_primary(standby_pair: Pair) -> None:
    # a read_url spreading reads over several hosts (load_balance_hosts) pools connections to the standby
    # and to the primary: the replay check and the read must run on the same connection, or a check
    # answered by the primary (NULL: "has every write") lets a read on the lagging standby miss the write
    hosts = f"127.0.0.1:{standby_pair.standby_port},127.0.0.1:{standby_pair.primary_port}"
    read_url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=any&load_balance_hosts=random"
    settings = {
        "read_url": read_url,
        "read_your_writes": True,
        "read_your_writes_timeout": 0.1,
        "pool_min_size": 10,
        "pool_max_size": 10,
    }
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 60}
    async with EventSourcingManager(config) as es:
        replica = es.get_provider("pg")._replica
        assert replica is not None
        standby = replica.standby

        async def in_recovery(c: Any) -> bool:
            rows = await standby.fetchall(c, "SELECT pg_is_in_recovery() FROM pg_sleep(0.3)", ())
            return bool(rows[0][0])

        kinds = await asyncio.gather(*(standby.call("probe", in_recovery, retry=False) for _ in range(10)))
        assert True in kinds and False in kinds, f"the read pool is not mixed: {kinds}"
        with Held(standby_pair):
            r = await es.append_event(stream_id="order-mix", event_type="Placed", data={})
            seen = [r.event_id in await _ids(es, "order-mix") for _ in range(40)]
        assert all(seen), f"{seen.count(False)} of 40 reads missed this provider's own write"


async def test_read_your_writes_after_the_standby_is_promoted(standby_pair: Pair) -> None:
    # a promoted server keeps answering pg_last_wal_replay_lsn() with where its recovery ended: taken as a
    # standby's position, every read after a write waited out read_your_writes_timeout, then "fell back"
    settings = {"read_url": standby_pair.url("prefer-standby"), "read_your_writes": True, "read_your_writes_timeout": 3}
    config = {"providers": {"pg": {"url": standby_pair.url(), "settings": settings}}, "timeout": 10}
    async with EventSourcingManager(config) as es:
        await es.append_event(stream_id="order-p", event_type="Placed", data={})
        await asyncio.to_thread(standby_pair.kill_primary)
        await asyncio.to_thread(standby_pair.promote)
        for _ in range(100):
            try:
                r = await es.append_event(stream_id="order-p", event_type="Paid", data={})
                break
            except (ProviderUnavailableError, ProviderTimeoutError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("no append went through on the promoted server")
        replica = es.get_provider("pg")._replica
        assert replica is not None
        for _ in range(3):
            assert r.event_id in await _ids(es, "order-p")
        assert (replica.waits, replica.fallbacks) == (0, 0)


async def test_a_committed_append_stays_committed_when_its_wal_position_cannot_be_read(standby_pair: Pair) -> None:
    # read-your-writes reads the primary's WAL position after each write; when that read failed, the append,
    # already committed, was reported as failed: a caller retrying it got a conflict (or wrote it twice).
    # The position read is made to fail for real: the store's role loses EXECUTE on the function it calls.
    admin = standby_pair.dsn(standby_pair.primary_port)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("CREATE ROLE app LOGIN")
        c.execute("GRANT CREATE ON DATABASE postgres TO app")
    hosts = f"127.0.0.1:{standby_pair.primary_port},127.0.0.1:{standby_pair.standby_port}"
    url = f"postgresql://app@{hosts}/postgres?connect_timeout=2&target_session_attrs="
    settings = {"read_url": url + "prefer-standby", "read_your_writes": True, "read_your_writes_timeout": 30}
    config = {"providers": {"pg": {"url": url + "read-write", "settings": settings}}, "timeout": 60}
    async with EventSourcingManager(config) as es:
        replica = es.get_provider("pg")._replica
        assert replica is not None
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("REVOKE EXECUTE ON FUNCTION pg_current_wal_insert_lsn() FROM PUBLIC")
        with Held(standby_pair):
            r = await es.append_event(stream_id="order-u", event_type="Placed", data={})
            assert replica.details()["unrecorded_writes"] == 1
            assert replica.details()["position_unknown"] is True
            health = (await es.health_check())["pg"]
            assert health.details["status"] == "degraded", health.message
            assert [f["component"] for f in health.details["faults"]] == ["read_your_writes"]
            assert "pg_current_wal_insert_lsn" in health.details["faults"][0]["error"]
            # the standby has not received the write, and its position is unknown: reads go to the primary
            assert await _ids(es, "order-u") == [r.event_id]
            with pytest.raises(ConcurrencyError):  # the retry a failed append invited
                await es.append_event(stream_id="order-u", event_type="Placed", data={}, expected_version=0)
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute("GRANT EXECUTE ON FUNCTION pg_current_wal_insert_lsn() TO PUBLIC")
            # the next read reads the position again (at or past the unrecorded commit) and waits for the standby
            reading = asyncio.create_task(_ids(es, "order-u"))
            await asyncio.sleep(0.5)
            assert not reading.done(), "the read did not wait for the standby"
        assert await reading == [r.event_id]
        assert replica.details()["position_unknown"] is False
        assert "faults" not in (await es.health_check())["pg"].details
        assert replica.fallbacks == 0


async def test_an_append_cancelled_after_its_commit_is_not_read_from_a_standby_without_it() -> None:
    # a write cancelled after it committed (here: while its commit waits for the synchronous standby, whose
    # walreceiver is stopped; the cancel ends the wait, and the commit stands) never read its WAL position,
    # so reads kept going to the standby, which has not received it: the write looked lost, and a retry
    # without an expected version would write it twice. (A cancel one step later, in the position read
    # itself, already sent reads to the primary.)
    pair = Pair(synchronous=True).start()
    try:
        config = _config(pair, read_your_writes=True, read_your_writes_timeout=0.2)
        async with EventSourcingManager(config) as es:
            replica = es.get_provider("pg")._replica
            assert replica is not None
            with Held(pair), psycopg.connect(pair.dsn(pair.primary_port), autocommit=True) as admin:
                task = asyncio.create_task(es.append_event(stream_id="order-c", event_type="Placed", data={}))
                for _ in range(600):  # bounded: until the commit waits for the standby
                    waiting = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
                    if waiting.fetchone() == (1,):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the append's commit never waited for the standby")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                stored = "SELECT event_id FROM eventsource.events WHERE stream_id = 'order-c'"
                committed = admin.execute(stored).fetchall()
                assert len(committed) == 1, "the cancelled commit did not stand: nothing to read"
                assert await _ids(es, "order-c") == [committed[0][0]]
                assert replica.details()["position_unknown"] is False  # the read read the position again
            assert replica.details()["unrecorded_writes"] == 1
            with pytest.raises(ConcurrencyError):  # refused: certainly not committed, its position is not unknown
                await es.append_event(stream_id="order-c", event_type="Placed", data={}, expected_version=0)
            assert replica.details()["unrecorded_writes"] == 1
    finally:
        pair.stop()
