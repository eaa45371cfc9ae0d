"""Slots share the cores: each of a launcher's parallel trials gets its own set of CPUs.

Without it, ``--parallel 2`` on a 2-core machine starts two jobs that each size their thread
pools to both cores and then fight for them. A :class:`CorePool` divides the CPUs this driver
may use (its affinity mask, within its cgroup quota: :func:`job.threads.available_cpus`) into
``slots`` disjoint sets of ``cores // slots`` CPUs; a trial takes a free set when it starts and
gives it back when it ends. With fewer cores than slots no set is pinned and each trial gets one
thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from job import threads


@dataclass(frozen=True)
class Share:
    """One trial's part of the machine: its thread count and the CPUs it is pinned to
    (empty: not pinned)."""

    threads: int
    cpus: frozenset[int] = frozenset()

    def cpuset(self) -> str:
        """The CPUs as Docker's ``--cpuset-cpus`` writes them ("0,1")."""
        return ",".join(str(c) for c in sorted(self.cpus))


class CorePool:
    """``slots`` disjoint core sets of the CPUs ``cpus`` (default: this process's usable ones).

    ``slots`` of 1 divides nothing: :meth:`take` gives None and a trial sizes itself (its
    CPU_THREADS ``auto``). Thread-safe: the driver's workers start trials at once.
    """

    def __init__(self, slots: int, cpus: list[int] | None = None) -> None:
        if cpus is None:
            cpus = sorted(os.sched_getaffinity(0))[: threads.available_cpus()]
        self.slots = slots
        self.per_slot = max(1, len(cpus) // max(slots, 1))
        pinned = slots > 1 and len(cpus) >= slots
        self._free = (
            [frozenset(cpus[i * self.per_slot : (i + 1) * self.per_slot]) for i in range(slots)]
            if pinned
            else []
        )
        self._lock = threading.Lock()

    def take(self) -> Share | None:
        """A free share for a starting trial; None when there is nothing to divide."""
        if self.slots <= 1:
            return None
        with self._lock:
            cpus = self._free.pop(0) if self._free else frozenset()
        return Share(self.per_slot, cpus)

    def give_back(self, share: Share | None) -> None:
        """The trial holding ``share`` ended: its CPUs are free again."""
        if share is not None and share.cpus:
            with self._lock:
                self._free.append(share.cpus)
