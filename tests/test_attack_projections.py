"""Attack review of projections: what a team running a read model in production relies on (SQLite)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import SqliteCheckpointStore
from eventsource.errors import ConfigurationError
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections import ErrorPolicy, Projection, ProjectionError, ProjectionRunner, SqliteSink

if TYPE_CHECKING:
    from pathlib import Path

    from eventsource.model import Event


def failing(attempts: threading.Event) -> Projection[sqlite3.Connection]:
    """A projection whose handler always fails, under a long retry schedule."""
    p: Projection[sqlite3.Connection] = Projection("failing", errors=ErrorPolicy(retries=8, backoff=2, max_backoff=10))

    @p.on("Deposited")
    def deposited(_event: Event, _tx: sqlite3.Connection) -> None:
        attempts.set()
        msg = "the read model's table is missing"
        raise RuntimeError(msg)

    return p


async def test_stop_during_a_retry_pause_ends_run_without_waiting_out_the_retries(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """``stop()`` (what Ctrl-C in ``run_sync`` and the facade's ``close()`` call) ends ``run()`` promptly.

    A handler failing under a long retry schedule kept ``run()`` going through every pause: a deployment's
    shutdown (or a Ctrl-C) hung for as long as the schedule.
    """
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    attempts = threading.Event()
    runner = ProjectionRunner(es).add(failing(attempts), SqliteSink(str(tmp_path / "read.db")))
    task = asyncio.ensure_future(runner.run())
    async with asyncio.timeout(10):
        await asyncio.to_thread(attempts.wait)  # the first attempt failed: the runner pauses before the next
    await runner.stop()
    async with asyncio.timeout(15):  # (a hang bound: the retry schedule is over a minute)
        await task  # stopped, not failed: the checkpoint stays before the event
    assert runner.states["failing"].position is None


async def test_catch_up_timeout_is_kept_while_a_handler_is_being_retried(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """``catch_up(timeout=...)`` raises ``TimeoutError`` about when it expires, not after the retry schedule."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    attempts = threading.Event()
    runner = ProjectionRunner(es).add(failing(attempts), SqliteSink(str(tmp_path / "read.db")))
    bound = asyncio.timeout(15)  # (a hang bound: the retry schedule is over a minute)
    with pytest.raises(TimeoutError):
        async with bound:
            await runner.catch_up(timeout=1)
    assert not bound.expired(), "catch_up ran on past its timeout, into the retry schedule"


class Tally:
    """A handler object whose ``__call__`` is a coroutine function (``inspect`` calls the object itself sync)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, event: Event, tx: sqlite3.Connection) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS tally (amount INTEGER)")
        tx.execute("INSERT INTO tally VALUES (?)", (event.data["amount"],))
        self.seen.append(event.data["amount"])


def tally_rows(path: Path) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT amount FROM tally ORDER BY amount").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


async def test_a_handler_object_with_a_coroutine_call_is_awaited_not_dropped(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A class-based handler with ``async def __call__`` was taken for a plain one: it was called on the sync
    path, its coroutine never awaited, and the checkpoint committed past events nothing applied."""
    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    tally = Tally()
    p: Projection[sqlite3.Connection] = Projection("tally", {"Deposited": tally})
    sink_db = tmp_path / "read.db"
    await ProjectionRunner(es).add(p, SqliteSink(str(sink_db))).catch_up(timeout=30)
    assert tally.seen == [1, 2]
    assert tally_rows(sink_db) == [(1,), (2,)]


async def test_a_plain_handler_returning_a_coroutine_stops_the_runner_before_the_checkpoint_moves(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A plain function that returns a coroutine (a wrapper around an ``async def``) cannot run on the sync
    path: it stops the runner, and the checkpoint stays before the event, instead of passing it unapplied."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    tally = Tally()

    def wrapped(event: Event, tx: sqlite3.Connection) -> Any:
        return tally(event, tx)

    p: Projection[sqlite3.Connection] = Projection("wrapped", {"Deposited": wrapped})
    sink_db = tmp_path / "read.db"
    with pytest.raises(ProjectionError, match="async def"):
        await ProjectionRunner(es).add(p, SqliteSink(str(sink_db))).catch_up(timeout=30)
    cp = await SqliteCheckpointStore(f"sqlite:///{sink_db}").get("wrapped", es.get_provider().checkpoint_source)
    assert cp is None


async def test_park_moves_past_an_event_too_large_to_be_carried_whole_into_the_dead_letter_stream(
    tmp_path: Path,
) -> None:
    """An event near ``max_event_size`` cannot be parked with its data (the parked event wraps it and adds the
    error): the append was refused and ``run()`` raised, on every restart, so ``then="park"`` never moved past
    it. It is parked without its data instead (its id, stream and position still say where it is)."""
    m = EventSourcingManager(
        {
            "providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}},
            "default_provider": "main",
            "max_event_size": 2000,
        },
        host=PluginHost(),
    )
    await m.connect()
    try:
        await m.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1, "note": "x" * 1900})
        await m.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2, "note": ""})
        applied: list[int] = []

        def deposited(event: Event, _tx: sqlite3.Connection) -> None:
            if event.data["note"]:
                raise ValueError("y" * 5000)  # a long error message too
            applied.append(event.data["amount"])

        p: Projection[sqlite3.Connection] = Projection(
            "big", {"Deposited": deposited}, errors=ErrorPolicy(retries=0, then="park")
        )
        runner = ProjectionRunner(m).add(p, SqliteSink(str(tmp_path / "read.db")))
        await runner.catch_up(timeout=30)
        assert applied == [2]
        assert runner.states["big"].parked == 1
        [parked] = [e async for e in m.read_stream("dead-letter-big")]
        original, _ = [e async for e in m.read_stream("acc-1")]
        assert parked.data["event_id"] == original.event_id
        assert parked.data["position"] == original.position
        assert parked.data["data"] is None
        assert parked.data["error"].startswith("ValueError: yyy")
    finally:
        await m.close()


