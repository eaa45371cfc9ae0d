"""What the machine can run out of: disk space and memory (docs/contract.md: faults).

Free-space checks before writes whose size is known in advance (the archive, the decoded
cache, a checkpoint and the model), the sizes themselves, and the recognition of a full disk
or an exhausted memory in whatever exception torch or Python raised. Nothing here imports
torch at module level: ``python -m job --help`` and the exception mapping stay light.
"""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path

from job.contract import CHECKPOINT, MODEL, REASON_DISK, REASON_MEMORY
from job.errors import DataError, DeviceError, JobError, ResourceError
from job.files import NO_SPACE_ERRNOS

_SMALL_FILES = 1 << 20  # bytes: the JSON, CSV and PNG outputs together, with room to spare
_CHECKPOINT_OVERHEAD = 1 << 20  # bytes: zip entries, the history and the RNG state
_CACHE_OVERHEAD = 64 << 10  # bytes: the .npz headers, the class names and the checksum file

# Substrings of the RuntimeErrors torch raises when an allocation fails (its CPU allocator,
# the CUDA caching allocator, cuBLAS and cuDNN workspaces), across torch 2.x versions.
_OOM_TEXT = (
    "can't allocate memory",
    "not enough memory",
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)
_GPU_TEXT = ("CUDA", "GPU", "CUBLAS", "CUDNN", "HIP")


# -- disk ----------------------------------------------------------------------------------


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says a volume or a quota is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def free_bytes(folder: Path) -> int:
    """Bytes still writable on the volume that holds ``folder`` (or will hold it).

    A folder that does not exist yet is measured at its nearest existing ancestor, where it
    will be created.
    """
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def size(n: int) -> str:
    """``n`` bytes for a person: ``512 bytes``, ``3.0 MiB``, ``1.2 GiB``."""
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _widths(width: float) -> list[tuple[int, int]]:
    # ResNet9's own layer plan, imported here: job.model loads torch.
    from job.model import block_channels

    return block_channels(width)


def parameter_count(width: float, num_classes: int = 10) -> int:
    """ResNet9's trainable parameters at ``width``, from its layer shapes (no model built)."""
    blocks = _widths(width)
    # Each block: 3×3 conv weights and bias, then BatchNorm's weight and bias.
    convs = sum(9 * c_in * c_out + c_out + 2 * c_out for c_in, c_out in blocks)
    c512 = blocks[-1][1]
    return convs + c512 * num_classes + num_classes


def _buffer_bytes(width: float) -> int:
    # Each BatchNorm keeps running mean and variance (float32) and a step count (int64).
    return sum(2 * 4 * c_out + 8 for _, c_out in _widths(width))


def model_bytes(width: float, num_classes: int = 10) -> int:
    """About the size of ``model.pt`` (the float32 state_dict) at ``width``."""
    return 4 * parameter_count(width, num_classes) + _buffer_bytes(width) + _CHECKPOINT_OVERHEAD


def checkpoint_bytes(width: float, num_classes: int = 10) -> int:
    """An upper bound of ``checkpoint.pt``'s size at ``width``.

    The model plus the optimizer's state: Adam keeps two float32 moments per parameter (SGD
    without momentum keeps none, so this bounds both), plus zip entries and the history.
    """
    return 2 * 4 * parameter_count(width, num_classes) + model_bytes(width, num_classes)


def output_bytes(width: float, num_classes: int = 10) -> int:
    """Free space a run needs in OUTPUT_DIR: a new checkpoint written beside the last one,
    the model and the small files."""
    return checkpoint_bytes(width, num_classes) + model_bytes(width, num_classes) + _SMALL_FILES


def cache_bytes(array_bytes: int) -> int:
    """Free space the decoded cache needs for arrays totalling ``array_bytes``."""
    return array_bytes + _CACHE_OVERHEAD


