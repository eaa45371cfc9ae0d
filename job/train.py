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
from job.checkpoint import CHECKPOINT, CheckpointWriter, check_model_info, load_checkpoint
from job.config import Config
from job.data import Dataset
from job.errors import DivergedError, StoppedError
from job.loader import DeviceLoader
from job.model import ModelInfo
from job.plan import RunPlan
from job.preprocess import Preprocess
from job.progress import EpochProgress
from job.records import EpochRecord, Evaluation, TrainedEpoch, record_from_json
from job.shortcuts import eager_optimizer_class

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FitResult:
    """What training produced: the tutorial's history, as records, and the trained model
    with what it expects and means (model.pt's :class:`ModelInfo`)."""

    records: list[EpochRecord]
    model: nn.Module
    resumed_from: int
    info: ModelInfo
    compiled_graphs: int | None = None
    """With COMPILE, the graphs torch.compile made in this process (:func:`compiled_graphs`)."""

    @property
    def history(self) -> list[dict[str, Any]]:
        """The history as history.json and the checkpoint hold it: one dict per record."""
        return [record.to_json() for record in self.records]


@dataclass
class _Training:
    """One run's training state: the loaders, the model, its optimizer, schedule and scaler."""

    plan: RunPlan
    info: ModelInfo
    train_dl: DeviceLoader
    val_dl: DeviceLoader
    model: nn.Module
    step_model: nn.Module  # the model, or its torch.compile wrapper: what the steps call
    optimizer: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.OneCycleLR
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager]

    @property
    def cfg(self) -> Config:
        """The settings (SEED resolved): most of what the steps read of the plan."""
        return self.plan.cfg


def fit(plan: RunPlan, data: Dataset, on_epoch: Callable[[TrainedEpoch], None]) -> FitResult:
    """Train per the recipe, checkpointing after every epoch; resume from OUTPUT_DIR's one."""
    cfg = plan.cfg
    torch.manual_seed(cfg.seed_number)
    if plan.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    training = _build(plan, data)
    state = load_checkpoint(cfg.output_dir, plan.fingerprint)
    history, start_epoch = ([], 0) if state is None else _restore(training, state)
    writer = CheckpointWriter(cfg.output_dir / CHECKPOINT)
    signals.set_training(True)
    try:
        if state is None:
            # A SIGTERM in epoch 1 still leaves a resumable state.
            _checkpoint(writer, training, 0, history)
        if not history:
            history.append(_evaluate_untrained(training))
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            record = _train_epoch(training, epoch)
            history.append(record)
            _checkpoint(writer, training, epoch, history)  # written while the next epoch trains
            on_epoch(record)
    finally:
        try:
            writer.wait()  # the last checkpoint is on disk before the outputs, or exit 143
        finally:
            signals.set_training(False)
    graphs = compiled_graphs() if cfg.compile else None
    return FitResult(history, training.model, start_epoch, training.info, graphs)


def compiled_graphs() -> int:
    """The graphs torch.compile has made in this process: dynamo's count of unique graphs.

    The training step compiles once, and once more with dynamic shapes when an epoch ends in a
    smaller batch; any further graph is a recompile (or a graph break) that costs time.
    """
    from torch._dynamo.utils import counters  # imported only with COMPILE: it is slow to load

    return int(counters["stats"]["unique_graphs"])


