"""A stand-in for ``python -m job`` that reports what it was started with (warm or cold).

``PROBE=report`` prints one JSON line (its environment, process group, session, CPUs,
argv, sys.path[0], working folder, open descriptors, signal dispositions) and "working" on
stderr, then exits ``PROBE_EXIT``; ``PROBE=hold`` starts a grandchild, writes its pid to
``OUTPUT_DIR/child.pid``, prints an event and sleeps until it is stopped; ``PROBE=kill``
kills itself with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _report() -> dict[str, object]:
    return {
        "env": dict(os.environ),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cpus": sorted(os.sched_getaffinity(0)),
        "threads": os.environ.get("CPU_THREADS"),
        "argv": sys.argv,
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "signals": {
            s.name: str(signal.getsignal(s))
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE)
        },
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, ())),
        "stdin": os.read(0, 10).decode(),
        "name": __name__,
    }


def main() -> None:
    probe = os.environ.get("PROBE", "report")
    if probe == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if probe == "hold":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        Path(os.environ["OUTPUT_DIR"], "child.pid").write_text(str(child.pid))
        print('{"v": 1, "event": "start"}', flush=True)
        time.sleep(3600)
    print(json.dumps(_report()), flush=True)
    print("working", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("HOLD", "0")))
    sys.exit(int(os.environ.get("PROBE_EXIT", "0")))


if __name__ == "__main__":
    main()
