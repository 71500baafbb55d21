"""The ``eventsource`` command: try the library, inspect and edit a store from a shell.

The commands are ``demo``, ``append``, ``read``, ``follow``, ``streams``, ``info``, ``snapshot``, ``stats``,
``projections``, ``health``, ``providers``, ``retention``, ``upcast-rewrite``, ``copy``, ``export`` and ``import``.
The store is ``--store URL``, else ``$EVENTSOURCE_STORE``, else the providers of ``--config FILE`` (or of
``EVENTSOURCE_*`` variables), else the embedded SQLite file ``eventsource.db``; errors print one line on stderr
and exit with a code from :data:`EXIT_CODES`. Each command is one module of :mod:`eventsource.cli.commands`;
:mod:`.main` parses and dispatches, :mod:`.session` connects the store, and :mod:`.output`, :mod:`.progress`,
:mod:`.errors`, :mod:`.scrub`, :mod:`.config` and :mod:`.arguments` are the pieces they share.
"""

from __future__ import annotations

from eventsource.cli.config import STORE_ENV
from eventsource.cli.exitcodes import (
    EXIT_CODES,
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
)
from eventsource.cli.main import main
from eventsource.cli.parser import build_parser
from eventsource.cli.progress import PROGRESS_EVERY

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "PROGRESS_EVERY",
    "STORE_ENV",
    "build_parser",
    "main",
]