def _build(plan: RunPlan, data: Dataset) -> _Training:
    """The loaders on the plan's device, then the model (its initialisation draws from the
    seeded global RNG), the optimizer, the one-cycle schedule and the gradient scaler."""
    cfg, device, precision = plan.cfg, plan.device, plan.precision
    info = ModelInfo(data.classes, data.preprocess, cfg.model_width)
    train_dl = DeviceLoader(
        data.train_images,
        data.train_labels,
        cfg.batch_size,
        train=True,
        seed=cfg.seed_number,
        device=device,
        preprocess=data.preprocess,
        streamed=data.streamed,
    )
    val_dl = eval_loader(cfg, data, device)
    model = info.build().to(device)
    model = model.to(memory_format=torch.channels_last)
    opt_cls = optimizer_class(cfg.optimizer, compiled=cfg.compile)
    optimizer = opt_cls(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=len(train_dl)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    # Only the training step is compiled; evaluation runs the eager module (:func:`evaluate`).
    step_model = cast(nn.Module, torch.compile(model)) if cfg.compile else model
    autocast = autocast_for(device, precision)
    return _Training(
        plan, info, train_dl, val_dl, model, step_model, optimizer, sched, scaler, autocast
    )


def eval_loader(
    cfg: Config, data: Dataset, device: torch.device, preprocess: Preprocess | None = None
) -> DeviceLoader:
    """The test split as every evaluation of this run reads it, normalised as the model
    evaluated expects: ``preprocess``, by default the data's (a champion brings its own)."""
    # The tutorial evaluates with batches twice the training size.
    return DeviceLoader(
        data.test_images,
        data.test_labels,
        2 * cfg.batch_size,
        train=False,
        device=device,
        preprocess=preprocess or data.preprocess,
        streamed=data.streamed,
    )


def _restore(training: _Training, state: dict[str, Any]) -> tuple[list[EpochRecord], int]:
    """Load a verified checkpoint's states; return its history and the epoch it completed."""
    check_model_info(training.cfg.output_dir, state, training.info)
    device = training.train_dl.device
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.sched.load_state_dict(state["scheduler"])
    training.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return [record_from_json(entry) for entry in state["history"]], state["epoch"]


def _checkpoint(
    writer: CheckpointWriter, training: _Training, epoch: int, history: list[EpochRecord]
) -> None:
    """Take the state after ``epoch`` for OUTPUT_DIR's checkpoint (``writer`` copies it to the
    CPU now and writes it in the background); its history holds plain dicts."""
    device = training.train_dl.device
    writer.write(
        {
            "fingerprint": training.plan.fingerprint,
            "model_info": training.info.to_json(),
            "epoch": epoch,
            "history": [record.to_json() for record in history],
            "model": training.model.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.sched.state_dict(),
            "scaler": training.scaler.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
    )


def _evaluate_untrained(training: _Training) -> Evaluation:
    """History entry 0: the model evaluated before the first step, as in the tutorial."""
    t0 = time.perf_counter()
    val_loss, val_acc = evaluate(training.model, training.val_dl, training.autocast)
    return Evaluation(
        epoch=0, val_loss=val_loss, val_acc=val_acc, eval_seconds=time.perf_counter() - t0
    )


_OptimizerClass = type[torch.optim.Adam] | type[torch.optim.SGD]


def optimizer_class(name: str, *, compiled: bool) -> _OptimizerClass:
    """The optimizer OPTIMIZER names; without COMPILE, one that never imports torch._dynamo
    (:func:`job.shortcuts.eager_optimizer_class`)."""
    base: _OptimizerClass = torch.optim.Adam if name == "adam" else torch.optim.SGD
    return base if compiled else eager_optimizer_class(base)


def autocast_for(
    device: torch.device, precision: str
) -> Callable[[], contextlib.AbstractContextManager]:
    """The context every forward pass of this run computes in (autocast, or none for fp32)."""
    if precision in _AMP:
        return lambda: torch.autocast(device.type, dtype=_AMP[precision])
    return contextlib.nullcontext


def _train_epoch(training: _Training, epoch: int) -> TrainedEpoch:
    """Train ``epoch`` (one pass of the seeded, augmented training set), then evaluate."""
    train_loss, lrs, train_seconds = _train_steps(training, epoch)
    t1 = time.perf_counter()
    val_loss, val_acc = evaluate(training.model, training.val_dl, training.autocast)
    return TrainedEpoch(
        epoch=epoch,
        train_loss=train_loss,
        val_loss=val_loss,
        val_acc=val_acc,
        lrs=tuple(lrs),
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - t1,
        images_per_sec=training.train_dl.n / train_seconds if train_seconds > 0 else 0.0,
    )


def _train_steps(training: _Training, epoch: int) -> tuple[float, list[float], float]:
    """One epoch's steps: the mean training loss, each step's lr and the seconds they took.

    The loss and the first non-finite step stay on the device until the epoch ends.
    """
    model, optimizer, scaler = training.step_model, training.optimizer, training.scaler
    grad_clip, train_dl = training.cfg.grad_clip, training.train_dl
    # Training loss only: val_loss stays the plain cross-entropy, comparable across runs.
    label_smoothing = training.cfg.label_smoothing
    model.train()
    device = train_dl.device
    loss_sum = torch.zeros((), device=device)
    first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first non-finite step
    lrs: list[float] = []
    cfg = training.cfg
    progress = EpochProgress(
        epoch, cfg.epochs, len(train_dl), train_dl.batch_size, train_dl.n, cfg.progress_seconds
    )
    t0 = time.perf_counter()
    try:
        for step, (images, labels) in enumerate(train_dl.epoch(epoch), start=1):
            if signals.stop_requested():
                raise StoppedError(
                    f"Stopped by SIGTERM during epoch {epoch}; {CHECKPOINT} holds epoch "
                    f"{epoch - 1}: rerun with the same OUTPUT_DIR to resume."
                )
            with training.autocast():
                loss = F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)
            scaler.scale(loss).backward()
            if grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lrs.append(optimizer.param_groups[0]["lr"])  # the tutorial records lr before stepping
            training.sched.step()
            loss = loss.detach().float()
            loss_sum += loss
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            progress.step(step)  # the step counter and the clock only: no host sync
    finally:
        progress.close()
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
    return train_loss, lrs, train_seconds


def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[float, float]:
    """Mean validation loss and accuracy over the whole split, read from the device once.

    Training evaluates its eager module here, also with COMPILE: a compiled module called
    under ``inference_mode`` and in eval mode fails dynamo's guards on the grad mode and the
    BatchNorm mode and compiles a second, inference graph, whose compile time the short
    forward-only passes over the test split seldom win back (and, were it the first call,
    the training step would then compile again). The eager module shares the compiled
    one's parameters and buffers, so it evaluates exactly what was trained.
    """
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
