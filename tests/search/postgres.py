"""A throwaway PostgreSQL server of the test's own, which a test may stop and start.

Tests of database outages must never touch the shared server (``RESNET_JOB_POSTGRES_URL``):
this one is initialised into a fresh folder, listens on a free port of 127.0.0.1, requires
a password (scram-sha-256), and runs as the ``postgres`` user when the tests run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import need

PASSWORD = "Zq7-notInAnyLog-4f2"
"""The superuser's password: the secrets tests look for it in everything a run wrote."""


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return Path(found[-1]) if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One PostgreSQL cluster in its own folder; ``start``/``stop`` as a test pleases."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        pwfile = root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:  # a folder this test created, handed to the server's user
            for path in (root, pwfile):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            f"--pwfile={pwfile}",
            "--no-sync",
        )

    def url(self, password: str | None = PASSWORD, port: int | None = None) -> str:
        """A psycopg2 URL of the ``postgres`` database on this server."""
        secret = f":{password}" if password else ""
        return f"postgresql+psycopg2://postgres{secret}@127.0.0.1:{port or self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """Stop it as a maintenance restart does: fast shutdown, sessions cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """Stop it at once, whatever state it is in (cleanup)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=120, cwd=self.root)


def _available() -> tuple[Path | None, str]:
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").is_file():
        return None, "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root without a 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return None, "running as root without runuser to start PostgreSQL as 'postgres'"
    return bin_dir, ""


def throwaway_postgres() -> Iterator[Server]:
    """A running throwaway PostgreSQL server, removed afterwards; for a fixture to
    ``yield from`` (skips, or fails under RESNET_JOB_REQUIRE_ALL, without the binaries)."""
    bin_dir, why = _available()
    need(bin_dir is not None, why)
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="resnet-job-pg-"))
    try:
        server = Server(bin_dir, root)
        server.start()
        try:
            yield server
        finally:
            server.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)
