"""Run the job as a Kubernetes Job, with the official Python client.

Each trial is one Job built by :mod:`search.launchers.k8s_manifest` from k8s/job.yaml (shipped
in the package) or ``--job-template``, and followed by :mod:`search.launchers.k8s_runtime`.

The trial's ``OUTPUT_DIR`` is the driver's own trial folder: in the cluster both mount the
same volume at the same path (``k8s/search-job.yaml``), so the driver reads trial files back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.launchers.base import TrialSpec
from search.launchers.k8s_manifest import (
    PLAIN_GPU,
    build_trial_job,
    check_gpu_resource,
    job_name,
)
from search.launchers.k8s_runtime import KubeApi, KubeRun

__all__ = ["KubeRun", "KubernetesLauncher"]


class KubernetesLauncher:
    """Start each trial as a Kubernetes Job in ``namespace``.

    Each trial Job requests one ``gpu_resource`` when ``gpu``. ``trials_per_gpu`` > 1 is
    accepted only with a resource the cluster shares (MIG, renamed time-sliced GPUs): see
    :func:`~search.launchers.k8s_manifest.check_gpu_resource`, which raises ``ValueError``
    with the sentence to show. ``batch``/``core`` replace the real API clients (tests).
    """

    name = "kubernetes"

    def __init__(
        self,
        image: str,
        namespace: str,
        gpu: bool = True,
        template: Mapping[str, Any] | None = None,
        *,
        gpu_resource: str = PLAIN_GPU,
        trials_per_gpu: int = 1,
        batch: Any = None,
        core: Any = None,
        pending_timeout: float = 900.0,
        poll: float = 2.0,
    ) -> None:
        # Checked before any API client is made: a wrong setting is reported as such, even
        # where no kubeconfig exists.
        check_gpu_resource(gpu_resource, trials_per_gpu, gpu)
        self.image = image
        self.namespace = namespace
        self.gpu = gpu
        self.gpu_resource = gpu_resource
        self.trials_per_gpu = trials_per_gpu
        self.template = template
        settings = {"poll": poll, "pending_timeout": pending_timeout}
        if batch is None or core is None:
            self.api = KubeApi.connect(namespace, **settings)
        else:
            self.api = KubeApi(batch, core, namespace, **settings)

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
            gpu_resource=self.gpu_resource,
        )
        return self.api.create(name, job)
