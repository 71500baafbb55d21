"""The ``eventsource`` command: try the library, inspect and edit a store from a shell.

::

    eventsource demo                                   # the quick-start flow on ./eventsource.db
    eventsource append orders-1 OrderCreated '{"total": 9.5}' --expected-version no_stream
    eventsource read orders-1 --json                   # one JSON object per line
    eventsource --store postgresql://app@db/events streams

The store is ``--store URL``, else ``$EVENTSOURCE_STORE``, else the providers of ``--config FILE``
(or of ``EVENTSOURCE_*`` variables), else the embedded SQLite file ``eventsource.db`` in the working
directory. Errors print one line on stderr (``--verbose`` adds the traceback) and exit with a code a
script can test: see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import traceback
import uuid
from dataclasses import fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import urlsplit

from eventsource.errors import (
    ConcurrencyError,
    ConfigurationError,
    ErrorType,
    EventSourceError,
    PluginLoadError,
    ProviderNotFoundError,
    StreamExistsError,
    UnsupportedOperationError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Sequence

    from eventsource.config import ManagerConfig
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event
    from eventsource.plugins import PluginHost

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5
EXIT_UNSUPPORTED = 6
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "unexpected error (a store or plugin failure; run with -v for details)",
    EXIT_USAGE: "bad usage, input or configuration (also an unknown store URL scheme)",
    EXIT_NOT_FOUND: "the stream, event or snapshot does not exist",
    EXIT_CONFLICT: "conflict: wrong expected version, stream already exists, duplicate event id",
    EXIT_UNAVAILABLE: "the store cannot be reached, timed out, or is unhealthy",
    EXIT_UNSUPPORTED: "the store does not support this operation",
}

STORE_ENV = "EVENTSOURCE_STORE"
PROGRESS_EVERY = 1000
"""Events between two progress lines on a terminal."""
TOP_COUNTS = 8
"""Event types / streams shown in human-readable stats."""
SHOWN_INPUT = 40
"""Characters of bad input echoed in an error message."""
_KIB = 1024

_ERROR_EXIT = {
    ErrorType.VALIDATION: EXIT_USAGE,
    ErrorType.NOT_FOUND: EXIT_NOT_FOUND,
    ErrorType.CONFLICT: EXIT_CONFLICT,
    ErrorType.CONNECTION: EXIT_UNAVAILABLE,
    ErrorType.TIMEOUT: EXIT_UNAVAILABLE,
    ErrorType.UNSUPPORTED: EXIT_UNSUPPORTED,
    ErrorType.INTERNAL: EXIT_ERROR,
}

_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")

log = logging.getLogger("eventsource.cli")


# --------------------------------------------------------------------------- plumbing


class UsageError(ValidationError):
    """Bad command-line input found after argparse (invalid JSON, missing argument)."""


class StoreContextError(EventSourceError):
    """Wraps an error raised while connecting a store, adding the (masked) URL and a hint."""

    def __init__(self, message: str, cause: EventSourceError) -> None:
        super().__init__(message, **cause.details)
        self.type = cause.type
        self.code = cause.code
        self.cause = cause


class Output:
    """Where results go: human text or JSON on stdout; progress and notes on stderr."""

    def __init__(self, *, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr

    def line(self, text: str = "") -> None:
        """Print a line of human output (nothing in ``--json`` mode)."""
        if not self.as_json:
            print(text, file=self.out)

    def json(self, value: object) -> None:
        """Print ``value`` as one JSON line (only in ``--json`` mode)."""
        if self.as_json:
            print(dumps(value), file=self.out)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr), e.g. a count or a hint."""
        print(text, file=self.err)

    @property
    def interactive(self) -> bool:
        """Whether stderr is a terminal (progress lines are shown only there)."""
        isatty = getattr(self.err, "isatty", None)
        return bool(isatty and isatty())


class Progress:
    """A progress line on stderr, rewritten every ``every`` items, only when stderr is a terminal."""

    def __init__(self, out: Output, what: str, every: int = PROGRESS_EVERY) -> None:
        self.out = out
        self.what = what
        self.every = every
        self.count = 0
        self.shown = False

    def step(self) -> None:
        """Count one item; refresh the line every ``every`` items."""
        self.count += 1
        if self.count % self.every == 0 and self.out.interactive:
            self.out.err.write(f"\r{self.what}: {self.count:,} events...")
            self.out.err.flush()
            self.shown = True

    def done(self) -> None:
        """Erase the progress line."""
        if self.shown:
            self.out.err.write("\r\x1b[K")
            self.out.err.flush()


