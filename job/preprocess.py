"""What a model expects of its input: the side it was trained at and the normalisation.

A model carries its own :class:`Preprocess` (``model.pt``, the exported model, the champion),
so evaluation, ``predict`` and the champion's re-evaluation feed it images as it was trained.
Standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Preprocess:
    """Images are resized (shorter side to ``size``, centre crop) and normalised per channel:
    ``(x / 255 - mean) / std``, ``mean`` and ``std`` on the 0…1 scale, RGB order."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        """As JSON-ready values (lists for the tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Preprocess:
        """The inverse of :meth:`to_json`."""
        mean, std = value["mean"], value["std"]
        return cls(size=int(value["size"]), mean=_three(mean), std=_three(std))


def _three(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


CIFAR10 = Preprocess(size=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
"""The tutorial's normalisation statistics; a model saved before models carried their own
preprocessing was trained with these, at 32 pixels."""
