"""``eventsource upcast-rewrite STREAM...`` rewrites streams' stored events to the newest schema version, in place.

The upcasting chains come from plugins (the ``eventsource_register_upcasters`` hook) and from
``--upcasters module:function`` (called with the manager's :class:`~eventsource.domain.Upcasters`, like the
hook). ``--dry-run`` reports what would change and writes nothing; a store that cannot rewrite refuses.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.cli.arguments import positive
from eventsource.cli.errors import UsageError
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.domain.rewrite import RewriteReport, rewrite_stream
from eventsource.errors import EventSourceError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager


def register(commands: Commands) -> None:
    """Add the ``upcast-rewrite`` command."""
    p = commands.add(
        "upcast-rewrite",
        "rewrite streams' stored events to the newest schema version of their types (offline, reported)",
        upcast_rewrite,
    )
    p.add_argument("streams", metavar="STREAM", nargs="+")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument(
        "--upcasters",
        metavar="MODULE:FUNCTION",
        action="append",
        default=[],
        help="call FUNCTION(registry) to register upcasters (repeatable; plugins' hooks always apply)",
    )
    p.add_argument("--batch-size", metavar="N", type=positive, default=500, help="events per atomic write")


def _registrars(specs: list[str]) -> list[Callable[..., Any]]:
    """The functions named by ``--upcasters``, imported before connecting.

    The working directory is searched first, as ``python -m`` does: a console script's own ``sys.path``
    starts at its ``bin`` directory, where nobody keeps their migrations.
    """
    cwd = str(Path.cwd())
    if specs and cwd not in sys.path:
        sys.path.insert(0, cwd)
    out = []
    for spec in specs:
        module, _, name = spec.partition(":")
        if not module or not name:
            msg = f"--upcasters takes MODULE:FUNCTION, got {spec!r}"
            raise UsageError(msg, field="--upcasters")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            msg = (
                f"--upcasters {spec!r}: {type(e).__name__}: {e} (MODULE is imported from the working directory "
                "or PYTHONPATH)"
            )
            raise UsageError(msg, field="--upcasters") from e
        if not callable(fn):
            msg = f"--upcasters {spec!r} is not a function"
            raise UsageError(msg, field="--upcasters")
        out.append(fn)
    return out


def _progress(out: Output, stream: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if out.interactive:
            out.err.write(f"\r\x1b[K{stream}: {done:,} of {total:,} events read...")
            out.err.flush()

    return show


def _say(out: Output, r: RewriteReport) -> None:
    verb = "would rewrite" if r.dry_run else "rewrote"
    out.line(
        f"{r.stream_id}: read {r.read}, {verb} {r.rewritten}, already current {r.current}"
        + (f", shredded (left as is) {r.shredded}" if r.shredded else "")
        + (f", changed meanwhile (left as is) {r.changed_meanwhile}" if r.changed_meanwhile else "")
    )
    for path, n in sorted(r.changes.items()):
        out.line(f"  {path}: {n}")


def _stopped(out: Output, stream: str, partial: dict[str, Any] | None) -> None:
    """Before the error itself: what a run that failed part-way had already stored, and what to do."""
    if partial is None or partial["dry_run"]:
        return
    if out.interactive:
        out.err.write("\r\x1b[K")
    out.err.write(
        f"{stream}: stopped part-way: rewrote {partial['rewritten']} of {partial['read']} events read (earlier "
        "batches are stored at the newest version, the rest is as it was); fix the cause and run it again: "
        "events already current are skipped\n"
    )
    out.err.flush()


def upcast_rewrite(session: Session) -> int:
    """Register the named upcasters, then rewrite each stream in turn, reporting each."""
    a, out = session.args, session.out
    registrars = _registrars(a.upcasters)

    async def body(m: EventSourcingManager) -> int:
        for fn in registrars:
            fn(m.event_classes.upcasters)
        chains = m.event_classes.upcasters.events
        if not chains.steps and not chains.renames:  # nothing could change: do not report a success
            msg = (
                "no upcasting step or rename is registered, so no event could change: pass --upcasters "
                "MODULE:FUNCTION, or install the plugin whose eventsource_register_upcasters hook registers them"
            )
            raise UsageError(msg, field="--upcasters")
        for stream in a.streams:
            try:
                report = await rewrite_stream(
                    m, stream, dry_run=a.dry_run, batch_size=a.batch_size, progress=_progress(out, stream)
                )
            except EventSourceError as e:
                _stopped(out, stream, e.details.get("rewrite_report"))
                raise
            finally:
                if out.interactive:
                    out.err.write("\r\x1b[K")
                    out.err.flush()
            out.json(report.as_dict())
            _say(out, report)
        return EXIT_OK

    return session.with_manager(body, existing=True)  # a missing SQLite file is a typo: never create it
