"""How many CPU threads this process may really use: its affinity mask and its cgroup quota.

PyTorch sizes its thread pools from the host's cores. It honours an affinity mask
(``taskset``, ``docker --cpuset-cpus``) but not a CPU quota (``docker --cpus``, a Kubernetes
``limits.cpu``): on a 64-core node, a pod limited to 8 CPUs would start 64 threads that the
kernel then throttles. :func:`available_cpus` is the smaller of the two, read from
``/proc/self/cgroup`` and ``/proc/self/mountinfo`` (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, the tightest of the cgroup and its ancestors).
Standard library only: the search's launchers use it too.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("QUOTA PERIOD", µs each); None for ``max``.

    Raises ValueError for a text that is not one of those forms.
    """
    parts = text.split()
    if len(parts) not in (1, 2):
        raise ValueError(f"cpu.max holds {text.strip()!r}, not 'QUOTA PERIOD'")
    if parts[0] == "max":
        return None
    period = parts[1] if len(parts) == 2 else "100000"  # the kernel's default period
    return _ratio(parts[0], period)


def parse_cfs(quota: str, period: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``; None for a
    quota of -1 (no limit). Raises ValueError for texts that are not whole numbers."""
    if quota.strip() == "-1":
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        raise ValueError(f"quota {quota.strip()!r} / period {period.strip()!r}") from None
    if q <= 0 or p <= 0:
        raise ValueError(f"quota {q} / period {p} are not both positive")
    return q / p


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path the mount shows at its mount point
    point: Path
    version: int


def _mounts(mountinfo: str) -> list[_Mount]:
    """The cgroup v2 mounts and the v1 mounts of the ``cpu`` controller."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            mounts.append(_Mount(fields[3], Path(fields[4]), 2))
        elif tail[0] == "cgroup" and "cpu" in tail[2].split(","):
            mounts.append(_Mount(fields[3], Path(fields[4]), 1))
    return mounts


def _own_paths(proc_cgroup: str) -> dict[int, str]:
    """This process's cgroup path per version: ``0::PATH`` (v2) and the ``cpu`` line (v1)."""
    paths = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths[2] = parts[2]
        elif "cpu" in parts[1].split(","):
            paths[1] = parts[2]
    return paths


def _folders(mount: _Mount, path: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and its ancestors up to the mount point."""
    rel = os.path.relpath(path, mount.root) if path.startswith(mount.root) else "."
    # A cgroup namespace or a container without one may show a path outside the mount's root:
    # then the mount point itself is the process's cgroup.
    folder = mount.point / rel if not rel.startswith("..") else mount.point
    folders = [folder]
    while folder != mount.point and mount.point in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def _read_quota(folder: Path, version: int) -> float | None:
    """The quota one cgroup folder sets; None when it sets none, lacks the file or the file is
    malformed (a damaged file must not stop a run: the affinity mask still bounds it)."""
    try:
        if version == 2:
            return parse_cpu_max((folder / "cpu.max").read_text())
        quota = (folder / "cpu.cfs_quota_us").read_text()
        return parse_cfs(quota, (folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def cgroup_cpus(proc_cgroup: Path = PROC_CGROUP, mountinfo: Path = MOUNTINFO) -> float | None:
    """The CPUs this process's cgroups allow (the tightest quota of v1 and v2, ancestors
    included), or None when no quota applies or the files cannot be read."""
    try:
        paths = _own_paths(proc_cgroup.read_text())
        mounts = _mounts(mountinfo.read_text())
    except OSError:
        return None
    quotas = [
        quota
        for mount in mounts
        if mount.version in paths
        for folder in _folders(mount, paths[mount.version])
        if (quota := _read_quota(folder, mount.version)) is not None
    ]
    return min(quotas, default=None)


def affinity_cpus() -> int:
    """The CPUs this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def available_cpus() -> int:
    """The threads worth running: the smaller of the affinity mask and the cgroup quota,
    rounded down (a quota of 1.5 CPUs keeps 1 thread busy without throttling), at least 1."""
    quota = cgroup_cpus()
    cpus = affinity_cpus() if quota is None else min(affinity_cpus(), math.floor(quota))
    return max(1, cpus)


def resolve(setting: int | str, torch_default: int | None = None) -> int:
    """CPU_THREADS resolved: a number is itself; ``auto`` is :func:`available_cpus`, or
    ``torch_default`` (torch's own size: OMP_NUM_THREADS when set, else the physical cores)
    when that is smaller."""
    if setting != "auto":
        return int(setting)
    cpus = available_cpus()
    return max(1, min(cpus, torch_default)) if torch_default else cpus


def apply(threads: int) -> None:
    """Size torch's intra-op and inter-op pools to ``threads``, before any work starts.

    The inter-op pool can be sized once per process, before its first parallel work; a second
    run in the same process (tests) keeps the first size.
    """
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
