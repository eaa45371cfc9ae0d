"""Run the job as a Kubernetes Job, with the official Python client.

:func:`build_trial_job` is a pure function: template (by default the same security and
failure settings as ``k8s/job.yaml``) + a trial's env, labels and GPU → a ``V1Job``. The
launcher creates it, streams the pod's log (stdout and stderr interleaved; the driver keeps
the JSON event lines), deletes the Job with foreground propagation to stop it, and reports
a pod stuck Pending (no GPU free) past a limit as such.

The trial's ``OUTPUT_DIR`` is the driver's own trial folder: in the cluster both mount the
same volume at the same path (``k8s/search-job.yaml``), so the driver reads trial files back.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from search.launchers.base import LOST, TrialSpec, env_items

CONTAINER = "train"
TRIAL_TTL = 3600
"""Seconds a finished trial Job object is kept (its outputs live on the volume)."""

DEFAULT_TEMPLATE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"app.kubernetes.io/name": "resnet-job"}},
    "spec": {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": TRIAL_TTL,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [2]},
                },
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/name": "resnet-job"}},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 120,
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": "resnet-job:latest",
                        "imagePullPolicy": "IfNotPresent",
                        "env": [{"name": "DATA_DIR", "value": "/data"}],
                        "resources": {"requests": {"cpu": "4", "memory": "8Gi"}},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "output", "mountPath": "/output"},
                            {"name": "tmp", "mountPath": "/tmp"},
                            {"name": "dshm", "mountPath": "/dev/shm"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "resnet-job-data"}},
                    {
                        "name": "output",
                        "persistentVolumeClaim": {"claimName": "resnet-job-output"},
                    },
                    {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                ],
            },
        },
    },
}
"""The trial Job used without ``--job-template``: k8s/job.yaml's settings, one attempt."""


def job_name(spec_name: str) -> str:
    """A DNS-1123 Job name from a trial name, with a short random suffix per launch."""
    base = re.sub(r"[^a-z0-9-]+", "-", spec_name.lower()).strip("-")[:48].strip("-") or "trial"
    return f"{base}-{uuid.uuid4().hex[:6]}"