def plain(value: Any) -> Any:
    """``value`` as JSON-able data: dataclasses become dicts, datetimes ISO strings, sets sorted lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    return value


def dumps(value: object, *, indent: int | None = None) -> str:
    """Compact (or indented) JSON of :func:`plain` data, Unicode kept readable."""
    sep = (",", ": ") if indent else (",", ":")
    return json.dumps(plain(value), ensure_ascii=False, indent=indent, separators=sep, default=str)


def short(value: object) -> str:
    """Compact one-line JSON for human output."""
    return json.dumps(plain(value), ensure_ascii=False, separators=(", ", ": "), default=str)


def when(ts: datetime | None) -> str:
    """A timestamp for people: UTC, seconds precision."""
    if ts is None:
        return "-"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def size_text(n: int | None) -> str:
    """``12.3 KiB``-style size."""
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < _KIB:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= _KIB
    return f"{size:.1f} GiB"


def mask(url: str) -> str:
    """``url`` with its password hidden."""
    from eventsource.config import mask_url

    return mask_url(url)


class Scrubber:
    """Removes every configured secret (URL passwords, encryption keys) from text shown to people."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add_config(self, cfg: ManagerConfig) -> None:
        """Remember the passwords and keys of ``cfg``."""
        for entry in cfg.providers.values():
            self.add_url(entry.get("url", ""))
        self.secrets.update(v for v in cfg.encryption_keys.values() if v)

    def add_url(self, url: str) -> None:
        """Remember the password of ``url``."""
        with contextlib.suppress(ValueError):
            password = urlsplit(url).password
            if password:
                self.secrets.add(password)

    def __call__(self, text: str) -> str:
        """``text`` with URL passwords and every remembered secret replaced by ``***``."""
        text = _URL_PASSWORD.sub(r"\1***@", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


# --------------------------------------------------------------------------- argument parsing


def _expected_version(text: str) -> int:
    from eventsource.model import ExpectedVersion

    key = text.strip().lower().replace("-", "_")
    names = {
        "any": ExpectedVersion.ANY,
        "no_stream": ExpectedVersion.NO_STREAM,
        "stream_exists": ExpectedVersion.STREAM_EXISTS,
    }
    if key in names:
        return names[key]
    try:
        value = int(key)
    except ValueError:
        msg = f"expected a version number >= 0, 'any', 'no_stream' or 'stream_exists', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 0:
        msg = f"a version number must be >= 0, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"expected a whole number, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < minimum:
            msg = f"must be >= {minimum}, got {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


_positive = _int_at_least(1)
_non_negative = _int_at_least(0)


def _duration(text: str) -> float:
    from eventsource.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options accepted before and after the command (``eventsource --json read x`` = ``read x --json``)."""

    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global options")
    g.add_argument(
        "--store",
        metavar="URL",
        default=d(None),
        help=f"store URL, e.g. sqlite:///events.db, memory://, postgresql://user@host/db "
        f"(default: ${STORE_ENV}, else the providers of --config, else sqlite:///eventsource.db)",
    )
    g.add_argument("--config", metavar="FILE", default=d(None), help="ManagerConfig as a .json or .toml file")
    g.add_argument(
        "--timeout", metavar="DURATION", type=_duration, default=d(None), help="per-operation timeout, e.g. 5s"
    )
    g.add_argument("--json", action="store_true", default=d(value=False), help="machine-readable JSON output")
    g.add_argument(
        "-v", "--verbose", action="count", default=d(0), help="log retries and show tracebacks (-vv: debug logs)"
    )


class _Parser(argparse.ArgumentParser):
    """argparse with a hint after the one-line error."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n(run '{self.prog} --help' for help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (exposed for documentation and tests)."""
    epilog = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
    parser = _Parser(
        prog="eventsource",
        description="Append, read, snapshot and inspect event streams on any eventsource store.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    cmd("demo", "run the quick-start flow (create a stream, append, read, snapshot, stats) and show each step")

    p = cmd("append", "append one event to a stream (created on first append)")
    p.add_argument("stream", metavar="STREAM")
    p.add_argument("event_type", metavar="TYPE")
    p.add_argument(
        "data", metavar="DATA-JSON", nargs="?", default="{}", help="event data as JSON ('-' reads stdin; default {})"
    )
    p.add_argument("--metadata", metavar="JSON", help="event metadata as a JSON object")
    p.add_argument(
        "--expected-version",
        metavar="N|any|no_stream|stream_exists",
        type=_expected_version,
        default=None,
        help="refuse the append unless the stream is at this version (default: any)",
    )
    p.add_argument("--event-id", metavar="ID", help="client event id; re-sending it is an idempotent no-op")
    for name in ("correlation-id", "causation-id", "user-id", "tenant-id", "aggregate-id", "aggregate-type"):
        p.add_argument(f"--{name}", metavar=name.split("-")[-1].upper() if name != "aggregate-type" else "TYPE")

    p = cmd("read", "print a stream's events, one per line (streamed, any length)")
    p.add_argument("stream", metavar="STREAM")
    p.add_argument(
        "--from-version",
        metavar="N",
        type=_positive,
        default=None,
        help="first version (with --backwards: the highest)",
    )
    p.add_argument("--limit", metavar="N", type=_positive, default=None, help="stop after N events")
    p.add_argument("--backwards", action="store_true", help="newest first")

    p = cmd("streams", "list streams, a page at a time")
    p.add_argument("--limit", metavar="N", type=_positive, default=50)
    p.add_argument("--offset", metavar="N", type=_non_negative, default=0)

    p = cmd("info", "show one stream's version, counts and attributes")
    p.add_argument("stream", metavar="STREAM")

    p = cmd("snapshot", "store a snapshot of a stream's state, or show the latest with --get")
    p.add_argument("stream", metavar="STREAM")
    p.add_argument(
        "data", metavar="DATA-JSON", nargs="?", default=None, help="snapshot state as JSON ('-' reads stdin)"
    )
    p.add_argument(
        "--version",
        metavar="N",
        type=_positive,
        default=None,
        help="version the state is at (default: the stream's version); with --get: latest at or below N",
    )
    p.add_argument("--metadata", metavar="JSON", help="snapshot metadata as a JSON object")
    p.add_argument("--get", action="store_true", help="show the latest snapshot instead of storing one")

    cmd("stats", "show store statistics")
    cmd("health", "check that the store answers (exit 5 if not)")
    cmd("providers", "list installed provider, codec, retention and lease plugins with their distributions")
    return parser


# --------------------------------------------------------------------------- configuration


def load_config(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] | None = None) -> ManagerConfig:
    """The manager configuration for this run.

    Fields come from ``--config FILE`` (else from ``EVENTSOURCE_*`` variables). The store is
    ``--store``, else ``$EVENTSOURCE_STORE``, else the configured providers, else
    ``sqlite:///eventsource.db``; a single store is named ``default``.
    """
    from eventsource.config import DEFAULT_SQLITE_URL, ManagerConfig

    env = os.environ if environ is None else environ
    cfg = ManagerConfig.from_file(args.config) if args.config else ManagerConfig.from_env(env)
    data: dict[str, Any] = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    url = args.store or env.get(STORE_ENV) or None
    if url is None and cfg.providers == ManagerConfig().providers:
        url = DEFAULT_SQLITE_URL
    if url is not None:
        data["providers"] = {"default": {"url": url, "settings": {}}}
        data["default_provider"] = "default"
    if args.timeout is not None:
        data["timeout"] = args.timeout
    return ManagerConfig.from_dict(data)


def parse_json(text: str, what: str, *, stdin: TextIO | None = None, want_object: bool = False) -> Any:
    """Parse a JSON argument (``-`` reads stdin); :class:`UsageError` names the argument."""
    if text == "-":
        text = (stdin or sys.stdin).read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        shown = text if len(text) <= SHOWN_INPUT else text[: SHOWN_INPUT - 3] + "..."
        msg = f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}): {shown!r}"
        raise UsageError(msg, field=what) from None
    except RecursionError:
        msg = f"{what} nests too deeply to be read as JSON"
        raise UsageError(msg, field=what) from None
    if want_object and not isinstance(value, dict):
        msg = f'{what} must be a JSON object like \'{{"key": "value"}}\', got {type(value).__name__}'
        raise UsageError(msg, field=what)
    return value


