"""metrics.json: a finished run's results, and where and on what it ran (docs/contract.md)."""

from __future__ import annotations

import time
from typing import Any

import torch

from job import cpuinfo
from job.code import code_sha256
from job.data import Dataset
from job.plan import RunPlan
from job.report import trained_epochs
from job.train import FitResult


def run_metrics(result: FitResult, data: Dataset, plan: RunPlan) -> dict[str, Any]:
    """What metrics.json holds, in its order: ``result`` trained on ``data`` as ``plan``
    resolved the run. The caller adds ``promotion`` when it promotes."""
    history = result.records
    trained = trained_epochs(history)
    best = max(history, key=lambda h: h.val_acc)
    train_seconds = sum(h.train_seconds for h in trained)
    n_train = len(data.train_labels)
    return {
        "val_acc": history[-1].val_acc,
        "val_loss": history[-1].val_loss,
        "train_loss": trained[-1].train_loss if trained else None,
        "best_val_acc": best.val_acc,
        "best_epoch": best.epoch,
        "epochs": len(trained),
        "resumed_from": result.resumed_from,
        "seed": plan.cfg.seed_number,
        "train_seconds": train_seconds,
        "images_per_sec": n_train * len(trained) / train_seconds if train_seconds else 0.0,
        "wall_seconds": time.perf_counter() - plan.started,
        "n_train": n_train,
        "n_test": len(data.test_labels),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "device": str(plan.device),
        "device_name": device_name(plan.device),
        "precision": plan.precision,
        "precision_reason": plan.precision_reason,
        "cpu_threads": plan.cpu_threads,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "data_sha256": data.sha256,
        "data_layout": data.layout,
        "code_sha256": code_sha256(),
        "compiled_graphs": result.compiled_graphs,
    }


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, the CPU model (from /proc/cpuinfo) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpuinfo.model_name()  # "Intel(R) Xeon(R) …", not platform's bare "x86_64"
