"""A provider in its own process, driven over stdin (one JSON command a line, one JSON answer a line).

``python op_worker.py <json KafkaProvider kwargs>``; commands: ``{"op": "append", "stream": s,
"ids": [...], "expected": n | "ANY" | "NO_STREAM" | "STREAM_EXISTS"}``, ``{"op": "info", "stream": s}``,
``{"op": "create", "stream": s}``, ``{"op": "delete", "stream": s}``, ``{"op": "truncate", "stream": s,
"before": n}``, ``{"op": "delete_before", "stream": s, "cutoff_us": n}``, ``{"op": "read", "stream": s}``.
Answers carry ``ok`` (the result) or ``error`` (the exception's class name). Used by ``test_stale_processes.py``
to give a process a stale view of a stream while another process changes it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from eventsource.model import ExpectedVersion, NewEvent, NewStream, utcnow
from eventsource.timestamps import from_us
from eventsource_kafka.provider import KafkaProvider


def _expected(x: Any) -> Any:
    return ExpectedVersion[x] if isinstance(x, str) else int(x)


async def _do(p: KafkaProvider, cmd: dict[str, Any]) -> Any:
    op, sid = cmd["op"], cmd.get("stream")
    if op == "append":
        evs = [NewEvent(i, "Op", json.dumps({"id": i}).encode(), b"", "json", utcnow()) for i in cmd["ids"]]
        r = await p.append(sid, evs, _expected(cmd["expected"]))
        return {"first": r.first_version, "last": r.last_version, "duplicate": r.duplicate}
    if op == "info":
        info = await p.get_stream_info(sid)
        return None if info is None else {"version": info.version, "count": info.event_count}
    if op == "create":
        await p.create_stream(NewStream(stream_id=sid))
        return True
    if op == "delete":
        await p.delete_stream(sid)
        return True
    if op == "truncate":
        return await p.truncate_stream(sid, cmd["before"])
    if op == "delete_before":
        return await p.delete_events_before(from_us(cmd["cutoff_us"]), sid)
    if op == "read":
        return [[e.version, e.event_id] async for e in p.read_stream(sid)]
    if op == "stats":
        st = await p.stats(top_streams=cmd.get("top"))
        return {
            "total_events": st.total_events,
            "total_streams": st.total_streams,
            "by_stream": st.events_by_stream,
            "by_type": st.events_by_type,
            "estimated": list(st.estimated),
        }
    msg = f"unknown op {op!r}"
    raise ValueError(msg)


async def main(args: dict[str, Any]) -> None:
    p = KafkaProvider(**args)
    await p.connect()
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                return
            try:
                out: dict[str, Any] = {"ok": await _do(p, json.loads(line))}
            except Exception as e:  # noqa: BLE001 - reported to the driving test
                out = {"error": type(e).__name__, "message": str(e)[:300]}
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
    finally:
        await p.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
