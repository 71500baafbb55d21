"""Memory of one large event through append and read: each codec step, the store's insert and fetch, end to end.

Each case runs in a fresh subprocess. ``trace`` mode reports tracemalloc peaks (Python allocations only) above
what was live before each step; ``rss`` mode (no tracemalloc, whose bookkeeping would inflate RSS) reports the
process's peak resident memory above its resident memory before each end-to-end call (the peak is reset per call
through ``/proc/self/clear_refs``), which also sees what C libraries (SQLite, libpq, brotli, OpenSSL) allocate.
Figures are multiples of N, the event's serialized size. Usage::

    python benchmarks/large_event_memory.py [--mb 45] [--store sqlite --store postgres] [--mode trace --mode rss]

One JSON line per case on stdout, then a table on stderr. Not a test: nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import gc
import itertools
import json
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

KEY = base64.b64encode(bytes(range(32))).decode()
PG_URL = os.environ.get("EVENTSOURCE_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
WORDS = [f"{w}{i}" for i, w in enumerate(["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "elit"])] * 7


def payload(kind: str, mb: float) -> Any:
    """About ``mb`` MB of JSON: one long text (``text``), a list of small dicts (``rows``) or bytes (``blob``)."""
    rnd = random.Random(1)
    size = int(mb * 1_000_000)
    if kind == "blob":  # stored as base64 text: 4/3 of its size
        return {"file": rnd.randbytes(size * 3 // 4)}
    if kind == "text":
        words: list[str] = []
        n = 0
        while n < size:
            w = rnd.choice(WORDS) + str(rnd.randrange(1000))
            words.append(w)
            n += len(w) + 1
        text = " ".join(words)
        del words
        return {"doc": text}
    rows = []
    n = 0
    i = 0
    while n < size:
        row = {"i": i, "sku": f"s{rnd.randrange(10**6)}", "qty": rnd.randrange(100), "ok": True}
        rows.append(row)
        n += 40 + len(str(i))
        i += 1
    return {"rows": rows}


def hwm_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class Meter:
    """Peak above what was live at the start of ``step`` (tracemalloc or RSS)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.out: dict[str, int] = {}

    def start(self) -> int:
        gc.collect()
        if self.mode == "trace":
            tracemalloc.reset_peak()
            return tracemalloc.get_traced_memory()[0]
        _trim()  # freed heap back to the system: what is resident is what is live
        hwm_reset()
        return status("VmRSS")

    def stop(self, name: str, base: int) -> None:
        peak = tracemalloc.get_traced_memory()[1] if self.mode == "trace" else status("VmHWM")
        self.out[name] = max(self.out.get(name, 0), peak - base)


def manager_config(case: dict[str, Any], url: str, settings: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {"s": {"url": url, "settings": settings}},
        "default_provider": "s",
        "max_event_size": 200 * 1024 * 1024,
        "max_snapshot_size": 200 * 1024 * 1024,
        "compression": case["codec"],
    }
    if case["enc"]:
        cfg.update(encryption=True, encryption_keys={"k1": KEY})
    return cfg


async def steps(m: Any, data: Any, meter: Meter) -> int:
    """Each codec step and the store's own insert and fetch, called one by one; the serialized size."""
    from eventsource.codecs.builtin import json_change
    from eventsource.model import ANY, NewEvent, utcnow

    pipeline = m.pipeline
    base = meter.start()
    json_change(data)
    meter.stop("check", base)
    base = meter.start()
    raw = pipeline.serializer.dumps(data)
    meter.stop("dumps", base)
    n = len(raw)
    stored, desc = raw, "json"
    if pipeline.compressor is not None:
        base = meter.start()
        stored = pipeline.compressor.compress(raw)
        meter.stop("compress", base)
        desc += "+" + pipeline.compressor.name
    if pipeline.cipher is not None:
        base = meter.start()
        stored = pipeline.cipher.encrypt(stored, aad=desc.encode() + b"\x00x", scope=None)
        meter.stop("encrypt", base)
    sealed_stored = stored
    del raw
    p = m.get_provider()
    ev = NewEvent(event_id="big-1", event_type="Big", data=stored, metadata=b"", encoding="raw", timestamp=utcnow())
    del stored
    base = meter.start()
    await p.append("steps", [ev], ANY)
    meter.stop("insert", base)
    del ev
    base = meter.start()
    recs = [r async for r in p.read_stream("steps")]
    meter.stop("fetch", base)
    del recs
    blob = sealed_stored
    if pipeline.cipher is not None:
        base = meter.start()
        blob = pipeline.cipher.decrypt(blob, aad=desc.encode() + b"\x00x", scope=None)
        meter.stop("decrypt", base)
    if pipeline.compressor is not None:
        base = meter.start()
        blob = pipeline.compressor.decompress_bounded(blob, pipeline.max_decoded_size)
        meter.stop("decompress", base)
    del sealed_stored
    base = meter.start()
    value = pipeline.serializer.loads(blob)
    meter.stop("loads", base)
    del value, blob
    return n


