"""The benchmark harness: the library against the raw driver and its peers, same store, same run.

A backend (``benchmarks/backends/<name>.py``) exposes ``BACKEND``, a subclass of :class:`Backend`. It
supplies fresh providers (the library side, driven here through :class:`EventSourcingManager`, so
validation and codec cost are included), the raw-driver version of each workload and, where they
exist, extra contestants (peers: ``aiosqlite``, the ``eventsourcing`` library's recorders, a raw side
writing the library's envelope layout). Every contestant of a row runs in the same rounds, one
operation at a time, the order rotating operation by operation, so a burst of load elsewhere hits them
alike; figures are medians over rounds.

Same work on every side (DESIGN.md, "Performance targets"): each side is handed the same inputs (the
same number of events with the same payloads; each side gets its own ids), built *before* its timer
starts; connections and pools are opened before the rounds; reads use the wire format the library uses.
The report records, per row and side, how many events and payload bytes each side was given, and the
smoke test checks they are equal.

Workloads (keys of :data:`WORKLOADS`); rows ``sync_*`` run without an event loop (the sync API, the raw
sync driver inline, ``eventsourcing``'s recorder):

* ``append_p50`` / ``append_p95``: single-event append latency (ratio lib / raw, lower is better);
  for SQLite the raw write runs on a dedicated writer thread (DESIGN.md);
* ``append_p50_hop`` (SQLite; informational): that off-loop raw write against the inline one;
* ``batch_100``: batches of 100 events to one stream, events/s (higher is better);
* ``read_1000``: read a 1,000-event stream, every payload decoded from JSON, events/s;
* ``writers_8``: 8 concurrent writers on distinct streams, single appends, events/s;
* ``sync_append_p50``, ``sync_batch_100``, ``sync_read_1000``: the same through the sync API;
* ``big_store_read_100``: read a 100-event stream from a store holding N other events, against the
  same read from an empty store (ratio big / empty, lower is better);
* ``telemetry_append_p50`` (informational): single appends through one manager with telemetry off
  (``lib``; the same code path as without the ``otel`` extra), on the OpenTelemetry API's no-op providers,
  and on the SDK (spans without export, metrics to an in-memory reader).
* ``domain_load_snapshot`` / ``domain_read_upcast`` (issue #14, ``benchmarks/domain.py``): ``Repository.get``
  of a 10,000-event aggregate with a snapshot at 9,990 against a 10-event one; ``read_stream`` of 1,000
  events with one upcaster step each against 1,000 of a type with none (ratios, lower is better).

Targets come from DESIGN.md (:mod:`targets`), never from a backend file.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from targets import ABSOLUTE, PEER_RULE, Check, Targets  # noqa: E402
from targets import load as load_targets  # noqa: E402

# --------------------------------------------------------------------------- workloads and options


@dataclass(frozen=True)
class Workload:
    """One measured figure. ``higher_is_better``: throughput (target is a floor) or latency (a ceiling)."""

    key: str
    title: str
    unit: str
    higher_is_better: bool


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload("append_p50", "single append, p50 latency", "ms", higher_is_better=False),
        Workload("append_p95", "single append, p95 latency", "ms", higher_is_better=False),
        Workload("append_p50_hop", "the hop alone: raw off-loop / raw", "ms", higher_is_better=False),
        Workload("batch_100", "batch of 100", "events/s", higher_is_better=True),
        Workload("read_1000", "read 1,000-event stream (decoded)", "events/s", higher_is_better=True),
        Workload("writers_8", "8 concurrent writers", "events/s", higher_is_better=True),
        Workload("sync_append_p50", "sync API single append, p50", "ms", higher_is_better=False),
        Workload("sync_batch_100", "sync API batch of 100", "events/s", higher_is_better=True),
        Workload("sync_read_1000", "sync API read 1,000 (decoded)", "events/s", higher_is_better=True),
        Workload("big_store_read_100", "read 100 from big store vs empty", "ms", higher_is_better=False),
        Workload("telemetry_append_p50", "single append p50, telemetry off vs on", "ms", higher_is_better=False),
        Workload(
            "domain_load_snapshot", "aggregate load: 10,000 events + snapshot vs 10", "ms", higher_is_better=False
        ),
        Workload("domain_read_upcast", "read 1,000: one upcaster each vs none", "ms", higher_is_better=False),
        # subscription rows: benchmarks/subscribing.py
        Workload("live_p50", "live delivery p50 (append returned -> handler)", "ms", higher_is_better=False),
        Workload("live_p99", "live delivery p99 (append returned -> handler)", "ms", higher_is_better=False),
        Workload("catch_up", "catch-up subscription vs read_all", "events/s", higher_is_better=True),
    )
}

ISSUE_CHECKS: dict[str, list[Check]] = {
    "domain_read_upcast": [Check("raw", "<=", 1.3, "issue #14: upcasting overhead <= 1.3x no upcaster")],
}
"""Targets an issue set for rows DESIGN.md's table has no line for (recorded in the report like the others)."""


