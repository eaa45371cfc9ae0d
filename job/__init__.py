"""resnet-job: the CIFAR-10 ResNet9 tutorial recipe as a configurable, resumable job.

The public names are re-exported lazily, so ``import job.contract`` (all the search may import
of the job) loads nothing else of the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from job.config import Config, from_env
    from job.contract import VARIABLES, ExitCode
    from job.errors import ConfigError, DataError, DivergedError, JobError, StoppedError
    from job.predict import PredictExit
    from job.records import EpochRecord, Evaluation, TrainedEpoch

__version__ = "0.1.0"

_EXPORTS = {
    "VARIABLES": "job.contract",
    "ExitCode": "job.contract",
    "EpochRecord": "job.records",
    "Evaluation": "job.records",
    "TrainedEpoch": "job.records",
    "PredictExit": "job.predict",
    "Config": "job.config",
    "from_env": "job.config",
    "ConfigError": "job.errors",
    "DataError": "job.errors",
    "DivergedError": "job.errors",
    "JobError": "job.errors",
    "StoppedError": "job.errors",
}
__all__ = [
    "VARIABLES",
    "Config",
    "ConfigError",
    "DataError",
    "DivergedError",
    "EpochRecord",
    "Evaluation",
    "ExitCode",
    "JobError",
    "PredictExit",
    "StoppedError",
    "TrainedEpoch",
    "from_env",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'job' has no attribute {name!r}")