async def run_async(case: dict[str, Any], cfg: dict[str, Any], data: Any, meter: Meter) -> int:
    from eventsource import EventSourcingManager

    async with EventSourcingManager(cfg) as m:
        n = await steps(m, data, meter) if meter.mode == "trace" else len(m.pipeline.serializer.dumps(data))
        await m.append_event(stream_id="warm", event_type="Small", data={"x": 1})
        [e async for e in m.read_stream("warm")]
        base = meter.start()
        await m.append_event(stream_id="big", event_type="Big", data=data)
        meter.stop("append", base)
        base = meter.start()
        got = [e async for e in m.read_stream("big")]
        meter.stop("read", base)
        assert got[0].data == data
        del got
        if case.get("upcast"):
            m.register_upcaster("Big", lambda e: e)
            base = meter.start()
            got = [e async for e in m.read_stream("big")]
            meter.stop("read+upcast", base)
            del got
    return n


def run_sync(cfg: dict[str, Any], data: Any, meter: Meter) -> int:
    from eventsource.sync import SyncEventSourcingManager

    with SyncEventSourcingManager(cfg) as m:
        n = len(m.manager.pipeline.serializer.dumps(data))
        m.append_event(stream_id="warm", event_type="Small", data={"x": 1})
        list(m.read_stream("warm"))
        base = meter.start()
        m.append_event(stream_id="big", event_type="Big", data=data)
        meter.stop("append", base)
        base = meter.start()
        got = list(m.read_stream("big"))
        meter.stop("read", base)
        assert got[0].data == data
        del got
    return n


def child(case: dict[str, Any]) -> dict[str, Any]:
    """One case in this process: the peaks of each step and of the end-to-end calls."""
    meter = Meter(case["mode"])
    if case["mode"] == "trace":
        tracemalloc.start()
    data = payload(case["payload"], case["mb"])
    gc.collect()
    tag = f"bigpay{os.getpid()}"
    if case["store"] == "sqlite":
        url, settings = f"sqlite:///{case['workdir']}/{tag}.db", {}
    else:
        url, settings = PG_URL, {"schema": tag}
    cfg = manager_config(case, url, settings)
    try:
        n = asyncio.run(run_async(case, cfg, data, meter)) if case["api"] == "async" else run_sync(cfg, data, meter)
    finally:
        if case["store"] == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{case['workdir']}/{tag}.db{suffix}").unlink(missing_ok=True)
        else:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
    return {**case, "n": n, "peaks": meter.out, "x": {k: round(v / n, 2) for k, v in meter.out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child")
    ap.add_argument("--mb", type=float, default=45)
    ap.add_argument("--store", action="append")
    ap.add_argument("--api", action="append")
    ap.add_argument("--mode", action="append")
    ap.add_argument("--payload", action="append")
    ap.add_argument("--codec", action="append")
    ap.add_argument("--enc", action="append", choices=["off", "on"])
    ap.add_argument("--upcast", action="store_true", help="also read once through an identity upcaster")
    ap.add_argument("--workdir", default="/var/tmp")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    for mode, store, api, kind, codec, enc in itertools.product(
        args.mode or ["trace", "rss"],
        args.store or ["sqlite", "postgres"],
        args.api or ["async", "sync"],
        args.payload or ["text", "rows"],
        args.codec or ["none", "zlib", "brotli"],
        args.enc or ["off", "on"],
    ):
        case = {
            "mode": mode, "store": store, "api": api, "payload": kind, "codec": codec, "enc": enc == "on",
            "mb": args.mb, "workdir": args.workdir, "upcast": args.upcast,
        }  # fmt: skip
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True, check=False
        )
        if out.returncode:
            sys.stderr.write(out.stderr)
            continue
        row = json.loads(out.stdout)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        label = (
            f"{row['mode']:5} {row['store']:8} {row['api']:5} {row['payload']:4} {row['codec']:6} enc={row['enc']!s:5}"
        )
        sys.stderr.write(
            f"{label} N={row['n'] / 1e6:.1f}MB " + " ".join(f"{k}={v}" for k, v in row["x"].items()) + "\n"
        )


if __name__ == "__main__":
    main()
