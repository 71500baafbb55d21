"""``eventsource snapshot STREAM DATA-JSON`` stores a snapshot of a stream's state; ``--get`` shows the latest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.arguments import parse_json, positive
from eventsource.cli.errors import UsageError
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import dumps, short, when

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager


def register(commands: Commands) -> None:
    """Add the ``snapshot`` command."""
    p = commands.add("snapshot", "store a snapshot of a stream's state, or show the latest with --get", snapshot)
    p.add_argument("stream", metavar="STREAM")
    p.add_argument(
        "data", metavar="DATA-JSON", nargs="?", default=None, help="snapshot state as JSON ('-' reads stdin)"
    )
    p.add_argument(
        "--version",
        metavar="N",
        type=positive,
        default=None,
        help="version the state is at (default: the stream's version); with --get: latest at or below N",
    )
    p.add_argument("--metadata", metavar="JSON", help="snapshot metadata as a JSON object")
    p.add_argument("--get", action="store_true", help="show the latest snapshot instead of storing one")


def snapshot(session: Session) -> int:
    """Check the arguments and parse the JSON (before connecting), then store or show a snapshot."""
    a, out = session.args, session.out
    if a.get:
        if a.data is not None or a.metadata is not None:
            msg = "snapshot --get takes no DATA-JSON or --metadata"
            raise UsageError(msg)
    elif a.data is None:
        msg = "snapshot needs DATA-JSON (the state to store), or --get to show the latest snapshot"
        raise UsageError(msg, field="DATA-JSON")
    data = parse_json(a.data, "DATA-JSON", out=out) if a.data is not None else None
    metadata = parse_json(a.metadata, "--metadata", out=out, want_object=True) if a.metadata is not None else None

    async def body(m: EventSourcingManager) -> int:
        if a.get:
            snap = await m.get_snapshot(a.stream, max_version=a.version)
            out.json(snap)
            out.line(
                f"snapshot {snap.snapshot_id} of {snap.stream_id!r} at version {snap.version}, "
                f"created {when(snap.created_at)}"
            )
            if snap.metadata:
                out.line(f"metadata: {short(snap.metadata)}")
            out.line(dumps(snap.data, indent=2))
            return EXIT_OK
        res = await m.create_snapshot(stream_id=a.stream, data=data, metadata=metadata, version=a.version)
        out.json(res)
        out.line(f"stored snapshot {res.snapshot_id} of {res.stream_id!r} at version {res.version}")
        return EXIT_OK

    return session.with_manager(body, existing=True)
