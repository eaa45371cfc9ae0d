"""Run the job as a Docker container, through the Docker Engine API (docker SDK).

Each trial is a container of the image, run as the invoking user's uid with group 0
(``--user UID:0``, which the image supports), so the files it writes on the host belong to
that user and no host folder's ownership is ever changed. The data cache is mounted at
/data, the trial's folder at /output and the host archive or folder of images that a
``file://`` DATA_URL names read-only under /archive (:func:`mounts`); the container is pinned
to one GPU with ``--gpus device=N``, labelled with study, trial and driver, and removed once
it ended. With several slots each container gets its share of the host's cores
(:mod:`search.launchers.cores`): ``--cpus`` of it and, where there are enough cores,
``--cpuset-cpus``; the job inside sizes its threads from them (CPU_THREADS ``auto``).
``stop`` is ``docker stop`` (SIGTERM, so the job checkpoints). A watchdog process removes
this driver's containers when the driver dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from job import parsers
from job.contract import JOB_LOG
from search.gpus import placement_env
from search.launchers.base import LOST, LogFileTail, TrialSpec
from search.launchers.cores import CorePool, Share

DRIVER_LABEL = "resnet-job/driver"
ARCHIVE_DIR = "/archive"  # where a host file:// archive or folder appears in the container


def host_data(url: str) -> Path | None:
    """The host archive or folder a ``file://`` DATA_URL names, if it exists (else the URL is
    left as it is, and the job inside says what is wrong with it)."""
    path = parsers.file_path(url)  # as the job reads it
    return path.resolve() if path is not None and path.exists() else None


def mounts(spec: TrialSpec) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The trial container's environment and volumes: the data cache at /data, the trial's
    folder at /output and, for a host ``file://`` DATA_URL, that archive or folder read-only
    at ``/archive/<its name>``, with DATA_URL rewritten to where the container sees it."""
    env = dict(spec.env)
    env.update({"OUTPUT_DIR": "/output", "DATA_DIR": "/data"})
    env.update(placement_env(spec.gpu))  # --gpus device=N: the container sees that GPU only
    volumes = {
        str(spec.data_dir): {"bind": "/data", "mode": "rw"},
        str(spec.output_dir): {"bind": "/output", "mode": "rw"},
    }
    data = host_data(env.get("DATA_URL", ""))
    if data is not None:
        inside = PurePosixPath(ARCHIVE_DIR, data.name or "data")  # file:/// has no name
        volumes[str(data)] = {"bind": str(inside), "mode": "ro"}
        env["DATA_URL"] = inside.as_uri()
    return env, volumes


def invoking_user() -> str:
    """``UID:0``: this process's uid with group 0, the image's group for writable folders."""
    return f"{os.getuid()}:0"


class DockerRun(LogFileTail):
    """One trial container."""

    def __init__(
        self, container: Any, log_path: Path, ended: Callable[[], None] = lambda: None
    ) -> None:
        self.container = container
        self.log_path: Path | None = log_path
        self._code: int | None = None
        self._ended = ended

    def lines(self) -> Iterator[str]:
        """Follow the container's stdout (its stderr is kept for the log file)."""
        from docker.errors import DockerException

        buf = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=False):
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    yield raw.decode("utf-8", "replace") + "\n"
        except DockerException:
            return
        if buf:
            yield buf.decode("utf-8", "replace") + "\n"

    def stop(self, grace: float = 30.0) -> None:
        """``docker stop``: SIGTERM, then SIGKILL after ``grace`` s."""
        from docker.errors import DockerException

        with contextlib.suppress(DockerException):
            self.container.stop(timeout=int(grace))

    def wait(self) -> int:
        """Wait for the container; keep its stderr in the log; remove it; return its code."""
        from docker.errors import DockerException, NotFound

        if self._code is not None:
            return self._code
        try:
            code = int(self.container.wait()["StatusCode"])
            stderr = self.container.logs(stdout=False, stderr=True)
            assert self.log_path is not None
            self.log_path.write_bytes(stderr)
        except NotFound:
            code = LOST
        except DockerException:
            code = LOST
        with contextlib.suppress(DockerException):
            self.container.remove(force=True)
        self._code = code
        self._ended()
        return code


class DockerLauncher:
    """Start each trial as a container of ``image``."""

    name = "docker"

    def __init__(
        self,
        image: str,
        client: Any = None,
        shm_size: str = "2g",
        user: str | None = None,
        slots: int = 1,
    ) -> None:
        import docker

        self.client = client or docker.from_env()
        self.image = image
        self.client.images.get(image)  # fails here, with the reason, when it is missing
        self.shm_size = shm_size
        self.user = user or invoking_user()
        self.driver = uuid.uuid4().hex
        self.cores = CorePool(slots)
        self._watchdog = _start_watchdog(self.driver)

    def start(self, spec: TrialSpec) -> DockerRun:
        """Create and start the trial's container."""
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        spec.data_dir.mkdir(parents=True, exist_ok=True)
        env, volumes = mounts(spec)
        labels = {f"resnet-job/{k}": v for k, v in spec.labels.items()}
        labels[DRIVER_LABEL] = self.driver
        share = self.cores.take()
        try:
            container = self._run(spec, env, labels, volumes, share)
        except BaseException:
            self.cores.give_back(share)
            raise
        return DockerRun(container, spec.output_dir / JOB_LOG, lambda: self.cores.give_back(share))

    def _run(
        self,
        spec: TrialSpec,
        env: dict[str, str],
        labels: dict[str, str],
        volumes: dict[str, dict[str, str]],
        share: Share | None,
    ) -> Any:
        from docker.types import DeviceRequest

        limits: dict[str, Any] = {}
        if share is not None:
            limits["nano_cpus"] = share.threads * 10**9  # --cpus, in billionths of a CPU
            if share.cpus:
                limits["cpuset_cpus"] = share.cpuset()
        return self.client.containers.run(
            self.image,
            detach=True,
            environment=env,
            labels=labels,
            volumes=volumes,
            user=self.user,
            device_requests=(
                [DeviceRequest(device_ids=[spec.gpu], capabilities=[["gpu"]])]
                if spec.gpu is not None
                else None
            ),
            shm_size=self.shm_size,
            name=f"{spec.name}-{uuid.uuid4().hex[:6]}",
            **limits,
        )


def _start_watchdog(driver: str) -> subprocess.Popen[bytes]:
    """A process that removes this driver's containers once the driver's pipe closes."""
    return subprocess.Popen(
        [sys.executable, "-m", "search.launchers.watchdog", "docker", f"{DRIVER_LABEL}={driver}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
