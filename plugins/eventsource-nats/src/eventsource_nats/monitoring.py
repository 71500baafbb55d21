"""Stats and health: exact counts from a scan of the events (bounded ones from metadata), and durability risks.

Health reports the store unhealthy only when it cannot be reached or the stream has no leader, and
``degraded`` (:func:`durability_risks`) when the events stream or a bucket is on memory storage, or has one
replica on a cluster. Other settings worth knowing (two replicas, a replica behind, the stream-wide fallback on
an old server, a short duplicate window) stay listed as durability warnings.
"""

from __future__ import annotations

import asyncio
import heapq
import operator
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsource.manager.monitoring import risk, with_durability
from eventsource.model import HealthStatus, ProviderStats

from eventsource_nats.errors import map_error
from eventsource_nats.naming import stream_token
from eventsource_nats.records import message_versions

if TYPE_CHECKING:
    from eventsource_nats.connection import Connection
    from eventsource_nats.reads import Reader
    from eventsource_nats.streams import Streams


def _server_time(text: str) -> datetime:
    """A server timestamp (RFC 3339, nanoseconds, ``Z``) as an aware datetime (microseconds)."""
    base, _, frac = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{base}.{(frac + '000000')[:6]}+00:00")


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


SINGLE_SERVER_NOTE = (
    "one replica on a single server (the only choice there): acknowledged events live on one machine's disk, "
    "synced every sync_interval (2 min by default); a cluster with replicas=3 removes this"
)


LIMITS = ("max_age", "max_msgs", "max_bytes", "max_msgs_per_subject")
"""Stream limits that delete messages (the KV buckets keep one message per key by design: no per-subject limit)."""


def _limit_deletes(cfg: dict[str, Any], limit: str) -> bool:
    """Whether reaching ``limit`` deletes stored messages (``discard: new`` refuses new ones instead; not max_age)."""
    if limit == "max_age" or cfg.get("discard") != "new":
        return True
    return limit == "max_msgs_per_subject" and not cfg.get("discard_new_per_subject")


def durability_risks(configs: dict[str, dict[str, Any]], *, clustered: bool) -> tuple[list[dict[str, str]], list[str]]:
    """Risks (memory storage; one replica where a cluster offers more; limits that delete) and notes, per stream.

    ``configs``: each stream's configuration as the server reports it (the events stream first, then the buckets).
    One replica on a standalone server is the norm, not a choice, so it is a note; on a cluster it is a risk.
    """
    risks, notes = [], []
    for n, (name, cfg) in enumerate(configs.items()):
        # limits make the server delete what the library does not track: events (the first stream) or records
        for limit in LIMITS if n == 0 else LIMITS[:3]:
            if int(cfg.get(limit) or 0) > 0 and _limit_deletes(cfg, limit):
                why = "the server deletes messages past this limit behind the library's back (versions can restart)"
                risks.append(risk(limit, cfg[limit], f"stream {name}", why))
        if cfg.get("storage") == "memory":
            risks.append(
                risk("storage", "memory", f"stream {name}", "every stored event is lost when the server restarts")
            )
        if int(cfg.get("num_replicas", 1)) == 1:
            if clustered:
                why = "acknowledged events live on one server of the cluster: its loss loses them (use replicas=3)"
                risks.append(risk("num_replicas", 1, f"stream {name}", why))
            elif SINGLE_SERVER_NOTE not in notes:
                notes.append(SINGLE_SERVER_NOTE)
    return risks, notes


