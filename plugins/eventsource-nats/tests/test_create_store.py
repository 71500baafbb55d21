"""``create_store``: a command that only reads never creates a JetStream stream or KV bucket.

``eventsource stats`` with a mistyped ``stream`` (or ``subject_prefix``) setting created a stream and four
buckets on the server and reported an empty store. With ``create_store`` off (what every read-only command
passes) a store with anything missing is refused, and nothing is created or completed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import _streams_of, dispose, open_provider, unique_store
from eventsource.cli import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, main
from eventsource.errors import StoreNotFoundError
from eventsource.plugins import PluginHost
from eventsource_nats.provider import NatsProvider

HOST = PluginHost()

READ_ONLY = {
    "stats": (["stats"], EXIT_NOT_FOUND),
    "read": (["read", "s"], EXIT_NOT_FOUND),
    "streams": (["streams"], EXIT_NOT_FOUND),
    "health": (["health"], EXIT_UNAVAILABLE),
    "export --from": (["export", "--from", "n", "-o", "out.jsonl"], EXIT_USAGE),
}


def config(tmp_path: Path, url: str, **settings: Any) -> str:
    path = tmp_path / "es.json"
    path.write_text(json.dumps({"providers": {"n": {"url": url, "settings": settings}}}), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_command_on_a_mistyped_stream_creates_nothing(
    command: str,
    machine_nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    store = unique_store()
    argv, code = READ_ONLY[command]
    try:
        assert main(["--config", config(tmp_path, machine_nats_url, **store), *argv], host=HOST) == code
        out = capsys.readouterr()
        assert "no such JetStream stream nor its KV buckets" in out.out + out.err, out
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
