"""Parking: a projection's event its handler kept failing on, appended to a dead-letter stream.

The parked event's id derives from (projection, source, event id): parking one event twice (a crash between
parking and the checkpoint, two runners overlapping without a lease) appends it once on a store that
deduplicates event ids on append; the second append is an identical retry.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from eventsource.errors import ValidationError

if TYPE_CHECKING:
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event
    from eventsource.projections.projection import Projection

log = logging.getLogger("eventsource.projections")

PARKED_TYPE = "ProjectionEventParked"
"""The event type of a parked event in a dead-letter stream."""
PARK_NAMESPACE = uuid.UUID("6f1c8f43-5d0e-4a57-9a43-7d0c4e1c2b9a")
"""Parked events get ids derived from (projection, source, event id): parking one twice appends it once."""
ERROR_KEPT = 2000
"""Characters of a handler's error a parked event keeps."""
BRIEF = 200
"""Characters of the error (and of why its data was left out) in an event parked without its data."""


def dead_letter_stream(projection: Projection[Any]) -> str:
    """Where ``projection`` parks events."""
    return projection.errors.dead_letter_stream or f"dead-letter-{projection.name}"


def parked_id(projection: Projection[Any], source: str, event: Event) -> str:
    """The id of ``event`` parked by ``projection`` reading ``source``: the same whoever parks it, however often."""
    return str(uuid.uuid5(PARK_NAMESPACE, f"{projection.name}\x00{source}\x00{event.event_id}"))


async def park(
    manager: EventSourcingManager, proj: Projection[Any], source: str, event: Event, error: BaseException | None
) -> None:
    """Append ``event`` to the dead-letter stream; refused (over ``max_event_size``): without its data."""
    stream = dead_letter_stream(proj)
    data: dict[str, Any] = {
        "projection": proj.name,
        "source": source,
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": event.version,
        "position": event.position,
        "event_type": event.event_type,
        "data": event.data,
        "error": f"{type(error).__name__}: {error}"[:ERROR_KEPT],
    }

    async def append(data: dict[str, Any]) -> None:
        await manager.append_event(
            stream_id=stream,
            event_type=PARKED_TYPE,
            data=data,
            event_id=parked_id(proj, source, event),
            causation_id=event.event_id,
            provider=proj.errors.dead_letter_provider or proj.provider,
        )

    try:
        await append(data)
    except ValidationError as e:  # the wrapped event is over max_event_size: its id and position still find it
        log.warning("projection %s: parking event %s without its data: %s", proj.name, event.event_id, e)
        short = {"error": data["error"][:BRIEF], "data": None, "data_omitted": str(e)[:BRIEF]}
        await append({**data, **short})
    log.error("projection %s: parked event %s in %r", proj.name, event.event_id, stream)
