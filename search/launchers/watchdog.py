"""Remove a driver's containers once the driver is gone (even after SIGKILL).

``python -m search.launchers.watchdog docker LABEL=VALUE`` waits for end-of-file on stdin,
a pipe whose write end only the driver holds, then stops and removes every container that
carries the label. The kernel closes the pipe however the driver ends.
"""

from __future__ import annotations

import sys


def _clean_docker(label: str) -> int:
    import docker
    from docker.errors import DockerException

    client = docker.from_env()
    removed = 0
    for container in client.containers.list(all=True, filters={"label": label}):
        try:
            container.stop(timeout=10)
            container.remove(force=True)
            removed += 1
        except DockerException:
            pass
    return removed


def main(argv: list[str]) -> int:
    """Block until stdin closes, then clean up after the driver."""
    kind, label = argv
    while sys.stdin.buffer.read(65536):
        pass
    if kind == "docker":
        _clean_docker(label)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
