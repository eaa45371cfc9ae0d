"""The tutorial's fit_one_cycle, run from device memory with no per-step host sync.

Adam (or SGD) with weight decay, OneCycleLR stepped every batch, clip_grad_value_ when
GRAD_CLIP > 0; history[0] is the evaluation before training, as in the tutorial. Losses and
accuracies accumulate on the device and are read once per epoch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from job import signals
from job.checkpoint import CHECKPOINT, load_checkpoint, save_state
from job.config import Config
from job.data import Dataset
from job.errors import DivergedError, StoppedError
from job.loader import DeviceLoader
from job.model import ResNet9
from job.shortcuts import eager_optimizer_class

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FitResult:
    """What training produced: the tutorial's history and the trained model."""

    history: list[dict[str, Any]]
    model: nn.Module
    resumed_from: int


def fit(
    cfg: Config,
    data: Dataset,
    device: torch.device,
    precision: str,
    on_epoch: Callable[[dict[str, Any]], None],
) -> FitResult:
    """Train per the recipe, checkpointing after every epoch; resume from OUTPUT_DIR's one."""
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_dl = DeviceLoader(
        data.train_images,
        data.train_labels,
        cfg.batch_size,
        train=True,
        seed=cfg.seed,
        device=device,
    )
    # The tutorial evaluates with batches twice the training size.
    val_dl = DeviceLoader(
        data.test_images, data.test_labels, 2 * cfg.batch_size, train=False, device=device
    )
    model = ResNet9(len(data.classes), cfg.model_width).to(device)
    model = model.to(memory_format=torch.channels_last)
    opt_cls = optimizer_class(cfg.optimizer, compiled=cfg.compile)
    optimizer = opt_cls(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=len(train_dl)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    step_model = cast(nn.Module, torch.compile(model)) if cfg.compile else model
    autocast = _autocast(device, precision)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    ckpt_path = cfg.output_dir / CHECKPOINT
    state = load_checkpoint(cfg.output_dir, cfg.fingerprint())
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        history = state["history"]
        start_epoch = state["epoch"]

    def checkpoint(epoch: int) -> None:
        save_state(
            ckpt_path,
            {
                "fingerprint": cfg.fingerprint(),
                "epoch": epoch,
                "history": history,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        )

    signals.set_training(True)
    try:
        if state is None:
            checkpoint(0)  # so a SIGTERM during the first epoch still leaves a resumable state
        if not history:
            t0 = time.perf_counter()
            val_loss, val_acc = evaluate(step_model, val_dl, autocast)
            history.append(
                {
                    "epoch": 0,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                    "eval_seconds": time.perf_counter() - t0,
                }
            )
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            entry = _train_epoch(
                step_model, train_dl, val_dl, optimizer, sched, scaler, autocast, cfg, epoch
            )
            history.append(entry)
            checkpoint(epoch)
            on_epoch(entry)
    finally:
        signals.set_training(False)
    return FitResult(history=history, model=model, resumed_from=start_epoch)


_OptimizerClass = type[torch.optim.Adam] | type[torch.optim.SGD]


def optimizer_class(name: str, *, compiled: bool) -> _OptimizerClass:
    """The optimizer OPTIMIZER names; without COMPILE, one that never imports torch._dynamo
    (:func:`job.shortcuts.eager_optimizer_class`)."""
    base: _OptimizerClass = torch.optim.Adam if name == "adam" else torch.optim.SGD
    return base if compiled else eager_optimizer_class(base)


def _autocast(
    device: torch.device, precision: str
) -> Callable[[], contextlib.AbstractContextManager]:
    if precision in _AMP:
        return lambda: torch.autocast(device.type, dtype=_AMP[precision])
    return contextlib.nullcontext


def _train_epoch(
    model: nn.Module,
    train_dl: DeviceLoader,
    val_dl: DeviceLoader,
    optimizer: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    autocast: Callable[[], contextlib.AbstractContextManager],
    cfg: Config,
    epoch: int,
) -> dict[str, Any]:
    model.train()
    device = train_dl.device
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step
    lrs: list[float] = []
    t0 = time.perf_counter()
    for step, (images, labels) in enumerate(train_dl.epoch(epoch), start=1):
        if signals.stop_requested():
            raise StoppedError(
                f"Stopped by SIGTERM during epoch {epoch}; {CHECKPOINT} holds epoch {epoch - 1}: "
                "rerun with the same OUTPUT_DIR to resume."
            )
        with autocast():
            loss = F.cross_entropy(model(images), labels)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        lrs.append(optimizer.param_groups[0]["lr"])  # the tutorial records lr before stepping
        sched.step()
        loss = loss.detach().float()
        loss_sum += loss
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
    n_steps = len(lrs)
    train_loss, bad_step = (loss_sum / max(n_steps, 1)).item(), int(first_bad)  # one sync per epoch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - t0
    if bad_step >= 0:
        raise DivergedError(
            f"Training diverged: the loss became non-finite at epoch {epoch}, step {bad_step}; "
            "lower MAX_LR or set GRAD_CLIP."
        )
    t1 = time.perf_counter()
    val_loss, val_acc = evaluate(model, val_dl, autocast)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "lrs": lrs,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t1,
        "images_per_sec": train_dl.n / train_seconds if train_seconds > 0 else 0.0,
    }


def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, float]:
    """Mean validation loss and accuracy over the whole split, read from the device once."""
    model.eval()
    device = loader.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode():
        for images, labels in loader.epoch():
            if signals.stop_requested():
                raise StoppedError("Stopped by SIGTERM during evaluation; rerun to resume.")
            with autocast():
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
            correct += (logits.argmax(dim=1) == labels).sum()
    n = max(loader.n, 1)
    loss, acc = (torch.stack([loss_sum.double(), correct.double()]) / n).tolist()
    return loss, acc
