"""The trial Job (search.launchers.k8s_manifest): built from k8s/job.yaml or a
``--job-template``, validated strictly against the real Kubernetes 1.31 OpenAPI schema
(kubernetes-validate) and compared with k8s/job.yaml, its template (tests/k8s also runs the
manifest policies on it). Pure functions: no API server is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from search.launchers.base import TrialSpec
from search.launchers.k8s_manifest import (
    PLAIN_GPU,
    build_trial_job,
    check_gpu_resource,
    default_template,
    job_name,
    label_value,
    read_template,
)
from tests.conftest import REPO

JOB_YAML = REPO / "k8s" / "job.yaml"
SPEC = TrialSpec(
    name="resnet-job-7",
    env={"MAX_LR": "0.02", "EPOCHS": "8"},
    output_dir=Path("/output/search/trials/7"),
    data_dir=Path("/data"),
    labels={"study": "resnet-job", "trial": "7"},
)
MIG = "nvidia.com/mig-1g.10gb"


def _job_yaml() -> dict:
    return yaml.safe_load(JOB_YAML.read_text())


def as_dict(job: client.V1Job) -> dict:
    return client.ApiClient().sanitize_for_serialization(job)


def _build(template: dict | None = None, gpu: bool = True, **kw) -> dict:
    job = build_trial_job(
        SPEC, name="resnet-job-7-abc123", image="resnet-job:0.1.0", gpu=gpu, template=template, **kw
    )
    assert isinstance(job, client.V1Job)
    return as_dict(job)


def _train(job: dict) -> dict:
    (train,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "train"]
    return train


def _with_mig(template: dict) -> dict:
    """A --job-template that already asks for a MIG slice instead of a whole GPU."""
    for kind in ("requests", "limits"):
        res = _train(template)["resources"][kind]
        del res["nvidia.com/gpu"]
        res[MIG] = 1
    return template


# default: k8s/job.yaml as the package ships it; the others as --job-template gives them.
TEMPLATES = {
    "default": lambda: None,
    "k8s/job.yaml": _job_yaml,
    "mig template": lambda: _with_mig(_job_yaml()),
}


@pytest.mark.parametrize("gpu_resource", ["nvidia.com/gpu", MIG])
@pytest.mark.parametrize("gpu", [True, False])
@pytest.mark.parametrize("template", TEMPLATES)
def test_trial_job_is_valid_kubernetes_1_31(template: str, gpu: bool, gpu_resource: str) -> None:
    job = _build(TEMPLATES[template](), gpu, gpu_resource=gpu_resource)
    kubernetes_validate.validate(job, "1.31", strict=True)


@pytest.mark.parametrize("template", TEMPLATES)
def test_trial_job_runs_one_attempt_of_the_trial(template: str) -> None:
    job = _build(TEMPLATES[template]())
    pod = job["spec"]["template"]["spec"]
    train = _train(job)
    env = {e["name"]: e.get("value") for e in train["env"]}
    assert job["metadata"]["name"] == "resnet-job-7-abc123"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod["restartPolicy"] == "Never"
    assert train["image"] == "resnet-job:0.1.0"
    assert env["OUTPUT_DIR"] == "/output/search/trials/7"
    assert env["MAX_LR"] == "0.02"
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["resnet-job/study"] == "resnet-job"
        assert labels["resnet-job/trial"] == "7"


def _kept(job: dict) -> dict:
    """What a trial Job must take from k8s/job.yaml unchanged."""
    pod = job["spec"]["template"]["spec"]
    train = _train(job)
    return {
        "podFailurePolicy": job["spec"]["podFailurePolicy"],
        "activeDeadlineSeconds": job["spec"]["activeDeadlineSeconds"],
        "podReplacementPolicy": job["spec"]["podReplacementPolicy"],
        "pod securityContext": pod["securityContext"],
        "terminationGracePeriodSeconds": pod["terminationGracePeriodSeconds"],
        "automountServiceAccountToken": pod["automountServiceAccountToken"],
        "volumes": pod["volumes"],
        "container securityContext": train["securityContext"],
        "volumeMounts": train["volumeMounts"],
        "imagePullPolicy": train["imagePullPolicy"],
        **{
            f"{kind} {name}": str(value)
            for kind, res in train["resources"].items()
            for name, value in res.items()
            if name in ("cpu", "memory")
        },
    }


@pytest.mark.parametrize("gpu", [True, False])
def test_trial_job_keeps_k8s_job_yaml_security_resources_and_failure_policy(gpu: bool) -> None:
    expected = _kept(_job_yaml())
    assert {"limits cpu", "limits memory", "requests cpu", "requests memory"} <= set(expected)
    assert _kept(_build(gpu=gpu)) == expected


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("gpu_resource", ["nvidia.com/gpu", MIG, "nvidia.com/gpu.shared"])
def test_trial_job_requests_one_of_the_gpu_resource_and_nothing_else(
    template: str, gpu_resource: str
) -> None:
    resources = _train(_build(TEMPLATES[template](), gpu_resource=gpu_resource))["resources"]
    for kind in ("requests", "limits"):
        gpus = {k: v for k, v in resources[kind].items() if k.startswith("nvidia.com/")}
        assert gpus == {gpu_resource: "1"}, kind


@pytest.mark.parametrize("template", TEMPLATES)
def test_trial_job_without_gpu_requests_none_and_runs_on_cpu(template: str) -> None:
    train = _train(_build(TEMPLATES[template](), gpu=False, gpu_resource=MIG))
    assert "nvidia.com/" not in json.dumps(train["resources"])
    assert {"cpu", "memory"} <= set(train["resources"]["limits"])
    assert {"name": "DEVICE", "value": "cpu"} in train["env"]


def test_a_trial_job_with_a_gpu_trains_on_it_in_the_gpu_order() -> None:
    env = _train(_build(gpu=True))["env"]
    assert {"name": "DEVICE", "value": "cuda"} in env
    assert {"name": "CUDA_DEVICE_ORDER", "value": "PCI_BUS_ID"} in env


def test_trial_job_drops_template_variables_only_the_replaced_output_dir_used() -> None:
    # k8s/job.yaml's JOB_NAME only builds its own OUTPUT_DIR, which the trial replaces.
    names = [e["name"] for e in _train(_build())["env"]]
    assert "JOB_NAME" not in names
    assert names.count("OUTPUT_DIR") == 1


def test_trial_job_keeps_template_variables_that_are_still_used() -> None:
    template = _job_yaml()
    train = _train(template)
    train["env"] = [e for e in train["env"] if e["name"] != "DATA_DIR"] + [
        {"name": "CACHE_ROOT", "value": "/data"},
        {"name": "DATA_DIR", "value": "$(CACHE_ROOT)/cifar"},
    ]
    env = [(e["name"], e.get("value")) for e in _train(_build(template))["env"]]
    names = [n for n, _ in env]
    assert names.index("CACHE_ROOT") < names.index("DATA_DIR")  # order kept: $() expands
    assert ("DATA_DIR", "$(CACHE_ROOT)/cifar") in env


@pytest.mark.parametrize(
    ("raw", "ok"), [("resnet-job-3", True), ("My Study/#1", True), ("x" * 80, True)]
)
def test_names_and_labels_are_valid(raw: str, ok: bool) -> None:
    name = job_name(raw)
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    assert name == name.lower()
    value = label_value(raw)
    assert len(value) <= 63 and (not value or (value[0].isalnum() and value[-1].isalnum()))


@pytest.mark.parametrize("raw", ["", "---", "!!!", "/"])
def test_a_name_with_nothing_usable_becomes_trial(raw: str) -> None:
    assert job_name(raw).startswith("trial-")


def test_each_launch_gets_its_own_job_name() -> None:
    names = {job_name("resnet-job-7") for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith("resnet-job-7-") for n in names)


@pytest.mark.parametrize(("raw", "value"), [("a b/c", "a-b-c"), ("-x-", "x"), ("y" * 70, "y" * 63)])
def test_label_values_are_cleaned_and_cut(raw: str, value: str) -> None:
    assert label_value(raw) == value


# -- the template ---------------------------------------------------------------------------


def test_the_default_template_is_a_fresh_copy_each_time() -> None:
    first = default_template()
    first["spec"]["template"]["spec"]["containers"].clear()
    assert default_template() == _job_yaml()


@pytest.mark.parametrize(
    "documents",
    [
        ["JOB"],
        ["{kind: ConfigMap, metadata: {name: c}}", "JOB"],
        ["", "JOB", "{kind: Job, metadata: {name: second}}"],
    ],
)
def test_the_job_template_is_the_files_first_job(tmp_path: Path, documents: list[str]) -> None:
    path = tmp_path / "template.yaml"
    job = JOB_YAML.read_text()
    path.write_text("\n---\n".join(job if d == "JOB" else d for d in documents))
    assert read_template(path) == _job_yaml()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read the Job template"),
        ("kind: [Job\n", "cannot read the Job template"),
        ("kind: ConfigMap\n", "holds no kind: Job document"),
        ("- kind: Job\n", "holds no kind: Job document"),
        ("", "holds no kind: Job document"),
    ],
)
def test_a_template_without_a_readable_job_is_refused(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "template.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError, match=message) as refused:
        read_template(path)
    assert str(path) in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_template_without_containers_is_refused() -> None:
    template = _job_yaml()
    template["spec"]["template"]["spec"]["containers"] = []
    with pytest.raises(ValueError, match="has no container"):
        _build(template)


def test_a_template_without_a_train_container_runs_the_trial_in_its_first() -> None:
    template = _job_yaml()
    for container in template["spec"]["template"]["spec"]["containers"]:
        container["name"] = "main"
    job = _build(template)
    (first, *_) = job["spec"]["template"]["spec"]["containers"]
    assert first["image"] == "resnet-job:0.1.0"
    assert {"name": "MAX_LR", "value": "0.02"} in first["env"]


def test_a_template_for_many_pods_becomes_one_named_pod() -> None:
    template = _job_yaml()
    template["metadata"]["generateName"] = "resnet-job-"
    template["spec"].update({"completions": 4, "parallelism": 2})
    job = _build(template, namespace="tuning", ttl=60)
    assert "generateName" not in job["metadata"]
    assert job["metadata"]["namespace"] == "tuning"
    assert "completions" not in job["spec"] and "parallelism" not in job["spec"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 60


# -- the GPU resource -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "per_gpu", "gpu"),
    [(PLAIN_GPU, 1, True), (MIG, 4, True), ("example.com/tpu", 2, True), (PLAIN_GPU, 3, False)],
)
def test_gpu_settings_the_cluster_can_honour_are_accepted(
    resource: str, per_gpu: int, gpu: bool
) -> None:
    check_gpu_resource(resource, per_gpu, gpu)


def test_the_trial_env_is_in_one_stable_order() -> None:
    spec = TrialSpec(name="t", env={"B": "2", "A": "1"}, output_dir=Path("/o"), data_dir=Path("/d"))
    job = build_trial_job(spec, name="t-1", image="i", gpu=False)
    names = [e.name for e in job.spec.template.spec.containers[0].env]
    ours = [n for n in names if n in ("A", "B", "DEVICE", "OUTPUT_DIR")]
    assert ours == ["A", "B", "DEVICE", "OUTPUT_DIR"]
    assert json.dumps(as_dict(job))  # serialisable as the API sends it
