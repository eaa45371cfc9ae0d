"""Launchers: where a trial's job runs (local process, Docker container, Kubernetes Job)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from search.launchers.base import LOST, Launcher, Run, TrialSpec

__all__ = ["LOST", "Launcher", "Run", "TrialSpec", "detect_gpus", "docker_ready", "make_launcher"]


def make_launcher(name: str, **options: Any) -> Launcher:
    """Build the launcher ``name`` (local, docker, kubernetes) with its options.

    Options: ``image`` (docker, kubernetes); ``namespace``, ``gpus`` (whether trials get a
    GPU), ``template``, ``gpu_resource`` and ``trials_per_gpu`` (kubernetes). A setting the
    launcher refuses raises ValueError with one sentence saying what to do.
    """
    if name == "local":
        from search.launchers.local import LocalLauncher

        return LocalLauncher()
    if name == "docker":
        from search.launchers.docker import DockerLauncher

        return DockerLauncher(image=options["image"])
    if name == "kubernetes":
        from search.launchers.kubernetes import KubernetesLauncher

        shared: dict[str, Any] = {"trials_per_gpu": int(options.get("trials_per_gpu") or 1)}
        if options.get("gpu_resource"):  # else the launcher's default, nvidia.com/gpu
            shared["gpu_resource"] = options["gpu_resource"]
        return KubernetesLauncher(
            image=options["image"],
            namespace=options.get("namespace") or "default",
            gpu=bool(options.get("gpus", True)),
            template=options.get("template"),
            **shared,
        )
    raise ValueError(f"unknown launcher {name!r}")


def docker_ready(image: str) -> tuple[bool, str]:
    """Whether a Docker daemon answers and has ``image`` locally, and why not."""
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return False, f"no Docker daemon answers ({type(exc).__name__})"
    try:
        client.images.get(image)
    except ImageNotFound:
        return False, f"the image {image} is not present locally"
    except DockerException as exc:
        return False, f"Docker error: {exc}"
    return True, f"Docker answers and has {image}"


def detect_gpus() -> list[str]:
    """GPU indices that ``nvidia-smi`` lists on this machine (none without it)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]
