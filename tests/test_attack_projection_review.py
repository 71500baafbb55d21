"""Attack review of projections, their leases and checkpoints: hostile input and misuse a user can hit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import Checkpoint, MemoryCheckpointStore, SqliteCheckpointStore
from eventsource.errors import ConfigurationError, ConflictError, NotFoundError, ValidationError
from eventsource.projections import (
    CheckpointStoreSink,
    ErrorPolicy,
    Projection,
    ProjectionError,
    ProjectionRunner,
    SinkUnavailableError,
    SqliteSink,
)

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.checkpoints.base import CheckpointStore
    from eventsource.manager import EventSourcingManager
    from eventsource.model import Event


def stores(tmp_path: Path) -> list[CheckpointStore]:
    return [MemoryCheckpointStore(), SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")]


HOSTILE = {
    "position past a 64-bit int": Checkpoint("n", "s", "all", 2**63),
    "lone surrogate in the name": Checkpoint("n\ud800", "s", "all", 1),
    "lone surrogate in the source": Checkpoint("n", "s\udfff", "all", 1),
    "lone surrogate in the scope": Checkpoint("n", "s", "stream:\ud800", 1),
    "lone surrogate in the event id": Checkpoint("n", "s", "stream:x", 1, event_id="e\ud800"),
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
async def test_a_checkpoint_no_store_can_hold_is_a_validation_error_on_every_store(tmp_path: Path, label: str) -> None:
    """A position of 2**63 or more, or text that is not valid Unicode, is refused alike and leaves the store as it was.

    The memory store kept them (so code tested on it failed in production), SQLite raised a bare
    ``OverflowError`` or ``UnicodeEncodeError`` (not an eventsource error: a caller catching those missed it)
    and PostgreSQL a ``ProviderError`` for the position (as if the database had failed).
    """
    for store in stores(tmp_path):
        await store.connect()
        try:
            await store.put(Checkpoint("n", "s", "all", 5))
            with pytest.raises(ValidationError):
                await store.put(HOSTILE[label], force=True)
            assert [(c.name, c.source, c.position) for c in await store.list()] == [("n", "s", 5)], store
        finally:
            await store.close()


@pytest.mark.parametrize("call", ["get", "delete"])
async def test_a_key_with_a_lone_surrogate_is_a_validation_error_on_get_and_delete(tmp_path: Path, call: str) -> None:
    """``get``/``delete`` of a name or source no store can encode: SQLite raised a bare ``UnicodeEncodeError``."""
    for store in stores(tmp_path):
        await store.connect()
        try:
            with pytest.raises(ValidationError):
                await getattr(store, call)("n\ud800", "s")
            with pytest.raises(ValidationError):
                await getattr(store, call)("n", "s\ud800")
        finally:
            await store.close()


def test_a_projection_source_no_store_can_encode_is_refused_when_declared() -> None:
    """``Projection(source=...)`` with a lone surrogate got through, then crashed the runner in its sink or lease."""
    with pytest.raises(ValidationError):
        Projection("p", {"Deposited": lambda _e, _tx: None}, source="src\ud800")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lease_wait", "1"),
        ("lease_wait", -1.0),
        ("lease_wait", 0),
        ("lease_wait", float("nan")),
        ("lease_wait", float("inf")),
        ("lease_wait", True),
        ("poll_interval", "1"),
        ("poll_interval", 0),
        ("poll_interval", float("nan")),
    ],
)
def test_runner_timings_are_checked_when_it_is_built(es: EventSourcingManager, setting: str, value: Any) -> None:
    """``lease_wait="1"`` crashed ``run()`` with a bare ``TypeError``; a negative or NaN one was taken.

    NaN made the lease's wait never time out (every comparison with it is false) and a negative one retried a
    held lease without a pause. ``poll_interval`` was refused only when ``run()`` subscribed.
    """
    with pytest.raises(ValidationError, match=setting):
        ProjectionRunner(es, **{setting: value})


@pytest.mark.parametrize("value", ["1", -1.0, float("nan"), None])
def test_a_sqlite_sink_timeout_is_checked_when_it_is_built(tmp_path: Path, value: Any) -> None:
    """``SqliteSink(timeout="1")`` crashed the runner with a bare ``TypeError`` when it opened the sink."""
    with pytest.raises(ValidationError, match="timeout"):
        SqliteSink(str(tmp_path / "read.db"), timeout=value)


def _ledger(model: dict[str, int], started: asyncio.Event, gate: asyncio.Event) -> Projection[None]:
    """At least once: the read model is keyed on event ids; its reset hook waits for ``gate`` before emptying it."""
    p: Projection[None] = Projection("ledger")

    @p.on("Deposited")
    def deposited(event: Event, _tx: None) -> None:
        model[event.event_id] = event.data["amount"]

    @p.on_reset
    async def empty(_tx: None) -> None:
        started.set()
        await gate.wait()
        model.clear()

    return p


async def test_a_reset_beside_the_runner_holding_the_lease_is_refused_not_raced(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """``reset()`` on a runner with ``lease=`` ignored the lease, so it ran beside the service holding it.

    On an at-least-once sink the reset deletes the checkpoint, then runs its hook: the service, between the
    two, found its checkpoint gone, replayed every event and stored its checkpoint at the end; the hook then
    emptied the read model behind it. Nothing ever applied those events again. The reset takes the
    projection's lease now, so while another runner holds it the reset is refused and changes nothing.
    """
    lease = f"sqlite:///{tmp_path}/events.db"
    cps = f"sqlite:///{tmp_path}/cp.db"
    model: dict[str, int] = {}
    started, gate = asyncio.Event(), asyncio.Event()
    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    service = ProjectionRunner(es, lease=lease, poll_interval=0.1, lease_wait=0.1)
    service.add(_ledger(model, started, gate), CheckpointStoreSink(SqliteCheckpointStore(cps)))
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(30):
            await service.wait_caught_up("ledger")
        job = ProjectionRunner(es, lease=lease, lease_wait=0.2)
        job.add(_ledger(model, started, gate), CheckpointStoreSink(SqliteCheckpointStore(cps)))
        resetting = asyncio.ensure_future(job.reset("ledger"))
        async with asyncio.timeout(30):
            await asyncio.wait([resetting, asyncio.ensure_future(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        # while the reset runs its hook (unless refused), the service applies another event
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 3})
        async with asyncio.timeout(30):
            await service.wait_caught_up("ledger")
        gate.set()
        with pytest.raises(ConflictError, match="ledger"):
            await asyncio.wait_for(resetting, 30)
    finally:
        await service.stop()
        await task
    assert sorted(model.values()) == [1, 2, 3]  # (the raced reset left it empty, its checkpoint at the end)


async def test_a_reset_without_a_lease_of_an_at_least_once_projection_is_refused_unless_forced(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A runner built without ``lease=`` reset a projection the service ran under its lease, unnoticed.

    The service, between the checkpoint's deletion and the end of the hook, replayed every event and stored its
    checkpoint at the end; the hook then emptied the read model behind it, and nothing applied those events
    again. Without a lease the reset cannot know whether a runner holds one, so on an at-least-once sink it is
    refused (changing nothing) unless ``force=True`` says none runs.
    """
    lease = f"sqlite:///{tmp_path}/events.db"
    cps = f"sqlite:///{tmp_path}/cp.db"
    model: dict[str, int] = {}
    started, gate = asyncio.Event(), asyncio.Event()
    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    service = ProjectionRunner(es, lease=lease, poll_interval=0.1, lease_wait=0.1)
    service.add(_ledger(model, started, gate), CheckpointStoreSink(SqliteCheckpointStore(cps)))
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(30):
            await service.wait_caught_up("ledger")
        job = ProjectionRunner(es).add(_ledger(model, started, gate), CheckpointStoreSink(SqliteCheckpointStore(cps)))
        resetting = asyncio.ensure_future(job.reset("ledger"))
        async with asyncio.timeout(30):
            await asyncio.wait([resetting, asyncio.ensure_future(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 3})
        async with asyncio.timeout(30):
            await service.wait_caught_up("ledger")
        gate.set()
        with pytest.raises(ConfigurationError, match="force=True") as e:
            await asyncio.wait_for(resetting, 30)
        assert e.value.details["field"] == "lease"
    finally:
        await service.stop()
        await task
    assert sorted(model.values()) == [1, 2, 3]
    store = SqliteCheckpointStore(cps)
    await store.connect()
    try:
        assert await store.get("ledger", service.states["ledger"].source) is not None  # the checkpoint stays
        await (
            ProjectionRunner(es)
            .add(_ledger(model, started, gate), CheckpointStoreSink(store))
            .reset("ledger", force=True)
        )
        assert model == {}
        assert await store.get("ledger", service.states["ledger"].source) is None
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_reset_without_a_lease_beside_a_leased_runner_is_fenced_on_a_sqlite_sink(
    es: EventSourcingManager, tmp_path: Path, kind: str
) -> None:
    """The SQL sink's answer to the same race: the running service's next batch finds its checkpoint gone
    (``CheckpointMovedError``) and replays from the start into the emptied table, so the read model ends with
    every event once. Checked so the refusal above stays limited to the sinks that need it."""
    import sqlite3

    path = str(tmp_path / "read.db")

    def model() -> Projection[sqlite3.Connection]:
        p: Projection[sqlite3.Connection] = Projection("ledger")

        def write(event: Event, tx: sqlite3.Connection) -> None:
            tx.execute("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT PRIMARY KEY, amount INTEGER)")
            tx.execute("INSERT INTO ledger VALUES (?, ?)", (event.event_id, event.data["amount"]))

        async def write_async(event: Event, tx: sqlite3.Connection) -> None:
            write(event, tx)

        p.on("Deposited")(write if kind == "sync" else write_async)
        p.on_reset(lambda tx: tx.execute("DELETE FROM ledger") and None)
        return p

    def amounts() -> list[int]:
        db = sqlite3.connect(path)
        try:
            return sorted(a for (a,) in db.execute("SELECT amount FROM ledger"))
        finally:
            db.close()

    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    service = ProjectionRunner(es, lease=f"sqlite:///{tmp_path}/events.db", poll_interval=0.1, lease_wait=0.1)
    service.add(model(), SqliteSink(path))
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(30):
            await service.wait_caught_up("ledger")
        await ProjectionRunner(es).add(model(), SqliteSink(path)).reset("ledger")
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 3})
        async with asyncio.timeout(30):  # (a unique key: an event applied twice would have failed its batch)
            await service.wait_caught_up("ledger")
    finally:
        await service.stop()
        await task
    assert amounts() == [1, 2, 3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream_id": ""},
        {"stream_id": "acc\x00-1"},
        {"stream_id": 123},
        {"stream_prefix": 5},
        {"stream_prefix": ""},
        {"stream_id": "acc-1", "stream_prefix": "acc-"},
    ],
    ids=["empty stream", "NUL in stream", "int stream", "int prefix", "empty prefix", "stream and prefix"],
)
async def test_a_stream_no_subscription_can_follow_is_refused_when_declared(
    es: EventSourcingManager, tmp_path: Path, kwargs: dict[str, Any]
) -> None:
    """These were refused only when ``run()`` subscribed (an int prefix with a bare ``TypeError``); ``catch_up()``
    of one whose stream had no events returned at once, as if it had applied everything, and raised nothing."""
    with pytest.raises(ValidationError):
        Projection("p", {"Deposited": lambda _e, _tx: None}, **kwargs)


