"""``eventsource streams``: one page of streams with their versions, counts and names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.arguments import int_at_least, non_negative
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import when
from eventsource.model import MAX_PAGE_LIMIT

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager


def register(commands: Commands) -> None:
    """Add the ``streams`` command."""
    p = commands.add("streams", "list streams, a page at a time", streams)
    p.add_argument(
        "--limit",
        metavar="N",
        type=int_at_least(1, at_most=MAX_PAGE_LIMIT),
        default=50,
        help=f"the most streams to show, one page: 1 to {MAX_PAGE_LIMIT:,} (default: 50); the last line gives the "
        "--offset of the next page",
    )
    p.add_argument(
        "--offset", metavar="N", type=non_negative, default=0, help="streams to skip before the page (default: 0)"
    )


def streams(session: Session) -> int:
    """Show a page of streams as a table (or one JSON object), with the next page's ``--offset``."""
    a, out = session.args, session.out

    async def body(m: EventSourcingManager) -> int:
        page = await m.list_streams(limit=a.limit, offset=a.offset)
        out.json(page)
        if not page.streams:
            there = f"no streams at offset {a.offset} (there are {page.total_count})"
            out.line("no streams" if page.total_count == 0 else there)
            return EXIT_OK
        width = max(6, *(len(s.stream_id) for s in page.streams))
        out.line(f"{'STREAM':<{width}}  {'VERSION':>7}  {'EVENTS':>7}  {'UPDATED':<20}  NAME")
        for s in page.streams:
            out.line(
                f"{s.stream_id:<{width}}  {s.version:>7}  {s.event_count:>7}  {when(s.updated_at):<20}  {s.name or ''}"
            )
        shown = f"{a.offset + 1}-{a.offset + len(page.streams)} of {page.total_count}"
        more = f"; next page: --offset {a.offset + len(page.streams)}" if page.has_more else ""
        out.line(f"({shown} streams{more})")
        return EXIT_OK

    return session.with_manager(body, existing=True)
