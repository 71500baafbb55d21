"""Fidelity: seeded random events, streams and snapshots come back exactly on every read path.

:func:`check_fidelity` writes events whose every field is drawn from :mod:`eventsource.testing.fuzzdata`
(ids and types of any text, nested payloads of big ints, signed zeros, astral text, tagged values, odd
timestamps) and reads them back through ``read_stream`` (both ways, small pages), ``read_all``, every
``get_events`` filter, ``get_event_by_id``, ``get_stream_info``, ``list_streams``, ``get_snapshot`` and a
subscription, comparing by :func:`~eventsource.testing.fuzzdata.fingerprint`: a store that changes any
value silently fails, naming the read path, the field and both values.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from eventsource.model import ANY, EventData, NewEvent
from eventsource.testing.base import ProviderSuiteBase, sid
from eventsource.testing.fuzzdata import Values, fingerprint

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event, Snapshot, StreamInfo
    from eventsource.provider import Provider

_ENVELOPE: tuple[str, ...] = ("event_id", "stream_id", "event_type", "correlation_id", "causation_id", "user_id")
_ENVELOPE += ("tenant_id", "aggregate_id", "aggregate_type", "version")


def short(value: object, keep: int = 70) -> str:
    """``repr(value)``, its middle elided past ``keep`` characters (ids may be 1,024 characters long)."""
    text = repr(value)
    return text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}"


@dataclass
class Written:
    """What was written: each event's fields, each stream's attributes and its latest snapshot."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def differs(self, where: str, what: str, given: Any, got: Any) -> None:
        """Note a difference (``given`` and ``got`` compared by fingerprint)."""
        if fingerprint(given) != fingerprint(got):
            self.problems.append(f"{where}: {what} given {short(given, 300)}, got {short(got, 300)}")

    def same_instant(self, where: str, given: datetime, got: datetime) -> None:
        """An event timestamp comes back as the same instant (to the microsecond), in UTC."""
        if got != given or got.utcoffset() != timedelta(0):
            want = given.astimezone(UTC).isoformat()
            self.problems.append(f"{where}: timestamp given {given.isoformat()}, got {got.isoformat()} (not {want})")

    def event(self, where: str, e: Event) -> None:
        """Compare one event read back with what was written."""
        w = self.events.get(e.event_id)
        if w is None:
            self.problems.append(f"{where}: event {short(e.event_id)} was never written (or its id changed)")
            return
        for name in _ENVELOPE:
            self.differs(where, name, w[name], getattr(e, name))
        self.differs(where, "data", w["data"], e.data)
        self.differs(where, "metadata", w["metadata"], e.metadata)
        if w["timestamp"] is not None:
            self.same_instant(where, w["timestamp"], e.timestamp)

    def events_in(self, where: str, got: list[Event], expected_ids: list[str]) -> None:
        """Compare a read's events, one by one and as a sequence of ids."""
        for e in got:
            self.event(where, e)
        ids = [e.event_id for e in got]
        if ids != expected_ids:
            self.problems.append(f"{where}: ids {short(ids, 300)}, expected {short(expected_ids, 300)}")

    def stream(self, where: str, info: StreamInfo) -> None:
        """Compare one stream's info with its attributes and events."""
        w = self.streams[info.stream_id]
        for name in ("name", "aggregate_id", "aggregate_type", "metadata"):
            self.differs(where, name, w[name], getattr(info, name))
        ids = [i for i in self.order if self.events[i]["stream_id"] == info.stream_id]
        self.differs(where, "version", len(ids), info.version)
        self.differs(where, "event_count", len(ids), info.event_count)
        self.differs(where, "last_event_id", ids[-1] if ids else None, info.last_event_id)

    def snapshot(self, where: str, snap: Snapshot) -> None:
        """Compare a snapshot read back with the latest written."""
        w = self.snapshots[snap.stream_id]
        for name in ("snapshot_id", "version", "aggregate_id", "aggregate_type", "data", "metadata"):
            self.differs(where, name, w[name], getattr(snap, name))


