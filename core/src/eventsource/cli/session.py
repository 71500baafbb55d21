"""One run of the command: its arguments, output and secrets, and the store connection a command asks for.

A command handler gets a :class:`Session`. :meth:`Session.with_manager` connects a manager to every
configured store, runs the command's coroutine on it and closes it again, all on one event loop that a
Ctrl-C cancels cleanly; connection failures name the store's masked URL and say what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from eventsource.cli.config import STORE_ENV, load_config
from eventsource.cli.errors import StoreContextError
from eventsource.cli.output import mask
from eventsource.errors import (
    ConfigurationError,
    ErrorType,
    EventSourceError,
    NotFoundError,
    ProviderNotFoundError,
    StoreNotFoundError,
    ValidationError,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Coroutine

    from eventsource.cli.output import Output
    from eventsource.cli.scrub import Scrubber
    from eventsource.config import ManagerConfig
    from eventsource.manager import EventSourcingManager
    from eventsource.plugins import PluginHost


class Session:
    """What a command handler works with: ``args``, ``out``, ``scrub``, the plugin host and the store."""

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

    def run(self, coro: Coroutine[Any, Any, int]) -> int:
        """Run ``coro`` on a fresh event loop (a Ctrl-C cancels it, then raises ``KeyboardInterrupt``)."""
        return asyncio.run(coro)

    def with_manager(
        self, body: Callable[[EventSourcingManager], Coroutine[Any, Any, int]], *, existing: bool = False
    ) -> int:
        """Connect, run ``body`` on the connected manager, close; returns ``body``'s exit code.

        ``existing``: a command that only reads (``read``, ``stats``...) connects every store with ``create_store``
        off: a store that is not there (a mistyped schema, prefix, stream name or path) or needs a migration is
        refused (exit 3) and left as it was, where connecting would create an empty store in place of a mistyped
        one, or change a file that holds another application's database.
        """

        async def connected() -> int:
            manager = await self.connect(existing=existing)
            try:
                return await body(manager)
            finally:
                await manager.close()

        return self.run(connected())

    async def connect(
        self, *, unreachable: dict[str, StoreContextError] | None = None, existing: bool = False
    ) -> EventSourcingManager:
        """A manager connected to every configured store; failures name the masked URL.

        :param unreachable: when given, a store that cannot be connected (connection error or timeout) is
            recorded here under its name and left out, instead of failing the whole run (``health``).
        :param existing: connect with ``create_store`` off, refusing a store that is not there or needs a migration
            (see :meth:`with_manager`); with ``unreachable``, record it there instead.
        """
        from eventsource.manager import EventSourcingManager

        cfg = self.cfg = load_config(self.args)
        self.scrub.add_config(cfg)
        absent = self._absent(cfg) if existing else {}
        if absent and unreachable is None:
            raise next(iter(absent.values()))
        manager = EventSourcingManager(cfg, host=self.plugin_host())
        try:
            for name, entry in cfg.providers.items():
                if name in absent and unreachable is not None:  # health: one unhealthy row, nothing created
                    unreachable[name] = StoreContextError(str(absent[name]), absent[name])
                    continue
                await self._register(manager, cfg, name, entry, unreachable, existing=existing)
        except BaseException:
            with contextlib.suppress(Exception):
                await manager.close()
            raise
        return manager

    async def _register(
        self,
        manager: EventSourcingManager,
        cfg: ManagerConfig,
        name: str,
        entry: dict[str, Any],
        unreachable: dict[str, StoreContextError] | None,
        *,
        existing: bool = False,
    ) -> None:
        """Build and connect the store ``name``; see :meth:`connect` for ``unreachable`` and ``existing``."""
        url = entry["url"]
        try:
            # built here rather than by register_provider, so that what the store masks in its URL
            # (a NATS token) is a known secret before anything can print it
            settings = self.store_settings(url, entry.get("settings", {}), existing=existing)
            provider = self.plugin_host().create_provider(url, **settings)
            self.scrub.add_shown(url, provider.display_url)
            await manager.register_provider(provider, name=name, default=name == cfg.default_provider)
        except ProviderNotFoundError as e:
            raise StoreContextError(f"store {self.shown(url)}: {e}", e) from e
        except (ValidationError, ConfigurationError) as e:
            raise StoreContextError(f"store {self.shown(url)}: {e}", e) from e
        except StoreNotFoundError as e:
            said = StoreNotFoundError(self.no_store(url, e), **e.details)  # (health shows the cause: this)
            if unreachable is None:
                raise StoreContextError(said.message, said) from e
            unreachable[name] = StoreContextError(said.message, said)  # health: one unhealthy row, nothing created
        except EventSourceError as e:
            if e.type not in (ErrorType.CONNECTION, ErrorType.TIMEOUT):
                raise
            reason = str(e).rstrip(".")
            if cfg.retry_attempts > 1:  # the manager retried the connect: say so, the wait was that long
                reason += f" (tried {cfg.retry_attempts} times, retry_attempts)"
            where = _unreachable(self.shown(url), has_server=_has_server(url))
            hint = connect_hint(url, timed_out=e.type == ErrorType.TIMEOUT)
            msg = f"{where}: {reason}; {hint} (--store or ${STORE_ENV})"
            if unreachable is None:
                raise StoreContextError(msg, e) from e
            unreachable[name] = StoreContextError(msg, e)

    def _absent(self, cfg: ManagerConfig) -> dict[str, NotFoundError]:
        """The configured ``sqlite://`` stores that hold no store: no file, or a file without eventsource's tables."""
        from eventsource.cli.storefile import SQLITE_PATHS, foreign_sqlite_file, missing_sqlite_file

        absent: dict[str, NotFoundError] = {}
        for name, entry in cfg.providers.items():
            url = str(entry["url"])
            path = missing_sqlite_file(url)
            if path is not None:
                msg = f"no store at {self.shown(url)}: no file {path!r} ({SQLITE_PATHS}; append or demo creates one)"
                absent[name] = NotFoundError(msg)
                continue
            why = foreign_sqlite_file(url)
            if why is not None:
                msg = f"no eventsource store at {self.shown(url)}: {why}; a command that only reads leaves it as it is"
                absent[name] = NotFoundError(msg)
        return absent

    def store_settings(self, url: str, settings: dict[str, Any], *, existing: bool) -> dict[str, Any]:
        """``settings``, with ``create_store`` off when the command only reads (``existing``).

        A store whose provider has no such setting (a third-party plugin that predates it) is connected as it
        is, with a note: nothing then stops it creating what it finds missing.
        """
        if not existing:
            return settings
        from eventsource.create_store import CREATE_STORE, takes_create_store

        try:
            cls = self.plugin_host().provider_class(url)
        except EventSourceError:
            return settings  # (create_provider says what is wrong with the URL)
        if takes_create_store(cls):
            return {**settings, CREATE_STORE: False}
        self.out.note(
            f"note: the {cls.kind!r} provider has no {CREATE_STORE} setting: connecting to {self.shown(url)} may "
            "create the store if it is missing"
        )
        return settings

    def no_store(self, url: str, e: StoreNotFoundError) -> str:
        """What a command that only reads says of a store connecting refused (``create_store`` off)."""
        why = str(e.details.get("why") or e)
        if e.details.get("outdated"):
            return (
                f"the store at {self.shown(url)} needs a migration: {why}; a command that only reads never "
                "migrates it (the application, or a command that writes, with this version does)"
            )
        return (
            f"no eventsource store at {self.shown(url)}: {why}; a command that only reads creates nothing "
            "(append, import or demo creates a store)"
        )

    def shown(self, url: str) -> str:
        """``url`` as the command may print it: password masked, and every secret the run knows scrubbed."""
        return self.scrub(mask(url))

    @staticmethod
    def store_label(manager: EventSourcingManager) -> str:
        """``sqlite:///eventsource.db`` (the default store's masked URL)."""
        p = manager.get_default_provider()
        return p.display_url or p.kind


def _has_server(url: str) -> bool:
    """Whether ``url`` names a host (a server store) rather than a file (``sqlite:///x.db``); unknown: a server."""
    try:
        return not url or bool(urlsplit(url).netloc)
    except ValueError:
        return True


def _unreachable(shown: str, *, has_server: bool) -> str:
    """The start of the message for a store (``shown``: its printable URL) that cannot be connected."""
    verb = "reach" if has_server else "open"
    return f"cannot {verb} the store at {shown}"


def connect_hint(url: str, *, timed_out: bool = False) -> str:
    """What a person should check when the store at ``url`` cannot be connected (``timed_out``: in time)."""
    if _has_server(url):
        hint = "check that the server is running and the URL is right"
    else:
        hint = "check the file's path, that it is a database and that you may write to it"
    return f"raise --timeout if the store is only slow to answer, or {hint}" if timed_out else hint
