"""The history records: one entry of history.json (docs/contract.md: history.json).

The evaluation before training, then one record per epoch trained. A record's fields, in
order, are its history.json entry's keys; the checkpoint keeps the same entries, so a resumed
run's history reads back through :func:`record_from_json`. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class _Record:
    """What both kinds of history entry share: writing one as history.json's dict."""

    def to_json(self) -> dict[str, Any]:
        """The history.json entry: every field in order, a tuple as a list."""
        # Subclasses are dataclasses; _Record itself is not, hence the ignore.
        values = ((f.name, getattr(self, f.name)) for f in fields(self))  # type: ignore[arg-type]
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values}


@dataclass(frozen=True)
class Evaluation(_Record):
    """history.json's entry 0: the untrained model's evaluation, before the first epoch."""

    epoch: int
    val_loss: float
    val_acc: float
    eval_seconds: float


@dataclass(frozen=True)
class TrainedEpoch(_Record):
    """The history.json entry of epoch ``epoch`` (≥ 1): its training, then its evaluation."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lrs: tuple[float, ...]
    """The learning rate of each batch, read before the scheduler stepped."""
    train_seconds: float
    eval_seconds: float
    images_per_sec: float
    """Training images per second of ``train_seconds``."""


EpochRecord = Evaluation | TrainedEpoch
"""One history entry; ``isinstance(record, TrainedEpoch)`` tells a trained epoch from entry 0."""


def record_from_json(entry: dict[str, Any]) -> EpochRecord:
    """The record of a history.json (or checkpoint history) entry, chosen by its keys.

    The inverse of ``to_json``; raises ValueError when the keys are not exactly one record's
    fields.
    """
    keys = set(entry)
    if keys == set(TrainedEpoch.__dataclass_fields__):
        return TrainedEpoch(**{**entry, "lrs": tuple(entry["lrs"])})
    if keys == set(Evaluation.__dataclass_fields__):
        return Evaluation(**entry)
    raise ValueError(f"not a history entry: its keys are {sorted(keys)}")
