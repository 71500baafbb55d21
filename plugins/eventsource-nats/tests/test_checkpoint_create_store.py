"""``create_store`` on NATS checkpoints, and ``eventsource projections`` creating no key-value bucket.

``NatsCheckpointStore.connect()`` created its bucket, so ``eventsource projections`` on a server without
checkpoints left an empty ``eventsource_checkpoints`` bucket behind. With ``create_store`` off it creates
nothing and refuses a missing bucket with :class:`StoreNotFoundError`; the command then says there are no
checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import nats
import pytest
from eventsource.cli import EXIT_OK, main
from eventsource.plugins import PluginHost
from eventsource.testing import AbsentCheckpoints, CheckpointStoreSetupSuite
from eventsource_nats.checkpoints import NatsCheckpointStore
from eventsource_nats.provider import NatsProvider

if TYPE_CHECKING:
    from servers import Servers

HOST = PluginHost()


async def streams(url: str) -> list[str]:
    """Every JetStream stream on the server (a key-value bucket ``b`` is the stream ``KV_b``)."""
    nc = await nats.connect(url)
    try:
        return sorted([s.config.name for s in await nc.jetstream().streams_info()])
    finally:
        await nc.close()


async def delete_bucket(url: str, bucket: str) -> None:
    nc = await nats.connect(url)
    try:
        if f"KV_{bucket}" in [s.config.name for s in await nc.jetstream().streams_info()]:
            await nc.jetstream().delete_key_value(bucket)
    finally:
        await nc.close()


class TestNatsMissingBucket(CheckpointStoreSetupSuite):
    @pytest.fixture
    async def absent_checkpoints(self, machine_nats_url: str) -> AsyncIterator[AbsentCheckpoints]:
        bucket = f"cp_cs_{uuid.uuid4().hex[:12]}"

        async def leftovers() -> list[str]:
            return [s for s in await streams(machine_nats_url) if s == f"KV_{bucket}"]

        yield AbsentCheckpoints(
            lambda on: NatsCheckpointStore(machine_nats_url, bucket=bucket, create_store=on), leftovers
        )
        await delete_bucket(machine_nats_url, bucket)


def test_host_passes_create_store_through(machine_nats_url: str) -> None:
    store = HOST.create_checkpoint_store(machine_nats_url, create_store=False, bucket="cp_x")
    assert isinstance(store, NatsCheckpointStore) and not store.create_store and store.bucket == "cp_x"


def test_projections_on_a_server_without_checkpoints_creates_no_bucket(
    own_server: Servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = own_server.url  # a server of this test alone: the CLI's checkpoints are in the default bucket

    async def make_store() -> None:
        p = NatsProvider(url)
        await p.connect()
        await p.close()

    asyncio.run(make_store())
    before = asyncio.run(streams(url))
    assert before and not any(s.startswith("KV_eventsource_checkpoints") for s in before)
    cfg = tmp_path / "es.json"
    cfg.write_text(json.dumps({"providers": {"n": {"url": url}}}))
    monkeypatch.chdir(tmp_path)
    for argv in (["projections"], ["--json", "projections"], ["projections", "--checkpoints", url]):
        assert main(["--config", str(cfg), *argv], host=HOST) == EXIT_OK
        assert asyncio.run(streams(url)) == before
        out = capsys.readouterr()
        assert "no checkpoints in" in out.err and "eventsource_checkpoints" in out.err, out
        assert out.out == ""
    cfg.write_text(json.dumps({"providers": {"n": {"url": url}}, "checkpoint_store": url}))
    for command in ("stats", "health"):  # a configured checkpoint_store: their lag report creates nothing either
        assert main(["--config", str(cfg), "--json", command], host=HOST) == EXIT_OK
        capsys.readouterr()
        assert asyncio.run(streams(url)) == before
