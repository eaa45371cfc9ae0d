"""The job's settings: every environment variable, parsed and validated in one place.

This is the only module that reads the environment. The variables — default, parser, help and
whether each belongs to the checkpoint fingerprint — are declared once, as the fields of
:class:`job.contract.Variables`; :class:`Config` is those fields plus what a run derives from
them. A malformed value is rejected with one sentence naming the variable, the value and what
is allowed (exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from job import contract
from job.contract import VARIABLES, VariableSpec
from job.errors import ConfigError

__all__ = [
    "VARIABLES",
    "Config",
    "Precision",
    "VariableSpec",
    "choose_precision",
    "from_env",
    "resolve_device",
    "resolve_precision",
]

_FINGERPRINT = frozenset(v.field for v in VARIABLES if v.fingerprint)


@dataclass(frozen=True)
class Config(contract.Variables):
    """One run's resolved settings; field names are the variables in lower case."""

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @property
    def seed_number(self) -> int:
        """SEED as a number; SEED=random must have been resolved (:func:`job.seed.resolve`)."""
        if isinstance(self.seed, str):
            raise RuntimeError("SEED=random was not resolved before the run used it")
        return self.seed

    def fingerprint(self) -> dict[str, Any]:
        """The settings that determine a run's result; a checkpoint must match them to resume
        (the variables declared with ``fingerprint``)."""
        return {k: v for k, v in self.to_json().items() if k in _FINGERPRINT}


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Build the run's Config from ``env`` (default: the process environment).

    Unset variables take their defaults; a malformed value raises ConfigError naming it.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var in VARIABLES:
        if var.name not in env:
            continue
        raw = env[var.name]
        try:
            values[var.field] = var.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{var.name}={raw!r} is invalid: {exc}.") from None
    return Config(**values)


def resolve_device(cfg: Config) -> Any:
    """The torch.device to train on; a CUDA device this machine lacks is a ConfigError."""
    import torch

    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"DEVICE={cfg.device!r} is invalid: this machine has no usable CUDA device; "
                "set DEVICE=cpu, or run where a GPU is visible: in a search, check --gpus and "
                "that the container gets the GPU (docker --gpus, the NVIDIA container toolkit)."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"DEVICE={cfg.device!r} is invalid: only {torch.cuda.device_count()} CUDA "
                "device(s) are visible; choose cuda:0 … or DEVICE=auto."
            )
    return device


_BF16_MIN_CAPABILITY = (8, 0)
"""The CUDA compute capability (Ampere) from which bf16 runs natively; below, it is emulated."""


class Precision(NamedTuple):
    """The arithmetic a run trains in and why, as the start event and metrics.json say."""

    name: str
    """fp32, bf16 or fp16."""
    reason: str
    """One phrase: "PRECISION=fp16 set", or what ``auto`` found on the device."""


def choose_precision(cfg: Config, device: Any, cpu_bf16: bool | None = None) -> Precision:
    """The arithmetic to train in and why, unless PRECISION chooses one.

    ``auto`` is bf16 autocast where bf16 is native: on CUDA from compute capability 8.0
    (``torch.cuda.get_device_capability``), fp16 with a gradient scaler below it; on
    CPUs that compute bf16 natively (``cpu_bf16``, from /proc/cpuinfo when None), fp32 on other
    CPUs. Emulated bf16 is slower than fp32 (and, on a GPU, than fp16).
    """
    if cfg.precision != "auto":
        return Precision(cfg.precision, f"PRECISION={cfg.precision} set")
    if device.type == "cuda":
        return _cuda_precision(device)
    if cpu_bf16 is None:
        from job.cpuinfo import native_bf16

        cpu_bf16 = native_bf16()
    if cpu_bf16:
        return Precision("bf16", "auto: CPU with native bf16 (avx512_bf16 or amx_bf16)")
    return Precision("fp32", "auto: CPU without native bf16, where bf16 is slower than fp32")


def _cuda_precision(device: Any) -> Precision:
    import torch

    capability = torch.cuda.get_device_capability(device)
    name = torch.cuda.get_device_name(device)
    version = ".".join(map(str, capability))
    floor = ".".join(map(str, _BF16_MIN_CAPABILITY))
    if tuple(capability) >= _BF16_MIN_CAPABILITY:
        return Precision("bf16", f"auto: {name} has compute capability {version} >= {floor}")
    return Precision(
        "fp16",
        f"auto: {name} has compute capability {version} < {floor}, where bf16 is emulated: "
        "fp16 with a gradient scaler",
    )


def resolve_precision(cfg: Config, device: Any, cpu_bf16: bool | None = None) -> str:
    """The name of :func:`choose_precision`'s choice."""
    return choose_precision(cfg, device, cpu_bf16).name
