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
from eventsource.timestamps import from_us

from eventsource_kafka import records

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime

    from eventsource_kafka.connection import Connection
    from eventsource_kafka.reads import Reader
    from eventsource_kafka.tails import Tails
    from eventsource_kafka.views import Views


_Estimate = tuple[int, int | None, dict[str, int], int]
"""A stream's estimated count, last event time (microseconds), types seen, and last event position."""


class Monitor:
    """Statistics and health of one provider instance."""

    def __init__(self, conn: Connection, views: Views, reader: Reader, tails: Tails, name: Callable[[], str]) -> None:
        self.conn = conn
        self.views = views
        self.reader = reader
        self.tails = tails
        self._cold: dict[str, tuple[tuple[str, int], _Estimate]] = {}
        self._name = name  # the provider's name, which its owner may change after construction

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Exact counts from a scan of every stream (O(store)); with ``top_streams``, :meth:`bounded`."""
        if top_streams is not None:
            return await self.bounded(min(top_streams, 2**63 - 1))
        metas = dict(await self.views.meta())
        snaps = await self.views.snaps()
        by_type: dict[str, int] = {}
        by_stream: dict[str, int] = {}
        size = 0
        last: tuple[int, datetime] | None = None  # the event appended last (highest position): its time
        for sid in sorted(metas):
            n = 0
            async for e in self.reader.scan(sid, metas[sid]):
                n += 1
                by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
                size += len(e.data) + len(e.metadata)
                if last is None or e.position > last[0]:
                    last = (e.position, e.timestamp)
            by_stream[sid] = n
        return ProviderStats(
            total_events=sum(by_stream.values()),
            total_streams=len(metas),
            total_snapshots=sum(len(v) for k, v in snaps.items() if k in metas),
            events_by_type=by_type,
            events_by_stream=top_of(by_stream, top_streams),
            storage_size=size,
            last_event_at=None if last is None else last[1],
            uptime_seconds=monotonic() - self.conn.started,
            provider=self._name(),
            extra={"topic_prefix": self.conn.prefix, "layout": "topic-per-stream"},
            top_streams=top_streams,
        )

    async def bounded(self, top: int) -> ProviderStats:
        """Figures whose cost does not grow with the events: the views, one ListOffsets, and the tails' news.

        Streams and snapshots are exact (the views). A stream whose tail this process holds is counted
        exactly, reading only what was written since (none when its topic's end has not moved); any
        other stream is estimated from its last record (its last version, less the hidden events),
        one small read cached until its topic moves. Events by type are the types' shares among the
        events this process has read, times the total (exact when it has read every event).
        """
        conn = self.conn
        metas = dict(await self.views.meta())
        snaps = await self.views.snaps()
        ends = await conn.io.end_offsets([m["topic"] for m in metas.values()])
        cold = await self._estimates({sid: meta for sid, meta in metas.items() if not self._holds(sid, meta)}, ends)
        counts: dict[str, int] = {}
        seen: dict[str, int] = {}
        estimated: set[str] = set()
        every_type = True
        last: tuple[int, int] | None = None  # (position, time) of the stream tail appended last
        for sid, meta in metas.items():
            slot = conn.ns.slot(sid)
            if sid not in cold:
                if ends.get(meta["topic"], slot.next_offset + 1) > slot.next_offset:
                    async with slot.lock.held():
                        await self.tails.refresh(sid, slot, meta_too=False)
                n, ts, types = slot.version - int(meta.get("hidden", 0)), slot.last_ts_us, slot.types
                pos = slot.last_position
                every_type = every_type and slot.types_from == 0 and not int(meta.get("hidden", 0))
            else:
                n, ts, types, pos = cold[sid]
                estimated.update(("total_events", "events_by_stream", "last_event_at"))
                every_type = False
            counts[sid] = max(0, n)
            if n > 0 and ts is not None and (last is None or pos > last[0]):
                last = (pos, ts)
            for t, k in types.items():
                seen[t] = seen.get(t, 0) + k
        for gone in self._cold.keys() - metas.keys():  # deleted streams: no estimate kept for them
            del self._cold[gone]
        total = sum(counts.values())
        if every_type:
            by_type = {t: k for t, k in seen.items() if k}
        else:
            known = sum(seen.values())
            by_type = {t: round(k * total / known) for t, k in seen.items() if k} if known else {}
            estimated.add("events_by_type")
        return ProviderStats(
            total_events=total,
            total_streams=len(metas),
            total_snapshots=sum(len(v) for k, v in snaps.items() if k in metas),
            events_by_type=by_type,
            events_by_stream=top_of(counts, top),
            storage_size=None,
            last_event_at=None if last is None else from_us(last[1]),
            uptime_seconds=monotonic() - conn.started,
            provider=self._name(),
            extra={"topic_prefix": conn.prefix, "layout": "topic-per-stream"},
            top_streams=top,
            estimated=tuple(sorted(estimated)),
        )

    def _holds(self, sid: str, meta: dict[str, Any]) -> bool:
        """Whether this process holds the tail of the stream's live incarnation."""
        slot = self.conn.ns.slot(sid)
        return bool(slot.loaded and slot.topic == meta["topic"])

    async def _estimates(self, metas: dict[str, dict[str, Any]], ends: dict[str, int]) -> dict[str, _Estimate]:
        """:meth:`_estimate` of every stream this process holds no tail of, up to ``io_threads`` reads at once.

        A process's first bounded stats reads one last record per such stream: side by side, not one after
        another, so that first call waits the streams divided by the reads in flight, in round trips (the
        client's CPU per read, about the same either way, stays the floor). The first read to fail fails
        the call with its error, once the reads beside it are cancelled and ended.
        """
        gate = asyncio.Semaphore(max(1, int(self.conn.settings["io_threads"])))

        async def one(sid: str, meta: dict[str, Any]) -> _Estimate:
            async with gate:
                return await self._estimate(sid, meta, ends.get(meta["topic"]))

        tasks = [asyncio.ensure_future(one(sid, meta)) for sid, meta in metas.items()]
        try:
            got = await asyncio.gather(*tasks)
        except BaseException:  # one read failed (or the call was cancelled): no read outlives the call
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return dict(zip(metas, got, strict=True))

    async def _estimate(self, sid: str, meta: dict[str, Any], end: int | None) -> _Estimate:
        """A stream this process holds no tail of: count, last timestamp, types and last position from its last record.

        The last record's last version, less the hidden events: exact unless that record lost its
        version race (a stale writer's batch). Cached per topic until the topic's end moves.
        """
        topic = meta["topic"]
        cached = self._cold.get(sid)
        if cached is not None and end is not None and cached[0] == (topic, end):
            return cached[1]
        if end is None:  # the broker did not answer for it: read its tail once (exact from then on)
            slot = self.conn.ns.slot(sid)
            async with slot.lock.held():
                await self.tails.refresh(sid, slot, meta_too=False)
            return slot.version - int(meta.get("hidden", 0)), slot.last_ts_us, dict(slot.types), slot.last_position
        # ``end`` is the last record batch's base offset + 1 (STORES.md section 10): read that batch
        recs = (await self.conn.io.read(topic, end - 1))[0] if end > 0 else []
        rows = records.peek_rows(recs[-1].value) if recs and recs[-1].value else []
        types: dict[str, int] = {}
        for row in rows:
            types[row[1]] = types.get(row[1], 0) + 1
        out = (rows[-1][2] - int(meta.get("hidden", 0)), rows[-1][4], types, rows[-1][3]) if rows else (0, None, {}, 0)
        if end is not None:
            self._cold[sid] = ((topic, end), out)
        return out

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


def _deletes_events(name: str, cfg: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(topic, config, value)``: each finite ``retention.ms``/``retention.bytes`` of a topic whose policy deletes."""
    policy = str((cfg.get("cleanup.policy") or {}).get("value") or "delete")
    if "delete" not in policy:
        return []  # compacted only: the latest record of every key stays
    out = []
    for key in ("retention.ms", "retention.bytes"):
        value = (cfg.get(key) or {}).get("value")
        if value is not None and str(value).lstrip("-").isdigit() and int(value) >= 0:
            out.append((name, key, str(value)))
    return out


def _named(topics: list[str], most: int = 3) -> str:
    more = f" (+{len(topics) - most} more)" if len(topics) > most else ""
    return ", ".join(topics[:most]) + more


class Audit:
    """The durability findings of one health check: risks, notes (facts, not risks) and what the broker did not say.

    ``acks`` other than ``all`` is a risk. A replication factor of 1 is a risk on a cluster of several brokers and a
    note on a single broker (the only choice there); ``min.insync.replicas`` below 2 with more than one replica, and
    ``unclean.leader.election.enable=true``, are risks, as is a finite ``retention.ms`` or ``retention.bytes`` where
    ``cleanup.policy`` deletes (the broker drops events); a config the broker does not return is declared unread.
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
        deleting: list[tuple[str, str, str]] = []
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
            deleting += _deletes_events(name, cfg)
        self._findings(one, low_isr, unclean, missing)
        for key in sorted({k for _, k, _ in deleting}):  # the broker deletes records past that age or size
            named = [(n, v) for n, k, v in deleting if k == key]
            why = "the broker deletes the oldest records: their events are lost, and the stream reads empty after"
            value = ",".join(sorted({v for _, v in named}))
            self.risks.append(risk(key, value, f"topics {_named([n for n, _ in named])}", why))

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