# -- memory --------------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error it wraps, as torch.compile does) is a failed allocation.

    Python's MemoryError, torch.OutOfMemoryError (CUDA), and the RuntimeErrors of torch's CPU
    allocator ("DefaultCPUAllocator: can't allocate memory"), cuBLAS and cuDNN.
    """
    return _allocation_error(exc) is not None


def _allocation_error(exc: BaseException) -> BaseException | None:
    """The failed allocation ``exc`` is or explicitly wraps, or None."""
    torch = sys.modules.get("torch")  # an error raised before torch loaded is not torch's
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return current
        if torch is not None and isinstance(current, torch.OutOfMemoryError):
            return current
        if isinstance(current, RuntimeError) and any(t in str(current) for t in _OOM_TEXT):
            return current
        # Only explicit wrapping: an error raised while handling another is not that error.
        inner = getattr(current, "inner_exception", None)
        current = current.__cause__ or (inner if isinstance(inner, BaseException) else None)
    return None


def is_device_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a CUDA error other than out-of-memory (an illegal address, an ECC or
    launch failure, a lost device): torch.AcceleratorError, or a RuntimeError that says
    "CUDA error" as older torch raised them. Such an error is sticky: every later CUDA call in
    the process fails too."""
    torch = sys.modules.get("torch")
    accelerator_error = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if is_out_of_memory(exc):
        return False
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and "CUDA error" in str(exc)


