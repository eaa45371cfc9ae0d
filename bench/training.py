"""Row (b), training throughput: images per second through each pipeline's own training loop.

Both sides train the same ResNet9 (same width) with the same recipe (Adam, one-cycle LR
stepped per batch, value clipping, weight decay) at the same batch size, each fed by its
own input pipeline, and are timed over a fixed number of steps after untimed warm-up steps.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder

from bench import tutorial
from bench.wall import WallConfig, run_job


def tutorial_images_per_sec(
    png_root: Path,
    width: float,
    batch_size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    num_workers: int = tutorial.NUM_WORKERS,
) -> float:
    """Images/s of the tutorial's loop body (fp32) fed by its DataLoader over the PNGs."""
    torch.manual_seed(0)
    train_ds = ImageFolder(str(png_root / "train"), tutorial.train_transforms())
    dl = tutorial.train_loader(train_ds, batch_size, num_workers)
    model = tutorial.to_device(tutorial.ResNet9(3, 10, width), device)
    seconds = tutorial.train_steps(model, tutorial.DeviceDataLoader(dl, device), steps, warmup)
    return steps * batch_size / seconds


def tutorial_on_archive(
    archive: Path,
    dest: Path,
    width: float,
    batch_size: int,
    steps: int,
    warmup: int,
    device: str | None = None,
) -> tuple[float, torch.device, float]:
    """Extract ``archive`` into ``dest``, then :func:`tutorial_images_per_sec` on ``device``.

    ``device`` defaults to the tutorial's own choice (the GPU when there is one). Returns the
    images/s, the device and the extraction's seconds.
    """
    t0 = time.perf_counter()
    png_root = tutorial.extract(archive, dest)
    extracted = time.perf_counter() - t0
    on = torch.device(device) if device else tutorial.get_default_device()
    rate = tutorial_images_per_sec(png_root, width, batch_size, steps, warmup, on)
    return rate, on, extracted


def job_images_per_sec(
    archive: Path,
    data_dir: Path,
    workdir: Path,
    *,
    width: float,
    batch_size: int,
    steps: int,
    precision: str,
    device: str,
    test_images: int,
) -> float:
    """Images/s of the job's own training loop, read from its ``history.json``.

    ``python -m job`` runs as a subprocess for two epochs of ``steps`` batches each on a
    prepared DATA_DIR; epoch 1 is the warm-up and epoch 2's ``images_per_sec`` (its training
    images over its training seconds, evaluation excluded) is the figure.
    """
    cfg = WallConfig(width, steps * batch_size, test_images, 2, batch_size)
    env = {"PRECISION": precision, "DEVICE": device}
    result = run_job(archive, cfg, workdir, env, data_dir=data_dir)
    return float(result.details["history"][-1]["images_per_sec"])
