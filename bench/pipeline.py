"""Row (a), input pipeline: augmented, normalised training batches per second, no model.

Tutorial: ImageFolder over the extracted PNGs, PIL transforms in a DataLoader with
``num_workers=3``. Job: its loader over the decoded uint8 tensors, on the training device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import ImageFolder

from bench import tutorial
from bench.training import sync


def tutorial_batches_per_sec(
    png_root: Path,
    batch_size: int,
    batches: int,
    warmup: int,
    device: torch.device,
    num_workers: int = tutorial.NUM_WORKERS,
) -> float:
    """Batches/s of the tutorial's training DataLoader over ``png_root/train``."""
    train_ds = ImageFolder(str(png_root / "train"), tutorial.train_transforms())
    dl = tutorial.train_loader(train_ds, batch_size, num_workers)
    return _rate(_forever(tutorial.DeviceDataLoader(dl, device)), batches, warmup, device)


def job_batches_per_sec(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    batches: int,
    warmup: int,
    device: torch.device,
) -> float:
    """Batches/s of the job's on-device training loader over uint8 ``images``."""
    from job.loader import DeviceLoader

    # Built once per run (it moves and pads the data set on the device), so not timed.
    loader = DeviceLoader(images, labels, batch_size, train=True, seed=0, device=device)

    def epochs() -> Iterator[Any]:
        epoch = 0
        while True:
            yield from loader.epoch(epoch)
            epoch += 1

    return _rate(epochs(), batches, warmup, device)


def _forever(loader: Iterable[Any]) -> Iterator[Any]:
    # Restarting the tutorial's loader re-forks its workers, as a new epoch does there.
    while True:
        yield from loader


MIN_SECONDS = 2.0  # a timed window shorter than this is extended: fast loaders need it


def _rate(batches_iter: Iterator[Any], batches: int, warmup: int, device: torch.device) -> float:
    """Batches per second over at least ``batches`` batches and ``MIN_SECONDS`` of pulling.

    The ``warmup`` untimed batches cover worker start-up and fill the prefetch queue, so the
    timed window sees the steady state.
    """
    for _ in range(warmup):
        next(batches_iter)
    sync(device)
    start = time.perf_counter()
    pulled = 0
    while pulled < batches or time.perf_counter() - start < MIN_SECONDS:
        next(batches_iter)
        pulled += 1
    sync(device)
    return pulled / (time.perf_counter() - start)
