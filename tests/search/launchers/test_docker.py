"""The docker launcher against the real Docker Engine and the project's image.

Skips with the reason where no daemon answers or the image is missing (CI, with
RESNET_JOB_REQUIRE_ALL=1, fails instead). The image comes from RESNET_JOB_IMAGE
(default resnet-job:latest).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tarfile
import time
import uuid

import pytest

from search.launchers import docker_ready
from tests.conftest import REPO, need
from tests.search.helpers import clean_env, load, run_search, search_args, states

IMAGE = os.environ.get("RESNET_JOB_IMAGE", "resnet-job:latest")
pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def docker_client():
    ok, why = docker_ready(IMAGE)
    need(ok, f"docker launcher: {why}")
    import docker

    return docker.from_env()


def _args(tmp_path, archives, study: str, trials: int, launcher: str = "docker", epochs: int = 2):
    # The archive stays on the host: the launcher mounts a file:// DATA_URL read-only.
    args = search_args(
        tmp_path / "search",
        archives["fastai"],
        trials=trials,
        parallel=2,
        epochs=epochs,
        job={"DATA_URL": archives["fastai"].as_uri(), "DATA_DIR": str(tmp_path / "data")},
        extra=["--image", IMAGE, "--study-name", study],
    )
    args[args.index("--launcher") + 1] = launcher
    return args


def _containers(client, study: str) -> list:
    # ignore_removed: a trial container removed while the list is read is simply not in it.
    filters = {"label": f"resnet-job/study={study}"}
    return client.containers.list(all=True, filters=filters, ignore_removed=True)


HOST_OWNER = (4242, 4343)
"""A uid and gid the test gives its host folders: the launcher must leave them as they are."""


@pytest.fixture(scope="module")
def docker_study(docker_client, archives, tmp_path_factory):
    """A 2-trial study run with --launcher auto, on host folders owned by HOST_OWNER (when
    the tests run as root; else by the tests' user). Returns the folder, the study name, the
    finished driver and the folders' (uid, gid) before the run."""
    tmp_path = tmp_path_factory.mktemp("docker")
    owners = {}
    for name in ("search", "data"):
        folder = tmp_path / name
        folder.mkdir()
        if os.geteuid() == 0:
            os.chown(folder, *HOST_OWNER)
        owners[name] = (folder.stat().st_uid, folder.stat().st_gid)
    study = f"docker-{uuid.uuid4().hex[:6]}"
    proc = run_search(_args(tmp_path, archives, study, trials=2, launcher="auto"))
    return tmp_path, study, proc, owners


def test_auto_launcher_runs_a_two_trial_study_in_containers(docker_client, docker_study):
    tmp_path, study, proc, _ = docker_study
    assert proc.returncode == 0, proc.stderr
    assert "launcher docker" in proc.stderr
    trials = load(tmp_path / "search", study=study).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        folder = tmp_path / "search" / "trials" / str(t.number)
        assert (folder / "history.json").is_file()
        assert "done" in (folder / "job.log").read_text()  # the container's stderr
        assert t.user_attrs["launcher"] == "docker"
        assert t.user_attrs["launch_seconds"] > 0
    assert _containers(docker_client, study) == []  # removed afterwards


def test_trial_files_belong_to_the_invoking_user(docker_study):
    tmp_path, _, proc, _ = docker_study
    assert proc.returncode == 0, proc.stderr
    written = list((tmp_path / "search" / "trials").rglob("*"))
    assert any(p.name == "model.pt" for p in written)
    assert {p.stat().st_uid for p in written} == {os.getuid()}


@pytest.mark.parametrize("folder", ["search", "data"])
def test_host_folders_keep_their_owner(docker_study, folder: str):
    tmp_path, _, proc, owners = docker_study
    assert proc.returncode == 0, proc.stderr
    info = (tmp_path / folder).stat()
    assert (info.st_uid, info.st_gid) == owners[folder]


def test_killed_driver_leaves_no_container_behind(docker_client, archives, tmp_path):
    study = f"docker-{uuid.uuid4().hex[:6]}"
    args = _args(tmp_path, archives, study, trials=4, epochs=20)
    driver = subprocess.Popen(
        args, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(600):
        running = [c for c in _containers(docker_client, study) if c.status == "running"]
        if running or driver.poll() is not None:
            break
        time.sleep(0.5)
    assert running, "no trial container started"
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    for _ in range(240):
        if not _containers(docker_client, study):
            break
        time.sleep(0.5)
    assert _containers(docker_client, study) == []
    assert "RUNNING" in states(load(tmp_path / "search", study=study))


def test_parallel_trial_containers_get_disjoint_cpu_shares(docker_client, tmp_path) -> None:
    from search.launchers.base import TrialSpec
    from search.launchers.docker import DockerLauncher

    cores = sorted(os.sched_getaffinity(0))
    need(len(cores) >= 2, "two disjoint --cpuset-cpus sets need 2 or more cores")
    launcher = DockerLauncher(IMAGE, client=docker_client, slots=2)
    # EPOCHS=abc: the job exits 2 at once; the limits are the container's from its creation.
    runs = [
        launcher.start(TrialSpec(f"t{i}", {"EPOCHS": "abc"}, tmp_path / f"o{i}", tmp_path / "d"))
        for i in range(2)
    ]
    configs = []
    for run in runs:
        run.container.reload()
        configs.append(run.container.attrs["HostConfig"])
        assert run.wait() == 2
    per_slot = len(cores) // 2
    assert [c["NanoCpus"] for c in configs] == [per_slot * 10**9] * 2
    sets = [set(map(int, c["CpusetCpus"].split(","))) for c in configs]
    assert all(len(s) == per_slot for s in sets) and not sets[0] & sets[1]


@pytest.fixture(scope="module")
def folder_trial(docker_client, archives, tmp_path_factory):
    """One trial container trained on a host folder of class folders (the fast.ai archive's
    PNGs, extracted) named by a file:// DATA_URL. Returns the container's mounts (by where
    they appear inside), its exit code, its output folder and the folder's files before."""
    from search.launchers.base import TrialSpec
    from search.launchers.docker import DockerLauncher

    tmp_path = tmp_path_factory.mktemp("folder")
    with tarfile.open(archives["fastai"]) as tar:
        tar.extractall(tmp_path / "images", filter="data")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "images").rglob("*"))
    env = {"DATA_URL": (tmp_path / "images").as_uri(), "EPOCHS": "1", "MODEL_WIDTH": "0.125"}
    launcher = DockerLauncher(IMAGE, client=docker_client)
    run = launcher.start(TrialSpec("folder", env, tmp_path / "out", tmp_path / "data"))
    run.container.reload()
    mounts = {m["Destination"]: m for m in run.container.attrs["Mounts"]}
    list(run.lines())
    return mounts, run.wait(), tmp_path / "out", tmp_path, before


def test_a_folder_data_url_is_mounted_read_only(folder_trial) -> None:
    mounts, _, _, tmp_path, _ = folder_trial
    assert mounts["/archive/images"]["Source"] == str((tmp_path / "images").resolve())
    assert mounts["/archive/images"]["RW"] is False


def test_a_trial_trains_on_a_folder_of_images(folder_trial) -> None:
    _, code, out, tmp_path, before = folder_trial
    assert code == 0, (out / "job.log").read_text()
    assert (out / "metrics.json").is_file()
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "images").rglob("*"))
    assert after == before  # nothing written into the user's folder
