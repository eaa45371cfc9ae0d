"""The kubernetes launcher.

No Kubernetes API server can run here, so the launcher's API calls run against a fake
BatchV1Api/CoreV1Api that takes and returns the official client's model objects (V1Job,
V1Pod, V1DeleteOptions, ApiException). The trial Job it creates is tested in
test_k8s_manifest.py.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from search.driver import Driver
from search.launchers.base import LOST
from search.launchers.kubernetes import KubernetesLauncher
from search.settings import Settings
from search.space import build_space
from search.study import open_study
from tests.conftest import REPO
from tests.search.launchers.test_k8s_manifest import MIG, SPEC, as_dict

# -- the GPU resource and several trials per GPU ---------------------------------------------


def test_sharing_a_plain_gpu_is_refused_with_how_to_fix_it() -> None:
    # No batch/core clients: the refusal must come before any connection to a cluster.
    with pytest.raises(ValueError) as refused:
        KubernetesLauncher("resnet-job:0.1.0", "ml", trials_per_gpu=2)
    message = str(refused.value)
    assert "one nvidia.com/gpu cannot be shared" in message
    assert "enable time-slicing or MIG in the cluster" in message
    assert "--gpu-resource" in message and MIG in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"gpu_resource": "gpu"}, "is not an extended resource name"),
        ({"gpu_resource": "nvidia.com/"}, "is not an extended resource name"),
        ({"gpu_resource": "Nvidia.com/gpu"}, "is not an extended resource name"),
        ({"trials_per_gpu": 0}, "must be at least 1"),
        ({"trials_per_gpu": 3, "gpu_resource": "nvidia.com/gpu"}, "cannot be shared"),
    ],
)
def test_bad_gpu_settings_are_refused(settings: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        KubernetesLauncher("resnet-job:0.1.0", "ml", **settings)


@pytest.mark.parametrize(
    ("gpu", "gpu_resource"),
    [(True, MIG), (True, "nvidia.com/gpu.shared"), (False, "nvidia.com/gpu")],
)
def test_several_trials_per_gpu_start_on_a_shared_resource_or_without_gpu(
    gpu: bool, gpu_resource: str
) -> None:
    cluster = FakeCluster()
    launcher = _launcher(cluster, gpu=gpu, gpu_resource=gpu_resource, trials_per_gpu=2)
    runs = [launcher.start(SPEC) for _ in range(2)]
    assert len(cluster.jobs) == 2
    for run in runs:
        limits = cluster.jobs[run.name].spec.template.spec.containers[0].resources.limits
        assert limits.get(gpu_resource) == ("1" if gpu else None)


# -- the launcher against the client's models ---------------------------------------------


def _event(kind: str, **fields) -> str:
    return json.dumps({"v": 1, "event": kind, **fields})


class FakeResponse:
    """Stands in for the urllib3 response of ``read_namespaced_pod_log(_preload_content=False)``."""

    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.released = False

    def stream(self, amt: int = 4096):
        for i in range(0, len(self.data), 7):  # small chunks: lines span chunk boundaries
            yield self.data[i : i + 7]

    def release_conn(self) -> None:
        self.released = True


class FakeCluster:
    """BatchV1Api + CoreV1Api methods the launcher calls, on real client model objects."""

    def __init__(self, script: Callable[[dict], tuple[list[str], int]] | None = None) -> None:
        self.jobs: dict[str, client.V1Job] = {}
        self.deleted: list[tuple[str, client.V1DeleteOptions]] = []
        self.calls: list[str] = []
        self.script = script or (
            lambda env: (
                [
                    _event("epoch", epoch=1, val_acc=0.5),
                    "epoch 1/1 done",
                    _event("done", val_acc=0.5),
                ],
                0,
            )
        )
        self.pending = False
        self.polls: dict[str, int] = {}

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: client.V1Job) -> client.V1Job:
        self.calls.append("create_namespaced_job")
        assert isinstance(body, client.V1Job)
        kubernetes_validate.validate(as_dict(body), "1.31", strict=True)
        self.jobs[body.metadata.name] = body
        return body

    def read_namespaced_job(self, name: str, namespace: str) -> client.V1Job:
        self.calls.append("read_namespaced_job")
        if name not in self.jobs or any(d == name for d, _ in self.deleted):
            raise ApiException(status=404, reason="Not Found")
        job = self.jobs[name]
        if self.pending:
            return client.V1Job(metadata=job.metadata, status=client.V1JobStatus(active=1))
        now = datetime.datetime.now(datetime.UTC)
        cond = client.V1JobCondition(
            type="Complete" if self._code(name) == 0 else "Failed",
            status="True",
            last_transition_time=now,
            last_probe_time=now,
        )
        return client.V1Job(metadata=job.metadata, status=client.V1JobStatus(conditions=[cond]))

    def delete_namespaced_job(self, name: str, namespace: str, body: client.V1DeleteOptions):
        self.calls.append("delete_namespaced_job")
        assert isinstance(body, client.V1DeleteOptions)
        self.deleted.append((name, body))
        return client.V1Status(status="Success")

    # CoreV1Api
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> client.V1PodList:
        self.calls.append("list_namespaced_pod")
        name = label_selector.removeprefix("job-name=")
        self.polls[name] = self.polls.get(name, 0) + 1
        if name not in self.jobs:  # deleted with its Job
            return client.V1PodList(items=[])
        if self.polls[name] == 1 or self.pending:  # pods start Pending
            return client.V1PodList(items=[self._pod(name, "Pending")])
        return client.V1PodList(items=[self._pod(name, "Running")])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw) -> FakeResponse:
        self.calls.append("read_namespaced_pod_log")
        assert kw["follow"] is True and kw["container"] == "train"
        lines, _ = self.script(self._env(name.removesuffix("-pod")))
        return FakeResponse("\n".join(lines) + "\n")

    def read_namespaced_pod(self, name: str, namespace: str) -> client.V1Pod:
        self.calls.append("read_namespaced_pod")
        return self._pod(
            name.removesuffix("-pod"), "Succeeded", code=self._code(name.removesuffix("-pod"))
        )

    # helpers
    def _env(self, job: str) -> dict:
        train = self.jobs[job].spec.template.spec.containers[0]
        return {e.name: e.value for e in train.env}

    def _code(self, job: str) -> int:
        return self.script(self._env(job))[1]

    def _pod(self, job: str, phase: str, code: int | None = None) -> client.V1Pod:
        status = client.V1PodStatus(phase=phase)
        if phase == "Pending":
            status.conditions = [
                client.V1PodCondition(
                    type="PodScheduled",
                    status="False",
                    reason="Unschedulable",
                    message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                )
            ]
        if code is not None:
            status.container_statuses = [
                client.V1ContainerStatus(
                    name="train",
                    image="resnet-job",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=client.V1ContainerState(
                        terminated=client.V1ContainerStateTerminated(exit_code=code)
                    ),
                )
            ]
        meta = client.V1ObjectMeta(
            name=f"{job}-pod",
            labels={"job-name": job},
            creation_timestamp=datetime.datetime.now(datetime.UTC),
        )
        return client.V1Pod(metadata=meta, status=status)


def _launcher(cluster: FakeCluster, **kw) -> KubernetesLauncher:
    return KubernetesLauncher(
        "resnet-job:0.1.0", namespace="ml", batch=cluster, core=cluster, poll=0.01, **kw
    )


def test_run_streams_events_from_the_pod_log() -> None:
    cluster = FakeCluster()
    run = _launcher(cluster).start(SPEC)
    lines = [line for line in run.lines()]
    assert json.loads(lines[0])["event"] == "epoch"
    assert json.loads(lines[-1]) == {"v": 1, "event": "done", "val_acc": 0.5}
    assert run.wait() == 0
    assert run.stderr_tail() == "epoch 1/1 done"
    assert cluster.calls[:3] == [
        "create_namespaced_job",
        "list_namespaced_pod",
        "list_namespaced_pod",
    ]


@pytest.mark.parametrize("code", [4, 143])
def test_wait_returns_the_pod_exit_code(code: int) -> None:
    cluster = FakeCluster(lambda env: (["error: diverged"], code))
    run = _launcher(cluster).start(SPEC)
    list(run.lines())
    assert run.wait() == code


def test_stop_deletes_the_job_with_foreground_propagation() -> None:
    cluster = FakeCluster()
    run = _launcher(cluster).start(SPEC)
    run.stop(grace=30)
    ((name, options),) = cluster.deleted
    assert name == run.name
    assert options.propagation_policy == "Foreground"
    assert options.grace_period_seconds == 30


def test_vanished_job_is_reported_lost() -> None:
    cluster = FakeCluster()
    run = _launcher(cluster).start(SPEC)
    cluster.jobs.clear()  # deleted behind our back (e.g. by an operator)
    assert list(run.lines()) == []
    assert run.wait() == LOST


def test_pod_stuck_pending_is_reported_and_deleted() -> None:
    cluster = FakeCluster()
    cluster.pending = True
    run = _launcher(cluster, pending_timeout=0.2).start(SPEC)
    assert list(run.lines()) == []
    assert "pending for over 0.2 s" in run.stderr_tail()
    assert "Insufficient nvidia.com/gpu" in run.stderr_tail()
    assert cluster.deleted and cluster.deleted[0][0] == run.name


def test_driver_runs_a_study_through_the_kubernetes_launcher(tmp_path) -> None:
    def script(env: dict) -> tuple[list[str], int]:
        acc = round(1 - abs(float(env["MAX_LR"]) - 0.02), 4)
        return [
            _event("start"),
            _event("epoch", epoch=1, val_acc=acc),
            "progress on stderr",
            _event("done", val_acc=acc),
        ], 0

    cluster = FakeCluster(script)
    settings = Settings(
        trials=2,
        output=tmp_path / "out",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="k8s",
        space=build_space({"max_lr": {"low": 1e-3, "high": 1e-1, "log": True}}),
        launcher=_launcher(cluster),
        seed=0,
        confirm=0,  # one Job per trial: no confirmation runs after the budget
    )
    driver = Driver(settings, open_study(settings, print))
    driver.run()
    trials = driver.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].value == pytest.approx(1 - abs(0.01 - 0.02))
    created = list(cluster.jobs.values())
    assert len(created) == 2
    assert {j.metadata.labels["resnet-job/trial"] for j in created} == {"0", "1"}
    assert created[0].metadata.namespace == "ml"


API_PERMISSION = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod": ("", "pods", "get"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
}


def test_every_api_call_is_allowed_by_the_search_role_in_k8s_rbac_yaml() -> None:
    docs = list(yaml.safe_load_all((REPO / "k8s" / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d and d["kind"] == "Role"]
    allowed = {
        (group, resource, verb)
        for rule in role["rules"]
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    cluster = FakeCluster()
    run = _launcher(cluster).start(SPEC)
    list(run.lines())
    run.wait()
    run.stop()
    cluster.pending = True
    list(_launcher(cluster, pending_timeout=0.05).start(SPEC).lines())
    assert set(cluster.calls) == set(API_PERMISSION)
    for call in set(cluster.calls):
        assert API_PERMISSION[call] in allowed, call
