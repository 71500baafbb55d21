"""``ProjectionRunner``: runs many projections on a manager's subscriptions, each with its own checkpoint.

Each projection reads its event types from one subscription that starts after the checkpoint stored in its
sink, takes batches of up to ``batch_size`` events and hands each batch to the sink, which runs the handlers
and stores the checkpoint (in one transaction for SQL sinks). A failing batch is applied again one event at
a time under the projection's :class:`~eventsource.projections.ErrorPolicy`. With a lease, a projection runs
only in the process that holds its :func:`lease_key`; the others wait and take over when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsource.checkpoints.base import Checkpoint
from eventsource.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    ValidationError,
)
from eventsource.lease import Lease
from eventsource.manager.validation import check_text
from eventsource.projections.leasing import RUNS, lease_key, leave, refuse_unleased_reset, room
from eventsource.projections.parking import dead_letter_stream, park
from eventsource.projections.projection import (
    CheckpointMovedError,
    Projection,
    ProjectionError,
    ProjectionStoppedError,
    SinkUnavailableError,
    seconds,
)
from eventsource.projections.reading import check_handled, subscribe
from eventsource.projections.sinks import Sink
from eventsource.subscriptions.pages import _fields, first_rows

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event
    from eventsource.subscriptions import Subscription
    from eventsource.sync import SyncEventSourcingManager

log = logging.getLogger("eventsource.projections")


class _StoppedError(Exception):
    """The runner was stopped while a failing event waited for its next attempt."""


@dataclass(slots=True)
class ProjectionState:
    """What a runner knows about one of its projections (read it, do not change it)."""

    projection: Projection[Any]
    sink: Sink[Any]
    source: str = ""
    legacy_source: str | None = None
    """The masked URL, the default source of releases that did not tell stores behind one URL apart."""
    scope: str = "all"
    position: int | None = None
    """The checkpoint this runner last stored or read (``None``: none yet)."""
    read_to: int = 0
    """How far its subscription has read (events past ``position`` are in a batch or filtered out)."""
    idle: bool = False
    """Waiting for events with nothing in flight: everything up to ``read_to`` is applied or skipped."""
    holding: bool = False
    """Whether this process runs it now (always ``True`` without a lease, once started)."""
    parked: int = 0
    subscription: Subscription | None = field(default=None, repr=False)


class ProjectionRunner:
    """Runs projections (see the module docstring and ``docs/projections.md``).

    :param manager: an :class:`EventSourcingManager` (or a :class:`SyncEventSourcingManager`, for :meth:`run_sync`).
    :param lease: a :class:`~eventsource.lease.Lease` or a lease URL (``sqlite:///file.db``, ``postgresql://``,
        ``nats://``): one active runner per projection across processes. :meth:`run` connects it; the last
        ``run()`` using it (runners may share one) closes it.
    :param batch_size: events per sink transaction at most.
    :param poll_interval: the subscriptions' longest wait without a wake-up.
    :param lease_wait: how long one attempt to take a lease waits before trying again.
    """

    def __init__(
        self,
        manager: EventSourcingManager | SyncEventSourcingManager,
        *,
        lease: Lease | str | None = None,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        lease_wait: float = 1.0,
    ) -> None:
        from eventsource.manager import EventSourcingManager
        from eventsource.sync import SyncEventSourcingManager

        self._facade: SyncEventSourcingManager | None = None
        if isinstance(manager, SyncEventSourcingManager):
            self._facade = manager
            manager = manager.manager
        if not isinstance(manager, EventSourcingManager):
            msg = f"manager must be an EventSourcingManager, not {type(manager).__name__}"
            raise ConfigurationError(msg, field="manager")
        self.manager = manager
        if isinstance(lease, str):
            lease = manager.host.create_lease(lease)
        if lease is not None and not isinstance(lease, Lease):
            msg = f"lease must be a Lease or a lease URL, not {type(lease).__name__}"
            raise ConfigurationError(msg, field="lease")
        self.lease: Lease | None = lease
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 10_000:  # noqa: PLR2004
            msg = "batch_size must be an int between 1 and 10000"
            raise ValidationError(msg, field="batch_size")
        self.batch_size = batch_size
        self.poll_interval = seconds("poll_interval", poll_interval)
        self.lease_wait = seconds("lease_wait", lease_wait)
        self.states: dict[str, ProjectionState] = {}
        self._stopping = False
        self._stop_asked = False  # a stop that came while no run() ran: the next run() returns at once
        self._running = False
        self._stopped = asyncio.Event()  # set by stop(): a retry's pause ends at once (a new one per run())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress = asyncio.Event()  # set when a projection applies a batch or goes idle
        self._tg: asyncio.TaskGroup | None = None  # while run() runs: add() starts a projection in it
        self._late: list[Sink[Any]] = []  # the sinks of projections added while running, closed by run()
        self._room = 0  # the projections this run() counts under the lease (see leasing.room)

    def __repr__(self) -> str:
        return f"ProjectionRunner({sorted(self.states)})"

    def add(self, projection: Projection[Any], sink: Sink[Any]) -> ProjectionRunner:
        """Run ``projection`` into ``sink`` (the runner opens and closes the sink). Returns the runner.

        Called on the runner's loop while :meth:`run` runs, it starts the projection at once.
        """
        if not isinstance(projection, Projection):
            msg = f"expected a Projection, not {type(projection).__name__}"
            raise ConfigurationError(msg, field="projection")
        if not isinstance(sink, Sink):
            msg = f"expected a Sink, not {type(sink).__name__}"
            raise ConfigurationError(msg, field="sink")
        if projection.name in self.states:
            msg = f"a projection named {projection.name!r} is already in this runner"
            raise ConfigurationError(msg, field="name")
        if self.lease is not None:  # the one past its capacity would wait for a lease forever
            room(self.lease, len(self.states) + 1)
        if not projection.handlers:
            msg = f"projection {projection.name!r} has no handlers"
            raise ConfigurationError(msg, field="handlers")
        p = self.manager.get_provider(projection.provider)
        if projection.stream_id is not None:  # the limit this manager reads streams with
            self.manager._stream_id(projection.stream_id)  # noqa: SLF001 - as read_stream checks it
        check_handled(self.manager, projection)
        if projection.errors.then == "park":  # refused now, not when the first bad event is parked
            self.manager.get_provider(projection.errors.dead_letter_provider or projection.provider)
            check_text(
                "dead-letter stream",
                dead_letter_stream(projection),
                self.manager.config.max_stream_id_length,
                field_name="dead_letter_stream",
            )
        st = ProjectionState(projection, sink)
        # the store's checkpoint identity, as subscribe() uses: the masked URL alone is shared by stores behind
        # one URL (schemas, prefixes, private in-memory stores), whose positions would then resume each other's
        st.source = projection.source or p.checkpoint_source
        legacy = p.display_url or p.kind
        st.legacy_source = None if projection.source is not None or legacy == st.source else legacy
        st.scope = "all" if projection.stream_id is None else f"stream:{projection.stream_id}"
        if self.lease is not None and self._tg is not None:  # running: its lease counts beside the others'
            self._room += room(self.lease, len(self.states) + 1, more=1)
        self.states[projection.name] = st
        if self._tg is not None and not self._stopping:  # added while running (a rebuild): start it now
            with contextlib.suppress(RuntimeError):  # run() is ending: the next run() starts it
                self._tg.create_task(self._run_late(st), name=f"projection {projection.name}")
        return self

    async def _run_late(self, st: ProjectionState) -> None:
        self._late.append(st.sink)
        await self._run_one(st)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run every projection until :meth:`stop`; raises :class:`ProjectionStoppedError` if one stops.

        A stop asked for while no run ran (before this one began) ends this one at once; one while it runs raises.
        """
        self._refuse_second_run()
        self._loop = asyncio.get_running_loop()  # before the look: request_stop() reads it after setting the flag
        if self._stop_asked:
            self._stop_asked = False
            return
        self._running = True
        self._stopping = False
        self._stopped = asyncio.Event()
        opened: list[Sink[Any]] = [st.sink for st in self.states.values()]  # each projection opens its own
        try:
            if self.lease is not None:
                RUNS[self.lease] = RUNS.get(self.lease, 0) + 1
                self._room = room(self.lease, len(self.states), more=len(self.states))  # with runners sharing it
                await self.lease.connect()
            async with asyncio.TaskGroup() as tg:
                for st in self.states.values():
                    tg.create_task(self._run_one(st), name=f"projection {st.projection.name}")
                self._tg = tg
        except BaseExceptionGroup as eg:
            if len(eg.exceptions) == 1:
                raise eg.exceptions[0]  # noqa: B904 - keeps its own cause (a handler's error)
            raise
        finally:
            self._tg = None
            opened.extend(self._late)
            self._late = []
            for sink in opened:
                with contextlib.suppress(Exception):
                    await sink.close()
            if self.lease is not None:
                room(self.lease, 0, more=-self._room)
            self._room = 0
            if self.lease is not None and leave(self.lease):
                with contextlib.suppress(Exception):
                    await self.lease.close()
            self._running = self._stop_asked = False

    def _state(self, name: str) -> ProjectionState:
        if name not in self.states:
            msg = f"no projection named {name!r} in this runner (it has {sorted(self.states)})"
            raise NotFoundError(msg, name=name)
        return self.states[name]

    def _refuse_second_run(self) -> None:
        if self._running:
            msg = "this runner is already running: wait for its projections with wait_caught_up(name) instead"
            raise ConflictError(msg, operation="run")

    async def stop(self) -> None:
        """End :meth:`run` (a batch in flight finishes first); called while none runs, the next one. Idempotent."""
        self._stopping = True
        if not self._running:
            self._stop_asked = True
        self._stopped.set()
        for st in self.states.values():
            if st.subscription is not None:
                await st.subscription.close()

    def request_stop(self) -> None:
        """:meth:`stop` from any thread (a signal handler, the thread that called :meth:`run_sync`)."""
        self._stopping = True
        if not self._running:
            self._stop_asked = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self.stop(), loop)

    async def catch_up(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a deadline for the whole run
        """Run until every projection has applied everything stored when it was called, then stop."""
        self._refuse_second_run()  # (its stop would end the run going on)
        timeout = None if timeout is None else seconds("timeout", timeout, zero=True)
        task = asyncio.ensure_future(self.run())
        try:
            async with asyncio.timeout(timeout):
                waits = [asyncio.ensure_future(self.wait_caught_up(n)) for n in self.states]
                done, _ = await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
                if task not in done:
                    await asyncio.gather(*waits)
                for w in waits:
                    w.cancel()
        finally:
            await self.stop()
            try:
                await task
            finally:
                self._stop_asked = False  # its own stop, not one for a later run

    def run_sync(self) -> None:
        """:meth:`run`, blocking (on a sync facade's loop when built from a :class:`SyncEventSourcingManager`)."""
        self._blocking(self.run())

    def catch_up_sync(self, timeout: float | None = None) -> None:
        """:meth:`catch_up`, blocking."""
        self._blocking(self.catch_up(timeout))

    def _blocking(self, coro: Any) -> None:
        if self._facade is None:
            asyncio.run(coro)
            return
        loop = self._facade._loop  # noqa: SLF001 - the facade's own loop runs its providers
        loop.go_threaded()
        loop.end_on_close(self, ProjectionRunner.stop)  # the facade's close() stops it first (run() returns)
        loop.run(coro, settle=True)  # a Ctrl-C: the runner has stopped (stop() ran) before it propagates

    async def wait_caught_up(self, name: str) -> None:
        """Wait until projection ``name`` has applied (or skipped) every event stored when this was called.

        Caught up means: the checkpoint reached the store's head, or the projection is idle and a read of
        its subscription that began after the call found nothing new (a store's head may lie above its
        last event, as PostgreSQL's does) and after every transaction that could commit below that head
        ended (PostgreSQL: a read finds nothing past a transaction still running, so it waits for that).
        A projection whose lease another process holds: once the sink's checkpoint is past them.
        """
        st = self._state(name)
        head = await self._head(st)
        settled = said = await self._settled(st, head)
        sub0 = st.subscription
        reads0 = sub0.reads if sub0 is not None else 0
        while (st.position or 0) < head and not (st.idle and st.read_to >= head):
            if self.lease is not None and not st.holding and await self._applied_elsewhere(st, head):
                return
            if self._read_after(st, sub0, reads0):
                if settled:
                    return
                if await self._settled(st, head):  # now a read that begins after this one must find them
                    settled, sub0 = True, st.subscription
                    reads0 = sub0.reads if sub0 is not None else 0
                    continue
                if not said:  # without a timeout this lasts as long as that transaction: say why
                    said = True
                    log.warning(
                        "projection %r: waiting to catch up: events stored before the call are held back by a "
                        "transaction still running on the store (PostgreSQL: any write transaction of the "
                        "cluster, such as a session idle in transaction); it goes on when that one ends",
                        name,
                    )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):  # not wait_for: it can drop a cancellation (Python 3.11)
                    await self._progress.wait()
            self._progress = asyncio.Event()

    @staticmethod
    def _read_after(st: ProjectionState, sub0: Subscription | None, reads0: int) -> bool:
        """Whether the projection is idle and a read of its subscription begun after ``reads0`` found nothing."""
        sub = st.subscription
        if not st.idle or sub is None or not sub.last_read_empty:
            return False
        # a read in flight when the head was taken may have begun before it: the one after it began after
        return (sub is not sub0 and sub.reads >= 1) or sub.reads >= reads0 + 2

    async def _applied_elsewhere(self, st: ProjectionState, head: int) -> bool:
        """Whether the sink's checkpoint (stored by the lease's holder) is past every event up to ``head``.

        A sink or store that cannot answer yet (not open, an outage) answers ``False``: the wait goes on.
        """
        try:
            return await self._past_head(st, head)
        except Exception:  # noqa: BLE001 - only a shortcut: the runner's own progress still ends the wait
            return False

    async def _past_head(self, st: ProjectionState, head: int) -> bool:
        cp = await st.sink.position(st.projection.name, st.source)
        if cp is None or cp.scope != st.scope:
            return False
        if cp.position >= head or st.projection.stream_id is not None:
            return cp.position >= head
        if not await self._settled(st, head):
            return False
        p = self.manager.get_provider(st.projection.provider)
        rows, _ = await first_rows(p.read_all_pages(from_position=cp.position + 1, page_size=1))
        return not rows or _fields(rows[0])[4] > head  # (a store's head may lie above its last event)

    async def _settled(self, st: ProjectionState, head: int) -> bool:
        """Whether nothing can still commit at or below ``head``: the store's safe horizon passed it."""
        if st.projection.stream_id is not None:
            return True  # a stream's versions commit in order
        end = await self.manager.get_provider(st.projection.provider).end_position()
        return end is None or end > head

    async def _head(self, st: ProjectionState) -> int:
        p = self.manager.get_provider(st.projection.provider)
        sid = st.projection.stream_id
        if sid is None:
            return await p.head_position() or 0
        info = await p.get_stream_info(sid)
        return 0 if info is None else info.version

    async def reset(self, name: str, *, force: bool = False) -> None:
        """Run the projection's reset hook and delete its checkpoint; its next run replays from the start.

        With a lease it holds the projection's (a runner holds it: :class:`ConflictError`, nothing changed). Without
        one, on an at-least-once sink, :class:`ConfigurationError` unless ``force`` (``docs/projections.md``).
        """
        st = self._state(name)
        if self.lease is None:
            refuse_unleased_reset(name, st.sink, force=force)
            await self._reset(st)
            return
        RUNS[self.lease] = RUNS.get(self.lease, 0) + 1  # a run() of this process may share it: not closed under it
        held = False
        try:  # (ProviderTimeoutError: the hold timed out, not the reset)
            await self.lease.connect()
            async with self.lease.hold(lease_key(name, st.source), timeout=self.lease_wait):
                held = True
                await self._reset(st)
        except ProviderTimeoutError as e:
            if held:
                raise
            msg = f"projection {name!r} is running (a runner holds its lease: {e}); stop it before resetting it"
            raise ConflictError(msg, name=name) from e
        finally:
            if leave(self.lease):
                with contextlib.suppress(Exception):
                    await self.lease.close()

    async def _reset(self, st: ProjectionState) -> None:
        name = st.projection.name
        await st.sink.open()
        try:
            await st.sink.reset(st.projection, name, st.source)
            if st.legacy_source is not None and await st.sink.position(name, st.legacy_source) is not None:
                # starting over was asked for: a checkpoint at the start under the store's own source says so to
                # every later runner, which would otherwise refuse (and offer to resume) the bare URL's one
                await st.sink.apply(st.projection, [], self._cp(st, 0), None)
        finally:
            if self._tg is None:  # not running: nothing else uses the sink's connection
                await st.sink.close()
        st.position = None
        st.legacy_source = None

    # ------------------------------------------------------------------ one projection

    async def _run_one(self, st: ProjectionState) -> None:
        while not self._stopping:
            try:
                await st.sink.open()  # (not reachable yet: waited out below, as an outage during a batch is)
                if self.lease is None:
                    st.holding = True
                    await self._follow(st)
                    continue
                async with self.lease.hold(lease_key(st.projection.name, st.source), timeout=self.lease_wait):
                    st.holding = True
                    try:
                        await self._follow(st)
                    finally:
                        st.holding = False
            except ProviderTimeoutError:
                continue  # the lease is held by another process (or the store was slow): try again
            except ProviderUnavailableError as e:
                log.warning("projection %s: %s; starting over from its checkpoint", st.projection.name, e)
                await asyncio.sleep(self.lease_wait)

    async def _follow(self, st: ProjectionState) -> None:
        """Subscribe after the sink's checkpoint and apply batches until stopped or fenced off."""
        proj = st.projection
        cp = await st.sink.position(proj.name, st.source)
        if cp is None and st.legacy_source is not None:
            await self._refuse_legacy(st)
        if cp is not None and cp.scope != st.scope:
            msg = f"checkpoint {proj.name!r} counts {cp.scope!r}, but the projection counts {st.scope!r}"
            raise ConfigurationError(msg, field="name")
        expected = None if cp is None else cp.position
        st.position = expected
        sub = subscribe(self.manager, proj, cp, self.batch_size, self.poll_interval)
        st.subscription = sub
        try:
            async with sub:
                if self._stopping:
                    return
                while True:
                    st.read_to, st.idle = sub.position, True
                    self._progress.set()
                    events, expected = await self._next_batch(st, sub, expected)
                    batch = [e for e in events if e.event_type in proj.handlers]
                    st.idle = False
                    if sub.closed:
                        return
                    if batch:
                        expected = await self._apply(st, batch, expected, sub.position)
        except CheckpointMovedError as e:
            log.warning("projection %s: %s; resuming from the stored checkpoint", proj.name, e)
        except _StoppedError:
            return  # stopped during a retry's pause: the checkpoint stays before the failing event
        finally:
            st.subscription = None
            st.idle = False

    async def _next_batch(
        self, st: ProjectionState, sub: Subscription, expected: int | None
    ) -> tuple[list[Event], int | None]:
        """The next batch, and the checkpoint: while none comes, it follows the events the subscription passes over.

        Every ``poll_interval`` the read is still waiting, the checkpoint moves to the subscription's position if
        that moved: no event of the projection's is among them (one would have ended the read), and without
        this its lag would grow with every other event stored (and a restart would read them all again).
        """
        fetch = asyncio.ensure_future(sub.next_batch(self.batch_size))
        try:
            while not (await asyncio.wait([fetch], timeout=self.poll_interval))[0]:
                to = sub.position
                if to > (expected or 0):
                    await st.sink.apply(st.projection, [], self._cp(st, to), expected)
                    expected = st.position = to
                    self._progress.set()
            return fetch.result(), expected
        finally:
            if not fetch.done():
                fetch.cancel()
                # not ``await fetch``: a cancel of this task landing now goes to the read, comes back as its
                # CancelledError and would be taken for the read's own (this task then never ended)
                await asyncio.wait([fetch])
                if not fetch.cancelled():
                    fetch.exception()  # retrieved: the batch it read is dropped (read again after the checkpoint)

    @staticmethod
    async def _refuse_legacy(st: ProjectionState) -> None:
        """A checkpoint under the masked URL alone may be this store's (stored by an older release) or another's."""
        name, legacy = st.projection.name, st.legacy_source
        assert legacy is not None
        if await st.sink.position(name, legacy) is None:
            return
        msg = (
            f"projection {name!r} has no checkpoint under its store's source {st.source!r}, but one under "
            f"{legacy!r}, which other stores behind that URL share (earlier releases stored it there). If it is "
            f"this store's, pass Projection(..., source={legacy!r}) to resume from it; else start over with "
            "runner.reset(name)"
        )
        raise ConfigurationError(msg, field="source", stored=legacy, wanted=st.source)

    async def _apply(self, st: ProjectionState, batch: Sequence[Event], expected: int | None, to: int) -> int:
        try:
            await st.sink.apply(st.projection, batch, self._cp(st, to), expected)
        except (CheckpointMovedError, ProjectionError, SinkUnavailableError):
            raise
        except Exception:  # noqa: BLE001 - a handler failed: the policy decides, one event at a time
            if len(batch) == 1:
                return await self._apply_one(st, batch[0], expected, to, failed=1)
            for i, event in enumerate(batch):  # again one at a time: find the failing event, keep the others
                at = to if i == len(batch) - 1 else self._at(st, event)
                expected = await self._apply_one(st, event, expected, at, failed=0)
            return to
        st.position = to
        self._progress.set()
        return to

    async def _apply_one(self, st: ProjectionState, event: Event, expected: int | None, to: int, *, failed: int) -> int:
        policy = st.projection.errors
        attempt, last = failed, None
        while True:
            if attempt > 0:
                if attempt > policy.retries:
                    break
                if await self._pause(policy.pause(attempt)):
                    raise _StoppedError
            try:
                await st.sink.apply(st.projection, [event], self._cp(st, to, event), expected)
            except (CheckpointMovedError, ProjectionError, SinkUnavailableError):
                raise
            except Exception as e:  # noqa: BLE001 - a handler's error is the policy's business
                last = e
                attempt += 1
                log.warning(
                    "projection %s: event %s failed (attempt %d): %r", st.projection.name, event.event_id, attempt, e
                )
                continue
            st.position = to
            self._progress.set()
            return to
        if policy.then == "stop":
            msg = (
                f"projection {st.projection.name!r} stopped at event {event.event_id!r} ({event.event_type} at "
                f"{self._at(st, event)}) after {attempt} attempts: {type(last).__name__}: {last}"
            )
            raise ProjectionStoppedError(msg, name=st.projection.name, event_id=event.event_id) from last
        await self._park(st, event, last)
        await st.sink.apply(st.projection, [], self._cp(st, to, event), expected)
        st.position = to
        return to

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless :meth:`stop` comes first (a retry schedule must not delay it); whether it came."""
        if not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._stopped.wait()
        return self._stopping

    async def _park(self, st: ProjectionState, event: Event, error: BaseException | None) -> None:
        await park(self.manager, st.projection, st.source, event, error)
        st.parked += 1

    @staticmethod
    def _cp(st: ProjectionState, to: int, event: Event | None = None) -> Checkpoint:
        """The checkpoint at ``to``, with the id of the event there when known (see :attr:`Checkpoint.event_id`)."""
        sub = st.subscription
        eid = event.event_id if event is not None and ProjectionRunner._at(st, event) == to else None
        eid = eid or (sub.event_id_at(to) if sub is not None else None)
        return Checkpoint(st.projection.name, st.source, st.scope, to, event_id=eid)

    @staticmethod
    def _at(st: ProjectionState, event: Event) -> int:
        return event.position if st.scope == "all" else event.version
