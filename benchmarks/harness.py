"""The benchmark harness: the library against the raw driver, on the same store, in the same run.

A backend (``benchmarks/backends/<name>.py``) exposes ``BACKEND``, a subclass of :class:`Backend`. It
supplies fresh providers (the library side, driven here through :class:`EventSourcingManager`, so
validation and codec cost are included) and the raw-driver version of each workload. The harness
interleaves library and raw runs (ABAB...), repeats them, and reports medians and ratios against the
targets of DESIGN.md.

Workloads (keys of :data:`WORKLOADS`):

* ``append_p50`` / ``append_p95``: single-event append latency (ratio lib / raw, lower is better);
* ``append_p50_offloop`` (backends whose raw driver blocks, i.e. SQLite; informational): the same
  library appends against the raw write run on a worker thread, as an asyncio service must run a
  blocking driver: the ratio is the library's own cost, without the thread hop both then pay;
* ``append_p50_hop`` (the same backends; informational): that off-loop raw write against the inline
  one, so the "lib" column is the raw driver on a worker thread: what the hop alone costs;
* ``batch_100``: batches of 100 events to one stream, events/s (ratio lib / raw, higher is better);
* ``read_1000``: read a 1,000-event stream, every payload decoded from JSON, events/s;
* ``writers_8``: 8 concurrent writers on distinct streams, single appends, events/s;
* ``big_store_read_100``: read a 100-event stream from a store holding N other events, against the
  same read from an empty store (ratio big / empty, lower is better; DESIGN.md: "about the same").
"""

from __future__ import annotations

import asyncio
import importlib
import json
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
    from collections.abc import Awaitable, Callable, Sequence

    from eventsource.manager import EventSourcingManager
    from eventsource.provider import Provider

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))


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
        Workload("append_p50_offloop", "single append p50, raw off-loop", "ms", higher_is_better=False),
        Workload("append_p50_hop", "the hop alone: raw off-loop / raw", "ms", higher_is_better=False),
        Workload("batch_100", "batch of 100", "events/s", higher_is_better=True),
        Workload("read_1000", "read 1,000-event stream (decoded)", "events/s", higher_is_better=True),
        Workload("writers_8", "8 concurrent writers", "events/s", higher_is_better=True),
        Workload("big_store_read_100", "read 100 from big store vs empty", "ms", higher_is_better=False),
    )
}


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
    workdir: Path = field(default_factory=lambda: Path("/var/tmp"))
    only: tuple[str, ...] = ()

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
        }
        base.update(kw)
        return cls(**base)


