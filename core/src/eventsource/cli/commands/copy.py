"""``eventsource copy --from URL --to URL``: every stream, event and snapshot, as stored, then optionally verified.

A re-run of the same copy writes only what the target lacks; ``--map`` names the position map file (source
position -> target position, for translating checkpoints). ``--verify`` compares every copied stream and
exits 4 on any difference, listing them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.arguments import store_or_provider
from eventsource.cli.errors import Interrupted, tell_with
from eventsource.cli.exitcodes import EXIT_CONFLICT, EXIT_OK
from eventsource.cli.transfer import (
    ProgressView,
    add_stream_option,
    add_write_options,
    default_map,
    opened,
    summary,
)
from eventsource.errors import ConfigurationError, EventSourceError

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session


def register(commands: Commands) -> None:
    """Add the ``copy`` command."""
    p = commands.add("copy", "copy every stream, event and snapshot from one store to another, as stored", copy)
    p.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        required=True,
        type=store_or_provider,
        help="the store to copy from (or a --config provider)",
    )
    p.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        required=True,
        type=store_or_provider,
        help="the store to copy into (or a --config provider)",
    )
    add_stream_option(p)
    add_write_options(p)
    p.add_argument("--verify", action="store_true", help="compare counts and digests of every stream afterwards")


def copy(session: Session) -> int:
    """Copy, then verify if asked; print the summary."""
    from eventsource.transfer import TransferProgress, copy_store, verify_stores

    args, out = session.args, session.out

    async def body() -> int:
        async with opened(session, args.source, source=True) as src, opened(session, args.target) as dst:
            view = ProgressView(out, "copy")
            mapfile = await default_map(args.map, args.source, args.target, source_store=src, target_store=dst)
            try:
                result = await copy_store(
                    src,
                    dst,
                    streams=args.streams,
                    position_map=mapfile,
                    progress=view,
                    page_size=args.page_size,
                    window=args.window,
                )
            except EventSourceError as e:
                view.done()
                if not isinstance(e, ConfigurationError):  # (refused before anything was written: nothing to say)
                    tell_with(e, _stopped(e), out)
                raise
            view.done()
            if not args.verify:
                summary(out, "copied", result)
                return EXIT_OK
            checking = ProgressView(out, "verify")
            try:
                report = await verify_stores(
                    src,
                    dst,
                    streams=args.streams,
                    page_size=args.page_size,
                    progress=lambda n, seconds: checking(TransferProgress(n, None, seconds)),
                )
            finally:
                checking.done()
            summary(
                out,
                "copied",
                result,
                verified=report.ok,
                differences=report.differences,
                target_only=report.target_only,
            )
            for line in report.differences:
                out.note(f"difference: {line}")
            if not report.ok:
                out.note(f"verify: {len(report.differences)} differences")
                return EXIT_CONFLICT
            out.line(f"verified: {report.streams:,} streams, {report.events:,} events match")
            return EXIT_OK

    try:
        return session.run(body())
    except KeyboardInterrupt:  # the CLI then exits 130
        raise Interrupted(_stopped(KeyboardInterrupt())) from None


def _stopped(e: BaseException) -> str:
    """Why a copy stopped part-way keeps what it wrote, and how to finish (not for a refusal before writing).

    A copy writes stream by stream and a re-run skips what the target holds: a conflict on one stream, a lost
    connection or a Ctrl-C leaves the streams written before it on the target, which the error alone did not say.
    """
    fix = "fix what the error names (or leave that stream out with --stream), "
    if isinstance(e, KeyboardInterrupt):
        fix = ""
    why = "by Ctrl-C" if isinstance(e, KeyboardInterrupt) else "by the error below"
    return (
        f"copy stopped {why}: what it wrote before stays on the target, and a re-run skips it; "
        f"{fix}then run the same copy again to finish"
    )