def label_value(value: str) -> str:
    """A valid label value (63 chars of [A-Za-z0-9-_.], alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")


def build_trial_job(
    spec: TrialSpec,
    *,
    name: str,
    image: str,
    gpu: bool,
    template: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    ttl: int = TRIAL_TTL,
) -> Any:
    """The trial's Job as a ``kubernetes.client.V1Job`` (pure: no API call).

    From ``template`` (default :data:`DEFAULT_TEMPLATE`) it keeps pod security, volumes and
    resources; it sets the name, labels, image, the trial's env (``OUTPUT_DIR`` = the
    trial folder), ``nvidia.com/gpu: 1`` when ``gpu``, ``backoffLimit: 0`` (the driver
    decides about retries), ``restartPolicy: Never`` and ``ttlSecondsAfterFinished``.
    """
    from kubernetes import client

    body = copy.deepcopy(dict(template or DEFAULT_TEMPLATE))
    meta = body.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = name
    if namespace:
        meta["namespace"] = namespace
    labels = {
        **meta.get("labels", {}),
        "app.kubernetes.io/component": "trial",
        **{f"resnet-job/{k}": label_value(v) for k, v in spec.labels.items()},
    }
    meta["labels"] = labels
    jspec = body.setdefault("spec", {})
    jspec["backoffLimit"] = 0
    jspec["ttlSecondsAfterFinished"] = ttl
    jspec.pop("completions", None)
    jspec.pop("parallelism", None)
    pod = jspec.setdefault("template", {})
    pod.setdefault("metadata", {})["labels"] = {**pod["metadata"].get("labels", {}), **labels}
    pspec = pod.setdefault("spec", {})
    pspec["restartPolicy"] = "Never"
    container = _train_container(pspec)
    container["image"] = image
    container["env"] = _merge_env(container.get("env", []), spec, gpu)
    resources = container.setdefault("resources", {})
    for kind in ("requests", "limits"):
        res = {k: str(v) for k, v in (resources.get(kind) or {}).items()}  # quantities
        if gpu:
            res["nvidia.com/gpu"] = "1"
        else:
            res.pop("nvidia.com/gpu", None)
        if res:
            resources[kind] = res
    return client.V1Job.from_dict(body)


def _train_container(pspec: dict[str, Any]) -> dict[str, Any]:
    containers = pspec.get("containers") or []
    for c in containers:
        if c.get("name") == CONTAINER:
            return c
    if not containers:
        raise ValueError("the Job template has no container")
    return containers[0]


def _merge_env(template_env: list[dict[str, Any]], spec: TrialSpec, gpu: bool) -> list[dict]:
    ours = {**dict(spec.env), "OUTPUT_DIR": str(spec.output_dir)}
    if not gpu:
        ours.setdefault("DEVICE", "cpu")
    kept = [e for e in template_env if e.get("name") not in ours]
    # The template's OUTPUT_DIR may reference $(JOB_NAME); ours is the trial folder instead.
    return kept + [{"name": k, "value": v} for k, v in env_items(ours)]


def load_client_config() -> None:
    """In-cluster service-account auth when running in a pod, else the kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class KubeRun:
    """One trial Job: its pods' logs, deletion, and the exit code of its last pod."""

    log_path: Path | None = None

    def __init__(self, launcher: KubernetesLauncher, name: str) -> None:
        self.k = launcher
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
                for p in self.k.core.list_namespaced_pod(
                    self.k.namespace, label_selector=self.selector
                ).items
                if p.metadata.name not in seen
            ]
            pods.sort(key=lambda p: p.metadata.creation_timestamp or 0)
            for p in pods:
                if p.status.phase in ("Running", "Succeeded", "Failed"):
                    return p.metadata.name
            if not pods and self._job_finished() is not None:
                return None
            if time.monotonic() - pending_since > self.k.pending_timeout:
                why = _pending_reason(pods[-1]) if pods else "no pod was created"
                self.tail = (
                    f"pod pending for over {self.k.pending_timeout:g} s ({why}); "
                    "no node could run it (no free GPU?)"
                )
                self.stop(grace=0)
                return None
            time.sleep(self.k.poll)
        return None

    def _stream(self, pod: str) -> Iterator[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.k.core.read_namespaced_pod_log(
                pod,
                self.k.namespace,
                container=CONTAINER,
                follow=True,
                _preload_content=False,
            )
        except ApiException:
            return
        buf = b""
        try:
            for chunk in resp.stream(4096):
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
            job = self.k.batch.read_namespaced_job(self.name, self.k.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return "Gone"
            raise
        for cond in (job.status and job.status.conditions) or []:
            if cond.type in ("Complete", "Failed") and cond.status == "True":
                return cond.type
        return None

    def stop(self, grace: float = 30.0) -> None:
        """Delete the Job and its pods (foreground); the pod gets SIGTERM and ``grace`` s."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.stopped = True
        try:
            self.k.batch.delete_namespaced_job(
                self.name,
                self.k.namespace,
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
            time.sleep(self.k.poll)
        code = self._exit_code()
        return LOST if code is None else code

    def _exit_code(self) -> int | None:
        from kubernetes.client.exceptions import ApiException

        if self.pod is None:
            return None
        try:
            pod = self.k.core.read_namespaced_pod(self.pod, self.k.namespace)
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


def _pending_reason(pod: Any) -> str:
    for cond in (pod.status and pod.status.conditions) or []:
        if cond.type == "PodScheduled" and cond.status != "True":
            return cond.message or cond.reason or "unschedulable"
    return f"phase {pod.status.phase}"


class KubernetesLauncher:
    """Start each trial as a Kubernetes Job in ``namespace``."""

    name = "kubernetes"

    def __init__(
        self,
        image: str,
        namespace: str = "default",
        gpu: bool = True,
        template: Mapping[str, Any] | None = None,
        *,
        batch: Any = None,
        core: Any = None,
        pending_timeout: float = 900.0,
        poll: float = 2.0,
    ) -> None:
        if batch is None or core is None:
            from kubernetes import client

            load_client_config()
            batch = batch or client.BatchV1Api()
            core = core or client.CoreV1Api()
        self.image = image
        self.namespace = namespace
        self.gpu = gpu
        self.template = template
        self.batch = batch
        self.core = core
        self.pending_timeout = pending_timeout
        self.poll = poll

    def start(self, spec: TrialSpec) -> KubeRun:
        """Create the trial's Job; the returned run follows its pod."""
        name = job_name(spec.name)
        job = build_trial_job(
            spec,
            name=name,
            image=self.image,
            gpu=self.gpu,
            template=self.template,
            namespace=self.namespace,
        )
        self.batch.create_namespaced_job(self.namespace, job)
        return KubeRun(self, name)
