"""Faults of the machine, unit by unit: sizes, free space, full volumes under atomic_write, and
how a full disk or a failed allocation becomes exit 5 (or 3 in DATA_DIR) with one sentence.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import torch

from job import resources
from job.__main__ import _fault, _Known
from job.config import from_env
from job.contract import (
    CHECKPOINT,
    MODEL,
    REASON_DISK,
    REASON_MEMORY,
    ExitCode,
)
from job.errors import DataError, JobError, ResourceError
from job.files import atomic_write
from job.model import ResNet9
from job.plan import RunPlan
from tests.tmpfs import fill, leftovers, small_volume

# -- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [0.125, 0.25, 0.3, 1.0, 1.7])
def test_parameter_count_matches_the_model(width: float) -> None:
    model = ResNet9(10, width)
    assert resources.parameter_count(width) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("width", [0.125, 1.0])
def test_model_size_estimate_bounds_a_saved_model(tmp_path: Path, width: float) -> None:
    torch.save(ResNet9(10, width).state_dict(), tmp_path / MODEL)
    actual = (tmp_path / MODEL).stat().st_size
    assert actual <= resources.model_bytes(width) <= actual + (2 << 20)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1536, "1.5 KiB"),
        (3 << 20, "3.0 MiB"),
        (5 << 30, "5.0 GiB"),
    ],
)
def test_sizes_read_as_a_person_would_write_them(n: int, text: str) -> None:
    assert resources.size(n) == text


def test_free_space_of_a_folder_yet_to_be_created_is_its_parents(tmp_path: Path) -> None:
    with small_volume(tmp_path / "vol", 4 << 20) as vol:
        assert 3 << 20 < resources.free_bytes(vol / "not" / "yet") <= 4 << 20


# -- a full volume under atomic_write --------------------------------------------------------

_WRITERS: dict[str, Callable[[IO[bytes]], object]] = {
    # torch.save reports a failed write as RuntimeError("unexpected pos …") on its own.
    "torch.save": lambda f: torch.save({"w": torch.zeros(1 << 20)}, f),
    "np.savez": lambda f: np.savez(f, x=np.zeros(1 << 20)),
    "bytes": lambda f: f.write(b"\0" * (4 << 20)),
}


@pytest.mark.parametrize("writer", sorted(_WRITERS))
def test_a_full_volume_is_enospc_naming_the_file_and_keeps_the_old_one(
    tmp_path: Path, writer: str
) -> None:
    with small_volume(tmp_path / "out", 2 << 20) as out:
        target = out / "file.bin"
        target.write_bytes(b"previous")
        with pytest.raises(OSError) as full:
            atomic_write(target, _WRITERS[writer])
        assert full.value.errno == errno.ENOSPC and full.value.filename == str(target)
        assert target.read_bytes() == b"previous" and leftovers(out) == []


def test_a_volume_filled_by_another_process_fails_the_next_write(tmp_path: Path) -> None:
    with small_volume(tmp_path / "out", 2 << 20) as out:
        fill(out)
        with pytest.raises(OSError) as full:
            atomic_write(out / "metrics.json", lambda f: f.write(b"{}" * 4096))
        assert full.value.errno == errno.ENOSPC and leftovers(out) == []


# -- the preflight ----------------------------------------------------------------------------


def test_an_output_dir_too_small_is_refused_before_the_run(tmp_path: Path) -> None:
    with (
        small_volume(tmp_path / "out", 1 << 20) as out,
        pytest.raises(ResourceError) as refused,
    ):
        resources.check_output_space(out / "run", width=0.125)
    assert refused.value.reason == REASON_DISK
    assert refused.value.exit_code == ExitCode.RESOURCES
    message = refused.value.message
    assert f"OUTPUT_DIR={str(out / 'run')!r} has" in message and CHECKPOINT in message


def test_an_output_dir_with_room_passes(tmp_path: Path) -> None:
    with small_volume(tmp_path / "out", 8 << 20) as out:
        resources.check_output_space(out, width=0.125)


# -- from exception to exit code (job/__main__.py) ----------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The job's environment for the mapping: OUTPUT_DIR, DATA_DIR and PROMOTE_DIR in tmp."""
    for name in ("OUTPUT_DIR", "DATA_DIR", "PROMOTE_DIR"):
        (tmp_path / name.lower()).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("BATCH_SIZE", "512")
    monkeypatch.setenv("MODEL_WIDTH", "2")
    return tmp_path


def _fault_of(exc: Exception) -> JobError | None:
    """The fault ``exc`` is, as the job maps it once it has parsed its settings (``env``)."""
    return _fault(exc, _Known(cfg=from_env()))


def _no_space(path: Path | None) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", None if path is None else str(path))


