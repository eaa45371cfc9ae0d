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
from job.config import Config, choose_precision, resolve_device
from job.contract import RESOLVED_PRECISION

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
    precision_reason: str = ""
    """Why ``precision`` (:class:`job.config.Precision`); empty for a plan made by hand."""
    fingerprint: dict[str, Any] = field(init=False)
    """``cfg.fingerprint()`` and ``resolved_precision``: every checkpoint of the run is written
    with it, and OUTPUT_DIR's checkpoint must match it to resume. The precision is resolved,
    not the setting: PRECISION=auto on another machine may train in another arithmetic."""

    def __post_init__(self) -> None:
        # Derived at construction; a frozen dataclass is set through object.
        fingerprint = self.cfg.fingerprint() | {RESOLVED_PRECISION: self.precision}
        object.__setattr__(self, "fingerprint", fingerprint)

    def resolved(self) -> dict[str, Any]:
        """What config.json adds to the settings: the device, precision and CPU threads."""
        return {
            "resolved_device": str(self.device),
            RESOLVED_PRECISION: self.precision,
            "resolved_cpu_threads": self.cpu_threads,
        }


def resolve(cfg: Config, started: float) -> RunPlan:
    """Size torch's thread pools, then resolve the device and precision of ``cfg`` (SEED
    resolved); ``started`` is the run's ``time.perf_counter()`` when it began."""
    import torch

    cpu_threads = threads.resolve(cfg.cpu_threads, torch.get_num_threads())
    threads.apply(cpu_threads)  # before any torch work: the inter-op pool is sized once
    device = resolve_device(cfg)
    precision = choose_precision(cfg, device)
    return RunPlan(cfg, device, precision.name, cpu_threads, started, precision.reason)