# --------------------------------------------------------------------------- the runner


class Runner:
    """Runs one command against a connected manager."""

    def __init__(self, args: argparse.Namespace, out: Output, host: PluginHost | None, scrub: Scrubber) -> None:
        self.args = args
        self.out = out
        self.host = host
        self.scrub = scrub
        self.cfg: ManagerConfig | None = None

    def plugin_host(self) -> PluginHost:
        """The plugin host (built on first use: it loads every installed plugin)."""
        if self.host is None:
            from eventsource.plugins import PluginHost

            self.host = PluginHost()
        return self.host

    async def connect(self) -> EventSourcingManager:
        """A manager connected to every configured store; failures name the masked URL."""
        from eventsource.manager import EventSourcingManager

        cfg = self.cfg = load_config(self.args)
        self.scrub.add_config(cfg)
        manager = EventSourcingManager(cfg, host=self.plugin_host())
        try:
            for name, entry in cfg.providers.items():
                url = entry["url"]
                try:
                    await manager.register_provider(
                        url, name=name, default=name == cfg.default_provider, **entry.get("settings", {})
                    )
                except ProviderNotFoundError as e:
                    raise StoreContextError(f"store {mask(url)}: {e}", e) from e
                except (ValidationError, ConfigurationError) as e:
                    raise StoreContextError(f"store {mask(url)}: {e}", e) from e
                except EventSourceError as e:
                    if e.type in (ErrorType.CONNECTION, ErrorType.TIMEOUT):
                        msg = (
                            f"cannot reach the store at {mask(url)}: {str(e).rstrip('.')}; check that the server "
                            f"is running and the URL is right (--store or ${STORE_ENV})"
                        )
                        raise StoreContextError(msg, e) from e
                    raise
        except BaseException:
            with contextlib.suppress(Exception):
                await manager.close()
            raise
        return manager

    async def run(self) -> int:
        """Dispatch to the ``cmd_<command>`` method."""
        handler: Callable[[], Coroutine[Any, Any, int]] = getattr(self, f"cmd_{self.args.command}")
        return await handler()

    async def with_manager(self, body: Callable[[EventSourcingManager], Coroutine[Any, Any, int]]) -> int:
        """Connect, run ``body``, close."""
        manager = await self.connect()
        try:
            return await body(manager)
        finally:
            await manager.close()

    def store_label(self, manager: EventSourcingManager) -> str:
        """``sqlite:///eventsource.db`` (the default store's masked URL)."""
        p = manager.get_default_provider()
        return p.display_url or p.kind

    # ---------------------------------------------------------------- commands

    async def cmd_demo(self) -> int:
        """``demo``: the quick-start flow, step by step."""
        return await self.with_manager(self._demo)

    async def _demo(self, m: EventSourcingManager) -> int:
        from eventsource.model import EventData

        out = self.out
        provider = m.get_default_provider()
        url = self.store_label(m)
        out.line(f"eventsource demo on {url} ({provider.kind} provider)")
        out.json({"step": "store", "url": url, "kind": provider.kind})
        step = 0

        def heading(text: str) -> None:
            nonlocal step
            step += 1
            out.line()
            out.line(f"{step}. {text}")

        # 1. the stream
        stream_id = "user-events"
        heading(f"create stream {stream_id!r}: name, aggregate User/user-123, metadata")
        try:
            info = await self._demo_create(m, stream_id)
        except StreamExistsError:
            taken = stream_id
            stream_id = f"user-events-{uuid.uuid4().hex[:8]}"
            out.line(f"   {taken!r} exists from an earlier run; using {stream_id!r} instead")
            info = await self._demo_create(m, stream_id)
        out.line(f"   -> created at version {info.version}, metadata {short(info.metadata)}")
        out.json({"step": "create_stream", "stream": info})

        # 2. one event with every envelope field
        heading("append UserCreated (expected version 0) with metadata, correlation, causation, user and tenant ids")
        created = await m.append_event(
            stream_id=stream_id,
            event_type="UserCreated",
            data={
                "user_id": "user-123",
                "email": "user@example.com",
                "name": "John Doe",
                "created_at": datetime.now(UTC),
            },
            metadata={"source": "user-service", "version": "1.0", "correlation_id": "req-456"},
            expected_version=0,
            correlation_id="req-456",
            causation_id="cmd-789",
            user_id="admin",
            tenant_id="tenant-1",
            aggregate_id="user-123",
            aggregate_type="User",
        )
        out.line(f"   -> version {created.version}, global position {created.position}, event id {created.event_id}")
        out.json({"step": "append_event", "result": created})

        # 3. a batch, all or nothing
        batch = [
            EventData(
                "UserEmailChanged",
                {"email": "john.doe@example.com"},
                correlation_id="req-457",
                aggregate_id="user-123",
                aggregate_type="User",
            ),
            EventData(
                "UserProfileUpdated",
                {"name": "John A. Doe", "locale": "en-GB"},
                correlation_id="req-458",
                aggregate_id="user-123",
                aggregate_type="User",
            ),
            EventData(
                "UserLoggedIn",
                {"ip": "203.0.113.7"},
                correlation_id="req-459",
                aggregate_id="user-123",
                aggregate_type="User",
            ),
        ]
        heading(
            f"append a batch of {len(batch)} events atomically (expected version {created.version}): "
            + ", ".join(e.event_type for e in batch)
        )
        res = await m.append_events_batch(stream_id=stream_id, events=batch, expected_version=created.version)
        out.line(
            f"   -> versions {res.first_version}-{res.last_version}, positions {res.positions[0]}-{res.positions[-1]}"
        )
        out.json({"step": "append_events_batch", "result": res})

        # 4. optimistic concurrency
        heading(f"a stale writer appends expecting version {created.version}")
        try:
            await m.append_event(
                stream_id=stream_id, event_type="UserDeleted", data={}, expected_version=created.version
            )
        except ConcurrencyError as e:
            out.line(
                f"   -> refused with ConcurrencyError (expected {e.expected}, actual {e.actual}); nothing was written"
            )
            out.json({"step": "conflict", "error": e.to_dict()})
        else:  # pragma: no cover - would be a store bug
            msg = "the store accepted an append with a stale expected version"
            raise EventSourceError(msg)

        # 5. read back
        heading("read the stream back")
        state: dict[str, Any] = {}
        count = 0
        async for ev in m.read_stream(stream_id):
            count += 1
            state.update({k: v for k, v in ev.data.items() if k not in ("ip", "created_at")})
            out.line(f"   v{ev.version}  {ev.event_type:<20} {short(ev.data)}")
            out.json({"step": "read", "event": ev})
        first = await m.get_event_by_id(created.event_id, stream_id=stream_id)
        out.line(
            f"   {count} events; event {first.version} has metadata {short(first.metadata)}, correlation "
            f"{first.correlation_id}, causation {first.causation_id}, user {first.user_id}, tenant {first.tenant_id}"
        )

        # 6. snapshots (a store may declare that it cannot keep them)
        heading(f"snapshot the folded user state at version {res.last_version}")
        try:
            snap = await m.create_snapshot(
                stream_id=stream_id,
                data=state,
                metadata={"description": "user state", "version": "1.0"},
                aggregate_id="user-123",
            )
        except UnsupportedOperationError as e:
            snapshots = False
            out.line(f"   -> skipped: {e} (declared in its capabilities)")
            out.json({"step": "create_snapshot", "unsupported": e.to_dict()})
        else:
            snapshots = True
            out.line(f"   -> snapshot {snap.snapshot_id} at version {snap.version}")
            out.json({"step": "create_snapshot", "result": snap})
            heading("read the latest snapshot back")
            got = await m.get_snapshot(stream_id)
            out.line(f"   -> version {got.version}, created {when(got.created_at)}: {short(got.data)}")
            out.json({"step": "get_snapshot", "snapshot": got})

        # 8. stats
        heading("store statistics")
        try:
            stats = await m.get_stats()
        except UnsupportedOperationError as e:
            out.line(f"   -> skipped: {e} (declared in its capabilities)")
            out.json({"step": "stats", "unsupported": e.to_dict()})
        else:
            for name, st in stats.items():
                self._print_stats(name, m.get_provider(name).kind, st, indent="   ")
            out.json({"step": "stats", "stats": stats})

        out.line()
        holds = f"{count} events and a snapshot" if snapshots else f"{count} events"
        out.line(f"done. Stream {stream_id!r} now holds {holds}.")
        if provider.kind != "memory":
            again = "".join(
                f" {flag} {value}"
                for flag, value in (
                    ("--store", self.args.store and mask(self.args.store)),
                    ("--config", self.args.config),
                )
                if value
            )
            out.line(f"Read it again with:  eventsource{again} read {stream_id}")
        return EXIT_OK

    @staticmethod
    async def _demo_create(m: EventSourcingManager, stream_id: str) -> Any:
        return await m.create_stream(
            stream_id=stream_id,
            name="User Events Stream",
            aggregate_id="user-123",
            aggregate_type="User",
            metadata={"description": "Stream for user-related events", "version": "1.0"},
        )

    async def cmd_append(self) -> int:
        """``append STREAM TYPE [DATA-JSON]``: one event."""
        a = self.args
        from eventsource.model import ANY

        data = parse_json(a.data, "DATA-JSON")
        metadata = parse_json(a.metadata, "--metadata", want_object=True) if a.metadata is not None else None

        async def body(m: EventSourcingManager) -> int:
            r = await m.append_event(
                stream_id=a.stream,
                event_type=a.event_type,
                data=data,
                metadata=metadata,
                expected_version=ANY if a.expected_version is None else a.expected_version,
                event_id=a.event_id,
                correlation_id=a.correlation_id,
                causation_id=a.causation_id,
                user_id=a.user_id,
                tenant_id=a.tenant_id,
                aggregate_id=a.aggregate_id,
                aggregate_type=a.aggregate_type,
            )
            self.out.json(r)
            if r.duplicate:
                self.out.line(
                    f"event {r.event_id} is already stored in {r.stream_id!r} at version {r.version}; nothing written (idempotent retry)"
                )
            else:
                self.out.line(
                    f"appended {a.event_type} to {r.stream_id!r}: version {r.version}, position {r.position}, event id {r.event_id}"
                )
            return EXIT_OK

        return await self.with_manager(body)

    async def cmd_read(self) -> int:
        """``read STREAM``: stream the events, one per line, with progress on a terminal."""
        a = self.args

        async def body(m: EventSourcingManager) -> int:
            if a.backwards:
                kwargs: dict[str, Any] = {"from_version": 1, "to_version": a.from_version, "backwards": True}
            else:
                kwargs = {"from_version": a.from_version or 1}
            progress = Progress(self.out, f"reading {a.stream!r}")
            seen: list[int] = []  # lowest and highest version read
            try:
                async with contextlib.aclosing(m.read_stream(a.stream, **kwargs)) as events:  # type: ignore[type-var]
                    async for ev in events:
                        self._print_event(ev)
                        progress.step()
                        seen[:] = [min(seen[0], ev.version), max(seen[1], ev.version)] if seen else [ev.version] * 2
                        if a.limit is not None and progress.count >= a.limit:
                            break
            finally:
                progress.done()
            if progress.count == 0:
                info = await m.get_stream_info(a.stream)  # raises StreamNotFoundError
                if not self.out.as_json or self.out.interactive:
                    where = f" from version {a.from_version}" if a.from_version else ""
                    self.out.note(f"no events{where} in {a.stream!r} (stream is at version {info.version})")
            elif not self.out.as_json or self.out.interactive:
                noun = "event" if progress.count == 1 else "events"
                order = ", newest first" if a.backwards else ""
                self.out.note(f"{progress.count:,} {noun} from {a.stream!r} (versions {seen[0]}-{seen[1]}{order})")
            return EXIT_OK

        return await self.with_manager(body)

    def _print_event(self, ev: Event) -> None:
        if self.out.as_json:
            self.out.json(ev)
            return
        extras = []
        if ev.metadata:
            extras.append(f"metadata={short(ev.metadata)}")
        for name in ("correlation_id", "causation_id", "user_id", "tenant_id"):
            value = getattr(ev, name)
            if value:
                extras.append(f"{name.removesuffix('_id')}={value}")
        tail = ("  " + " ".join(extras)) if extras else ""
        self.out.line(f"{ev.version:>5}  {when(ev.timestamp)}  {ev.event_type:<20} {short(ev.data)}{tail}")

    async def cmd_streams(self) -> int:
        """``streams``: a page of streams."""
        a = self.args

        async def body(m: EventSourcingManager) -> int:
            page = await m.list_streams(limit=a.limit, offset=a.offset)
            self.out.json(page)
            if not page.streams:
                self.out.line(
                    "no streams"
                    if page.total_count == 0
                    else f"no streams at offset {a.offset} (there are {page.total_count})"
                )
                return EXIT_OK
            width = max(6, *(len(s.stream_id) for s in page.streams))
            self.out.line(f"{'STREAM':<{width}}  {'VERSION':>7}  {'EVENTS':>7}  {'UPDATED':<20}  NAME")
            for s in page.streams:
                self.out.line(
                    f"{s.stream_id:<{width}}  {s.version:>7}  {s.event_count:>7}  {when(s.updated_at):<20}  {s.name or ''}"
                )
            shown = f"{a.offset + 1}-{a.offset + len(page.streams)} of {page.total_count}"
            more = f"; next page: --offset {a.offset + len(page.streams)}" if page.has_more else ""
            self.out.line(f"({shown} streams{more})")
            return EXIT_OK

        return await self.with_manager(body)

    async def cmd_info(self) -> int:
        """``info STREAM``: one stream's info."""

        async def body(m: EventSourcingManager) -> int:
            info = await m.get_stream_info(self.args.stream)
            self.out.json(info)
            rows = [
                ("stream", info.stream_id),
                ("name", info.name or "-"),
                ("version", info.version),
                ("events", info.event_count),
                ("first version", info.first_version if info.first_version is not None else "-"),
                ("aggregate", f"{info.aggregate_type or '-'} / {info.aggregate_id or '-'}"),
                ("created", when(info.created_at)),
                ("updated", when(info.updated_at)),
                ("last event id", info.last_event_id or "-"),
                ("metadata", short(info.metadata) if info.metadata else "-"),
            ]
            for key, value in rows:
                self.out.line(f"{key + ':':<15}{value}")
            return EXIT_OK

        return await self.with_manager(body)

    async def cmd_snapshot(self) -> int:
        """``snapshot STREAM DATA-JSON`` stores a snapshot; ``--get`` shows the latest."""
        a = self.args
        if a.get:
            if a.data is not None or a.metadata is not None:
                msg = "snapshot --get takes no DATA-JSON or --metadata"
                raise UsageError(msg)
        elif a.data is None:
            msg = "snapshot needs DATA-JSON (the state to store), or --get to show the latest snapshot"
            raise UsageError(msg, field="DATA-JSON")
        data = parse_json(a.data, "DATA-JSON") if a.data is not None else None
        metadata = parse_json(a.metadata, "--metadata", want_object=True) if a.metadata is not None else None

        async def body(m: EventSourcingManager) -> int:
            if a.get:
                snap = await m.get_snapshot(a.stream, max_version=a.version)
                self.out.json(snap)
                self.out.line(
                    f"snapshot {snap.snapshot_id} of {snap.stream_id!r} at version {snap.version}, created {when(snap.created_at)}"
                )
                if snap.metadata:
                    self.out.line(f"metadata: {short(snap.metadata)}")
                self.out.line(dumps(snap.data, indent=2))
                return EXIT_OK
            res = await m.create_snapshot(stream_id=a.stream, data=data, metadata=metadata, version=a.version)
            self.out.json(res)
            self.out.line(f"stored snapshot {res.snapshot_id} of {res.stream_id!r} at version {res.version}")
            return EXIT_OK

        return await self.with_manager(body)

    async def cmd_stats(self) -> int:
        """``stats``: statistics of every configured store."""

        async def body(m: EventSourcingManager) -> int:
            stats = await m.get_stats()
            self.out.json(stats)
            for name, st in stats.items():
                self._print_stats(name, m.get_provider(name).kind, st)
            return EXIT_OK

        return await self.with_manager(body)

    def _print_stats(self, name: str, kind: str, st: Any, indent: str = "") -> None:
        out = self.out
        out.line(f"{indent}provider {name!r} ({kind})")
        out.line(f"{indent}  events:     {st.total_events:,}")
        out.line(f"{indent}  streams:    {st.total_streams:,}")
        out.line(f"{indent}  snapshots:  {st.total_snapshots:,}")
        out.line(f"{indent}  storage:    {size_text(st.storage_size)}")
        out.line(f"{indent}  last event: {when(st.last_event_at)}")
        for label, counts in (("by type", st.events_by_type), ("by stream", st.events_by_stream)):
            if counts:
                top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                shown = ", ".join(f"{k} {v:,}" for k, v in top[:TOP_COUNTS])
                rest = f", and {len(top) - TOP_COUNTS} more" if len(top) > TOP_COUNTS else ""
                out.line(f"{indent}  {label + ':':<11} {shown}{rest}")

    async def cmd_health(self) -> int:
        """``health``: exit 0 when every store answers, 5 otherwise (an unreachable store is reported, not raised)."""
        from eventsource.model import HealthStatus

        try:
            manager = await self.connect()
        except StoreContextError as e:
            if e.type not in (ErrorType.CONNECTION, ErrorType.TIMEOUT) or self.cfg is None:
                raise
            name = self.cfg.default_provider or "default"
            url = self.cfg.providers.get(name, {}).get("url", "")
            status = {name: HealthStatus(healthy=False, provider=name, message=self.scrub(str(e.cause)))}
            return self._print_health(status, {name: mask(url)})
        try:
            urls = {name: manager.get_provider(name).display_url or "" for name in manager.list_providers()}
            return self._print_health(await manager.health_check(), urls)
        finally:
            await manager.close()

    def _print_health(self, statuses: dict[str, Any], urls: dict[str, str]) -> int:
        statuses = {name: dataclasses.replace(s, message=self.scrub(s.message)) for name, s in statuses.items()}
        self.out.json(statuses)
        healthy = all(s.healthy for s in statuses.values())
        for name, s in statuses.items():
            where = f" ({urls[name]})" if urls.get(name) else ""
            if s.healthy:
                latency = f", answered in {s.latency_ms:.1f} ms" if s.latency_ms is not None else ""
                self.out.line(f"{name}{where}: healthy{latency}")
            else:
                self.out.line(f"{name}{where}: UNHEALTHY: {s.message}")
        if not healthy:
            self.out.note("error: the store is not healthy; check that the server is running and the URL is right")
        return EXIT_OK if healthy else EXIT_UNAVAILABLE

    async def cmd_providers(self) -> int:
        """``providers``: installed plugins and what each registered."""
        host = self.plugin_host()
        rows = host.describe()
        self.out.json(
            {
                "plugins": rows,
                "entry_points": {k: {"distribution": d, "version": v} for k, (d, v) in host.distributions.items()},
            }
        )
        titles = {
            "provider": "providers (select with --store SCHEME://...)",
            "serializer": "serializers",
            "compressor": "compressors",
            "cipher": "ciphers",
            "retention": "retention policies",
            "lease": "leases",
        }
        for kind, title in titles.items():
            group = [r for r in rows if r["type"] == kind]
            if not group:
                continue
            self.out.line(title)
            name_width = max(len(r["name"]) for r in rows)
            scheme_width = max(len(", ".join(f"{s}://" for s in r["schemes"])) for r in rows)
            for r in group:
                origin = f"{r['distribution'] or 'unknown distribution'} {r['version'] or ''}".rstrip()
                schemes = ", ".join(f"{s}://" for s in r["schemes"])
                if kind == "provider":
                    self.out.line(f"  {r['name']:<{name_width}}  {schemes:<{scheme_width}}  {origin}")
                else:
                    self.out.line(f"  {r['name']:<{name_width}}  {origin}")
        return EXIT_OK


