"""What a run resolves once, at its start, and hands down as one record (:class:`RunPlan`).

The device, the precision and torch's CPU threads depend on the settings and on the machine;
the checkpoint fingerprint on the settings with SEED resolved. Each is resolved here, once:
training, checkpointing, metrics.json, promotion and the fault handler read them from the plan,
so no stage resolves one again, and no two stages can disagree. torch is imported inside
:func:`resolve` only, so ``python -m job --help`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from job import threads
from job.config import Config, resolve_device, resolve_precision

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RunPlan:
    """One run's resolved settings and machine, made once by :func:`resolve`."""

    cfg: Config
    """The settings, SEED resolved (:func:`job.seed.resolve`)."""
    device: torch.device
    precision: str
    """fp32, bf16 or fp16: PRECISION resolved for ``device``."""
    cpu_threads: int
    """torch's CPU threads: CPU_THREADS resolved."""
    started: float
    """``time.perf_counter()`` when the run began, for metrics.json's ``wall_seconds``."""
    fingerprint: dict[str, Any] = field(init=False)
    """``cfg.fingerprint()``: every checkpoint of the run is written with it, and OUTPUT_DIR's
    checkpoint must match it to resume."""

    def __post_init__(self) -> None:
        # Derived from cfg at construction; a frozen dataclass is set through object.
        object.__setattr__(self, "fingerprint", self.cfg.fingerprint())

    def resolved(self) -> dict[str, Any]:
        """What config.json adds to the settings: the device, precision and CPU threads."""
        return {
            "resolved_device": str(self.device),
            "resolved_precision": self.precision,
            "resolved_cpu_threads": self.cpu_threads,
        }


def resolve(cfg: Config, started: float) -> RunPlan:
    """Size torch's thread pools, then resolve the device and precision of ``cfg`` (SEED
    resolved); ``started`` is the run's ``time.perf_counter()`` when it began."""
    import torch

    cpu_threads = threads.resolve(cfg.cpu_threads, torch.get_num_threads())
    threads.apply(cpu_threads)  # before any torch work: the inter-op pool is sized once
    device = resolve_device(cfg)
    return RunPlan(cfg, device, resolve_precision(cfg, device), cpu_threads, started)
