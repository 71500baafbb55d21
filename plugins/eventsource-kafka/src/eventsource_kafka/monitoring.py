"""Monitoring: exact store-wide statistics (a scan of every stream) and the cluster's health.

``stats`` counts what reads return (retention markers applied, lost records dropped), so its counts
match :meth:`get_stream_info`; ``health`` describes the cluster, audits durability (:class:`Audit`: the
producer's ``acks``, each topic's replicas and configs as the broker describes them) and never raises.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING, Any

from eventsource.manager.monitoring import risk, with_durability
from eventsource.model import HealthStatus, ProviderStats
from eventsource.provider import top_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.reads import Reader
    from eventsource_kafka.views import Views


class Monitor:
    """Statistics and health of one provider instance."""

    def __init__(self, conn: Connection, views: Views, reader: Reader, name: Callable[[], str]) -> None:
        self.conn = conn
        self.views = views
        self.reader = reader
        self._name = name  # the provider's name, which its owner may change after construction

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Exact counts from a scan of every stream (O(store)), snapshot count from the snapshot view.

        ``top_streams`` bounds the size of ``events_by_stream``, not the cost: topic offsets count records,
        and records that lost a version race or were deleted are not events, so the scan stays.
        """
        metas = dict(await self.views.meta())
        snaps = await self.views.snaps()
        by_type: dict[str, int] = {}
        by_stream: dict[str, int] = {}
        size = 0
        last: datetime | None = None
        for sid in sorted(metas):
            n = 0
            async for e in self.reader.scan(sid, metas[sid]):
                n += 1
                by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
                size += len(e.data) + len(e.metadata)
                if last is None or e.timestamp > last:
                    last = e.timestamp
            by_stream[sid] = n
        return ProviderStats(
            total_events=sum(by_stream.values()),
            total_streams=len(metas),
            total_snapshots=sum(len(v) for k, v in snaps.items() if k in metas),
            events_by_type=by_type,
            events_by_stream=top_of(by_stream, top_streams),
            storage_size=size,
            last_event_at=last,
            uptime_seconds=monotonic() - self.conn.started,
            provider=self._name(),
            extra={"topic_prefix": self.conn.prefix, "layout": "topic-per-stream"},
            top_streams=top_streams,
        )

    async def health(self) -> HealthStatus:
        """Describe the cluster; unhealthy (never raising) when it cannot be reached."""
        t0 = monotonic()
        try:
            if not self.conn.connected:
                return HealthStatus(healthy=False, provider=self._name(), message="not connected")
            async with asyncio.timeout(min(5.0, self.conn.settings["request_timeout"])):
                desc = await self.conn.io.describe_cluster()
        except Exception as e:  # noqa: BLE001 - health reports, it never raises
            return HealthStatus(healthy=False, provider=self._name(), message=f"{type(e).__name__}: {e}")
        brokers = desc.get("brokers", []) if isinstance(desc, dict) else []
        ok = HealthStatus(
            healthy=True,
            provider=self._name(),
            message="ok",
            details={"brokers": len(brokers), "cluster_id": desc.get("cluster_id") if isinstance(desc, dict) else None},
            latency_ms=(monotonic() - t0) * 1000,
        )
        audit = Audit(brokers=len(brokers))
        try:
            async with asyncio.timeout(min(30.0, self.conn.settings["request_timeout"])):
                await self.audit(audit)
        except Exception as e:  # noqa: BLE001 - health reports, it never raises
            audit.unread.append(f"topic replicas and configs: {type(e).__name__}: {e}")
        return with_durability(ok, audit.risks, unread=audit.unread, notes=audit.notes)

    async def audit(self, audit: Audit) -> None:
        """Read the producer's ``acks``, then every topic of the store's replicas and configs from the broker."""
        io = self.conn.io
        audit.producer(io.producer.config.get("acks"))
        topics = [self.conn.meta_topic, self.conn.snap_topic]
        topics += sorted({m["topic"] for m in (await self.views.meta()).values()})

        def describe() -> tuple[Any, Any]:
            from kafka.admin import ConfigResource, ConfigResourceType

            described = io.admin.describe_topics(topics)
            # every config (config_filter="all"): a broker that answers only what was set on the topic shows
            # what it does not say by leaving it out, and that is declared unread
            resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
            return described, io.admin.describe_configs(resources, config_filter="all")

        described, configs = await io.run("auditing topics", lambda: io._admin_call(describe))  # noqa: SLF001
        audit.topics(described, (configs or {}).get("topic", {}))


