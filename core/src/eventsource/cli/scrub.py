"""Keeping secrets out of everything the command shows: messages, tracebacks and log records.

A :class:`Scrubber` learns the passwords of every store URL (and a user part the store itself masks, such as
a NATS token) and the configured encryption keys and replaces them (and any ``scheme://user:password@`` it
sees) with ``***``; :func:`logs_to` routes log records for one run through it, or silences them without ``-v``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qsl, urlsplit

from eventsource.config import SECRET_PARAMS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventsource.config import ManagerConfig

_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")


class Scrubber:
    """Removes every configured secret (URL passwords, encryption keys) from text shown to people."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add_config(self, cfg: ManagerConfig) -> None:
        """Remember the passwords and keys of ``cfg``."""
        for entry in cfg.providers.values():
            self.add_url(entry.get("url", ""))
        if cfg.checkpoint_store:
            self.add_url(cfg.checkpoint_store)
        self.secrets.update(v for v in cfg.encryption_keys.values() if v)

    def add_url(self, url: str) -> None:
        """Remember the password of ``url``, and the secrets of its query string (``?password=``, ``?token=``)."""
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            if parts.password:
                self.secrets.add(parts.password)
            self.secrets.update(v for k, v in parse_qsl(parts.query) if k.lower() in SECRET_PARAMS and v)

    def add_shown(self, url: str, shown: str | None) -> None:
        """Remember the user part of ``url`` too when the store itself hides it (``shown``: its display URL).

        A NATS URL user without a password is an auth token (``nats://TOKEN@host``, shown as
        ``nats://***@host``); :func:`~eventsource.config.mask_url` cannot know that, the provider does.
        """
        with contextlib.suppress(ValueError):
            user = urlsplit(url).username
            if user and shown is not None and user not in shown:
                self.secrets.add(user)

    def __call__(self, text: str) -> str:
        """``text`` with URL passwords and every remembered secret replaced by ``***``."""
        text = _URL_PASSWORD.sub(r"\1***@", text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class _ScrubbingFormatter(logging.Formatter):
    """Formats log records (tracebacks included) with every known secret removed."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, scrubbed."""
        return self.scrub(super().format(record))


@contextlib.contextmanager
def logs_to(verbose: int, err: TextIO, scrub: Scrubber) -> Iterator[None]:
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
