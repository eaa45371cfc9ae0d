"""The tutorial's ResNet9, with a channel multiplier for quick runs, and ``model.pt``: its
weights with what they expect and mean (:class:`ModelInfo`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from job.files import atomic_write
from job.portable import on_cpu
from job.preprocess import CIFAR10, Preprocess


def channels(base: int, width: float) -> int:
    """Channels of a layer that has ``base`` at MODEL_WIDTH=1 (at least 1)."""
    return max(1, round(base * width))


def block_channels(width: float) -> list[tuple[int, int]]:
    """(in, out) channels of ResNet9's eight conv blocks at ``width``, in the order
    :class:`ResNet9` builds them: conv1, conv2, res1 (2), conv3, conv4, res2 (2)."""
    c64, c128, c256, c512 = (channels(c, width) for c in (64, 128, 256, 512))
    return [
        (3, c64),
        (c64, c128),
        (c128, c128),
        (c128, c128),
        (c128, c256),
        (c256, c512),
        (c512, c512),
        (c512, c512),
    ]


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3×3 conv + BatchNorm + ReLU, then an optional 2×2 max-pool (the tutorial's block)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """64 → 128+pool → res(128) → 256+pool → 512+pool → res(512) → global max-pool → linear.

    At ``width=1`` with ten classes this is the tutorial's model exactly: 6,575,370 parameters.
    The final pooling is adaptive: at 32 px it is the tutorial's ``MaxPool2d(4)`` (its input is
    4 × 4), and at any other ``IMAGE_SIZE`` it still takes the maximum over the whole map, so
    64 or 96 px need no other change.
    """

    def __init__(self, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        b = block_channels(width)
        self.conv1 = conv_block(*b[0])
        self.conv2 = conv_block(*b[1], pool=True)
        self.res1 = nn.Sequential(conv_block(*b[2]), conv_block(*b[3]))
        self.conv3 = conv_block(*b[4], pool=True)
        self.conv4 = conv_block(*b[5], pool=True)
        self.res2 = nn.Sequential(conv_block(*b[6]), conv_block(*b[7]))
        c512 = b[-1][1]
        self.classifier = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c512, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        out = self.res1(out) + out
        out = self.conv4(self.conv3(out))
        out = self.res2(out) + out
        return self.classifier(out)


@dataclass(frozen=True)
class ModelInfo:
    """What a trained ResNet9 is besides its weights: the classes of its outputs, in order, the
    preprocessing its input needs, and its MODEL_WIDTH."""

    classes: tuple[str, ...]
    preprocess: Preprocess
    width: float

    def build(self) -> ResNet9:
        """An untrained ResNet9 of this shape: ``load_state_dict`` fills it."""
        return ResNet9(len(self.classes), self.width)

    def to_json(self) -> dict[str, Any]:
        """As model.pt and the checkpoint hold it (lists, floats, strings: ``weights_only``)."""
        return {
            "classes": list(self.classes),
            "preprocess": self.preprocess.to_json(),
            "model_width": self.width,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ModelInfo:
        """The inverse of :meth:`to_json`."""
        return cls(
            classes=tuple(str(c) for c in value["classes"]),
            preprocess=Preprocess.from_json(value["preprocess"]),
            width=float(value["model_width"]),
        )


def class_summary(classes: tuple[str, ...]) -> str:
    """A class list in a few words, for messages: its count and first three names."""
    shown = ", ".join(classes[:3]) + (", …" if len(classes) > 3 else "")
    return f"{len(classes)} classes ({shown})"


def legacy_info(width: float) -> ModelInfo:
    """The info of a model saved before models carried their own: CIFAR-10's ten classes at 32
    pixels with the tutorial's normalisation (the only data the job read then)."""
    from job.data.archive import CIFAR_CLASSES

    return ModelInfo(classes=CIFAR_CLASSES, preprocess=CIFAR10, width=width)


def save_model(path: Path, model: nn.Module, info: ModelInfo) -> None:
    """Write ``model.pt``: ``{"state_dict": …, "classes": […], "preprocess": {"size", "mean",
    "std"}, "model_width": w}``, atomically, every tensor on the CPU: ``torch.load(path,
    weights_only=True)`` reads it on any machine, with or without the GPU it was trained on."""
    saved = {"state_dict": on_cpu(model.state_dict()), **info.to_json()}
    atomic_write(path, lambda f: torch.save(saved, f))


def read_model(path: Path) -> tuple[dict[str, torch.Tensor], ModelInfo | None]:
    """The state_dict in ``model.pt`` and its info; None for the info of a model.pt saved
    before models carried it (a bare state_dict: see :func:`legacy_info`). Raises what
    ``torch.load`` raises, and ValueError for a file that holds neither form."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict):
        raise ValueError("it holds no dict")
    if "state_dict" not in saved:
        return saved, None
    try:
        return saved["state_dict"], ModelInfo.from_json(saved)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"its description is incomplete ({type(exc).__name__}: {exc})") from None
