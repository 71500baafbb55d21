"""``eventsource import``: write an export (a file, or stdin; gzip recognised) into a store, byte for byte.

The store is ``--to URL`` (default: the store of ``--store``). A regular file is checked whole before anything
is written, so a corrupted one leaves the store unchanged; stdin or a pipe is checked as it is read (re-run the
import once the input is fixed: what the store holds already is skipped).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from eventsource.cli.arguments import store_or_provider
from eventsource.cli.errors import Interrupted, UsageError
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.storefile import missing_sqlite_file
from eventsource.cli.transfer import (
    ProgressView,
    add_stream_option,
    add_write_options,
    default_map,
    default_store,
    opened,
    summary,
)

if TYPE_CHECKING:
    import argparse

    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session


def register(commands: Commands) -> None:
    """Add the ``import`` command."""
    p = commands.add("import", "write an export (JSON Lines, gzip or not) into a store", import_)
    p.add_argument("input", metavar="FILE", nargs="?", default="-", help="the export to read (default: stdin)")
    p.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        type=store_or_provider,
        help="the store, or a --config provider (default: --store)",
    )
    add_write_options(p)
    add_stream_option(p)


def import_(session: Session) -> int:
    """Import and print the summary."""
    from eventsource.transfer import import_store, open_input

    args, out = session.args, session.out
    if args.input == "-" and sys.stdin is None:  # `<&-`
        msg = "no export FILE given, and stdin is closed: name the file (eventsource import backup.jsonl.gz)"
        raise UsageError(msg, field="input")
    if args.input == "-" and sys.stdin.isatty():
        msg = (
            "no export FILE given, and stdin is a terminal: name the file (eventsource import backup.jsonl.gz) "
            "or pipe one in (zcat backup.jsonl.gz | eventsource import)"
        )
        raise UsageError(msg, field="input")
    url = args.target or default_store(session)
    # a regular file is checked whole first; stdin, a pipe or a FIFO (<(zcat x.gz)) cannot be read twice
    whole = args.input != "-" and Path(args.input).is_file()

    view = ProgressView(out, "import")

    async def body() -> int:
        with open_input(args.input) as stream:
            if whole and missing_sqlite_file(url) is not None:
                _check_before_creating(stream, args, view)
            async with opened(session, url) as dst:
                mapfile = await default_map(args.map, args.input, url, source_store=None, target_store=dst)
                try:
                    result = await import_store(
                        stream,
                        dst,
                        name=args.input,
                        streams=args.streams,
                        position_map=mapfile,
                        progress=view,
                        check_first=whole,
                        page_size=args.page_size,
                        window=args.window,
                    )
                finally:
                    view.done()
        summary(out, "imported", result)
        return EXIT_OK

    try:
        return session.run(body())
    except KeyboardInterrupt:  # say what stays and how to finish; the CLI then exits 130
        p = view.latest
        read = f" after reading {p.events:,} events" if p is not None and p.phase == "write" else ""
        msg = (
            f"import stopped{read}: what it wrote stays. Run the same import again to finish "
            "(events the store holds already are skipped)"
        )
        raise Interrupted(msg) from None


def _check_before_creating(stream: IO[bytes], args: argparse.Namespace, view: ProgressView) -> None:
    """Check the whole file before the target is opened, when opening it would create it (a new SQLite file).

    The import checks a file before writing anything, but after opening the target, and opening a ``sqlite://``
    URL creates the database and its tables: a refused file left an empty store where there was none. SQLite
    has no event size limit, so this pass is the whole check; the import then reads the file through again.
    """
    from eventsource.transfer import TransferProgress
    from eventsource.transfer.jsonl import JsonlSource

    source = JsonlSource(stream, name=args.input, streams=args.streams, page_size=args.page_size)
    source.check(lambda n, t: view(TransferProgress(n, None, t, phase="check")))
    stream.seek(0)