STORAGE_UNREAD = "the broker's storage (flush policy, storage engine): no Kafka request reports it"


def _named(topics: list[str], most: int = 3) -> str:
    more = f" (+{len(topics) - most} more)" if len(topics) > most else ""
    return ", ".join(topics[:most]) + more


class Audit:
    """The durability findings of one health check: risks, notes (facts, not risks) and what the broker did not say.

    ``acks`` other than ``all`` is a risk. A replication factor of 1 is a risk on a cluster of several brokers and a
    note on a single broker (the only choice there); ``min.insync.replicas`` below 2 with more than one replica, and
    ``unclean.leader.election.enable=true``, are risks; a config the broker does not return is declared unread.
    """

    def __init__(self, *, brokers: int) -> None:
        self.brokers = brokers
        self.risks: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.unread: list[str] = []

    def producer(self, acks: object) -> None:
        """kafka-python keeps ``acks="all"`` as ``-1``."""
        if acks not in (-1, "-1", "all"):
            why = "a record is acknowledged before every in-sync replica has it: a leader's loss loses it"
            self.risks.append(risk("acks", acks, "producer", why))

    def topics(self, described: Iterable[dict[str, Any]], configs: dict[str, dict[str, Any]]) -> None:
        """Group the topics by finding, one risk (or note, or unread entry) per finding."""
        one: list[str] = []
        low_isr: list[tuple[str, str]] = []
        unclean: list[str] = []
        missing: list[str] = []
        for t in described:
            name = t["name"]
            replicas = min((len(p.get("replica_nodes") or []) for p in t.get("partitions") or []), default=0)
            if replicas == 1:
                one.append(name)
            cfg = configs.get(name) or {}
            isr = (cfg.get("min.insync.replicas") or {}).get("value")
            if isr is None:
                missing.append(name)
            elif replicas > 1 and int(isr) < 2:  # noqa: PLR2004 - two copies before an acknowledgement
                low_isr.append((name, isr))
            if str((cfg.get("unclean.leader.election.enable") or {}).get("value")).lower() == "true":
                unclean.append(name)
        self._findings(one, low_isr, unclean, missing)

    def _findings(self, one: list[str], low_isr: list[tuple[str, str]], unclean: list[str], missing: list[str]) -> None:
        if one and self.brokers > 1:
            why = "every record lives on one broker of the cluster: its loss loses them (use replication_factor=3)"
            self.risks.append(risk("replication_factor", 1, f"topics {_named(one)}", why))
        elif one:
            self.notes.append(
                "replication factor 1 on a single broker (the only choice there): acknowledged records live on "
                "one machine, and Kafka leaves flushing to the OS page cache; a cluster with replication 3 removes this"
            )
        if low_isr:
            why = "acks=all is satisfied by the leader alone when the others fall behind"
            value = ",".join(sorted({v for _, v in low_isr}))
            self.risks.append(risk("min.insync.replicas", value, f"topics {_named([n for n, _ in low_isr])}", why))
        if unclean:
            why = "a replica that missed acknowledged records can become leader and drop them"
            self.risks.append(risk("unclean.leader.election.enable", "true", f"topics {_named(unclean)}", why))
        if missing:
            self.unread.append(
                f"min.insync.replicas and unclean.leader.election.enable of topics {_named(missing)}: "
                "the broker's DescribeConfigs answer does not include them"
            )
        self.unread.append(STORAGE_UNREAD)