# --------------------------------------------------------------------------- what a backend implements


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One event as the raw side writes it: the raw code serializes ``data`` itself (same work)."""

    event_id: str
    event_type: str
    data: dict[str, Any]
    timestamp: datetime


class Backend(ABC):
    """One store under benchmark. Subclass in ``benchmarks/backends/<name>.py`` and expose ``BACKEND``.

    Lifecycle: :meth:`open` once, then any number of :meth:`new_provider` namespaces, raw calls and
    :meth:`fill` calls, then :meth:`close` (which removes every namespace it created).
    """

    name: str = ""
    targets: dict[str, float | None] = {}  # noqa: RUF012 - read-only per class
    """Workload key -> target ratio (``None``: no target, reported as n/a)."""
    notes: str = ""

    def __init__(self, options: Options) -> None:
        self.options = options

    @abstractmethod
    async def open(self) -> None:
        """Connect the raw driver and create the raw side's fresh namespace (table, subject, topic)."""

    @abstractmethod
    async def close(self) -> None:
        """Close everything and remove every namespace created during the run."""

    @abstractmethod
    def new_provider(self) -> Provider:
        """A provider on a fresh, empty namespace (not connected: the manager connects it)."""

    @abstractmethod
    async def fill(self, provider: Provider, n: int) -> int | None:
        """Put ``n`` filler events (many streams) into ``provider``'s store, fast (raw bulk load is fine).

        Returns how many it put when that is not ``n`` (a backend may cap it, e.g. an in-memory store;
        the report says so); ``None`` means all ``n``.
        """

    # raw driver ------------------------------------------------------------------------------

    @abstractmethod
    async def raw_append(self, stream_id: str, version: int, event: RawEvent) -> None:
        """Write one event as version ``version`` of ``stream_id`` with the raw driver (one commit)."""

    @abstractmethod
    async def raw_append_batch(self, stream_id: str, first_version: int, events: Sequence[RawEvent]) -> None:
        """Write ``events`` atomically (one transaction / batched write) with the raw driver."""

    @abstractmethod
    async def raw_read_stream(self, stream_id: str) -> int:
        """Read every event of ``stream_id`` with the raw driver, JSON-decoding each payload; the count."""

    raw_append_offloop: Callable[[str, int, RawEvent], Awaitable[None]] | None = None
    """For a blocking raw driver: :meth:`raw_append` run off the event loop (one worker thread), or ``None``."""

    async def raw_writers(self, streams: Sequence[str], per_writer: int, make: Callable[[int], RawEvent]) -> None:
        """``len(streams)`` concurrent writers, each appending ``per_writer`` single events to its stream.

        The default runs :meth:`raw_append` in concurrent tasks; override it when the raw driver needs
        threads or a pool to write concurrently.
        """

        async def one(s: str) -> None:
            for i in range(per_writer):
                await self.raw_append(s, i + 1, make(i))

        await asyncio.gather(*(one(s) for s in streams))


# --------------------------------------------------------------------------- payloads


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


def stamp(data: dict[str, Any]) -> RawEvent:
    """Give ``data`` an id and a time, as the library does for each event (timed on the raw side too)."""
    return RawEvent(str(uuid.uuid4()), "OrderPlaced", data, datetime.now(UTC))


def raw_event(i: int) -> RawEvent:
    """A :class:`RawEvent` for the raw side (fresh UUID, current time)."""
    return stamp(payload(i))


