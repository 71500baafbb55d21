"""``eventsource export``: every stream, event and snapshot of a store as JSON Lines (gzip with ``--gzip``).

The store is ``--from URL`` (default: the store of ``--store`` / ``$EVENTSOURCE_STORE``); the output goes to
``-o FILE`` or stdout. Payloads are written as stored (base64), so ``eventsource import`` restores them byte
for byte.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from eventsource.cli.arguments import store_or_provider
from eventsource.cli.errors import Interrupted, UsageError
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
    view = ProgressView(out, "export")
    aside: list[bool] = []  # once the output is open: whether it is written aside (FILE.partial), FILE kept whole

    async def body() -> int:
        async with opened(session, url, source=True) as src:
            # a file is written aside and put in place once complete: a failed run leaves an earlier export whole
            try:
                gzipped = args.gzip or args.output.endswith(".gz")
                stream = open_output(args.output, gzipped=gzipped, partial=to_file, note=out.note)
            except BrokenPipeError:  # `export --gzip | true`, unbuffered: the header met a reader that left
                raise  # (the CLI ends quietly, as for a plain export)
            except OSError as e:
                msg = f"cannot write the export {args.output!r}: {e.strerror or e}"
                raise UsageError(msg, field="output") from e
            aside.append(to_file and _written_aside(args.output))
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

    try:
        return session.run(body())
    except KeyboardInterrupt:  # say what it left and how to get a whole export; the CLI then exits 130
        raise Interrupted(_stopped(args.output, view, aside)) from None


def _written_aside(output: str) -> bool:
    """Whether the export to the file ``output`` goes to ``output.partial`` (else it is written in place)."""
    from eventsource.transfer.output import PARTIAL

    # os.path.isfile: False on any OSError (Path.is_file raised ENAMETOOLONG on a name at the length limit,
    # whose export is written in place for that reason, before Python 3.13)
    return os.path.isfile(f"{os.path.realpath(output)}{PARTIAL}")  # noqa: PTH113 - see above


def _stopped(output: str, view: ProgressView, aside: list[bool]) -> str:
    """What an export stopped by Ctrl-C left behind, and how to get a whole one (an export does not resume)."""
    if not aside:
        return "export stopped by Ctrl-C before writing anything; run it again"
    p = view.latest
    after = f" after {p.events:,} events" if p is not None and p.events else ""
    again = "run the export again for a whole one (an export starts over; it does not resume)"
    if aside[0]:
        left = f"{output} was not replaced (an earlier export there stays whole), its unfinished .partial removed"
    else:
        where = "stdout" if output == "-" else output
        left = f"what went to {where} is cut short: it has no end line, so eventsource import refuses it"
    return f"export stopped by Ctrl-C{after}: {left}; {again}"
