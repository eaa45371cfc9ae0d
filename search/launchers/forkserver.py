"""The warm process of one local slot: it imports the job and PyTorch once, then forks a
child per trial that runs exactly as ``python -m job`` would.

Standard library only, and loaded by its path (:data:`BOOT`), so that the server's
interpreter holds nothing the job would not (no ``search`` package, no Optuna). The driver
starts it with the environment a cold trial would get less the job variables, and with the
slot's CPU affinity; the server imports :data:`PRELOAD` (no thread of its own, no CUDA
context: nothing here touches ``torch.cuda``) and then waits for requests on a Unix
``SOCK_SEQPACKET`` socket, one trial at a time.

The protocol, one JSON object per message:

- server → driver, once it has imported everything: ``{"ready": PID, "threads": N}``;
- driver → server: ``{"env": {...}, "cwd": PATH | null, "cpus": [...], "module": NAME}``
  with three file descriptors attached (the trial's stdin, stdout and stderr);
- server → driver: ``{"pid": PID}`` once the child is in its own session, pinned, with its
  stdio, working folder and environment set (or ``{"error": TEXT}`` when it could not be);
- server → driver: ``{"status": CODE}`` when the child ended (``os.waitstatus_to_exitcode``:
  negative for a signal).

End of file on the socket (the driver closed it or died) ends the server; the server also
asks the kernel for ``PR_SET_PDEATHSIG`` (set by the driver before it executes), and each
child asks for it again, so a trial dies with its server and the server with the driver.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import json
import os
import runpy
import signal
import socket
import sys
from collections.abc import Iterable
from typing import Any

BOOT = (
    "import os, sys\n"
    # As `python -m job` does: the working folder first on sys.path (not the script's).
    "if not sys.flags.safe_path: sys.path[0] = os.getcwd()\n"
    "import importlib.util\n"
    "spec = importlib.util.spec_from_file_location('_resnet_job_forkserver', sys.argv[1])\n"
    "server = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(server)\n"
    "server.main(sys.argv[2:])\n"
)
"""``python -c BOOT FORKSERVER_PY FD [MODULE…]``: load this file by path and serve on ``FD``."""

PRELOAD = (
    "torch",
    "click",
    "job.config",
    "job.resources",
    "job.runner",
    "PIL.Image",
    "matplotlib.figure",
    "matplotlib.ticker",
    "pandas",
)
"""What a CPU run of the job imports before it trains and while it plots (``job.__main__``
itself is left to the child: runpy runs it fresh, as ``python -m job`` does)."""

MAX_MESSAGE = 1 << 20  # bytes: an environment is a few KiB
STDIO = 3  # file descriptors per request: the trial's stdin, stdout, stderr
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One message, with ``fds`` attached when given."""
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors attached to it; ``(None, [])`` at end of file."""
    data, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE, STDIO)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


def die_with_parent(parent: int, cpus: Iterable[int] = ()) -> None:
    """SIGKILL this process when the thread that forked it ends; exit at once if ``parent``
    already ended before the request took effect. Then keep it on ``cpus`` (none: the CPUs
    it inherited)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)
    cpus = frozenset(cpus)
    if cpus:
        os.sched_setaffinity(0, cpus)


def thread_count() -> int:
    """Threads of this process (the fork must happen with one)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def main(argv: list[str]) -> None:
    """Serve on the socket ``argv[0]`` after importing ``argv[1:]``; in a forked child,
    run the job instead and return (or exit) as it does."""
    sock = socket.socket(fileno=int(argv[0]))
    for name in argv[1:]:
        importlib.import_module(name)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():  # a child could not use CUDA
        send(sock, {"error": "CUDA was initialised while importing the job"})
        raise SystemExit(0)
    send(sock, {"ready": os.getpid(), "threads": thread_count()})
    request = _serve(sock)  # returns in a child only, set up as the trial
    runpy.run_module(request.get("module", "job"), run_name="__main__", alter_sys=True)


def _serve(sock: socket.socket) -> dict[str, Any]:
    """Fork a child per request and report it; return only in a child, with its request."""
    server = os.getpid()
    while True:
        try:
            request, fds = receive(sock)
        except OSError:
            request, fds = None, []
        if request is None:  # the driver closed the socket or is gone
            raise SystemExit(0)
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _become_trial(sock, request, fds, ready_w, server)
            return request
        os.close(ready_w)
        for fd in fds:
            os.close(fd)
        with open(ready_r, "rb") as ready:
            error = ready.read().decode(errors="replace")
        try:
            if error:
                os.waitpid(pid, 0)
                send(sock, {"error": error})
                continue
            send(sock, {"pid": pid})
            _, status = os.waitpid(pid, 0)
            send(sock, {"status": os.waitstatus_to_exitcode(status)})
        except OSError:  # the driver went away; the child dies with us (PDEATHSIG)
            raise SystemExit(0) from None


def _become_trial(
    sock: socket.socket, request: dict[str, Any], fds: list[int], ready: int, server: int
) -> None:
    """In the child: become the trial as a new `python -m job` process would be, then close
    ``ready`` (an error text written there instead when it could not, and the child exits)."""
    try:
        os.setsid()  # its own session and process group: the driver signals the group
        die_with_parent(server, request.get("cpus", ()))
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if request.get("cwd"):
            os.chdir(request["cwd"])
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        sock.close()
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [""]  # runpy puts job/__main__.py's path first, as `-m` does
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(ready, f"{type(exc).__name__}: {exc}".encode())
        os._exit(127)
    os.close(ready)
