"""``eventsource append STREAM TYPE [DATA-JSON]``: append one event, with any envelope field, to a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.arguments import expected_version, parse_json
from eventsource.cli.exitcodes import EXIT_OK

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager

_ENVELOPE = ("correlation-id", "causation-id", "user-id", "tenant-id", "aggregate-id", "aggregate-type")


def register(commands: Commands) -> None:
    """Add the ``append`` command."""
    p = commands.add("append", "append one event to a stream (created on first append)", append)
    p.add_argument("stream", metavar="STREAM")
    p.add_argument("event_type", metavar="TYPE")
    p.add_argument(
        "data", metavar="DATA-JSON", nargs="?", default="{}", help="event data as JSON ('-' reads stdin; default {})"
    )
    p.add_argument("--metadata", metavar="JSON", help="event metadata as a JSON object")
    p.add_argument(
        "--expected-version",
        metavar="N|any|no_stream|stream_exists",
        type=expected_version,
        default=None,
        help="refuse the append unless the stream is at this version (default: any)",
    )
    p.add_argument("--event-id", metavar="ID", help="client event id; re-sending it is an idempotent no-op")
    for name in _ENVELOPE:
        p.add_argument(f"--{name}", metavar=name.split("-")[-1].upper() if name != "aggregate-type" else "TYPE")


def append(session: Session) -> int:
    """Parse the JSON arguments (before connecting), append, and say where the event went."""
    from eventsource.model import ANY

    a, out = session.args, session.out
    data = parse_json(a.data, "DATA-JSON", out=out)
    metadata = parse_json(a.metadata, "--metadata", out=out, want_object=True) if a.metadata is not None else None

    async def body(m: EventSourcingManager) -> int:
        r = await m.append_event(
            stream_id=a.stream,
            event_type=a.event_type,
            data=data,
            metadata=metadata,
            expected_version=ANY if a.expected_version is None else a.expected_version,
            event_id=a.event_id,
            correlation_id=a.correlation_id,
            causation_id=a.causation_id,
            user_id=a.user_id,
            tenant_id=a.tenant_id,
            aggregate_id=a.aggregate_id,
            aggregate_type=a.aggregate_type,
        )
        out.json(r)
        if r.duplicate:
            out.line(
                f"event {r.event_id} is already stored in {r.stream_id!r} at version {r.version}; "
                "nothing written (idempotent retry)"
            )
        else:
            out.line(
                f"appended {a.event_type} to {r.stream_id!r}: version {r.version}, position {r.position}, "
                f"event id {r.event_id}"
            )
        return EXIT_OK

    return session.with_manager(body)
