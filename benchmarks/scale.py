"""Issue #17: what stats, filtered queries, cursors, offsets and retention cost on a small and a big store.

Stores are bulk-loaded outside any timer (SQLite: ``executemany`` into a fresh file then one fold of the
counts; PostgreSQL: ``generate_series`` server-side, then ``ANALYZE``) with the same shape at every size: 1,000
streams, five event types, 100 tenants, one event a second; they are cached between runs (SQLite files under
``EVENTSOURCE_BENCH_CACHE``, PostgreSQL schemas ``es_scale_<n>``). Each call runs through the manager, one
warm-up on each store, then ``--rounds`` rounds alternating the small and the big store (medians of wall and
process CPU time). Retention runs on a store of its own (it deletes; SQLite: a copy of the cached file): one
writer appends one event at a time in ``--windows`` windows of ``--window-appends`` appends, alone and while
retention runs in turn (A B B A ...), first with ``delete_events_before`` deleting the oldest events 200 at a
time, then with one stream after another truncated by 5 events (``max_count``'s work); both sides' p99 and
their ratio are reported (PostgreSQL: also the store's backends' wait events, sampled on both sides). Usage:
``python benchmarks/scale.py --store sqlite --big 10000000`` (``--only-retention``: the retention rows alone,
to ``<store>-retention-<n>.json``); the JSON goes to ``benchmarks/report/scale/<store>-<big>.json`` (apart
from the harness reports that render.py reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost

STREAMS = 1000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CACHE = Path(os.environ.get("EVENTSOURCE_BENCH_CACHE", Path.home() / ".cache" / "eventsource-bench"))
PG_URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _sqlite_rows(n: int, start: int = 0) -> Any:
    t0 = int(T0.timestamp() * 1e6)
    for g in range(start, n):
        yield (
            f"e-{g}", f"s-{g % STREAMS:04d}", f"T{g % 5}", g // STREAMS + 1, b"{}", b"{}", "json",
            t0 + g * 1_000_000, None, None, None, f"t{g % 100}", None, None,
        )  # fmt: skip


def _sqlite_path(n: int) -> tuple[Path, bool]:
    """The cached file for ``n`` events, and whether it must be built."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"scale-{n}.db"
    return path, not (CACHE / f"{path.name}.ok").exists()


def _sqlite_copy(path: Path, n: int) -> Path:
    """A fresh copy of the cached file ``path`` for a retention run."""
    copy = CACHE / f"scale-ret-{n}.db"
    for old in CACHE.glob(copy.name + "*"):
        old.unlink()
    shutil.copyfile(path, copy)
    return copy


def _sqlite_load(path: Path, n: int) -> None:
    """Bulk-load ``n`` events into a migrated file, fold the counts, analyze, mark it done."""
    from eventsource.sqlite import counts

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO es_events (event_id, stream_id, event_type, version, data, metadata, encoding, timestamp, "
        "correlation_id, causation_id, user_id, tenant_id, aggregate_id, aggregate_type) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _sqlite_rows(n),
    )
    db.executemany(
        "INSERT INTO es_streams (stream_id, version_floor, deleted_count, created_at, updated_at, metadata) "
        "VALUES (?, 0, 0, 0, 0, '{}')",
        [(f"s-{i:04d}",) for i in range(STREAMS)],
    )
    counts.fold(db)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    (CACHE / f"{path.name}.ok").touch()


async def sqlite_store(n: int, *, fresh: bool = False) -> Any:
    """A cached SQLite store of ``n`` events (``fresh``: a copy of it made for this run, for retention)."""
    from eventsource.sqlite import SqliteProvider

    path, build = _sqlite_path(n)
    if build:
        p = SqliteProvider(f"sqlite:///{path}")
        await p.connect()  # the schema, by the provider's own migrations
        await p.close()
        _sqlite_load(path, n)
    if fresh:  # retention deletes: it runs on a copy of the cached store
        path = _sqlite_copy(path, n)
    p = SqliteProvider(f"sqlite:///{path}", synchronous="normal")
    await p.connect()
    return p


