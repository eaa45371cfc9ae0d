"""CPU_THREADS: the affinity mask and the cgroup quota (job/threads.py), parsed from files and
honoured by real jobs in a real cgroup and under taskset."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from job import threads
from tests.conftest import job_env, need, run_job

# -- the files' texts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("max", None), ("150000 100000\n", 1.5), ("400000 100000", 4.0)],
)
def test_cpu_max_of_cgroup_v2_is_read(text: str, cpus: float | None) -> None:
    assert threads.parse_cpu_max(text) == cpus


@pytest.mark.parametrize("text", ["", "lots 100000", "100000 0", "-5 100000", "1 2 3"])
def test_a_malformed_cpu_max_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        threads.parse_cpu_max(text)


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("50000\n", "100000\n", 0.5), ("300000", "100000", 3.0)],
)
def test_cfs_quota_of_cgroup_v1_is_read(quota: str, period: str, cpus: float | None) -> None:
    assert threads.parse_cfs(quota, period) == cpus


@pytest.mark.parametrize(("quota", "period"), [("x", "100000"), ("50000", ""), ("0", "100000")])
def test_a_malformed_cfs_quota_is_rejected(quota: str, period: str) -> None:
    with pytest.raises(ValueError):
        threads.parse_cfs(quota, period)


# -- a cgroup tree in files -------------------------------------------------------------------


def _tree(tmp: Path, version: int, path: str, files: dict[str, str]) -> tuple[Path, Path]:
    """/proc/self/cgroup and mountinfo texts naming a cgroup ``path`` mounted at tmp/cg, and
    ``files`` (relative to the mount) written there; returns the two files."""
    mount = tmp / "cg"
    for name, text in files.items():
        (mount / name).parent.mkdir(parents=True, exist_ok=True)
        (mount / name).write_text(text)
    if version == 2:
        info = f"41 31 0:38 / {mount} rw,relatime - cgroup2 cgroup2 rw\n"
        own = f"0::{path}\n"
    else:
        info = f"32 31 0:29 / {mount} rw,relatime - cgroup cgroup rw,cpu\n"
        own = f"4:memory:/elsewhere\n1:cpu,cpuacct:{path}\n"
    (tmp / "mountinfo").write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + info
    )  # not a cgroup: skipped
    (tmp / "cgroup").write_text(own)
    return tmp / "cgroup", tmp / "mountinfo"


@pytest.mark.parametrize(
    ("version", "files", "cpus"),
    [
        (2, {"pod/job/cpu.max": "200000 100000\n"}, 2.0),
        (2, {"pod/job/cpu.max": "max 100000\n", "pod/cpu.max": "150000 100000"}, 1.5),  # parent
        (2, {"pod/job/cpu.max": "300000 100000", "pod/cpu.max": "100000 100000"}, 1.0),
        (2, {"pod/job/cpu.max": "max 100000\n"}, None),
        (2, {"pod/job/cpu.max": "garbage\n"}, None),  # malformed: no quota, not a crash
        (2, {}, None),  # no cpu controller enabled: no file
        (1, {"pod/job/cpu.cfs_quota_us": "50000", "pod/job/cpu.cfs_period_us": "100000"}, 0.5),
        (1, {"pod/job/cpu.cfs_quota_us": "-1", "pod/job/cpu.cfs_period_us": "100000"}, None),
        (1, {"pod/job/cpu.cfs_quota_us": "oops", "pod/job/cpu.cfs_period_us": "100000"}, None),
    ],
)
def test_the_tightest_quota_of_the_cgroup_and_its_ancestors_counts(
    tmp_path: Path, version: int, files: dict[str, str], cpus: float | None
) -> None:
    own, info = _tree(tmp_path, version, "/pod/job", files)
    assert threads.cgroup_cpus(own, info) == cpus


def test_a_container_that_sees_a_path_outside_its_mount_reads_the_mount_point(
    tmp_path: Path,
) -> None:
    # Without a cgroup namespace, a container's /proc/self/cgroup names the host's path while
    # its /sys/fs/cgroup shows only its own cgroup: the mount point is the cgroup.
    own, info = _tree(tmp_path, 2, "/docker/abc", {"cpu.max": "100000 100000"})
    info.write_text(
        info.read_text().replace(" / " + str(tmp_path), " /docker/abc " + str(tmp_path))
    )
    assert threads.cgroup_cpus(own, info) == 1.0


def test_unreadable_proc_files_mean_no_quota(tmp_path: Path) -> None:
    assert threads.cgroup_cpus(tmp_path / "missing", tmp_path / "missing") is None


@pytest.mark.parametrize(("setting", "torch_default", "expected"), [(3, 8, 3), ("auto", 1, 1)])
def test_a_number_is_kept_and_auto_honours_omp_num_threads(
    setting: int | str, torch_default: int, expected: int
) -> None:
    assert threads.resolve(setting, torch_default) == expected


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_a_malformed_cpu_threads_is_rejected_by_name(tmp_path: Path, text: str) -> None:
    result = run_job(job_env(tmp_path, CPU_THREADS=text))
    assert result.code == 2
    assert f"CPU_THREADS={text!r} is invalid: expected auto or a whole number" in result.stderr
    assert "Traceback" not in result.stderr


# -- real jobs ----------------------------------------------------------------------------------


def _threads_of(tmp: Path, archive: Path, prefix: list[str], **settings: object) -> set[int]:
    """Run a real one-epoch job under ``prefix``; the CPU threads its start event, config.json
    and metrics.json report (one figure when they agree)."""
    env = job_env(tmp, DATA_URL=archive.as_uri(), EPOCHS=1, **settings)
    env.pop("OMP_NUM_THREADS")  # the figure must come from the machine, not the test's cap
    result = run_job(env, prefix=prefix)
    assert result.code == 0, result.stderr
    start = result.of("start")[0]
    out = tmp / "output"
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    return {start["cpu_threads"], config["resolved_cpu_threads"], metrics["cpu_threads"]}


def test_taskset_gives_one_thread(archives: dict[str, Path], tmp_path: Path) -> None:
    need(shutil.which("taskset") is not None, "taskset (util-linux) is not installed")
    assert _threads_of(tmp_path, archives["python"], ["taskset", "-c", "0"]) == {1}


def test_an_explicit_cpu_threads_is_used(archives: dict[str, Path], tmp_path: Path) -> None:
    assert _threads_of(tmp_path, archives["python"], [], CPU_THREADS=3) == {3}


CPU_CGROUP = Path("/sys/fs/cgroup/cpu")


@pytest.fixture
def one_cpu_cgroup() -> Iterator[Path]:
    """A real cgroup v1 limited to 1 CPU (cfs quota 100 ms per 100 ms), removed afterwards."""
    writable = CPU_CGROUP.is_dir() and os.access(CPU_CGROUP, os.W_OK)
    need(writable, f"no writable cgroup v1 cpu controller at {CPU_CGROUP} (needs root)")
    need(threads.affinity_cpus() >= 2, "a 1-CPU quota is only visible with 2 or more cores")
    group = CPU_CGROUP / f"resnet-job-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (CPU_CGROUP / "cgroup.procs").write_text(pid)  # back to the root before rmdir
        group.rmdir()


def test_a_cgroup_cpu_quota_gives_its_cpus(
    archives: dict[str, Path], tmp_path: Path, one_cpu_cgroup: Path
) -> None:
    # The child joins the cgroup before it runs the job: sh writes its own pid, then execs.
    join = ["sh", "-c", f'echo $$ > {one_cpu_cgroup / "cgroup.procs"} && exec "$@"', "sh"]
    assert _threads_of(tmp_path, archives["python"], join) == {1}
