"""``eventsource read STREAM``: print a stream's events one per line, streamed page by page at any length.

A terminal sees a progress line while the events scroll and a closing count on stderr; ``--json`` into a
pipe gets nothing but one JSON object per event.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from eventsource.cli.arguments import positive
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import short, when
from eventsource.cli.progress import Progress

if TYPE_CHECKING:
    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event


def register(commands: Commands) -> None:
    """Add the ``read`` command."""
    p = commands.add("read", "print a stream's events, one per line (streamed, any length)", read)
    p.add_argument("stream", metavar="STREAM")
    p.add_argument(
        "--from-version",
        metavar="N",
        type=positive,
        default=None,
        help="first version (with --backwards: the highest)",
    )
    p.add_argument("--limit", metavar="N", type=positive, default=None, help="stop after N events")
    p.add_argument("--backwards", action="store_true", help="newest first")


def read(session: Session) -> int:
    """Stream the events, one per line, with progress on a terminal."""
    a, out = session.args, session.out

    async def body(m: EventSourcingManager) -> int:
        if a.backwards:
            kwargs: dict[str, Any] = {"from_version": 1, "to_version": a.from_version, "backwards": True}
        else:
            kwargs = {"from_version": a.from_version or 1}
        progress = Progress(out, f"reading {a.stream!r}")
        seen: list[int] = []  # lowest and highest version read
        try:
            async with contextlib.aclosing(m.read_stream(a.stream, **kwargs)) as events:  # type: ignore[type-var]
                async for ev in events:
                    print_event(out, ev)
                    progress.step()
                    seen[:] = [min(seen[0], ev.version), max(seen[1], ev.version)] if seen else [ev.version] * 2
                    if a.limit is not None and progress.count >= a.limit:
                        break
        finally:
            progress.done()
        if progress.count == 0:
            info = await m.get_stream_info(a.stream)  # raises StreamNotFoundError
            if not out.as_json or out.interactive:
                where = f" from version {a.from_version}" if a.from_version else ""
                out.note(f"no events{where} in {a.stream!r} (stream is at version {info.version})")
        elif not out.as_json or out.interactive:
            noun = "event" if progress.count == 1 else "events"
            order = ", newest first" if a.backwards else ""
            out.note(f"{progress.count:,} {noun} from {a.stream!r} (versions {seen[0]}-{seen[1]}{order})")
        return EXIT_OK

    return session.with_manager(body, existing=True)


def print_event(out: Output, ev: Event) -> None:
    """One event: a JSON line, or version, time, type, data and the envelope fields that are set."""
    if out.as_json:
        out.json(ev)
        return
    extras = []
    if ev.metadata:
        extras.append(f"metadata={short(ev.metadata)}")
    for name in ("correlation_id", "causation_id", "user_id", "tenant_id"):
        value = getattr(ev, name)
        if value:
            extras.append(f"{name.removesuffix('_id')}={value}")
    tail = ("  " + " ".join(extras)) if extras else ""
    out.line(f"{ev.version:>5}  {when(ev.timestamp)}  {ev.event_type:<20} {short(ev.data)}{tail}")