async def test_a_stream_id_past_the_manager_s_limit_is_refused_when_added(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A one-stream projection of an id longer than the store takes: ``catch_up()`` returned, applying nothing."""
    p = Projection("p", {"Deposited": lambda _e, _tx: None}, stream_id="s" * (es.config.max_stream_id_length + 1))
    with pytest.raises(ValidationError, match="stream id"):
        ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "read.db")))


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_reset_on_a_busy_sqlite_sink_is_the_sink_s_outage_and_changes_nothing(
    es: EventSourcingManager, tmp_path: Path, kind: str
) -> None:
    """A reset while another connection held the sink file's write lock past ``timeout`` raised a bare
    ``sqlite3.OperationalError`` ("database is locked"), where a batch raises ``SinkUnavailableError``; a
    projection of coroutine handlers also waited for the lock on the event loop itself, stalling it."""
    import sqlite3

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    path = str(tmp_path / "read.db")
    p: Projection[sqlite3.Connection] = Projection("p")

    if kind == "sync":

        @p.on("Deposited")
        def deposited(_event: Event, _tx: sqlite3.Connection) -> None:
            pass
    else:

        @p.on("Deposited")
        async def deposited_async(_event: Event, _tx: sqlite3.Connection) -> None:
            pass

    await ProjectionRunner(es).add(p, SqliteSink(path)).catch_up(timeout=30)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        with pytest.raises(SinkUnavailableError):
            await ProjectionRunner(es).add(p, SqliteSink(path, timeout=0.5)).reset("p")
        ticker.cancel()
        assert ticks > 5, "the event loop stood still while the reset waited for the file's lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
    stored = sqlite3.connect(path).execute("SELECT position FROM es_checkpoints").fetchall()
    assert len(stored) == 1  # the checkpoint is still there


@pytest.mark.parametrize("ending", ["COMMIT", "ROLLBACK"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_handler_that_ends_the_sink_transaction_and_begins_another_is_caught(
    es: EventSourcingManager, tmp_path: Path, kind: str, ending: str
) -> None:
    """A handler (or a helper it calls) that ends the batch's transaction and opens a new one went unnoticed.

    The sink checked only that a transaction was open when the handlers returned: after ``COMMIT; BEGIN`` one
    was, so the checkpoint was written in the handler's new transaction. What was committed before it was then
    on disk without the checkpoint (applied again after a crash: not exactly once), and a ``ROLLBACK; BEGIN``
    silently dropped the batch's earlier writes while the checkpoint moved past them: events never applied.
    """
    import sqlite3

    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    path = tmp_path / "read.db"

    def write(event: Event, tx: sqlite3.Connection) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS t (amount INTEGER)")
        tx.execute("INSERT INTO t VALUES (?)", (event.data["amount"],))
        if event.data["amount"] == 2:
            tx.execute(ending)
            tx.execute("BEGIN")

    p: Projection[sqlite3.Connection] = Projection("rogue", errors=ErrorPolicy(retries=0, then="park"))
    if kind == "sync":
        p.on("Deposited")(write)
    else:

        @p.on("Deposited")
        async def deposited(event: Event, tx: sqlite3.Connection) -> None:
            write(event, tx)

    with pytest.raises(ProjectionError, match="committed or rolled back"):
        await ProjectionRunner(es).add(p, SqliteSink(str(path))).catch_up(timeout=30)
    assert sqlite3.connect(path).execute("SELECT count(*) FROM es_checkpoints").fetchone() == (0,)


async def test_catch_up_or_run_on_a_runner_already_running_is_refused_and_the_run_goes_on(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """``catch_up()`` (or a second ``run()``) on the service's own running runner started a second run of every
    projection beside the first (two readers of each, duplicates on an at-least-once sink), then its stop ended
    the service's run too, or left it going with the runner's state muddled (its subscriptions lost to stop())."""
    seen: list[str] = []
    p: Projection[None] = Projection("p", {"Deposited": lambda e, _tx: seen.append(e.event_id)})
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    runner = ProjectionRunner(es, poll_interval=0.1).add(
        p, CheckpointStoreSink(SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db"))
    )
    task = asyncio.ensure_future(runner.run())
    try:
        async with asyncio.timeout(30):
            await runner.wait_caught_up("p")
        with pytest.raises(ConflictError, match="already running"):
            await runner.catch_up(timeout=10)
        with pytest.raises(ConflictError, match="already running"):
            await runner.run()
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})
        async with asyncio.timeout(30):
            await runner.wait_caught_up("p")
        assert not task.done()
    finally:
        await runner.stop()
        await asyncio.wait_for(task, 30)
    assert len(seen) == 2


@pytest.mark.parametrize("deadline", ["5", float("nan"), -1.0, True])
async def test_a_catch_up_timeout_that_is_no_number_of_seconds_is_refused(
    es: EventSourcingManager, tmp_path: Path, deadline: Any
) -> None:
    """``catch_up(timeout="5")`` crashed with a bare ``TypeError`` after starting the run; NaN (or ``True``) ran
    without a deadline; a negative one raised ``TimeoutError`` as if the projections had been too slow."""
    p: Projection[None] = Projection("p", {"Deposited": lambda _e, _tx: None})
    runner = ProjectionRunner(es).add(p, CheckpointStoreSink(SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")))
    with pytest.raises(ValidationError, match="timeout"):
        await runner.catch_up(timeout=deadline)


async def test_an_unknown_projection_name_is_a_not_found_error(es: EventSourcingManager, tmp_path: Path) -> None:
    """``reset("typo")`` and ``wait_caught_up("typo")`` raised a bare ``KeyError`` from the runner's dict."""
    p: Projection[None] = Projection("orders", {"Deposited": lambda _e, _tx: None})
    runner = ProjectionRunner(es).add(p, CheckpointStoreSink(SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")))
    with pytest.raises(NotFoundError, match="orders"):
        await runner.reset("order")
    with pytest.raises(NotFoundError, match="orders"):
        await runner.wait_caught_up("order")


@pytest.mark.parametrize("url", ["", None, 123, "dir/"])
def test_a_sqlite_sink_that_names_no_file_is_refused(url: Any) -> None:
    """``SqliteSink("")`` opened SQLite's private temporary database, deleted when the connection closes: the read
    model and its checkpoint vanished with every run (each replayed everything), where ``:memory:`` is refused.
    ``None`` or an int crashed with a bare ``TypeError``."""
    with pytest.raises(ConfigurationError, match="file"):
        SqliteSink(url)


async def test_a_sink_that_cannot_open_yet_is_waited_for_not_a_crash_of_the_run(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A sink unreachable when ``run()`` began (its folder not mounted yet, its database restarting) made ``run()``
    raise at once, every projection with it, though the same outage a moment later is logged and waited out. A
    projection added to a running service (a rebuild) whose sink could not open ended the service's run too."""
    seen: list[int] = []
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    later = tmp_path / "later"
    serving: Projection[Any] = Projection("serving", {"Deposited": lambda e, _tx: seen.append(e.data["amount"])})
    runner = ProjectionRunner(es, poll_interval=0.1, lease_wait=0.1)
    runner.add(serving, SqliteSink(str(later / "read.db")))
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait([task], timeout=0.5)
        assert not task.done(), task.exception()
        later.mkdir()  # the sink's folder appears: the projection starts
        async with asyncio.timeout(30):
            await runner.wait_caught_up("serving")
        rebuild: Projection[Any] = Projection("rebuild", {"Deposited": lambda _e, _tx: None})
        runner.add(rebuild, SqliteSink(str(tmp_path / "missing" / "read.db")))
        await asyncio.wait([task], timeout=0.5)
        assert not task.done(), task.exception()
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})
        async with asyncio.timeout(30):
            await runner.wait_caught_up("serving")
    finally:
        await runner.stop()
        await asyncio.wait_for(task, 30)
    assert seen == [1, 2]
