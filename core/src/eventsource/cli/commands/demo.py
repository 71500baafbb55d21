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


def register(commands: Commands) -> None:
    """Add the ``demo`` command."""
    commands.add(
        "demo", "run the quick-start flow (create a stream, append, read, snapshot, stats) and show each step", demo
    )


def demo(session: Session) -> int:
    """Run the quick-start flow on the configured store."""
    return session.with_manager(lambda m: _demo(session, m))


async def _demo(session: Session, m: EventSourcingManager) -> int:
    from eventsource.model import EventData

    out = session.out
    provider = m.get_default_provider()
    url = session.store_label(m)
    out.line(f"eventsource demo on {url} ({provider.kind} provider)")
    out.json({"step": "store", "url": url, "kind": provider.kind})
    step = 0

    def heading(text: str) -> None:
        nonlocal step
        step += 1
        out.line()
        out.line(f"{step}. {text}")

    # the stream
    stream_id = "user-events"
    heading(f"create stream {stream_id!r}: name, aggregate User/user-123, metadata")
    try:
        info = await _create(m, stream_id)
    except StreamExistsError:
        taken = stream_id
        stream_id = f"user-events-{uuid.uuid4().hex[:8]}"
        out.line(f"   {taken!r} exists from an earlier run; using {stream_id!r} instead")
        info = await _create(m, stream_id)
    out.line(f"   -> created at version {info.version}, metadata {short(info.metadata)}")
    out.json({"step": "create_stream", "stream": info})

    # one event with every envelope field
    heading("append UserCreated (expected version 0) with metadata, correlation, causation, user and tenant ids")
    created = await m.append_event(
        stream_id=stream_id,
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
    out.line(f"   -> version {created.version}, global position {created.position}, event id {created.event_id}")
    out.json({"step": "append_event", "result": created})

    # a batch, all or nothing
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
    heading(
        f"append a batch of {len(batch)} events atomically (expected version {created.version}): "
        + ", ".join(e.event_type for e in batch)
    )
    res = await m.append_events_batch(stream_id=stream_id, events=batch, expected_version=created.version)
    out.line(
        f"   -> versions {res.first_version}-{res.last_version}, positions {res.positions[0]}-{res.positions[-1]}"
    )
    out.json({"step": "append_events_batch", "result": res})

    # optimistic concurrency
    heading(f"a stale writer appends expecting version {created.version}")
    try:
        await m.append_event(
            stream_id=stream_id, event_type="UserDeleted", data={}, expected_version=created.version
        )
    except ConcurrencyError as e:
        out.line(
            f"   -> refused with ConcurrencyError (expected {e.expected}, actual {e.actual}); nothing was written"
        )
        out.json({"step": "conflict", "error": e.to_dict()})
    else:  # pragma: no cover - would be a store bug
        msg = "the store accepted an append with a stale expected version"
        raise EventSourceError(msg)

    # read back
    heading("read the stream back")
    state: dict[str, Any] = {}
    count = 0
    async for ev in m.read_stream(stream_id):
        count += 1
        state.update({k: v for k, v in ev.data.items() if k not in ("ip", "created_at")})
        out.line(f"   v{ev.version}  {ev.event_type:<20} {short(ev.data)}")
        out.json({"step": "read", "event": ev})
    first = await m.get_event_by_id(created.event_id, stream_id=stream_id)
    out.line(
        f"   {count} events; event {first.version} has metadata {short(first.metadata)}, correlation "
        f"{first.correlation_id}, causation {first.causation_id}, user {first.user_id}, tenant {first.tenant_id}"
    )

    # snapshots (a store may declare that it cannot keep them)
    heading(f"snapshot the folded user state at version {res.last_version}")
    try:
        snap = await m.create_snapshot(
            stream_id=stream_id,
            data=state,
            metadata={"description": "user state", "version": "1.0"},
            aggregate_id="user-123",
        )
    except UnsupportedOperationError as e:
        snapshots = False
        out.line(f"   -> skipped: {e} (declared in its capabilities)")
        out.json({"step": "create_snapshot", "unsupported": e.to_dict()})
    else:
        snapshots = True
        out.line(f"   -> snapshot {snap.snapshot_id} at version {snap.version}")
        out.json({"step": "create_snapshot", "result": snap})
        heading("read the latest snapshot back")
        got = await m.get_snapshot(stream_id)
        out.line(f"   -> version {got.version}, created {when(got.created_at)}: {short(got.data)}")
        out.json({"step": "get_snapshot", "snapshot": got})

    # stats
    heading("store statistics")
    try:
        stats = await m.get_stats()
    except UnsupportedOperationError as e:
        out.line(f"   -> skipped: {e} (declared in its capabilities)")
        out.json({"step": "stats", "unsupported": e.to_dict()})
    else:
        for name, st in stats.items():
            print_stats(out, name, m.get_provider(name).kind, st, indent="   ")
        out.json({"step": "stats", "stats": stats})

    out.line()
    holds = f"{count} events and a snapshot" if snapshots else f"{count} events"
    out.line(f"done. Stream {stream_id!r} now holds {holds}.")
    if provider.kind != "memory":
        again = "".join(
            f" {flag} {value}"
            for flag, value in (
                ("--store", session.args.store and session.shown(session.args.store)),
                ("--config", session.args.config),
            )
            if value
        )
        out.line(f"Read it again with:  eventsource{again} read {stream_id}")
    return EXIT_OK

async def _create(m: EventSourcingManager, stream_id: str) -> Any:
    return await m.create_stream(
        stream_id=stream_id,
        name="User Events Stream",
        aggregate_id="user-123",
        aggregate_type="User",
        metadata={"description": "Stream for user-related events", "version": "1.0"},
    )
