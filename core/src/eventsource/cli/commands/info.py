"""``eventsource info STREAM``: one stream's version, event count and attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import short, when

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager


def register(commands: Commands) -> None:
    """Add the ``info`` command."""
    p = commands.add("info", "show one stream's version, counts and attributes", info)
    p.add_argument("stream", metavar="STREAM")


def info(session: Session) -> int:
    """Show the stream's info as a table (or one JSON object)."""
    out = session.out

    async def body(m: EventSourcingManager) -> int:
        s = await m.get_stream_info(session.args.stream)
        out.json(s)
        rows = [
            ("stream", s.stream_id),
            ("name", s.name or "-"),
            ("version", s.version),
            ("events", s.event_count),
            ("first version", s.first_version if s.first_version is not None else "-"),
            ("aggregate", f"{s.aggregate_type or '-'} / {s.aggregate_id or '-'}"),
            ("created", when(s.created_at)),
            ("updated", when(s.updated_at)),
            ("last event id", s.last_event_id or "-"),
            ("metadata", short(s.metadata) if s.metadata else "-"),
        ]
        for key, value in rows:
            out.line(f"{key + ':':<15}{value}")
        return EXIT_OK

    return session.with_manager(body, existing=True)