async def write_fuzzed(m: EventSourcingManager, seed: int, streams: int, events: int) -> Written:
    """Write ``events`` random events over ``streams`` random streams (some created first), then snapshots."""
    v = Values(seed)
    w = Written()
    ids = [v.text(limit=v.pick((200, 1024))) for _ in range(streams)]
    for s in ids:
        attrs: dict[str, Any] = {"name": None, "aggregate_id": None, "aggregate_type": None, "metadata": {}}
        if v.rng.random() < 0.6:
            attrs = {
                "name": v.maybe(),
                "aggregate_id": v.maybe(),
                "aggregate_type": v.maybe(),
                "metadata": v.json_mapping(),
            }
            await m.create_stream(stream_id=s, **attrs)
            attrs["created"] = True
        w.streams[s] = attrs
    left = events
    while left > 0:
        s = v.pick(tuple(ids))
        batch = [_event(v) for _ in range(min(left, v.rng.randint(1, 4)))]
        if len(batch) == 1 and v.rng.random() < 0.5:
            e = batch[0]
            fields = {k: getattr(e, k) for k in e.__dataclass_fields__ if getattr(e, k) is not None}
            fields["data"] = e.data  # the fields left out are the defaults: a plain event takes the short path
            res = await m.append_event(stream_id=s, **fields)
            got_ids = [res.event_id]
        else:
            got_ids = (await m.append_events_batch(stream_id=s, events=batch)).event_ids
        for e, eid in zip(batch, got_ids, strict=True):
            _record(w, s, e, eid)
        left -= len(batch)
    for s in ids:
        n = sum(1 for i in w.order if w.events[i]["stream_id"] == s)
        if n and v.rng.random() < 0.7:
            snap = {
                "data": v.value(),
                "metadata": v.mapping(),
                "version": v.rng.randint(1, n),
                "aggregate_id": v.maybe(),
                "aggregate_type": v.maybe(),
            }
            taken = await m.create_snapshot(stream_id=s, **snap)
            w.snapshots[s] = {**snap, "snapshot_id": taken.snapshot_id}
            for name in ("aggregate_id", "aggregate_type"):  # left out: the stream's
                w.snapshots[s][name] = snap[name] or w.streams[s][name]
    return w


def _event(v: Values) -> EventData:
    return EventData(
        event_type=v.text(),
        data=v.value(),
        metadata=v.mapping() if v.rng.random() < 0.7 else None,
        event_id=v.text() if v.rng.random() < 0.5 else None,
        correlation_id=v.maybe(),
        causation_id=v.maybe(),
        user_id=v.maybe(),
        tenant_id=v.maybe(),
        aggregate_id=v.maybe(),
        aggregate_type=v.maybe(),
        timestamp=v.timestamp(),
    )


def _record(w: Written, s: str, e: EventData, eid: str) -> None:
    version = 1 + sum(1 for i in w.order if w.events[i]["stream_id"] == s)
    w.events[eid] = {
        "event_id": eid,
        "stream_id": s,
        "event_type": e.event_type,
        "data": e.data,
        "metadata": {} if e.metadata is None else e.metadata,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "user_id": e.user_id,
        "tenant_id": e.tenant_id,
        "aggregate_id": e.aggregate_id,
        "aggregate_type": e.aggregate_type,
        "timestamp": e.timestamp,
        "version": version,
    }
    w.order.append(eid)
    attrs = w.streams[s]
    if version == 1 and not attrs.get("created"):  # created by its first append: the aggregate comes from it
        attrs["aggregate_id"], attrs["aggregate_type"] = e.aggregate_id, e.aggregate_type


