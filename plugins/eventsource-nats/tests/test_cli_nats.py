"""The ``eventsource`` command on NATS: a token in the store URL (``nats://TOKEN@host``) is a secret.

NATS takes a URL user without a password as an auth token. The provider masks it in its own messages
(``nats://***@host``); the command must not print it either, on any path: connect errors, ``-v``
tracebacks, ``--json`` errors, ``health`` and the demo's closing hint. Runs the real command in a
subprocess against a real (unreachable, or the machine's) server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from eventsource_nats.provider import NatsProvider

TOKEN = f"tok{uuid.uuid4().hex}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_") or k.startswith("EVENTSOURCE_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "eventsource.cli", *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("info", "s"),
        ("-v", "read", "s"),
        ("--json", "streams"),
        ("health",),
        ("--json", "health"),
    ],
)
def test_an_unreachable_store_never_shows_the_token(tmp_path: Path, argv: tuple[str, ...]) -> None:
    url = f"nats://{TOKEN}@127.0.0.1:{free_port()}"
    r = cli(tmp_path, "--store", url, *argv)
    assert r.returncode == 5, r.stderr
    assert "127.0.0.1" in r.stdout + r.stderr  # the store is still named
    assert TOKEN not in r.stdout + r.stderr


def test_a_token_store_config_file_never_shows_the_token(tmp_path: Path) -> None:
    url = f"nats://{TOKEN}@127.0.0.1:{free_port()}"
    (tmp_path / "c.json").write_text(f'{{"providers": {{"main": "{url}"}}}}')
    r = cli(tmp_path, "--config", "c.json", "info", "s")
    assert r.returncode == 5, r.stderr
    assert TOKEN not in r.stdout + r.stderr


async def test_the_demo_on_a_token_store_never_shows_the_token(tmp_path: Path, machine_nats_url: str) -> None:
    # the machine's server has no auth: it accepts (and ignores) a token. --store takes no settings, so
    # the demo writes to the default store: its stream is deleted again afterwards
    host = machine_nats_url.split("://", 1)[1].rsplit("@", 1)[-1]
    r = cli(tmp_path, "--store", f"nats://{TOKEN}@{host}", "demo")
    try:
        assert r.returncode == 0, r.stderr
        assert "nats://***@" in r.stdout
        assert TOKEN not in r.stdout + r.stderr
    finally:
        hint = [line for line in r.stdout.splitlines() if line.startswith("Read it again with:")]
        if hint:
            p = NatsProvider(machine_nats_url)
            await p.connect()
            try:
                await p.delete_stream(hint[0].rsplit(" ", 1)[-1])
            finally:
                await p.close()