@dataclass
class Options:
    """Sizes of one run. :meth:`quick` is a smoke run (seconds), the defaults a full run (minutes)."""

    repetitions: int = 7
    appends: int = 200
    batches: int = 20
    reads: int = 10
    writers: int = 8
    writer_appends: int = 50
    big_n: int = 1_000_000
    big_reads: int = 200
    domain_events: int = 10_000
    workdir: Path = field(default_factory=lambda: Path("/var/tmp"))
    only: tuple[str, ...] = ()
    peers: bool = True

    @classmethod
    def quick(cls, **kw: Any) -> Options:
        """Small sizes for a fast check that every backend runs."""
        base: dict[str, Any] = {
            "repetitions": 3,
            "appends": 40,
            "batches": 5,
            "reads": 3,
            "writer_appends": 10,
            "big_n": 20_000,
            "big_reads": 30,
            "domain_events": 1_000,
        }
        base.update(kw)
        return cls(**base)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One event as every side is given it: the side serializes ``data`` itself (same work)."""

    event_id: str
    event_type: str
    data: dict[str, Any]
    timestamp: datetime
    size: int
    """Bytes of ``json.dumps(data)``: what the identical-input check compares (not used by any side)."""


def payload(i: int) -> dict[str, Any]:
    """A typical small domain event body (~200 bytes of JSON)."""
    return {
        "order_id": f"order-{i:08d}",
        "customer": {"id": f"cust-{i % 977}", "tier": "gold" if i % 3 == 0 else "silver"},
        "items": [
            {"sku": f"sku-{i % 101}", "qty": 1 + i % 4, "price": 12.5},
            {"sku": "sku-7", "qty": 2, "price": 3.25},
        ],
        "total": 19.0 + i % 10,
        "note": "benchmark event",
    }


def raw_event(i: int) -> RawEvent:
    """Event ``i``: payload ``i``, a fresh UUID and the current time (built outside every timer)."""
    data = payload(i)
    return RawEvent(str(uuid.uuid4()), "OrderPlaced", data, datetime.now(UTC), len(json.dumps(data)))


def events(first: int, n: int) -> list[RawEvent]:
    """Events ``first .. first + n - 1``."""
    return [raw_event(first + i) for i in range(n)]


def installed(module: str) -> bool:
    """Whether a peer's package is installed (the ``benchmarks`` extra / nox session installs them all)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def new_stream(prefix: str) -> str:
    """A unique stream id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Inputs:
    """Per side of one row: how many events and payload bytes it was handed (the identical-input check)."""

    def __init__(self) -> None:
        self.given: dict[str, list[int]] = {}

    def add(self, side: str, evs: Sequence[RawEvent]) -> None:
        """Record that ``side`` was handed ``evs``."""
        got = self.given.setdefault(side, [0, 0])
        got[0] += len(evs)
        got[1] += sum(e.size for e in evs)

    def to_json(self) -> dict[str, dict[str, int]]:
        """``{side: {"events": n, "payload_bytes": b}}``."""
        return {s: {"events": n, "payload_bytes": b} for s, (n, b) in self.given.items()}


# --------------------------------------------------------------------------- contestants


class Side(ABC):
    """One async contestant of a row: appends to and reads its own streams.

    ``prepare`` turns the harness's events into what the side's call takes, before the timer starts.
    """

    def prepare(self, evs: Sequence[RawEvent]) -> Any:
        """The side's own form of ``evs`` (default: the events themselves)."""
        return evs

    @abstractmethod
    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        """Write the one prepared event as ``version`` of ``stream_id`` (one commit)."""

    @abstractmethod
    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        """Write the prepared events atomically."""

    @abstractmethod
    async def read(self, stream_id: str) -> int:
        """Read every event of ``stream_id``, JSON-decoding each payload; the count."""

    async def durability(self) -> dict[str, str] | None:
        """The durability settings the side's own connection reports (recorded per row); ``None``: not applicable."""
        return None


