"""``eventsource demo``: the quick-start flow on the configured store, each step shown as it runs.

It creates a stream, appends one event with every envelope field and a batch, shows a stale writer being
refused, reads the stream back, snapshots the folded state and prints the store's statistics; a store that
declares it cannot keep snapshots or statistics gets a note instead of a failure. Run twice on one store,
it picks a fresh stream id; with ``--json`` each step is one JSON line.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsource.cli.commands.stats import print_stats
from eventsource.cli.exitcodes import EXIT_OK
from eventsource.cli.output import short, when
from eventsource.errors import ConcurrencyError, EventSourceError, StreamExistsError, UnsupportedOperationError

if TYPE_CHECKING:
    from eventsource.cli.parser import Commands
    from eventsource.cli.session import Session
    from eventsource.manager import EventSourcingManager
    from eventsource.model import AppendEventResponse, AppendEventsBatchResponse


def register(commands: Commands) -> None:
    """Add the ``demo`` command."""
    commands.add(
        "demo", "run the quick-start flow (create a stream, append, read, snapshot, stats) and show each step", demo
    )


def demo(session: Session) -> int:
    """Run the quick-start flow on the configured store."""
    return session.with_manager(lambda m: _demo(session, m))


async def _demo(session: Session, m: EventSourcingManager) -> int:
    out = session.out
    provider = m.get_default_provider()
    url = session.store_label(m)
    out.line(f"eventsource demo on {url} ({provider.kind} provider)")
    out.json({"step": "store", "url": url, "kind": provider.kind})
    tour = _Tour(session, m)
    await tour.create_stream()
    created = await tour.append_one()
    res = await tour.append_batch(created.version)
    await tour.stale_writer(created.version)
    state, count = await tour.read_back(created.event_id)
    snapshots = await tour.snapshot(state, res.last_version)
    await tour.stats()
    tour.finish(provider.kind, count, snapshots=snapshots)
    return EXIT_OK


class _Tour:
    """The demo's steps, in order; they share the manager, the output, the step number and the stream id."""

    def __init__(self, session: Session, m: EventSourcingManager) -> None:
        self.session, self.m, self.out = session, m, session.out
        self.step = 0
        self.stream_id = "user-events"

    def heading(self, text: str) -> None:
        self.step += 1
        self.out.line()
        self.out.line(f"{self.step}. {text}")

    async def create_stream(self) -> None:
        out = self.out
        self.heading(f"create stream {self.stream_id!r}: name, aggregate User/user-123, metadata")
        try:
            info = await _create(self.m, self.stream_id)
        except StreamExistsError:
            taken = self.stream_id
            self.stream_id = f"user-events-{uuid.uuid4().hex[:8]}"
            out.line(f"   {taken!r} exists from an earlier run; using {self.stream_id!r} instead")
            info = await _create(self.m, self.stream_id)
        out.line(f"   -> created at version {info.version}, metadata {short(info.metadata)}")
        out.json({"step": "create_stream", "stream": info})

    async def append_one(self) -> AppendEventResponse:
        """One event with every envelope field."""
        self.heading(
            "append UserCreated (expected version 0) with metadata, correlation, causation, user and tenant ids"
        )
        created = await self.m.append_event(
            stream_id=self.stream_id,
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
        self.out.line(
            f"   -> version {created.version}, global position {created.position}, event id {created.event_id}"
        )
        self.out.json({"step": "append_event", "result": created})
        return created

    async def append_batch(self, expected_version: int) -> AppendEventsBatchResponse:
        """A batch, all or nothing."""
        from eventsource.model import EventData

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
        self.heading(
            f"append a batch of {len(batch)} events atomically (expected version {expected_version}): "
            + ", ".join(e.event_type for e in batch)
        )
        res = await self.m.append_events_batch(
            stream_id=self.stream_id, events=batch, expected_version=expected_version
        )
        self.out.line(
            f"   -> versions {res.first_version}-{res.last_version}, positions {res.positions[0]}-{res.positions[-1]}"
        )
        self.out.json({"step": "append_events_batch", "result": res})
        return res

    async def stale_writer(self, stale_version: int) -> None:
        """Optimistic concurrency: an append expecting an old version is refused."""
        self.heading(f"a stale writer appends expecting version {stale_version}")
        try:
            await self.m.append_event(
                stream_id=self.stream_id, event_type="UserDeleted", data={}, expected_version=stale_version
            )
        except ConcurrencyError as e:
            self.out.line(
                f"   -> refused with ConcurrencyError (expected {e.expected}, actual {e.actual}); nothing was written"
            )
            self.out.json({"step": "conflict", "error": e.to_dict()})
        else:  # pragma: no cover - would be a store bug
            msg = "the store accepted an append with a stale expected version"
            raise EventSourceError(msg)

    async def read_back(self, first_event_id: str) -> tuple[dict[str, Any], int]:
        """Every event, folded into the user's state; then the first one again by id. Returns (state, count)."""
        out = self.out
        self.heading("read the stream back")
        state: dict[str, Any] = {}
        count = 0
        async for ev in self.m.read_stream(self.stream_id):
            count += 1
            state.update({k: v for k, v in ev.data.items() if k not in ("ip", "created_at")})
            out.line(f"   v{ev.version}  {ev.event_type:<20} {short(ev.data)}")
            out.json({"step": "read", "event": ev})
        first = await self.m.get_event_by_id(first_event_id, stream_id=self.stream_id)
        out.line(
            f"   {count} events; event {first.version} has metadata {short(first.metadata)}, correlation "
            f"{first.correlation_id}, causation {first.causation_id}, user {first.user_id}, tenant {first.tenant_id}"
        )
        return state, count

    async def snapshot(self, state: dict[str, Any], version: int) -> bool:
        """Snapshot the state and read it back; ``False`` when the store declares it keeps no snapshots."""
        out = self.out
        self.heading(f"snapshot the folded user state at version {version}")
        try:
            snap = await self.m.create_snapshot(
                stream_id=self.stream_id,
                data=state,
                metadata={"description": "user state", "version": "1.0"},
                aggregate_id="user-123",
            )
        except UnsupportedOperationError as e:
            out.line(f"   -> skipped: {e} (declared in its capabilities)")
            out.json({"step": "create_snapshot", "unsupported": e.to_dict()})
            return False
        out.line(f"   -> snapshot {snap.snapshot_id} at version {snap.version}")
        out.json({"step": "create_snapshot", "result": snap})
        self.heading("read the latest snapshot back")
        got = await self.m.get_snapshot(self.stream_id)
        out.line(f"   -> version {got.version}, created {when(got.created_at)}: {short(got.data)}")
        out.json({"step": "get_snapshot", "snapshot": got})
        return True

    async def stats(self) -> None:
        """The store's statistics, or a note when it declares it keeps none."""
        out = self.out
        self.heading("store statistics")
        try:
            stats = await self.m.get_stats()
        except UnsupportedOperationError as e:
            out.line(f"   -> skipped: {e} (declared in its capabilities)")
            out.json({"step": "stats", "unsupported": e.to_dict()})
        else:
            for name, st in stats.items():
                print_stats(out, name, self.m.get_provider(name).kind, st, indent="   ")
            out.json({"step": "stats", "stats": stats})

    def finish(self, kind: str, count: int, *, snapshots: bool) -> None:
        """What the stream now holds, and (on a store that outlives the process) how to read it again."""
        out, session = self.out, self.session
        out.line()
        holds = f"{count} events and a snapshot" if snapshots else f"{count} events"
        out.line(f"done. Stream {self.stream_id!r} now holds {holds}.")
        if kind != "memory":
            again = "".join(
                f" {flag} {value}"
                for flag, value in (
                    ("--store", session.args.store and session.shown(session.args.store)),
                    ("--config", session.args.config),
                )
                if value
            )
            out.line(f"Read it again with:  eventsource{again} read {self.stream_id}")


async def _create(m: EventSourcingManager, stream_id: str) -> Any:
    return await m.create_stream(
        stream_id=stream_id,
        name="User Events Stream",
        aggregate_id="user-123",
        aggregate_type="User",
        metadata={"description": "Stream for user-related events", "version": "1.0"},
    )
