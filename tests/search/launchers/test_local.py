"""The local launcher: a real process group, stderr to a log, stop by SIGTERM."""

from __future__ import annotations

import os
import sys
import time

import pytest

from search.launchers.base import TrialSpec
from search.launchers.local import LocalLauncher
from testkit import alive
from testkit import job as standin
from tests.conftest import need

SCRIPT = """
import os, signal, subprocess, sys, time
%s
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
open(os.path.join(os.environ["OUTPUT_DIR"], "child.pid"), "w").write(str(child.pid))
print("working", file=sys.stderr, flush=True)
print('{"v":1,"event":"start"}', flush=True)
time.sleep(3600)
"""


def _spec(tmp_path, **kw) -> TrialSpec:
    return TrialSpec(
        name="t", env={"EPOCHS": "1"}, output_dir=tmp_path / "out", data_dir=tmp_path / "d", **kw
    )


def _launcher(trap: str = "") -> LocalLauncher:
    return LocalLauncher([sys.executable, "-c", SCRIPT % trap])


def test_stdout_lines_and_stderr_log(tmp_path) -> None:
    run = _launcher().start(_spec(tmp_path))
    assert next(iter(run.lines())) == '{"v":1,"event":"start"}\n'
    run.stop(grace=5)
    run.wait()
    assert run.stderr_tail() == "working"
    assert run.log_path == tmp_path / "out" / "job.log"


@pytest.mark.parametrize(
    ("trap", "code"),
    [
        ("", 143),  # Python's default SIGTERM action: killed by signal 15 → 128 + 15
        ("signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))", 143),
        ("signal.signal(signal.SIGTERM, signal.SIG_IGN)", 137),  # forced after the grace
    ],
)
def test_stop_ends_the_run_and_its_process_group(tmp_path, trap: str, code: int) -> None:
    run = _launcher(trap).start(_spec(tmp_path))
    next(iter(run.lines()))
    child = int((tmp_path / "out" / "child.pid").read_text())
    run.stop(grace=2)
    assert run.wait() == code
    assert not _alive(child)


PLACEMENT = ("CUDA_VISIBLE_DEVICES", "DEVICE", "CUDA_DEVICE_ORDER")


@pytest.mark.parametrize(
    ("gpu", "device", "placed"),
    [("2", "auto", ["2", "cuda", "PCI_BUS_ID"]), (None, "cuda", ["", "cpu", "PCI_BUS_ID"])],
)
def test_a_trial_sees_its_own_gpu_or_none(tmp_path, monkeypatch, gpu, device, placed) -> None:
    """Pinned with CUDA_VISIBLE_DEVICES in nvidia-smi's numbering and told its device; the
    driver's own CUDA_VISIBLE_DEVICES and a DEVICE the trial was given do not leak through."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    script = f"import os; print([os.environ.get(k) for k in {PLACEMENT!r}])"
    spec = TrialSpec("t", {"DEVICE": device}, tmp_path / "out", tmp_path / "d", gpu=gpu)
    run = LocalLauncher([sys.executable, "-c", script]).start(spec)
    assert list(run.lines()) == [f"{placed!r}\n"]
    assert run.wait() == 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs after up to 5 s for it to end (a zombie has ended)."""
    for _ in range(50):
        if not alive(pid):
            return False
        time.sleep(0.1)
    return True


# -- slots share the cores ---------------------------------------------------------------------

REPORT = [sys.executable, str(standin.PATH), "report"]
"""The stand-in job that prints its CPUs and CPU_THREADS (among others), then waits
STANDIN_HOLD seconds."""


def _report(run) -> dict:
    import json

    line = next(iter(run.lines()))
    run.wait()
    return json.loads(line)


def test_parallel_runs_are_pinned_to_disjoint_cores(tmp_path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    need(len(cores) >= 2, "pinning two runs to disjoint cores needs 2 or more cores")
    launcher = LocalLauncher(REPORT, slots=2)
    hold = {"STANDIN_HOLD": "1"}
    runs = [
        launcher.start(TrialSpec(f"t{i}", hold, tmp_path / f"o{i}", tmp_path / "d"))
        for i in range(2)
    ]
    reports = [_report(run) for run in runs]
    per_slot = len(cores) // 2
    assert [len(r["cpus"]) for r in reports] == [per_slot, per_slot]
    assert not set(reports[0]["cpus"]) & set(reports[1]["cpus"])
    assert [r["threads"] for r in reports] == [str(per_slot)] * 2


def test_a_finished_run_frees_its_cores_for_the_next(tmp_path) -> None:
    launcher = LocalLauncher(REPORT, slots=2)
    seen = [
        _report(launcher.start(TrialSpec(f"t{i}", {}, tmp_path / f"o{i}", tmp_path / "d")))
        for i in range(4)
    ]
    # One run at a time: each takes the set the previous one gave back, never an unpinned one.
    assert all(len(r["cpus"]) == max(1, len(os.sched_getaffinity(0)) // 2) for r in seen)


def test_a_cpu_threads_given_by_the_user_wins(tmp_path) -> None:
    launcher = LocalLauncher(REPORT, slots=2)
    spec = TrialSpec("t", {"CPU_THREADS": "5"}, tmp_path / "o", tmp_path / "d")
    assert _report(launcher.start(spec))["threads"] == "5"


def test_one_slot_leaves_the_run_to_size_itself(tmp_path) -> None:
    report = _report(
        LocalLauncher(REPORT).start(TrialSpec("t", {}, tmp_path / "o", tmp_path / "d"))
    )
    assert (report["cpus"], report["threads"]) == (sorted(os.sched_getaffinity(0)), None)


@pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
def test_real_jobs_in_two_slots_train_with_their_share_of_the_threads(
    tmp_path, archives, cold: bool
) -> None:
    import json

    from tests.conftest import REPO, job_env

    cores = len(os.sched_getaffinity(0))
    launcher = LocalLauncher(cwd=REPO, slots=2, cold_start=cold)
    env = job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=1)
    env = {k: v for k, v in env.items() if k in ("DATA_URL", "DEVICE", "MODEL_WIDTH", "EPOCHS")}
    runs = [
        launcher.start(TrialSpec(f"t{i}", env, tmp_path / f"o{i}", tmp_path / "data"))
        for i in range(2)
    ]
    starts = []
    for run in runs:
        events = [json.loads(line) for line in run.lines()]
        assert run.wait() == 0, run.stderr_tail()
        starts.append(next(e for e in events if e["event"] == "start"))
    launcher.close()
    assert [s["cpu_threads"] for s in starts] == [max(1, cores // 2)] * 2
    assert [run.warm_start for run in runs] == [not cold] * 2