class SyncSide(ABC):
    """One contestant of the ``sync_*`` rows: blocking calls, no event loop."""

    def prepare(self, evs: Sequence[RawEvent]) -> Any:
        """The side's own form of ``evs``, built before the timer starts."""
        return evs

    @abstractmethod
    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        """Write one event as ``version`` of ``stream_id``."""

    @abstractmethod
    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        """Write the events atomically."""

    @abstractmethod
    def read(self, stream_id: str) -> int:
        """Read every event of ``stream_id``, JSON-decoding each payload; the count."""

    def stream_id(self, prefix: str) -> str:
        """A stream id this side can write (``eventsourcing`` needs UUIDs)."""
        return new_stream(prefix)

    def durability(self) -> dict[str, str] | None:
        """The durability settings the side's own connection reports (recorded per row); ``None``: not applicable."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class LibSide(Side):
    """The library through :class:`EventSourcingManager` (the caller's event ids and times)."""

    def __init__(
        self,
        m: EventSourcingManager,
        probe: Callable[[], Awaitable[dict[str, str] | None]] | None = None,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.m = m
        self.probe = probe
        self.settle = settle  # inside the timer: work the store left running for this write (Backend.lib_settle)

    async def durability(self) -> dict[str, str] | None:
        return await self.probe() if self.probe is not None else None

    def prepare(self, evs: Sequence[RawEvent]) -> Any:
        from eventsource.model import EventData

        return [
            EventData(event_type=e.event_type, data=e.data, event_id=e.event_id, timestamp=e.timestamp) for e in evs
        ]

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        e = prepared[0]
        await self.m.append_event(
            stream_id=stream_id,
            event_type=e.event_type,
            data=e.data,
            event_id=e.event_id,
            timestamp=e.timestamp,
            expected_version=version - 1,
        )
        if self.settle is not None:
            await self.settle()

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        await self.m.append_events_batch(stream_id=stream_id, events=prepared, expected_version=first_version - 1)
        if self.settle is not None:
            await self.settle()

    async def read(self, stream_id: str) -> int:
        n = 0
        async for e in self.m.read_stream(stream_id):
            n += e.data is not None
        return n


class TelemetrySide(LibSide):
    """The library side with the manager's telemetry switched to ``telemetry`` for each call (then back off)."""

    def __init__(self, m: EventSourcingManager, telemetry: Any) -> None:
        super().__init__(m)
        self.telemetry = telemetry

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        self.m._policy.telemetry = self.telemetry  # noqa: SLF001 - the contestant under test
        try:
            await super().append(stream_id, version, prepared)
        finally:
            self.m._policy.telemetry = None  # noqa: SLF001


def telemetry_contestants() -> dict[str, Any]:
    """``otel-noop`` (the API's no-op providers) and ``otel-sdk``; empty without the OpenTelemetry packages."""
    try:
        from eventsource.telemetry import build
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import NoOpTracerProvider
    except ImportError:
        return {}
    return {
        "otel-noop": build(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()),
        "otel-sdk": build(
            tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
        ),
    }


class SyncLibSide(SyncSide):
    """The sync API, through its public methods only (``append_event``, ``append_events_batch``, ``read_stream``)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from eventsource.sync import SyncEventSourcingManager

        self.m = SyncEventSourcingManager(dict(config))
        self.m.__enter__()

    prepare = LibSide.prepare

    def append(self, stream_id: str, version: int, prepared: Any) -> None:
        e = prepared[0]
        self.m.append_event(
            stream_id=stream_id,
            event_type=e.event_type,
            data=e.data,
            event_id=e.event_id,
            timestamp=e.timestamp,
            expected_version=version - 1,
        )

    def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        self.m.append_events_batch(stream_id=stream_id, events=prepared, expected_version=first_version - 1)

    def read(self, stream_id: str) -> int:
        return sum(e.data is not None for e in self.m.read_stream(stream_id))

    def close(self) -> None:
        self.m.__exit__(None, None, None)


class RawSide(Side):
    """The backend's raw driver (its ``raw_*`` methods)."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    async def append(self, stream_id: str, version: int, prepared: Any) -> None:
        await self.b.raw_append(stream_id, version, prepared[0])

    async def append_batch(self, stream_id: str, first_version: int, prepared: Any) -> None:
        await self.b.raw_append_batch(stream_id, first_version, prepared)

    async def read(self, stream_id: str) -> int:
        return await self.b.raw_read_stream(stream_id)

    async def durability(self) -> dict[str, str] | None:
        return self.b.raw_durability()


# --------------------------------------------------------------------------- what a backend implements


class Backend(ABC):
    """One store under benchmark. Subclass in ``benchmarks/backends/<name>.py`` and expose ``BACKEND``.

    Lifecycle: :meth:`open` once, then any number of :meth:`new_provider` namespaces, raw calls and
    :meth:`fill` calls, then :meth:`close` (which removes every namespace it created). The sync rows
    come after :meth:`close` of the async part, from :meth:`sync_sides` (no event loop running).
    """

    name: str = ""
    notes: str = ""
    eventsourcing_rows: frozenset[str] = frozenset()
    """Rows where the ``eventsourcing`` library has the operation: without it as a contestant they do not pass."""

    def __init__(self, options: Options) -> None:
        self.options = options

    @abstractmethod
    async def open(self) -> None:
        """Connect the raw driver (warm: every connection a workload uses) and create its namespace."""

    @abstractmethod
    async def close(self) -> None:
        """Close everything and remove every namespace created during the run."""

    @abstractmethod
    def new_provider(self) -> Provider:
        """A provider on a fresh, empty namespace (not connected: the manager connects it)."""

    @abstractmethod
    async def fill(self, provider: Provider, n: int) -> int | None:
        """Put ``n`` filler events (many streams) into ``provider``'s store; how many when not ``n``."""

    @abstractmethod
    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        """Write one event as version ``version`` of ``stream_id`` with the raw driver (one commit)."""

    @abstractmethod
    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        """Write ``events`` atomically (one transaction / batched write) with the raw driver."""

    @abstractmethod
    async def raw_read_stream(self, stream_id: str) -> int:
        """Read every event of ``stream_id`` with the raw driver, JSON-decoding each payload; the count."""

    async def raw_writers(self, streams: Sequence[str], events: Sequence[Sequence[RawEvent]]) -> None:
        """Concurrent writers, writer ``w`` appending ``events[w]`` one by one to ``streams[w]``.

        The default runs :meth:`raw_append` in concurrent tasks; override it when the raw driver needs
        threads or connections (opened in :meth:`open`, never here: this runs inside the timer).
        """

        async def one(s: str, evs: Sequence[RawEvent]) -> None:
            for i, e in enumerate(evs):
                await self.raw_append(s, i + 1, e)

        await asyncio.gather(*(one(s, evs) for s, evs in zip(streams, events, strict=True)))

    def raw_durability(self) -> dict[str, str] | None:
        """The raw connection's durability settings as it reports them (default: not applicable)."""
        return None

    def lib_settle(self, provider: Provider) -> Callable[[], Awaitable[None]] | None:  # noqa: ARG002 - default: none
        """What waits, inside the library's timer, for work a write of ``provider`` left running on a thread of its own.

        A store that moves part of a write's work off the caller's path (SQLite's WAL checkpoints) would
        otherwise have it land in the next contestant's timer: each side pays for its own work. Default: none.
        """
        return None

    async def lib_durability(self, provider: Provider) -> dict[str, str] | None:  # noqa: ARG002 - default: n/a
        """The durability settings of the connection ``provider`` writes through (default: not applicable)."""
        return None

    def peers(self, row: str) -> dict[str, Side]:  # noqa: ARG002 - default: none
        """Extra async contestants of ``row`` (``append``, ``batch_100``, ``read_1000``); opened in :meth:`open`."""
        return {}

    def row_note(self, key: str, sides: Iterable[str]) -> str:  # noqa: ARG002 - default: none
        """A note for row ``key`` run by ``sides`` (say where a contestant does less or other work)."""
        return ""

    def hop_sides(self) -> tuple[Side, Side] | None:
        """For a blocking raw driver: (raw write on a worker thread, raw write inline), the ``append_p50_hop`` row."""
        return None

    def sync_sides(self) -> dict[str, SyncSide] | None:
        """The ``sync_*`` rows' contestants (``lib``, ``raw``, peers), or ``None`` when the store has no sync rows."""
        return None

    def cleanup(self) -> None:  # noqa: B027 - optional
        """After the sync rows: remove what :meth:`close` had to leave for them (files)."""

    def server_version(self) -> str | None:
        """The server's version string (after :meth:`open`), for the report."""
        return None


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Result:
    """Medians over rounds of one workload, for every contestant of the row."""

    workload: str
    lib: float | None = None
    raw: float | None = None
    ratio: float | None = None
    values: dict[str, float] = field(default_factory=dict)
    """Median per side (``lib``, ``raw``, peers)."""
    ratios: dict[str, float] = field(default_factory=dict)
    """Median over rounds of lib / side, per side other than ``lib``."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    passed: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    inputs: dict[str, dict[str, int]] = field(default_factory=dict)
    note: str = ""
    durability: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per side, the durability settings its own connection reported after the row (where a side has any)."""


def _paired(lib: Sequence[float], other: Sequence[float]) -> list[float]:
    """``lib / other`` round by round; NaN where either figure is no measurement (see :func:`_unmeasured`)."""
    out = [a / b if _measured(a) and _measured(b) else math.nan for a, b in zip(lib, other, strict=False)]
    return out or [math.nan]


def _measured(v: float) -> bool:
    """A figure a side can have produced by doing the work: finite and above zero (no side does work in no time)."""
    return math.isfinite(v) and v > 0


def _unmeasured(c: Check, per_round: Mapping[str, Sequence[float]], rounds: int) -> str:
    """Why check ``c`` cannot be judged from ``per_round`` ("" when it can): the verdict then fails the row.

    A contestant the target names that did not run (not installed, ``--no-peers``), a round count unlike the
    library's (ratios would pair rounds that did not run together), or a NaN, infinite, zero or negative figure
    (a median sorts a NaN anywhere, and a side that took no time did no work).
    """
    sides = ["lib"] if c.against == ABSOLUTE else ["lib", c.against]
    for side in sides:
        if side not in per_round:
            return f"{side} did not run"
        vals = per_round[side]
        if len(vals) != rounds or not vals:
            return f"{side} ran {len(vals)} rounds, lib {rounds}"
        bad = [v for v in vals if not _measured(v)]
        if bad:
            return f"{side} has a figure that is no measurement ({bad[0]!r})"
    return ""


def _unlike(c: Check, durability: Mapping[str, Mapping[str, str]]) -> str:
    """Why ``c``'s two sides are not like for like in durability ("" when they are, or one reported none).

    Each side reports its own connection's settings (``synchronous``, ``journal_mode``, ``acks``, ...); the
    ``file`` differs by design (a file per contestant) and is not compared.
    """
    lib, other = durability.get("lib"), durability.get(c.against)
    if lib is None or other is None:
        return ""
    a = {k: v for k, v in lib.items() if k != "file"}
    b = {k: v for k, v in other.items() if k != "file"}
    return "" if a == b else f"durability differs: lib {a}, {c.against} {b}"


def _rotate(names: list[str], k: int) -> list[str]:
    k %= len(names)
    return names[k:] + names[:k]


class Runner:
    """Runs every workload of one backend."""

    def __init__(
        self, backend: Backend, options: Options, targets: Targets, log: Callable[[str], None] = print
    ) -> None:
        self.b = backend
        self.o = options
        self.t = targets
        self.log = log
        self.results: dict[str, Result] = {}

    async def manager(self) -> tuple[EventSourcingManager, Provider]:
        """A manager (default configuration) with a fresh provider of the backend registered as default."""
        from eventsource.manager import EventSourcingManager
        from eventsource.plugins import PluginHost

        m = EventSourcingManager({"providers": {}, "default_provider": None}, host=_host(PluginHost))
        p = self.b.new_provider()
        await m.register_provider(p, name="bench", default=True)
        return m, p

    def _want(self, key: str) -> bool:
        """Whether ``--only`` asks for a row of step ``key``: a prefix of the step, or narrowed into it.

        ``--only sync`` runs every ``sync_*`` step; ``--only sync_append_p50`` the step ``sync`` and, in it,
        ``sync_append``, the step that makes that row.
        """
        return not self.o.only or any(key.startswith(k) or k.startswith(key) for k in self.o.only)

    def _peers(self, row: str) -> dict[str, Side]:
        return self.b.peers(row) if self.o.peers else {}

    async def run(self) -> dict[str, Result]:
        """Open the backend, run the async workloads, close it (the sync rows follow in :meth:`run_sync`)."""
        await self.b.open()
        try:
            m, provider = await self.manager()
            try:
                lib = LibSide(m, probe=lambda: self.b.lib_durability(provider), settle=self.b.lib_settle(provider))
                steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                    ("append", lambda: self.single_append(lib)),
                    ("batch_100", lambda: self.batch(lib)),
                    ("read_1000", lambda: self.read(lib)),
                    ("writers_8", lambda: self.writers(lib)),
                    ("telemetry", lambda: self.telemetry(m)),
                    ("domain", lambda: self.domain(m)),
                ]
                for key, step in steps:
                    if self._want(key):
                        t0 = time.perf_counter()
                        await step()
                        self.log(f"  [{self.b.name}] {key} done in {time.perf_counter() - t0:.1f}s")
            finally:
                await m.close()
            if self._want("big_store"):
                t0 = time.perf_counter()
                await self.big_store()
                self.log(f"  [{self.b.name}] big_store done in {time.perf_counter() - t0:.1f}s")
            if self._want("live") or self._want("catch_up"):
                from subscribing import subscription_rows

                t0 = time.perf_counter()
                await subscription_rows(self)
                self.log(f"  [{self.b.name}] subscriptions done in {time.perf_counter() - t0:.1f}s")
        finally:
            await self.b.close()
        return self.results

    def run_sync(self) -> dict[str, Result]:
        """The ``sync_*`` rows, outside any event loop (after :meth:`run`)."""
        try:
            sides = self.b.sync_sides() if self._want("sync") else None
            if not sides:
                return self.results
            try:
                t0 = time.perf_counter()
                self.sync_rows(sides)
                self.log(f"  [{self.b.name}] sync done in {time.perf_counter() - t0:.1f}s")
            finally:
                for s in sides.values():
                    s.close()
        finally:
            self.b.cleanup()
        return self.results

    # ------------------------------------------------------------------ recording

    def _record(
        self,
        key: str,
        per_round: dict[str, list[float]],
        inputs: Inputs | None = None,
        note: str = "",
        durability: dict[str, dict[str, str] | None] | None = None,
    ) -> None:
        """Medians per side, ratios lib / side per round, and the DESIGN.md checks of the row."""
        w = WORKLOADS[key]
        rounds = len(per_round["lib"])
        lib_rounds = per_round["lib"]
        ratios = {s: statistics.median(_paired(lib_rounds, v)) for s, v in per_round.items() if s != "lib"}
        res = Result(
            workload=key,
            values={s: statistics.median(v) for s, v in per_round.items()},
            ratios=ratios,
            samples=per_round,
            inputs=inputs.to_json() if inputs else {},
            note=note,
            durability={s: d for s, d in (durability or {}).items() if d is not None},
        )
        res.lib = res.values["lib"]
        res.raw = res.values.get("raw")
        res.ratio = ratios.get("raw")
        checks = self.t.for_row(self.b.name, key) + ISSUE_CHECKS.get(key, [])
        # DESIGN.md: ahead of eventsourcing on every row where it has the operation (a run without it: unmeasured)
        if self.t.found and (PEER_RULE in ratios or key in self.b.eventsourcing_rows):
            checks.append(Check(PEER_RULE, ">" if w.higher_is_better else "<", 1.0, f"ahead of {PEER_RULE}"))
        for c in checks:
            why = _unmeasured(c, per_round, rounds) or _unlike(c, res.durability)
            if why:  # a target nobody measured, or a figure that is no measurement, is a miss, never a pass
                res.checks.append({**asdict(c), "ratio": None, "passed": False, "unmeasured": why})
                continue
            r = res.values["lib"] if c.against == ABSOLUTE else ratios[c.against]
            ok = {"<=": r <= c.bound, ">=": r >= c.bound, "<": r < c.bound, ">": r > c.bound}[c.op]
            res.checks.append({**asdict(c), "ratio": r, "passed": ok})
        if res.checks:
            res.passed = all(c["passed"] for c in res.checks)
        self.results[key] = res

    # ------------------------------------------------------------------ async rows

    async def _round(
        self, count: int, sides: dict[str, Side], op: Callable[[str, Side, int], Awaitable[float]], rep: int
    ) -> dict[str, list[float]]:
        """``count`` operations per side, every side once per operation, the order rotating."""
        out: dict[str, list[float]] = {s: [] for s in sides}
        names = list(sides)
        for i in range(count):
            for name in _rotate(names, i + rep):
                out[name].append(await op(name, sides[name], i))
        return out

    async def single_append(self, lib: Side) -> None:
        """Single appends with exact expected versions, every side in turn; per-call latency."""
        sides: dict[str, Side] = {"lib": lib, "raw": RawSide(self.b), **self._peers("append")}
        await self._latency_rows(sides, ("append_p50", "append_p95"))
        hop = self.b.hop_sides()
        if hop is not None and self._want("append_p50_hop"):
            await self._latency_rows(
                {"lib": hop[0], "raw": hop[1]}, ("append_p50_hop",), note="lib = the raw INSERT on a worker thread"
            )

    async def _latency_rows(self, sides: dict[str, Side], keys: tuple[str, ...], note: str = "") -> None:
        streams = {s: new_stream(f"{s}-one") for s in sides}
        version = dict.fromkeys(sides, 0)
        inputs = Inputs()

        async def op(name: str, side: Side, i: int) -> float:
            evs = events(i, 1)
            inputs.add(name, evs)
            prepared = side.prepare(evs)
            t = time.perf_counter()
            await side.append(streams[name], version[name] + 1, prepared)
            elapsed = time.perf_counter() - t
            version[name] += 1
            return elapsed

        await self._round(10, sides, op, 0)  # warm-up: statements prepared, files grown
        inputs = Inputs()
        qs = {"append_p50": 0.5, "append_p95": 0.95, "append_p50_hop": 0.5, "telemetry_append_p50": 0.5}
        per: dict[str, dict[str, list[float]]] = {k: {s: [] for s in sides} for k in keys}
        for rep in range(self.o.repetitions):
            lat = await self._round(self.o.appends, sides, op, rep)
            for k in keys:
                for s in sides:
                    per[k][s].append(percentile(lat[s], qs[k]) * 1e3)
        settings = await _durability(sides)
        for k in keys:
            self._record(k, per[k], inputs, note, settings)

    async def telemetry(self, m: EventSourcingManager) -> None:
        """Single appends with telemetry off (``lib``) and on, through the same manager, in the same rounds."""
        on = telemetry_contestants()
        if not on:
            self.log(f"  [{self.b.name}] telemetry skipped: opentelemetry-sdk is not installed")
            return
        sides: dict[str, Side] = {"lib": LibSide(m), **{k: TelemetrySide(m, t) for k, t in on.items()}}
        await self._latency_rows(sides, ("telemetry_append_p50",), note="lib = telemetry off (as without the extra)")

    async def batch(self, lib: Side) -> None:
        """Batches of 100 events to one stream, every side in turn batch by batch; events/s."""
        sides: dict[str, Side] = {"lib": lib, "raw": RawSide(self.b), **self._peers("batch_100")}
        streams = {s: new_stream(f"{s}-batch") for s in sides}
        version = dict.fromkeys(sides, 0)
        inputs = Inputs()

        async def op(name: str, side: Side, b: int) -> float:
            evs = events(b * 100, 100)
            inputs.add(name, evs)
            prepared = side.prepare(evs)
            t = time.perf_counter()
            await side.append_batch(streams[name], version[name] + 1, prepared)
            elapsed = time.perf_counter() - t
            version[name] += 100
            return elapsed

        await self._round(2, sides, op, 0)  # warm-up
        inputs = Inputs()
        per: dict[str, list[float]] = {s: [] for s in sides}
        for rep in range(self.o.repetitions):
            took = await self._round(self.o.batches, sides, op, rep)
            for s, t in took.items():
                per[s].append(self.o.batches * 100 / sum(t))
        self._record("batch_100", per, inputs, durability=await _durability(sides))

    async def read(self, lib: Side) -> None:
        """Full reads of a 1,000-event stream (written as 10 batches of 100 by each side); events/s."""
        sides: dict[str, Side] = {"lib": lib, "raw": RawSide(self.b), **self._peers("read_1000")}
        streams = {s: new_stream(f"{s}-read") for s in sides}
        inputs = Inputs()
        for b in range(10):
            for name, side in sides.items():
                evs = events(b * 100, 100)  # the same payloads, ids of each side's own
                inputs.add(name, evs)
                await side.append_batch(streams[name], b * 100 + 1, side.prepare(evs))

        async def op(name: str, side: Side, _: int) -> float:
            t = time.perf_counter()
            n = await side.read(streams[name])
            elapsed = time.perf_counter() - t
            if n != 1000:
                msg = f"{name} read {n} events, expected 1000"
                raise AssertionError(msg)
            return elapsed

        await self._round(2, sides, op, 0)  # warm-up: pages cached on every side
        per: dict[str, list[float]] = {s: [] for s in sides}
        for rep in range(self.o.repetitions):
            took = await self._round(self.o.reads, sides, op, rep)
            for s, t in took.items():
                per[s].append(1000 * self.o.reads / sum(t))
        self._record("read_1000", per, inputs, durability=await _durability(sides))

    async def writers(self, lib: LibSide) -> None:
        """Rounds of N concurrent writers per side, each appending single events to its own stream."""
        n, per_writer = self.o.writers, self.o.writer_appends
        per: dict[str, list[float]] = {"lib": [], "raw": []}
        inputs = Inputs()
        for rep in range(self.o.repetitions + 1):
            got: dict[str, float] = {}
            for side in ("lib", "raw") if rep % 2 == 0 else ("raw", "lib"):
                streams = [new_stream(f"{side}-w{w}") for w in range(n)]
                evs = [events(w * per_writer, per_writer) for w in range(n)]
                if rep:
                    for e in evs:
                        inputs.add(side, e)
                prepared = [lib.prepare(e) for e in evs] if side == "lib" else []
                t = time.perf_counter()
                if side == "lib":
                    await asyncio.gather(*(self._lib_writer(lib, s, p) for s, p in zip(streams, prepared, strict=True)))
                else:
                    await self.b.raw_writers(streams, evs)
                got[side] = n * per_writer / (time.perf_counter() - t)
            if rep == 0:
                continue  # warm-up round
            per["lib"].append(got["lib"])
            per["raw"].append(got["raw"])
        self._record("writers_8", per, inputs, durability=await _durability({"lib": lib, "raw": RawSide(self.b)}))

    @staticmethod
    async def _lib_writer(lib: LibSide, stream_id: str, prepared: list[Any]) -> None:
        for i, p in enumerate(prepared):
            await lib.append(stream_id, i + 1, [p])

    async def big_store(self) -> None:
        """Read a 100-event stream from an empty store and from one holding ``big_n`` events."""
        stores = {}
        filled = 0
        for label, n in (("empty", 0), ("big", self.o.big_n)):
            m, p = await self.manager()
            if n:
                t = time.perf_counter()
                count = await self.b.fill(p, n)
                filled = n if count is None else count
                self.log(f"  [{self.b.name}] filled {filled:,} events in {time.perf_counter() - t:.1f}s")
            s = new_stream("probe")
            lib = LibSide(m)
            await lib.append_batch(s, 1, lib.prepare(events(0, 100)))
            stores[label] = (m, s)
        try:
            per: dict[str, list[float]] = {"lib": [], "raw": []}

            def reader(label: str) -> Callable[[int], Awaitable[float]]:
                m, s = stores[label]

                async def one(_: int) -> float:
                    t = time.perf_counter()
                    count = sum([1 async for _ in m.read_stream(s)])
                    elapsed = time.perf_counter() - t
                    if count != 100:
                        msg = f"read {count} events from the {label} store, expected 100"
                        raise AssertionError(msg)
                    return elapsed

                return one

            readers = {"lib": reader("big"), "raw": reader("empty")}  # "lib" = big store, "raw" = empty store

            async def op(name: str, _side: Any, i: int) -> float:
                return await readers[name](i)

            sides: dict[str, Any] = dict.fromkeys(readers)
            await self._round(5, sides, op, 0)  # warm-up
            for rep in range(self.o.repetitions):
                took = await self._round(self.o.big_reads, sides, op, rep)
                for s in ("lib", "raw"):
                    per[s].append(statistics.median(took[s]) * 1e3)
            self._record("big_store_read_100", per, note=f"N={filled:,}; lib = big store, raw = empty store")
        finally:
            for m, _ in stores.values():
                await m.close()

    async def domain(self, m: EventSourcingManager) -> None:
        """Issue #14's rows through ``benchmarks/domain.py``: both sides on this store, interleaved per call."""
        import domain as rows

        per_round = max(3, self.o.reads)
        load = await rows.aggregate_load(m, self.o.domain_events, 10, self.o.repetitions, per_round)
        self._record(
            "domain_load_snapshot",
            {"lib": [x * 1e3 for x in load["big_s"]], "raw": [x * 1e3 for x in load["small_s"]]},
            note=f"lib = Repository.get of {self.o.domain_events:,} events with a snapshot 10 before the end, "
            "raw = of 10 events; issue #14: about 1x",
        )
        up = await rows.read_upcast(m, 1000, self.o.repetitions, per_round)
        self._record(
            "domain_read_upcast",
            {"lib": [x * 1e3 for x in up["upcast_s"]], "raw": [x * 1e3 for x in up["plain_s"]]},
            note="lib = 1,000 events with one upcaster step each, raw = 1,000 of a type with none",
        )

    # ------------------------------------------------------------------ sync rows

    def sync_rows(self, sides: dict[str, SyncSide]) -> None:
        """Single append, batch of 100 and read 1,000 through every sync contestant, rotating order."""
        if self._want("sync_append"):
            self._sync_append(sides)
        if self._want("sync_batch"):
            self._sync_batch(sides)
        if self._want("sync_read"):
            self._sync_read(sides)

    def _sync_append(self, sides: dict[str, SyncSide]) -> None:
        one = {s: side.stream_id(f"{s}-sone") for s, side in sides.items()}
        version = dict.fromkeys(sides, 0)
        inputs = Inputs()

        def append(name: str, side: SyncSide, i: int) -> float:
            evs = events(i, 1)
            inputs.add(name, evs)
            prepared = side.prepare(evs)
            t = time.perf_counter()
            side.append(one[name], version[name] + 1, prepared)
            elapsed = time.perf_counter() - t
            version[name] += 1
            return elapsed

        _sync_rounds(sides, 10, append, 0)  # warm-up, not counted as input
        inputs = Inputs()
        per: dict[str, list[float]] = {s: [] for s in sides}
        for rep in range(self.o.repetitions):
            lat = _sync_rounds(sides, self.o.appends, append, rep)
            for s in sides:
                per[s].append(percentile(lat[s], 0.5) * 1e3)
        self._record(
            "sync_append_p50",
            per,
            inputs,
            self.b.row_note("sync_append_p50", sides),
            {s: side.durability() for s, side in sides.items()},
        )

    def _sync_batch(self, sides: dict[str, SyncSide]) -> None:
        many = {s: side.stream_id(f"{s}-sbatch") for s, side in sides.items()}
        version = dict.fromkeys(sides, 0)
        inputs = Inputs()

        def batch(name: str, side: SyncSide, b: int) -> float:
            evs = events(b * 100, 100)
            inputs.add(name, evs)
            prepared = side.prepare(evs)
            t = time.perf_counter()
            side.append_batch(many[name], version[name] + 1, prepared)
            elapsed = time.perf_counter() - t
            version[name] += 100
            return elapsed

        _sync_rounds(sides, 2, batch, 0)  # warm-up, not counted as input
        inputs = Inputs()
        per: dict[str, list[float]] = {s: [] for s in sides}
        for rep in range(self.o.repetitions):
            took = _sync_rounds(sides, self.o.batches, batch, rep)
            for s, t in took.items():
                per[s].append(self.o.batches * 100 / sum(t))
        self._record(
            "sync_batch_100",
            per,
            inputs,
            self.b.row_note("sync_batch_100", sides),
            {s: side.durability() for s, side in sides.items()},
        )

    def _sync_read(self, sides: dict[str, SyncSide]) -> None:
        inputs = Inputs()
        reads = {s: side.stream_id(f"{s}-sread") for s, side in sides.items()}
        for b in range(10):
            for name, side in sides.items():
                evs = events(b * 100, 100)
                inputs.add(name, evs)
                side.append_batch(reads[name], b * 100 + 1, side.prepare(evs))

        def read(name: str, side: SyncSide, _: int) -> float:
            t = time.perf_counter()
            n = side.read(reads[name])
            elapsed = time.perf_counter() - t
            if n != 1000:
                msg = f"{name} read {n} events, expected 1000"
                raise AssertionError(msg)
            return elapsed

        _sync_rounds(sides, 2, read, 0)
        per: dict[str, list[float]] = {s: [] for s in sides}
        for rep in range(self.o.repetitions):
            took = _sync_rounds(sides, self.o.reads, read, rep)
            for s, t in took.items():
                per[s].append(1000 * self.o.reads / sum(t))
        self._record(
            "sync_read_1000",
            per,
            inputs,
            self.b.row_note("sync_read_1000", sides),
            {s: side.durability() for s, side in sides.items()},
        )


async def _durability(sides: Mapping[str, Side]) -> dict[str, dict[str, str] | None]:
    """Each side's durability settings, as its own connection reports them now (after the row's rounds)."""
    return {name: await side.durability() for name, side in sides.items()}


def _sync_rounds(
    sides: dict[str, SyncSide], count: int, op: Callable[[str, SyncSide, int], float], rep: int
) -> dict[str, list[float]]:
    """``count`` calls of ``op`` per contestant, the order rotating each time (shifted by ``rep``)."""
    out: dict[str, list[float]] = {s: [] for s in sides}
    names = list(sides)
    for i in range(count):
        for name in _rotate(names, i + rep):
            out[name].append(op(name, sides[name], i))
    return out


_HOSTS: dict[str, Any] = {}


def _host(cls: Any) -> Any:
    if "host" not in _HOSTS:
        _HOSTS["host"] = cls(load_entrypoints=False)
    return _HOSTS["host"]


# --------------------------------------------------------------------------- loading and reporting


def load_backend(name: str, options: Options) -> Backend:
    """Import ``benchmarks/backends/<name>.py`` and build its ``BACKEND``."""
    module = importlib.import_module(f"backends.{name}")
    cls = module.BACKEND
    return cls(options)  # type: ignore[no-any-return]


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.3f}"
    return f"{v:,.0f}"


