"""The commands, one module each, in the order ``eventsource --help`` lists them.

A command module has a ``register(commands)`` function that declares the command with
:meth:`~eventsource.cli.parser.Commands.add` (name, help, handler) and adds its arguments, and the handler,
a function of the :class:`~eventsource.cli.session.Session` that returns an exit code. To add a command, copy
a small one (``info``), rename it and list it in :data:`COMMANDS`.
"""

from __future__ import annotations

from eventsource.cli.commands import (
    append,
    copy,
    demo,
    export,
    follow,
    health,
    import_,
    info,
    projections,
    providers,
    read,
    retention,
    snapshot,
    stats,
    streams,
    upcast_rewrite,
)

COMMANDS = (
    *(demo, append, read, follow, streams, info, snapshot, stats, projections, health, providers),
    *(retention, upcast_rewrite, copy, export, import_),
)
