"""PostgresAdvisoryLease: exclusion across processes, timeouts, loss detection, registration."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.errors import ConfigurationError, ProviderTimeoutError, ProviderUnavailableError
from eventsource.plugins import PluginHost
from eventsource_postgres import PostgresAdvisoryLease
from eventsource_postgres.settings import lock_key

WORKER = """
import asyncio, json, os, sys, time
from pathlib import Path
from eventsource_postgres import PostgresAdvisoryLease
spec = json.loads(sys.argv[1])
counter, holder = Path(spec["counter"]), Path(spec["holder"])
async def main():
    lease = PostgresAdvisoryLease(spec["url"], namespace=spec["namespace"], pool_max_size=1)
    await lease.connect()
    overlaps = 0
    delay = spec["start_at"] - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    for _ in range(spec["rounds"]):
        async with lease.hold(spec["key"], timeout=60):
            try:
                fd = os.open(holder, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if someone else is inside
                os.close(fd)
            except FileExistsError:
                overlaps += 1
            value = int(counter.read_text())  # a read-modify-write that only a lock keeps correct
            await asyncio.sleep(0.002)
            counter.write_text(str(value + 1))
            holder.unlink(missing_ok=True)
    await lease.close()
    print(json.dumps({"overlaps": overlaps}))
asyncio.run(main())
"""

if TYPE_CHECKING:
    import psycopg


@pytest.fixture
async def lease(url: str) -> AsyncIterator[PostgresAdvisoryLease]:
    lz = PostgresAdvisoryLease(
        url, namespace=f"t-{uuid.uuid4().hex}", pool_max_size=4, application_name=f"es-lease-{uuid.uuid4().hex[:10]}"
    )
    await lz.connect()
    yield lz
    await lz.close()


async def test_two_processes_never_hold_the_same_key_at_once(url: str, tmp_path: Path) -> None:
    counter, holder = tmp_path / "counter", tmp_path / "holder"
    counter.write_text("0")
    rounds = 40
    spec = {"url": url, "namespace": f"t-{uuid.uuid4().hex}", "key": "stream-1", "counter": str(counter),
            "holder": str(holder), "rounds": rounds, "start_at": time.time() + 1.5}  # fmt: skip
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, json.dumps(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.decode().splitlines()[-1]) == {"overlaps": 0}
    assert int(counter.read_text()) == 2 * rounds


async def test_two_instances_exclude_each_other_and_other_keys_do_not(url: str, lease: PostgresAdvisoryLease) -> None:
    other = PostgresAdvisoryLease(url, namespace=lease.settings["namespace"], pool_max_size=2)
    await other.connect()
    try:
        async with lease.hold("k", timeout=5):
            with pytest.raises(ProviderTimeoutError) as info:
                async with other.hold("k", timeout=0.3):
                    pytest.fail("the second holder got in")
            assert info.value.type == "timeout"
            async with other.hold("another-key", timeout=5):
                pass
        async with other.hold("k", timeout=5):  # released on exit
            pass
    finally:
        await other.close()


async def test_a_waiter_gets_the_lease_when_it_is_released(url: str, lease: PostgresAdvisoryLease) -> None:
    other = PostgresAdvisoryLease(url, namespace=lease.settings["namespace"], pool_max_size=2)
    await other.connect()
    order: list[str] = []
    try:
        async with lease.hold("k", timeout=5):

            async def wait() -> None:
                async with other.hold("k", timeout=30):
                    order.append("waiter")

            waiter = asyncio.create_task(wait())
            await asyncio.sleep(0.1)
            order.append("holder-done")
        await asyncio.wait_for(waiter, timeout=30)
        assert order == ["holder-done", "waiter"]
    finally:
        await other.close()


async def test_losing_the_connection_while_held_raises_on_exit(
    lease: PostgresAdvisoryLease, admin: psycopg.AsyncConnection[Any]
) -> None:
    with pytest.raises(ProviderUnavailableError) as info:
        async with lease.hold("k", timeout=5):
            cur = await admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
                [lease.settings["application_name"]],
            )
            for (pid,) in await cur.fetchall():  # only this lease's own backends
                await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            await asyncio.sleep(0.05)
    assert "lost" in str(info.value)
    async with lease.hold("k", timeout=5):  # the lease recovers with a fresh connection
        pass


async def test_an_error_in_the_block_releases_the_lease(url: str, lease: PostgresAdvisoryLease) -> None:
    with pytest.raises(KeyError):
        async with lease.hold("k", timeout=5):
            raise KeyError("boom")
    async with lease.hold("k", timeout=1):
        pass


async def test_keys_are_stable_64_bit_hashes(lease: PostgresAdvisoryLease) -> None:
    digest = hashlib.blake2b(
        f"lease\x00{lease.settings['namespace']}\x00stream-1".encode(), digest_size=8, person=b"eventsrc"
    ).digest()
    assert lease.key("stream-1") == int.from_bytes(digest, "big", signed=True)
    assert lock_key("a", "b") == lock_key("a", "b") != lock_key("a", "c")
    assert -(2**63) <= lease.key("x") < 2**63


async def test_the_lease_is_registered_by_the_plugin(url: str) -> None:
    host = PluginHost()
    for scheme_url in (url, url.replace("postgresql://", "postgres://", 1)):
        lz = host.create_lease(scheme_url, pool_max_size=1)
        assert isinstance(lz, PostgresAdvisoryLease)
        assert lz.kind == "postgres"


async def test_bad_lease_settings_and_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresAdvisoryLease(url, pool_max_size=0)
    with pytest.raises(ConfigurationError):
        PostgresAdvisoryLease("nats://127.0.0.1:4222")
    masked = PostgresAdvisoryLease("postgresql://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in repr(masked)
    with pytest.raises(ProviderUnavailableError) as info:
        await PostgresAdvisoryLease("postgresql://u:hunter2@127.0.0.1:1/db", connect_timeout=1).connect()
    assert "hunter2" not in str(info.value)


def _readme_block(needle: str) -> str:
    """The one Python block of this plugin's README holding ``needle``."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, flags=re.DOTALL | re.MULTILINE)
    [code] = [b for b in blocks if needle in b]
    return code


async def test_the_readme_lease_snippet_runs_as_printed(url: str) -> None:
    """The README's lease example, its URL pointed at the test server (it named a ``host`` it never made)."""
    import ast

    code = _readme_block("create_lease(")
    assert "postgresql://app@db/events" in code
    code = code.replace("postgresql://app@db/events", url).replace('"orders"', f'"readme-{uuid.uuid4().hex}"')
    await eval(compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), {})
