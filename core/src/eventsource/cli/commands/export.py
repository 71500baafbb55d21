"""``eventsource export``: every stream, event and snapshot of a store as JSON Lines (gzip with ``--gzip``).

The store is ``--from URL`` (default: the store of ``--store`` / ``$EVENTSOURCE_STORE``); the output goes to
``-o FILE`` or stdout. Payloads are written as stored (base64), so ``eventsource import`` restores them byte
for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsource.cli.arguments import store_or_provider
from eventsource.cli.errors import UsageError
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.transfer import ProgressView, add_stream_option, default_store, opened, summary

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session


def register(commands: Commands) -> None:
    """Add the ``export`` command."""
    p = commands.add("export", "write every stream, event and snapshot of a store as JSON Lines", export)
    p.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        type=store_or_provider,
        help="the store, or a --config provider (default: --store)",
    )
    p.add_argument("-o", "--output", metavar="FILE", default="-", help="the file to write (default: stdout)")
    p.add_argument("--gzip", action="store_true", help="gzip the output (also when FILE ends in .gz)")
    add_stream_option(p)


def export(session: Session) -> int:
    """Export; the summary goes to stderr when the export itself goes to stdout."""
    from eventsource.transfer import export_store
    from eventsource.transfer.output import finish_output, open_output

    args, out = session.args, session.out
    url = args.source or default_store(session)
    to_file = args.output != "-"

    async def body() -> int:
        async with opened(session, url, source=True) as src:
            view = ProgressView(out, "export")
            # a file is written aside and put in place once complete: a failed run leaves an earlier export whole
            try:
                gzipped = args.gzip or args.output.endswith(".gz")
                stream = open_output(args.output, gzipped=gzipped, partial=to_file, note=out.note)
            except BrokenPipeError:  # `export --gzip | true`, unbuffered: the header met a reader that left
                raise  # (the CLI ends quietly, as for a plain export)
            except OSError as e:
                msg = f"cannot write the export {args.output!r}: {e.strerror or e}"
                raise UsageError(msg, field="output") from e
            done = False
            try:
                result = await export_store(src, stream, streams=args.streams, progress=view, page_size=args.page_size)
                done = True
            finally:
                view.done()
                if not to_file:
                    stream.flush()
                    if args.gzip:
                        stream.close()  # writes the gzip trailer; stdout itself stays open
                else:
                    stream.close()
                    finish_output(args.output, complete=done)
            if not to_file:
                out.out = out.err  # the data owns stdout
            summary(out, "exported", result)
            return EXIT_OK

    return session.run(body())
