"""resnet-job: the CIFAR-10 ResNet9 tutorial recipe as a configurable, resumable job."""

from job.config import VARIABLES, Config, from_env
from job.errors import ConfigError, DataError, DivergedError, JobError, StoppedError

__all__ = [
    "VARIABLES",
    "Config",
    "ConfigError",
    "DataError",
    "DivergedError",
    "JobError",
    "StoppedError",
    "from_env",
]
__version__ = "0.1.0"