# --------------------------------------------------------------------------- errors and entry point


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for ``exc``."""
    if isinstance(exc, PluginLoadError):
        plugin = exc.details.get("plugin")
        hint = f"; reinstall or uninstall it, or set EVENTSOURCE_DISABLED_PLUGINS={plugin}" if plugin else ""
        return EXIT_ERROR, f"{exc}{hint}"
    if isinstance(exc, ProviderNotFoundError) or (
        isinstance(exc, StoreContextError) and isinstance(exc.cause, ProviderNotFoundError)
    ):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, EventSourceError):
        return _ERROR_EXIT.get(exc.type, EXIT_ERROR), str(exc)
    if isinstance(exc, OSError):
        return EXIT_ERROR, f"{type(exc).__name__}: {exc}"
    return EXIT_ERROR, f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"


def _report(exc: BaseException, out: Output, scrub: Scrubber, verbose: int) -> int:
    code, message = describe_error(exc)
    message = scrub(" ".join(message.split()))
    if verbose:
        out.err.write(scrub("".join(traceback.format_exception(exc))))
    if out.as_json:
        body: dict[str, Any] = {"message": message, "exit_code": code}
        if isinstance(exc, EventSourceError):
            d = exc.to_dict()
            body.update(
                type=d["type"], code=d["code"], details=json.loads(scrub(json.dumps(d["details"], default=str)))
            )
        else:
            body.update(type="internal", code=500, details={})
        print(dumps({"error": body}), file=out.err)
    else:
        print(f"error: {message}", file=out.err)
    return code


class _ScrubbingFormatter(logging.Formatter):
    """Formats log records (tracebacks included) with every known secret removed."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, scrubbed."""
        return self.scrub(super().format(record))