def verdict(r: Result | dict[str, Any], found: bool) -> tuple[str, str]:
    """(targets, verdict) cells of a row."""
    checks = r.checks if isinstance(r, Result) else r["checks"]
    passed = r.passed if isinstance(r, Result) else r["passed"]
    if not found:
        return "no targets", "-"
    if not checks:
        return "n/a", "-"
    labels = []
    for c in checks:
        who = "" if c["against"] == "raw" else f" {c['against']}"
        label = f"{c['op']}{c['bound']:g}{who}" if c["against"] != PEER_RULE else f"ahead of {PEER_RULE}"
        labels.append(label + (" (unmeasured)" if c.get("unmeasured") else ""))
    return "; ".join(labels), "PASS" if passed else "FAIL"


def table(all_results: dict[str, dict[str, Result]], found: bool) -> str:
    """One fixed-width text table per backend: a column per contestant (value, and ratio lib / it)."""
    out = []
    for name, results in all_results.items():
        sides: list[str] = []
        for r in results.values():
            sides += [s for s in r.values if s not in sides]
        others = [s for s in sides if s != "lib"]
        head = f"{'workload':<36} {'unit':<9} {'lib':>11} " + " ".join(f"{s:>22}" for s in others)
        head += f"  {'targets':<28} verdict"
        lines = [f"== {name}", head, "-" * len(head)]
        for key, r in results.items():
            w = WORKLOADS[key]
            cells = []
            for s in others:
                if s in r.values:
                    cells.append(f"{_fmt(r.values[s], w.unit):>12} ({r.ratios[s]:5.2f}x)")
                else:
                    cells.append(f"{'':>22}")
            tgt, v = verdict(r, found)
            lines.append(f"{w.title:<36} {w.unit:<9} {_fmt(r.lib, w.unit):>11} " + " ".join(cells) + f"  {tgt:<28} {v}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n(ratio = lib / that column; each row's contestants ran in the same rounds)"


def to_json(
    all_results: dict[str, dict[str, Result]], options: Options, backends: dict[str, Backend], targets: Targets
) -> dict[str, Any]:
    """The results, options, targets used and machine facts as plain data."""
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "targets": targets.to_json(),
        "backends": {
            name: {
                "notes": backends[name].notes,
                "server": backends[name].server_version(),
                "workloads": {
                    key: {
                        **asdict(r),
                        "unit": WORKLOADS[key].unit,
                        "higher_is_better": WORKLOADS[key].higher_is_better,
                        "title": WORKLOADS[key].title,
                    }
                    for key, r in results.items()
                },
            }
            for name, results in all_results.items()
        },
    }


