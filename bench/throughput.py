"""Rows (a) and (b): input batches and training images per second; row (h): seconds per
checkpoint write (docs/benchmarks.md, "What each figure measures", says how)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from itertools import chain, count, repeat
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import tutorial

MIN_SECONDS = 2.0  # a timed window shorter than this is extended: fast loaders need it


def tutorial_batches_per_sec(
    png_root: Path, batch_size: int, batches: int, warmup: int, device: torch.device
) -> float:
    """(a): batches/s of the tutorial's training DataLoader over ``png_root/train``."""
    train_dl = tutorial.train_batches(png_root, batch_size, device)
    # Restarting the tutorial's loader re-forks its workers, as a new epoch does there.
    return _rate(chain.from_iterable(repeat(train_dl)), batches, warmup, device)


def job_batches_per_sec(
    data: Any, batch_size: int, batches: int, warmup: int, device: torch.device
) -> float:
    """(a): batches/s of the job's on-device training loader over the decoded ``data`` set's
    uint8 training images (:func:`bench.runs.decode`)."""
    from job.loader import DeviceLoader

    # Built once per run (it moves and pads the data set on the device), so not timed.
    images, labels = data.train_images, data.train_labels
    loader = DeviceLoader(images, labels, batch_size, train=True, seed=0, device=device)
    # Epochs 0, 1, 2, … without end.
    return _rate(chain.from_iterable(map(loader.epoch, count())), batches, warmup, device)


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


def tutorial_images_per_sec(
    png_root: Path, width: float, batch_size: int, steps: int, warmup: int, device: torch.device
) -> float:
    """(b): images/s of the tutorial's loop body (fp32) fed by its DataLoader over the PNGs."""
    torch.manual_seed(0)
    train_dl = tutorial.train_batches(png_root, batch_size, device)
    model = tutorial.to_device(tutorial.ResNet9(3, 10, width), device)
    return steps * batch_size / train_steps(model, train_dl, steps, warmup)


def train_steps(
    model: tutorial.ImageClassificationBase, train_loader: Any, steps: int, warmup: int
) -> float:
    """Seconds for ``steps`` of the tutorial's loop body after ``warmup`` untimed steps.

    The body is exactly fit_one_cycle's (Adam, clipping, one-cycle step), fed by the
    tutorial's own loader, so the figure includes what its DataLoader workers cost.
    """
    total, max_lr = warmup + steps, tutorial.MAX_LR
    optimizer = torch.optim.Adam(model.parameters(), max_lr, weight_decay=tutorial.WEIGHT_DECAY)
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
            nn.utils.clip_grad_value_(model.parameters(), tutorial.GRAD_CLIP)
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


def checkpoint_seconds(width: float, folder: Path, repeat: int = 5) -> dict[str, Any]:
    """(h): the median seconds of ``repeat`` writes, after an untimed one, of the checkpoint the
    job saves after every epoch (model, Adam, one-cycle schedule, scaler, RNG) at ``width``."""
    from job.checkpoint import save_state
    from job.model import ResNet9

    model = ResNet9(10, width).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.01, total_steps=100)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()  # Adam's two moments per weight exist only after a step
    sched.step()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }
    path, seconds = folder / f"checkpoint-w{width:g}.pt", []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        save_state(path, state)
        seconds.append(time.perf_counter() - start)
    size = path.stat().st_size
    path.unlink()
    median = statistics.median(seconds[1:])
    return {"width": width, "bytes": size, "seconds": seconds[1:], "median": median}
