"""The trial Job: k8s/job.yaml + a trial's env, labels and GPU → a ``kubernetes.client.V1Job``.

Pure functions (and the reading of a ``--job-template`` file), no API call. The template is
k8s/job.yaml itself, shipped in the package as ``search.manifests`` (pyproject.toml maps that
package to k8s/), so a trial runs with exactly the security, resource and failure settings of
a single training run; only what makes it one attempt of one trial changes (name, labels,
image, env, GPU resource, ``backoffLimit: 0``, ``restartPolicy: Never``, a shorter
``ttlSecondsAfterFinished``).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from job.contract import VARIABLE_NAMES
from search.errors import first_line
from search.gpus import placement_env
from search.launchers.base import TrialSpec, env_items

if TYPE_CHECKING:
    from kubernetes.client import V1Job

CONTAINER = "train"
"""The job's container in k8s/job.yaml: its logs are streamed, its exit code read."""
TEMPLATE_PACKAGE = "search.manifests"
TEMPLATE_FILE = "job.yaml"
TRIAL_TTL = 3600
"""Seconds a finished trial Job object is kept (its outputs live on the volume)."""
PLAIN_GPU = "nvidia.com/gpu"
"""The NVIDIA device plugin's whole-GPU resource: one per pod, never shared."""
GPU_RESOURCE_PREFIX = "nvidia.com/"
"""Resources the template's own GPU request is recognised by (whole GPUs, MIG slices, shared
time-sliced GPUs): all of them are replaced by the one resource the launcher was given."""
_RESOURCE_NAME = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@functools.cache
def _packaged_template() -> str:
    return (importlib.resources.files(TEMPLATE_PACKAGE) / TEMPLATE_FILE).read_text()


def default_template() -> dict[str, Any]:
    """k8s/job.yaml, as shipped in the package, parsed (a fresh copy on every call)."""
    return yaml.safe_load(_packaged_template())


def read_template(path: Path) -> dict[str, Any]:
    """The first ``kind: Job`` document of the YAML file ``path`` (``--job-template``);
    ValueError with one sentence when it cannot be read or holds no Job."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the Job template {path}: {first_line(exc)}") from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"]
    if not jobs:
        raise ValueError(f"the Job template {path} holds no kind: Job document.")
    return jobs[0]


def check_gpu_resource(gpu_resource: str, trials_per_gpu: int, gpu: bool = True) -> None:
    """Refuse a GPU setting the cluster cannot honour, with one sentence that says how to fix it.

    ``gpu_resource`` must be an extended resource name (``domain/name``). K trials per GPU
    (``trials_per_gpu`` > 1) need a resource that the cluster itself shares: the plain
    ``nvidia.com/gpu`` gives each pod a whole GPU, so it is refused there. Without GPUs
    (``gpu`` false) nothing is shared and only the name is checked.
    """
    if not _RESOURCE_NAME.match(gpu_resource):
        raise ValueError(
            f"--gpu-resource {gpu_resource!r} is not an extended resource name; "
            f"give one as domain/name, e.g. {PLAIN_GPU} or nvidia.com/mig-1g.10gb."
        )
    if trials_per_gpu < 1:
        raise ValueError(f"--trials-per-gpu {trials_per_gpu} must be at least 1.")
    if gpu and trials_per_gpu > 1 and gpu_resource == PLAIN_GPU:
        raise ValueError(
            f"--trials-per-gpu {trials_per_gpu} needs a shared GPU resource on Kubernetes, "
            f"but one {PLAIN_GPU} cannot be shared; enable time-slicing or MIG in the cluster "
            "and pass --gpu-resource <name>, e.g. nvidia.com/mig-1g.10gb (MIG) or "
            "nvidia.com/gpu.shared (time-slicing with renamed resources)."
        )


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
    gpu_resource: str = PLAIN_GPU,
) -> V1Job:
    """The trial's Job as a ``kubernetes.client.V1Job`` (pure: no API call).

    From ``template`` (default: k8s/job.yaml, :func:`default_template`) it keeps pod security,
    volumes, cpu/memory requests and limits and the ``podFailurePolicy``; it sets the name,
    labels, image and the trial's env (``OUTPUT_DIR`` = the trial folder; template variables
    that only fed the replaced ones, such as ``JOB_NAME``, are dropped); it replaces the
    template's ``nvidia.com/*`` resources by ``gpu_resource: 1`` (requests and limits) when
    ``gpu``, by none otherwise; and sets ``backoffLimit: 0`` (the driver decides about
    retries), ``restartPolicy: Never`` and ``ttlSecondsAfterFinished: ttl``.
    """
    from kubernetes import client

    body = copy.deepcopy(dict(template)) if template is not None else default_template()
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
    container["env"] = _merge_env(container, spec, gpu)
    _set_gpu(container.setdefault("resources", {}), gpu_resource, gpu)
    job = client.V1Job.from_dict(body)
    assert job is not None  # from_dict returns None only for None
    return job


def _set_gpu(resources: dict[str, Any], gpu_resource: str, gpu: bool) -> None:
    """The container's requests and limits with every GPU resource (``nvidia.com/*`` and
    ``gpu_resource``) replaced by one ``gpu_resource`` when ``gpu``, by none otherwise."""
    for kind in ("requests", "limits"):
        res = {  # quantities as strings: the client's models and the API agree on them
            k: str(v)
            for k, v in (resources.get(kind) or {}).items()
            if not k.startswith(GPU_RESOURCE_PREFIX) and k != gpu_resource
        }
        if gpu:
            res[gpu_resource] = "1"
        if res:
            resources[kind] = res
        else:
            resources.pop(kind, None)


def _train_container(pspec: dict[str, Any]) -> dict[str, Any]:
    containers = pspec.get("containers") or []
    for c in containers:
        if c.get("name") == CONTAINER:
            return c
    if not containers:
        raise ValueError("the Job template has no container; give it one that runs the job.")
    return containers[0]


def _merge_env(container: dict[str, Any], spec: TrialSpec, gpu: bool) -> list[dict[str, Any]]:
    """The template's env with the trial's values; helpers nothing reads any more dropped."""
    ours = {**dict(spec.env), "OUTPUT_DIR": str(spec.output_dir)}
    ours.update(placement_env(gpu))  # a GPU pod sees only the GPU it was given
    kept = [e for e in container.get("env", []) if e.get("name") not in ours]
    # A template variable that is not the job's (k8s/job.yaml's JOB_NAME, which only built
    # its OUTPUT_DIR) stays only while something still expands it as $(NAME).
    texts = [*container.get("command", []), *container.get("args", [])]
    texts += [e.get("value", "") for e in kept]
    referenced = {n for text in texts for n in _REF.findall(text)}
    kept = [e for e in kept if e.get("name") in VARIABLE_NAMES or e.get("name") in referenced]
    return kept + [{"name": k, "value": v} for k, v in env_items(ours)]