def _machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("eventsource", "psycopg", "aiosqlite", "eventsourcing", "nats-py", "kafka-python"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    import sqlite3

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
    }


def run_backends(names: Sequence[str], options: Options, json_path: Path | None = None) -> int:
    """Run each backend (async rows in their own event loop, then the sync rows); print; write JSON.

    Exit status 0, or 1 when a row misses a DESIGN.md target.
    """
    targets = load_targets()
    print(
        f"targets: {targets.source}" if targets.found else "no targets (DESIGN.md not found; set EVENTSOURCE_DESIGN_MD)"
    )
    all_results: dict[str, dict[str, Result]] = {}
    backends: dict[str, Backend] = {}
    for name in names:
        backend = load_backend(name, options)
        backends[name] = backend
        print(f"running {name} ...", flush=True)
        runner = Runner(backend, options, targets, log=lambda s: print(s, flush=True))
        asyncio.run(runner.run())
        all_results[name] = runner.run_sync()
    print()
    print(table(all_results, targets.found))
    if json_path is not None:
        data = to_json(all_results, options, backends, targets)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {json_path}")
    failed = [f"{n}:{k}" for n, rs in all_results.items() for k, r in rs.items() if r.passed is False]
    if failed:
        print(f"\nbelow target: {', '.join(failed)}")
    unmeasured = [
        f"{n}:{k} ({c['unmeasured']})" for n, rs in all_results.items() for k, r in rs.items() for c in r.checks
        if c.get("unmeasured")
    ]  # fmt: skip
    if unmeasured:
        print(f"target not measured (counted as missed): {', '.join(unmeasured)}")
    return 1 if failed else 0