async def read_back(m: EventSourcingManager, w: Written, *, subscription: bool = True) -> list[str]:
    """Every read path's differences from what ``w`` holds (empty when everything came back exactly)."""
    for s in w.streams:
        ids = [i for i in w.order if w.events[i]["stream_id"] == s]
        w.events_in(f"read_stream({short(s)})", [e async for e in m.read_stream(s, page_size=3)], ids)
        back = [e async for e in m.read_stream(s, backwards=True, page_size=2)]
        w.events_in(f"read_stream({short(s)}, backwards)", back, ids[::-1])
        page = await m.get_events(stream_id=s, limit=1000)
        w.events_in(f"get_events(stream_id={short(s)})", page.events, ids)
        if ids or w.streams[s].get("created"):
            w.stream(f"get_stream_info({short(s)})", await m.get_stream_info(s))
        if s in w.snapshots:
            w.snapshot(f"get_snapshot({short(s)})", await m.get_snapshot(s))
    everything = [e async for e in m.read_all(page_size=7)]
    w.events_in("read_all", sorted(everything, key=lambda e: w.order.index(e.event_id)), w.order)
    for name in ("event_type", "tenant_id", "correlation_id", "aggregate_id", "aggregate_type"):
        values = {w.events[i][name] for i in w.order} - {None}
        for value in sorted(values)[:6]:
            want = [i for i in w.order if w.events[i][name] == value]
            arg = {"event_types": [value]} if name == "event_type" else {name: value}
            page = await m.get_events(limit=1000, **arg)
            got = sorted(page.events, key=lambda e: w.order.index(e.event_id))
            w.events_in(f"get_events({name}={short(value)})", got, want)
    for eid in w.order:
        w.event(f"get_event_by_id({short(eid)})", await m.get_event_by_id(eid))
        w.event(
            f"get_event_by_id({short(eid)}, stream_id)",
            await m.get_event_by_id(eid, stream_id=w.events[eid]["stream_id"]),
        )
    await _listed(m, w)
    if subscription:
        await _followed(m, w)
    return w.problems


async def _followed(m: EventSourcingManager, w: Written) -> None:
    """Subscriptions from the start: over every stream (on a ``total`` global order) and to each stream."""
    if m.get_provider().capabilities.global_order == "total":
        got = await _subscribed(m, len(w.order))
        w.events_in("subscribe()", sorted(got, key=lambda e: w.order.index(e.event_id)), w.order)
    for s in w.streams:
        ids = [i for i in w.order if w.events[i]["stream_id"] == s]
        if ids:
            w.events_in(f"subscribe(stream_id={short(s)})", await _subscribed(m, len(ids), stream_id=s), ids)


async def _listed(m: EventSourcingManager, w: Written) -> None:
    """``list_streams`` in one page, then page by page after a keyset cursor: code point order on every store."""
    listed = (await m.list_streams(limit=1000)).streams
    for info in listed:
        w.stream(f"list_streams[{short(info.stream_id)}]", info)
    existing = sorted(
        s for s, a in w.streams.items() if a.get("created") or any(w.events[i]["stream_id"] == s for i in w.order)
    )
    w.differs("list_streams", "stream ids", existing, [i.stream_id for i in listed])
    paged: list[str] = []
    after: str | None = None
    while True:
        listing = await m.list_streams(limit=2, after=after)
        paged += [i.stream_id for i in listing.streams]
        if not listing.has_more or len(paged) > len(existing):
            break
        after = paged[-1]
    w.differs("list_streams(after=...)", "stream ids", existing, paged)


async def _subscribed(m: EventSourcingManager, n: int, **target: Any) -> list[Event]:
    """The first ``n`` events a subscription from the start delivers (each batch within 30 seconds)."""
    got: list[Event] = []
    async with m.subscribe(**target, poll_interval=0.05) as sub:
        while len(got) < n:
            got += await asyncio.wait_for(sub.next_batch(100), 30)
    return got


async def check_fidelity(m: EventSourcingManager, seed: int, *, streams: int = 6, events: int = 40) -> list[str]:
    """Write fuzzed data through ``m`` (an empty store) and return every difference read back."""
    w = await write_fuzzed(m, seed, streams, events)
    return await read_back(m, w)


class _Named(StrEnum):
    """Ids given as enum members (a value unlike the member's name)."""

    STREAM = "stream-value"
    OTHER = "other-value"
    TYPE = "type-value"
    ID = "id-value"
    TENANT = "tenant-value"