@contextlib.contextmanager
def _logging(verbose: int, err: TextIO, scrub: Scrubber) -> Iterator[None]:
    """Route log records for this run.

    Without ``-v`` nothing is logged: drivers (psycopg's pool, nats-py) log every failed connection
    attempt, with tracebacks, and the one-line error says what matters. With ``-v`` the library's logs
    (retries, plugin traces) and every other logger's warnings go to stderr, scrubbed of secrets;
    ``-vv`` adds the library's debug logs.
    """
    root = logging.getLogger()
    ours = logging.getLogger("eventsource")
    handler: logging.Handler
    if verbose:
        handler = logging.StreamHandler(err)
        handler.setFormatter(_ScrubbingFormatter(scrub))
    else:
        handler = logging.NullHandler()  # keeps logging's last-resort handler from printing warnings
    level = ours.level
    root.addHandler(handler)
    if verbose:
        ours.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        ours.setLevel(level)


def main(argv: Sequence[str] | None = None, *, host: PluginHost | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to ``sys.exit``).

    :param argv: arguments without the program name (default: ``sys.argv[1:]``).
    :param host: a plugin host to use instead of discovering installed plugins (tests, embedding).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    out = Output(as_json=args.json)
    scrub = Scrubber()
    if args.store:
        scrub.add_url(args.store)
    if os.environ.get(STORE_ENV):
        scrub.add_url(os.environ[STORE_ENV])
    try:
        with _logging(args.verbose, out.err, scrub):
            return asyncio.run(Runner(args, out, host, scrub).run())
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `eventsource read x | head`: the reader left; that is fine
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - the one place that turns any failure into one line + exit code
        return _report(e, out, scrub, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
