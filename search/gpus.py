"""Where a trial runs: the GPUs this driver may use, the device each trial must train on, and
the check of what the trial actually resolved.

GPUs are numbered as ``nvidia-smi`` numbers them. The driver's own ``CUDA_VISIBLE_DEVICES``
bounds the GPUs the local and docker launchers detect and accept (integer ids and ``GPU-``
UUIDs; an empty value means none); every trial gets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that
CUDA inside it numbers the GPUs as ``nvidia-smi`` does. A trial with a GPU trains on
``DEVICE=cuda`` (the launcher pins the one GPU it sees), one without on ``DEVICE=cpu``; a
``start`` event naming another device fails the trial (:func:`misplaced`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

from search.errors import SettingsError

__all__ = [
    "DEVICE_ORDER",
    "check_device_env",
    "check_gpus",
    "misplaced",
    "placement_env",
    "query_gpus",
    "visible_gpus",
]

DEVICE_ORDER = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
"""Set for every trial: CUDA's default order (fastest first) may differ from nvidia-smi's."""

GPU = tuple[str, str]
"""One GPU as ``nvidia-smi`` lists it: its index and its UUID."""


def query_gpus() -> list[GPU]:
    """Every GPU ``nvidia-smi`` lists on this machine, as (index, UUID); none without it."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        index, _, uuid = (part.strip() for part in line.partition(","))
        if index.isdigit():
            gpus.append((index, uuid))
    return gpus


def visible_gpus(machine: Sequence[GPU], visible: str | None) -> list[str]:
    """The indices of the GPUs of ``machine`` that ``CUDA_VISIBLE_DEVICES`` (``visible``;
    None: unset, every GPU) lets this driver use, in nvidia-smi's numbering and the order
    given. As CUDA does, the list ends at the first entry naming no GPU (``-1`` hides all)."""
    if visible is None:
        return [index for index, _ in machine]
    by_uuid = {uuid.lower(): index for index, uuid in machine}
    indices = {index for index, _ in machine}
    chosen: list[str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if entry.upper().startswith("MIG-"):
            raise SettingsError(
                f"CUDA_VISIBLE_DEVICES={visible} names a MIG instance, which the local and "
                "docker launchers cannot pin a trial to; set it to GPU indices or unset it."
            )
        index = entry if entry in indices else _uuid_index(entry, by_uuid)
        if index is None:
            break
        if index not in chosen:
            chosen.append(index)
    return chosen


def _uuid_index(entry: str, by_uuid: Mapping[str, str]) -> str | None:
    """The index of the GPU whose UUID is ``entry`` or starts with it (CUDA takes a prefix)."""
    if not entry.upper().startswith("GPU-"):
        return None
    matches = [index for uuid, index in by_uuid.items() if uuid.startswith(entry.lower())]
    return matches[0] if len(matches) == 1 else None


def check_gpus(requested: Sequence[str], usable: Sequence[str], visible: str | None) -> None:
    """Refuse ``--gpus`` ids this driver cannot use: not on the machine, or hidden by its
    ``CUDA_VISIBLE_DEVICES`` (``visible``)."""
    missing = [gpu for gpu in requested if gpu not in usable]
    if not missing:
        return
    names = ",".join(missing)
    if visible is not None and visible.strip() == "":
        raise SettingsError(
            f"--gpus {','.join(requested)} names GPUs, but CUDA_VISIBLE_DEVICES is empty (no "
            "GPU); unset CUDA_VISIBLE_DEVICES or pass --gpus none."
        )
    where = "this machine lacks" if visible is None else f"CUDA_VISIBLE_DEVICES={visible} hides"
    there = ", ".join(usable) if usable else "none, so pass --gpus none"
    raise SettingsError(
        f"--gpus names GPU {names}, which {where}; pass GPUs among those there are, in "
        f"nvidia-smi's numbering: {there}."
    )


def placement_env(gpu: str | bool | None) -> dict[str, str]:
    """What every launcher sets in a trial's environment for its placement (``gpu``; None or
    False: no GPU): ``DEVICE`` (``cuda``, its one visible GPU, or ``cpu``) and
    :data:`DEVICE_ORDER`."""
    return {"DEVICE": "cpu" if gpu is None or gpu is False else "cuda", **DEVICE_ORDER}


def check_device_env(job_env: Mapping[str, str], gpus: bool) -> None:
    """Refuse a ``--job-env DEVICE`` that contradicts where trials are placed (``gpus``: each
    trial gets one GPU, which it sees as ``cuda:0``); ``auto`` and a value naming the
    placement are accepted (the launcher sets the placement's value)."""
    given = job_env.get("DEVICE", "auto").strip().lower()
    allowed = ("auto", "cuda", "cuda:0") if gpus else ("auto", "cpu")
    if given in allowed:
        return
    if gpus:
        fix = "each trial sees only its own GPU, as cuda:0; drop it or pass --gpus none"
        raise SettingsError(f"--job-env DEVICE={given} contradicts --gpus: {fix}.")
    raise SettingsError(
        f"--job-env DEVICE={given} asks for a GPU, but the trials get none (--gpus none, or no "
        "GPU detected); drop it or name the GPUs with --gpus."
    )


def misplaced(resolved: object, gpu: str | None) -> str | None:
    """Why a run that resolved the device ``resolved`` (its ``start`` event's ``device``) does
    not run where it was placed (``gpu``; None: no GPU), or None when it does."""
    device = str(resolved).strip().lower()
    if gpu is None and device == "cpu":
        return None
    if gpu is not None and device in ("cuda", "cuda:0"):
        return None
    where = "on no GPU (the CPU)" if gpu is None else f"on GPU {gpu} (cuda)"
    return (
        f"the run trained on {device or 'no named device'} but was placed {where}; "
        "check DEVICE in the job's environment and its CUDA_VISIBLE_DEVICES."
    )


def usable_gpus(
    option: str | None,
    launcher: str,
    parse: Callable[[str | None, Callable[[], list[str]]], list[str]],
    environ: Mapping[str, str],
    machine: Callable[[], list[GPU]] = query_gpus,
) -> tuple[list[str], Callable[[], None]]:
    """``--gpus`` for ``launcher`` (``parse`` reads the option, given a detector), and the
    check to call once the other options are checked. On local and docker the GPUs are
    bounded by the driver's ``CUDA_VISIBLE_DEVICES`` and the check refuses a GPU the driver
    cannot use; on kubernetes ``--gpus`` numbers slots and is taken as given."""
    if launcher not in ("local", "docker"):
        return parse(option, lambda: [index for index, _ in machine()]), lambda: None
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    found: list[list[str]] = []

    def detect() -> list[str]:
        if not found:
            found.append(visible_gpus(machine(), visible))
        return found[0]

    requested = parse(option, detect)
    if option is None or not requested:
        return requested, lambda: None
    return requested, lambda: check_gpus(requested, detect(), visible)
