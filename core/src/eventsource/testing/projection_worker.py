"""Subprocess worker for the kit's projection tests: one :class:`ProjectionRunner` until killed.

Run as ``python -m eventsource.testing.projection_worker <json-spec>``. The spec names the source provider
class (``module:Class``) and its ``spawn_args()``, the sink (``sqlite`` file or ``postgres`` URL and schema),
the projection name, the table it writes (one row per event id with an ``applied`` count, so a duplicate
shows) and an optional lease URL. It prints ``started`` once the runner runs, then runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections import Projection, ProjectionRunner, SqliteSink
from eventsource.testing.worker import load_class

if TYPE_CHECKING:
    from eventsource.model import Event
    from eventsource.projections.sinks import Sink


def _at(event: Event, spec: dict[str, Any]) -> int:
    """The event's place in what the projection follows: its version in one stream, else its position."""
    return event.version if spec.get("stream_id") else event.position


def _projection(spec: dict[str, Any]) -> tuple[Projection[Any], Sink[Any]]:
    table, me = spec["table"], os.getpid()
    if spec["sink"]["kind"] == "sqlite":
        sql = (
            f"INSERT INTO {table} (event_id, position, runner, applied) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (event_id) DO UPDATE SET applied = applied + 1"
        )

        def counted(event: Event, tx: Any) -> None:
            tx.execute(sql, (event.event_id, _at(event, spec), me))

        sink: Sink[Any] = SqliteSink(spec["sink"]["url"])
        return Projection(spec["name"], {"Counted": counted}, stream_id=spec.get("stream_id")), sink
    from eventsource.projections.postgres import PostgresSink

    pg = (
        f"INSERT INTO {table} (event_id, position, runner, applied) VALUES (%s, %s, %s, 1) "
        "ON CONFLICT (event_id) DO UPDATE SET applied = {table}.applied + 1"
    ).replace("{table}", table)

    async def counted_async(event: Event, tx: Any) -> None:
        await tx.execute(pg, (event.event_id, _at(event, spec), me))

    sink = PostgresSink(spec["sink"]["url"], schema=spec["sink"]["schema"])
    return Projection(spec["name"], {"Counted": counted_async}, stream_id=spec.get("stream_id")), sink


async def _run(spec: dict[str, Any]) -> None:
    cls = load_class(spec["provider_class"])
    provider = cls(**spec["spawn_args"])
    await provider.connect()
    m = EventSourcingManager({"providers": {}, "default_provider": None}, host=PluginHost())
    await m.register_provider(provider, name="under-test", default=True)
    projection, sink = _projection(spec)
    runner = ProjectionRunner(
        m, lease=spec.get("lease"), batch_size=spec.get("batch_size", 20), poll_interval=0.2, lease_wait=0.2
    )
    runner.add(projection, sink)
    print("started", flush=True)  # noqa: T201 - the parent waits for this line
    try:
        await runner.run()
    finally:
        await m.close()


def main() -> None:
    """Entry point: run the spec in ``sys.argv[1]``."""
    asyncio.run(_run(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
