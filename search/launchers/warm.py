"""Warm starts: local trials forked from a process that has already imported PyTorch.

A cold trial is a new ``python -m job`` process and pays the interpreter's and PyTorch's
start-up each time. A :class:`WarmPool` keeps one fork server (:mod:`.forkserver`) per slot,
started on first use, and asks it for each trial: the server forks, the child becomes the
trial (its session, affinity, stdio, working folder and environment) and runs the job as
``python -m job`` would. A server serves trials with one environment (the job variables
aside), one working folder and one CPU set; a trial that needs another gets a new server.

A server that died is replaced at the next start; the trial being launched then starts cold.
A server that cannot start at all (its import failed, CUDA came up while importing) turns
warm starts off for the launcher, with a warning, and every trial starts cold.
"""

from __future__ import annotations

import contextlib
import locale
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from job.contract import VARIABLE_NAMES
from search.launchers import forkserver
from search.launchers.base import LOST

log = logging.getLogger("search")

_PER_TRIAL = VARIABLE_NAMES | {"CUDA_VISIBLE_DEVICES"}
"""Variables the child sets for itself: the job reads them when it runs, not when it is
imported (``job.config`` is the job's only reader of the environment), and CUDA reads its
pin at initialisation, which only the child does."""

START_TIMEOUT = 600.0  # s: a server imports torch; a busy small machine takes tens of seconds
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Key:
    """What a server fixes for its children: the rest of their environment, their working
    folder and their CPUs (which the libraries read when they are imported)."""

    env: tuple[tuple[str, str], ...]
    cwd: str | None
    cpus: tuple[int, ...]


