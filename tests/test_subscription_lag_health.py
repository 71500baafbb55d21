"""Lag in health_check: the three-state status agrees with ``healthy``, and each provider is measured on its own."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from eventsource.checkpoints import Checkpoint, SqliteCheckpointStore
from eventsource.manager import EventSourcingManager, _event_id
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.plugins import PluginHost

if TYPE_CHECKING:
    from pathlib import Path


def _old_event() -> NewEvent:
    return NewEvent(event_id=_event_id(), event_type="T", data=b"{}", metadata=b"", encoding="json",
                    timestamp=utcnow() - timedelta(hours=2))  # fmt: skip


async def test_a_lagging_provider_says_unhealthy_in_its_status_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/lag.db"
    cfg = {"providers": {"s": {"url": url}}, "checkpoint_store": url, "max_subscription_lag": 60}
    m = EventSourcingManager(cfg, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        p = m.get_provider()
        await p.append("lag-a", [_old_event()], ANY)
        store = SqliteCheckpointStore(url)
        await store.put(Checkpoint("behind", p.checkpoint_source, "all", 0))
        await store.close()
        health = (await m.health_check())["s"]
        assert not health.healthy and health.details["reason"] == "lagging"
        # `eventsource health` and dashboards read details["status"]: it said "healthy" beside healthy=False
        assert health.details["status"] == "unhealthy"
    finally:
        await m.close()


async def test_one_providers_failing_lag_does_not_hide_the_others(tmp_path: Path) -> None:
    cps = f"sqlite:///{tmp_path}/cps.db"
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    cfg = {"providers": {"a": {"url": a}, "b": {"url": b}}, "default_provider": "a", "checkpoint_store": cps}
    m = EventSourcingManager(cfg, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        await m.get_provider("b").append("lag-b", [_old_event()], ANY)
        store = SqliteCheckpointStore(cps)
        for name in ("a", "b"):
            await store.put(Checkpoint("proj", m.get_provider(name).checkpoint_source, "all", 0))
        await store.close()
        await m.get_provider("a").close()  # a's reads now fail; b is untouched
        health = await m.health_check()
        assert not health["a"].healthy
        assert health["b"].details["subscriptions"]["proj"]["events"] == 1, health["b"].details
        assert "subscriptions" not in health["a"].details  # an unhealthy store's lag is not measured (nor waited on)
    finally:
        await m.close()


async def test_a_checkpoint_store_that_fails_is_reported_with_its_url_password_masked() -> None:
    """health_check and get_stats report a checkpoint store that fails by its error's text, which may quote the URL.

    A mistyped ``checkpoint_store`` (``sqlite://user:secret@host/x.db``) came back in
    ``details["subscriptions_error"]`` and ``extra["subscriptions_error"]`` with its password in clear: health
    output goes to dashboards and logs, and ``eventsource health --json`` printed it too.
    """
    cfg = {"providers": {"m": {"url": "memory://"}}, "checkpoint_store": "sqlite://bob:s3cr3t-pw@db/x.db"}
    m = EventSourcingManager(cfg, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        said = [
            (await m.health_check())["m"].details["subscriptions_error"],
            (await m.get_stats())["m"].extra["subscriptions_error"],
        ]
    finally:
        await m.close()
    for text in said:
        assert "sqlite URLs have no host" in text
        assert "s3cr3t-pw" not in text, text
        assert "bob:***@db" in text


async def test_a_health_check_that_raises_is_reported_with_passwords_masked() -> None:
    """docs/manager.md: health_check's message "says what is wrong, with passwords masked". A store whose health
    raised an error quoting its URL (a driver's connection error naming the DSN) was reported with that text
    as it was, password included."""
    from eventsource.memory import MemoryProvider
    from eventsource.model import HealthStatus

    class Quoting(MemoryProvider):
        async def health(self) -> HealthStatus:
            msg = f"cannot reach {self.url}"
            raise ConnectionError(msg)

    m = EventSourcingManager({"providers": {}}, host=PluginHost(load_entrypoints=False))
    await m.connect()
    try:
        await m.register_provider(Quoting("memory://bob:s3cr3t-pw@quoting"), name="q")
        status = (await m.health_check())["q"]
    finally:
        await m.close()
    assert not status.healthy
    assert "cannot reach" in status.message
    assert "s3cr3t-pw" not in status.message, status.message


class _StuckReads:
    """A memory store whose reads past a checkpoint never answer (a store holding them back), counting them."""

    @staticmethod
    def make() -> Any:
        from eventsource.memory import MemoryProvider

        class Stuck(MemoryProvider):
            kind = "stuck"
            reads = 0

            async def read_all_pages(self, **kwargs: Any) -> Any:
                Stuck.reads += 1
                await asyncio.sleep(3600)
                async for page in super().read_all_pages(**kwargs):  # pragma: no cover - never reached
                    yield page

        return Stuck("memory://")


async def test_health_waits_on_a_store_that_holds_its_reads_back_once_not_once_per_checkpoint(tmp_path: Path) -> None:
    """Each checkpoint's lag read may wait READ_WAIT (then the head is reported alone, with a note): with twelve
    checkpoints on a store whose reads hang, health waited twelve times in turn (about 12 s, 2 s per checkpoint
    with the head read), where a dashboard polls it every few seconds. After one read found the store holding its
    reads back, the other checkpoints are reported with the same note without a read of their own."""
    cps = f"sqlite:///{tmp_path}/cps.db"
    m = EventSourcingManager({"providers": {}, "default_provider": None, "checkpoint_store": cps},
                             host=PluginHost(load_entrypoints=False))  # fmt: skip
    stuck = _StuckReads.make()
    await m.register_provider(stuck, name="stuck")
    try:
        await stuck.append("s", [_old_event()], ANY)
        store = SqliteCheckpointStore(cps)
        for i in range(12):
            await store.put(Checkpoint(f"proj-{i}", stuck.checkpoint_source, "all", 0))
        await store.close()
        health = (await m.health_check())["stuck"]
        subs = health.details["subscriptions"]
        assert sorted(subs) == sorted(f"proj-{i}" for i in range(12))
        assert all(lag["events"] is None and lag["seconds"] is None and lag["note"] for lag in subs.values()), subs
        assert type(stuck).reads == 1
    finally:
        await m.close()
