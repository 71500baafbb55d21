"""``eventsource upcast-rewrite STREAM...`` rewrites streams' stored events to the newest schema version, in place.

The upcasting chains come from plugins (the ``eventsource_register_upcasters`` hook) and from
``--upcasters module:function`` (called with the manager's :class:`~eventsource.domain.Upcasters`, like the
hook). ``--dry-run`` reports what would change and writes nothing; a store that cannot rewrite refuses.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.cli.arguments import positive
from eventsource.cli.errors import Interrupted, UsageError, tell_with
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.domain.rewrite import RewriteReport, rewrite_stream
from eventsource.errors import EventSourceError

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsource.cli.output import Output
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager

NAMED = 5
"""Streams a note names before it says how many more were not started."""


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


def _registrars(specs: list[str]) -> list[tuple[str, Callable[..., Any]]]:
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
        except Exception as e:  # the module may fail any way on import (SyntaxError, its own code)
            msg = (
                f"--upcasters {spec!r}: {type(e).__name__}: {e} (MODULE is imported from the working directory "
                "or PYTHONPATH)"
            )
            raise UsageError(msg, field="--upcasters") from e
        if not callable(fn):
            msg = f"--upcasters {spec!r} is not a function"
            raise UsageError(msg, field="--upcasters")
        out.append((spec, fn))
    return out


class _Progress:
    """The progress line of one stream (on a terminal), and how far the run got (for an interrupted run's note)."""

    def __init__(self, out: Output, stream: str) -> None:
        self.out, self.stream, self.read, self.total = out, stream, 0, 0

    def __call__(self, done: int, total: int) -> None:
        self.read, self.total = done, total
        if self.out.interactive:
            self.out.err.write(f"\r\x1b[K{self.stream}: {done:,} of {total:,} events read...")
            self.out.err.flush()


def _say(out: Output, r: RewriteReport) -> None:
    verb = "would rewrite" if r.dry_run else "rewrote"
    out.line(
        f"{r.stream_id}: read {r.read}, {verb} {r.rewritten}, already current {r.current}"
        + (f", shredded (left as is) {r.shredded}" if r.shredded else "")
        + (f", changed meanwhile (left as is) {r.changed_meanwhile}" if r.changed_meanwhile else "")
    )
    for path, n in sorted(r.changes.items()):
        out.line(f"  {path}: {n}")


def _stopped(stream: str, partial: dict[str, Any] | None, rest: list[str]) -> str:
    """What a run that failed part-way had already stored, and what to do (said before or with the error)."""
    said = []
    if partial is not None and not partial["dry_run"]:
        said.append(
            f"{stream}: stopped part-way: rewrote {partial['rewritten']} of {partial['read']} events read (earlier "
            "batches are stored at the newest version, the rest is as it was); fix the cause and run it again: "
            "events already current are skipped"
        )
    return "; ".join([*said, *_not_started(rest)])


def _interrupted(progress: _Progress, rest: list[str], *, dry_run: bool) -> str:
    """Ctrl-C during a stream: what stays (each batch is one atomic write) and that running it again finishes."""
    said = []
    if not dry_run:
        read = f" after {progress.read:,} of {progress.total:,} events read" if progress.read else ""
        said.append(
            f"{progress.stream}: interrupted part-way{read}: each event is either as it was or at the newest "
            "version (the batches written stay, the batch under way may have been stored too); run it again "
            "to finish: events already current are skipped"
        )
    return "; ".join([*said, *_not_started(rest)])


def _not_started(rest: list[str]) -> list[str]:
    if not rest:
        return []
    more = len(rest) - NAMED
    return ["not started: " + ", ".join(rest[:NAMED]) + (f" and {more} more" if more > 0 else "")]


def upcast_rewrite(session: Session) -> int:
    """Register the named upcasters, then rewrite each stream in turn, reporting each."""
    a, out = session.args, session.out
    registrars = _registrars(a.upcasters)

    async def body(m: EventSourcingManager) -> int:
        for spec, fn in registrars:
            try:
                fn(m.event_classes.upcasters)
            except Exception as e:  # the caller's code: name it, or "boom" comes from nowhere
                msg = f"--upcasters {spec!r} failed: {type(e).__name__}: {e}; nothing was rewritten"
                raise UsageError(msg, field="--upcasters") from e
        chains = m.event_classes.upcasters.events
        if not chains.steps and not chains.renames:  # nothing could change: do not report a success
            msg = (
                "no upcasting step or rename is registered, so no event could change: pass --upcasters "
                "MODULE:FUNCTION, or install the plugin whose eventsource_register_upcasters hook registers them"
            )
            raise UsageError(msg, field="--upcasters")
        for i, stream in enumerate(a.streams):
            progress, rest = _Progress(out, stream), a.streams[i + 1 :]
            try:
                report = await rewrite_stream(m, stream, dry_run=a.dry_run, batch_size=a.batch_size, progress=progress)
            except EventSourceError as e:
                _clear(out)
                tell_with(e, _stopped(stream, e.details.get("rewrite_report"), rest), out)
                raise
            except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: the CLI then says "interrupted", exit 130
                _clear(out)
                stopped.append(_interrupted(progress, rest, dry_run=a.dry_run))
                raise
            finally:
                _clear(out)
            out.json(report.as_dict())
            _say(out, report)
        return EXIT_OK

    stopped: list[str] = []  # what a Ctrl-C left, said with the CLI's "interrupted"
    try:
        return session.with_manager(body, existing=True)
    except KeyboardInterrupt:
        if stopped and stopped[0]:
            raise Interrupted(stopped[0]) from None
        raise


def _clear(out: Output) -> None:
    """Clear the progress line (on a terminal)."""
    if out.interactive:
        out.err.write("\r\x1b[K")
        out.err.flush()  # a missing SQLite file is a typo: never create it
