"""Subprocess worker for the kit's cross-process race.

Run as ``python -m eventsource.testing.worker <json-spec>``. The spec names the provider class
(``module:Class``), its ``spawn_args()``, the stream, the number of rounds and a start time. For each
round ``r`` the worker appends one event with expected version ``r``; a :class:`ConcurrencyError`
means another process won the round. It prints one JSON line: the versions it won and the event ids.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
import uuid
from typing import Any

from eventsource.errors import ConcurrencyError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.model import NewEvent, utcnow


def load_class(path: str) -> type:
    """The class ``module:Class`` names (a worker process is given its provider's class this way)."""
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not isinstance(cls, type):
        msg = f"{path} is not a class"
        raise TypeError(msg)
    return cls


async def _race(spec: dict[str, Any]) -> dict[str, Any]:
    cls = load_class(spec["provider_class"])
    provider = cls(**spec["spawn_args"])
    await provider.connect()
    won: list[int] = []
    ids: list[str] = []
    busy = 0
    try:
        delay = spec["start_at"] - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        for r in range(spec["rounds"]):
            eid = str(uuid.uuid4())
            ev = NewEvent(
                event_id=eid,
                event_type="Raced",
                data=json.dumps({"worker": spec["worker"], "round": r}).encode(),
                metadata=b"",
                encoding="json",
                timestamp=utcnow(),
            )
            while True:
                try:
                    res = await provider.append(spec["stream_id"], [ev], r)
                except ConcurrencyError:
                    break
                except (ProviderUnavailableError, ProviderTimeoutError):
                    busy += 1
                    await asyncio.sleep(0.005)
                    continue
                # duplicate: an earlier attempt of this very append landed but its reply was lost (the
                # id is fresh for every round, so nobody else can have written it): still a win
                won.append(res.first_version)
                ids.append(eid)
                break
    finally:
        await provider.close()
    return {"worker": spec["worker"], "won": won, "ids": ids, "busy_retries": busy}


def main() -> None:
    """Entry point: one JSON spec in argv, one JSON result on stdout."""
    spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(_race(spec))))  # noqa: T201


if __name__ == "__main__":
    main()
