"""Row (b), training throughput: images per second through each pipeline's own training loop
(the same ResNet9, recipe and batch size), timed over steps after untimed warm-up steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
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
    seconds = train_steps(model, tutorial.DeviceDataLoader(dl, device), steps, warmup)
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


def train_steps(
    model: tutorial.ImageClassificationBase,
    train_loader: Any,
    steps: int,
    warmup: int,
    max_lr: float = tutorial.MAX_LR,
    weight_decay: float = tutorial.WEIGHT_DECAY,
    grad_clip: float = tutorial.GRAD_CLIP,
) -> float:
    """Seconds for ``steps`` of the tutorial's loop body after ``warmup`` untimed steps.

    The body is exactly fit_one_cycle's (Adam, clipping, one-cycle step), fed by the
    tutorial's own loader, so the figure includes what its DataLoader workers cost.
    """
    total = warmup + steps
    optimizer = torch.optim.Adam(model.parameters(), max_lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total + 1)
    model.train()
    start, done = 0.0, 0
    while done < total:
        for batch in train_loader:
            if done == warmup:
                sync(batch[0].device)
                start = time.perf_counter()
            loss = model.training_step(batch)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            sched.step()
            done += 1
            if done == total:
                break
    sync(next(model.parameters()).device)
    return time.perf_counter() - start


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
