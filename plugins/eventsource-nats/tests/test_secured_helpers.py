"""The lease and the checkpoint store on a secured server: TLS with a private CA and client certificates, a token.

They took none of the provider's TLS or credentials settings, so a projection lease or a checkpoint store on a
server that requires them could not be configured at all. Each test starts its own nats-server (127.0.0.1, free
port), with certificates made by ``openssl`` in its temp dir, and stops it.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eventsource.checkpoints import Checkpoint
from eventsource.errors import ConfigurationError, ProviderUnavailableError
from eventsource_nats.checkpoints import NatsCheckpointStore
from eventsource_nats.lease import NatsKvLease
from servers import Node, Servers, free_port, nats_server_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

HOSTNAME = "eventsource.test"
"""The only name in the server's certificate (the tests reach it at 127.0.0.1: ``tls_hostname`` names it)."""
TOKEN = "s3cret-token"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(d: Path) -> None:
    """``ca.pem``; ``server.pem``/``server.key`` for :data:`HOSTNAME`; ``client.pem``/``client.key``, by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=es-test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    for name, ext in (("server", f"subjectAltName=DNS:{HOSTNAME}"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)  # fmt: skip


def _start(conf: str) -> Iterator[tuple[Servers, Path]]:
    tmp = tempfile.TemporaryDirectory(prefix="es-nats-secured-")
    d, port = Path(tmp.name), free_port()
    _certificates(d)
    (d / "server.conf").write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{d / "js"}" }}\n' + conf.replace("DIR", str(d))
    )
    node = Node("secured", port, [nats_server_binary(), "-c", str(d / "server.conf")], d / "server.log")
    servers = Servers([node], tmp)
    try:
        node.start()
        yield servers, d
    finally:
        servers.stop()


@pytest.fixture
def tls_server() -> Iterator[tuple[Servers, Path]]:
    """A server that takes only TLS clients presenting a certificate of its private CA."""
    yield from _start(
        'tls { cert_file: "DIR/server.pem", key_file: "DIR/server.key", ca_file: "DIR/ca.pem", verify: true }\n'
    )


@pytest.fixture
def token_server() -> Iterator[tuple[Servers, Path]]:
    """A server that takes only clients presenting :data:`TOKEN`."""
    yield from _start(f"authorization {{ token: {TOKEN} }}\n")


def _tls(d: Path) -> dict[str, Any]:
    return {
        "tls_ca_file": str(d / "ca.pem"),
        "tls_cert_file": str(d / "client.pem"),
        "tls_key_file": str(d / "client.key"),
        "tls_hostname": HOSTNAME,
    }


async def _use(helper: NatsKvLease | NatsCheckpointStore) -> None:
    """Connect, then hold a key (lease) or put and get a checkpoint (store), and close."""
    await helper.connect()
    try:
        if isinstance(helper, NatsKvLease):
            async with helper.hold("projection:p", timeout=5):
                pass
        else:
            await helper.put(Checkpoint("sub", "src", "all", 7, None, None))
            got = await helper.get("sub", "src")
            assert got is not None
            assert got.position == 7
    finally:
        await helper.close()


def _helper(kind: str, url: str, **settings: Any) -> NatsKvLease | NatsCheckpointStore:
    bucket = f"{kind}_{uuid.uuid4().hex[:10]}"
    if kind == "lease":
        return NatsKvLease(url, bucket=bucket, **settings)
    return NatsCheckpointStore(url, bucket=bucket, **settings)


@pytest.mark.parametrize("kind", ["lease", "checkpoints"])
async def test_a_helper_connects_to_a_server_requiring_tls_client_certificates(
    kind: str, tls_server: tuple[Servers, Path]
) -> None:
    servers, d = tls_server
    url = f"nats+tls://127.0.0.1:{servers.nodes[0].port}"
    await _use(_helper(kind, url, **_tls(d)))


@pytest.mark.parametrize("kind", ["lease", "checkpoints"])
async def test_a_helper_without_the_client_certificate_is_refused_by_the_tls_server(
    kind: str, tls_server: tuple[Servers, Path]
) -> None:
    """The settings reach the TLS handshake: without the client certificate the same server turns it away."""
    servers, d = tls_server
    url = f"nats+tls://127.0.0.1:{servers.nodes[0].port}"
    settings = {k: v for k, v in _tls(d).items() if k in ("tls_ca_file", "tls_hostname")}
    with pytest.raises(ProviderUnavailableError):
        await _helper(kind, url, connect_timeout=1, max_reconnect_attempts=1, **settings).connect()


@pytest.mark.parametrize("kind", ["lease", "checkpoints"])
async def test_a_helper_takes_the_urls_token_as_the_provider_does(
    kind: str, token_server: tuple[Servers, Path]
) -> None:
    """``nats://TOKEN@host`` is a token to the provider; the helpers sent it as a user name without a password."""
    servers, _ = token_server
    await _use(_helper(kind, f"nats://{TOKEN}@127.0.0.1:{servers.nodes[0].port}"))


@pytest.mark.parametrize("kind", ["lease", "checkpoints"])
@pytest.mark.parametrize(
    ("setting", "value"),
    [("connect_timeout", 0), ("connect_timeout", float("inf")), ("tls_ca_file", 7), ("max_reconnect_attempts", 0)],
)
def test_a_helpers_bad_connection_setting_names_it(kind: str, setting: str, value: object) -> None:
    """Checked as the provider checks it (an infinite connect_timeout waited for ever)."""
    with pytest.raises(ConfigurationError) as info:
        _helper(kind, "nats://127.0.0.1:4222", **{setting: value})
    assert info.value.details["field"] == setting