async def postgres_store(n: int, *, fresh: bool = False, prepare: bool = True) -> Any:
    """A cached PostgreSQL store of ``n`` events in schema ``es_scale_<n>`` (``prepare=False``: unprepared calls)."""
    import psycopg
    from eventsource_postgres import PostgresProvider
    from eventsource_postgres.schema import Names, migrate

    schema = f"es_scale_{n}" if not fresh else f"es_scale_ret_{n}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as raw:
        cur = await raw.execute("SELECT to_regclass(%s)", [f'"{schema}"."loaded"'])
        if fresh or (await cur.fetchone())[0] is None:  # type: ignore[index]
            await raw.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            names = Names(schema, "")
            await migrate(raw, names)
            await raw.execute(
                f"INSERT INTO {names.events} (event_id, stream_id, event_type, version, position, data, metadata, "
                "encoding, ts, tenant_id) SELECT 'e-' || g, 's-' || lpad((g %% %s)::text, 4, '0'), 'T' || (g %% 5), "
                "g / %s + 1, g + 1, '\\x7b7d', '\\x7b7d', 'json', %s + g * interval '1 second', 't' || (g %% 100) "
                "FROM generate_series(0, %s - 1) AS g",
                [STREAMS, STREAMS, T0, n],
            )
            await raw.execute(
                f"INSERT INTO {names.streams} (stream_id, version, event_count, created_at, updated_at, first_version) "
                f"SELECT stream_id, max(version), count(*), now(), now(), 1 FROM {names.events} GROUP BY stream_id"
            )
            await raw.execute(f"ANALYZE {names.events}")
            await raw.execute(f"ANALYZE {names.streams}")
            await raw.execute(f'CREATE TABLE "{schema}"."loaded" ()')
    if fresh:  # retention: the writer and the run side by side
        p = PostgresProvider(PG_URL, schema=schema, pool_max_size=4)
    else:  # the calls: one connection, so one server process whose CPU time is read per call
        p = PostgresProvider(
            PG_URL,
            schema=schema,
            pool_min_size=1,
            pool_max_size=1,
            application_name=f"es-scale-{n}-{os.getpid()}",
            **({} if prepare else {"prepare_threshold": None}),
        )
    await p.connect()
    return p


async def server_cpu(n: int, store: str) -> Any:
    """A reader of the CPU seconds used so far by the one server process of the size-``n`` store (``None``: none)."""
    if store != "postgres":
        return None
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as raw:
        cur = await raw.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [f"es-scale-{n}-{os.getpid()}"]
        )
        pids = [r[0] for r in await cur.fetchall()]
    if len(pids) != 1:
        msg = f"expected one server process for the {n}-event store, found {pids}"
        raise RuntimeError(msg)
    stat = Path(f"/proc/{pids[0]}/schedstat")  # the server runs on this machine: its first field is CPU ns
    return lambda: int(stat.read_text().split()[0]) / 1e9


async def manager_on(p: Any) -> EventSourcingManager:
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost(load_entrypoints=False))
    await m.register_provider(p, name="bench", default=True)
    return m


async def interleaved(
    calls_by_size: dict[int, Any], rounds: int, servers: dict[int, Any]
) -> dict[int, tuple[float, float, float | None]]:
    """Median wall ms, process CPU ms and server CPU ms of each size's call, sizes alternating within every round.

    Alternating (and swapping which size goes first each round) puts both sizes under the same machine
    load. The process CPU time counts every thread of this process (SQLite's reader thread does the whole
    query); the server's (PostgreSQL) is its one backend's, read from ``/proc``: the work each call costs,
    which the machine's load does not stretch the way it stretches wall time.
    """
    wall: dict[int, list[float]] = {n: [] for n in calls_by_size}
    cpu: dict[int, list[float]] = {n: [] for n in calls_by_size}
    srv: dict[int, list[float]] = {n: [] for n in calls_by_size}
    for call in calls_by_size.values():
        await call()
    order = list(calls_by_size)
    for r in range(rounds):
        for n in order if r % 2 == 0 else order[::-1]:
            s0 = servers[n]() if servers[n] is not None else 0.0
            c, t = time.process_time(), time.perf_counter()
            await calls_by_size[n]()
            wall[n].append(time.perf_counter() - t)
            cpu[n].append(time.process_time() - c)
            if servers[n] is not None:
                srv[n].append(servers[n]() - s0)
    return {
        n: (
            statistics.median(wall[n]) * 1e3,
            statistics.median(cpu[n]) * 1e3,
            statistics.median(srv[n]) * 1e3 if srv[n] else None,
        )
        for n in calls_by_size
    }