def device_failed(exc: BaseException, device: str, during: str) -> DeviceError:
    """The failed GPU as one sentence: what ran (``during``), the error, what to do."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DeviceError(
        f"The GPU failed during {during} on {device} ({first}); CUDA is unusable in this process "
        "and nothing was promoted: check the GPU (nvidia-smi) and rerun on a healthy one, with "
        "the same OUTPUT_DIR to resume from the last checkpoint."
    )


def is_gpu_error(exc: BaseException) -> bool:
    """Whether an out-of-memory error came from the GPU rather than host memory."""
    return any(t in str(exc) for t in _GPU_TEXT)


def host_memory() -> str:
    """Host memory for a person: its total and a lower limit this process runs under, as in
    ``host memory (23.5 GiB; this process is limited to 4.0 GiB by its cgroup)``."""
    total = _meminfo_total()
    limits = [
        (n, why)
        for n, why in ((_cgroup_limit(), "its cgroup"), (_rlimit_as(), "RLIMIT_AS"))
        if n is not None and (total is None or n < total)
    ]
    details = [size(total)] if total else []
    if limits:
        n, why = min(limits)
        details.append(f"this process is limited to {size(n)} by {why}")
    return f"host memory ({'; '.join(details)})" if details else "host memory"


def memory_limit() -> int | None:
    """Bytes of memory this process may use: the least of the host's, its cgroup's and
    RLIMIT_AS; None when none of them is known."""
    known = [n for n in (_meminfo_total(), _cgroup_limit(), _rlimit_as()) if n is not None]
    return min(known) if known else None


def gpu_memory(device: str) -> str:
    """GPU ``device`` (``cuda``, ``cuda:N``) for a person: its name and total memory, as in
    ``GPU memory on cuda:0 (NVIDIA H200, 139.8 GiB)``."""
    try:
        import torch

        index = torch.device(device).index
        props = torch.cuda.get_device_properties(
            index if index is not None else torch.cuda.current_device()
        )
    except Exception:  # the message must still be written if the device cannot be queried
        return f"GPU memory on {device}"
    return f"GPU memory on {device} ({props.name}, {size(props.total_memory)})"


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_limit() -> int | None:
    # cgroup v2 (what Docker and Kubernetes give a container), then v1.
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(text)
    return None


def _rlimit_as() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


# -- the sentences -------------------------------------------------------------------------


def check_output_space(output_dir: Path, width: float) -> None:
    """Refuse at once (exit 5, reason disk) when OUTPUT_DIR cannot hold this run's files.

    Run before the data is read, so a volume too small fails the run in a second rather than
    after the first epoch.
    """
    try:
        free = free_bytes(output_dir)
    except OSError:  # an unusable OUTPUT_DIR is reported by the run itself (exit 2)
        return
    needed = output_bytes(width)
    if free < needed:
        raise ResourceError(
            f"OUTPUT_DIR={str(output_dir)!r} has {size(free)} free, but a run at "
            f"MODEL_WIDTH={width:g} needs about {size(needed)} there ({CHECKPOINT} up to "
            f"{size(checkpoint_bytes(width))}, {MODEL} {size(model_bytes(width))}); free space "
            "or point OUTPUT_DIR at a larger volume.",
            REASON_DISK,
        )


def _within(path: Path, folder: Path) -> bool:
    return path.absolute().is_relative_to(folder.absolute())


def disk_full(exc: OSError, output_dir: Path, data_dir: Path, promote_dir: Path | None) -> JobError:
    """The sentence for a write that found its volume full, naming the folder and the file.

    OUTPUT_DIR, PROMOTE_DIR or any other folder: exit 5, reason disk. DATA_DIR: exit 3, as
    every other problem with the data.
    """
    # A copy (shutil) names its source first and the file it was writing second.
    target = exc.filename2 or exc.filename
    if not target:
        folders = [("OUTPUT_DIR", output_dir), ("PROMOTE_DIR", promote_dir)]
        frees = "; ".join(
            f"{name}={str(folder)!r} has {_free(folder)}" for name, folder in folders if folder
        )
        return ResourceError(
            f"A write ran out of space ({exc.strerror}; {frees}): free space there and rerun "
            "the same command.",
            REASON_DISK,
        )
    path = Path(target)
    free = _free(path.parent)
    if _within(path, data_dir):
        return DataError(
            f"DATA_DIR={str(data_dir)!r} ran out of space while writing {path.name} ({free}); "
            "free space there or point DATA_DIR at a larger volume."
        )
    if promote_dir is not None and _within(path, promote_dir):
        return ResourceError(
            f"PROMOTE_DIR={str(promote_dir)!r} ran out of space while writing "
            f"{_relative(path, promote_dir)} ({free}); the run's own outputs in OUTPUT_DIR "
            "are complete: free space there and rerun the same command to promote it.",
            REASON_DISK,
        )
    if _within(path, output_dir):
        resume = (
            f"it resumes from the last complete {CHECKPOINT}, which is intact"
            if (output_dir / CHECKPOINT).is_file()
            else "it starts over"
        )
        return ResourceError(
            f"OUTPUT_DIR={str(output_dir)!r} ran out of space while writing "
            f"{_relative(path, output_dir)} ({free}); free space there and rerun the same "
            f"command: {resume}.",
            REASON_DISK,
        )
    return ResourceError(
        f"The volume holding {str(path.parent)!r} ran out of space while writing {path.name} "
        f"({free}); free space there and rerun the same command.",
        REASON_DISK,
    )


def _free(folder: Path) -> str:
    try:
        return f"{size(free_bytes(folder))} free"
    except OSError:
        return "no space left"


def _relative(path: Path, folder: Path) -> str:
    return str(path.absolute().relative_to(folder.absolute()))


def out_of_memory(exc: BaseException, batch_size: int, width: float, device: str) -> JobError:
    """The sentence for a failed allocation (exit 5, reason memory): BATCH_SIZE, MODEL_WIDTH,
    the memory that ran out, and what to lower."""
    gpu = device if device.startswith("cuda") else "cuda"
    where = gpu_memory(gpu) if is_gpu_error(_allocation_error(exc) or exc) else host_memory()
    return ResourceError(
        f"Ran out of {where} at BATCH_SIZE={batch_size} and MODEL_WIDTH={width:g}: lower "
        "BATCH_SIZE or MODEL_WIDTH (evaluation uses batches of 2 × BATCH_SIZE), or give the "
        "run more memory.",
        REASON_MEMORY,
    )
