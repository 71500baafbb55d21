"""One racing process for ``test_races.py``: ``python race_worker.py <json spec>``.

Spec: ``args`` (``KafkaProvider`` keyword arguments, no lease), ``mode`` (``"shared"``: round ``r``
appends to one stream with expected version ``r``; ``"new"``: round ``r`` appends the first event of
stream ``new-<r>`` with expected version ``NO_STREAM``), ``rounds``, ``start_at`` (epoch seconds) and
``gap`` (seconds between round starts in ``"new"`` mode, so both processes start each round together).
Prints one JSON line: per round, the version won (or ``null`` for a conflict) and the event id.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import NO_STREAM, NewEvent, utcnow
from eventsource_kafka.provider import KafkaProvider


async def _append(p: KafkaProvider, stream: str, expected: int, worker: str, r: int) -> dict[str, Any]:
    ev = NewEvent(str(uuid.uuid4()), "Raced", json.dumps({"w": worker, "r": r}).encode(), b"", "json", utcnow())
    while True:
        try:
            res = await p.append(stream, [ev], expected)
        except ConcurrencyError:
            return {"round": r, "stream": stream, "won": None, "id": ev.event_id}
        except (ProviderTimeoutError, ProviderUnavailableError):
            continue  # the same event id again: a landed attempt comes back as a duplicate
        return {"round": r, "stream": stream, "won": res.first_version, "id": ev.event_id}


async def main(spec: dict[str, Any]) -> list[dict[str, Any]]:
    p = KafkaProvider(**spec["args"])
    await p.connect()
    out = []
    try:
        for r in range(spec["rounds"]):
            at = spec["start_at"] + (r * spec["gap"] if spec["mode"] == "new" else 0)
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if spec["mode"] == "new":
                out.append(await _append(p, f"new-{r}", NO_STREAM, spec["worker"], r))
            else:
                out.append(await _append(p, "shared", r, spec["worker"], r))
    finally:
        await p.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
