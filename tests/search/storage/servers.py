"""Stand-in servers that answer a PostgreSQL client the way a real one does in a fault:
one that sends a FATAL error with a SQLSTATE at start-up (starting up, shutting down), and
one that accepts the connection and never answers (a timeout)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

_SSL_REQUEST = 80877103
"""The code libpq sends first to ask for TLS; the answer ``N`` means no TLS."""


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
