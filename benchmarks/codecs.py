"""Codec cost per event: serialize alone, + brotli, + AES-256-GCM, for 200 B and 10 KB payloads.

Standalone (no store): ``python benchmarks/codecs.py [--json] [--repeat N]``. Each figure is the best
(minimum, as ``timeit`` advises on a shared machine) over ``--repeat`` runs of the mean time per payload,
encode and decode separately, through the same :class:`~eventsource.codecs.CodecPipeline` the manager uses
(compression forced with threshold 0, so the 200 B row shows brotli's cost even though the default 1024 B
threshold would skip it). The associated data is the manager's event AAD (stream id, event id, version).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from eventsource.codecs import CodecPipeline
from eventsource.codecs.aesgcm import AesGcmCipher
from eventsource.codecs.keys import StaticKeyRing
from eventsource.plugins import PluginHost

KEY = base64.b64encode(bytes(range(32))).decode()


def payload(size: int) -> dict[str, Any]:
    """A realistic event body whose JSON is about ``size`` bytes (ids, amounts, timestamps, text)."""
    body: dict[str, Any] = {
        "order_id": str(uuid.UUID(int=42)),
        "customer": "c-1029",
        "amount": Decimal("129.95"),
        "at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "items": [],
    }
    i = 0
    while len(json.dumps(body, default=str)) < size:
        body["items"].append(
            {
                "sku": f"SKU-{i:05d}",
                "qty": i % 7 + 1,
                "price": f"{(i * 37) % 1000}.{i % 100:02d}",
                "note": "gift wrap" if i % 3 else "",
            }
        )
        i += 1
    return body


def bench(fn: Any, n: int, repeat: int) -> float:
    """Best-of-``repeat`` microseconds per call of ``fn``."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter_ns() - start) / n / 1000)
    return min(runs)


def measure(repeat: int = 5) -> list[dict[str, Any]]:
    """One row per (payload size, pipeline): stored bytes and microseconds per event to encode and decode."""
    host = PluginHost(load_entrypoints=False)
    cipher = AesGcmCipher(StaticKeyRing({"k1": KEY}))
    pipelines = {
        "serialize": CodecPipeline(host.codecs),
        "serialize+zlib": CodecPipeline(host.codecs, compressor="zlib", compression_threshold=0),
        "serialize+brotli": CodecPipeline(host.codecs, compressor="brotli", compression_threshold=0),
        "serialize+aes256gcm": CodecPipeline(host.codecs, cipher=cipher),
        "serialize+brotli+aes256gcm": CodecPipeline(
            host.codecs, compressor="brotli", compression_threshold=0, cipher=cipher
        ),
    }
    aad = f"e\x00orders-42\x00{uuid.uuid4()}\x007\x00d".encode()
    rows = []
    for label, size in (("200 B", 200), ("10 KB", 10_240)):
        value = payload(size)
        n = 20_000 if size < 1000 else 1_000
        plain = len(pipelines["serialize"].encode(value)[0])
        for name, p in pipelines.items():
            raw, descriptor = p.encode(value, aad=aad)
            enc = bench(lambda p=p, value=value: p.encode(value, aad=aad), n, repeat)
            dec = bench(lambda p=p, raw=raw, d=descriptor: p.decode(raw, d, aad=aad), n, repeat)
            rows.append(
                {
                    "payload": label,
                    "json_bytes": plain,
                    "pipeline": name,
                    "stored_bytes": len(raw),
                    "encode_us": round(enc, 2),
                    "decode_us": round(dec, 2),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args(argv)
    rows = measure(args.repeat)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"python {sys.version.split()[0]}; best of {args.repeat} runs; microseconds per event")
    print(f"{'payload':8} {'pipeline':28} {'json B':>7} {'stored B':>9} {'encode us':>10} {'decode us':>10}")
    for r in rows:
        print(
            f"{r['payload']:8} {r['pipeline']:28} {r['json_bytes']:>7} {r['stored_bytes']:>9} "
            f"{r['encode_us']:>10} {r['decode_us']:>10}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
