"""``create_store``: a command that only reads never creates a topic on Kafka.

``eventsource stats`` with a mistyped ``topic_prefix`` created that prefix's metadata and snapshot topics on
the cluster and reported an empty store. With ``create_store`` off (what every read-only command passes) a
store without its topics is refused, and no topic is created.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsource.cli import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_USAGE, main
from eventsource.errors import StoreNotFoundError
from eventsource.plugins import PluginHost
from eventsource_kafka.provider import KafkaProvider

from .conftest import prefix_topics

HOST = PluginHost()

READ_ONLY = {
    "stats": (["stats"], EXIT_NOT_FOUND),
    "read": (["read", "s"], EXIT_NOT_FOUND),
    "streams": (["streams"], EXIT_NOT_FOUND),
    "health": (["health"], EXIT_UNAVAILABLE),
    "export --from": (["export", "--from", "k", "-o", "out.jsonl"], EXIT_USAGE),
}


def config(tmp_path: Path, url: str, **settings: Any) -> str:
    path = tmp_path / "es.json"
    path.write_text(json.dumps({"providers": {"k": {"url": url, "settings": settings}}}), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_command_on_a_mistyped_topic_prefix_creates_no_topic(
    command: str, kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    prefix = f"typo{uuid.uuid4().hex[:12]}"
    argv, code = READ_ONLY[command]
    try:
        assert main(["--config", config(tmp_path, kafka_url, topic_prefix=prefix), *argv], host=HOST) == code
        out = capsys.readouterr()
        assert f"the cluster has no topic '{prefix}.meta'" in out.out + out.err, out
        assert prefix_topics(kafka_url, prefix) == []
    finally:
        prefix_topics(kafka_url, prefix, delete=True)


async def test_a_store_missing_its_snapshot_topic_is_refused_naming_it(kafka_provider: KafkaProvider) -> None:
    p = kafka_provider
    await p.io.delete_topic(p._conn.snap_topic)
    reader = KafkaProvider(**{**p.spawn_args(), "create_store": False})
    with pytest.raises(StoreNotFoundError) as refused:
        await reader.connect()
    await reader.close()
    assert refused.value.details["missing"] == p._conn.snap_topic
    assert p._conn.snap_topic not in prefix_topics(p.url or "", p.prefix)