@pytest.mark.parametrize(
    ("where", "code", "says"),
    [
        ("output_dir/checkpoint.pt", ExitCode.RESOURCES, ["OUTPUT_DIR=", CHECKPOINT, "free"]),
        ("output_dir/history.json", ExitCode.RESOURCES, ["OUTPUT_DIR=", "history.json"]),
        ("promote_dir/runs/1/model.pt", ExitCode.RESOURCES, ["PROMOTE_DIR=", "runs/1/model.pt"]),
        ("data_dir/cifar10.npz", ExitCode.NO_DATA, ["DATA_DIR=", "cifar10.npz"]),
        ("elsewhere/x.bin", ExitCode.RESOURCES, ["elsewhere", "x.bin"]),
        (None, ExitCode.RESOURCES, ["OUTPUT_DIR=", "PROMOTE_DIR=", "No space left"]),
    ],
)
def test_a_full_volume_maps_to_its_exit_code_naming_folder_and_file(
    env: Path, where: str | None, code: ExitCode, says: list[str]
) -> None:
    fault = _fault_of(_no_space(None if where is None else env / where))
    assert fault is not None and fault.exit_code == code
    assert all(s in fault.message for s in says), fault.message
    assert getattr(fault, "reason", REASON_DISK) == REASON_DISK


def test_a_full_promote_dir_during_a_copy_names_the_destination(env: Path) -> None:
    source, target = env / "output_dir" / MODEL, env / "promote_dir" / "runs" / "1" / MODEL
    target.parent.mkdir(parents=True)
    source.write_bytes(b"\0" * (2 << 20))
    with small_volume(env / "promote_dir" / "runs" / "1", 1 << 20):
        with pytest.raises(OSError) as full:
            shutil.copy2(source, target)
        fault = _fault_of(full.value)
    assert fault is not None and fault.exit_code == ExitCode.RESOURCES
    assert "PROMOTE_DIR=" in fault.message and f"runs/1/{MODEL}" in fault.message


def test_a_full_output_dir_says_the_checkpoint_is_intact_when_there_is_one(env: Path) -> None:
    (env / "output_dir" / CHECKPOINT).write_bytes(b"x")
    fault = _fault_of(_no_space(env / "output_dir" / MODEL))
    assert fault is not None and f"last complete {CHECKPOINT}, which is intact" in fault.message


_CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 104857600 bytes. Error code 12 (Cannot allocate memory)"
)
_CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 8 GiB"


def _wrapped(inner: BaseException) -> BaseException:
    try:
        raise RuntimeError("backend compiler failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "memory"),
    [
        pytest.param(MemoryError(), "host memory", id="MemoryError"),
        pytest.param(RuntimeError(_CPU_OOM), "host memory", id="cpu-allocator"),
        pytest.param(torch.OutOfMemoryError(_CUDA_OOM), "GPU memory", id="cuda"),
        pytest.param(RuntimeError("cuBLAS: CUBLAS_STATUS_ALLOC_FAILED"), "GPU memory", id="cublas"),
        pytest.param(_wrapped(torch.OutOfMemoryError(_CUDA_OOM)), "GPU memory", id="compiled"),
    ],
)
def test_a_failed_allocation_is_exit_5_naming_batch_size_width_and_memory(
    env: Path, exc: BaseException, memory: str
) -> None:
    assert isinstance(exc, Exception)
    fault = _fault_of(exc)
    assert isinstance(fault, ResourceError) and fault.reason == REASON_MEMORY
    assert fault.exit_code == ExitCode.RESOURCES
    for text in ("BATCH_SIZE=512", "MODEL_WIDTH=2", memory, "lower BATCH_SIZE or MODEL_WIDTH"):
        assert text in fault.message


def _raised_while_handling_oom() -> Exception:
    try:
        try:
            raise MemoryError
        except MemoryError:
            raise KeyError("a bug in the handler")  # noqa: B904 (the context is the point)
    except KeyError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), id="shapes"),
        pytest.param(ValueError("not a fault"), id="ValueError"),
        pytest.param(OSError(errno.EACCES, "Permission denied", "/x"), id="EACCES"),
        pytest.param(_raised_while_handling_oom(), id="context-only"),
    ],
)
def test_anything_else_stays_a_bug(env: Path, exc: Exception) -> None:
    assert _fault_of(exc) is None


def test_a_data_dir_write_is_a_data_error(env: Path) -> None:
    fault = _fault_of(_no_space(env / "data_dir" / "downloads" / "x.tgz"))
    assert isinstance(fault, DataError) and fault.exit_code == ExitCode.NO_DATA


def test_before_the_settings_are_parsed_nothing_is_a_fault(env: Path) -> None:
    assert _fault(MemoryError(), _Known()) is None


def test_a_failed_allocation_names_the_device_the_run_resolved(env: Path) -> None:
    cfg = from_env()  # DEVICE=auto: the plan says which GPU it became
    plan = RunPlan(cfg, torch.device("cuda:1"), "bf16", 1, started=0.0)
    fault = _fault(torch.OutOfMemoryError(_CUDA_OOM), _Known(cfg=cfg, plan=plan))
    assert isinstance(fault, ResourceError) and "GPU memory on cuda:1" in fault.message
