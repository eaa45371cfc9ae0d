"""The project's Kubernetes policies, as tests over every manifest in k8s/ and over the trial
Jobs the search's kubernetes launcher builds (from k8s/job.yaml, with and without a GPU).

Each workload runs non-root with no privilege escalation, no capabilities, the runtime's
seccomp profile and a read-only root; every container has requests and limits; images are
pinned; Jobs fail fast on a bad configuration and survive disruptions; the CronJob never
overlaps; nothing is exposed outside the cluster; the search driver's permissions stay in its
namespace; no password is in the repository.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO
from tests.k8s.conftest import (
    K8S,
    RESOURCE_FILES,
    TEST_PASSWORD,
    containers,
    is_project_image,
    job_specs,
    load_file,
    pod_specs,
    project_version,
    runs_the_job,
    trial_jobs,
)

FILE_DOCS = [doc for name in RESOURCE_FILES for doc in load_file(name)]
TRIALS = trial_jobs()
DOCS = FILE_DOCS + TRIALS
PODS = pod_specs(DOCS)
CONTAINERS = containers(DOCS)
JOBS = job_specs(DOCS)
TRAINING = [c for c in CONTAINERS if runs_the_job(c[1])]
# The runs k8s/ starts itself (one per Job, not per trial): k8s/job.yaml and the CronJob.
RUNS = [c for c in containers(FILE_DOCS) if runs_the_job(c[1])]
PROJECT = [c for c in CONTAINERS if is_project_image(c[1]["image"])]
WORKLOAD_KINDS = {"Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod"}


def _ids(items: list[tuple]) -> list[str]:
    return [item[0] for item in items]


def test_the_manifests_have_workloads() -> None:
    kinds = {name.split("/")[0] for name, _ in PODS}
    assert {"Job", "CronJob", "Deployment", "StatefulSet"} <= kinds
    assert len(RUNS) >= 2  # k8s/job.yaml and the CronJob
    assert len(TRAINING) == len(RUNS) + len(TRIALS)


# ---- pod and container security -------------------------------------------------------------


@pytest.mark.parametrize(("name", "spec"), PODS, ids=_ids(PODS))
def test_pod_runs_as_non_root(name: str, spec: dict) -> None:
    ctx = spec.get("securityContext", {})
    assert ctx.get("runAsNonRoot") is True
    assert ctx.get("runAsUser", 1) != 0
    assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault"


@pytest.mark.parametrize(("name", "spec"), PODS, ids=_ids(PODS))
def test_pod_shares_nothing_with_the_node(name: str, spec: dict) -> None:
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), key
    assert not [v for v in spec.get("volumes", []) if "hostPath" in v]
    ports = [p for c in spec.get("containers", []) for p in c.get("ports", [])]
    assert not [p for p in ports if "hostPort" in p]


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=_ids(CONTAINERS))
def test_container_cannot_escalate(name: str, container: dict, spec: dict) -> None:
    ctx = container.get("securityContext", {})
    assert ctx.get("allowPrivilegeEscalation") is False
    assert not ctx.get("privileged")
    assert ctx.get("capabilities", {}).get("drop") == ["ALL"]
    assert not ctx.get("capabilities", {}).get("add")
    # A container-level setting must not undo the pod's.
    assert ctx.get("runAsNonRoot", True) is True
    assert ctx.get("runAsUser", 1) != 0


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=_ids(CONTAINERS))
def test_container_root_filesystem_is_read_only_with_a_writable_tmp(
    name: str, container: dict, spec: dict
) -> None:
    assert container.get("securityContext", {}).get("readOnlyRootFilesystem") is True
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert "/tmp" in mounts
    volume = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
    assert "emptyDir" in volume


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=_ids(CONTAINERS))
def test_container_has_requests_and_limits(name: str, container: dict, spec: dict) -> None:
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources.get(kind, {})), kind


@pytest.mark.parametrize(("name", "container", "spec"), TRAINING, ids=_ids(TRAINING))
def test_training_gets_one_gpu_unless_it_runs_on_the_cpu(
    name: str, container: dict, spec: dict
) -> None:
    # One GPU resource (a whole nvidia.com/gpu or a MIG / time-sliced share), requested and
    # limited alike; none for a run pinned to the CPU.
    on_cpu = {"name": "DEVICE", "value": "cpu"} in container["env"]
    for kind in ("requests", "limits"):
        res = container["resources"][kind]
        gpus = {k: str(v) for k, v in res.items() if k.startswith("nvidia.com/")}
        expected = [] if on_cpu else ["1"]
        assert list(gpus.values()) == expected, (kind, gpus)


@pytest.mark.parametrize(("name", "spec"), PODS, ids=_ids(PODS))
def test_only_the_search_driver_gets_an_api_token(name: str, spec: dict) -> None:
    if spec.get("serviceAccountName") == "resnet-job-search":
        assert spec.get("automountServiceAccountToken", True) is True
    else:
        assert spec.get("automountServiceAccountToken") is False


# ---- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=_ids(CONTAINERS))
def test_image_is_pinned(name: str, container: dict, spec: dict) -> None:
    image = container["image"]
    if "@sha256:" in image:
        return
    repo, _, tag = image.rpartition(":")
    assert repo and "/" not in tag, f"{image} has no tag"
    assert tag != "latest"


@pytest.mark.parametrize(("name", "container", "spec"), PROJECT, ids=_ids(PROJECT))
def test_project_image_is_this_version(name: str, container: dict, spec: dict) -> None:
    assert container["image"] == f"resnet-job:{project_version()}"


# ---- Jobs: failure handling -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "job"), JOBS, ids=_ids(JOBS))
def test_job_fails_fast_on_bad_configuration(name: str, job: dict) -> None:
    main = job["template"]["spec"]["containers"][0]["name"]
    rules = job["podFailurePolicy"]["rules"]
    fail = [r for r in rules if r["action"] == "FailJob" and "onExitCodes" in r]
    assert any(
        r["onExitCodes"]["operator"] == "In"
        and 2 in r["onExitCodes"]["values"]
        and r["onExitCodes"].get("containerName") == main
        for r in fail
    )


@pytest.mark.parametrize(("name", "job"), JOBS, ids=_ids(JOBS))
def test_job_ignores_disruptions(name: str, job: dict) -> None:
    rules = job["podFailurePolicy"]["rules"]
    assert any(
        r["action"] == "Ignore"
        and {"type": "DisruptionTarget", "status": "True"} in r.get("onPodConditions", [])
        for r in rules
    )


@pytest.mark.parametrize(("name", "job"), JOBS, ids=_ids(JOBS))
def test_job_is_bounded(name: str, job: dict) -> None:
    assert job["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy needs it
    assert 0 <= job["backoffLimit"] <= 6
    assert job["activeDeadlineSeconds"] > 0
    assert job["ttlSecondsAfterFinished"] > 0
    # A replacement pod waits until the old one has checkpointed and gone.
    assert job["podReplacementPolicy"] == "Failed"


@pytest.mark.parametrize(("name", "container", "spec"), TRAINING, ids=_ids(TRAINING))
def test_training_has_time_to_checkpoint(name: str, container: dict, spec: dict) -> None:
    assert spec["terminationGracePeriodSeconds"] >= 60


@pytest.mark.parametrize(("name", "container", "spec"), RUNS, ids=_ids(RUNS))
def test_training_output_folder_is_per_job(name: str, container: dict, spec: dict) -> None:
    # One folder per Job, not per pod: a replacement pod finds the checkpoint and resumes.
    env = {e["name"]: e for e in container["env"]}
    assert "$(JOB_NAME)" in env["OUTPUT_DIR"]["value"]
    field = env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['batch.kubernetes.io/job-name']"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["OUTPUT_DIR"]["value"].startswith("/output/")
    assert {"/data", "/output"} <= mounts


@pytest.mark.parametrize(("name", "container", "spec"), TRAINING, ids=_ids(TRAINING))
def test_training_threads_follow_the_pods_cpu_limit(name: str, container: dict, spec: dict) -> None:
    # The job sizes its threads from the cgroup quota limits.cpu sets (CPU_THREADS=auto): a
    # whole number of CPUs, and no CPU_THREADS or OMP_NUM_THREADS that would override it.
    limit = str(container["resources"]["limits"]["cpu"])
    assert limit.isdigit() and int(limit) >= 1
    env = {e["name"] for e in container.get("env", [])}
    assert not env & {"CPU_THREADS", "OMP_NUM_THREADS"}


# ---- the retraining CronJob -----------------------------------------------------------------


def _cronjob() -> dict:
    (cron,) = [d for d in load_file("cronjob.yaml") if d["kind"] == "CronJob"]
    return cron


def test_cronjob_never_overlaps() -> None:
    spec = _cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] >= 1
    assert spec["failedJobsHistoryLimit"] >= 1


def _cronjob_container() -> dict:
    (container,) = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def _configmap(name: str) -> dict:
    (doc,) = [
        d
        for d in load_file("cronjob.yaml")
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name
    ]
    return doc


def test_cronjob_reads_its_defaults_then_the_best_params_configmap() -> None:
    # envFrom: for a key in several sources the last wins, so the best parameters (and a SEED
    # a user puts there) override the retraining's defaults.
    refs = [s["configMapRef"] for s in _cronjob_container()["envFrom"] if "configMapRef" in s]
    assert refs == [
        {"name": "resnet-job-retrain-defaults"},
        {"name": "resnet-job-best-params", "optional": True},
    ]


def test_each_retraining_draws_a_new_seed() -> None:
    assert _configmap("resnet-job-retrain-defaults")["data"] == {"SEED": "random"}
    # Not in env, which would override every ConfigMap: a user's explicit SEED must win.
    assert "SEED" not in {e["name"] for e in _cronjob_container()["env"]}


def test_the_retraining_defaults_are_job_variables() -> None:
    from job.config import from_env
    from job.contract import VARIABLE_NAMES

    data = _configmap("resnet-job-retrain-defaults")["data"]
    assert set(data) <= VARIABLE_NAMES
    from_env(data)  # every value parses


def test_the_retraining_defaults_are_in_the_stack(rendered: list[dict]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("ConfigMap", "resnet-job-retrain-defaults") in names


def test_cronjob_promotes_into_a_champion_folder() -> None:
    pod = _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PROMOTE_DIR"].startswith("/output/")
    assert not env["OUTPUT_DIR"].startswith(env["PROMOTE_DIR"])


# ---- exposure and permissions ---------------------------------------------------------------


def test_no_service_is_exposed_outside_the_cluster(everything: list[dict]) -> None:
    services = [d for d in everything if d["kind"] == "Service"]
    assert services
    for svc in services:
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
        assert not spec.get("externalIPs")
        assert not [p for p in spec["ports"] if "nodePort" in p]
    assert not [d for d in everything if d["kind"] in ("Ingress", "Route", "Gateway", "HTTPRoute")]


def test_permissions_stay_in_the_namespace(everything: list[dict]) -> None:
    kinds = {d["kind"] for d in everything}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (binding,) = [d for d in everything if d["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "resnet-job-search",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "resnet-job-search", "namespace": "resnet-job"}
    ]


def test_search_role_grants_exactly_what_the_driver_needs() -> None:
    (role,) = [d for d in load_file("rbac.yaml") if d["kind"] == "Role"]
    granted = {
        (group, resource, verb, tuple(rule.get("resourceNames", [])))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    best = ("resnet-job-best-params",)
    expected = (
        {("batch", "jobs", v, ()) for v in ("create", "get", "list", "watch", "delete")}
        | {("", "pods", v, ()) for v in ("get", "list", "watch")}
        | {("", "pods/log", "get", ())}
        | {("", "configmaps", v, best) for v in ("get", "update", "patch")}
        | {("", "configmaps", "create", ())}  # RBAC cannot restrict create by name
    )
    assert granted == expected


def test_only_the_search_driver_and_dashboard_reach_postgres(everything: list[dict]) -> None:
    (policy,) = [d for d in everything if d["kind"] == "NetworkPolicy"]
    (sts,) = [d for d in everything if d["kind"] == "StatefulSet"]
    selected = sts["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= selected.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = [
        p["podSelector"]["matchLabels"] for r in policy["spec"]["ingress"] for p in r["from"]
    ]
    # Which workloads' pods match an allowed selector:
    reaching = {
        doc["metadata"].get("name") or doc["metadata"].get("generateName")
        for doc in everything
        if doc["kind"] in ("Job", "CronJob", "Deployment", "StatefulSet")
        for labels in [
            (
                doc["spec"]["jobTemplate"]["spec"]["template"]
                if doc["kind"] == "CronJob"
                else doc["spec"]["template"]
            )["metadata"]["labels"]
        ]
        if any(sel.items() <= labels.items() for sel in allowed)
    }
    assert reaching == {"resnet-job-search-", "optuna-dashboard"}


def test_search_driver_uses_its_service_account() -> None:
    (job,) = load_file("search-job.yaml")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "resnet-job-search"


def test_namespace_enforces_the_restricted_pod_security_standard(rendered: list[dict]) -> None:
    (ns,) = [d for d in rendered if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- secrets --------------------------------------------------------------------------------


def test_no_secret_is_committed() -> None:
    assert not [d for d in DOCS if d["kind"] == "Secret"]
    tracked = subprocess.run(
        ["git", "ls-files", "k8s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "k8s/postgres.env" not in tracked
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "k8s/postgres.env"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, "k8s/postgres.env must be git-ignored"


def test_password_secret_is_generated_at_apply_time(rendered: list[dict]) -> None:
    import base64

    (secret,) = [d for d in rendered if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "postgres"
    password = base64.b64decode(secret["data"]["POSTGRES_PASSWORD"]).decode()
    assert password == TEST_PASSWORD


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=_ids(CONTAINERS))
def test_passwords_come_from_the_secret(name: str, container: dict, spec: dict) -> None:
    for env in container.get("env", []):
        if "PASSWORD" in env["name"]:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "postgres", "key": "POSTGRES_PASSWORD"}
    assert not re.search(r"://[^:/@]+:[^$@][^@]*@", str(container)), "literal password in a URL"


def test_every_referenced_claim_and_secret_exists(everything: list[dict]) -> None:
    names = {(d["kind"], d["metadata"].get("name")) for d in everything}
    for _, spec in pod_specs(everything):
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names, claim
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in names, ref


def test_manifests_have_no_yaml_anchors_or_tabs() -> None:
    # kubectl accepts them, but they hide what a manifest really says.
    for path in K8S.glob("*.yaml"):
        text = path.read_text()
        assert "\t" not in text, path.name
        assert not re.search(r"(^|\s)[&*][A-Za-z]", text), path.name


def test_workload_kinds_are_known() -> None:
    assert {d["kind"] for d in DOCS} <= WORKLOAD_KINDS | {
        "Namespace",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "ConfigMap",
    }
