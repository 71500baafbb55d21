"""Odd ids through the public manager API: each result must be what SQLite gives for the same call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conftest import _streams_of, unique_store
from eventsource import EventSourcingManager

if TYPE_CHECKING:
    from pathlib import Path


def _config(url: str, **extra: Any) -> dict[str, Any]:
    settings = unique_store() if url.startswith("nats") else {}
    return {"providers": {"main": {"url": url, "settings": settings}}, **extra}


async def _batch_to_a_long_id(url: str) -> list[tuple[int, int]]:
    """A batch of 1,000 small events to a 1,024-character stream id (the default limit), read back whole."""
    sid = "y" * 1024
    async with EventSourcingManager(_config(url)) as m:
        try:
            res = await m.append_events_batch(
                stream_id=sid, events=[{"event_type": "T", "data": {"i": i}} for i in range(1000)], expected_version=0
            )
            assert res.last_version == 1000
            page = await m.get_events_by_stream(sid, limit=1000)
            everything = await m.get_events(limit=1000)
            by_id = await m.get_event_by_id(page.events[-1].event_id)
            listed = await m.list_streams()
            assert [s.stream_id for s in listed.streams] == [sid]
            assert by_id.stream_id == sid
            assert [e.stream_id for e in everything.events] == [sid] * 1000
            return [(e.version, e.data["i"]) for e in page.events]
        finally:
            if url.startswith("nats"):
                await m.get_provider("main").drop_store()  # type: ignore[attr-defined]


async def test_a_batch_to_a_long_stream_id_fits_as_it_does_on_sqlite(machine_nats_url: str, tmp_path: Path) -> None:
    """A stream id past 150 characters is hashed in the subject and carried in the message; an envelope carried
    it in the head of every event, so 1,000 empty events to a 1,024-character id (1 MiB of repeated id) were
    refused as larger than max_payload, where SQLite stores them."""
    want = [(v, v - 1) for v in range(1, 1001)]
    assert await _batch_to_a_long_id(f"sqlite:///{tmp_path}/events.db") == want
    assert await _batch_to_a_long_id(machine_nats_url) == want


async def test_stream_metadata_at_max_payload_is_refused_or_stored_never_a_dropped_connection(
    machine_nats_url: str,
) -> None:
    """The info record is a KV create, whose expected-sequence header the server counts against max_payload
    and nats-py does not: metadata filling the record to just under max_payload was sent, the server closed
    the connection, and the call (with every other one in flight) failed as "lost its connection"."""
    from eventsource.errors import ValidationError

    config = _config(machine_nats_url)
    settings = config["providers"]["main"]["settings"]
    try:
        async with EventSourcingManager(config) as m:
            p: Any = m.get_provider("main")
            # the record is the metadata plus about 200 bytes of id, timestamps and counters
            sizes = [p._conn.max_payload - 9000, *range(p._conn.max_payload - 260, p._conn.max_payload - 150, 6)]
            for size in sizes:
                sid = f"s{size}"
                try:
                    await m.create_stream(stream_id=sid, metadata={"x": "a" * size})
                except ValidationError as e:
                    assert size > sizes[0]
                    assert "metadata" in str(e)
                    assert not await m.stream_exists(sid)
                else:
                    assert len((await m.get_stream_info(sid)).metadata["x"]) == size
                assert p._conn.nc.stats["reconnects"] == 0, f"the server closed the connection at {size}"
    finally:  # on its own connection: the provider's may be the one the server closed
        await _streams_of(machine_nats_url, settings["stream"], settings["subject_prefix"], delete=True)


async def test_retention_deletes_many_old_events_behind_a_newer_first_one_as_sqlite_does(
    machine_nats_url: str, tmp_path: Path
) -> None:
    """Every message deleted one by one (an older event behind a kept newer one: imports, backfills) was listed
    in the stream's info record until a leading run passed it, all of a run's in the one write: the record grew
    by about 8 bytes a message, past max_payload (about 120,000 messages with no metadata, fewer than 1,000 with
    metadata near its limit), and retention failed on the stream, deleting nothing, run after run."""
    from datetime import UTC, datetime, timedelta

    async def run(url: str, config: dict[str, Any]) -> tuple[int, list[int], int]:
        async with EventSourcingManager(config) as m:
            await m.create_stream(stream_id="s", metadata={"x": "a" * (1024 * 1024 - 8192 - 400)})
            await m.append_event(stream_id="s", event_type="New", data={})
            old = datetime.now(UTC) - timedelta(days=30)
            for _ in range(1500):  # another stream's messages in between: the sequences are not consecutive
                await m.append_event(stream_id="s", event_type="Old", data={}, timestamp=old)
                await m.append_event(stream_id="o", event_type="New", data={})
            await m.append_event(stream_id="s", event_type="New", data={})  # NATS keeps a stream's last message
            report = await m.apply_retention([{"policy": "max_age", "max_age": "1d"}])
            info = await m.get_stream_info("s")
            versions = [e.version for e in (await m.get_events_by_stream("s", limit=2000)).events]
            return report.outcomes[0].deleted_events, versions, info.event_count

    want = (1500, [1, 1502], 2)
    assert await run("sqlite", {"providers": {"main": {"url": f"sqlite:///{tmp_path}/events.db"}}}) == want
    config = _config(machine_nats_url)
    settings = config["providers"]["main"]["settings"]
    try:
        assert await run("nats", config) == want
    finally:
        await _streams_of(machine_nats_url, settings["stream"], settings["subject_prefix"], delete=True)