async def test_catch_up_returns_once_the_runner_holding_the_lease_applied_everything(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """A one-off ``catch_up()`` (a deploy step, a cron job) beside the service, both with ``lease=``.

    The service holds the projection's lease and applies everything, yet the job's ``catch_up()`` waited for
    a lease it never got: without a timeout it never returned. It returns once the sink's checkpoint shows
    every event stored at the call applied, applying nothing itself.
    """
    lease = f"sqlite:///{tmp_path}/events.db"
    sink = str(tmp_path / "read.db")
    applied: list[str] = []

    def projection(who: str) -> Projection[sqlite3.Connection]:
        p: Projection[sqlite3.Connection] = Projection("shared")

        @p.on("Deposited")
        def deposited(_event: Event, _tx: sqlite3.Connection) -> None:
            applied.append(who)

        return p

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    service = ProjectionRunner(es, lease=lease, poll_interval=0.1, lease_wait=0.1).add(
        projection("service"), SqliteSink(sink)
    )
    task = asyncio.ensure_future(service.run())
    try:
        async with asyncio.timeout(10):
            await service.wait_caught_up("shared")
        await es.append_event(stream_id="acc-2", event_type="Deposited", data={"amount": 2})
        await es.append_event(stream_id="acc-2", event_type="Other", data={})  # passed over by the service
        job = ProjectionRunner(es, lease=lease, poll_interval=0.1, lease_wait=0.1).add(
            projection("job"), SqliteSink(sink)
        )
        await job.catch_up(timeout=10)
        assert applied == ["service", "service"]
    finally:
        await service.stop()
        await task


RESET_AND_DIE = """
import asyncio, os, signal, sqlite3, sys
from eventsource.checkpoints import SqliteCheckpointStore
from eventsource.manager import EventSourcingManager
from eventsource.plugins import PluginHost
from eventsource.projections import CheckpointStoreSink, Projection, ProjectionRunner

async def main():
    events, cps, model = sys.argv[1:4]
    es = EventSourcingManager({"providers": {"main": {"url": events}}, "default_provider": "main"}, host=PluginHost())
    await es.connect()
    p = Projection("ledger", {"Deposited": lambda e, tx: None})

    @p.on_reset
    def empty(_tx):
        db = sqlite3.connect(model)
        db.execute("DELETE FROM ledger")
        db.commit()
        db.close()
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies right after the hook

    await ProjectionRunner(es).add(p, CheckpointStoreSink(SqliteCheckpointStore(cps))).reset("ledger", force=True)

asyncio.run(main())
"""


def ledger(model: Path) -> Projection[None]:
    """At least once: each event is written once, deduplicated on its id, outside any sink transaction."""
    p: Projection[None] = Projection("ledger")

    @p.on("Deposited")
    def deposited(event: Event, _tx: None) -> None:
        db = sqlite3.connect(model)
        db.execute("CREATE TABLE IF NOT EXISTS ledger (event_id TEXT PRIMARY KEY, amount INTEGER)")
        db.execute("INSERT OR IGNORE INTO ledger VALUES (?, ?)", (event.event_id, event.data["amount"]))
        db.commit()
        db.close()

    return p


async def test_a_reset_of_an_at_least_once_projection_killed_after_its_hook_replays_everything(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """``CheckpointStoreSink.reset`` ran the hook, then deleted the checkpoint: a crash between the two left an
    emptied read model behind a checkpoint at the end, and nothing ever applied those events again. With
    the checkpoint deleted first, a crash at any point replays, which an at-least-once handler absorbs."""
    from eventsource.projections import CheckpointStoreSink

    model, cps = tmp_path / "model.db", f"sqlite:///{tmp_path}/cp.db"
    for n in (1, 2):
        await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": n})
    await ProjectionRunner(es).add(ledger(model), CheckpointStoreSink(SqliteCheckpointStore(cps))).catch_up(timeout=30)
    assert tally_rows_of(model) == [(1,), (2,)]
    events = f"sqlite:///{tmp_path}/events.db"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", RESET_AND_DIE, events, cps, str(model))
    assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
    await ProjectionRunner(es).add(ledger(model), CheckpointStoreSink(SqliteCheckpointStore(cps))).catch_up(timeout=30)
    assert tally_rows_of(model) == [(1,), (2,)]


def tally_rows_of(model: Path) -> list[Any]:
    db = sqlite3.connect(model)
    try:
        return db.execute("SELECT amount FROM ledger ORDER BY amount").fetchall()
    finally:
        db.close()


async def test_a_long_retry_schedule_keeps_retrying_past_a_thousand_attempts(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """The pause was ``backoff * 2 ** (attempt - 1)`` before the cap: from attempt 1025 on that is too large for a
    float, and ``run()`` died of an ``OverflowError`` instead of retrying (or parking, or stopping)."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    calls: list[int] = []

    def flaky(_event: Event, _tx: sqlite3.Connection) -> None:
        calls.append(1)
        if len(calls) <= 1100:
            msg = "a dependency is down"
            raise RuntimeError(msg)

    policy = ErrorPolicy(retries=5000, backoff=0.0, max_backoff=0.0)
    p: Projection[sqlite3.Connection] = Projection("flaky", {"Deposited": flaky}, errors=policy)
    await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "read.db"))).catch_up(timeout=120)
    assert len(calls) == 1101


@pytest.mark.parametrize("stream_id", [None, "acc-1"], ids=["all-streams", "one-stream"])
async def test_an_event_of_a_type_the_projection_does_not_handle_never_stops_it_by_failing_to_decode(
    es: EventSourcingManager, tmp_path: Path, stream_id: str | None
) -> None:
    """An all-streams projection reads only its types (filtered on stored fields, before decoding); a one-stream
    projection decoded every event of its stream, so a broken upcaster of a type it does not handle stopped it."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    await es.append_event(stream_id="acc-1", event_type="Noted", data={"text": "hi"})
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 3})

    def broken(_event: Event) -> Event:
        msg = "no key for this note"
        raise KeyError(msg)

    es.register_upcaster("Noted", broken)
    seen: list[int] = []
    p: Projection[sqlite3.Connection] = Projection("amounts", stream_id=stream_id)

    @p.on("Deposited")
    def deposited(event: Event, _tx: sqlite3.Connection) -> None:
        seen.append(event.data["amount"])

    await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "read.db"))).catch_up(timeout=30)
    assert seen == [1, 3]


