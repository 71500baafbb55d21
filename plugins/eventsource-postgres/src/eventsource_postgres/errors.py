"""The one place where psycopg and psycopg-pool errors become eventsource's typed errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from eventsource.config import libpq_refused_setting
from eventsource.errors import (
    ConfigurationError,
    ConflictError,
    EventSourceError,
    ProviderError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_TIMEOUT_CODES = frozenset({"57014", "55P03"})  # query_canceled (statement_timeout), lock_not_available
_UNAVAILABLE_CLASSES = ("08", "53", "57")  # connection exception, insufficient resources, operator intervention
INPUT_CODES = frozenset({"54000", "22021", "22P05"})  # program_limit_exceeded (index row too big), bad encoding
"""Input the server cannot hold: :class:`ValidationError` (``54000`` arrives as an ``OperationalError``, yet the
connection is fine: never a lost one)."""
_ROLLED_BACK_CLASS = "40"  # transaction rollback: serialization failure, deadlock detected
READ_ONLY = "25006"
"""read_only_sql_transaction: the session cannot write (a standby, a server fenced with
``default_transaction_read_only``); the statement was refused, nothing was written."""
DISK_FULL = "53100"
"""The server has no room to write: a :class:`ProviderError`, never retried (waiting frees no space)."""
OUT_OF_MEMORY = "53200"
"""The server (or its lock table: "out of shared memory") ran out of memory: retried, it may pass."""


def may_have_committed(exc: BaseException) -> bool:
    """Whether a write that ended with ``exc`` may have committed all the same.

    A write that gives no answer (cancelled, connection lost, timed out) may have; a refusal (conflict,
    bad input) did not.
    """
    if isinstance(exc, ProviderUnavailableError) and exc.details.get("sqlstate") == READ_ONLY:
        return False  # refused by a read-only server: nothing was written
    return not isinstance(exc, Exception) or isinstance(exc, (ProviderUnavailableError, ProviderTimeoutError))


def foreign_store(where: str, theirs: tuple[str, str], mine: tuple[str, str]) -> ConfigurationError:
    """The error for a ``read_url`` that reaches another cluster or database than ``url``."""
    msg = (
        f"read_url {where} reaches another cluster or database (system identifier {theirs[0]}, database "
        f"{theirs[1]!r}) than url (system identifier {mine[0]}, database {mine[1]!r}): it must name a standby "
        "of the primary, and the same database"
    )
    return ConfigurationError(msg, field="read_url")


def read_only(exc: BaseException) -> bool:
    """A statement the server refused because the session is read-only (a standby, a fenced old primary)."""
    import psycopg

    return isinstance(exc, psycopg.Error) and exc.sqlstate == READ_ONLY


def connection_lost(exc: BaseException) -> bool:
    """Whether the driver error ``exc`` means the connection is gone (a call may run again on a fresh one)."""
    import psycopg

    if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    code = exc.sqlstate or ""
    # a timeout is not a lost connection, nor is a transaction the server rolled back (class 40), nor input the
    # server refused (an id too long for an index: 54000, an OperationalError too), nor a lack of resources the
    # server reported on the connection (class 53: a full disk, out of memory)
    return code not in ("57014", "55P03") and code not in INPUT_CODES and not code.startswith(("40", "53"))


def recovery_conflict(exc: BaseException) -> bool:
    """On a read pool: a statement the standby cancelled (or a session it ended) to replay a conflicting record.

    A read in autocommit on a standby meets SQLSTATE class 40 only from a conflict with recovery (a lock, row
    versions removed, ``max_standby_streaming_delay`` past): nothing to roll back, the read may simply run again.
    """
    import psycopg

    return isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("40")


_HOST_FAILED = re.compile(r"^- host: '([^']*)', port: '([^']*)'.*failed: (.+?)\s*$")
"""One host's line of psycopg's message when every host of a list failed (its last ``failed:`` is the reason)."""


def _detail(text: str) -> str:
    """The driver message's first line; when every host of a list failed, each host's reason (psycopg 3.2+).

    The first line is the last host's reason alone: with a host down and another read-only (a standby not yet
    promoted), it said only "session is read-only".
    """
    lines = text.strip().splitlines()
    reasons = [f"{m[1]}:{m[2]}: {m[3]}" for m in map(_HOST_FAILED.match, lines) if m]
    if len(reasons) < 2:  # noqa: PLR2004 - one host: its line says it all
        return lines[0] if lines else ""
    return "no host of the url could be used (" + "; ".join(reasons) + ")"


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def map_error(  # noqa: C901, PLR0911, PLR0912 - one table of driver errors, read top to bottom
    exc: BaseException, *, operation: str, where: str, secrets: Sequence[str] = ()
) -> EventSourceError:
    """Translate a driver error into the typed error callers catch.

    Connection problems become :class:`ProviderUnavailableError` (a connection setting's value libpq refuses at
    connect, ``sslmode=bogus``: :class:`ConfigurationError`), timeouts (pool wait, statement
    timeout, lock timeout) :class:`ProviderTimeoutError`, input the server cannot hold
    :class:`ValidationError`, a transaction the server rolled back (deadlock, serialization failure)
    :class:`ConflictError`, anything else :class:`ProviderError`. The message names the operation and
    the (masked) server; a secret of the target never appears in it.

    :param exc: the driver exception.
    :param operation: what was being done (``"append"``...).
    :param where: the masked URL of the server.
    :param secrets: the target's secrets (:func:`~eventsource.config.url_secrets`), scrubbed out of driver messages.
    """
    if isinstance(exc, EventSourceError):
        return exc
    import psycopg
    import psycopg_pool

    detail = _scrub(_detail(str(exc)) or type(exc).__name__, secrets)
    base = f"{operation} on {where} failed: {detail}"
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return ProviderTimeoutError(
            f"{operation} on {where}: no database connection became free in time ({detail})",
            operation=operation,
        )
    if isinstance(exc, psycopg_pool.PoolClosed):
        return ProviderUnavailableError(f"{operation} on {where}: the provider is closed", operation=operation)
    if isinstance(exc, psycopg.Error):
        code = exc.sqlstate or ""
        if code in _TIMEOUT_CODES:
            return ProviderTimeoutError(base, operation=operation, sqlstate=code)
        if code == "54000" and "index row" in detail:  # every other indexed text is at most 256 characters long
            msg = (
                f"{base}: the stream id is longer than PostgreSQL's index holds (about 2,700 bytes of UTF-8 once "
                "compressed); shorten it"
            )
            return ValidationError(msg, operation=operation, sqlstate=code, field="stream_id")
        if code in INPUT_CODES:
            return ValidationError(base, operation=operation, sqlstate=code)
        if code.startswith(_ROLLED_BACK_CLASS):  # psycopg raises these as OperationalError: not a lost connection
            msg = (
                f"{base} (the server rolled the transaction back to resolve a conflict with another one; "
                "nothing was written, try again)"
            )
            return ConflictError(msg, operation=operation, sqlstate=code)
        if code == READ_ONLY:  # not the writable primary (any more): a failover or switchover is the usual cause
            msg = (
                f"{base} (SQLSTATE 25006: the server is read-only, a standby or a primary fenced with "
                "default_transaction_read_only; nothing was written, and the call is retried as a passing fault): "
                "url must reach the primary; a multi-host url needs target_session_attrs=read-write"
            )
            return ProviderUnavailableError(msg, operation=operation, sqlstate=code)
        if code == DISK_FULL:
            msg = (
                f"{base} (SQLSTATE 53100: the server's disk is full; the statement was rolled back, nothing was "
                "written): free space on the server's data or tablespace volume, then try again"
            )
            return ProviderError(msg, operation=operation, sqlstate=code)
        if code == OUT_OF_MEMORY:
            msg = (
                f"{base} (SQLSTATE 53200: the server ran out of memory; nothing was written, and the call is retried "
                "as a passing fault): if it persists, lower work_mem or the batch size, or give the server more "
                "memory; 'out of shared memory' means max_locks_per_transaction is too small"
            )
            return ProviderUnavailableError(msg, operation=operation, sqlstate=code)
        if isinstance(exc, psycopg.DataError) and not code and "NUL" in detail:  # caught by psycopg before sending
            return ValidationError(base, operation=operation)
        setting = None if code or not isinstance(exc, psycopg.OperationalError) else libpq_refused_setting(detail)
        if setting is not None:  # libpq checks these values only at connect: waiting never fixes them
            msg = f"{base} (libpq refuses the value of the connection setting {setting!r}: fix it in the url)"
            return ConfigurationError(msg, operation=operation, field="url", setting=setting)
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or code.startswith(_UNAVAILABLE_CLASSES):
            return ProviderUnavailableError(base, operation=operation, sqlstate=code or None)
        return ProviderError(base, operation=operation, sqlstate=code or None)
    if isinstance(exc, UnicodeEncodeError):  # text with no UTF-8 form (a lone surrogate): never sent
        return ValidationError(base, operation=operation)
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError(base, operation=operation)
    if isinstance(exc, OSError):
        return ProviderUnavailableError(base, operation=operation)
    return ProviderError(base, operation=operation)
