"""``eventsource stats``: event, stream and snapshot counts, size and busiest types and streams of each store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import size_text, when

if TYPE_CHECKING:
    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager

TOP_COUNTS = 8
"""Event types / streams shown in human-readable stats."""


def register(commands: Commands) -> None:
    """Add the ``stats`` command."""
    commands.add("stats", "show store statistics", stats)


def stats(session: Session) -> int:
    """Statistics of every configured store."""
    out = session.out

    async def body(m: EventSourcingManager) -> int:
        all_stats = await m.get_stats()
        out.json(all_stats)
        for name, st in all_stats.items():
            print_stats(out, name, m.get_provider(name).kind, st)
        return EXIT_OK

    return session.with_manager(body, existing=True)


def print_stats(out: Output, name: str, kind: str, st: Any, indent: str = "") -> None:
    """One store's statistics for people (the demo shows them too)."""
    out.line(f"{indent}provider {name!r} ({kind})")
    out.line(f"{indent}  events:     {st.total_events:,}")
    out.line(f"{indent}  streams:    {st.total_streams:,}")
    out.line(f"{indent}  snapshots:  {st.total_snapshots:,}")
    out.line(f"{indent}  storage:    {size_text(st.storage_size)}")
    out.line(f"{indent}  last event: {when(st.last_event_at)}")
    for label, counts in (("by type", st.events_by_type), ("by stream", st.events_by_stream)):
        if counts:
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{k} {v:,}" for k, v in top[:TOP_COUNTS])
            rest = f", and {len(top) - TOP_COUNTS} more" if len(top) > TOP_COUNTS else ""
            out.line(f"{indent}  {label + ':':<11} {shown}{rest}")