class FidelitySuite(ProviderSuiteBase):
    """Seeded random events, streams and snapshots come back exactly on every read path; timestamps in UTC."""

    async def test_event_timestamps_come_back_as_the_same_instant_in_utc(self, manager: EventSourcingManager) -> None:
        """Every store gives an event's timestamp back as the instant given, in UTC, on every read path.

        Stores kept what PostgreSQL's ``timestamptz`` cannot: memory and NATS gave the offset back, the others
        UTC; NATS (ISO text, which ``fromisoformat`` reads without a sub-second offset) moved an instant at a
        ``+00:00:00.5`` offset by half a second. The append's answer says the same instant, in UTC, too.
        """
        s = sid()
        given = [
            datetime(2024, 6, 1, 8, 0, 0, 999999, tzinfo=timezone(timedelta(hours=5, minutes=45))),
            datetime(2024, 6, 1, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=-7))),
            datetime(2020, 1, 1, tzinfo=timezone(timedelta(microseconds=500_000))),
            datetime(2020, 1, 1, tzinfo=timezone(timedelta(seconds=-30))),
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ]
        answers = [
            (await manager.append_event(stream_id=s, event_type="E", data={}, timestamp=ts)).timestamp
            for ts in given[:3]
        ]
        batch = await manager.append_events_batch(
            stream_id=s, events=[EventData("E", {}, timestamp=ts) for ts in given[3:]]
        )
        answers.append(batch.timestamp)
        reads = {
            "read_stream": [e async for e in manager.read_stream(s)],
            "read_all": [e async for e in manager.read_all()],
            "get_events": (await manager.get_events(stream_id=s)).events,
            "get_event_by_id": [await manager.get_event_by_id(e.event_id) async for e in manager.read_stream(s)],
        }
        want = [(ts.astimezone(UTC).isoformat()) for ts in given]
        for path, events in reads.items():
            assert [e.timestamp.isoformat() for e in events] == want, path
        assert [ts.isoformat() for ts in answers] == [*want[:3], want[3]], "the append's answer"

    async def test_the_provider_answers_and_reads_timestamps_in_utc(self, provider: Provider) -> None:
        """What a store is handed with an offset (by a direct caller, the sync one-event path) it gives back in UTC.

        SQLite, PostgreSQL and Kafka read UTC back but answered the append with the offset given.
        """
        given = datetime(2024, 6, 1, 8, 0, 0, 999999, tzinfo=timezone(timedelta(hours=5, minutes=45)))
        s = sid()
        new = [NewEvent(str(uuid.uuid4()), "E", b"{}", b"", "json", given) for _ in range(2)]
        answers = [await provider.append(s, new[:1], ANY), await provider.append(s, new[1:], ANY)]
        reads = [e.timestamp async for e in provider.read_stream(s)]
        utc = given.astimezone(UTC).isoformat()
        assert [r.timestamp.isoformat() for r in answers] == [utc, utc]
        assert [ts.isoformat() for ts in reads] == [utc, utc]

    async def test_ids_given_as_str_subclasses_come_back_as_plain_str(self, manager: EventSourcingManager) -> None:
        """A ``StrEnum`` member (the usual event type) is kept as its value, and read back as a ``str``.

        Memory kept the caller's object and gave the enum member back (``S.X`` in a repr), the others a ``str``.
        """
        e = await manager.append_event(
            stream_id=_Named.STREAM,
            event_type=_Named.TYPE,
            data={},
            event_id=_Named.ID,
            tenant_id=_Named.TENANT,
            correlation_id=_Named.TYPE,
            causation_id=_Named.ID,
            user_id=_Named.TENANT,
            aggregate_id=_Named.STREAM,
            aggregate_type=_Named.TYPE,
        )
        await manager.create_stream(stream_id=_Named.OTHER, name=_Named.TYPE, aggregate_id=_Named.ID)
        await manager.create_snapshot(stream_id=_Named.STREAM, data={}, aggregate_id=_Named.ID)
        read = [*[x async for x in manager.read_stream("stream-value")], await manager.get_event_by_id("id-value")]
        texts: list[str | None] = [e.event_id, e.stream_id]
        texts += [getattr(x, f) for x in read for f in _ENVELOPE if f != "version"]
        texts += [i.stream_id for i in (await manager.list_streams()).streams]
        other = await manager.get_stream_info("other-value")
        texts += [
            other.stream_id,
            other.name,
            other.aggregate_id,
            (await manager.get_snapshot("stream-value")).aggregate_id,
        ]
        not_str = [t for t in texts if type(t) is not str]
        assert not not_str, f"given back as {[type(t).__name__ for t in not_str]}: {not_str}"

    async def test_fuzzed_events_come_back_exactly_on_every_read_path(self, manager: EventSourcingManager) -> None:
        problems = await check_fidelity(manager, seed=20240229)
        assert not problems, "\n".join(problems[:40])


__all__ = ["FidelitySuite", "check_fidelity", "read_back", "write_fuzzed"]
