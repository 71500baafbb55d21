"""``create_store``: a command that only reads never creates a JetStream stream or KV bucket.

``eventsource stats`` with a mistyped ``stream`` (or ``subject_prefix``) setting created a stream and four
buckets on the server and reported an empty store. With ``create_store`` off (what every read-only command
passes) a store with anything missing is refused, and nothing is created or completed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import _streams_of, dispose, open_provider, unique_store
from eventsource.errors import StoreNotFoundError
from eventsource.plugins import PluginHost
from eventsource.testing.read_only import READ_ONLY_COMMANDS, run_read_only
from eventsource_nats.provider import NatsProvider

HOST = PluginHost()


@pytest.mark.parametrize("command", sorted(READ_ONLY_COMMANDS))
def test_a_read_only_command_on_a_mistyped_stream_creates_nothing(
    command: str,
    machine_nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    store = unique_store()
    try:
        out = run_read_only(command, url=machine_nats_url, settings=store, tmp_path=tmp_path, host=HOST, capsys=capsys)
        assert "no such JetStream stream nor its KV buckets" in out, out
        assert asyncio.run(_streams_of(machine_nats_url, store["stream"], store["subject_prefix"])) == []
    finally:
        asyncio.run(_streams_of(machine_nats_url, store["stream"], store["subject_prefix"], delete=True))


async def test_a_store_missing_a_bucket_is_refused_naming_it_and_not_completed(machine_nats_url: str) -> None:
    p = await open_provider(machine_nats_url)
    try:
        bucket = p.names.buckets[1]
        await p._conn.js.delete_stream(f"KV_{bucket}")
        reader = NatsProvider(**{**p.spawn_args(), "create_store": False})
        with pytest.raises(StoreNotFoundError) as refused:
            await reader.connect()
        await reader.close()
        assert refused.value.details["missing"] == f"KV bucket {bucket!r}"
        left = await _streams_of(machine_nats_url, p.names.stream, p.names.prefix)
        assert f"KV_{bucket}" not in left
        assert len(left) == len(p.names.buckets)  # the stream and the three other buckets, as they were
        completer = NatsProvider(**p.spawn_args())  # create_store on: completes the store
        await completer.connect()
        await completer.close()
        assert f"KV_{bucket}" in await _streams_of(machine_nats_url, p.names.stream, p.names.prefix)
    finally:
        await dispose(p)