class Monitor:
    """Stats, durability warnings and health of one store."""

    def __init__(self, conn: Connection, reader: Reader, streams: Streams) -> None:
        self.conn = conn
        self.reader = reader
        self.streams = streams
        self._started = time.monotonic()

    async def stats(self, *, top_streams: int | None = None) -> ProviderStats:
        """Counts from one scan of every event (exact); sizes from the stream state.

        With ``top_streams``, nothing reads the events: see :meth:`bounded`.
        """
        conn = self.conn
        conn.require()
        if top_streams is not None:
            return await conn.call("stats", self.bounded(top_streams))

        async def run() -> ProviderStats:
            n = conn.names
            by_type: dict[str, int] = {}
            by_stream: dict[str, int] = {}
            total = 0
            last_at = None
            async for rec in self.reader.read_all(page_size=1000):
                total += 1
                by_type[rec.event_type] = by_type.get(rec.event_type, 0) + 1
                by_stream[rec.stream_id] = by_stream.get(rec.stream_id, 0) + 1
                last_at = rec.timestamp
            ids, state, snaps = await asyncio.gather(
                self.streams.all_stream_ids(),
                conn.api(f"STREAM.INFO.{n.stream}"),
                conn.subjects(f"KV_{n.snapshot_bucket}", f"$KV.{n.snapshot_bucket}.>"),
            )
            for sid in ids:
                by_stream.setdefault(sid, 0)
            return ProviderStats(
                total_events=total,
                total_streams=len(ids),
                total_snapshots=len(snaps),
                events_by_type=by_type,
                events_by_stream=by_stream,
                storage_size=int(state["state"]["bytes"]),
                last_event_at=last_at,
                uptime_seconds=time.monotonic() - self._started,
                provider=conn.provider_name,
                extra={
                    "messages": int(state["state"]["messages"]),
                    "server_version": _dotted(conn.server_version),
                },
            )

        return await conn.call("stats", run())

    async def bounded(self, top: int) -> ProviderStats:
        """Stats from the server's metadata only, never a read of every message.

        Read: the stream info with a ``subjects_filter`` (messages per subject) and the KV keys.
        The candidates for the top streams are the subjects with the most messages; each candidate's event
        count is then exact (its info record and its last message's headers). Where a message can hold several
        events (batches as envelopes) or an event can be hidden, message counts rank the streams, and the total
        is the message count scaled by the candidates' events per message: an estimate. Events by type are not
        kept by the store (empty, named estimated); the last event time is the server's time of the last message.
        """
        conn = self.conn
        n = conn.names
        subjects, ids, state, snaps = await asyncio.gather(
            conn.subjects(n.stream, n.events_wildcard),
            self.streams.all_stream_ids(),
            conn.api(f"STREAM.INFO.{n.stream}"),
            conn.subjects(f"KV_{n.snapshot_bucket}", f"$KV.{n.snapshot_bucket}.>"),
        )
        ranked = heapq.nlargest(min(top, len(subjects)), subjects.items(), key=operator.itemgetter(1))
        by_token = {stream_token(i): i for i in ids}
        chosen = [by_token[n.token_of_subject(s)] for s, _ in ranked if n.token_of_subject(s) in by_token]
        exact = await asyncio.gather(*(self._event_count(i) for i in chosen))
        by_stream = dict(heapq.nlargest(top, zip(chosen, exact, strict=True), key=operator.itemgetter(1)))
        # events per message among the streams counted exactly (1 unless batches are envelopes) scales the total
        messages = sum(int(c) for _, c in ranked)
        per_message = sum(exact) / messages if messages else 1.0
        estimated: tuple[str, ...] = ("total_events", "events_by_type", "last_event_at")
        if not conn.atomic:
            estimated = (*estimated, "events_by_stream")
        last_ts = (state.get("state") or {}).get("last_ts")
        last_at = _server_time(last_ts) if last_ts and subjects else None
        return ProviderStats(
            total_events=round(sum(int(c) for c in subjects.values()) * per_message),
            total_streams=len(ids),
            total_snapshots=len(snaps),
            events_by_type={},
            events_by_stream=by_stream,
            storage_size=int(state["state"]["bytes"]),
            last_event_at=last_at,
            uptime_seconds=time.monotonic() - self._started,
            provider=conn.provider_name,
            extra={"messages": int(state["state"]["messages"]), "server_version": _dotted(conn.server_version)},
            top_streams=top,
            estimated=estimated,
        )

    async def _event_count(self, stream_id: str) -> int:
        """A stream's exact event count from its info record and its last message's headers (nothing decoded)."""
        conn = self.conn
        token = stream_token(stream_id)
        (info, _), last = await asyncio.gather(conn.info_get(token), conn.last_msg(conn.names.subject(token)))
        info = info or {}
        version = message_versions(last.headers)[1] if last is not None else int(info.get("known_version", 0))
        return version - int(info.get("removed", 0))

    def durability_warnings(self, stream_config: dict[str, Any], cluster: dict[str, Any] | None) -> list[str]:
        """Settings under which an acknowledged event can be lost."""
        out = []
        replicas = int(stream_config.get("num_replicas", 1))
        if stream_config.get("storage") == "memory":
            out.append("memory storage: every stored event is lost when the server restarts")
        if replicas == 1:
            out.append(
                "1 replica: an acknowledged event lives on one server; nats-server syncs its file store to disk "
                "only every sync_interval (2 min by default), so a crash or power loss of that machine can lose "
                "acknowledged events (use replicas=3, or jetstream { sync_interval: always })"
            )
        elif replicas == 2:  # noqa: PLR2004 - R2 is a specific durability case
            out.append("2 replicas: no quorum survives the loss of one server (writes stop); use 3")
        if self.conn.stream_wide:
            out.append(
                "replicated stream on nats-server < 2.9.21: writes use the stream-wide expected sequence "
                "(correct, but every writer is serialised); KV compare-and-set is not enforced on this server"
            )
        if cluster:
            out.extend(
                f"replica {peer.get('name')} is offline or behind: fewer copies than configured"
                for peer in cluster.get("replicas") or []
                if not peer.get("current", False) or peer.get("offline", False)
            )
        window = float(stream_config.get("duplicate_window", 0)) / 1e9
        if window and window < self.conn.settings["publish_retry_seconds"]:
            out.append(f"duplicate_window ({window:.0f}s) is shorter than publish_retry_seconds")
        return out

    async def health(self) -> HealthStatus:
        """Connected, stream and buckets present, a leader elected; lists durability risks."""
        conn = self.conn
        start = time.perf_counter()
        try:
            conn.require()
            resp = await conn.api(f"STREAM.INFO.{conn.names.stream}")
            configs = {conn.names.stream: resp.get("config", {})}
            for b in conn.names.buckets:
                configs[f"KV_{b}"] = (await conn.api(f"STREAM.INFO.KV_{b}")).get("config", {})
        except Exception as e:  # noqa: BLE001 - a health check reports, it never raises
            err = map_error(e, "health check")
            return HealthStatus(
                healthy=False,
                provider=conn.provider_name,
                message=f"{type(err).__name__}: {err}",
                latency_ms=(time.perf_counter() - start) * 1000,
            )
        cfg = resp.get("config", {})
        cluster: dict[str, Any] = resp.get("cluster") or {}
        warnings = self.durability_warnings(cfg, cluster)
        leaderless = bool(cluster) and int(cfg.get("num_replicas", 1)) > 1 and not cluster.get("leader")
        details = {
            "server_version": _dotted(conn.server_version),
            "url": conn.display_url,
            "stream": conn.names.stream,
            "replicas": int(cfg.get("num_replicas", 1)),
            "storage": cfg.get("storage"),
            "duplicate_window_s": float(cfg.get("duplicate_window", 0)) / 1e9,
            "batches": "atomic" if conn.atomic else "envelope",
            "occ": conn.occ_mode,
            "messages": int(resp["state"]["messages"]),
            "leader": (cluster or {}).get("leader"),
            "durability_warnings": warnings,
        }
        message = "ok" if not warnings else f"ok; {len(warnings)} durability warning(s): " + " | ".join(warnings)
        if leaderless:
            message = "the stream has no leader (no quorum): writes will fail"
        status = HealthStatus(
            healthy=not leaderless,
            provider=conn.provider_name,
            message=message,
            details=details,
            latency_ms=(time.perf_counter() - start) * 1000,
        )
        risks, notes = durability_risks(configs, clustered=bool(cluster.get("name")))
        return with_durability(status, risks, notes=notes)
