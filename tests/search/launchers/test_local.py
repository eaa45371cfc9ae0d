"""The local launcher: a real process group, stderr to a log, stop by SIGTERM."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from search.launchers.base import TrialSpec
from search.launchers.local import LocalLauncher

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


def test_gpu_is_pinned_with_cuda_visible_devices(tmp_path) -> None:
    script = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ['OUTPUT_DIR'])"
    run = LocalLauncher([sys.executable, "-c", script]).start(_spec(tmp_path, gpu="2"))
    assert list(run.lines()) == [f"2 {tmp_path / 'out'}\n"]
    assert run.wait() == 0


def _alive(pid: int) -> bool:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie waiting for its reaper is dead for our purpose
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except OSError:
            return False
        time.sleep(0.1)
    return True
