"""What ``copy``, ``export`` and ``import`` share: a store opened from a URL, the progress display, the summary.

On a terminal the progress line (events, events/s, ETA) is rewritten in place on stderr; piped or redirected,
a plain line goes to stderr every :data:`PLAIN_EVERY` seconds, so a log shows a long run moving. The summary
is human lines, or one JSON object with ``--json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsource.cli.arguments import given, positive
from eventsource.cli.errors import StoreContextError, UsageError
from eventsource.cli.session import _has_server, _unreachable, connect_hint
from eventsource.cli.storefile import SQLITE_PATHS, foreign_sqlite_file, missing_sqlite_file
from eventsource.errors import (
    ConfigurationError,
    ErrorType,
    EventSourceError,
    ProviderNotFoundError,
    StoreNotFoundError,
    ValidationError,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator

    from eventsource.cli.output import Output
    from eventsource.cli.session import Session
    from eventsource.provider import Provider
    from eventsource.transfer import TransferProgress, TransferResult

PLAIN_EVERY = 10.0
"""Seconds between two progress lines when stderr is not a terminal."""


def add_stream_option(parser: argparse.ArgumentParser) -> None:
    """``--stream PATTERN`` (repeatable) and ``--page-size``."""
    parser.add_argument(
        "--stream",
        metavar="PATTERN",
        action="append",
        dest="streams",
        type=given("a stream id pattern such as 'order-*'"),  # an unset "$PATTERN" matched nothing: exit 0
        help="only streams whose id matches this shell-style pattern (repeatable), e.g. 'order-*'",
    )
    parser.add_argument(
        "--page-size", type=positive, default=500, metavar="N", help="events per page read (default 500)"
    )


def add_write_options(parser: argparse.ArgumentParser) -> None:
    """``--map FILE`` (where the position map goes) and ``--window N`` (events gathered per write)."""
    from eventsource.transfer.run import WINDOW

    parser.add_argument(
        "--window",
        type=positive,
        default=WINDOW,
        metavar="N",
        help=f"events gathered before a write, stream by stream (default {WINDOW:,}; more: larger appends "
        "when many streams interleave, more memory)",
    )
    parser.add_argument(
        "--map",
        metavar="FILE",
        help="position map file (SQLite), source position -> target position "
        "(default: eventsource-map-<hash of the two URLs>.db in the current directory)",
    )


def map_path(given: str | None, source: str, target: str) -> str:
    """``given``, else a file named after the (source, target) pair, so two copies never share a map.

    The name is a hash of the two masked: a password never reaches it (the name is shown and listed). A map an
    earlier release named after the raw URLs is renamed to it, so the copy it belongs to carries on from it.
    """
    if given:
        return given
    from eventsource.config import mask_url

    path, earlier = _map_name(mask_url(source), mask_url(target)), _map_name(source, target)
    if earlier != path and _only(earlier, path):
        _move_map(earlier, path)
    return path


async def default_map(
    given: str | None, source: str, target: str, *, source_store: Provider | None, target_store: Provider
) -> str:
    """The map of a copy (``source_store`` ``None``: an import of the file ``source``): ``given``, else a default.

    The default is :func:`map_path` of the two, with a ``--config`` name replaced by the identity of the store it
    names (its masked URL and schema, stream or topic prefix): two config files naming two stores alike would
    otherwise share a map. A default map named after the name (as before) is taken over if it maps this target.
    """
    if given:
        return given
    named = map_path(None, source, target)  # (also renames a map named after the URLs with their password)
    path = map_path(None, _store_key(source, source_store), _store_key(target, target_store))
    if path != named and _only(named, path) and await _maps(named, target_store):
        _move_map(named, path)
    return path


def _only(named: str, path: str) -> bool:
    """Whether the map ``named`` exists and the map ``path`` does not."""
    return Path(named).is_file() and not Path(path).exists()


def _move_map(earlier: str, path: str) -> None:
    """Rename the map ``earlier`` (with its WAL files) to ``path``."""
    for suffix in ("-wal", "-shm", ""):  # the database last: a run stopped in between finds it still
        with contextlib.suppress(FileNotFoundError):
            Path(earlier + suffix).replace(path + suffix)


def _store_key(given: str, store: Provider | None) -> str:
    """What a default map is named after for one side: a URL as given, a ``--config`` name as the store it names."""
    return given if store is None or "://" in given else store.checkpoint_source


async def _maps(path: str, target: Provider) -> bool:
    """Whether the map ``path`` maps into ``target`` (its last entry is there): a map of another store is not."""
    from eventsource.transfer import PositionMap
    from eventsource.transfer.run import check_map

    try:
        positions = PositionMap(path)
    except ConfigurationError:
        return False
    try:
        await check_map(positions, target)
    except ConfigurationError:
        return False
    finally:
        positions.close()
    return True


def _map_name(source: str, target: str) -> str:
    digest = hashlib.sha256(f"{source}\n{target}".encode()).hexdigest()[:12]
    return f"eventsource-map-{digest}.db"


def resolve(session: Session, store: str) -> tuple[str, dict[str, Any]]:
    """URL and settings of ``store``: a URL, or the name of a provider in ``--config`` (which may carry settings)."""
    if "://" in store or not session.args.config:
        return store, {}
    from eventsource.config import ManagerConfig

    cfg = ManagerConfig.from_file(session.args.config)
    session.scrub.add_config(cfg)
    entry = cfg.providers.get(store)
    if entry is None:
        return store, {}  # not a name either: create_provider says it is not a URL
    return str(entry["url"]), dict(entry.get("settings", {}))


@contextlib.asynccontextmanager
async def opened(session: Session, store: str, *, source: bool = False) -> AsyncIterator[Provider]:
    """The connected provider of ``store`` (closed after); failures name the masked URL and say what to check.

    ``store`` is a URL, or the name of a provider in ``--config`` (to give a store its settings: a
    PostgreSQL schema, a NATS stream name...). A ``source`` is connected with ``create_store`` off and must
    exist: connecting would create an empty store where a path, schema or prefix was mistyped, and copy or
    export nothing from it.
    """
    url, settings = resolve(session, store)
    session.scrub.add_url(url)
    shown = session.shown(url)
    if source:
        _check_source_file(url, shown)
        settings = session.store_settings(url, settings, existing=True)
    try:
        provider = session.plugin_host().create_provider(url, **settings)
        session.scrub.add_shown(url, provider.display_url)
        await provider.connect()
    except (ProviderNotFoundError, ValidationError, ConfigurationError) as e:
        raise StoreContextError(f"store {shown}: {e}", e) from e
    except StoreNotFoundError as e:
        missing = "needs a migration" if e.details.get("outdated") else "does not exist"
        from eventsource.create_store import CREATE_STORE

        role = "source" if source else "target"
        # a target is connected with create_store off only when its URL or settings say so: say where to look
        why = f"{e.details.get('why') or e}" + ("" if source else f" ({CREATE_STORE} is off in its URL or settings)")
        msg = f"the {role} store {shown} {missing}: {why}; it is left as it is"
        raise UsageError(msg, field=role) from e
    except EventSourceError as e:
        if e.type not in (ErrorType.CONNECTION, ErrorType.TIMEOUT):
            raise
        hint = connect_hint(url, timed_out=e.type == ErrorType.TIMEOUT)
        msg = f"{_unreachable(shown, has_server=_has_server(url))}: {str(e).rstrip('.')}; {hint}"
        raise StoreContextError(msg, e) from e
    try:
        yield provider
    finally:
        await provider.close()


def _check_source_file(url: str, shown: str) -> None:
    """Refuse a ``sqlite://`` source that holds no store (other URLs are the provider's to judge).

    A missing file would be created, and another application's database given eventsource's tables, by the
    opening alone: the copy or export would then read an empty store from it and report success.
    """
    path = missing_sqlite_file(url)
    if path is not None:
        msg = f"the source store {shown} does not exist: no file {path!r} ({SQLITE_PATHS})"
        raise UsageError(msg, field="source")
    why = foreign_sqlite_file(url)
    if why is not None:
        msg = f"the source {shown} holds no eventsource store: {why}; it is left as it is"
        raise UsageError(msg, field="source")


def default_store(session: Session) -> str:
    """The store of ``--store``, ``$EVENTSOURCE_STORE`` or ``--config`` (its default provider), as elsewhere."""
    from eventsource.cli.config import load_config

    cfg = load_config(session.args)
    name = cfg.default_provider or next(iter(cfg.providers))
    if session.args.config and name in _file_providers(session.args.config):
        return name  # resolved with its settings by opened()
    return str(cfg.providers[name]["url"])


def _file_providers(path: str) -> dict[str, Any]:
    from eventsource.config import ManagerConfig

    return dict(ManagerConfig.from_file(path).providers)


class ProgressView:
    """The progress of a transfer on stderr (see the module docstring)."""

    def __init__(self, out: Output, what: str) -> None:
        self.out = out
        self.what = what
        self.interactive = out.interactive
        self.last = 0.0
        self.shown = False
        self.latest: TransferProgress | None = None

    def __call__(self, p: TransferProgress) -> None:
        """Show ``p`` if it is time to."""
        self.latest = p
        now = time.monotonic()
        every = 0.2 if self.interactive else PLAIN_EVERY
        if now - self.last < every:
            return
        self.last = now
        text = f"{self.what}: {_progress_text(p)}"
        if self.interactive:
            self.out.err.write(f"\r\x1b[K{text}")
            self.shown = True
        else:
            self.out.err.write(text + "\n")
        self.out.err.flush()

    def done(self) -> None:
        """Erase the progress line."""
        if self.shown:
            self.out.err.write("\r\x1b[K")
            self.out.err.flush()


def _progress_text(p: TransferProgress) -> str:
    """What the progress line says of ``p`` (after the command's name)."""
    if p.phase == "streams":
        return f"{p.streams:,} streams listed"
    if p.phase == "snapshots":
        of = f" of {p.stream_total:,}" if p.stream_total is not None else ""
        return f"{p.events:,} events; snapshots: {p.streams:,}{of} streams looked at"
    eta = f", ETA {_duration(p.eta)}" if p.eta is not None else ""
    total = f" of {p.total:,}" if p.total is not None else ""
    doing = "checking " if p.phase == "check" else ""  # an import reads a file through before it writes
    return f"{doing}{p.events:,}{total} events, {p.rate:,.0f} events/s{eta}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"  # noqa: PLR2004


def summary(out: Output, what: str, result: TransferResult, **extra: Any) -> None:
    """Print what the transfer did (one JSON object with ``--json``)."""
    data: dict[str, Any] = {
        "streams": result.streams,
        "events": result.events,
        "written": result.written,
        "skipped": result.skipped,
        "snapshots": result.snapshots,
        "seconds": round(result.seconds, 3),
        "events_per_second": round(result.rate, 1),
        "position_map": result.position_map,
        **extra,
    }
    out.json(data)
    out.line(
        f"{what}: {result.streams:,} streams, {result.events:,} events read, {result.written:,} written, "
        f"{result.skipped:,} already there, {result.snapshots:,} snapshots in {result.seconds:.1f}s "
        f"({result.rate:,.0f} events/s)"
    )
    if result.position_map:
        out.line(f"position map: {result.position_map}")
