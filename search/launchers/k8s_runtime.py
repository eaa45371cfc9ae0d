"""The Kubernetes API side of a trial: create its Job, stream its pods' logs, delete it.

Only API calls, through the official client's ``BatchV1Api`` and ``CoreV1Api``; what the Job
looks like is :mod:`search.launchers.k8s_manifest`'s business. A run streams the log of each
pod of its Job in turn (stdout and stderr interleaved; the driver keeps the JSON event lines),
deletes the Job with foreground propagation to stop it, and reports a pod stuck Pending (no
GPU free) past a limit as such.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.launchers.base import LOST
from search.launchers.k8s_manifest import CONTAINER

if TYPE_CHECKING:
    from kubernetes.client import V1Job, V1Pod


def load_client_config() -> None:
    """In-cluster service-account auth when running in a pod, else the kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


@dataclass
class KubeApi:
    """The two API groups a trial uses, in one namespace, and how patiently to poll them."""

    batch: Any
    """A ``kubernetes.client.BatchV1Api`` (or an object with the same methods)."""
    core: Any
    """A ``kubernetes.client.CoreV1Api`` (or an object with the same methods)."""
    namespace: str
    poll: float = 2.0
    """Seconds between status polls."""
    pending_timeout: float = 900.0
    """Seconds a pod may stay Pending (not scheduled, image not pulled) before the trial fails."""

    @classmethod
    def connect(cls, namespace: str, **settings: float) -> KubeApi:
        """The real client, authenticated in-cluster or from the kubeconfig."""
        from kubernetes import client

        load_client_config()
        return cls(client.BatchV1Api(), client.CoreV1Api(), namespace, **settings)

    def create(self, name: str, job: V1Job) -> KubeRun:
        """Create ``job`` (named ``name``); the returned run follows its pods."""
        self.batch.create_namespaced_job(self.namespace, job)
        return KubeRun(self, name)


class KubeRun:
    """One trial Job: its pods' logs, deletion, and the exit code of its last pod."""

    log_path: Path | None = None

    def __init__(self, api: KubeApi, name: str) -> None:
        self.api = api
        self.name = name
        self.selector = f"job-name={name}"
        self.pod: str | None = None
        self.tail = ""
        self.stopped = False

    def lines(self) -> Iterator[str]:
        """Stream the log of each pod of the Job (a preempted pod is replaced) until it ends."""
        seen: set[str] = set()
        while not self.stopped:
            pod = self._next_pod(seen)
            if pod is None:
                return
            seen.add(pod)
            self.pod = pod
            yield from self._stream(pod)
            if self._job_finished() is not None:
                return

    def _next_pod(self, seen: set[str]) -> str | None:
        """Wait for a pod not yet streamed to start; None when the Job ended or is stuck."""
        pending_since = time.monotonic()
        while not self.stopped:
            pods = [
                p
                for p in self.api.core.list_namespaced_pod(
                    self.api.namespace, label_selector=self.selector
                ).items
                if p.metadata.name not in seen
            ]
            pods.sort(key=lambda p: p.metadata.creation_timestamp or 0)
            for p in pods:
                if p.status.phase in ("Running", "Succeeded", "Failed"):
                    return str(p.metadata.name)
            if not pods and self._job_finished() is not None:
                return None
            if time.monotonic() - pending_since > self.api.pending_timeout:
                why = _pending_reason(pods[-1]) if pods else "no pod was created"
                self.tail = (
                    f"pod pending for over {self.api.pending_timeout:g} s ({why}); "
                    "no node could run it (no free GPU?)"
                )
                self.stop(grace=0)
                return None
            time.sleep(self.api.poll)
        return None

    def _stream(self, pod: str) -> Iterator[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.api.core.read_namespaced_pod_log(
                pod,
                self.api.namespace,
                container=CONTAINER,
                follow=True,
                _preload_content=False,
            )
        except ApiException:
            return
        buf = b""
        try:
            for chunk in resp.stream(4096):  # bytes
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    yield self._line(raw)
            if buf:
                yield self._line(buf)
        finally:
            resp.release_conn()

    def _line(self, raw: bytes) -> str:
        line = raw.decode("utf-8", "replace")
        if line.strip() and not line.lstrip().startswith("{"):
            self.tail = line.strip()  # stderr shares the pod log: keep its last line
        return line + "\n"

    def _job_finished(self) -> str | None:
        """ "Complete", "Failed", "Gone" (deleted) or None while the Job still runs."""
        from kubernetes.client.exceptions import ApiException

        try:
            job = self.api.batch.read_namespaced_job(self.name, self.api.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "Gone"
            raise
        for cond in (job.status and job.status.conditions) or []:
            if cond.type in ("Complete", "Failed") and cond.status == "True":
                return str(cond.type)
        return None

    def stop(self, grace: float = 30.0) -> None:
        """Delete the Job and its pods (foreground); the pod gets SIGTERM and ``grace`` s."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.stopped = True
        try:
            self.api.batch.delete_namespaced_job(
                self.name,
                self.api.namespace,
                body=client.V1DeleteOptions(
                    propagation_policy="Foreground", grace_period_seconds=int(grace)
                ),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def wait(self) -> int:
        """The exit code of the Job's last pod; ``LOST`` when the pod or Job vanished."""
        while True:
            state = self._job_finished()
            if state is not None or self.stopped:
                break
            time.sleep(self.api.poll)
        code = self._exit_code()
        return LOST if code is None else code

    def _exit_code(self) -> int | None:
        from kubernetes.client.exceptions import ApiException

        if self.pod is None:
            return None
        try:
            pod = self.api.core.read_namespaced_pod(self.pod, self.api.namespace)
        except ApiException:
            return None
        for status in (pod.status and pod.status.container_statuses) or []:
            term = status.state and status.state.terminated
            if status.name == CONTAINER and term is not None:
                return int(term.exit_code)
        return None

    def stderr_tail(self) -> str:
        """The last non-event line of the pod log, or why the pod never ran."""
        return self.tail


def _pending_reason(pod: V1Pod) -> str:
    status = pod.status
    for cond in (status and status.conditions) or []:
        if cond.type == "PodScheduled" and cond.status != "True":
            return str(cond.message or cond.reason or "unschedulable")
    return f"phase {status.phase if status else 'unknown'}"