def calls(m: EventSourcingManager, n: int) -> dict[str, Any]:
    deep = int(n * 0.9)
    mid = T0 + timedelta(seconds=n // 2)
    return {
        "get_stats(top_streams=10)": lambda: m.get_stats(top_streams=10),
        "get_events(type with no events)": lambda: m.get_events(event_types=["Nope"], limit=10, count="none"),
        "get_events(type, cursor at 90%)": lambda: m.get_events(
            event_types=["T3"], limit=10, after_position=deep, count="none"
        ),
        "get_events(cursor at 90%)": lambda: m.get_events(limit=10, after_position=deep, count="none"),
        "get_events(tenant)": lambda: m.get_events(tenant_id="t7", limit=10, count="none"),
        "get_events(time range)": lambda: m.get_events(
            from_timestamp=mid, to_timestamp=mid + timedelta(hours=1), limit=10, count="none"
        ),
        "get_events(type, count=estimate)": lambda: m.get_events(event_types=["T3"], limit=10, count="estimate"),
        "list_streams(after=)": lambda: m.list_streams(limit=10, after="s-0500"),
        "get_events(offset at 90%) [documented: grows]": lambda: m.get_events(limit=10, offset=deep, count="none"),
        "get_events(type, count=exact)": lambda: m.get_events(event_types=["T3"], limit=10),
        "get_events(type+tenant, count=exact) [documented: grows]": lambda: m.get_events(
            event_types=["T3"], tenant_id="t7", limit=10
        ),
    }


def _p(lat: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted latencies ``lat``, in ms."""
    return lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3


async def writer_alone_vs_during(
    m: EventSourcingManager, step: Any, *, windows: int, per_window: int, waits: Any = None
) -> dict[str, Any]:
    """One writer's append latencies alone (A) and while retention runs (B), in windows alternating ABBA.

    Every window is ``per_window`` single appends by the same writer to the same stream, so both sides do the
    same work and get the same number of samples; the order A B B A ... puts both under the same machine load
    (and the same store as it shrinks). In a B window a task calls ``step()`` (one retention call) again and
    again until the writer's appends are done; the window ends once the call in flight returns (those
    appends are not timed: nothing is measured while the writer waits for it). ``waits(stop, side)``, if
    given, runs beside every window until it ends (PostgreSQL: the wait events of the store's backends).
    """
    lat: dict[str, list[float]] = {"alone": [], "during": []}
    per: dict[str, list[float]] = {"alone": [], "during": []}  # each window's p99, to show the spread
    stream = f"w-{time.monotonic_ns()}"
    deleted, busy = 0, 0.0
    await m.append_event(stream_id=stream, event_type="W", data={})  # the stream exists before the first window
    for w in range(windows):
        side = "alone" if (w % 4) in (0, 3) else "during"
        stop = asyncio.Event()

        async def run(stop: asyncio.Event) -> tuple[int, float]:
            n, t = 0, time.perf_counter()
            while not stop.is_set():
                n += await step()
            return n, time.perf_counter() - t

        task = asyncio.ensure_future(run(stop)) if side == "during" else None
        sampler = asyncio.ensure_future(waits(stop, side)) if waits is not None else None
        got: list[float] = []
        for _ in range(per_window):
            t = time.perf_counter()
            await m.append_event(stream_id=stream, event_type="W", data={})
            got.append(time.perf_counter() - t)
        stop.set()
        if task is not None:
            n, took = await task
            deleted, busy = deleted + n, busy + took
        if sampler is not None:
            await sampler
        lat[side] += got
        per[side].append(_p(sorted(got), 0.99))
    out: dict[str, Any] = {}
    for side, got in lat.items():
        got.sort()
        out[side] = {
            "appends": len(got),
            "p50_ms": _p(got, 0.5),
            "p90_ms": _p(got, 0.9),
            "p99_ms": _p(got, 0.99),
            "p999_ms": _p(got, 0.999),
            "window_p99_ms_median": statistics.median(per[side]),
        }
    out["p99_ratio"] = out["during"]["p99_ms"] / out["alone"]["p99_ms"]
    out["p50_ratio"] = out["during"]["p50_ms"] / out["alone"]["p50_ms"]
    out.update({"windows": windows, "appends_per_window": per_window, "deleted": deleted, "retention_s": busy})
    out["deleted_per_s"] = deleted / busy if busy else 0.0
    return out


def pg_waits(p: Any, into: dict[str, dict[str, int]]) -> Any:
    """A sampler of the wait events of the store's active backends, counted into ``into[side]["kind:wait"]``."""

    async def sample(stop: asyncio.Event, side: str) -> None:
        got = into.setdefault(side, {})
        import psycopg

        async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as raw:
            while not stop.is_set():
                cur = await raw.execute(
                    "SELECT query, coalesce(wait_event_type || '/' || wait_event, 'CPU') FROM pg_stat_activity "
                    "WHERE state = 'active' AND datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE %s",
                    [f"%{p.settings['schema']}%"],
                )
                for query, wait in await cur.fetchall():
                    kind = "append" if "INSERT" in query else "retention"
                    got[f"{kind}:{wait}"] = got.get(f"{kind}:{wait}", 0) + 1
                await asyncio.sleep(0.001)

    return sample


def _most_first(waits: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {side: dict(sorted(w.items(), key=lambda kv: -kv[1])) for side, w in waits.items()}


async def retention_rows(p: Any, store: str, n: int, windows: int, per_window: int) -> dict[str, Any]:
    """The writer alone vs during ``delete_events_before``, then vs during truncations (``max_count``'s work)."""
    m = await manager_on(p)
    out: dict[str, Any] = {}
    waits: dict[str, dict[str, int]] = {}
    sampler = pg_waits(p, waits) if store == "postgres" else None
    cutoff = T0
    step_s = 200  # one event a second: each call deletes the next 200 oldest events (several batches)

    async def delete_step() -> int:
        nonlocal cutoff
        cutoff += timedelta(seconds=step_s)
        if cutoff > T0 + timedelta(seconds=n * 3 // 5):
            msg = "the retention store ran out of events to delete: fewer windows or a bigger --retention"
            raise RuntimeError(msg)
        return int(await p.delete_events_before(cutoff))

    got = await writer_alone_vs_during(m, delete_step, windows=windows, per_window=per_window, waits=sampler)
    out["delete_events_before"] = {**got, "events": n, "loadavg": os.getloadavg()}
    if waits:
        out["delete_events_before"]["pg_waits"] = _most_first(waits)
    print(f"  retention, delete_events_before: {json.dumps(out['delete_events_before'])}", flush=True)
    # max_count's work: stream after stream, each truncated by a few events (what max_count does when every
    # stream has a few more than it keeps), cycling through the streams from where the deletes left off
    per_stream = n // STREAMS
    floor = (cutoff - T0).total_seconds() // STREAMS + 1
    cuts = {f"s-{i:04d}": int(floor) for i in range(STREAMS)}
    order = list(cuts)
    at = 0

    async def truncate_step() -> int:
        nonlocal at
        sid = order[at % STREAMS]
        at += 1
        cuts[sid] += 5
        if cuts[sid] > per_stream:
            msg = "the retention store ran out of events to truncate: fewer windows or a bigger --retention"
            raise RuntimeError(msg)
        return int(await p.truncate_stream(sid, cuts[sid]))

    waits.clear()
    got = await writer_alone_vs_during(m, truncate_step, windows=windows, per_window=per_window, waits=sampler)
    out["truncate_stream"] = {**got, "events_per_call": 5, "loadavg": os.getloadavg()}
    if waits:
        out["truncate_stream"]["pg_waits"] = _most_first(waits)
    print(f"  retention, truncate_stream per stream: {json.dumps(out['truncate_stream'])}", flush=True)
    await m.close()
    return out


async def measure_calls(store: str, build: Any, sizes: tuple[int, int], rounds: int) -> dict[str, Any]:
    """Every call of :func:`calls` on both sizes, interleaved: wall, process CPU and (PostgreSQL) server CPU ms."""
    rows: dict[str, dict[str, float]] = {}
    cpu_rows: dict[str, dict[str, float]] = {}
    server_rows: dict[str, dict[str, float]] = {}
    managers: dict[int, EventSourcingManager] = {}
    servers: dict[int, Any] = {}
    for n in sizes:
        t = time.perf_counter()
        p = await build(n)
        print(f"{store} store of {n:,} events ready in {time.perf_counter() - t:.1f} s", flush=True)
        managers[n] = await manager_on(p)
        servers[n] = await server_cpu(n, store)
    per_size = {n: calls(m, n) for n, m in managers.items()}
    for name in per_size[sizes[0]]:
        got = await interleaved({n: per_size[n][name] for n in managers}, rounds, servers)
        rows[name] = {str(n): w for n, (w, _, _) in got.items()}
        cpu_rows[name] = {str(n): c for n, (_, c, _) in got.items()}
        if store == "postgres":
            server_rows[name] = {str(n): v for n, (_, _, v) in got.items() if v is not None}
        print(
            f"  {name:58s} "
            + "  ".join(
                f"{w:9.2f} ms (cpu {c:6.2f}" + (f", server {v:6.3f})" if v is not None else ")")
                for w, c, v in got.values()
            ),
            flush=True,
        )
    for m in managers.values():
        await m.close()
    return {"ms": rows, "cpu_ms": cpu_rows, **({"server_cpu_ms": server_rows} if server_rows else {})}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "postgres"], required=True)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=10_000_000)
    ap.add_argument("--retention", type=int, default=1_000_000, help="events in the retention store (0: skip)")
    ap.add_argument("--rounds", type=int, default=31)
    ap.add_argument(
        "--unprepared",
        action="store_true",
        help="PostgreSQL: no prepared statements, so every call is planned on both sizes (no retention run)",
    )
    ap.add_argument("--only-retention", action="store_true", help="skip the calls: only the retention rows")
    ap.add_argument("--windows", type=int, default=40, help="retention: writer windows, alone and during in turn")
    ap.add_argument("--window-appends", type=int, default=1000, help="retention: the writer's appends per window")
    a = ap.parse_args()
    build = sqlite_store if a.store == "sqlite" else partial(postgres_store, prepare=not a.unprepared)
    if a.unprepared:
        a.retention = 0
    load_start = os.getloadavg()
    out: dict[str, Any] = {"store": a.store, "small": a.small, "big": a.big, "prepared": not a.unprepared}
    if not a.only_retention:
        out.update(await measure_calls(a.store, build, (a.small, a.big), a.rounds))
        out.update({"rounds": a.rounds, "interleaved": True, "loadavg_start": load_start})
        out["loadavg_end"] = os.getloadavg()
    if a.retention:
        p = await build(a.retention, fresh=True)
        out["retention"] = await retention_rows(p, a.store, a.retention, a.windows, a.window_appends)
    name = f"{a.store}-{a.big}{'-unprepared' if a.unprepared else ''}.json"
    if a.only_retention:
        name = f"{a.store}-retention-{a.retention}.json"
    report = Path(__file__).parent / "report" / "scale" / name
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {report}")


if __name__ == "__main__":
    asyncio.run(main())
