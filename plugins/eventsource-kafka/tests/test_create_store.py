"""``create_store``: a command that only reads never creates a topic on Kafka.

``eventsource stats`` with a mistyped ``topic_prefix`` created that prefix's metadata and snapshot topics on
the cluster and reported an empty store. With ``create_store`` off (what every read-only command passes) a
store without its topics is refused, and no topic is created.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from eventsource.errors import StoreNotFoundError
from eventsource.model import ANY, NewEvent, utcnow
from eventsource.plugins import PluginHost
from eventsource.testing.read_only import READ_ONLY_COMMANDS, run_read_only
from eventsource_kafka.provider import KafkaProvider

from .conftest import prefix_topics

HOST = PluginHost()


@pytest.mark.parametrize("command", sorted(READ_ONLY_COMMANDS))
def test_a_read_only_command_on_a_mistyped_topic_prefix_creates_no_topic(
    command: str, kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    prefix = f"typo{uuid.uuid4().hex[:12]}"
    settings = {"topic_prefix": prefix}
    try:
        out = run_read_only(command, url=kafka_url, settings=settings, tmp_path=tmp_path, host=HOST, capsys=capsys)
        assert f"the cluster has no topic '{prefix}.meta'" in out, out
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


def event() -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "E", b"{}", b"{}", "json", utcnow())


async def _bucket_exists(nats_url: str, bucket: str, *, delete: bool = False) -> bool:
    """Whether NATS holds the KV bucket ``bucket`` (looked up, never created); deleted after when ``delete``."""
    import nats
    import nats.js.errors

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(f"KV_{bucket}")
        except nats.js.errors.NotFoundError:
            return False
        if delete:
            await js.delete_key_value(bucket)
        return True
    finally:
        await nc.close()


async def test_create_store_off_connects_no_lease_for_reads(
    kafka_provider: KafkaProvider, eventsource_test_env: dict[str, str]
) -> None:
    # the lease was built and connected by connect(): a NATS KV lease created its bucket for a provider opened
    # only to read (eventsource stats/read with a lease_url configured). It is connected by the first write now
    nats_url = eventsource_test_env["EVENTSOURCE_TEST_NATS_URL"]
    bucket = f"kl_{uuid.uuid4().hex[:12]}"
    await kafka_provider.append("s", [event()], ANY)
    lease = {"lease_url": nats_url, "lease_settings": {"bucket": bucket}}
    reader = KafkaProvider(**{**kafka_provider.spawn_args(), **lease, "create_store": False})
    try:
        await reader.connect()
        assert (await reader.stats()).total_events == 1
        assert (await reader.get_stream_info("s")).version == 1  # type: ignore[union-attr]
        assert not await _bucket_exists(nats_url, bucket)
        await reader.append("s", [event()], 1)  # a write holds the lease, as with create_store on
        assert reader._conn._lease is not None
    finally:
        await reader.close()
        await _bucket_exists(nats_url, bucket, delete=True)
