"""The job's settings: every environment variable, parsed and validated in one place.

This is the only module that reads the environment. Each variable has a default (the
tutorial's recipe), a one-line meaning for ``--help``, and a parser that rejects a bad value
with one sentence naming the variable, the value and what is allowed (exit code 2).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from job.errors import ConfigError

DEFAULT_DATA_URL = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"


@dataclass(frozen=True)
class Config:
    """One run's resolved settings; field names are the variables in lower case."""

    data_url: str = DEFAULT_DATA_URL
    data_sha256: str = ""
    data_dir: Path = Path("./data")
    output_dir: Path = Path("./output")
    epochs: int = 8
    batch_size: int = 400
    max_lr: float = 0.01
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    optimizer: str = "adam"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    model_width: float = 1.0
    train_limit: int = 0
    test_limit: int = 0
    promote_dir: Path | None = None

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
    """One environment variable of the job."""

    name: str
    help: str
    parse: Callable[[str], Any]

    @property
    def field(self) -> str:
        return self.name.lower()

    @property
    def default(self) -> str:
        value = next(f.default for f in fields(Config) if f.name == self.field)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)


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


VARIABLES: tuple[Variable, ...] = (
    Variable("DATA_URL", "http(s):// or file:// CIFAR-10 archive (fast.ai or python layout)", _url),
    Variable("DATA_SHA256", "when set, the archive must have this sha256", _sha256),
    Variable("DATA_DIR", "download and decoded-array cache, safe to share", _path),
    Variable("OUTPUT_DIR", "where the run writes everything", _path),
    Variable("EPOCHS", "training epochs", _number(int, 1, hint="8")),
    Variable("BATCH_SIZE", "training batch size (images)", _number(int, 1, hint="400")),
    Variable(
        "MAX_LR",
        "peak learning rate of the one-cycle schedule",
        _number(float, 0, exclusive=True, hint="0.01"),
    ),
    Variable("WEIGHT_DECAY", "optimizer weight decay", _number(float, 0, hint="1e-4")),
    Variable("GRAD_CLIP", "clip gradients to ±value; 0 disables", _number(float, 0, hint="0.1")),
    Variable("OPTIMIZER", "adam or sgd", _choice("adam", "sgd")),
    Variable("SEED", "all randomness derives from it", _number(int, 0, hint="0")),
    Variable("DEVICE", "auto, cpu, cuda or cuda:N", _device),
    Variable(
        "PRECISION",
        "auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16",
        _choice("auto", "fp32", "bf16", "fp16"),
    ),
    Variable("COMPILE", "1 uses torch.compile", _flag),
    Variable(
        "MODEL_WIDTH",
        "channel multiplier; 1.0 is the tutorial's ResNet9",
        _number(float, 0, exclusive=True, hint="0.25"),
    ),
    Variable(
        "TRAIN_LIMIT",
        "train on a fixed, seeded subset of this many images; 0 = all",
        _number(int, 0, hint="5000"),
    ),
    Variable(
        "TEST_LIMIT", "evaluate on a fixed, seeded subset; 0 = all", _number(int, 0, hint="2000")
    ),
    Variable(
        "PROMOTE_DIR",
        "after success, promote the model here if it beats the champion; empty = off",
        _optional_path,
    ),
)


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


def resolve_precision(cfg: Config, device: Any) -> str:
    """The arithmetic to train in: bf16 autocast on CUDA and fp32 on CPU unless chosen."""
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if device.type == "cuda" else "fp32"
