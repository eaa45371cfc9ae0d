"""The container image, run for real against a Docker engine.

The image is built by `make image` (CI: `bash .ci/docker.sh`, on a stand-in base because no
registry is reachable). Each run uses a tiny CPU configuration of the real CIFAR-10 archive,
mounted read-only and passed as a file:// DATA_URL, with host folders as the volumes. Skips
where Docker, the image or the archive is missing; fails then under RESNET_JOB_REQUIRE_ALL=1.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import OUTPUTS, REPO, need

pytestmark = [pytest.mark.docker, pytest.mark.realdata, pytest.mark.slow]

IMAGE = os.environ.get("RESNET_JOB_IMAGE", "resnet-job:latest")
IMAGE_UID = 10001
ARCHIVE_IN_CONTAINER = "/archive/cifar10.tgz"
# Tiny, so four runs fit on a shared 2-core machine: a width-1/8 ResNet9 on 256 images.
TINY = {
    "DATA_URL": f"file://{ARCHIVE_IN_CONTAINER}",
    "DEVICE": "cpu",
    "MODEL_WIDTH": "0.125",
    "TRAIN_LIMIT": "256",
    "TEST_LIMIT": "128",
    "BATCH_SIZE": "64",
    "EPOCHS": "1",
}
TIMEOUT = 900


# ---- helpers --------------------------------------------------------------------------------


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Run:
    """A finished `docker run`: its exit code, stdout events and stderr."""

    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]


def _run_args(
    env: dict[str, str], archive: Path | None, mounts: dict[str, Path], extra: list[str]
) -> list[str]:
    args = ["run", *extra]
    if archive is not None:
        args += ["-v", f"{archive}:{ARCHIVE_IN_CONTAINER}:ro"]
    for target, source in mounts.items():
        args += ["-v", f"{source}:{target}"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return [*args, IMAGE]


def docker_run(
    env: dict[str, str],
    archive: Path | None = None,
    mounts: dict[str, Path] | None = None,
    extra: list[str] | None = None,
    keep: bool = False,
) -> tuple[Run, str]:
    """`docker run` the image to its end; return the run and the container's name.

    With ``keep`` the container is left for the caller to inspect and remove.
    """
    name = f"resnet-job-test-{uuid.uuid4().hex[:10]}"
    args = _run_args(env, archive, mounts or {}, ["--name", name, *(extra or [])])
    try:
        proc = _docker(*args, timeout=TIMEOUT)
    finally:
        if not keep:
            _docker("rm", "-f", "-v", name)
    return Run(proc.returncode, proc.stdout, proc.stderr), name


def open_dir(path: Path) -> Path:
    """A host folder the container's user (uid 10001, or any uid) may write to."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def copy_out(container: str, path: str) -> dict[str, tarfile.TarInfo]:
    """The files under ``path`` in a (stopped) container, as tar members by file name."""
    proc = subprocess.run(
        ["docker", "cp", f"{container}:{path}", "-"], capture_output=True, timeout=120, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        return {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image() -> str:
    need(shutil.which("docker") is not None, "the docker client is not installed")
    need(_docker("info").returncode == 0, "no Docker engine answers (start dockerd)")
    need(
        _docker("image", "inspect", IMAGE).returncode == 0,
        f"image {IMAGE} not built (make image, or bash .ci/docker.sh)",
    )
    return IMAGE


@pytest.fixture(scope="module")
def image_config(image: str) -> dict:
    return json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The decoded-array cache, shared by the runs of this module (decoded once)."""
    return open_dir(tmp_path_factory.mktemp("docker-data"))


@pytest.fixture(scope="module")
def tiny_run(
    image: str, real_cifar: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Run, Path]:
    """One tiny run with host folders as /data and /output."""
    out = open_dir(tmp_path_factory.mktemp("docker-out"))
    run, _ = docker_run(TINY, real_cifar, {"/data": data_dir, "/output": out}, extra=["--rm"])
    return run, out


# ---- the image itself -----------------------------------------------------------------------


def test_image_runs_as_a_non_root_numeric_user(image_config: dict) -> None:
    user = image_config["User"]
    assert re.fullmatch(r"\d+(:\d+)?", user), user
    assert int(user.split(":")[0]) == IMAGE_UID


def test_image_entrypoint_is_the_job_in_exec_form(image_config: dict) -> None:
    assert image_config["Entrypoint"] == ["python", "-m", "job"]


def test_image_declares_the_volumes(image_config: dict) -> None:
    assert set(image_config["Volumes"]) == {"/data", "/output"}
    env = dict(item.split("=", 1) for item in image_config["Env"])
    assert (env["DATA_DIR"], env["OUTPUT_DIR"]) == ("/data", "/output")


def test_image_labels_name_version_and_revision(image_config: dict) -> None:
    labels = image_config["Labels"]
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version
    assert labels["org.opencontainers.image.version"] == version.group(1)
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")


@pytest.mark.parametrize(
    "command",
    [
        ["python", "-m", "job"],
        ["python", "-m", "search"],
        ["optuna-dashboard"],
        ["resnet-job-predict"],
    ],
    ids=["job", "search", "dashboard", "predict"],
)
def test_image_runs_every_program(image: str, command: list[str]) -> None:
    proc = _docker("run", "--rm", "--entrypoint", command[0], image, *command[1:], "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


# ---- one tiny run ---------------------------------------------------------------------------


def test_run_exits_0(tiny_run: tuple[Run, Path]) -> None:
    run, _ = tiny_run
    assert run.code == 0, run.stderr[-3000:]


def test_run_prints_only_events_on_stdout(tiny_run: tuple[Run, Path]) -> None:
    run, _ = tiny_run
    events = run.events  # every line parses as JSON
    assert {e["v"] for e in events} == {1}
    assert events[0]["event"] == "start"
    assert events[-1]["event"] == "done"
    assert [e["epoch"] for e in run.of("epoch")] == [1]


@pytest.mark.parametrize("name", OUTPUTS)
def test_run_leaves_each_output_on_the_host(tiny_run: tuple[Run, Path], name: str) -> None:
    _, out = tiny_run
    assert (out / name).is_file()
    assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_is_written_by_the_image_user(tiny_run: tuple[Run, Path], name: str) -> None:
    _, out = tiny_run
    assert (out / name).stat().st_uid == IMAGE_UID


@pytest.mark.parametrize("name", OUTPUTS)
def test_output_is_readable_by_other_users_on_the_host(
    tiny_run: tuple[Run, Path], name: str
) -> None:
    # The files belong to uid 10001, not to whoever runs `docker run -v "$PWD/output:/output"`:
    # they must be readable by that user (mode o+r), or the results need sudo to open.
    _, out = tiny_run
    assert (out / name).stat().st_mode & 0o004, oct((out / name).stat().st_mode)


def test_run_metrics_name_the_cpu_and_the_real_archive(tiny_run: tuple[Run, Path]) -> None:
    _, out = tiny_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cpu"
    assert metrics["data_layout"] == "fastai"
    assert (metrics["n_train"], metrics["n_test"]) == (256, 128)


# ---- failures and signals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"), [("EPOCHS", "abc"), ("MAX_LR", "-1"), ("DEVICE", "tpu")]
)
def test_bad_variable_exits_2_naming_it(image: str, variable: str, value: str) -> None:
    run, _ = docker_run({variable: value}, extra=["--rm"])
    assert run.code == 2
    assert variable in run.stderr
    assert "Traceback" not in run.stderr
    assert [e["code"] for e in run.of("error")] == [2]


@pytest.fixture(scope="module")
def stopped_run(
    image: str, real_cifar: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Run, Path]]:
    """A run stopped with `docker stop` once its first epoch is done (checkpoint at epoch 1)."""
    out = open_dir(tmp_path_factory.mktemp("docker-stop"))
    name = f"resnet-job-test-{uuid.uuid4().hex[:10]}"
    env = {**TINY, "EPOCHS": "4"}
    args = _run_args(env, real_cifar, {"/data": data_dir, "/output": out}, ["--name", name])
    stderr_path = out.parent / "stderr.txt"
    lines: list[str] = []
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(["docker", *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if json.loads(line).get("event") == "epoch":
                    _docker("stop", "--time", "120", name, timeout=180)
                    break
            lines.extend(proc.stdout)
            code = proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
            _docker("rm", "-f", "-v", name)
    yield Run(code, "".join(lines), stderr_path.read_text()), out


def test_docker_stop_exits_143(stopped_run: tuple[Run, Path]) -> None:
    run, _ = stopped_run
    assert run.code == 143, run.stderr[-3000:]
    assert [e["code"] for e in run.of("error")] == [143]


def test_docker_stop_leaves_a_checkpoint_on_the_volume(stopped_run: tuple[Run, Path]) -> None:
    _, out = stopped_run
    assert (out / "checkpoint.pt").is_file()
    assert not (out / "model.pt").exists()  # the run did not finish


@pytest.fixture(scope="module")
def resumed_run(
    stopped_run: tuple[Run, Path], real_cifar: Path, data_dir: Path
) -> tuple[Run, Path]:
    """A second `docker run` on the stopped run's output volume, same settings."""
    _, out = stopped_run
    env = {**TINY, "EPOCHS": "4"}
    run, _ = docker_run(env, real_cifar, {"/data": data_dir, "/output": out}, extra=["--rm"])
    return run, out


def test_second_run_on_the_volume_resumes(resumed_run: tuple[Run, Path]) -> None:
    run, out = resumed_run
    assert run.code == 0, run.stderr[-3000:]
    resumed_from = json.loads((out / "metrics.json").read_text())["resumed_from"]
    assert resumed_from >= 1
    # Only the epochs after the checkpoint are trained again...
    assert [e["epoch"] for e in run.of("epoch")] == list(range(resumed_from + 1, 5))
    # ...and the history still holds the evaluation before training and every epoch.
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2, 3, 4]


# ---- hardened runtimes ----------------------------------------------------------------------


def test_runs_with_a_read_only_root_filesystem(
    image: str, real_cifar: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = open_dir(tmp_path / "out")
    run, _ = docker_run(
        TINY,
        real_cifar,
        {"/data": data_dir, "/output": out},
        extra=["--rm", "--read-only", "--tmpfs", "/tmp"],
    )
    assert run.code == 0, run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(OUTPUTS)


def test_runs_as_an_arbitrary_uid_in_group_0(image: str, real_cifar: Path) -> None:
    # As OpenShift runs images: a random uid whose only group is 0, with the image's own
    # /data and /output volumes (fresh, so only the image's permissions let it write).
    run, name = docker_run(TINY, real_cifar, extra=["--user", "12345:0"], keep=True)
    try:
        assert run.code == 0, run.stderr[-3000:]
        files = copy_out(name, "/output")
    finally:
        _docker("rm", "-f", "-v", name)
    assert set(OUTPUTS) <= set(files)
    assert {files[n].uid for n in OUTPUTS} == {12345}


def test_data_cache_is_shared_by_the_image_user_and_an_arbitrary_uid(
    tiny_run: tuple[Run, Path], real_cifar: Path, data_dir: Path, tmp_path: Path
) -> None:
    # The cache the image's user filled (tiny_run) serves a run as another uid in group 0.
    assert tiny_run[0].code == 0
    out = open_dir(tmp_path / "out")
    run, _ = docker_run(
        TINY, real_cifar, {"/data": data_dir, "/output": out}, extra=["--rm", "--user", "12345:0"]
    )
    assert run.code == 0, run.stderr[-3000:]


# ---- CPU limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [["--cpus", "1"], ["--cpuset-cpus", "0"]], ids=["cpus", "cpuset"])
def test_a_cpu_limit_sizes_the_jobs_threads(
    image: str, real_cifar: Path, data_dir: Path, tmp_path: Path, limit: list[str]
) -> None:
    # PyTorch alone would start a thread per host core under --cpus 1 (a quota, not a mask).
    need((os.cpu_count() or 1) >= 2, "a 1-CPU limit is only visible on a host with 2+ cores")
    out = open_dir(tmp_path / "out")
    run, _ = docker_run(
        TINY, real_cifar, {"/data": data_dir, "/output": out}, extra=["--rm", *limit]
    )
    assert run.code == 0, run.stderr[-3000:]
    assert run.of("start")[0]["cpu_threads"] == 1
    assert json.loads((out / "metrics.json").read_text())["cpu_threads"] == 1


def test_the_image_classifies_an_image_with_the_runs_model(
    image: str, tiny_run: tuple[Run, Path], tmp_path: Path
) -> None:
    from PIL import Image

    _, out = tiny_run
    pictures = open_dir(tmp_path / "pictures")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(pictures / "red.jpg")
    proc = _docker(
        "run", "--rm", "-v", f"{out}:/output:ro", "-v", f"{pictures}:/pictures:ro",
        "--entrypoint", "resnet-job-predict", image, "/output", "/pictures/red.jpg",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout)
    assert line["image"] == "/pictures/red.jpg" and len(line["top"]) == 3
