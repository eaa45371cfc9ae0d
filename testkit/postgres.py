"""A throwaway PostgreSQL server of one's own, which a test or a bench may stop and start.

Tests of database outages and the benches must never touch a shared server
(``RESNET_JOB_POSTGRES_URL``, ``.ci/postgres.sh``): this one is a new cluster in a fresh folder,
on a free port of 127.0.0.1, with a password (scram-sha-256) on the loopback by default or
trust authentication (``password=None``); it runs as the ``postgres`` user when started as
root (PostgreSQL refuses root).

:func:`fake_postgres` is the other side of a fault: a stand-in that answers a client as a real
server does when it is starting up or shutting down (a FATAL error with its SQLSTATE), or that
never answers at all.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

PASSWORD = "Zq7-notInAnyLog-4f2"
"""The superuser's default password: the secrets tests look for it in everything a run wrote."""


class PostgresMissing(RuntimeError):
    """This machine cannot run a server of its own; the message says what is missing."""


def available() -> tuple[Path | None, str]:
    """The server programs' folder, or None and one sentence saying what is missing."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found or not Path(found[-1], "initdb").is_file():
        return None, (
            "the PostgreSQL server binaries are not in /usr/lib/postgresql/*/bin; install "
            "Debian's postgresql package"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root without a 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return None, "running as root without runuser to start PostgreSQL as 'postgres'"
    return Path(found[-1]), ""


def bin_dir() -> Path:
    """:func:`available`'s folder; raises :class:`PostgresMissing` with its sentence."""
    found, why = available()
    if found is None:
        raise PostgresMissing(why)
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One cluster in its own folder (``root``, default a new temporary one); ``start`` and
    ``stop`` as its user pleases, ``remove`` at the end."""

    def __init__(
        self,
        programs: Path | None = None,
        root: Path | None = None,
        *,
        password: str | None = PASSWORD,
        max_connections: int = 200,
        log_statements: bool = False,
    ) -> None:
        self.bin_dir = programs or bin_dir()
        self.root = root or Path(tempfile.mkdtemp(prefix="resnet-job-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = password
        self.log = self.root / "log"
        self._settings = f"-c max_connections={max_connections}"
        if log_statements:  # every statement in the log: how a bench counts them from outside
            self._settings += " -c log_statement=all"
        self._as_postgres = os.geteuid() == 0
        auth = ["--auth=trust"]
        if password is not None:
            pwfile = self.root / "pw"
            pwfile.write_text(password + "\n")
            auth = ["--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}"]
        if self._as_postgres:  # a folder made here, handed to the server's user
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", *auth, "--no-sync")

    def url(self, password: str | None = "", port: int | None = None) -> str:
        """A psycopg2 URL of the ``postgres`` database (``password`` "" : the server's own)."""
        secret = self.password if password == "" else password
        auth = f":{secret}" if secret else ""
        return f"postgresql+psycopg2://postgres{auth}@127.0.0.1:{port or self.port}/postgres"

    def version(self) -> str:
        """``postgres (PostgreSQL) 15.x`` as the server program says."""
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip()

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c full_page_writes=off {self._settings}"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Stop it as a maintenance restart does: fast shutdown, every session cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """Stop it at once, whatever state it is in."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)

    def remove(self) -> None:
        """:meth:`kill`, then delete its folder."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=120, cwd=self.root)


def throwaway_postgres(
    need: Callable[[bool, str], None] | None = None, **options: object
) -> Iterator[Server]:
    """A running server, removed afterwards, for a fixture to ``yield from``.

    Without the server programs it calls ``need(False, reason)`` (the tests' skip-or-fail),
    or raises :class:`PostgresMissing` when no ``need`` is given. ``options`` go to
    :class:`Server`.
    """
    found, why = available()
    if found is None:
        if need is not None:
            need(False, why)
        raise PostgresMissing(why)
    with Server(found, **options) as server:  # type: ignore[arg-type]
        yield server


_SSL_REQUEST = 80877103
"""The code libpq sends first to ask for TLS; the answer ``N`` means no TLS."""


@contextlib.contextmanager
def fake_postgres(code: str | None = None, message: str = "") -> Iterator[int]:
    """A port on 127.0.0.1 where a stand-in answers every connection with a FATAL ``code``
    and ``message``, or (``code`` None) never answers at all."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = None if code is None else _error_response(code, message)
    threading.Thread(target=_serve, args=(listener, answer), daemon=True).start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(
        kind + text.encode() + b"\0"
        for kind, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def _serve(listener: socket.socket, answer: bytes | None) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_answer, args=(client, answer), daemon=True).start()


def _answer(client: socket.socket, answer: bytes | None) -> None:
    with client:
        if answer is None:  # a server that hangs: hold the connection until the client goes
            while client.recv(4096):
                pass
            return
        while True:
            header = client.recv(8)
            if len(header) < 8:
                return
            length, code = struct.unpack("!II", header)
            if code == _SSL_REQUEST:
                client.sendall(b"N")
                continue
            client.recv(length - 8)  # the start-up message
            client.sendall(answer)
            return
