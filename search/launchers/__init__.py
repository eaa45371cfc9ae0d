"""Launchers: where a trial's job runs (local process, Docker container, Kubernetes Job)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.launchers.base import LOST, Launcher, Run, TrialSpec

__all__ = ["LOST", "Launcher", "Run", "TrialSpec", "detect_gpus", "docker_ready", "make_launcher"]


def make_launcher(
    name: str,
    *,
    image: str,
    namespace: str,
    gpus: bool,
    template: Mapping[str, Any] | None,
    gpu_resource: str | None,
    trials_per_gpu: int,
    slots: int,
    cold_start: bool,
) -> Launcher:
    """Build the launcher ``name`` (local, docker, kubernetes) with its options.

    ``slots`` (the driver's trials at once) serves local and docker, which divide this
    machine's cores between them; ``image`` serves docker and kubernetes; ``namespace``,
    ``gpus`` (whether trials get a GPU), ``template``, ``gpu_resource`` (``None``: the
    launcher's default, nvidia.com/gpu) and ``trials_per_gpu`` serve kubernetes;
    ``cold_start`` (start every trial as a new Python process instead of forking it from a
    warm one, :mod:`search.launchers.warm`) serves local; Docker and Kubernetes trials always
    start cold, each in a container of its own. A setting the
    launcher refuses raises ValueError with one sentence saying what to do.
    """
    if name == "local":
        from search.launchers.local import LocalLauncher

        return LocalLauncher(slots=slots, cold_start=cold_start)
    if name == "docker":
        from search.launchers.docker import DockerLauncher

        return DockerLauncher(image=image, slots=slots)
    if name == "kubernetes":
        from search.launchers.kubernetes import KubernetesLauncher

        shared: dict[str, Any] = {"trials_per_gpu": trials_per_gpu}
        if gpu_resource:
            shared["gpu_resource"] = gpu_resource
        return KubernetesLauncher(
            image=image,
            namespace=namespace,
            gpu=gpus,
            template=template,
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
    """GPU indices that ``nvidia-smi`` lists on this machine (none without it), whatever the
    driver's ``CUDA_VISIBLE_DEVICES`` (:mod:`search.gpus` applies it)."""
    from search.gpus import query_gpus

    return [index for index, _ in query_gpus()]
