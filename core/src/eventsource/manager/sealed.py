"""Version-pinned (sealed) appends: encrypted payloads are bound to their version before the store assigns it.

The provider assigns versions, so with encryption on and ``expected_version`` ANY or STREAM_EXISTS
the manager *pins* the version: it takes the stream's current version (cached per stream after the
first append; one ``get_stream_info`` otherwise), seals the payloads for the versions that follow, and
appends with that exact expected version. A ``ConcurrencyError`` means another writer got there first:
the batch is re-sealed for the version the error reports and tried again (up to
:data:`VERSION_PIN_ATTEMPTS` times, with a random pause from the second attempt on that grows, capped), so ANY keeps its
meaning. Pinned appends to one stream through one manager take turns (a lock per stream); if every
attempt loses, the append raises :class:`ProviderTimeoutError` (nothing was written; try again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import weakref
from typing import TYPE_CHECKING

from eventsource.errors import ConcurrencyError, ProviderTimeoutError
from eventsource.manager.cache import bounded_put, stream_key
from eventsource.manager.ids import event_id
from eventsource.model import ExpectedVersion, NewStream
from eventsource.provider import check_expected

if TYPE_CHECKING:
    from eventsource.manager.batches import BatchEncoder
    from eventsource.manager.policy import CallPolicy
    from eventsource.model import AppendResult, EventData, Expected
    from eventsource.provider import Provider

VERSION_PIN_ATTEMPTS = 24
"""Encrypted ANY/STREAM_EXISTS appends: how many times a lost version race is re-sealed and retried."""


class SealedAppends:
    """Encrypted appends, with the last known version of each stream cached (a guess the store verifies)."""

    __slots__ = ("encoder", "locks", "policy", "versions")

    def __init__(self, policy: CallPolicy, encoder: BatchEncoder) -> None:
        self.policy = policy
        self.encoder = encoder
        self.versions: dict[str, int] = {}
        self.locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def forget(self, provider: str, sid: str) -> None:
        """Drop the cached version of a stream (it was deleted)."""
        self.versions.pop(stream_key(provider, sid), None)

    async def append(self, p: Provider, sid: str, events: list[EventData], exp: Expected) -> AppendResult:
        """Append with the versions sealed into each payload.

        Exact and NO_STREAM expectations fix the versions; ANY / STREAM_EXISTS pin the current version
        and re-seal on a lost race. Event ids are fixed once, before the first attempt.
        """
        fixed = [e if e.event_id is not None else dataclasses.replace(e, event_id=event_id()) for e in events]
        first = fixed[0]
        stream = NewStream(stream_id=sid, aggregate_id=first.aggregate_id, aggregate_type=first.aggregate_type)
        key = stream_key(p.name, sid)
        if exp not in (ExpectedVersion.ANY, ExpectedVersion.STREAM_EXISTS):
            start = 0 if exp == ExpectedVersion.NO_STREAM else int(exp)
            encoded = self.encoder.encode(sid, fixed, p, start + 1)
            res: AppendResult = await self.policy.run(
                p, "append", lambda: p.append(sid, encoded, exp, stream), events=len(encoded), stream=sid, expected=exp
            )
            if not res.duplicate:
                bounded_put(self.versions, key, res.last_version)
            return res
        lock = self.locks.get(key)
        if lock is None:
            lock = self.locks[key] = asyncio.Lock()
        async with lock:  # this manager's pinned appends to one stream take turns
            return await self._pinned(p, sid, fixed, exp, stream)

    async def _pinned(
        self, p: Provider, sid: str, fixed: list[EventData], exp: Expected, stream: NewStream
    ) -> AppendResult:
        run = self.policy.run
        key = stream_key(p.name, sid)
        guess: int | None = self.versions.get(key)
        for attempt in range(1, VERSION_PIN_ATTEMPTS + 1):
            if attempt > 1:  # another process won the last pin: let a burst of writers spread out
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311 - jitter
            if guess is None or (guess == 0 and exp == ExpectedVersion.STREAM_EXISTS):
                info = await run(p, "get_stream_info", lambda: p.get_stream_info(sid))
                if info is None and exp == ExpectedVersion.STREAM_EXISTS:
                    check_expected(sid, exp, exists=False, version=0)
                guess = info.version if info is not None else 0
            pinned = guess
            encoded = self.encoder.encode(sid, fixed, p, pinned + 1)
            try:
                res: AppendResult = await run(
                    p,
                    "append",
                    functools.partial(p.append, sid, encoded, pinned, stream),
                    events=len(encoded),
                    stream=sid,
                    expected=exp,
                )
            except ConcurrencyError as e:
                self.versions.pop(key, None)
                guess = e.actual if isinstance(e.actual, int) and e.actual >= 0 else None
                continue
            if not res.duplicate:
                bounded_put(self.versions, key, res.last_version)
            return res
        msg = (
            f"append to {sid!r} with expected_version {ExpectedVersion(exp).name}: other writers changed the "
            f"stream before each of {VERSION_PIN_ATTEMPTS} attempts to seal the events for its next version; "
            "nothing was written, try again"
        )
        raise ProviderTimeoutError(msg, provider=p.name, operation="append")