class _Server:
    """One fork server process and the driver's end of its socket."""

    def __init__(self, key: _Key, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.key = key
        self.proc = proc
        self.sock = sock

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End the server: end of file on its socket, then SIGKILL if it lingers."""
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WarmProcess:
    """A trial forked by a server, seen as :class:`subprocess.Popen` sees a process: ``pid``,
    ``stdout`` and ``wait``. ``lost`` is True when the server died under it (the trial died
    with it, by PDEATHSIG)."""

    def __init__(
        self, server: _Server, pid: int, stdout: IO[str], done: Callable[[], None]
    ) -> None:
        self.server = server
        self.pid = pid
        self.stdout: IO[str] | None = stdout
        self.returncode: int | None = None
        self.lost = False
        self._done: Callable[[], None] | None = done

    def wait(self, timeout: float | None = None) -> int:
        """The child's exit code as Popen gives it (``-N`` for signal N), from its server."""
        if self.returncode is not None:
            return self.returncode
        self.server.sock.settimeout(timeout)
        try:
            message, _ = forkserver.receive(self.server.sock)
        except TimeoutError:
            raise subprocess.TimeoutExpired(f"trial {self.pid}", timeout or 0.0) from None
        except OSError:
            message = None
        if message is None or "status" not in message:
            self.lost = True
            self.returncode = LOST
        else:
            self.returncode = int(message["status"])
        done, self._done = self._done, None
        if done is not None:
            done()
        return self.returncode


class WarmPool:
    """Up to ``slots`` idle fork servers, started on first use and reused trial after trial;
    each child runs ``module`` as ``python -m module`` would."""

    def __init__(self, slots: int, module: str = "job") -> None:
        self.slots = max(1, slots)
        self.module = module
        self.enabled = True
        self._idle: list[_Server] = []
        self._lock = threading.Lock()
        self._spawner = _Spawner()

    def start(
        self, env: Mapping[str, str], cwd: Path | None, cpus: frozenset[int], stderr: int
    ) -> WarmProcess | None:
        """Fork a trial with exactly ``env``, in ``cwd``, pinned to ``cpus`` (none: the
        server's), its stdout a pipe to this process and its stderr the descriptor given;
        None when no server could take it (the caller starts it cold). A child that could
        not be set up raises OSError, as starting a process would."""
        if not self.enabled:
            return None
        key = _Key(
            env=tuple(sorted((k, v) for k, v in env.items() if k not in _PER_TRIAL)),
            cwd=None if cwd is None else str(cwd),
            cpus=tuple(sorted(cpus)),
        )
        server = self._take(key)
        if server is None:
            return None
        request = {"env": dict(env), "cwd": key.cwd, "cpus": list(key.cpus), "module": self.module}
        read, write = os.pipe()
        try:
            with open(os.devnull, "rb") as stdin:
                forkserver.send(server.sock, request, [stdin.fileno(), write, stderr])
            server.sock.settimeout(START_TIMEOUT)
            reply, _ = forkserver.receive(server.sock)
        except OSError:
            reply = None
        finally:
            os.close(write)  # the child holds it now: its end of file is the trial's
        if reply is None or not ("pid" in reply or "error" in reply):
            os.close(read)
            log.warning("a warm process ended while it started a trial; starting it cold")
            server.close()
            return None
        if "error" in reply:
            os.close(read)
            self._give_back(server)
            raise OSError(reply["error"])
        # Popen's text mode: the locale's encoding; closed by LocalRun.wait.
        stdout = open(read, encoding=locale.getpreferredencoding(False))  # noqa: SIM115
        return WarmProcess(server, int(reply["pid"]), stdout, lambda: self._give_back(server))

    def close(self) -> None:
        """End every idle server (a running trial's server ends when it is given back)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self.enabled = False
        for server in idle:
            server.close()

    def _take(self, key: _Key) -> _Server | None:
        """An idle server for ``key`` or a new one (None: warm starts are now off)."""
        with self._lock:
            dead = [s for s in self._idle if not s.alive()]  # killed: replaced below
            self._idle = [s for s in self._idle if s not in dead]
            match = next((s for s in self._idle if s.key == key), None)
            if match is not None:
                self._idle.remove(match)
                surplus: list[_Server] = []
            else:  # another environment or CPU set: make room for its server
                surplus = self._idle[: max(0, len(self._idle) - self.slots + 1)]
                self._idle = self._idle[len(surplus) :]
        for server in dead + surplus:
            server.close()
        if match is not None:
            return match
        try:
            # Started by the spawner thread, awaited here: servers asked for at once (a
            # search's first trials) import in parallel.
            return _await_ready(self._spawner.call(lambda: _spawn(key)))
        except OSError as exc:
            self.enabled = False
            log.warning("warm starts are off: %s; every trial starts cold", exc)
            return None

    def _give_back(self, server: _Server) -> None:
        with self._lock:
            if self.enabled and server.alive() and len(self._idle) < self.slots:
                self._idle.append(server)
                return
        server.close()


def _spawn(key: _Key) -> _Server:
    """Start a server for ``key`` (without waiting for it: :func:`_await_ready`); the calling
    thread is the one whose end kills it."""
    driver_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent, cpus = os.getpid(), frozenset(key.cpus)
    command = [sys.executable, "-c", forkserver.BOOT, forkserver.__file__]
    command += [str(server_end.fileno()), *forkserver.PRELOAD]
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(key.env),
            cwd=key.cwd,
            pass_fds=[server_end.fileno()],
            start_new_session=True,
            preexec_fn=lambda: forkserver.die_with_parent(parent, cpus),
        )
    finally:
        server_end.close()
    return _Server(key, proc, driver_end)


def _await_ready(server: _Server) -> _Server:
    """``server`` once it has imported everything; OSError when it could not (it ended,
    refused or did not answer in time)."""
    server.sock.settimeout(START_TIMEOUT)
    try:
        message, _ = forkserver.receive(server.sock)
    except OSError:
        message = None
    if message is None or "ready" not in message:
        server.close()
        why = (message or {}).get("error") or f"it ended with exit {server.proc.poll()}"
        raise OSError(f"the warm process did not start ({why})")
    if message.get("threads", 1) > 1:
        log.debug("warm process %d holds %d threads", server.proc.pid, message["threads"])
    return server


class _Spawner:
    """One thread, as long-lived as the driver, that starts every server.

    A server asks for PDEATHSIG, which fires when the *thread* that started it ends; the
    driver's worker threads come and go, and a server outlives the trial that started it.
    The thread only forks (milliseconds each); the caller waits for the server's imports, so
    servers asked for at once start together.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="warm-spawner").start()

    def call(self, fn: Callable[[], _T]) -> _T:
        future: Future[_T] = Future()
        self._calls.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            fn, future = self._calls.get()
            try:
                future.set_result(fn())
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    future.set_exception(exc)
