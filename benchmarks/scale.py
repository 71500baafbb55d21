"""Issue #17: what stats, filtered queries, cursors, offsets and retention cost on a small and a big store.

Stores are bulk-loaded outside any timer (SQLite: ``executemany`` into a fresh file then one fold of the
counts; PostgreSQL: ``generate_series`` server-side, then ``ANALYZE``) with the same shape at every size: 1,000
streams, five event types, 100 tenants, one event a second; they are cached between runs (SQLite files under
``EVENTSOURCE_BENCH_CACHE``, PostgreSQL schemas ``es_scale_<n>``). Each call runs through the manager, one
warm-up on each store, then ``--rounds`` rounds alternating the small and the big store (medians of wall and
process CPU time). Retention runs on a store of its own (it deletes): a writer appends one
event at a time for a few seconds alone, then again while ``delete_events_before`` removes the oldest 20%, then
alone and while every stream is truncated (``max_count``'s work); each pair of p99 latencies is compared. Usage:
``python benchmarks/scale.py --store sqlite --big 10000000``; the JSON goes to
``benchmarks/report/scale/<store>-<big>.json`` (apart from the harness reports that render.py reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def _sqlite_path(n: int, *, fresh: bool) -> tuple[Path, bool]:
    """The cached file for ``n`` events, and whether it must be built."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (f"scale-{n}.db" if not fresh else f"scale-ret-{n}.db")
    if fresh:
        for old in path.parent.glob(path.name + "*"):
            old.unlink()
    return path, not (CACHE / f"{path.name}.ok").exists()


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
    """A cached SQLite store of ``n`` events (``fresh``: a new one, for retention)."""
    from eventsource.sqlite import SqliteProvider

    path, build = _sqlite_path(n, fresh=fresh)
    if build:
        p = SqliteProvider(f"sqlite:///{path}")
        await p.connect()  # the schema, by the provider's own migrations
        await p.close()
        _sqlite_load(path, n)
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


async def writer_p99(m: EventSourcingManager, seconds: float, during: Any = None) -> tuple[float, int]:
    """p99 (ms) of single appends by one writer for ``seconds`` (while ``during`` runs, if given)."""
    lat: list[float] = []
    stream = f"w-{time.monotonic_ns()}"
    task = asyncio.ensure_future(during()) if during is not None else None
    end = time.monotonic() + seconds
    while time.monotonic() < end or (task is not None and not task.done()):
        t = time.perf_counter()
        await m.append_event(stream_id=stream, event_type="W", data={})
        lat.append(time.perf_counter() - t)
    if task is not None:
        await task
    lat.sort()
    return lat[int(len(lat) * 0.99)] * 1e3, len(lat)


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
    a = ap.parse_args()
    build = sqlite_store if a.store == "sqlite" else partial(postgres_store, prepare=not a.unprepared)
    if a.unprepared:
        a.retention = 0
    load_start = os.getloadavg()
    out: dict[str, Any] = {"store": a.store, "small": a.small, "big": a.big, "prepared": not a.unprepared}
    out.update(await measure_calls(a.store, build, (a.small, a.big), a.rounds))
    out.update({"rounds": a.rounds, "interleaved": True, "loadavg_start": load_start, "loadavg_end": os.getloadavg()})
    if a.retention:
        p = await build(a.retention, fresh=True)
        m = await manager_on(p)
        alone, n_alone = await writer_p99(m, 5.0)
        cutoff = T0 + timedelta(seconds=a.retention // 5)
        t = time.perf_counter()
        during, n_during = await writer_p99(m, 1.0, lambda: p.delete_events_before(cutoff))
        out["retention"] = {
            "events": a.retention,
            "deleted": a.retention // 5,
            "run_s": time.perf_counter() - t,
            "writer_p99_ms_alone": alone,
            "writer_p99_ms_during": during,
            "appends_alone": n_alone,
            "appends_during": n_during,
            "loadavg": os.getloadavg(),
        }
        print(f"  retention: {out['retention']}", flush=True)
        # max_count's work: each stream truncated below a version (here: 40% of the store more goes)
        per_stream = a.retention // STREAMS
        before = per_stream * 3 // 5 + 1

        async def max_count() -> None:
            for i in range(STREAMS):
                await p.truncate_stream(f"s-{i:04d}", before)

        alone, n_alone = await writer_p99(m, 5.0)
        t = time.perf_counter()
        during, n_during = await writer_p99(m, 1.0, max_count)
        out["retention_max_count"] = {
            "events": a.retention - a.retention // 5,
            "deleted": (before - 1 - per_stream // 5) * STREAMS,
            "run_s": time.perf_counter() - t,
            "writer_p99_ms_alone": alone,
            "writer_p99_ms_during": during,
            "appends_alone": n_alone,
            "appends_during": n_during,
            "loadavg": os.getloadavg(),
        }
        print(f"  retention (truncate every stream, as max_count): {out['retention_max_count']}", flush=True)
        await m.close()
    name = f"{a.store}-{a.big}{'-unprepared' if a.unprepared else ''}.json"
    report = Path(__file__).parent / "report" / "scale" / name
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {report}")


if __name__ == "__main__":
    asyncio.run(main())
