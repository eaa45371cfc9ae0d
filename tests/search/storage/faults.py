"""Real fault injectors for the study's database: the database commits a write, and the
reply never reaches the client (what a failover, or a connection dropped at COMMIT, does).

- :class:`CommitDropper`: a TCP proxy on 127.0.0.1 in front of a PostgreSQL server. Armed,
  it forwards the next COMMIT of a transaction that wrote something, lets the server answer
  it (so the write is committed), and closes both connections instead of passing the answer
  on: psycopg2 sees "server closed the connection unexpectedly".
- :class:`SqliteCommitDropper`: a SQLAlchemy ``after_commit`` hook on a storage's sessions.
  Armed, after the next real commit of a session that wrote something, it raises the
  disconnect error SQLAlchemy raises for a dropped connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from optuna.storages import RDBStorage

_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
"""libpq's simple-query message for COMMIT (type Q, length 11, the text, a NUL)."""

_WRITES = (b"INSERT", b"UPDATE", b"DELETE")
"""The statements that make a transaction one that wrote."""
_READY = b"Z\x00\x00\x00\x05"
"""The server's ReadyForQuery message, which ends its answer to COMMIT."""


class CommitDropper:
    """A TCP proxy to ``127.0.0.1:upstream``; :attr:`port` is where clients connect."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._armed = threading.Event()
        self.fired = threading.Event()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self) -> None:
        """Drop the reply to the next COMMIT of a transaction that wrote."""
        self.fired.clear()
        self._armed.set()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            link = _Link(client, server)
            threading.Thread(target=self._to_server, args=(link,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(link,), daemon=True).start()

    def _to_server(self, link: _Link) -> None:
        wrote = False
        while data := link.recv(link.client):
            if data[:1] == b"Q" and data[5:11].upper() in _WRITES:
                wrote = True
            if _COMMIT in data:
                if wrote and self._armed.is_set():
                    self._armed.clear()
                    link.dropping = True  # before the server can answer
                wrote = False
            if not link.send(link.server, data):
                return

    def _to_client(self, link: _Link) -> None:
        while data := link.recv(link.server):
            if link.dropping:
                if _READY in data:  # the server has answered the COMMIT: it is committed
                    link.close()
                    self.fired.set()
                    return
                continue
            if not link.send(link.client, data):
                return


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.dropping = False

    @staticmethod
    def recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def send(self, sock: socket.socket, data: bytes) -> bool:
        try:
            sock.sendall(data)
        except OSError:
            self.close()
            return False
        return True

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class SqliteCommitDropper:
    """Armed, raises a dropped connection's error after the next real commit that wrote."""

    def __init__(self, backend: RDBStorage) -> None:
        from sqlalchemy import event

        self._armed = threading.Event()
        self.fired = threading.Event()
        self._local = threading.local()  # Optuna's sessions are per thread
        event.listen(backend.engine, "before_cursor_execute", self._executing)
        event.listen(backend.scoped_session, "after_commit", self._committed)
        event.listen(backend.scoped_session, "after_soft_rollback", self._rolled_back)

    def arm(self) -> None:
        self.fired.clear()
        self._armed.set()

    def close(self) -> None:
        pass

    def _executing(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:6].upper().encode() in _WRITES:
            self._local.wrote = True

    def _rolled_back(self, _session: Any, _transaction: Any) -> None:
        self._local.wrote = False

    def _committed(self, _session: Any) -> None:
        wrote, self._local.wrote = getattr(self._local, "wrote", False), False
        if not (wrote and self._armed.is_set()):
            return
        import sqlite3

        from sqlalchemy.exc import OperationalError

        self._armed.clear()
        self.fired.set()
        raise OperationalError(
            "COMMIT", None, sqlite3.OperationalError("connection lost"), connection_invalidated=True
        )
