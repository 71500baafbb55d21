"""A private PostgreSQL primary and hot standby built from the machine's server binaries.

``initdb`` refuses root, so a root test runner runs every server binary as the ``postgres`` OS user.
Each pair gets fresh loopback ports and directories and is stopped by pid at the end (recipe and facts:
STORES-LIVE.md, section E).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def bindir() -> Path:
    """The directory of ``initdb``/``pg_ctl``/``pg_basebackup`` (Debian keeps it off PATH)."""
    out = subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pair:
    """A primary on ``primary_port`` streaming to a standby on ``standby_port``; sync or async replication."""

    def __init__(self, *, synchronous: bool) -> None:
        self.synchronous = synchronous
        self._as_root = os.geteuid() == 0
        self.bin = bindir()
        self._place()

    def _place(self) -> None:
        """A fresh directory and two fresh loopback ports."""
        self.root = Path(tempfile.mkdtemp(prefix="es-pgpair-"))
        self.primary_dir = self.root / "primary"
        self.standby_dir = self.root / "standby"
        self.sockets = self.root / "sock"
        self.primary_port = free_port()
        self.standby_port = free_port()
        while self.standby_port == self.primary_port:
            self.standby_port = free_port()

    # -- running the server binaries ------------------------------------------------------------------------
    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def start(self, attempts: int = 3) -> Pair:
        """Build and start both servers; on any failure stop what started and remove the directory.

        A port is only known free when it is picked, so a server that cannot bind it (another test or
        process took it meanwhile) is retried on fresh ports; any other failure raises with the logs.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start()
            except BaseException as e:
                logs = self._logs()
                self.stop()
                if attempt < attempts and "could not bind" in logs:
                    self._place()
                    continue
                detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
                msg = f"the pair did not start ({e})\n{detail}\n{logs}"
                raise RuntimeError(msg) from e
            return self
        raise AssertionError("unreachable")

    def _logs(self) -> str:
        parts = []
        for name in ("primary.log", "standby.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n" + (self.root / name).read_text()[-4000:])
        return "\n".join(parts)

    def _start(self) -> None:
        self.sockets.mkdir(parents=True)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.primary_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"
        )
        conf = [
            f"port={self.primary_port}",
            "listen_addresses='127.0.0.1'",
            f"unix_socket_directories='{self.sockets}'",
            "wal_level=replica",
            "max_wal_senders=5",
            "fsync=on",
        ]
        if self.synchronous:
            conf.append("synchronous_standby_names='*'")
        self._append(self.primary_dir / "postgresql.conf", conf)
        self._run("pg_ctl", "-D", str(self.primary_dir), "-l", str(self.root / "primary.log"), "-w", "start")
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(self.standby_dir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )
        self._append(self.standby_dir / "postgresql.auto.conf", [f"port={self.standby_port}"])
        self._run("pg_ctl", "-D", str(self.standby_dir), "-l", str(self.root / "standby.log"), "-w", "start")
        self._wait_streaming()

    def _append(self, path: Path, lines: list[str]) -> None:
        # written through the server user so the file keeps its owner
        text = "\n" + "\n".join(lines) + "\n"
        if self._as_root:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "sh", "-c", f"cat >> '{path}'"], input=text, check=True, text=True
            )
        else:
            with path.open("a") as f:
                f.write(text)

    def _wait_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.dsn(self.primary_port), autocommit=True) as conn:
                rows = conn.execute("SELECT state FROM pg_stat_replication").fetchall()
            if rows and rows[0][0] == "streaming":
                return
            time.sleep(0.05)
        raise RuntimeError(f"the standby did not start streaming within {timeout}s (logs in {self.root})")

    # -- addresses --------------------------------------------------------------------------------------------
    @staticmethod
    def dsn(port: int, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{dbname}"

    def url(self, attrs: str = "read-write") -> str:
        """A libpq multi-host URL naming both servers, primary first."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}/postgres"
            f"?target_session_attrs={attrs}&connect_timeout=2"
        )

    # -- faults ------------------------------------------------------------------------------------------------
    def _postmaster_pid(self, data: Path) -> int | None:
        try:
            return int((data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend (its process group's members)."""
        pid = self._postmaster_pid(self.primary_dir)
        assert pid is not None, "the primary is not running"
        children = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True, text=True).stdout.split()
        for p in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def cut_standby(self, timeout: float = 30.0) -> None:
        """Point the standby's walreceiver at a closed port and wait until the primary has no standby.

        Unlike pausing the walreceiver, this drops what sat in its socket buffers: WAL written from now on
        is on the primary alone, so an asynchronous failover must lose what gets acknowledged meanwhile.
        """
        self._append(self.standby_dir / "postgresql.auto.conf", ["primary_conninfo = 'host=127.0.0.1 port=1'"])
        self._run("pg_ctl", "-D", str(self.standby_dir), "reload")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.dsn(self.primary_port), autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_stat_replication").fetchall():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the standby still streamed {timeout}s after its primary_conninfo was cut")

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.standby_dir), "-w", "promote")

    def stop_waiting_for_a_standby(self) -> None:
        """On the promoted server (a synchronous pair's: it kept ``synchronous_standby_names``, with no standby of
        its own, so every commit would wait for ever): commit without one, as a failover manager does."""
        with psycopg.connect(self.dsn(self.standby_port), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")

    def _alive(self, data: Path) -> bool:
        pid = self._postmaster_pid(data)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        for data in (self.primary_dir, self.standby_dir):
            pid = self._postmaster_pid(data)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
        deadline = time.monotonic() + 10  # a loaded machine may need more than a moment
        while time.monotonic() < deadline and any(self._alive(d) for d in (self.primary_dir, self.standby_dir)):
            time.sleep(0.05)
        for data in (self.primary_dir, self.standby_dir):
            pid = self._postmaster_pid(data)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
