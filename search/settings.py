"""What one driver run needs, as the CLI resolved it from its options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from search.launchers.base import Launcher
from search.space import Space


@dataclass
class Settings:
    """Everything one driver run needs; the CLI builds it from its options.

    Times are in seconds. ``trials`` is the study's total of finished trials, shared by every
    driver of the study; ``parallel`` is this driver's trials at once, worker ``i`` pinned to
    ``gpus[i % len(gpus)]`` (so ``parallel = len(gpus) * K`` puts K trials on each GPU).
    ``storage_retry`` bounds how long one database outage is ridden out.
    """

    trials: int
    output: Path
    storage: str
    study_name: str
    space: Space
    launcher: Launcher
    parallel: int = 1
    gpus: Sequence[str] = ()
    job_env: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path = Path("data")
    pruner: str = "median"
    sampler: str = "tpe"
    seed: int | None = None
    trial_timeout: float = 1800.0
    retries: int = 2
    heartbeat: int = 10
    stop_grace: float = 30.0
    max_failures: int = 5
    storage_retry: float = 300.0
