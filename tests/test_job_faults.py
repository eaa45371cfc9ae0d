"""Faults of the machine, provoked for real against `python -m job` subprocesses.

A full OUTPUT_DIR (a small tmpfs, before and during a run), a damaged checkpoint (a flipped
byte, a truncated file) and an exhausted memory (the running job's RLIMIT_AS lowered below
what its batch needs) each end with their documented exit code, one sentence and no
traceback (docs/contract.md: faults).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from job import contract
from job.config import from_env
from tests.conftest import job_env, run_job, start_job
from tests.tmpfs import fill, leftovers, small_volume


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _error(events: list[dict]) -> dict:
    (error,) = [e for e in events if e["event"] == "error"]
    return error


def _wait_for(proc: subprocess.Popen, event: str) -> list[dict]:
    """Read events until ``event`` arrives; return them all."""
    assert proc.stdout is not None
    seen: list[dict] = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] in (event, "error", "done"):
            break
    assert seen and seen[-1]["event"] == event, seen
    return seen


# -- OUTPUT_DIR full ------------------------------------------------------------------------


def test_output_dir_too_small_fails_before_training(archives, tmp_path) -> None:
    # A run at MODEL_WIDTH=0.125 needs about 5 MiB: a checkpoint, the model, small files.
    with small_volume(tmp_path / "output", 1 << 20) as out:
        result = run_job(job_env(tmp_path, DATA_URL=archives["fastai"].as_uri()))
    assert result.code == contract.ExitCode.RESOURCES, result.stderr
    error = _error(result.events)
    assert error["reason"] == contract.REASON_DISK
    assert f"OUTPUT_DIR={str(out)!r}" in error["message"]
    assert contract.CHECKPOINT in error["message"]
    assert not result.of("start") and not result.of("epoch")
    assert "Traceback" not in result.stderr


def test_output_dir_filling_up_mid_run_keeps_the_checkpoint_and_resumes(archives, tmp_path) -> None:
    with small_volume(tmp_path / "output", 32 << 20) as out:
        _fill_during_epoch_2_then_resume(archives["fastai"], tmp_path, out)


def _fill_during_epoch_2_then_resume(archive: Path, tmp_path: Path, out: Path) -> None:
    env = job_env(tmp_path, DATA_URL=archive.as_uri(), EPOCHS=3)
    proc = start_job(env)
    _wait_for(proc, "epoch")  # epoch 1 trained; its checkpoint is written in the background
    _wait_for_checkpoint(out, 1)
    os.kill(proc.pid, signal.SIGSTOP)  # the disk fills while the job trains epoch 2
    filler = fill(out)
    os.kill(proc.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=600)

    assert proc.returncode == contract.ExitCode.RESOURCES, stderr
    error = _error(_events(stdout))
    assert error["reason"] == contract.REASON_DISK
    assert f"OUTPUT_DIR={str(out)!r}" in error["message"] and "Traceback" not in stderr
    assert leftovers(out) == []
    from job.checkpoint import load_checkpoint

    state = load_checkpoint(out, from_env(env).fingerprint())
    assert state is not None and state["epoch"] >= 1

    filler.unlink()  # space freed: the same command resumes
    result = run_job(env)
    assert result.code == 0, result.stderr
    metrics = json.loads((out / contract.METRICS_JSON).read_text())
    assert metrics["resumed_from"] == state["epoch"] and metrics["epochs"] == 3


def _wait_for_checkpoint(out: Path, epoch: int, timeout: float = 60) -> None:
    """Return once ``out``'s checkpoint holds ``epoch`` (it is replaced whole, by a rename)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, RuntimeError, KeyError):
            if torch.load(out / contract.CHECKPOINT, weights_only=True)["epoch"] >= epoch:
                return
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {out} after {timeout} s")


# -- a damaged checkpoint -------------------------------------------------------------------


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_flip_middle, id="flipped-byte"),
        pytest.param(lambda d: d[:-1] + bytes([d[-1] ^ 0x80]), id="flipped-last-byte"),
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
    ],
)
def test_damaged_checkpoint_is_refused_and_never_trained_from(archives, tmp_path, damage) -> None:
    env = job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=1)
    assert run_job(env).code == 0
    path = tmp_path / "output" / contract.CHECKPOINT
    damaged = damage(path.read_bytes())
    path.write_bytes(damaged)

    result = run_job(env)  # intact, the same command would resume and finish at once (exit 0)
    assert result.code == contract.ExitCode.BAD_CONFIG, result.stderr
    message = _error(result.events)["message"]
    assert "damaged" in message and f"delete {contract.CHECKPOINT}" in message
    assert "OUTPUT_DIR=" in message
    assert not result.of("epoch") and "Traceback" not in result.stderr
    assert path.read_bytes() == damaged  # left for the operator to inspect


# -- out of memory --------------------------------------------------------------------------


def _address_space(pid: int) -> int:
    """The process's current virtual size in bytes (/proc/PID/status VmSize, in kB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmSize:")[1].split()[0]) * 1024


def test_out_of_host_memory_exits_5_naming_batch_size_and_width(archives, tmp_path) -> None:
    # A real failed allocation: once the job has started (torch and the data loaded), its
    # address space may grow by only 512 MiB, while one training batch of 400 images at
    # MODEL_WIDTH=2 needs several GiB of activations.
    env = job_env(
        tmp_path, DATA_URL=archives["python"].as_uri(), BATCH_SIZE=400, MODEL_WIDTH=2, EPOCHS=1
    )
    proc = start_job(env)
    _wait_for(proc, "start")
    limit = _address_space(proc.pid) + (512 << 20)
    resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    stdout, stderr = proc.communicate(timeout=600)

    assert proc.returncode == contract.ExitCode.RESOURCES, stderr
    error = _error(_events(stdout))
    assert error["reason"] == contract.REASON_MEMORY
    assert "BATCH_SIZE=400" in error["message"] and "MODEL_WIDTH=2" in error["message"]
    assert "host memory" in error["message"] and "RLIMIT_AS" in error["message"]
    assert "Traceback" not in stderr
