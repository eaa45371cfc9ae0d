"""The job's settings: every environment variable, parsed and validated in one place.

This is the only module that reads the environment. The variables, their defaults (the
tutorial's recipe) and meanings are the contract's (``job/contract.py``); this module adds a
parser per variable that rejects a bad value with one sentence naming the variable, the value
and what is allowed (exit code 2).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from job import contract
from job.errors import ConfigError

# -- parsers: each turns a variable's text into its value or raises ValueError saying what is
# allowed; the same parser turns the contract's default text into the Config field default.


def _number(kind: type, low: float, *, exclusive: bool = False, hint: str) -> Callable[[str], Any]:
    word = "a whole number" if kind is int else "a number"
    bound = f"> {low:g}" if exclusive else f"≥ {low:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"expected {word} {bound}, for example {hint}") from None
        if kind is float and not math.isfinite(value):
            raise ValueError(f"expected a finite number {bound}, for example {hint}")
        if value < low or (exclusive and value == low):
            raise ValueError(f"expected {word} {bound}, for example {hint}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"allowed values are {', '.join(allowed)}")
        return value

    return parse


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("allowed values are 1 or 0")


def _url(text: str) -> str:
    scheme = urlparse(text).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError("expected an http://, https:// or file:// URL of the archive")
    return text


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("expected 64 hexadecimal digits, or empty to skip the check")
    return value


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected a folder path")
    return Path(text)


def _optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _device(text: str) -> str:
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError("allowed values are auto, cpu, cuda, cuda:N")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "DATA_URL": _url,
    "DATA_SHA256": _sha256,
    "DATA_DIR": _path,
    "OUTPUT_DIR": _path,
    "EPOCHS": _number(int, 1, hint="8"),
    "BATCH_SIZE": _number(int, 1, hint="400"),
    "MAX_LR": _number(float, 0, exclusive=True, hint="0.01"),
    "WEIGHT_DECAY": _number(float, 0, hint="1e-4"),
    "GRAD_CLIP": _number(float, 0, hint="0.1"),
    "OPTIMIZER": _choice("adam", "sgd"),
    "SEED": _number(int, 0, hint="0"),
    "DEVICE": _device,
    "PRECISION": _choice("auto", "fp32", "bf16", "fp16"),
    "COMPILE": _flag,
    "MODEL_WIDTH": _number(float, 0, exclusive=True, hint="0.25"),
    "TRAIN_LIMIT": _number(int, 0, hint="5000"),
    "TEST_LIMIT": _number(int, 0, hint="2000"),
    "PROMOTE_DIR": _optional_path,
}


def _default(name: str) -> Any:
    """Variable ``name``'s default value: the contract's default text, parsed."""
    return _PARSERS[name](contract.default(name))


@dataclass(frozen=True)
class Config:
    """One run's resolved settings; field names are the variables in lower case.

    Every default comes from the contract's default text through the variable's own parser,
    so a default is written once, in ``job/contract.py``.
    """

    data_url: str = _default("DATA_URL")
    data_sha256: str = _default("DATA_SHA256")
    # Path is immutable, so one shared default instance is safe (RUF009 cannot know that).
    data_dir: Path = _default("DATA_DIR")  # noqa: RUF009
    output_dir: Path = _default("OUTPUT_DIR")  # noqa: RUF009
    epochs: int = _default("EPOCHS")
    batch_size: int = _default("BATCH_SIZE")
    max_lr: float = _default("MAX_LR")
    weight_decay: float = _default("WEIGHT_DECAY")
    grad_clip: float = _default("GRAD_CLIP")
    optimizer: str = _default("OPTIMIZER")
    seed: int = _default("SEED")
    device: str = _default("DEVICE")
    precision: str = _default("PRECISION")
    compile: bool = _default("COMPILE")
    model_width: float = _default("MODEL_WIDTH")
    train_limit: int = _default("TRAIN_LIMIT")
    test_limit: int = _default("TEST_LIMIT")
    promote_dir: Path | None = _default("PROMOTE_DIR")  # noqa: RUF009

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-ready values (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def fingerprint(self) -> dict[str, Any]:
        """The settings that determine a run's result; a checkpoint must match them to resume.

        Where files live, which device runs it and whether it is compiled do not change the
        recipe, so they are left out: a run stopped on one node may resume on another.
        """
        ignored = {"data_url", "data_dir", "output_dir", "device", "compile", "promote_dir"}
        return {k: v for k, v in self.to_json().items() if k not in ignored}


@dataclass(frozen=True)
class Variable:
    """One environment variable of the job: the contract's spec and its parser."""

    spec: contract.VariableSpec
    parse: Callable[[str], Any]

    @property
    def name(self) -> str:
        """The variable's name, as in the environment."""
        return self.spec.name

    @property
    def help(self) -> str:
        """Its one-line meaning."""
        return self.spec.help

    @property
    def default(self) -> str:
        """Its default, as the text of the variable."""
        return self.spec.default

    @property
    def field(self) -> str:
        """The Config field it sets."""
        return self.name.lower()


VARIABLES: tuple[Variable, ...] = tuple(Variable(v, _PARSERS[v.name]) for v in contract.VARIABLES)
"""Every variable of the contract with its parser, in ``--help`` order."""


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
                "set DEVICE=cpu or DEVICE=auto."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"DEVICE={cfg.device!r} is invalid: only {torch.cuda.device_count()} CUDA "
                "device(s) are visible; choose cuda:0 … or DEVICE=auto."
            )
    return device


def resolve_precision(cfg: Config, device: Any, cpu_bf16: bool | None = None) -> str:
    """The arithmetic to train in, unless PRECISION chooses one.

    ``auto`` is bf16 autocast on CUDA and on CPUs that compute bf16 natively (``cpu_bf16``;
    detected from /proc/cpuinfo when None), fp32 elsewhere: emulated bf16 is slower than fp32.
    """
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cuda":
        return "bf16"
    if cpu_bf16 is None:
        from job.cpuinfo import native_bf16

        cpu_bf16 = native_bf16()
    return "bf16" if cpu_bf16 else "fp32"
