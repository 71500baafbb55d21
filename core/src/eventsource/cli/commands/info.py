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
        info = await m.get_stream_info(session.args.stream)
        out.json(info)
        rows = [
            ("stream", info.stream_id),
            ("name", info.name or "-"),
            ("version", info.version),
            ("events", info.event_count),
            ("first version", info.first_version if info.first_version is not None else "-"),
            ("aggregate", f"{info.aggregate_type or '-'} / {info.aggregate_id or '-'}"),
            ("created", when(info.created_at)),
            ("updated", when(info.updated_at)),
            ("last event id", info.last_event_id or "-"),
            ("metadata", short(info.metadata) if info.metadata else "-"),
        ]
        for key, value in rows:
            out.line(f"{key + ':':<15}{value}")
        return EXIT_OK

    return session.with_manager(body)
