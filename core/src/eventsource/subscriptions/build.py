"""Checks a ``subscribe`` call's arguments and builds the :class:`Subscription` (the manager delegates here)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from eventsource.checkpoints.base import CheckpointStore, check_name
from eventsource.errors import ConfigurationError, UnsupportedOperationError, ValidationError
from eventsource.manager.validation import check_number
from eventsource.subscriptions.subscription import DECODE_ERROR_POLICIES, END, StartAt, Subscription, Target

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.manager.codec import EventCodec
    from eventsource.manager.policy import CallPolicy
    from eventsource.plugins import PluginHost
    from eventsource.provider import Provider

MAX_PAGE_SIZE = 10_000


def build_subscription(
    p: Provider,
    policy: CallPolicy,
    codec: EventCodec,
    host: PluginHost,
    *,
    stream_id: str | None,
    stream_prefix: str | Sequence[str] | None,
    event_types: Sequence[str] | None,
    from_position: StartAt,
    from_version: StartAt,
    checkpoint: CheckpointStore | str | None,
    name: str | None,
    source: str | None,
    commit_every: int | None,
    page_size: int,
    poll_interval: float,
    on_decode_error: str = "raise",
    reset: bool = False,
) -> Subscription:
    """A :class:`Subscription` for the arguments of ``EventSourcingManager.subscribe``; bad ones raise here."""
    target = _target(p, stream_id, stream_prefix, event_types, codec)
    start: StartAt = (
        _start("from_position", from_position) if stream_id is None else _start("from_version", from_version)
    )
    if isinstance(start, int) and stream_id is not None:
        start = max(start, 1)
    page_size = check_number("page_size", page_size)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        msg = f"page_size must be between 1 and {MAX_PAGE_SIZE}"
        raise ValidationError(msg, field="page_size")
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or not math.isfinite(poll_interval)
        or poll_interval <= 0
    ):
        msg = "poll_interval must be a positive number of seconds"
        raise ValidationError(msg, field="poll_interval")
    if commit_every is not None and check_number("commit_every", commit_every) < 1:
        msg = "commit_every must be at least 1 (or None: commit explicitly)"
        raise ValidationError(msg, field="commit_every")
    if name is not None:
        check_name("name", name)
    owns = False
    if isinstance(checkpoint, str):
        checkpoint = host.create_checkpoint_store(checkpoint)
        owns = True
    elif checkpoint is not None and not isinstance(checkpoint, CheckpointStore):
        msg = f"checkpoint must be a CheckpointStore or a URL, not {type(checkpoint).__name__}"
        raise ConfigurationError(msg, field="checkpoint")
    if (checkpoint is None) != (name is None) and (checkpoint is not None or commit_every is not None):
        msg = "a checkpoint store needs a subscription name (and a name without a store stores nothing)"
        raise ConfigurationError(msg, field="name")
    _check_options(on_decode_error, reset, has_store=checkpoint is not None)
    if commit_every is not None and checkpoint is None:
        msg = "commit_every needs a checkpoint store and a name"
        raise ConfigurationError(msg, field="commit_every")
    src = check_name("source", source) if source is not None else p.checkpoint_source
    return Subscription(
        p,
        policy,
        codec,
        target,
        start=start,
        page_size=page_size,
        poll_interval=float(poll_interval),
        checkpoints=checkpoint,
        name=name,
        source=src,
        commit_every=commit_every,
        owns_checkpoints=owns,
        on_decode_error=on_decode_error,
        reset=reset,
    )


def _start(field: str, value: object) -> StartAt:
    """A start position (or version), or ``"end"``: only what is committed after the subscription starts."""
    if value == END:
        return END
    if isinstance(value, str):
        msg = f"{field} takes a whole number or {END!r}, not {value[:40]!r}"
        raise ValidationError(msg, field=field)
    return check_number(field, value)


def _check_options(on_decode_error: str, reset: bool, *, has_store: bool) -> None:
    if on_decode_error not in DECODE_ERROR_POLICIES:
        msg = f"on_decode_error must be one of {', '.join(map(repr, DECODE_ERROR_POLICIES))}, not {on_decode_error!r}"
        raise ValidationError(msg, field="on_decode_error")
    if not isinstance(reset, bool):
        msg = "reset must be True or False"
        raise ValidationError(msg, field="reset")
    if reset and not has_store:
        msg = "reset=True deletes the stored checkpoint: it needs a checkpoint store and a name"
        raise ConfigurationError(msg, field="reset")


def _target(
    p: Provider,
    stream_id: str | None,
    stream_prefix: str | Sequence[str] | None,
    event_types: Sequence[str] | None,
    codec: EventCodec,
) -> Target:
    if stream_id is not None:
        if not isinstance(stream_id, str) or not stream_id:
            msg = "stream_id must be a non-empty string"
            raise ValidationError(msg, field="stream_id")
        if stream_prefix is not None or event_types is not None:
            msg = "a one-stream subscription takes no stream_prefix or event_types (filter the events yourself)"
            raise ValidationError(msg, field="stream_id")
        return Target(stream_id=stream_id)
    if p.capabilities.global_order != "total":
        msg = (
            f"provider {p.kind!r} declares global_order={p.capabilities.global_order}: it has no single order "
            "to follow across streams, so only one-stream subscriptions (stream_id=...) are supported"
        )
        raise UnsupportedOperationError(msg, provider=p.kind, operation="subscribe", capability="global_order")
    prefixes = _entries("stream_prefix", stream_prefix)
    types = _entries("event_types", event_types)
    stored = frozenset(codec.chain.stored_types(types)) if types else frozenset()  # old names of renamed types too
    return Target(prefixes=prefixes, event_types=frozenset(types), stored_types=stored)


def _entries(what: str, value: object) -> tuple[str, ...]:
    """A filter argument as its entries: ``None`` is no filter; a string or a collection of non-empty strings.

    An empty collection is refused, not read as no filter: a list built at run time that comes out empty would
    otherwise turn a filtered subscription into one of every event.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        entries: tuple[object, ...] = (value,)
    elif isinstance(value, (bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        msg = f"{what} takes a string or a list of strings (None: no filter), not {type(value).__name__}"
        raise ValidationError(msg, field=what)
    else:
        entries = tuple(value)
        if not entries:
            msg = f"{what} is empty, so no event would match: pass None to take every one"
            raise ValidationError(msg, field=what)
    strings = tuple(x for x in entries if isinstance(x, str) and x)
    if len(strings) != len(entries):
        msg = f"{what} entries must be non-empty strings"
        raise ValidationError(msg, field=what)
    return strings