@pytest.mark.parametrize("stream_id", [None, "acc-1"], ids=["all-streams", "one-stream"])
@pytest.mark.parametrize("how", ["rename", "to_type"])
async def test_a_handler_under_a_name_no_event_is_read_as_is_refused_when_added(
    es: EventSourcingManager, tmp_path: Path, stream_id: str | None, how: str
) -> None:
    """Events stored as ``MoneyIn`` are read as ``Deposited`` (a rename, or an upcaster's ``to_type``): a handler
    of ``MoneyIn`` is never called. A one-stream projection passed every such event over in silence (its checkpoint
    moved past them); an all-streams one failed only when run, blaming a subscription filter."""
    await es.append_event(stream_id="acc-1", event_type="MoneyIn", data={"amount": 1})
    if how == "rename":
        es.rename_event_type("MoneyIn", "Deposited")
    else:
        es.add_upcaster("MoneyIn", 1, lambda data: data, to_type="Deposited")
    p: Projection[sqlite3.Connection] = Projection("old-name", stream_id=stream_id)
    p.on("MoneyIn")(lambda _event, _tx: None)
    with pytest.raises(ConfigurationError, match=r"'MoneyIn'.*read as 'Deposited'"):
        ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "read.db")))


async def test_a_rename_registered_after_add_stops_a_one_stream_projection_of_the_old_name(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """The refusal holds when the rename comes after ``add()``: ``run()`` raises before reading, and the checkpoint
    stays before the events, instead of moving past them with the handler never called."""
    await es.append_event(stream_id="acc-1", event_type="MoneyIn", data={"amount": 1})
    seen: list[Event] = []
    p: Projection[sqlite3.Connection] = Projection(
        "old-name", {"MoneyIn": lambda e, _tx: seen.append(e)}, stream_id="acc-1"
    )
    sink_db = tmp_path / "read.db"
    runner = ProjectionRunner(es).add(p, SqliteSink(str(sink_db)))
    es.rename_event_type("MoneyIn", "Deposited")
    with pytest.raises(ConfigurationError, match=r"'MoneyIn'.*read as 'Deposited'"):
        await runner.catch_up(timeout=30)
    assert seen == []
    cp = await SqliteCheckpointStore(f"sqlite:///{sink_db}").get("old-name", es.get_provider().checkpoint_source)
    assert cp is None


@pytest.mark.parametrize("stream_id", [None, "acc-1"], ids=["all-streams", "one-stream"])
async def test_a_handler_of_the_new_name_sees_events_stored_under_the_old_one_as_read_stream_does(
    es: EventSourcingManager, tmp_path: Path, stream_id: str | None
) -> None:
    """The filter on stored types and the dispatch on read types agree with ``read_stream``: one handler of the
    new name gets the events stored under either name, as the new type; an unrelated type stays filtered out."""
    await es.append_event(stream_id="acc-1", event_type="MoneyIn", data={"amount": 1})
    await es.append_event(stream_id="acc-1", event_type="Noted", data={})
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 2})
    es.rename_event_type("MoneyIn", "Deposited")
    seen: list[tuple[str, int]] = []
    p: Projection[sqlite3.Connection] = Projection("new-name", stream_id=stream_id)
    p.on("Deposited")(lambda e, _tx: seen.append((e.event_type, e.data["amount"])))
    await ProjectionRunner(es).add(p, SqliteSink(str(tmp_path / "read.db"))).catch_up(timeout=30)
    read = [(e.event_type, e.data["amount"]) async for e in es.read_stream("acc-1") if e.event_type == "Deposited"]
    assert seen == read == [("Deposited", 1), ("Deposited", 2)]