def new_stream(prefix: str) -> str:
    """A unique stream id."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- measuring


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Result:
    """Medians over repetitions of one workload, for the library and the raw driver."""

    workload: str
    lib: float | None = None
    raw: float | None = None
    ratio: float | None = None
    target: float | None = None
    passed: bool | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""


class Runner:
    """Runs every workload of one backend."""

    def __init__(self, backend: Backend, options: Options, log: Callable[[str], None] = print) -> None:
        self.b = backend
        self.o = options
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
        return not self.o.only or any(key.startswith(k) for k in self.o.only)

    async def run(self) -> dict[str, Result]:
        """Open the backend, run the workloads, close it."""
        await self.b.open()
        try:
            m, _ = await self.manager()
            try:
                steps: list[tuple[str, Callable[[EventSourcingManager], Awaitable[None]]]] = [
                    ("append", self.single_append),
                    ("batch_100", self.batch),
                    ("read_1000", self.read),
                    ("writers_8", self.writers),
                ]
                for key, step in steps:
                    if self._want(key):
                        t0 = time.perf_counter()
                        await step(m)
                        self.log(f"  [{self.b.name}] {key} done in {time.perf_counter() - t0:.1f}s")
            finally:
                await m.close()
            if self._want("big_store"):
                t0 = time.perf_counter()
                await self.big_store()
                self.log(f"  [{self.b.name}] big_store done in {time.perf_counter() - t0:.1f}s")
        finally:
            await self.b.close()
        return self.results

    def _record(self, key: str, lib: list[float], raw: list[float] | None, ratios: list[float], note: str = "") -> None:
        w = WORKLOADS[key]
        target = self.b.targets.get(key)
        res = Result(
            workload=key,
            lib=statistics.median(lib),
            raw=statistics.median(raw) if raw else None,
            ratio=statistics.median(ratios) if ratios else None,
            target=target,
            samples={"lib": lib, "raw": raw or [], "ratio": ratios},
            note=note,
        )
        if target is not None and res.ratio is not None:
            res.passed = res.ratio >= target if w.higher_is_better else res.ratio <= target
        self.results[key] = res

    async def _alternate(
        self, count: int, lib: Callable[[int], Awaitable[float]], raw: Callable[[int], Awaitable[float]], rep: int
    ) -> dict[str, list[float]]:
        """``count`` operations per side, alternating lib and raw one operation at a time (A B B A ...).

        Both sides then see the same machine: a burst of load elsewhere hits them alike.
        """
        out: dict[str, list[float]] = {"lib": [], "raw": []}
        for i in range(count):
            pair = (("lib", lib), ("raw", raw)) if (i + rep) % 2 == 0 else (("raw", raw), ("lib", lib))
            for side, op in pair:
                out[side].append(await op(i))
        return out

    async def single_append(self, m: EventSourcingManager) -> None:
        """Single appends with exact expected versions, alternating lib and raw; per-call latency."""
        lib_s = new_stream("lib-one")
        v = {"lib": 0}

        async def lib(i: int) -> float:
            data = payload(i)
            t = time.perf_counter()
            await m.append_event(stream_id=lib_s, event_type="OrderPlaced", data=data, expected_version=v["lib"])
            elapsed = time.perf_counter() - t
            v["lib"] += 1
            return elapsed

        quantiles = await self._latencies(lib, self.b.raw_append, "raw-one", (0.5, 0.95))
        self._record("append_p50", *quantiles[0.5])
        self._record("append_p95", *quantiles[0.95])
        offloop = self.b.raw_append_offloop
        if offloop is not None:
            hop = (await self._latencies(lib, offloop, "raw-hop", (0.5,)))[0.5]
            self._record("append_p50_offloop", *hop, note="raw = the same INSERT on a worker thread")
            alone = await self._latencies(self._timed_raw(offloop, "raw-off"), self.b.raw_append, "raw-in", (0.5,))
            self._record("append_p50_hop", *alone[0.5], note="lib = the raw INSERT on a worker thread")

    @staticmethod
    def _timed_raw(
        raw_append: Callable[[str, int, RawEvent], Awaitable[None]], prefix: str
    ) -> Callable[[int], Awaitable[float]]:
        """One timed single append per call with ``raw_append``, to a stream of its own."""
        raw_s = new_stream(prefix)
        version = 0

        async def raw(i: int) -> float:
            nonlocal version
            data = payload(i)
            t = time.perf_counter()
            await raw_append(raw_s, version + 1, stamp(data))
            elapsed = time.perf_counter() - t
            version += 1
            return elapsed

        return raw

    async def _latencies(
        self,
        lib: Callable[[int], Awaitable[float]],
        raw_append: Callable[[str, int, RawEvent], Awaitable[None]],
        raw_prefix: str,
        qs: tuple[float, ...],
    ) -> dict[float, tuple[list[float], list[float], list[float]]]:
        """Per quantile: lib, raw (ms) and ratio per round of single appends, lib alternating with ``raw_append``."""
        raw = self._timed_raw(raw_append, raw_prefix)
        await self._alternate(10, lib, raw, 0)  # warm-up: statements prepared, files grown
        out: dict[float, tuple[list[float], list[float], list[float]]] = {q: ([], [], []) for q in qs}
        for rep in range(self.o.repetitions):
            lat = await self._alternate(self.o.appends, lib, raw, rep)
            for q in qs:
                lib_q, raw_q = percentile(lat["lib"], q) * 1e3, percentile(lat["raw"], q) * 1e3
                out[q][0].append(lib_q)
                out[q][1].append(raw_q)
                out[q][2].append(lib_q / raw_q)
        return out

    async def batch(self, m: EventSourcingManager) -> None:
        """Batches of 100 events to one stream, alternating lib and raw batch by batch; events/s."""
        from eventsource.model import EventData

        lib_s, raw_s = new_stream("lib-batch"), new_stream("raw-batch")
        v = {"lib": 0, "raw": 0}

        async def lib(b: int) -> float:
            evs = [EventData(event_type="OrderPlaced", data=payload(b * 100 + i)) for i in range(100)]
            t = time.perf_counter()
            await m.append_events_batch(stream_id=lib_s, events=evs, expected_version=v["lib"])
            elapsed = time.perf_counter() - t
            v["lib"] += 100
            return elapsed

        async def raw(b: int) -> float:
            datas = [payload(b * 100 + i) for i in range(100)]
            t = time.perf_counter()
            await self.b.raw_append_batch(raw_s, v["raw"] + 1, [stamp(d) for d in datas])
            elapsed = time.perf_counter() - t
            v["raw"] += 100
            return elapsed

        await self._alternate(2, lib, raw, 0)  # warm-up
        rates: dict[str, list[float]] = {"lib": [], "raw": [], "r": []}
        for rep in range(self.o.repetitions):
            took = await self._alternate(self.o.batches, lib, raw, rep)
            got = {side: self.o.batches * 100 / sum(t) for side, t in took.items()}
            rates["lib"].append(got["lib"])
            rates["raw"].append(got["raw"])
            rates["r"].append(got["lib"] / got["raw"])
        self._record("batch_100", rates["lib"], rates["raw"], rates["r"])

    async def read(self, m: EventSourcingManager) -> None:
        """Full reads of a 1,000-event stream, every payload decoded, alternating lib and raw; events/s."""
        from eventsource.model import EventData

        lib_s, raw_s = new_stream("lib-read"), new_stream("raw-read")
        for b in range(10):
            await m.append_events_batch(
                stream_id=lib_s,
                events=[EventData(event_type="OrderPlaced", data=payload(b * 100 + i)) for i in range(100)],
            )
            await self.b.raw_append_batch(raw_s, b * 100 + 1, [raw_event(b * 100 + i) for i in range(100)])

        async def lib(_: int) -> float:
            n = 0
            t = time.perf_counter()
            async for e in m.read_stream(lib_s):
                n += e.data is not None
            elapsed = time.perf_counter() - t
            if n != 1000:
                msg = f"lib read {n} events, expected 1000"
                raise AssertionError(msg)
            return elapsed

        async def raw(_: int) -> float:
            t = time.perf_counter()
            n = await self.b.raw_read_stream(raw_s)
            elapsed = time.perf_counter() - t
            if n != 1000:
                msg = f"raw read {n} events, expected 1000"
                raise AssertionError(msg)
            return elapsed

        await self._alternate(2, lib, raw, 0)  # warm-up: pages cached on both sides
        rates: dict[str, list[float]] = {"lib": [], "raw": [], "r": []}
        for rep in range(self.o.repetitions):
            took = await self._alternate(self.o.reads, lib, raw, rep)
            got = {side: 1000 * self.o.reads / sum(t) for side, t in took.items()}
            rates["lib"].append(got["lib"])
            rates["raw"].append(got["raw"])
            rates["r"].append(got["lib"] / got["raw"])
        self._record("read_1000", rates["lib"], rates["raw"], rates["r"])

    async def writers(self, m: EventSourcingManager) -> None:
        """ABAB rounds of N concurrent writers, each appending single events to its own stream."""
        n, per = self.o.writers, self.o.writer_appends
        rates: dict[str, list[float]] = {"lib": [], "raw": [], "r": []}

        async def lib_writer(s: str) -> None:
            for i in range(per):
                await m.append_event(stream_id=s, event_type="OrderPlaced", data=payload(i), expected_version=i)

        for rep in range(self.o.repetitions + 1):
            got: dict[str, float] = {}
            order = ("lib", "raw") if rep % 2 == 0 else ("raw", "lib")
            for side in order:
                streams = [new_stream(f"{side}-w{w}") for w in range(n)]
                t = time.perf_counter()
                if side == "lib":
                    await asyncio.gather(*(lib_writer(s) for s in streams))
                else:
                    await self.b.raw_writers(streams, per, raw_event)
                got[side] = n * per / (time.perf_counter() - t)
            if rep == 0:
                continue
            rates["lib"].append(got["lib"])
            rates["raw"].append(got["raw"])
            rates["r"].append(got["lib"] / got["raw"])
        self._record("writers_8", rates["lib"], rates["raw"], rates["r"])

    async def big_store(self) -> None:
        """Read a 100-event stream from an empty store and from one holding ``big_n`` events (ABAB)."""
        from eventsource.model import EventData

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
            await m.append_events_batch(
                stream_id=s, events=[EventData(event_type="OrderPlaced", data=payload(i)) for i in range(100)]
            )
            stores[label] = (m, s)
        try:
            per: dict[str, list[float]] = {"empty": [], "big": [], "r": []}

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

            big, empty = reader("big"), reader("empty")
            await self._alternate(5, big, empty, 0)  # warm-up
            for rep in range(self.o.repetitions):
                took = await self._alternate(self.o.big_reads, big, empty, rep)  # "lib" = big, "raw" = empty
                got = {"big": statistics.median(took["lib"]) * 1e3, "empty": statistics.median(took["raw"]) * 1e3}
                per["empty"].append(got["empty"])
                per["big"].append(got["big"])
                per["r"].append(got["big"] / got["empty"])
            # "lib" column: the big store; "raw" column: the empty store (the baseline of this ratio)
            self._record(
                "big_store_read_100",
                per["big"],
                per["empty"],
                per["r"],
                note=f"N={filled:,}; raw column = empty store",
            )
        finally:
            for m, _ in stores.values():
                await m.close()


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


def table(all_results: dict[str, dict[str, Result]]) -> str:
    """The results as a fixed-width text table."""
    head = f"{'backend':<10} {'workload':<36} {'unit':<9} {'lib':>12} {'raw':>12} {'ratio':>7} {'target':>8} {'verdict':>7}"
    lines = [head, "-" * len(head)]
    for name, results in all_results.items():
        for key, r in results.items():
            w = WORKLOADS[key]
            if r.target is None:
                tgt, verdict = "n/a", "-"
            else:
                tgt = f"{'>=' if w.higher_is_better else '<='}{r.target:g}"
                verdict = "PASS" if r.passed else "FAIL"
            ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
            lines.append(
                f"{name:<10} {w.title:<36} {w.unit:<9} {_fmt(r.lib, w.unit):>12} {_fmt(r.raw, w.unit):>12} "
                f"{ratio:>7} {tgt:>8} {verdict:>7}"
            )
    return "\n".join(lines)


def to_json(
    all_results: dict[str, dict[str, Result]], options: Options, backends: dict[str, Backend]
) -> dict[str, Any]:
    """The results, options and machine facts as plain data."""
    return {
        "created_at": datetime.now(UTC).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "backends": {
            name: {
                "notes": backends[name].notes,
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


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def run_backends(names: Sequence[str], options: Options, json_path: Path | None = None) -> int:
    """Run each backend in its own event loop; print the table; write JSON. Exit status 0/1 (any FAIL)."""
    all_results: dict[str, dict[str, Result]] = {}
    backends: dict[str, Backend] = {}
    for name in names:
        backend = load_backend(name, options)
        backends[name] = backend
        print(f"running {name} ...", flush=True)
        all_results[name] = asyncio.run(Runner(backend, options, log=lambda s: print(s, flush=True)).run())
    print()
    print(table(all_results))
    if json_path is not None:
        json_path.write_text(json.dumps(to_json(all_results, options, backends), indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {json_path}")
    failed = [f"{n}:{k}" for n, rs in all_results.items() for k, r in rs.items() if r.passed is False]
    if failed:
        print(f"\nbelow target: {', '.join(failed)}")
    return 1 if failed else 0
