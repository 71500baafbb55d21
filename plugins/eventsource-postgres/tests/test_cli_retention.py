"""``eventsource retention`` on a PostgreSQL store: events deleted on the server, the rest kept.

The store is named by ``--config`` with a fresh ``schema``: ``--store URL`` cannot carry provider settings,
and its default schema in the shared ``test`` database may hold other runs' events, which retention would delete.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsource import EventData
from eventsource.cli import EXIT_OK, EXIT_USAGE, main
from eventsource.plugins import PluginHost
from eventsource.sync import SyncEventSourcingManager

HOST = PluginHost()


@pytest.fixture
def store(url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A ``--config`` file naming a fresh schema, and the same configuration for the library."""
    schema = f"es_ret_{uuid.uuid4().hex[:12]}"
    cfg = {"providers": {"pg": {"url": url, "settings": {"schema": schema}}}}
    path = tmp_path / "es.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    yield str(path), cfg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_retention_deletes_on_the_server_and_keeps_the_rest(
    store: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, cfg = store
    old = datetime.now(UTC) - timedelta(days=90)
    with SyncEventSourcingManager(cfg, host=HOST) as m:
        m.append_events_batch(stream_id="old", events=[EventData("E", {"i": i}, timestamp=old) for i in range(4)])
        m.append_events_batch(stream_id="old", events=[EventData("E", {"i": 4})])
        m.append_events_batch(stream_id="busy", events=[EventData("E", {"i": i}) for i in range(6)])
    argv = ["--config", path, "retention", "--policy", "max_age=30d", "--policy", "max_count=2"]
    assert main(argv, host=HOST) == EXIT_USAGE  # no --yes: refused, nothing deleted
    assert "pass --yes" in capsys.readouterr().err
    with SyncEventSourcingManager(cfg, host=HOST) as m:
        assert m.get_stream_info("busy").event_count == 6
    assert main(["--json", *argv, "--yes"], host=HOST) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert [(o["provider"], o["policy"], o["status"], o["deleted_events"]) for o in report["outcomes"]] == [
        ("pg", "max_age", "ok", 4),
        ("pg", "max_count", "ok", 4),
    ]
    with SyncEventSourcingManager(cfg, host=HOST) as m:
        assert [e.version for e in m.read_stream("old")] == [5]
        assert [e.version for e in m.read_stream("busy")] == [5, 6]