@pytest.mark.parametrize("way", ["request_stop", "stop"])
async def test_a_stop_asked_for_before_run_starts_ends_that_run_at_once(
    es: EventSourcingManager, tmp_path: Path, way: str
) -> None:
    """``request_stop()`` (a signal handler, another thread) or ``stop()`` that came before ``run()`` began was lost:
    ``run()`` cleared it on entry and ran until the next stop. It ends that run at once; the next run runs."""
    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    tally = Tally()
    runner = ProjectionRunner(es, poll_interval=0.05).add(
        Projection("tally", {"Deposited": tally}), SqliteSink(str(tmp_path / "read.db"))
    )
    task = asyncio.ensure_future(runner.run())  # scheduled, not begun
    if way == "request_stop":
        runner.request_stop()
    else:
        await runner.stop()
    async with asyncio.timeout(15):  # (a hang bound: without the fix run() never returns)
        await task
    assert tally.seen == []
    await runner.catch_up(timeout=30)  # the stop was used up by the run it came before
    assert tally.seen == [1]


def test_request_stop_before_run_sync_ends_it_at_once(tmp_path: Path) -> None:
    """The sync facade's way: ``request_stop()`` from another thread before ``run_sync()`` got going was lost."""
    from eventsource.sync import SyncEventSourcingManager

    config = {"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}, "default_provider": "main"}
    with SyncEventSourcingManager(config, host=PluginHost()) as es:
        es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
        runner = ProjectionRunner(es).add(
            Projection("noop", {"Deposited": lambda _e, _tx: None}), SqliteSink(str(tmp_path / "read.db"))
        )
        runner.request_stop()
        rescued = threading.Event()

        def rescue() -> None:  # (a hang bound: the lost stop is asked for again, and the test fails)
            rescued.set()
            runner.request_stop()

        bound = threading.Timer(15, rescue)
        bound.start()
        try:
            runner.run_sync()
        finally:
            bound.cancel()
        assert not rescued.is_set(), "run_sync() ran on past the stop asked for before it"


async def test_two_overlapping_runners_that_both_park_an_event_park_it_once(
    es: EventSourcingManager, tmp_path: Path
) -> None:
    """Two runners of one projection without a lease both fail on an event and both park it (an at-least-once sink
    lets their handlers overlap): the parked event's id derives from the projection, source and event id, so the
    second append is an identical retry and the dead-letter stream holds the event once."""
    from eventsource.projections import CheckpointStoreSink

    await es.append_event(stream_id="acc-1", event_type="Deposited", data={"amount": 1})
    both_in = asyncio.Barrier(2)

    def projection(who: str) -> Projection[None]:
        async def deposited(_event: Event, _tx: None) -> None:
            await both_in.wait()  # both runners are inside the handler before either fails
            msg = f"runner {who} cannot take it"
            raise RuntimeError(msg)

        return Projection("shared", {"Deposited": deposited}, errors=ErrorPolicy(retries=0, then="park"))

    cps = SqliteCheckpointStore(f"sqlite:///{tmp_path}/cp.db")
    runners = [ProjectionRunner(es, lease_wait=0.05).add(projection(w), CheckpointStoreSink(cps)) for w in "ab"]
    async with asyncio.timeout(30):
        await asyncio.gather(*(r.catch_up() for r in runners))
    assert [r.states["shared"].parked for r in runners] == [1, 1]  # both parked it
    parked = [e async for e in es.read_stream("dead-letter-shared")]
    assert len(parked) == 1
