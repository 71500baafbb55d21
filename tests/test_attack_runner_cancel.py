"""A projection task told to end (its task group aborting, ``catch_up``'s timeout) must end, whatever it was doing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from eventsource.projections import Projection, ProjectionRunner, SinkUnavailableError, SqliteSink

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from eventsource.checkpoints import Checkpoint
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event


class FailsOnceWhileTheTaskIsCancelled(SqliteSink):
    """A SQLite sink whose first checkpoint-only write fails as an outage, just as its task is told to end.

    That is the moment a task group aborts a projection because another one stopped: the cancel arrives while
    the runner, unwinding from the outage, waits for the subscription read it had in flight.
    """

    armed = True

    async def apply(
        self, projection: Projection[Any], events: Sequence[Event], checkpoint: Checkpoint, expected: int | None
    ) -> None:
        task = asyncio.current_task()
        if not events and self.armed and task is not None:
            self.armed = False
            asyncio.get_running_loop().call_soon(task.cancel)
            msg = "the sink's database went away"
            raise SinkUnavailableError(msg, operation="projection")
        await super().apply(projection, events, checkpoint, expected)


async def test_a_projection_told_to_end_while_it_unwinds_from_a_sink_outage_ends(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """The runner waited for the in-flight read with ``suppress(CancelledError)``: the cancel went to the read,
    came back as its CancelledError and was swallowed, so the projection went on (taking its lease again) and
    ``run()`` never returned: a task group whose other projection had stopped hung instead of raising."""
    p: Projection[Any] = Projection("p", {"Deposited": lambda _e, _tx: None})
    runner = ProjectionRunner(es, poll_interval=0.05, lease_wait=0.05)
    sink = FailsOnceWhileTheTaskIsCancelled(f"sqlite:///{tmp_path}/read.db")
    runner.add(p, sink)
    await es.append_event(stream_id="acc-1", event_type="Other", data={})  # passed over: an idle checkpoint write
    run = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(asyncio.shield(run), 30)  # the projection's task ends, and with it run()
        assert not sink.armed
    finally:
        await runner.stop()
        await asyncio.wait_for(run, 30)
