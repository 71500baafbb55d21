"""Lag: how far a checkpoint is behind the head of its source store, in positions and in seconds.

:func:`checkpoint_lag` measures one checkpoint against the provider it was taken on: positions are the
store's head (``head_position``, or the stream's version for a one-stream checkpoint) minus the checkpoint's
position; seconds are the age of the oldest event the checkpoint has not passed (``0`` when caught up).
:func:`lag_report` measures every checkpoint of a store for ``get_stats``/``health_check`` and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsource.subscriptions.subscription import first_page

COUNT_CAP = 1000
"""Events past a checkpoint that lag counts one by one (one read); beyond it ``events_capped`` is set."""

READ_WAIT = 1.0
"""Seconds lag waits for the read past a checkpoint (PostgreSQL's ``read_all`` waits for running transactions)."""

STORE_WAIT = 3.0
"""Seconds stats and health wait for the checkpoint store to connect, and to list a provider's checkpoints."""

NOT_MEASURED = (
    "events and seconds not measured: the read past the checkpoint did not answer within {wait:g}s "
    "(on PostgreSQL, a running transaction holds the events back; the subscription waits for it too)"
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsource.checkpoints.base import Checkpoint, CheckpointStore
    from eventsource.manager.policy import CallPolicy
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider


@dataclass(frozen=True, slots=True)
class SubscriptionLag:
    """How far checkpoint ``name`` on ``source`` is behind the store's head.

    :param position: the checkpoint's position (a stream version for a ``stream:<id>`` scope).
    :param head: the store's highest position (the stream's version), or ``None`` if the store cannot say.
    :param positions: ``head - position`` (never below 0), or ``None`` with ``head``. In the store's position
        units: gaps count, and on PostgreSQL positions are sparse (transaction ids shifted), so read
        ``events`` there.
    :param events: events readable past the checkpoint, counted up to :data:`COUNT_CAP`; ``None`` when the
        read did not answer within :data:`READ_WAIT` (``note`` says why).
    :param events_capped: ``events`` stopped at the cap (there are at least that many).
    :param seconds: how long the oldest event past the checkpoint has been stored; ``0.0`` when none is
        readable past it; ``None`` with ``events``.
    :param updated_at: when the checkpoint was last stored.
    :param note: why ``events`` and ``seconds`` are ``None``.
    """

    name: str
    source: str
    scope: str
    position: int
    head: int | None
    positions: int | None
    events: int | None
    events_capped: bool
    seconds: float | None
    updated_at: datetime | None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``updated_at`` as ISO 8601)."""
        d = asdict(self)
        d["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return d


async def checkpoint_lag(
    p: Provider, policy: CallPolicy, cp: Checkpoint, *, now: datetime | None = None
) -> SubscriptionLag:
    """The lag of ``cp`` against provider ``p`` (which must be its source store)."""
    if cp.scope.startswith("stream:"):
        sid = cp.scope.removeprefix("stream:")
        info = await policy.run(p, "get_stream_info", lambda: p.get_stream_info(sid))
        head: int | None = info.version if info is not None else 0

        async def next_stream() -> list[Any]:
            return await first_page(p.read_stream_pages(sid, from_version=cp.position + 1, page_size=COUNT_CAP))

        nxt = await policy.run(p, "read_stream", next_stream) if head and head > cp.position else []
    else:
        head = await policy.run(p, "head_position", p.head_position)

        async def next_all() -> list[Any]:
            return await first_page(p.read_all_pages(from_position=cp.position + 1, page_size=COUNT_CAP))

        nxt = await policy.run(p, "read_all", next_all) if head is None or head > cp.position else []
    seconds = 0.0
    if nxt:
        seconds = max(((now or datetime.now(UTC)) - nxt[0].timestamp).total_seconds(), 0.0)
    positions = None if head is None else max(head - cp.position, 0)
    n = len(nxt)
    return SubscriptionLag(
        cp.name, cp.source, cp.scope, cp.position, head, positions, n, n >= COUNT_CAP, seconds, cp.updated_at
    )


async def bounded_lag(p: Provider, policy: CallPolicy, cp: Checkpoint, *, wait: float = READ_WAIT) -> SubscriptionLag:
    """:func:`checkpoint_lag`, or, when it takes longer than ``wait``, the head alone with a ``note``.

    Stats and health use this: they answer promptly whatever the store's reads wait for.
    """
    return (await _bounded(p, policy, cp, wait))[0]


async def _bounded(p: Provider, policy: CallPolicy, cp: Checkpoint, wait: float) -> tuple[SubscriptionLag, bool, Any]:
    """:func:`bounded_lag`, whether its read timed out, and then the store's head (for :func:`unmeasured`)."""
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(checkpoint_lag(p, policy, cp), wait), False, None
    head = await asyncio.wait_for(policy.run(p, "head_position", p.head_position), wait)
    return unmeasured(cp, head, wait), True, head


def unmeasured(cp: Checkpoint, head: int | None, wait: float) -> SubscriptionLag:
    """The lag of ``cp`` with only the store's ``head`` known: its read did not answer within ``wait``."""
    if cp.scope.startswith("stream:"):
        head = None  # the store's head is not the stream's version
    positions = None if head is None else max(head - cp.position, 0)
    note = NOT_MEASURED.format(wait=wait)
    return SubscriptionLag(
        cp.name, cp.source, cp.scope, cp.position, head, positions, None, events_capped=False, seconds=None,
        updated_at=cp.updated_at, note=note,
    )  # fmt: skip


def source_of(p: Provider) -> str:
    """The ``source`` a subscription on ``p`` records by default (``p.checkpoint_source``)."""
    return p.checkpoint_source


async def lag_report(
    providers: Mapping[str, Provider], policy: CallPolicy, host: PluginHost, url: str
) -> dict[str, dict[str, Any]]:
    """For each provider: ``{"subscriptions": {name: lag dict}}``, or ``{"subscriptions_error": message}``.

    Opens the checkpoint store at ``url`` for the call with ``create_store`` off (a report creates nothing: a
    store that is not there has no checkpoints); a failure is reported per provider, never raised, and each
    read waits at most :data:`READ_WAIT` (see :func:`bounded_lag`).
    """
    from eventsource.create_store import existing_checkpoints
    from eventsource.errors import StoreNotFoundError

    store: CheckpointStore | None = None
    try:
        store, _ = existing_checkpoints(host, url)  # a report creates no checkpoint table, schema or bucket
        await asyncio.wait_for(store.connect(), STORE_WAIT)
    except StoreNotFoundError:  # never created: no subscription has committed a checkpoint there
        if store is not None:
            await _close(store)
        return {name: {"subscriptions": {}} for name in providers}
    except Exception as e:  # noqa: BLE001 - stats and health report a failing checkpoint store, never raise
        if store is not None:
            await _close(store)
        error = _error(e)
        return {name: {"subscriptions_error": error} for name in providers}
    try:
        return {name: await _provider_lag(p, policy, store) for name, p in providers.items()}
    finally:
        await _close(store)


async def _provider_lag(p: Provider, policy: CallPolicy, store: CheckpointStore) -> dict[str, Any]:
    """One provider's entry of :func:`lag_report` (its own error: another provider's failure is not its)."""
    try:
        cps = await asyncio.wait_for(store.list(source_of(p)), STORE_WAIT)
    except Exception as e:  # noqa: BLE001 - reported, never raised
        return {"subscriptions_error": _error(e)}
    try:
        lags: list[SubscriptionLag] = []
        slow, head = False, None
        for cp in cps:
            if slow:  # the store holds its reads back: one wait says so for every checkpoint, not one wait each
                lags.append(unmeasured(cp, head, READ_WAIT))
                continue
            lag, slow, head = await _bounded(p, policy, cp, READ_WAIT)
            lags.append(lag)
    except Exception as e:  # noqa: BLE001 - reported, never raised
        return {"subscriptions_error": _error(e, what=f"the store ({p.kind})", wait=READ_WAIT)}
    return {"subscriptions": {lag.name: lag.as_dict() for lag in lags}}


def _error(e: Exception, *, what: str = "the checkpoint store", wait: float = STORE_WAIT) -> str:
    """What failed, for stats and health: a store's error may quote its URL, so passwords in it are masked."""
    from eventsource.config import mask_url

    if isinstance(e, TimeoutError):
        return f"{what} did not answer within {wait:g}s"
    return mask_url(f"{type(e).__name__}: {e}")


async def _close(store: CheckpointStore) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(store.close(), STORE_WAIT)


async def lag_of(
    p: Provider,
    policy: CallPolicy,
    host: PluginHost,
    store: CheckpointStore | str,
    *,
    name: str,
    source: str | None,
    wait: float | None = None,
) -> SubscriptionLag:
    """The lag of checkpoint ``name`` on ``source`` (default: ``p``'s) in ``store`` (or the store at that URL).

    A store given by URL is opened with ``create_store`` off, as :func:`lag_report` opens it: a lag query creates
    nothing, and a store that is not there holds no checkpoint (``CheckpointNotFoundError``, from the
    ``StoreNotFoundError`` that says what is missing).
    """
    from eventsource.checkpoints.base import CheckpointNotFoundError, CheckpointStore, check_name
    from eventsource.create_store import existing_checkpoints
    from eventsource.errors import StoreNotFoundError

    src = check_name("source", source) if source is not None else source_of(p)
    owned = isinstance(store, str)
    if isinstance(store, str):
        store, _ = existing_checkpoints(host, store)
    elif not isinstance(store, CheckpointStore):
        from eventsource.errors import ConfigurationError

        msg = f"checkpoint must be a CheckpointStore or a URL, not {type(store).__name__}"
        raise ConfigurationError(msg, field="checkpoint")
    try:
        await store.connect()
        cp = await store.get(name, src)
    except StoreNotFoundError as e:  # never created: no subscription has committed a checkpoint there
        msg = f"no checkpoint {name!r} is stored for source {src!r}: {e}"
        raise CheckpointNotFoundError(msg, name=name, source=src, store=e.details.get("store")) from e
    finally:
        if owned:
            await store.close()
    if cp is None:
        msg = f"no checkpoint {name!r} is stored for source {src!r}"
        raise CheckpointNotFoundError(msg, name=name, source=src)
    return await (checkpoint_lag(p, policy, cp) if wait is None else bounded_lag(p, policy, cp, wait=wait))
